// Cost of the connection table at realistic sizes: insert, lookup (hit, miss, and a burst with
// prefetch as a worker would do it), the per-packet update, and the expiry sweep per entry
// examined. Tables are far larger than the caches, so most figures are memory latency.
// The second argument picks the memory: 0 = the default allocator (4 KiB pages), 1 = anonymous
// memory with transparent huge pages (madvise), as a stand-in for DPDK's hugepage memory.
// Run: meson compile -C build && build/tests/bench/bench_conn_table
#include <benchmark/benchmark.h>
#include <sys/mman.h>

#include <cstdint>
#include <map>
#include <memory>
#include <memory_resource>
#include <new>
#include <random>
#include <utility>
#include <vector>

#include "dataplane/conntrack/conn_table.hpp"

using namespace tandem::conntrack;

namespace {

// Anonymous mappings advised to use 2 MiB pages: one TLB entry covers 512 times more table.
class HugePageResource : public std::pmr::memory_resource {
  static constexpr std::size_t kHuge = 2u << 20;
  static std::size_t round(std::size_t n) { return (n + kHuge - 1) & ~(kHuge - 1); }

  void* do_allocate(std::size_t bytes, std::size_t) override {
    // Over-map by one huge page so the block can start on a 2 MiB boundary.
    const std::size_t len = round(bytes) + kHuge;
    void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    const auto base = reinterpret_cast<std::uintptr_t>(p);
    const std::uintptr_t aligned = (base + kHuge - 1) & ~(std::uintptr_t{kHuge} - 1);
    if (aligned > base) munmap(p, aligned - base);
    const std::uintptr_t end = base + len, want_end = aligned + round(bytes);
    if (end > want_end) munmap(reinterpret_cast<void*>(want_end), end - want_end);
    madvise(reinterpret_cast<void*>(aligned), round(bytes), MADV_HUGEPAGE);
    return reinterpret_cast<void*>(aligned);
  }
  void do_deallocate(void* p, std::size_t bytes, std::size_t) override { munmap(p, round(bytes)); }
  bool do_is_equal(const std::pmr::memory_resource& o) const noexcept override { return this == &o; }
};

std::pmr::memory_resource* memory(std::int64_t kind) {
  static HugePageResource huge;
  return kind == 1 ? static_cast<std::pmr::memory_resource*>(&huge) : std::pmr::get_default_resource();
}

// Connection i of a NAT service: a distinct client address per i (multiplying by an odd
// constant is a bijection), the reply key from one of 256 backends.
FlowKey original_key(std::uint32_t i) {
  return {.src_addr = i * 0x9E3779B1u, .dst_addr = 0xcb007101u,
          .src_port = static_cast<std::uint16_t>(1024 + (i & 0x7fff)), .dst_port = 80, .proto = 6};
}
FlowKey reply_key(std::uint32_t i) {
  const FlowKey o = original_key(i);
  return {.src_addr = 0x0a010000u | (i & 0xff), .dst_addr = o.src_addr, .src_port = 8080,
          .dst_port = o.src_port, .proto = 6};
}

ConnTableConfig config(std::uint32_t capacity) {
  ConnTableConfig c;
  c.capacity = capacity;
  return c;
}

void fill(ConnTable& t, std::uint32_t n, std::uint64_t now_ms) {
  for (std::uint32_t i = 0; i < n; ++i)
    t.insert(original_key(i), reply_key(i), ConnParams{.mode = ForwardMode::kNat}, now_ms);
}

// A full table and a stream of keys to look up, kept across benchmarks of the same size.
struct Filled {
  std::unique_ptr<ConnTable> table;
  std::vector<FlowKey> hits;    // random present keys, either direction
  std::vector<FlowKey> misses;  // keys of connections that do not exist
};

Filled& filled(std::uint32_t n, std::int64_t mem) {
  static std::map<std::pair<std::uint32_t, std::int64_t>, Filled> cache;
  Filled& f = cache[{n, mem}];
  if (!f.table) {
    cache.clear();  // one big table at a time
    Filled& g = cache[{n, mem}];
    g.table = std::make_unique<ConnTable>(config(n), memory(mem));
    fill(*g.table, n, 0);
    std::mt19937_64 rng(1);
    constexpr std::size_t kStream = 1u << 22;
    g.hits.reserve(kStream);
    g.misses.reserve(kStream);
    for (std::size_t k = 0; k < kStream; ++k) {
      const std::uint64_t r = rng();
      const auto i = static_cast<std::uint32_t>(r % n);
      g.hits.push_back((r >> 63) ? reply_key(i) : original_key(i));
      g.misses.push_back(original_key(n + static_cast<std::uint32_t>(r % n)));
    }
    return g;
  }
  return f;
}

void report_memory(benchmark::State& state, const ConnTable& t) {
  state.counters["bytes_per_conn"] =
      static_cast<double>(t.memory_bytes()) / static_cast<double>(t.capacity());
}

void BM_Insert(benchmark::State& state) {
  const auto n = static_cast<std::uint32_t>(state.range(0));
  std::unique_ptr<ConnTable> t;
  for (auto _ : state) {
    state.PauseTiming();
    t.reset();
    t = std::make_unique<ConnTable>(config(n), memory(state.range(1)));
    state.ResumeTiming();
    fill(*t, n, 0);
  }
  if (t->size() != n) state.SkipWithError("not every insert succeeded");
  state.SetItemsProcessed(state.iterations() * n);
  report_memory(state, *t);
}

void BM_LookupHit(benchmark::State& state) {
  Filled& f = filled(static_cast<std::uint32_t>(state.range(0)), state.range(1));
  std::size_t k = 0;
  std::int64_t found = 0;
  for (auto _ : state) {
    found += static_cast<bool>(f.table->lookup(f.hits[k]));
    k = (k + 1) & (f.hits.size() - 1);
  }
  if (found != state.iterations()) state.SkipWithError("a present key was not found");
  state.SetItemsProcessed(state.iterations());
  report_memory(state, *f.table);
}

void BM_LookupMiss(benchmark::State& state) {
  Filled& f = filled(static_cast<std::uint32_t>(state.range(0)), state.range(1));
  std::size_t k = 0;
  std::int64_t found = 0;
  for (auto _ : state) {
    found += static_cast<bool>(f.table->lookup(f.misses[k]));
    k = (k + 1) & (f.misses.size() - 1);
  }
  if (found != 0) state.SkipWithError("an absent key was found");
  state.SetItemsProcessed(state.iterations());
}

// A burst of 32 as the worker sees it: hash all, prefetch (arg 2: nothing, the index lines, or
// the index lines and then the entries), then look up and update each (the update writes the
// entry: last_seen, counters, TCP state).
void BM_BurstLookupUpdate(benchmark::State& state) {
  Filled& f = filled(static_cast<std::uint32_t>(state.range(0)), state.range(1));
  constexpr std::int64_t kBurst = 32;
  const std::int64_t stages = state.range(2);  // 0: none, 1: index lines, 2: index and entries
  std::size_t k = 0;
  std::int64_t found = 0;
  std::uint64_t now = 1;
  std::uint64_t hashes[kBurst];
  for (auto _ : state) {
    const FlowKey* keys = &f.hits[k];
    for (std::int64_t j = 0; j < kBurst; ++j) {
      hashes[j] = f.table->hash(keys[j]);
      if (stages >= 1) f.table->prefetch(hashes[j]);
    }
    if (stages >= 2)
      for (std::int64_t j = 0; j < kBurst; ++j) f.table->prefetch_entry(hashes[j]);
    for (std::int64_t j = 0; j < kBurst; ++j) {
      const ConnLookup l = f.table->lookup(keys[j], hashes[j]);
      if (l) {
        f.table->update(*l.entry, l.dir, kTcpAck, 1500, now);
        ++found;
      }
    }
    k = (k + static_cast<std::size_t>(kBurst)) & (f.hits.size() - 1);
    ++now;
  }
  if (found != state.iterations() * kBurst) state.SkipWithError("a present key was not found");
  state.SetItemsProcessed(state.iterations() * kBurst);
}

// The sweep over a full table: arg 2 = 0, nothing is due (the steady state: examine and move
// on); 1, everything is due (each examined entry is freed with its two index slots).
void BM_ExpireSweep(benchmark::State& state) {
  const auto n = static_cast<std::uint32_t>(state.range(0));
  const bool all_due = state.range(2) != 0;
  ConnTable t(config(n), memory(state.range(1)));
  fill(t, n, 0);
  std::int64_t expired = 0;
  for (auto _ : state) {
    if (all_due && t.size() == 0) {
      state.PauseTiming();
      fill(t, n, 0);
      state.ResumeTiming();
    }
    expired += static_cast<std::int64_t>(t.expire(all_due ? 1'000'000'000 : 1, n));
  }
  if (all_due && expired != state.iterations() * n) state.SkipWithError("not everything expired");
  if (!all_due && expired != 0) state.SkipWithError("something expired");
  state.SetItemsProcessed(state.iterations() * n);  // items = entries examined
}

constexpr std::int64_t k64K = 1 << 16, k1M = 1 << 20, k10M = 10'000'000;

BENCHMARK(BM_Insert)->ArgsProduct({{k1M, k10M}, {0, 1}})->Iterations(3)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_LookupHit)->ArgsProduct({{k64K, k1M, k10M}, {0, 1}});
BENCHMARK(BM_LookupMiss)->ArgsProduct({{k1M, k10M}, {0, 1}});
BENCHMARK(BM_BurstLookupUpdate)->ArgsProduct({{k1M, k10M}, {0, 1}, {0, 1, 2}});
BENCHMARK(BM_ExpireSweep)->ArgsProduct({{k1M, k10M}, {0, 1}, {0, 1}})->Iterations(3)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
