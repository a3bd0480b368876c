#include "dataplane/lb/maglev.hpp"

#include <algorithm>
#include <numeric>
#include <string_view>
#include <unordered_map>

namespace tandem::lb {

namespace {

__extension__ using u128 = unsigned __int128;

// The backends of one weight take their turns together: they are all due at the same times.
// Their turns are due at num / weight, where num = 0 before the first turn and 2k + 1 after k
// turns, so every backend's first turn comes at once.
struct WeightClass {
  std::uint32_t num;
  std::uint32_t weight;
  std::uint32_t first;  // members: turners [first, first + count), in key order
  std::uint32_t count;
};

// Earlier due time first (compared exactly, by cross-multiplying), ties to the heavier class.
// Weights differ between classes, so this is a strict total order and the turn sequence does
// not depend on how the heap is implemented.
inline bool before(const WeightClass& x, const WeightClass& y) {
  // num <= 2M + 1 < 2^26 and weight < 2^32: the products stay below 2^58.
  const std::uint64_t lhs = std::uint64_t{x.num} * y.weight;
  const std::uint64_t rhs = std::uint64_t{y.num} * x.weight;
  // Bitwise, not short-circuit: the outcome is unpredictable, so no branch.
  return (lhs < rhs) | ((lhs == rhs) & (x.weight > y.weight));
}

// Restores the min-heap after the top's due time moved later (it just took its turns). Floyd's
// variant: walk the hole down to a leaf along the earlier child (one branch-free comparison a
// level), then move the item back up; it usually belongs near the bottom.
void sift_down_top(std::vector<WeightClass>& heap) {
  const std::size_t n = heap.size();
  const WeightClass item = heap[0];
  std::size_t i = 0;
  for (std::size_t c = 1; c < n; c = 2 * i + 1) {
    if (c + 1 < n) c += before(heap[c + 1], heap[c]);
    heap[i] = heap[c];
    i = c;
  }
  while (i > 0) {
    const std::size_t parent = (i - 1) / 2;
    if (!before(item, heap[parent])) break;
    heap[i] = heap[parent];
    i = parent;
  }
  heap[i] = item;
}

// A backend with weight > 0 walking its permutation of the slots: offset, offset + skip, ...
// mod M. skip is in 1..M-1, coprime with the prime M, so the walk covers every slot.
struct Turner {
  std::uint32_t next;
  std::uint32_t skip;
  std::uint32_t index;  // in the caller's list
};

std::uint64_t mul_mod(std::uint64_t a, std::uint64_t b, std::uint64_t m) {
  return static_cast<std::uint64_t>(static_cast<u128>(a) * b % m);
}

std::uint64_t pow_mod(std::uint64_t base, std::uint64_t exp, std::uint64_t m) {
  std::uint64_t r = 1;
  base %= m;
  for (; exp; exp >>= 1) {
    if (exp & 1) r = mul_mod(r, base, m);
    base = mul_mod(base, base, m);
  }
  return r;
}

}  // namespace

std::string maglev_key(net::Ipv4Addr addr, std::uint16_t port) {
  return addr.to_string() + ":" + std::to_string(port);
}

MaglevTable::MaglevTable(std::uint32_t size, std::uint32_t backend_count)
    : slots_(size, kNoBackend),
      mod_magic_(~std::uint64_t{0} / size + 1),
      size_(size),
      backend_count_(backend_count) {}

bool is_prime(std::uint64_t n) {
  // These bases decide every n < 3.3 * 10^24 (Sorenson and Webster, 2015), so all of uint64.
  static constexpr std::uint64_t kBases[] = {2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37};
  if (n < 2) return false;
  for (const std::uint64_t p : kBases) {
    if (n % p == 0) return n == p;
  }
  std::uint64_t d = n - 1;
  int s = 0;
  while ((d & 1) == 0) {
    d >>= 1;
    ++s;
  }
  for (const std::uint64_t a : kBases) {
    std::uint64_t x = pow_mod(a, d, n);
    if (x == 1 || x == n - 1) continue;
    bool composite = true;
    for (int r = 1; r < s && composite; ++r) {
      x = mul_mod(x, x, n);
      composite = x != n - 1;
    }
    if (composite) return false;
  }
  return true;
}

std::optional<MaglevTable> build_maglev(std::span<const MaglevBackend> backends, std::uint32_t size,
                                        std::string* error) {
  const auto fail = [error](std::string why) -> std::optional<MaglevTable> {
    if (error) *error = std::move(why);
    return std::nullopt;
  };
  if (size > kMaglevMaxSize) {
    return fail("maglev table size " + std::to_string(size) + " is above the maximum " +
                std::to_string(kMaglevMaxSize));
  }
  if (!is_prime(size)) return fail("maglev table size " + std::to_string(size) + " is not prime");
  if (backends.size() >= MaglevTable::kNoBackend) return fail("too many backends");

  // Key order, not input order, so every unit builds the same table from the same set.
  std::vector<std::uint32_t> order(backends.size());
  std::iota(order.begin(), order.end(), 0u);
  std::sort(order.begin(), order.end(),
            [&](std::uint32_t a, std::uint32_t b) { return backends[a].key < backends[b].key; });
  for (std::size_t i = 0; i < order.size(); ++i) {
    const std::string& key = backends[order[i]].key;
    if (key.empty()) return fail("backend " + std::to_string(order[i]) + " has an empty key");
    if (i > 0 && backends[order[i - 1]].key == key) return fail("duplicate backend key '" + key + "'");
  }
  // Drained backends take no turns; the rest go heaviest first, keys ascending within a weight.
  std::erase_if(order, [&](std::uint32_t i) { return backends[i].weight == 0; });
  std::stable_sort(order.begin(), order.end(),
                   [&](std::uint32_t a, std::uint32_t b) { return backends[a].weight > backends[b].weight; });
  if (order.size() > size) {
    return fail("maglev table size " + std::to_string(size) + " is smaller than the " +
                std::to_string(order.size()) + " backends with weight > 0");
  }

  MaglevTable table(size, static_cast<std::uint32_t>(backends.size()));
  if (order.empty()) return table;

  std::vector<Turner> turners(order.size());
  std::vector<WeightClass> heap;
  for (std::uint32_t t = 0; t < order.size(); ++t) {
    const MaglevBackend& b = backends[order[t]];
    turners[t] = {static_cast<std::uint32_t>(siphash24(kMaglevOffsetKey, b.key) % size),
                  static_cast<std::uint32_t>(siphash24(kMaglevSkipKey, b.key) % (size - 1) + 1),
                  order[t]};
    if (heap.empty() || heap.back().weight != b.weight) heap.push_back({0, b.weight, t, 0});
    ++heap.back().count;
  }
  // Every class is due at 0 and they are in descending weight: already a heap.

  // Which slots are taken, one bit each: 8 KiB for M = 65537, so probing stays in L1.
  std::vector<std::uint64_t> taken((size + 63) / 64, 0);
  std::vector<std::uint32_t>& slots = table.slots_;
  std::uint32_t filled = 0;
  for (;;) {
    WeightClass& cls = heap[0];
    for (std::uint32_t t = cls.first; t < cls.first + cls.count; ++t) {
      Turner& turner = turners[t];
      std::uint32_t s = turner.next;
      // Ends: the walk covers every slot and at least one is still free.
      while (taken[s >> 6] & (std::uint64_t{1} << (s & 63))) {
        s += turner.skip;
        if (s >= size) s -= size;
      }
      taken[s >> 6] |= std::uint64_t{1} << (s & 63);
      slots[s] = turner.index;
      s += turner.skip;
      turner.next = s >= size ? s - size : s;
      if (++filled == size) return table;
    }
    cls.num = cls.num == 0 ? 3 : cls.num + 2;
    sift_down_top(heap);
  }
}

std::vector<std::uint32_t> slot_counts(const MaglevTable& table) {
  std::vector<std::uint32_t> counts(table.backend_count(), 0);
  for (const std::uint32_t s : table.slots()) {
    if (s != MaglevTable::kNoBackend) ++counts[s];
  }
  return counts;
}

double changed_fraction(const MaglevTable& a, std::span<const MaglevBackend> a_backends,
                        const MaglevTable& b, std::span<const MaglevBackend> b_backends) {
  if (a.size() != b.size()) return 1.0;
  // a's index -> b's index of the same key (kNoBackend when b lacks it).
  std::unordered_map<std::string_view, std::uint32_t> b_index;
  for (std::uint32_t i = 0; i < b_backends.size(); ++i) b_index.emplace(b_backends[i].key, i);
  std::vector<std::uint32_t> a_to_b(a_backends.size(), MaglevTable::kNoBackend);
  for (std::uint32_t i = 0; i < a_backends.size(); ++i) {
    if (const auto it = b_index.find(a_backends[i].key); it != b_index.end()) a_to_b[i] = it->second;
  }
  std::uint64_t changed = 0;
  for (std::uint32_t s = 0; s < a.size(); ++s) {
    const std::uint32_t x = a.slots()[s];
    const std::uint32_t y = b.slots()[s];
    bool same;
    if (x == MaglevTable::kNoBackend || y == MaglevTable::kNoBackend) same = x == y;
    else same = x < a_to_b.size() && a_to_b[x] == y;  // also false when b lacks x's key
    if (!same) ++changed;
  }
  return static_cast<double>(changed) / a.size();
}

}  // namespace tandem::lb
