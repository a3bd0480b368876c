#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "dataplane/lb/hash.hpp"
#include "dataplane/lb/maglev.hpp"

using namespace tandem;
using lb::build_maglev;
using lb::MaglevBackend;
using lb::MaglevTable;

namespace {

constexpr std::uint32_t kNo = MaglevTable::kNoBackend;
constexpr std::uint32_t kM = lb::kMaglevDefaultSize;

// Backends 10.0.0.1:80, 10.0.0.2:80, ...
std::vector<MaglevBackend> backends(std::size_t n, std::uint32_t weight = 1, std::uint32_t first_host = 1) {
  std::vector<MaglevBackend> v;
  for (std::size_t i = 0; i < n; ++i)
    v.push_back({lb::maglev_key(net::Ipv4Addr{0x0a000000u + first_host + static_cast<std::uint32_t>(i)}, 80), weight});
  return v;
}

std::vector<MaglevBackend> weighted(const std::vector<std::uint32_t>& weights) {
  auto v = backends(weights.size());
  for (std::size_t i = 0; i < weights.size(); ++i) v[i].weight = weights[i];
  return v;
}

MaglevTable build(const std::vector<MaglevBackend>& b, std::uint32_t size = kM) {
  std::string error;
  auto t = build_maglev(b, size, &error);
  if (!t) throw std::runtime_error("build_maglev failed: " + error);
  return *t;
}

std::string build_error(const std::vector<MaglevBackend>& b, std::uint32_t size) {
  std::string error;
  EXPECT_FALSE(build_maglev(b, size, &error).has_value());
  return error;
}

// Slot -> backend key: what must agree between units, whatever the order of their lists.
std::vector<std::string> keys_by_slot(const MaglevTable& t, const std::vector<MaglevBackend>& b) {
  std::vector<std::string> keys;
  for (const std::uint32_t s : t.slots()) keys.push_back(s == kNo ? "-" : b.at(s).key);
  return keys;
}

// Every backend's slot count is within `tolerance` (a fraction) of its weight's share of
// `size`, or within one slot where that share is too small for a fraction to be met in whole
// slots; weight 0 gets none.
void expect_proportional(const std::vector<MaglevBackend>& b, std::uint32_t size, double tolerance) {
  const MaglevTable t = build(b, size);
  const std::vector<std::uint32_t> counts = lb::slot_counts(t);
  ASSERT_EQ(counts.size(), b.size());
  std::uint64_t total_weight = 0;
  for (const auto& x : b) total_weight += x.weight;
  EXPECT_EQ(std::accumulate(counts.begin(), counts.end(), std::uint64_t{0}), size);
  for (std::size_t i = 0; i < b.size(); ++i) {
    if (b[i].weight == 0) {
      EXPECT_EQ(counts[i], 0u) << b[i].key;
      continue;
    }
    const double share = static_cast<double>(size) * b[i].weight / static_cast<double>(total_weight);
    EXPECT_LE(std::abs(counts[i] - share), std::max(1.0, tolerance * share))
        << b[i].key << " weight " << b[i].weight << " has " << counts[i] << " slots, share " << share;
  }
}

// The fraction of the table that moved from one backend to another although both have weight
// > 0 before and after: churn beyond what the change itself requires.
double moved_between_survivors(const MaglevTable& before, const std::vector<MaglevBackend>& b_before,
                               const MaglevTable& after, const std::vector<MaglevBackend>& b_after) {
  // Index in b_before -> index in b_after of the same key, when it has weight > 0 in both.
  std::vector<std::uint32_t> survivor(b_before.size(), kNo);
  std::vector<bool> survives_after(b_after.size(), false);
  for (std::uint32_t i = 0; i < b_before.size(); ++i)
    for (std::uint32_t j = 0; j < b_after.size(); ++j)
      if (b_before[i].key == b_after[j].key && b_before[i].weight > 0 && b_after[j].weight > 0) {
        survivor[i] = j;
        survives_after[j] = true;
      }
  std::size_t moved = 0;
  for (std::uint32_t s = 0; s < before.size(); ++s) {
    const std::uint32_t x = before.slots()[s];
    const std::uint32_t y = after.slots()[s];
    if (x != kNo && y != kNo && survivor[x] != kNo && survives_after[y] && survivor[x] != y) ++moved;
  }
  return static_cast<double>(moved) / before.size();
}

// The table straight from the definitions, written for clarity rather than speed: each turn
// scans all backends for the earliest due time (exact rational comparison), and each backend's
// permutation is computed as the paper writes it, (offset + j * skip) mod M.
std::vector<std::uint32_t> reference_table(const std::vector<MaglevBackend>& b, std::uint32_t m) {
  __extension__ using u128 = unsigned __int128;
  struct Ref {
    std::uint32_t index;
    std::uint64_t offset, skip, weight;
    std::uint64_t j = 0, turns = 0;
  };
  std::vector<Ref> refs;
  for (std::uint32_t i = 0; i < b.size(); ++i) {
    if (b[i].weight == 0) continue;
    refs.push_back({i, lb::siphash24(lb::kMaglevOffsetKey, b[i].key) % m,
                    lb::siphash24(lb::kMaglevSkipKey, b[i].key) % (m - 1) + 1, b[i].weight});
  }
  std::vector<std::uint32_t> table(m, kNo);
  if (refs.empty()) return table;
  // Due at 0 for the first turn, then (2k + 1) / w; ties: heavier, then smaller key.
  const auto due_before = [&](const Ref& x, const Ref& y) {
    const u128 nx = x.turns == 0 ? 0 : 2 * x.turns + 1;
    const u128 ny = y.turns == 0 ? 0 : 2 * y.turns + 1;
    if (nx * y.weight != ny * x.weight) return nx * y.weight < ny * x.weight;
    if (x.weight != y.weight) return x.weight > y.weight;
    return b[x.index].key < b[y.index].key;
  };
  for (std::uint32_t filled = 0; filled < m; ++filled) {
    Ref* r = &refs[0];
    for (Ref& c : refs)
      if (due_before(c, *r)) r = &c;
    std::uint64_t slot = (r->offset + r->j * r->skip) % m;
    while (table[slot] != kNo) slot = (r->offset + ++r->j * r->skip) % m;
    table[slot] = r->index;
    ++r->j;
    ++r->turns;
  }
  return table;
}

}  // namespace

