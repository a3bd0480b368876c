// Maglev: what a table build costs the control thread, and what picking a backend costs a worker
// per new flow (flow hash + slot lookup). Run: build/tests/bench/bench_maglev
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "dataplane/lb/hash.hpp"
#include "dataplane/lb/maglev.hpp"

using namespace tandem;

namespace {

enum Weights { kEqual = 0, kMixed = 1, kDistinct = 2 };

// n backends 10.x.y.z:80. Mixed: 100 different weights 1..100 (backends of one weight take
// their turns together); distinct: every weight different, the worst case for the build.
std::vector<lb::MaglevBackend> backends(std::size_t n, Weights weights) {
  std::vector<lb::MaglevBackend> v;
  for (std::uint32_t i = 0; i < n; ++i) {
    std::uint32_t w = 1;
    if (weights == kMixed) w = 1 + (i * 37) % 100;
    if (weights == kDistinct) w = 1000 + i;
    v.push_back({lb::maglev_key(net::Ipv4Addr{0x0a000000u + 1 + i}, 80), w});
  }
  return v;
}

void BM_MaglevBuild(benchmark::State& state) {
  const auto b = backends(static_cast<std::size_t>(state.range(0)), static_cast<Weights>(state.range(1)));
  const auto size = static_cast<std::uint32_t>(state.range(2));
  for (auto _ : state) {
    auto t = lb::build_maglev(b, size);
    benchmark::DoNotOptimize(t);
  }
  state.SetLabel(state.range(1) == kEqual ? "equal weights" : state.range(1) == kMixed ? "100 weights" : "all weights differ");
}
BENCHMARK(BM_MaglevBuild)
    ->ArgsProduct({{100, 1000}, {kEqual, kMixed, kDistinct}, {65537}})
    ->Args({1000, kEqual, 655373})
    ->Unit(benchmark::kMillisecond);

// Consecutive flows of one client: source port and address vary as under load.
void BM_FlowHash(benchmark::State& state) {
  std::uint32_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(lb::flow_hash(0x0a010000u + (i >> 16), 0xc0a80001u, static_cast<std::uint16_t>(i), 80, 6));
    ++i;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_FlowHash);

// flow_hash + lookup per new flow, table of range(0) slots for 100 backends (a 65537-slot
// table is 256 KiB: L2-resident; 1000003 slots is 4 MiB).
void BM_MaglevPick(benchmark::State& state) {
  const auto t = *lb::build_maglev(backends(100, kEqual), static_cast<std::uint32_t>(state.range(0)));
  std::uint32_t i = 0;
  for (auto _ : state) {
    const std::uint32_t h = lb::flow_hash(0x0a010000u + (i >> 16), 0xc0a80001u, static_cast<std::uint16_t>(i), 80, 6);
    benchmark::DoNotOptimize(t.lookup(h));
    ++i;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MaglevPick)->Arg(65537)->Arg(1000003);

// The same with a plain `%` (a division) instead of lookup()'s multiply-based remainder.
void BM_MaglevPickDivision(benchmark::State& state) {
  const auto t = *lb::build_maglev(backends(100, kEqual), static_cast<std::uint32_t>(state.range(0)));
  const std::uint32_t* slots = t.slots().data();
  std::uint32_t size = t.size();
  benchmark::DoNotOptimize(size);  // a run-time divisor, as in a table built from config
  std::uint32_t i = 0;
  for (auto _ : state) {
    const std::uint32_t h = lb::flow_hash(0x0a010000u + (i >> 16), 0xc0a80001u, static_cast<std::uint16_t>(i), 80, 6);
    benchmark::DoNotOptimize(slots[h % size]);
    ++i;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MaglevPickDivision)->Arg(65537);

}  // namespace

BENCHMARK_MAIN();
