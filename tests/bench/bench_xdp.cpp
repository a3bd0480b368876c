// Per-frame cost of the XDP programs of ebpf/, measured by the kernel itself: BPF_PROG_TEST_RUN
// runs a program `repeat` times on one frame and reports the mean duration per run. Needs root.
// Run: meson compile -C build && build/tests/bench/bench_xdp
#include <arpa/inet.h>
#include <benchmark/benchmark.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cstdio>
#include <string>

#include "ebpf/tandem_xdp.h"
#include "tests/unit/frames.hpp"

namespace t = tandem::test;

namespace {

const t::Mac kUnit = {0x02, 0, 0, 0, 0, 1};
const t::Mac kPeer = {0x02, 0, 0, 0, 0, 2};

struct Loaded {
  bpf_object* obj = nullptr;
  int prog = -1;
  explicit Loaded(const char* path) {
    obj = bpf_object__open_file(path, nullptr);
    if (!obj || bpf_object__load(obj) != 0) return;
    prog = bpf_program__fd(bpf_object__next_program(obj, nullptr));
  }
  ~Loaded() { bpf_object__close(obj); }
  int map(const char* name) const { return bpf_map__fd(bpf_object__find_map_by_name(obj, name)); }
};

t::Bytes udp_frame(const char* src, const char* dst) {
  t::Ipv4Fields f{.src = t::ip(src), .dst = t::ip(dst), .proto = 17};
  return t::ethernet(kUnit, kPeer, 0x0800, t::ipv4(f, t::pattern(32)));
}

// One benchmark iteration = one kernel test run of `repeat` frames; the counter is the kernel's
// mean time per frame.
void run(benchmark::State& state, int prog, t::Bytes frame) {
  if (prog < 0) {
    state.SkipWithError("cannot load the BPF object (root needed)");
    return;
  }
  t::Bytes out(frame.size() + 256);
  double total_ns = 0;
  for (auto _ : state) {
    LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame.data(), .data_out = out.data(),
                .data_size_in = static_cast<__u32>(frame.size()), .data_size_out = static_cast<__u32>(out.size()),
                .repeat = 100000);
    if (bpf_prog_test_run_opts(prog, &opts) != 0) {
      state.SkipWithError("test run failed");
      return;
    }
    total_ns += opts.duration;
  }
  state.counters["ns_per_frame"] = total_ns / static_cast<double>(state.iterations());
}

Loaded& steer() {
  static Loaded l(TANDEM_STEER_BPF_OBJ);
  static bool filled = false;
  if (!filled && l.prog >= 0) {
    // 4096 steered addresses and a full blocklist of 4095 /24s (the last slot stays free).
    const tandem_steer_value v{};
    for (__u32 i = 0; i < TANDEM_STEER_MAX_ADDRS; ++i) {
      const __u32 a = htonl(0x0a000000u + i);
      bpf_map_update_elem(l.map("steer_addrs"), &a, &v, BPF_ANY);
    }
    for (__u32 i = 0; i + 1 < TANDEM_BLOCKLIST_MAX; ++i) {
      const tandem_lpm_v4_key k{24, htonl(0xc0000000u + (i << 8))};
      bpf_map_update_elem(l.map("blocklist"), &k, &i, BPF_ANY);
    }
    filled = true;
  }
  return l;
}

// The same program with an empty blocklist: what the LPM lookup costs.
Loaded& steer_no_blocklist() {
  static Loaded l(TANDEM_STEER_BPF_OBJ);
  if (l.prog >= 0) {
    const __u32 a = htonl(0x0a000007u);
    const tandem_steer_value v{};
    bpf_map_update_elem(l.map("steer_addrs"), &a, &v, BPF_ANY);
  }
  return l;
}

void BM_SteerToFastPath(benchmark::State& s) { run(s, steer().prog, udp_frame("172.16.0.1", "10.0.0.7")); }
void BM_SteerToFastPathEmptyBlocklist(benchmark::State& s) {
  run(s, steer_no_blocklist().prog, udp_frame("172.16.0.1", "10.0.0.7"));
}
void BM_SteerPassToKernel(benchmark::State& s) { run(s, steer().prog, udp_frame("172.16.0.1", "172.16.9.9")); }
void BM_SteerBlocklisted(benchmark::State& s) { run(s, steer().prog, udp_frame("192.0.5.1", "10.0.0.7")); }
void BM_SteerArpForFastPath(benchmark::State& s) {
  run(s, steer().prog, t::ethernet(t::kBroadcast, kPeer, 0x0806, t::arp(1, kPeer, t::ip("10.9.9.9"), {}, t::ip("10.0.0.7"))));
}

void BM_Decap(benchmark::State& s) {
  static Loaded l(TANDEM_DECAP_BPF_OBJ);
  if (l.prog >= 0) {
    const __u32 vip = htonl(t::ip("203.0.113.10")), zero = 0;
    bpf_map_update_elem(l.map("decap_vips"), &vip, &zero, BPF_ANY);
  }
  t::Ipv4Fields inner{.src = t::ip("198.51.100.7"), .dst = t::ip("203.0.113.10"), .proto = 17};
  t::Ipv4Fields outer{.src = t::ip("10.0.0.2"), .dst = t::ip("10.0.1.5"), .proto = 4};
  run(s, l.prog, t::ethernet(kUnit, kPeer, 0x0800, t::ipv4(outer, t::ipv4(inner, t::pattern(32)))));
}

BENCHMARK(BM_SteerToFastPath);
BENCHMARK(BM_SteerToFastPathEmptyBlocklist);
BENCHMARK(BM_SteerPassToKernel);
BENCHMARK(BM_SteerBlocklisted);
BENCHMARK(BM_SteerArpForFastPath);
BENCHMARK(BM_Decap);

}  // namespace

int main(int argc, char** argv) {
  libbpf_set_print([](enum libbpf_print_level, const char*, va_list) { return 0; });
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