// ---- Hashes ------------------------------------------------------------------------------

// The reference implementation's vectors (vectors.h, vectors_sip64): key 00 01 .. 0f, message
// 00 01 .. (n-1) for n = 0..63.
TEST(SipHash, MatchesTheReferenceVectors) {
  static constexpr std::uint64_t kExpected[64] = {
      0x726fdb47dd0e0e31, 0x74f839c593dc67fd, 0x0d6c8009d9a94f5a, 0x85676696d7fb7e2d,
      0xcf2794e0277187b7, 0x18765564cd99a68d, 0xcbc9466e58fee3ce, 0xab0200f58b01d137,
      0x93f5f5799a932462, 0x9e0082df0ba9e4b0, 0x7a5dbbc594ddb9f3, 0xf4b32f46226bada7,
      0x751e8fbc860ee5fb, 0x14ea5627c0843d90, 0xf723ca908e7af2ee, 0xa129ca6149be45e5,
      0x3f2acc7f57c29bdb, 0x699ae9f52cbe4794, 0x4bc1b3f0968dd39c, 0xbb6dc91da77961bd,
      0xbed65cf21aa2ee98, 0xd0f2cbb02e3b67c7, 0x93536795e3a33e88, 0xa80c038ccd5ccec8,
      0xb8ad50c6f649af94, 0xbce192de8a85b8ea, 0x17d835b85bbb15f3, 0x2f2e6163076bcfad,
      0xde4daaaca71dc9a5, 0xa6a2506687956571, 0xad87a3535c49ef28, 0x32d892fad841c342,
      0x7127512f72f27cce, 0xa7f32346f95978e3, 0x12e0b01abb051238, 0x15e034d40fa197ae,
      0x314dffbe0815a3b4, 0x027990f029623981, 0xcadcd4e59ef40c4d, 0x9abfd8766a33735c,
      0x0e3ea96b5304a7d0, 0xad0c42d6fc585992, 0x187306c89bc215a9, 0xd4a60abcf3792b95,
      0xf935451de4f21df2, 0xa9538f0419755787, 0xdb9acddff56ca510, 0xd06c98cd5c0975eb,
      0xe612a3cb9ecba951, 0xc766e62cfcadaf96, 0xee64435a9752fe72, 0xa192d576b245165a,
      0x0a8787bf8ecb74b2, 0x81b3e73d20b49b6f, 0x7fa8220ba3b2ecea, 0x245731c13ca42499,
      0xb78dbfaf3a8d83bd, 0xea1ad565322a1a0b, 0x60e61c23a3795013, 0x6606d7e446282b93,
      0x6ca4ecb15c5f91e1, 0x9f626da15c9625f3, 0xe51b38608ef25f57, 0x958a324ceb064572,
  };
  const lb::SipKey key{0x0706050403020100ull, 0x0f0e0d0c0b0a0908ull};
  std::array<std::uint8_t, 64> message;
  std::iota(message.begin(), message.end(), std::uint8_t{0});
  for (std::size_t n = 0; n < 64; ++n) EXPECT_EQ(lb::siphash24(key, message.data(), n), kExpected[n]) << "length " << n;
  // At an odd address too: the words are assembled from bytes, never loaded aligned.
  std::array<std::uint8_t, 65> shifted{};
  std::copy(message.begin(), message.end(), shifted.begin() + 1);
  EXPECT_EQ(lb::siphash24(key, shifted.data() + 1, 63), kExpected[63]);
}

