// Tests of summing the workers' counters and of the human-readable report.

#include "controlplane/observe/counters_report.hpp"

#include <memory>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace {

using tandem::DropReason;
using tandem::Handled;
using tandem::WorkerCounters;
using tandem::observe::CounterTotals;
using tandem::observe::format_counters;
using tandem::observe::sum_counters;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::SizeIs;

constexpr std::size_t idx(DropReason r) { return static_cast<std::size_t>(r); }
constexpr std::size_t idx(Handled h) { return static_cast<std::size_t>(h); }

// Two workers with different figures on every counter the report sums.
struct TwoWorkers {
  std::unique_ptr<WorkerCounters> a = std::make_unique<WorkerCounters>();
  std::unique_ptr<WorkerCounters> b = std::make_unique<WorkerCounters>();

  TwoWorkers() {
    a->ports[0].rx_packets.add(10);
    a->ports[0].rx_bytes.add(1000);
    a->ports[0].tx_packets.add(4);
    a->ports[0].tx_bytes.add(400);
    a->ports[0].tx_dropped.add(1);
    a->ports[1].rx_packets.add(7);
    a->ports[1].rx_bytes.add(700);
    b->ports[0].rx_packets.add(5);
    b->ports[0].rx_bytes.add(300);
    b->ports[0].tx_packets.add(6);
    b->ports[0].tx_bytes.add(600);
    b->ports[0].tx_dropped.add(2);
    b->ports[1].tx_packets.add(9);
    b->ports[1].tx_bytes.add(900);
    b->ports[1].tx_dropped.add(3);
    b->ports[2].rx_packets.add(1000);  // a port past the named ones: not reported

    a->drop(DropReason::kRuntFrame, 2);
    b->drop(DropReason::kRuntFrame, 3);
    a->drop(DropReason::kIpv4BadChecksum);
    b->drop(DropReason::kNoMbuf, 4);

    a->count(Handled::kArpRepliesSent, 5);
    b->count(Handled::kArpRepliesSent, 6);
    b->count(Handled::kIcmpEchoRepliesSent, 7);

    a->polls.add(100);
    b->polls.add(200);
    a->busy_polls.add(30);
    b->busy_polls.add(40);
    a->idle_sleeps.add(1);
    b->idle_sleeps.add(2);
  }

  CounterTotals sum() const { return sum_counters({a.get(), b.get()}, {"north", "south"}); }
};

TEST(SumCounters, PortsAreSummedAcrossWorkersInOrder) {
  const TwoWorkers w;
  const CounterTotals t = w.sum();
  ASSERT_THAT(t.ports, SizeIs(2));
  EXPECT_EQ(t.ports[0].name, "north");
  EXPECT_EQ(t.ports[0].rx_packets, 15u);
  EXPECT_EQ(t.ports[0].rx_bytes, 1300u);
  EXPECT_EQ(t.ports[0].tx_packets, 10u);
  EXPECT_EQ(t.ports[0].tx_bytes, 1000u);
  EXPECT_EQ(t.ports[0].tx_dropped, 3u);
  EXPECT_EQ(t.ports[1].name, "south");
  EXPECT_EQ(t.ports[1].rx_packets, 7u);
  EXPECT_EQ(t.ports[1].rx_bytes, 700u);
  EXPECT_EQ(t.ports[1].tx_packets, 9u);
  EXPECT_EQ(t.ports[1].tx_bytes, 900u);
  EXPECT_EQ(t.ports[1].tx_dropped, 3u);
}

TEST(SumCounters, DropsHandledAndPollsAreSummed) {
  const TwoWorkers w;
  const CounterTotals t = w.sum();
  EXPECT_EQ(t.drops[idx(DropReason::kRuntFrame)], 5u);
  EXPECT_EQ(t.drops[idx(DropReason::kIpv4BadChecksum)], 1u);
  EXPECT_EQ(t.drops[idx(DropReason::kNoMbuf)], 4u);
  EXPECT_EQ(t.drops[idx(DropReason::kTxFull)], 0u);
  EXPECT_EQ(t.handled[idx(Handled::kArpRepliesSent)], 11u);
  EXPECT_EQ(t.handled[idx(Handled::kIcmpEchoRepliesSent)], 7u);
  EXPECT_EQ(t.handled[idx(Handled::kArpRequestsSent)], 0u);
  EXPECT_EQ(t.polls, 300u);
  EXPECT_EQ(t.busy_polls, 70u);
  EXPECT_EQ(t.idle_sleeps, 3u);
}

