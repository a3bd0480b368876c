#include <gtest/gtest.h>

#include <array>
#include <map>
#include <random>

#include "dataplane/neigh/neighbour_table.hpp"

using namespace tandem;
using neigh::LearnResult;
using neigh::NeighbourConfig;
using neigh::NeighbourTable;
using neigh::NeighState;
using neigh::ResolveResult;

namespace {

net::Ipv4Addr ip(std::uint32_t host) { return net::Ipv4Addr{0x0a000000u | host}; }
net::MacAddr mac(std::uint8_t last) { return net::MacAddr{{0x02, 0, 0, 0, 0, last}}; }

NeighbourConfig small_config() {
  return {.capacity = 4, .reachable_ms = 1000, .stale_ms = 5000, .probe_interval_ms = 100, .max_probes = 3};
}

std::vector<net::Ipv4Addr> maintain(NeighbourTable& t, std::uint64_t now) {
  std::array<net::Ipv4Addr, 64> out;
  const std::size_t n = t.maintain(now, out);
  return {out.begin(), out.begin() + static_cast<std::ptrdiff_t>(n)};
}

}  // namespace

TEST(NeighbourTable, LearnCreatesOnlyWhenAskedAndUpdatesAlways) {
  NeighbourTable t(small_config());
  EXPECT_EQ(t.learn(ip(1), mac(1), 0, false), LearnResult::kIgnored);
  EXPECT_EQ(t.size(), 0u);
  EXPECT_EQ(t.learn(ip(1), mac(1), 0, true), LearnResult::kCreated);
  EXPECT_EQ(t.learn(ip(1), mac(9), 10, false), LearnResult::kUpdated);
  ASSERT_NE(t.lookup(ip(1)), nullptr);
  EXPECT_EQ(*t.lookup(ip(1)), mac(9));
  EXPECT_EQ(t.stats().mac_changed, 1u);
  EXPECT_EQ(t.stats().created, 1u);
}

TEST(NeighbourTable, IgnoresMulticastAndZeroMacs) {
  NeighbourTable t(small_config());
  EXPECT_EQ(t.learn(ip(1), net::MacAddr::broadcast(), 0, true), LearnResult::kIgnored);
  EXPECT_EQ(t.learn(ip(1), net::MacAddr{{0x01, 0x00, 0x5e, 0, 0, 1}}, 0, true), LearnResult::kIgnored);
  EXPECT_EQ(t.learn(ip(1), net::MacAddr{}, 0, true), LearnResult::kIgnored);
  EXPECT_EQ(t.size(), 0u);
}

TEST(NeighbourTable, ResolveProbesThenFailsAfterMaxProbes) {
  NeighbourTable t(small_config());
  EXPECT_EQ(t.resolve(ip(7), 1000, nullptr), ResolveResult::kPending);
  EXPECT_EQ(t.resolve(ip(7), 1000, nullptr), ResolveResult::kPending);  // no second entry
  EXPECT_EQ(t.size(), 1u);
  EXPECT_EQ(t.lookup(ip(7)), nullptr);
  EXPECT_EQ(maintain(t, 1000), std::vector{ip(7)});  // first request at once
  EXPECT_TRUE(maintain(t, 1050).empty());            // not before the interval
  EXPECT_EQ(maintain(t, 1100), std::vector{ip(7)});
  EXPECT_EQ(maintain(t, 1200), std::vector{ip(7)});
  EXPECT_EQ(t.find(ip(7))->probes, 3);
  EXPECT_TRUE(maintain(t, 1300).empty());  // three unanswered: given up
  EXPECT_EQ(t.find(ip(7)), nullptr);
  EXPECT_EQ(t.stats().failed, 1u);
}

TEST(NeighbourTable, AnswerCompletesAPendingEntry) {
  NeighbourTable t(small_config());
  t.resolve(ip(7), 0, nullptr);
  maintain(t, 0);
  EXPECT_EQ(t.learn(ip(7), mac(7), 30, false), LearnResult::kUpdated);  // solicited: not created
  net::MacAddr m;
  EXPECT_EQ(t.resolve(ip(7), 40, &m), ResolveResult::kKnown);
  EXPECT_EQ(m, mac(7));
  EXPECT_EQ(t.find(ip(7))->state, NeighState::kReachable);
  EXPECT_EQ(t.stats().mac_changed, 0u);  // filling in an incomplete entry is not a change
}

TEST(NeighbourTable, AgesToStaleAndReconfirmsOnlyWhenUsed) {
  NeighbourTable t(small_config());
  t.learn(ip(1), mac(1), 0, true);
  t.learn(ip(2), mac(2), 0, true);
  EXPECT_TRUE(maintain(t, 999).empty());
  EXPECT_EQ(t.find(ip(1))->state, NeighState::kReachable);
  EXPECT_TRUE(maintain(t, 1000).empty());
  EXPECT_EQ(t.find(ip(1))->state, NeighState::kStale);
  EXPECT_EQ(t.find(ip(2))->state, NeighState::kStale);

  ASSERT_NE(t.lookup(ip(1)), nullptr);  // stale entries still forward...
  EXPECT_EQ(maintain(t, 1010), std::vector{ip(1)});  // ...and get reconfirmed
  t.learn(ip(1), mac(1), 1020, false);
  EXPECT_EQ(t.find(ip(1))->state, NeighState::kReachable);

  // The unused stale entry is forgotten stale_ms after its last confirmation.
  EXPECT_TRUE(maintain(t, 4999).empty());
  ASSERT_NE(t.find(ip(2)), nullptr);
  maintain(t, 5000);
  EXPECT_EQ(t.find(ip(2)), nullptr);
  EXPECT_EQ(t.stats().expired, 1u);
  ASSERT_NE(t.find(ip(1)), nullptr);
}