TEST(SipHash, KeyFromTextIsLittleEndianBytes) {
  constexpr lb::SipKey k = lb::sip_key_from_text("\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f");
  EXPECT_EQ(k.k0, 0x0706050403020100ull);
  EXPECT_EQ(k.k1, 0x0f0e0d0c0b0a0908ull);
}

// Pinned values: a change here re-maps every flow, and two units running different versions
// would send the same flow to different backends. Change only on purpose.
TEST(FlowHash, GoldenValues) {
  static_assert(lb::flow_hash(0x0a000001u, 0xc0a80001u, 40000, 80, 6) == 0xfde109a9u);
  EXPECT_EQ(lb::flow_hash(0x0a000001u, 0xc0a80001u, 40001, 80, 6), 0x6f533601u);
  EXPECT_EQ(lb::flow_hash(0x0a000001u, 0xc0a80001u, 40000, 80, 17), 0xce2f2ebau);
  EXPECT_EQ(lb::flow_hash(0, 0, 0, 0, 0), 0x6393d51cu);
  EXPECT_EQ(lb::flow_hash(0xffffffffu, 0xffffffffu, 65535, 65535, 255), 0xed6d1e2du);
}

// Flipping any one input bit flips about half of the 32 output bits.
TEST(FlowHash, EveryInputBitAvalanches) {
  std::mt19937_64 rng(7);
  constexpr int kSamples = 2000;
  for (int bit = 0; bit < 32 + 32 + 16 + 16 + 8; ++bit) {
    std::uint64_t flipped = 0;
    for (int i = 0; i < kSamples; ++i) {
      std::uint32_t f[5] = {static_cast<std::uint32_t>(rng()), static_cast<std::uint32_t>(rng()),
                            static_cast<std::uint32_t>(rng() & 0xffff), static_cast<std::uint32_t>(rng() & 0xffff),
                            static_cast<std::uint32_t>(rng() & 0xff)};
      const auto h = [&] {
        return lb::flow_hash(f[0], f[1], static_cast<std::uint16_t>(f[2]), static_cast<std::uint16_t>(f[3]),
                             static_cast<std::uint8_t>(f[4]));
      };
      const std::uint32_t a = h();
      if (bit < 32) f[0] ^= 1u << bit;
      else if (bit < 64) f[1] ^= 1u << (bit - 32);
      else if (bit < 80) f[2] ^= 1u << (bit - 64);
      else if (bit < 96) f[3] ^= 1u << (bit - 80);
      else f[4] ^= 1u << (bit - 96);
      flipped += static_cast<std::uint64_t>(std::popcount(a ^ h()));
    }
    const double mean = static_cast<double>(flipped) / kSamples;
    EXPECT_GT(mean, 15.0) << "input bit " << bit;
    EXPECT_LT(mean, 17.0) << "input bit " << bit;
  }
}

