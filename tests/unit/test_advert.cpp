// The HA advert codec (controlplane/ha/advert.*): the documented layout byte for byte, round
// trips, every refusal reason counted, replays across paths and restarts, and mutated messages.
#include "controlplane/ha/advert.hpp"

#include <gtest/gtest.h>

#include <random>

namespace {

using tandem::ha::Advert;
using tandem::ha::AdvertError;
using tandem::ha::Decoder;
using tandem::ha::GroupState;
using tandem::ha::Path;
using tandem::ha::Role;

const std::vector<std::uint8_t> kKey(32, 0x5a);
const std::vector<std::uint8_t> kOtherKey(32, 0xa5);

Advert sample(std::uint64_t sequence = 1, std::uint64_t epoch = 0x1122334455667788ull) {
  Advert a;
  a.unit_id = 2;
  a.ready = true;
  a.epoch = epoch;
  a.sequence = sequence;
  a.groups = {{1, 200, Role::kActive}, {7, 0, Role::kMaintenance}};
  return a;
}

std::vector<std::uint8_t> bytes(const Advert& a, const std::vector<std::uint8_t>& key = kKey) {
  std::vector<std::uint8_t> out;
  tandem::ha::encode(a, key, out);
  return out;
}

AdvertError refusal(Decoder& d, const std::vector<std::uint8_t>& m, Path p = Path::kSync) {
  AdvertError e = AdvertError::kCount;
  EXPECT_FALSE(d.decode(p, m, &e).has_value());
  return e;
}

TEST(Advert, LayoutIsTheDocumentedOne) {
  const auto m = bytes(sample(0x0102030405060708ull));
  ASSERT_EQ(m.size(), 32u + 2 * 4 + 32);
  const std::vector<std::uint8_t> header = {'T', 'D', 'H', 'A', 1, 2, 0x01, 0,     //
                                            0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,  //
                                            1, 2, 3, 4, 5, 6, 7, 8,                    //
                                            0, 2, 0, 0, 0, 0, 0, 0,                    //
                                            1, 200, 2, 0, 7, 0, 3, 0};
  EXPECT_EQ(std::vector<std::uint8_t>(m.begin(), m.begin() + 40), header);
}

TEST(Advert, RoundTripOnBothPaths) {
  Decoder d(1, kKey);
  const Advert a = sample();
  const auto got = d.decode(Path::kSync, bytes(a));
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, a);
  // The data path carries the same sequence numbers: the same advert is accepted there too.
  EXPECT_TRUE(d.decode(Path::kData, bytes(a)));
  EXPECT_EQ(d.accepted(), 2u);
  Advert none = sample(2);
  none.groups.clear();
  none.ready = false;
  const auto empty = d.decode(Path::kSync, bytes(none));
  ASSERT_TRUE(empty);
  EXPECT_EQ(*empty, none);
}

TEST(Advert, EveryRefusalIsCountedByReason) {
  Decoder d(1, kKey);
  const auto good = bytes(sample());
  EXPECT_EQ(refusal(d, {}), AdvertError::kTooShort);
  EXPECT_EQ(refusal(d, std::vector<std::uint8_t>(good.begin(), good.begin() + 63)), AdvertError::kTooShort);
  auto m = good;
  m[0] = 'X';
  EXPECT_EQ(refusal(d, m), AdvertError::kBadMagic);
  m = good;
  m[4] = 2;
  EXPECT_EQ(refusal(d, m), AdvertError::kBadVersion);
  m = good;
  m[25] = 3;  // says three groups, carries two
  EXPECT_EQ(refusal(d, m), AdvertError::kBadLength);
  m = good;
  m.push_back(0);
  EXPECT_EQ(refusal(d, m), AdvertError::kBadLength);
  m = good;
  m[33] ^= 1;  // a group's priority altered
  EXPECT_EQ(refusal(d, m), AdvertError::kBadAuth);
  EXPECT_EQ(refusal(d, bytes(sample(), kOtherKey)), AdvertError::kBadAuth);
  // Fields out of range are refused even when authenticated (a peer of another version).
  Advert bad_role = sample();
  bad_role.groups[0].role = static_cast<Role>(9);
  EXPECT_EQ(refusal(d, bytes(bad_role)), AdvertError::kBadField);
  Advert unit0 = sample();
  unit0.unit_id = 0;
  EXPECT_EQ(refusal(d, bytes(unit0)), AdvertError::kBadField);
  Advert mine = sample();
  mine.unit_id = 1;
  EXPECT_EQ(refusal(d, bytes(mine)), AdvertError::kOwnUnit);

  const auto& e = d.errors();
  EXPECT_EQ(e[static_cast<std::size_t>(AdvertError::kTooShort)], 2u);
  EXPECT_EQ(e[static_cast<std::size_t>(AdvertError::kBadMagic)], 1u);
  EXPECT_EQ(e[static_cast<std::size_t>(AdvertError::kBadVersion)], 1u);
  EXPECT_EQ(e[static_cast<std::size_t>(AdvertError::kBadLength)], 2u);
  EXPECT_EQ(e[static_cast<std::size_t>(AdvertError::kBadAuth)], 2u);
  EXPECT_EQ(e[static_cast<std::size_t>(AdvertError::kBadField)], 2u);
  EXPECT_EQ(e[static_cast<std::size_t>(AdvertError::kOwnUnit)], 1u);
  EXPECT_EQ(d.accepted(), 0u);
  EXPECT_STREQ(tandem::ha::to_string(AdvertError::kBadAuth), "bad_auth");
}