TEST(NeighbourTable, UsedStaleEntryWithoutAnswerIsDropped) {
  NeighbourTable t(small_config());
  t.learn(ip(1), mac(1), 0, true);
  maintain(t, 1000);
  t.lookup(ip(1));
  EXPECT_EQ(maintain(t, 1000).size(), 1u);
  EXPECT_EQ(maintain(t, 1100).size(), 1u);
  EXPECT_EQ(maintain(t, 1200).size(), 1u);
  maintain(t, 1300);
  EXPECT_EQ(t.find(ip(1)), nullptr);
  EXPECT_EQ(t.stats().failed, 1u);
}

TEST(NeighbourTable, ConfirmationFromTheFutureDoesNotExpireAnEntry) {
  // A peer worker's update may carry a timestamp a little ahead of this worker's clock read.
  NeighbourTable t(small_config());
  t.learn(ip(1), mac(1), 2000, true);
  maintain(t, 1500);
  ASSERT_NE(t.find(ip(1)), nullptr);
  EXPECT_EQ(t.find(ip(1))->state, NeighState::kReachable);
}

TEST(NeighbourTable, BoundedRefusesWhenNothingIsEvictable) {
  NeighbourTable t(small_config());
  for (std::uint32_t i = 1; i <= 4; ++i) ASSERT_EQ(t.learn(ip(i), mac(static_cast<std::uint8_t>(i)), 0, true), LearnResult::kCreated);
  EXPECT_EQ(t.learn(ip(5), mac(5), 0, true), LearnResult::kTableFull);
  EXPECT_EQ(t.resolve(ip(6), 0, nullptr), ResolveResult::kTableFull);
  EXPECT_EQ(t.size(), 4u);
  EXPECT_EQ(t.stats().table_full, 2u);
}

TEST(NeighbourTable, EvictsTheOldestIdleStaleEntryWhenFull) {
  NeighbourTable t(small_config());
  t.learn(ip(1), mac(1), 0, true);
  t.learn(ip(2), mac(2), 10, true);
  t.learn(ip(3), mac(3), 20, true);
  t.learn(ip(4), mac(4), 1400, true);
  maintain(t, 1500);  // 1..3 stale, 4 reachable
  t.lookup(ip(1));    // in use: not a victim
  EXPECT_EQ(t.learn(ip(5), mac(5), 1500, true), LearnResult::kCreated);
  EXPECT_EQ(t.stats().evicted, 1u);
  EXPECT_EQ(t.find(ip(2)), nullptr);  // the oldest idle stale one went
  EXPECT_NE(t.find(ip(1)), nullptr);
  EXPECT_NE(t.find(ip(3)), nullptr);
  EXPECT_NE(t.find(ip(4)), nullptr);
  EXPECT_NE(t.find(ip(5)), nullptr);
}

TEST(NeighbourTable, ProbesBeyondTheOutputBufferWaitForTheNextCall) {
  NeighbourTable t({.capacity = 64, .reachable_ms = 1000, .stale_ms = 5000, .probe_interval_ms = 100, .max_probes = 3});
  for (std::uint32_t i = 1; i <= 10; ++i) t.resolve(ip(i), 0, nullptr);
  std::array<net::Ipv4Addr, 4> out;
  std::size_t total = 0;
  for (int call = 0; call < 3; ++call) total += t.maintain(0, out);
  EXPECT_EQ(total, 10u);
  EXPECT_EQ(t.maintain(0, out), 0u);
}

// Random operations against a std::map model: open addressing with backward-shift deletion
// must never lose or invent an entry, whatever the collision pattern.
TEST(NeighbourTable, AgreesWithAModelUnderRandomOperations) {
  NeighbourTable t({.capacity = 64, .reachable_ms = 1'000'000, .stale_ms = 2'000'000, .probe_interval_ms = 100, .max_probes = 3});
  std::map<std::uint32_t, net::MacAddr> model;
  std::mt19937 rng(99);
  for (int step = 0; step < 200000; ++step) {
    const std::uint32_t host = rng() % 200;
    const auto m = mac(static_cast<std::uint8_t>(1 + rng() % 200));
    switch (rng() % 3) {
      case 0: {
        const LearnResult r = t.learn(ip(host), m, 0, true);
        if (r == LearnResult::kCreated || r == LearnResult::kUpdated) model[host] = m;
        else ASSERT_EQ(r, LearnResult::kTableFull);
        break;
      }
      case 1:
        t.remove(ip(host));
        model.erase(host);
        break;
      default: {
        const net::MacAddr* got = t.lookup(ip(host));
        const auto it = model.find(host);
        ASSERT_EQ(got != nullptr, it != model.end()) << "step " << step;
        if (got) {
          ASSERT_EQ(*got, it->second);
        }
      }
    }
    ASSERT_EQ(t.size(), model.size());
    ASSERT_LE(t.size(), 64u);
  }
  std::size_t visited = 0;
  t.for_each([&](const neigh::NeighEntry& e) {
    ++visited;
    ASSERT_TRUE(model.count(e.ip.value & 0xffffff));
  });
  EXPECT_EQ(visited, model.size());
}