namespace {

// Chi-square statistic of hashes over 64 buckets, three ways: low bits, high bits, and which
// 1/64 of a default-size Maglev table the flow's slot falls in.
std::array<double, 3> chi_square_64(const std::vector<std::uint32_t>& hashes) {
  std::array<std::array<double, 64>, 3> buckets{};
  for (const std::uint32_t h : hashes) {
    buckets[0][h & 63] += 1;
    buckets[1][h >> 26] += 1;
    buckets[2][(h % kM) * 64 / kM] += 1;
  }
  const double expected = static_cast<double>(hashes.size()) / 64;
  std::array<double, 3> chi{};
  for (int k = 0; k < 3; ++k)
    for (const double n : buckets[k]) chi[k] += (n - expected) * (n - expected) / expected;
  return chi;
}

}  // namespace

// Sequential and strided inputs (a port scan, a /16 of clients, ports a stride apart) spread
// evenly: chi-square with 63 degrees of freedom stays below 120 (p ~ 1e-5 for a random hash).
// An identity-like hash passes low-bit buckets on sequential input, so high bits and table
// ranges are checked too, and strides defeat low-bit balance.
TEST(FlowHash, SpreadsSequentialAndStridedInput) {
  const std::uint32_t client = 0x0a010203, vip = 0xc0a80001;
  struct Case {
    const char* name;
    std::vector<std::uint32_t> hashes;
  };
  std::vector<Case> cases(5);
  cases[0].name = "source ports 0..65535";
  cases[1].name = "source addresses of a /16";
  cases[2].name = "destination ports 0..65535";
  cases[3].name = "source ports 64 apart";
  cases[4].name = "source addresses 256 apart";
  for (std::uint32_t i = 0; i < 65536; ++i) {
    const auto p = static_cast<std::uint16_t>(i);
    cases[0].hashes.push_back(lb::flow_hash(client, vip, p, 80, 6));
    cases[1].hashes.push_back(lb::flow_hash(0x0a010000u + i, vip, 40000, 80, 6));
    cases[2].hashes.push_back(lb::flow_hash(client, vip, 40000, p, 17));
    cases[4].hashes.push_back(lb::flow_hash(0x0a000000u + (i << 8), vip, 40000, 80, 6));
  }
  for (std::uint32_t i = 0; i < 65536; i += 64)
    for (std::uint16_t sub = 0; sub < 16; ++sub)  // 16 clients, 1024 ports each
      cases[3].hashes.push_back(lb::flow_hash(client + sub, vip, static_cast<std::uint16_t>(i), 443, 6));
  for (const Case& c : cases) {
    const auto chi = chi_square_64(c.hashes);
    EXPECT_LT(chi[0], 120.0) << c.name << " (low bits)";
    EXPECT_LT(chi[1], 120.0) << c.name << " (high bits)";
    EXPECT_LT(chi[2], 120.0) << c.name << " (table ranges)";
  }
}

// ---- is_prime ----------------------------------------------------------------------------

