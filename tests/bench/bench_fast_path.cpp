// Per-frame cost of the fast path's local handling and of load balancing, without DPDK: what a
// worker spends on one frame once it is in memory. Run: meson compile -C build && build/tests/bench/bench_fast_path
#include <benchmark/benchmark.h>

#include <memory>

#include "dataplane/local_stack.hpp"
#include "dataplane/net/checksum.hpp"
#include "tests/unit/frames.hpp"
#include "tests/unit/lb_frames.hpp"

using namespace tandem;

namespace {

const test::Mac kUs = {0x02, 0, 0, 0, 0, 1};
const test::Mac kClient = {0x02, 0, 0, 0, 0, 2};

struct Fixture {
  LocalInterface itf;
  neigh::NeighbourTable neighbours{neigh::NeighbourConfig{.capacity = 4096}};
  Fixture() {
    itf.mac = net::MacAddr{kUs};
    itf.add(*net::Ipv4Prefix::parse("10.0.0.1/24"));
  }
};

// Each iteration restores the request (a memcpy, as a real frame would arrive) and answers it.
void run_frames(benchmark::State& state, const test::Bytes& request) {
  Fixture fx;
  test::Bytes frame = request;
  LearntNeighbour learnt;
  for (auto _ : state) {
    std::copy(request.begin(), request.end(), frame.begin());
    const LocalResult r = handle_local_frame(frame.data(), static_cast<std::uint32_t>(frame.size()), fx.itf, fx.neighbours, 0, learnt);
    benchmark::DoNotOptimize(r);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_IcmpEcho(benchmark::State& state) {
  test::Ipv4Fields ip{.src = test::ip("10.0.0.2"), .dst = test::ip("10.0.0.1")};
  run_frames(state, test::ethernet(kUs, kClient, 0x0800,
                                   test::ipv4(ip, test::icmp_echo(8, 1, 1, test::pattern(static_cast<std::size_t>(state.range(0)))))));
}
BENCHMARK(BM_IcmpEcho)->Arg(56)->Arg(1472);

void BM_ArpRequest(benchmark::State& state) {
  run_frames(state, test::ethernet(test::kBroadcast, kClient, 0x0806,
                                   test::arp(1, kClient, test::ip("10.0.0.2"), {}, test::ip("10.0.0.1"))));
}
BENCHMARK(BM_ArpRequest);

void BM_DropNotLocal(benchmark::State& state) {
  test::Ipv4Fields ip{.src = test::ip("10.0.0.2"), .dst = test::ip("10.0.0.9"), .proto = 17};
  run_frames(state, test::ethernet(kUs, kClient, 0x0800, test::ipv4(ip, test::pattern(26))));
}
BENCHMARK(BM_DropNotLocal);

void BM_NeighbourLookup(benchmark::State& state) {
  neigh::NeighbourTable t(neigh::NeighbourConfig{.capacity = static_cast<std::uint32_t>(state.range(0))});
  for (std::uint32_t i = 0; i < state.range(0); ++i)
    t.learn(net::Ipv4Addr{0x0a000000u + i}, net::MacAddr{{2, 0, 0, 0, 0, 1}}, 0, true);
  std::uint32_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(t.lookup(net::Ipv4Addr{0x0a000000u + (i++ % static_cast<std::uint32_t>(state.range(0)))}));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_NeighbourLookup)->Arg(64)->Arg(65536);

void BM_Checksum(benchmark::State& state) {
  const test::Bytes b = test::pattern(static_cast<std::size_t>(state.range(0)));
  for (auto _ : state) benchmark::DoNotOptimize(net::internet_checksum(b.data(), b.size()));
  state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_Checksum)->Arg(20)->Arg(1500);

// One packet of an established connection through lb_forward, per mode (0 nat, 1 fullnat,
// 2 dsr, 3 tunnel): copy the frame in (as it arrives), parse, look the connection up (a table
// of one: cached, so this is the rewrite's cost, not the memory's), rewrite, pick the next hop,
// count it for its service and backend (stats ids 1 and 2, as a worker does).
void BM_LbForwardEstablished(benchmark::State& state) {
  using namespace test::lb_world;
  const auto mode = static_cast<conntrack::ForwardMode>(state.range(0));
  UnitPorts unit;
  lb::Service svc{.name = "web", .vip = net::Ipv4Addr{kVip}, .proto = 6, .port = 80, .mode = mode,
                  .maglev_size = 251};
  svc.stats_id = 1;
  for (const auto b : kBackend) svc.backends.push_back({net::Ipv4Addr{b}, 80, 1, 2});
  if (mode == conntrack::ForwardMode::kFullNat) svc.local_addrs = {net::Ipv4Addr{kLocal}};
  std::string error;
  const auto table = lb::ServiceTable::build({svc}, error);
  conntrack::ConnTable conns(conntrack::ConnTableConfig{.capacity = 1024});
  const auto traffic = std::make_unique<WorkerServiceStats>();
  conns.set_traffic_stats(traffic.get());
  const lb::LbContext ctx{.services = table.get(), .conns = &conns, .ports = unit.ports, .now_ms = 1};
  test::Bytes out;
  run_frame(ctx, tcp_frame(kNorthMac, kGatewayMac, test::lb_world::kClient, kVip, 40000, 80, 0x02), out);  // the SYN
  const test::Bytes ack = tcp_frame(kNorthMac, kGatewayMac, test::lb_world::kClient, kVip, 40000, 80, 0x10, 64, test::pattern(16));
  test::Bytes buf(kHeadroom + ack.size());
  lb::LbVerdict v;
  for (auto _ : state) {
    std::copy(ack.begin(), ack.end(), buf.begin() + kHeadroom);
    std::uint8_t* frame = buf.data() + kHeadroom;
    auto len = static_cast<std::uint32_t>(ack.size());
    net::ParsedPacket p;
    net::parse_packet(frame, len, p);
    lb::LbContext c = ctx;
    lb::lb_forward(frame, len, p, c, v);
    benchmark::DoNotOptimize(v.action);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations());
  state.SetLabel(conntrack::to_string(mode));
}
BENCHMARK(BM_LbForwardEstablished)->DenseRange(0, 3);

}  // namespace

BENCHMARK_MAIN();