TEST(SumCounters, DropsTotalAddsEveryReason) {
  const TwoWorkers w;
  EXPECT_EQ(w.sum().drops_total(), 10u);
  EXPECT_EQ(CounterTotals{}.drops_total(), 0u);
}

TEST(SumCounters, NoWorkersGiveZerosForEachNamedPort) {
  const CounterTotals t = sum_counters({}, {"p0", "p1", "p2"});
  ASSERT_THAT(t.ports, SizeIs(3));
  EXPECT_EQ(t.ports[2].name, "p2");
  EXPECT_EQ(t.ports[2].rx_packets, 0u);
  EXPECT_EQ(t.drops_total(), 0u);
  EXPECT_EQ(t.polls, 0u);
}

TEST(SumCounters, ReadingDoesNotChangeTheWorkers) {
  const TwoWorkers w;
  (void)w.sum();
  const CounterTotals t = w.sum();
  EXPECT_EQ(t.ports[0].rx_packets, 15u);
  EXPECT_EQ(w.a->ports[0].rx_packets.get(), 10u);
}

TEST(FormatCounters, OneLinePerPortInOrderThenHandledDropsAndWorkers) {
  const TwoWorkers w;
  const std::vector<std::string> lines = format_counters(w.sum());
  ASSERT_THAT(lines, SizeIs(5));
  EXPECT_EQ(lines[0], "port north: rx 15 pkts 1300 bytes, tx 10 pkts 1000 bytes, tx dropped 3");
  EXPECT_EQ(lines[1], "port south: rx 7 pkts 700 bytes, tx 9 pkts 900 bytes, tx dropped 3");
  EXPECT_THAT(lines[2], HasSubstr("arp_replies_sent=11"));
  EXPECT_THAT(lines[2], HasSubstr("icmp_echo_replies_sent=7"));
  EXPECT_THAT(lines[2], HasSubstr("arp_requests_sent=0"));
  EXPECT_THAT(lines[3], HasSubstr("total=10"));
  EXPECT_THAT(lines[4], HasSubstr("polls=300"));
  EXPECT_THAT(lines[4], HasSubstr("busy_polls=70"));
  EXPECT_THAT(lines[4], HasSubstr("idle_sleeps=3"));
}

TEST(FormatCounters, ListsOnlyNonZeroDropReasonsByName) {
  const TwoWorkers w;
  const std::vector<std::string> lines = format_counters(w.sum());
  ASSERT_THAT(lines, SizeIs(5));
  const std::string& drops = lines[3];
  EXPECT_EQ(drops, std::string("drops: total=10 ") + tandem::to_string(DropReason::kRuntFrame) + "=5 " +
                       tandem::to_string(DropReason::kIpv4BadChecksum) + "=1 " +
                       tandem::to_string(DropReason::kNoMbuf) + "=4");
  EXPECT_EQ(drops, "drops: total=10 runt_frame=5 ipv4_bad_checksum=1 no_mbuf=4");
  for (std::size_t i = 0; i < tandem::kDropReasonCount; ++i) {
    const auto r = static_cast<DropReason>(i);
    if (r == DropReason::kRuntFrame || r == DropReason::kIpv4BadChecksum || r == DropReason::kNoMbuf) continue;
    EXPECT_THAT(drops, Not(HasSubstr(std::string(tandem::to_string(r)) + "="))) << i;
  }
}

TEST(FormatCounters, NoDropsGivesTheTotalAlone) {
  const std::vector<std::string> lines = format_counters(sum_counters({}, {"p0"}));
  EXPECT_THAT(lines, ElementsAre("port p0: rx 0 pkts 0 bytes, tx 0 pkts 0 bytes, tx dropped 0",
                                 "handled: arp_replies_sent=0 arp_replies_learnt=0 arp_requests_sent=0 "
                                 "icmp_echo_replies_sent=0 lb_new_flows=0 lb_midflow_flows=0 "
                                 "lb_stateless_forwarded=0 lb_forwarded=0 lb_replies_forwarded=0 lb_released_forwarded=0 "
                                 "lb_icmp_errors_forwarded=0 lb_frag_needed_sent=0 handed_off=0 "
                                 "ha_adverts_sent=0 ha_adverts_received=0 gratuitous_arp_sent=0",
                                 "drops: total=0", "workers: polls=0 busy_polls=0 idle_sleeps=0"));
}

}  // namespace