TEST(IsPrime, AgreesWithASieve) {
  constexpr std::size_t kLimit = 1 << 20;
  std::vector<bool> composite(kLimit, false);
  composite[0] = composite[1] = true;
  for (std::size_t i = 2; i * i < kLimit; ++i)
    if (!composite[i])
      for (std::size_t j = i * i; j < kLimit; j += i) composite[j] = true;
  for (std::size_t n = 0; n < kLimit; ++n) ASSERT_EQ(lb::is_prime(n), !composite[n]) << n;
}

TEST(IsPrime, LargeValuesAndPseudoprimes) {
  for (const std::uint64_t p : {65537ull, 655373ull, 2147483647ull, 4294967291ull, 2305843009213693951ull,
                                18446744073709551557ull})
    EXPECT_TRUE(lb::is_prime(p)) << p;
  for (const std::uint64_t c : {
           4294967297ull,            // 2^32 + 1 = 641 * 6700417
           3215031751ull,            // strong pseudoprime to bases 2, 3, 5, 7
           3825123056546413051ull,   // strong pseudoprime to bases 2 .. 23
           18446744030759878681ull,  // 4294967291^2
           18446744073709551615ull,  // 2^64 - 1
       })
    EXPECT_FALSE(lb::is_prime(c)) << c;
}

TEST(IsPrime, MaxSizeIsTheFirstPrimeAbove2To24) {
  EXPECT_TRUE(lb::is_prime(lb::kMaglevMaxSize));
  for (std::uint64_t n = (1u << 24); n < lb::kMaglevMaxSize; ++n) EXPECT_FALSE(lb::is_prime(n)) << n;
  EXPECT_TRUE(lb::is_prime(kM));
}

// ---- Building ----------------------------------------------------------------------------

TEST(Maglev, KeyIsAddressColonPort) {
  EXPECT_EQ(lb::maglev_key(*net::Ipv4Addr::parse("10.0.0.5"), 80), "10.0.0.5:80");
  EXPECT_EQ(lb::maglev_key(*net::Ipv4Addr::parse("192.168.100.254"), 65535), "192.168.100.254:65535");
}

TEST(Maglev, MatchesAStraightforwardReference) {
  const std::vector<std::pair<std::vector<MaglevBackend>, std::uint32_t>> cases = {
      {backends(7), 1009},
      {backends(13), kM},
      {weighted({1, 2, 3, 5, 8, 13, 0, 21, 34, 2, 2, 1}), kM},
      {weighted({4000000000u, 4000000001u, 1, 4294967295u, 2000000000u}), 10007},
      {weighted({3, 3, 3, 1, 1, 6}), 2},   // fewer slots than backends with weight > 0 is refused...
      {weighted({7, 7, 1}), 3},            // ...equal is fine: one slot each
      {weighted({5}), 2},
  };
  for (const auto& [b, m] : cases) {
    std::string error;
    const auto t = build_maglev(b, m, &error);
    const std::size_t active = static_cast<std::size_t>(
        std::count_if(b.begin(), b.end(), [](const MaglevBackend& x) { return x.weight > 0; }));
    if (active > m) {
      EXPECT_FALSE(t.has_value());
      continue;
    }
    ASSERT_TRUE(t.has_value()) << error;
    EXPECT_EQ(t->slots(), reference_table(b, m)) << b.size() << " backends, M = " << m;
  }
}

TEST(Maglev, SameInputGivesTheSameTableInAnyOrder) {
  const auto original = weighted({1, 2, 3, 4, 0, 5, 6, 7, 8, 9, 10, 1, 1, 1});
  auto b = original;
  const MaglevTable first = build(b);
  EXPECT_TRUE(build(b) == first);
  const auto keys = keys_by_slot(first, b);
  std::mt19937 rng(1);
  for (int round = 0; round < 5; ++round) {
    std::shuffle(b.begin(), b.end(), rng);
    const MaglevTable shuffled = build(b);
    EXPECT_EQ(keys_by_slot(shuffled, b), keys) << "shuffle " << round;
    EXPECT_EQ(lb::changed_fraction(first, original, shuffled, b), 0.0);
  }
}