TEST(Advert, ReplaysAreRefusedPerPathAndAcrossRestarts) {
  Decoder d(1, kKey);
  ASSERT_TRUE(d.decode(Path::kSync, bytes(sample(5))));
  EXPECT_EQ(refusal(d, bytes(sample(5))), AdvertError::kReplayed);
  EXPECT_EQ(refusal(d, bytes(sample(4))), AdvertError::kReplayed);
  EXPECT_TRUE(d.decode(Path::kData, bytes(sample(4)))) << "each path has its own high-water mark";
  EXPECT_TRUE(d.decode(Path::kSync, bytes(sample(9)))) << "gaps are losses, not errors";
  // The peer restarts: a new epoch, sequence from 1, accepted; the old epoch never again.
  EXPECT_TRUE(d.decode(Path::kSync, bytes(sample(1, 42))));
  EXPECT_TRUE(d.decode(Path::kData, bytes(sample(1, 42))));
  EXPECT_EQ(refusal(d, bytes(sample(10))), AdvertError::kReplayed);
  EXPECT_EQ(refusal(d, bytes(sample(1000))), AdvertError::kReplayed);
  // Many restarts later, the first epochs are still refused (the last 16 are remembered).
  for (std::uint64_t epoch = 100; epoch < 114; ++epoch) ASSERT_TRUE(d.decode(Path::kSync, bytes(sample(1, epoch))));
  EXPECT_EQ(refusal(d, bytes(sample(2, 42))), AdvertError::kReplayed);
  EXPECT_EQ(d.errors()[static_cast<std::size_t>(AdvertError::kReplayed)], 5u);
}

// Mutations of a valid message (bit flips, truncation, extension, random bytes) are refused
// with a reason, never accepted, never crash (run under ASan/UBSan in CI).
TEST(Advert, MutatedMessagesAreRefused) {
  std::mt19937_64 rng(11);
  const auto good = bytes(sample(1));
  std::uint64_t refused = 0;
  for (int i = 0; i < 20000; ++i) {
    Decoder d(1, kKey);
    auto m = good;
    switch (rng() % 4) {
      case 0:  // flip 1..3 bits
        for (int k = 0, n = 1 + static_cast<int>(rng() % 3); k < n; ++k) m[rng() % m.size()] ^= 1u << (rng() % 8);
        break;
      case 1:
        m.resize(rng() % m.size());
        break;
      case 2:
        for (int k = 0, n = 1 + static_cast<int>(rng() % 8); k < n; ++k) m.push_back(static_cast<std::uint8_t>(rng()));
        break;
      default:
        for (auto& b : m) b = static_cast<std::uint8_t>(rng());
        break;
    }
    if (m == good) {  // two flips of one bit: the original, rightly accepted
      ++refused;
      continue;
    }
    AdvertError e = AdvertError::kCount;
    const auto got = d.decode(Path::kData, m, &e);
    ASSERT_FALSE(got) << "mutation " << i << " accepted";
    ASSERT_NE(e, AdvertError::kCount);
    ++refused;
  }
  EXPECT_EQ(refused, 20000u);
}

TEST(Advert, AtMostSixtyFourGroups) {
  Advert a = sample();
  a.groups.assign(70, GroupState{3, 100, Role::kStandby});
  const auto m = bytes(a);
  EXPECT_EQ(m.size(), tandem::ha::kMaxAdvertBytes);
  Decoder d(1, kKey);
  const auto got = d.decode(Path::kSync, m);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->groups.size(), 64u);
}

}  // namespace
