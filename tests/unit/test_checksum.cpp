#include <gtest/gtest.h>

#include <random>

#include "dataplane/net/checksum.hpp"
#include "tests/unit/frames.hpp"

using namespace tandem;

TEST(Checksum, MatchesRfc1071Example) {
  // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (checksum 220d).
  const test::Bytes b = test::hex("00 01 f2 03 f4 f5 f6 f7");
  EXPECT_EQ(net::checksum_finish(net::checksum_accumulate(b.data(), b.size())), 0x220d);
}

TEST(Checksum, KnownIpv4Header) {
  // A header from the wild (Wikipedia's example): checksum b861.
  test::Bytes h = test::hex("45 00 00 73 00 00 40 00 40 11 00 00 c0 a8 00 01 c0 a8 00 c7");
  EXPECT_EQ(net::internet_checksum(h.data(), h.size()), 0xb861);
  h[10] = 0xb8;
  h[11] = 0x61;
  EXPECT_EQ(net::internet_checksum(h.data(), h.size()), 0);  // a valid header sums to zero
}

TEST(Checksum, OddLengthsAndRandomBuffersAgreeWithReference) {
  std::mt19937 rng(42);
  for (int round = 0; round < 2000; ++round) {
    test::Bytes b(rng() % 1600);
    for (auto& x : b) x = static_cast<std::uint8_t>(rng());
    ASSERT_EQ(net::internet_checksum(b.data(), b.size()), test::ref_checksum(b)) << "size " << b.size();
  }
}

TEST(Checksum, AccumulateInPiecesEqualsWhole) {
  const test::Bytes b = test::pattern(300, 3);
  const std::uint32_t part = net::checksum_accumulate(b.data(), 100);
  const std::uint32_t whole = net::checksum_accumulate(b.data() + 100, 200, part);
  EXPECT_EQ(net::checksum_finish(whole), test::ref_checksum(b));
}

TEST(Checksum, IncrementalUpdateEqualsRecomputation) {
  // RFC 1624: changing one word and updating must give what a full recomputation gives.
  std::mt19937 rng(7);
  for (int round = 0; round < 5000; ++round) {
    test::Bytes b(2 + 2 * (rng() % 40));
    for (auto& x : b) x = static_cast<std::uint8_t>(rng());
    const std::uint16_t before = test::ref_checksum(b);
    const std::size_t at = 2 * (rng() % (b.size() / 2));
    const std::uint16_t old_word = static_cast<std::uint16_t>(b[at] << 8 | b[at + 1]);
    const std::uint16_t new_word = static_cast<std::uint16_t>(rng());
    b[at] = static_cast<std::uint8_t>(new_word >> 8);
    b[at + 1] = static_cast<std::uint8_t>(new_word);
    const std::uint16_t updated = net::checksum_update16(before, old_word, new_word);
    const std::uint16_t recomputed = test::ref_checksum(b);
    // 0x0000 and 0xffff are the same number in one's complement; receivers accept either.
    if (recomputed == 0 || recomputed == 0xffff) {
      ASSERT_TRUE(updated == 0 || updated == 0xffff);
    } else {
      ASSERT_EQ(updated, recomputed);
    }
  }
}