// Pinned: the table of a fixed config. A change re-maps flows between versions; see FlowHash.
TEST(Maglev, GoldenTable) {
  std::vector<MaglevBackend> b = backends(10);
  for (std::size_t i = 0; i < b.size(); ++i) b[i].weight = 1 + i % 3;
  const MaglevTable t = build(b);
  std::uint64_t fingerprint = 0;
  for (const std::uint32_t s : t.slots()) fingerprint = lb::fmix64(fingerprint ^ s);
  EXPECT_EQ(fingerprint, 0x6c3ecaf6ad56e2dfull);
  EXPECT_EQ(std::vector<std::uint32_t>(t.slots().begin(), t.slots().begin() + 12),
            (std::vector<std::uint32_t>{2, 2, 2, 2, 8, 0, 9, 4, 4, 7, 5, 9}));
  EXPECT_EQ(lb::slot_counts(t),
            (std::vector<std::uint32_t>{3449, 6899, 10348, 3449, 6899, 10348, 3449, 6899, 10348, 3449}));
}

TEST(Maglev, LookupIsTheSlotOfHashModSize) {
  std::mt19937 rng(3);
  for (const std::uint32_t m : {2u, 3u, 251u, kM, 1000003u}) {
    const MaglevTable t = build(backends(std::min<std::uint32_t>(m, 7)), m);
    ASSERT_EQ(t.size(), m);
    std::vector<std::uint32_t> hashes = {0, 1, m - 1, m, m + 1, 7 * m, UINT32_MAX, UINT32_MAX - 1,
                                         UINT32_MAX - m, UINT32_MAX / m * m, UINT32_MAX / m * m - 1};
    for (int i = 0; i < 100000; ++i) hashes.push_back(static_cast<std::uint32_t>(rng()));
    for (const std::uint32_t h : hashes) ASSERT_EQ(t.lookup(h), t.slots()[h % m]) << "hash " << h << " M " << m;
  }
}

// ---- Distribution ------------------------------------------------------------------------

TEST(Maglev, EqualWeightsSplitEvenly) {
  for (const std::size_t n : {1u, 3u, 10u, 100u}) {
    const MaglevTable t = build(backends(n));
    const auto counts = lb::slot_counts(t);
    const auto [lo, hi] = std::minmax_element(counts.begin(), counts.end());
    EXPECT_LE(*hi - *lo, 1u) << n << " backends";  // round robin: whole rounds plus a partial one
    expect_proportional(backends(n), kM, 0.01);
  }
}

TEST(Maglev, UnequalWeightsSplitInProportion) {
  expect_proportional(weighted({1, 2, 3, 4}), kM, 0.01);
  expect_proportional(weighted({1, 10}), kM, 0.01);
  expect_proportional(weighted({3, 0, 1, 0, 2}), kM, 0.01);
  expect_proportional(weighted({100, 100, 100, 1}), kM, 0.01);
  std::mt19937 rng(5);
  std::vector<std::uint32_t> w(100);
  for (auto& x : w) x = 1 + rng() % 100;
  expect_proportional(weighted(w), kM, 0.01);
  for (auto& x : w) x = 1000 + rng() % 1000;  // all different: the worst case for the build
  expect_proportional(weighted(w), kM, 0.01);
}

TEST(Maglev, VeryLargeWeightsDoNotOverflow) {
  expect_proportional(weighted({UINT32_MAX, UINT32_MAX - 1, UINT32_MAX / 2, UINT32_MAX / 4}), kM, 0.01);
  expect_proportional(weighted({UINT32_MAX, 1000000000u, 3}), kM, 0.01);
}

// A backend with weight > 0 always takes its first turn, so it is never silently starved.
TEST(Maglev, EveryBackendWithWeightGetsASlot) {
  const auto b = weighted({UINT32_MAX, 1, 1, UINT32_MAX});
  const auto counts = lb::slot_counts(build(b));
  EXPECT_EQ(counts[1], 1u);
  EXPECT_EQ(counts[2], 1u);
  EXPECT_EQ(counts[0] + counts[3], kM - 2);
}

// ---- Disruption --------------------------------------------------------------------------

// Removing one of N frees its ~1/N of the slots; Maglev moves a little more (the last slots to
// fill cascade), about 0.6% of the table at M = 65537 whatever N. Tried for every backend.
TEST(Maglev, RemovingOneOfNMovesAboutOneNth) {
  for (const std::size_t n : {10u, 100u}) {
    const auto all = backends(n);
    const MaglevTable t = build(all);
    double worst = 0, worst_churn = 0;
    for (std::size_t r = 0; r < n; ++r) {
      auto fewer = all;
      fewer.erase(fewer.begin() + static_cast<std::ptrdiff_t>(r));
      const MaglevTable t2 = build(fewer);
      worst = std::max(worst, lb::changed_fraction(t, all, t2, fewer));
      worst_churn = std::max(worst_churn, moved_between_survivors(t, all, t2, fewer));
    }
    const double bound = n == 10 ? 1.15 : 2.0;  // measured at worst: 1.02/N and 1.65/N
    EXPECT_GE(worst, 1.0 / static_cast<double>(n) - 1.0 / kM) << n;
    EXPECT_LE(worst, bound / static_cast<double>(n)) << n << " backends";
    EXPECT_LE(worst_churn, 0.01) << n << " backends";  // measured: 0.25% and 0.64%
  }
}

TEST(Maglev, AddingOneMovesAboutOneNth) {
  for (const std::size_t n : {10u, 100u}) {
    const auto all = backends(n);
    const MaglevTable t = build(all);
    for (std::uint32_t extra = 0; extra < 10; ++extra) {
      auto more = all;
      more.push_back({lb::maglev_key(net::Ipv4Addr{0x0b000000u + extra}, 80), 1});
      const MaglevTable t2 = build(more);
      const double moved = lb::changed_fraction(t, all, t2, more);
      const double share = 1.0 / static_cast<double>(n + 1);
      EXPECT_LE(moved, (n == 10 ? 1.15 : 2.0) * share) << n << " + 1";  // measured at worst: 1.04 and 1.63
      EXPECT_NEAR(lb::slot_counts(t2).back(), share * kM, 1.0);
      EXPECT_LE(moved_between_survivors(t, all, t2, more), 0.01);
    }
  }
}

TEST(Maglev, ChangingAWeightMovesAboutItsShare) {
  for (const std::size_t n : {10u, 100u}) {
    const auto before = backends(n);
    const MaglevTable t = build(before);
    for (const std::uint32_t w : {2u, 3u}) {
      auto after = before;
      after[n / 2].weight = w;
      const MaglevTable t2 = build(after);
      // The least that can change: the backend's gain in share. Allowed on top: the cascade
      // (measured: 10 backends 0.0834 for 0.0818 minimal, 100 backends 0.0154 for 0.0098).
      const double minimal = w / static_cast<double>(n - 1 + w) - 1.0 / static_cast<double>(n);
      const double moved = lb::changed_fraction(t, before, t2, after);
      EXPECT_GE(moved, minimal - 1.0 / kM);
      EXPECT_LE(moved, minimal * 1.1 + 0.007) << n << " backends, weight 1 -> " << w;
    }
  }
}

// Drain: weight 0 takes no slots and leaves every other slot where it would be without it.
TEST(Maglev, DrainedBackendHasNoSlotsAndOthersKeepTheirs) {
  auto b = backends(20);
  const MaglevTable active = build(b);
  b[7].weight = 0;
  const MaglevTable drained = build(b);
  EXPECT_EQ(lb::slot_counts(drained)[7], 0u);
  auto without = b;
  without.erase(without.begin() + 7);
  EXPECT_EQ(lb::changed_fraction(drained, b, build(without), without), 0.0);
  EXPECT_LE(lb::changed_fraction(active, backends(20), drained, b), 2.0 / 20);
  EXPECT_LE(moved_between_survivors(active, backends(20), drained, b), 0.01);
}

// ---- Edge cases --------------------------------------------------------------------------

TEST(Maglev, NoBackendsOrAllDrainedMapEverySlotToNoBackend) {
  for (const auto& b : {std::vector<MaglevBackend>{}, backends(5, 0)}) {
    const MaglevTable t = build(b, 251);
    EXPECT_EQ(t.size(), 251u);
    EXPECT_EQ(t.backend_count(), b.size());
    EXPECT_TRUE(std::all_of(t.slots().begin(), t.slots().end(), [](std::uint32_t s) { return s == kNo; }));
    EXPECT_EQ(t.lookup(12345), kNo);
    EXPECT_EQ(lb::slot_counts(t), std::vector<std::uint32_t>(b.size(), 0));
  }
}

TEST(Maglev, OneBackendGetsEverySlot) {
  auto b = backends(3, 0);
  b[1].weight = 9;
  const MaglevTable t = build(b);
  EXPECT_TRUE(std::all_of(t.slots().begin(), t.slots().end(), [](std::uint32_t s) { return s == 1; }));
}

TEST(Maglev, SizeMustBePrime) {
  for (const std::uint32_t m : {0u, 1u, 4u, 561u, 65535u, 65536u}) {
    EXPECT_EQ(build_error(backends(1), m), "maglev table size " + std::to_string(m) + " is not prime");
  }
}

TEST(Maglev, SizeAboveTheMaximumIsRefused) {
  std::uint32_t next_prime = lb::kMaglevMaxSize + 1;
  while (!lb::is_prime(next_prime)) ++next_prime;
  EXPECT_NE(build_error(backends(1), next_prime).find("above the maximum"), std::string::npos);
}

TEST(Maglev, SizeSmallerThanTheActiveBackendsIsRefused) {
  EXPECT_EQ(build_error(backends(5), 3), "maglev table size 3 is smaller than the 5 backends with weight > 0");
  auto b = backends(5);
  b[0].weight = b[3].weight = 0;  // drained backends need no slot
  const MaglevTable t = build(b, 3);
  EXPECT_EQ(lb::slot_counts(t), (std::vector<std::uint32_t>{0, 1, 1, 0, 1}));
}

TEST(Maglev, DuplicateOrEmptyKeysAreRefused) {
  auto b = backends(4);
  b[3].key = b[1].key;
  b[3].weight = 0;  // even a drained duplicate: the config is ambiguous
  EXPECT_EQ(build_error(b, kM), "duplicate backend key '10.0.0.2:80'");
  b[3].key = "";
  EXPECT_EQ(build_error(b, kM), "backend 3 has an empty key");
  EXPECT_FALSE(build_maglev(b, kM, nullptr).has_value());  // the error is optional
}

TEST(Maglev, ChangedFraction) {
  const auto b = backends(4);
  const MaglevTable t = build(b, 251);
  EXPECT_EQ(lb::changed_fraction(t, b, t, b), 0.0);
  EXPECT_EQ(lb::changed_fraction(t, b, build(b, 257), b), 1.0);  // sizes differ
  const MaglevTable none = build(backends(4, 0), 251);
  EXPECT_EQ(lb::changed_fraction(t, b, none, backends(4, 0)), 1.0);
  EXPECT_EQ(lb::changed_fraction(none, backends(4, 0), none, {}), 0.0);
  // Other keys: every slot changes.
  EXPECT_EQ(lb::changed_fraction(t, b, build(backends(4, 1, 101), 251), backends(4, 1, 101)), 1.0);
}
