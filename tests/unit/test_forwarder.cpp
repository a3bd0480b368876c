// The load balancer's forwarding, packet by packet: every mode's request and reply rewritten
// exactly (checksums computed from scratch by frames.cpp), connection tracking, drains, the
// policies for a full table and for mid-flow packets.
#include <gtest/gtest.h>

#include <map>

#include "controlplane/observe/stats_registry.hpp"
#include "dataplane/conntrack/conn_query.hpp"
#include "tests/unit/lb_frames.hpp"

using namespace tandem;
using conntrack::ForwardMode;
using test::Bytes;
using Action = lb::LbVerdict::Action;

namespace {

using namespace test::lb_world;

class ForwarderTest : public ::testing::Test {
 protected:
  ForwarderTest()
      : conns_(std::make_unique<conntrack::ConnTable>(conntrack::ConnTableConfig{.capacity = 4096})),
        traffic_(std::make_unique<WorkerServiceStats>()) {
    conns_->set_traffic_stats(traffic_.get());
  }

  // Services and backends take their stats ids from the fixture's registry, as tandemd's do.
  void set_service(ForwardMode mode, std::vector<lb::Backend> backends, std::uint16_t port = 80) {
    lb::Service s{.name = "web", .vip = net::Ipv4Addr{kVip}, .proto = 6, .port = port, .mode = mode,
                  .backends = std::move(backends), .maglev_size = 251};
    if (mode == ForwardMode::kFullNat) s.local_addrs = {net::Ipv4Addr{kLocal}};
    std::vector<lb::Service> services{s};
    EXPECT_EQ(ids_.assign(services), "");
    std::string error;
    table_ = lb::ServiceTable::build(std::move(services), error);
    ASSERT_TRUE(table_) << error;
  }

  lb::LbContext context() {
    return {.services = table_.get(), .conns = conns_.get(), .ports = unit_.ports, .now_ms = now_};
  }

  // Runs one frame; returns the verdict and leaves the output frame in `out`.
  lb::LbVerdict run(const Bytes& in, Bytes& out) { return run_frame(context(), in, out); }

  static Bytes tcp(const test::Mac& dmac, const test::Mac& smac, std::uint32_t src, std::uint32_t dst,
                   std::uint16_t sport, std::uint16_t dport, std::uint8_t flags, std::uint8_t ttl = 64,
                   const Bytes& payload = test::pattern(20)) {
    return tcp_frame(dmac, smac, src, dst, sport, dport, flags, ttl, payload);
  }
  // What the client sends: from the gateway's MAC to the north port.
  static Bytes from_client(std::uint16_t sport, std::uint8_t flags, std::uint8_t ttl = 64) {
    return tcp(kNorthMac, kGatewayMac, kClient, kVip, sport, 80, flags, ttl);
  }

  void reset_conns(std::uint32_t capacity) {
    conns_ = std::make_unique<conntrack::ConnTable>(conntrack::ConnTableConfig{.capacity = capacity});
    conns_->set_traffic_stats(traffic_.get());
  }

  // The traffic slot of the backend at `addr` (by its id, whatever its position now).
  const TrafficCounters& backend_stats(std::uint32_t addr, std::uint16_t port = 8080) const {
    return traffic_->backends[ids_.backend_id("web", net::Ipv4Addr{addr}, port)];
  }
  const TrafficCounters& service_stats() const { return traffic_->services[ids_.service_id("web")]; }

  std::unique_ptr<const lb::ServiceTable> table_;
  std::unique_ptr<conntrack::ConnTable> conns_;
  std::unique_ptr<WorkerServiceStats> traffic_;
  observe::StatsRegistry ids_;
  UnitPorts unit_;
  std::uint64_t now_ = 1000;
};

std::vector<lb::Backend> three(std::uint16_t port = 8080) {
  return {{net::Ipv4Addr{kBackend[0]}, port, 1}, {net::Ipv4Addr{kBackend[1]}, port, 1},
          {net::Ipv4Addr{kBackend[2]}, port, 1}};
}

}  // namespace

TEST_F(ForwarderTest, NatRequestAndReplyByteForByte) {
  set_service(ForwardMode::kNat, three());
  Bytes out;
  const auto v = run(from_client(40000, 0x02), out);
  ASSERT_EQ(v.action, Action::kTransmit);
  EXPECT_TRUE(v.new_flow);
  EXPECT_EQ(v.port, 1);
  EXPECT_EQ(v.event, Handled::kLbForwarded);
  const conntrack::ConnEntry* e = conns_->find({kClient, kVip, 40000, 80, 6});
  ASSERT_NE(e, nullptr);
  const int b = backend_of(e->backend_addr);
  ASSERT_GE(b, 0);
  EXPECT_EQ(out, tcp(kBackendMac[b], kSouthMac, kClient, kBackend[b], 40000, 8080, 0x02, 63)) << test::to_hex(out);
  EXPECT_EQ(e->state, conntrack::TcpState::kSynSent);

  // The backend answers the client through the unit (its gateway): back to VIP:80.
  const auto r = run(tcp(kSouthMac, kBackendMac[b], kBackend[b], kClient, 8080, 40000, 0x12), out);
  ASSERT_EQ(r.action, Action::kTransmit);
  EXPECT_EQ(r.port, 0);
  EXPECT_EQ(r.event, Handled::kLbRepliesForwarded);
  EXPECT_EQ(out, tcp(kGatewayMac, kNorthMac, kVip, kClient, 80, 40000, 0x12, 63)) << test::to_hex(out);
  EXPECT_EQ(conns_->find({kClient, kVip, 40000, 80, 6})->state, conntrack::TcpState::kSynRecv);
}

TEST_F(ForwarderTest, FullNatTranslatesBothEndsAndBack) {
  set_service(ForwardMode::kFullNat, three(80));
  Bytes out;
  ASSERT_EQ(run(from_client(40000, 0x02), out).action, Action::kTransmit);
  const conntrack::ConnEntry* e = conns_->find({kClient, kVip, 40000, 80, 6});
  ASSERT_NE(e, nullptr);
  const int b = backend_of(e->backend_addr);
  EXPECT_EQ(e->local_addr, kLocal);
  EXPECT_GE(e->local_port, 1024);
  EXPECT_EQ(out, tcp(kBackendMac[b], kSouthMac, kLocal, kBackend[b], e->local_port, 80, 0x02, 63));

  const auto r = run(tcp(kSouthMac, kBackendMac[b], kBackend[b], kLocal, 80, e->local_port, 0x12), out);
  ASSERT_EQ(r.action, Action::kTransmit);
  EXPECT_EQ(out, tcp(kGatewayMac, kNorthMac, kVip, kClient, 80, 40000, 0x12, 63));
}

TEST_F(ForwarderTest, FullNatNeverHandsOutALocalPortInUse) {
  set_service(ForwardMode::kFullNat, {{net::Ipv4Addr{kBackend[0]}, 80, 1}});
  std::map<std::uint16_t, int> seen;
  Bytes out;
  for (std::uint16_t sport = 1000; sport < 1060; ++sport) {
    ASSERT_EQ(run(from_client(sport, 0x02), out).action, Action::kTransmit);
    seen[conns_->find({kClient, kVip, sport, 80, 6})->local_port]++;
  }
  EXPECT_EQ(seen.size(), 60u);
}

TEST_F(ForwarderTest, DsrRewritesOnlyTheMacs) {
  set_service(ForwardMode::kDsr, three(80));
  Bytes out;
  ASSERT_EQ(run(from_client(40000, 0x02), out).action, Action::kTransmit);
  const int b = backend_of(conns_->find({kClient, kVip, 40000, 80, 6})->backend_addr);
  EXPECT_EQ(out, tcp(kBackendMac[b], kSouthMac, kClient, kVip, 40000, 80, 0x02, 64));
}

TEST_F(ForwarderTest, TunnelEncapsulatesToTheBackend) {
  set_service(ForwardMode::kTunnel, three(80));
  const Bytes in = from_client(40000, 0x02);
  Bytes out;
  const auto v = run(in, out);
  ASSERT_EQ(v.action, Action::kTransmit);
  EXPECT_TRUE(v.grew_front);
  const int b = backend_of(conns_->find({kClient, kVip, 40000, 80, 6})->backend_addr);
  test::Ipv4Fields outer{.src = kSouthAddr, .dst = kBackend[b], .proto = 4, .id = 0, .flags_frag = 0x4000};
  EXPECT_EQ(out, test::ethernet(kBackendMac[b], kSouthMac, 0x0800, test::ipv4(outer, Bytes(in.begin() + 14, in.end()))))
      << test::to_hex(out);
}

TEST_F(ForwarderTest, AnExistingFlowKeepsItsBackendWhenTheTableChanges) {
  set_service(ForwardMode::kNat, three());
  Bytes out;
  ASSERT_EQ(run(from_client(40000, 0x02), out).action, Action::kTransmit);
  const std::uint32_t first = conns_->find({kClient, kVip, 40000, 80, 6})->backend_addr;
  // Drain the flow's backend: no new flows go there, this one stays.
  auto backends = three();
  for (auto& bk : backends)
    if (bk.addr.value == first) bk.weight = 0;
  set_service(ForwardMode::kNat, backends);
  ASSERT_EQ(run(from_client(40000, 0x10), out).action, Action::kTransmit);
  EXPECT_EQ(out[30] << 24 | out[31] << 16 | out[32] << 8 | out[33], static_cast<int>(first));
  for (std::uint16_t sport = 2000; sport < 2100; ++sport) {
    ASSERT_EQ(run(from_client(sport, 0x02), out).action, Action::kTransmit);
    ASSERT_NE(conns_->find({kClient, kVip, sport, 80, 6})->backend_addr, first) << "new flow to a drained backend";
  }
}

TEST_F(ForwarderTest, NewFlowsSpreadOverBackendsByWeight) {
  set_service(ForwardMode::kDsr, {{net::Ipv4Addr{kBackend[0]}, 80, 1}, {net::Ipv4Addr{kBackend[1]}, 80, 2},
                                  {net::Ipv4Addr{kBackend[2]}, 80, 0}});
  std::array<int, 3> count{};
  Bytes out;
  for (std::uint16_t sport = 10000; sport < 13000; ++sport) {
    ASSERT_EQ(run(from_client(sport, 0x02), out).action, Action::kTransmit);
    count[backend_of(conns_->find({kClient, kVip, sport, 80, 6})->backend_addr)]++;
  }
  EXPECT_EQ(count[2], 0);
  EXPECT_NEAR(count[1] / 3000.0, 2.0 / 3, 0.05);
  EXPECT_NEAR(count[0] / 3000.0, 1.0 / 3, 0.05);
}

TEST_F(ForwarderTest, DrainedServiceDropsNewFlows) {
  set_service(ForwardMode::kNat, {{net::Ipv4Addr{kBackend[0]}, 8080, 0}});
  Bytes out;
  const auto v = run(from_client(40000, 0x02), out);
  EXPECT_EQ(v.action, Action::kDrop);
  EXPECT_EQ(v.reason, DropReason::kLbNoBackend);
  EXPECT_EQ(conns_->size(), 0u);
}

TEST_F(ForwarderTest, UnknownBackendMacIsResolvedAndThePacketDropped) {
  set_service(ForwardMode::kNat, {{net::Ipv4Addr{test::ip("10.0.1.99")}, 8080, 1}});
  Bytes out;
  const auto v = run(from_client(40000, 0x02), out);
  EXPECT_EQ(v.action, Action::kDrop);
  EXPECT_EQ(v.reason, DropReason::kLbUnresolved);
  const auto* n = unit_.south_neigh.find(net::Ipv4Addr{test::ip("10.0.1.99")});
  ASSERT_NE(n, nullptr);
  EXPECT_EQ(n->state, neigh::NeighState::kIncomplete);
}

TEST_F(ForwarderTest, MidFlowSegmentIsAdoptedAndRstIsNotTracked) {
  set_service(ForwardMode::kNat, three());
  Bytes out;
  const auto v = run(from_client(40000, 0x10), out);  // an ACK nobody saw the SYN of
  ASSERT_EQ(v.action, Action::kTransmit);
  EXPECT_EQ(v.event, Handled::kLbMidFlowFlows);
  const auto* e = conns_->find({kClient, kVip, 40000, 80, 6});
  ASSERT_NE(e, nullptr);
  EXPECT_TRUE(e->flags & conntrack::kConnMidFlow);

  const auto r = run(from_client(40001, 0x04), out);
  EXPECT_EQ(r.action, Action::kTransmit);
  EXPECT_EQ(r.event, Handled::kLbStateless);
  EXPECT_EQ(conns_->find({kClient, kVip, 40001, 80, 6}), nullptr);
}

TEST_F(ForwarderTest, SynAckOrNoFlagsStartNothing) {
  set_service(ForwardMode::kNat, three());
  Bytes out;
  for (std::uint8_t flags : {std::uint8_t{0x12}, std::uint8_t{0x00}}) {
    const auto v = run(from_client(40000, flags), out);
    EXPECT_EQ(v.action, Action::kDrop);
    EXPECT_EQ(v.reason, DropReason::kLbBadFirstSegment);
  }
  EXPECT_EQ(conns_->size(), 0u);
}

TEST_F(ForwarderTest, AReusedClientPortPicksItsBackendAfresh) {
  set_service(ForwardMode::kDsr, three(80));
  Bytes out;
  ASSERT_EQ(run(from_client(40000, 0x02), out).action, Action::kTransmit);
  ASSERT_EQ(run(from_client(40000, 0x04), out).action, Action::kTransmit);  // reset: CLOSE
  const std::uint32_t first = conns_->find({kClient, kVip, 40000, 80, 6})->backend_addr;
  // Drain that backend; the client reuses its port with a new SYN.
  auto backends = three(80);
  for (auto& bk : backends)
    if (bk.addr.value == first) bk.weight = 0;
  set_service(ForwardMode::kDsr, backends);
  const auto v = run(from_client(40000, 0x02), out);
  ASSERT_EQ(v.action, Action::kTransmit);
  EXPECT_TRUE(v.new_flow);
  const auto* e = conns_->find({kClient, kVip, 40000, 80, 6});
  ASSERT_NE(e, nullptr);
  EXPECT_NE(e->backend_addr, first);
  EXPECT_EQ(e->state, conntrack::TcpState::kSynSent);
}

TEST_F(ForwarderTest, FullTableForwardsStatelessly) {
  set_service(ForwardMode::kNat, three());
  reset_conns(2);
  Bytes out;
  ASSERT_EQ(run(from_client(1, 0x02), out).event, Handled::kLbForwarded);
  ASSERT_EQ(run(from_client(2, 0x02), out).event, Handled::kLbForwarded);
  const auto v = run(from_client(3, 0x02), out);
  EXPECT_EQ(v.action, Action::kTransmit);
  EXPECT_EQ(v.event, Handled::kLbStateless);
  EXPECT_EQ(conns_->stats().insert_failed_full, 1u);
}

TEST_F(ForwarderTest, TtlExpiresOnRoutedModes) {
  set_service(ForwardMode::kNat, three());
  Bytes out;
  const auto v = run(from_client(40000, 0x02, 1), out);
  EXPECT_EQ(v.action, Action::kDrop);
  EXPECT_EQ(v.reason, DropReason::kLbTtlExceeded);
}

TEST_F(ForwarderTest, OtherTrafficIsNotTheForwardersBusiness) {
  set_service(ForwardMode::kNat, three());
  Bytes out;
  EXPECT_EQ(run(tcp(kNorthMac, kGatewayMac, kClient, test::ip("10.0.0.1"), 1, 22, 0x02), out).action, Action::kNotMine);
  EXPECT_EQ(run(tcp(kNorthMac, kGatewayMac, kClient, kVip, 1, 443, 0x02), out).action, Action::kNotMine)
      << "no service on port 443";
}

// --- ICMP errors and the path MTU ---------------------------------------------------------------

TEST_F(ForwarderTest, NatIcmpErrorFromTheBackendSideReachesTheClientAsFromTheVip) {
  set_service(ForwardMode::kNat, three());
  Bytes to_backend;
  ASSERT_EQ(run(from_client(40000, 0x02), to_backend).action, Action::kTransmit);
  const int b = backend_of(conns_->find({kClient, kVip, 40000, 80, 6})->backend_addr);
  // The backend's port is closed: "port unreachable" about client:40000 -> backend:8080.
  Bytes out;
  const auto v = run(icmp_error(kSouthMac, kBackendMac[b], kBackend[b], kClient, 3, 3, 0, to_backend), out);
  ASSERT_EQ(v.action, Action::kTransmit);
  EXPECT_EQ(v.port, 0);
  EXPECT_EQ(v.event, Handled::kLbIcmpForwarded);
  // The client sees it from the VIP, about the packet it sent: client:40000 -> VIP:80.
  const Bytes as_sent = from_client(40000, 0x02, 63);
  EXPECT_EQ(out, icmp_error(kGatewayMac, kNorthMac, kVip, kClient, 3, 3, 0, as_sent, 63)) << test::to_hex(out);
}

TEST_F(ForwarderTest, NatFragNeededFromTheClientSideReachesTheBackend) {
  set_service(ForwardMode::kNat, three());
  Bytes out;
  ASSERT_EQ(run(from_client(40000, 0x02), out).action, Action::kTransmit);
  const int b = backend_of(conns_->find({kClient, kVip, 40000, 80, 6})->backend_addr);
  Bytes to_client;
  ASSERT_EQ(run(tcp(kSouthMac, kBackendMac[b], kBackend[b], kClient, 8080, 40000, 0x12), to_client).action,
            Action::kTransmit);
  // A router on the client's side cannot forward VIP:80 -> client:40000 at 1500 bytes.
  const auto v = run(icmp_error(kNorthMac, kGatewayMac, kGateway, kVip, 3, 4, 1400, to_client), out);
  ASSERT_EQ(v.action, Action::kTransmit);
  EXPECT_EQ(v.port, 1);
  EXPECT_EQ(v.event, Handled::kLbIcmpForwarded);
  // The backend learns its path MTU towards the client for backend:8080 -> client:40000.
  const Bytes as_sent = tcp(kGatewayMac, kNorthMac, kBackend[b], kClient, 8080, 40000, 0x12, 63);
  EXPECT_EQ(out, icmp_error(kBackendMac[b], kSouthMac, kGateway, kBackend[b], 3, 4, 1400, as_sent, 63))
      << test::to_hex(out);
}

TEST_F(ForwarderTest, FullNatIcmpErrorsAreTranslatedBothWays) {
  set_service(ForwardMode::kFullNat, three(80));
  Bytes to_backend;
  ASSERT_EQ(run(from_client(40000, 0x02), to_backend).action, Action::kTransmit);
  const conntrack::ConnEntry* e = conns_->find({kClient, kVip, 40000, 80, 6});
  const int b = backend_of(e->backend_addr);
  const std::uint16_t lport = e->local_port;
  Bytes out;
  // Backend side: about local:lport -> backend:80, sent to the local address.
  auto v = run(icmp_error(kSouthMac, kBackendMac[b], kBackend[b], kLocal, 3, 3, 0, to_backend), out);
  ASSERT_EQ(v.action, Action::kTransmit);
  EXPECT_EQ(v.port, 0);
  EXPECT_EQ(out, icmp_error(kGatewayMac, kNorthMac, kVip, kClient, 3, 3, 0, from_client(40000, 0x02, 63), 63))
      << test::to_hex(out);
  // Client side: about VIP:80 -> client:40000; the backend gets it from the local address.
  Bytes to_client;
  ASSERT_EQ(run(tcp(kSouthMac, kBackendMac[b], kBackend[b], kLocal, 80, lport, 0x12), to_client).action,
            Action::kTransmit);
  v = run(icmp_error(kNorthMac, kGatewayMac, kGateway, kVip, 3, 4, 1400, to_client), out);
  ASSERT_EQ(v.action, Action::kTransmit);
  EXPECT_EQ(v.port, 1);
  const Bytes as_sent = tcp(kGatewayMac, kNorthMac, kBackend[b], kLocal, 80, lport, 0x12, 63);
  EXPECT_EQ(out, icmp_error(kBackendMac[b], kSouthMac, kLocal, kBackend[b], 3, 4, 1400, as_sent, 63))
      << test::to_hex(out);
}

TEST_F(ForwarderTest, DsrFragNeededToTheVipGoesToTheFlowsBackendUnchanged) {
  set_service(ForwardMode::kDsr, three(80));
  Bytes out;
  ASSERT_EQ(run(from_client(40000, 0x02), out).action, Action::kTransmit);
  const int b = backend_of(conns_->find({kClient, kVip, 40000, 80, 6})->backend_addr);
  // The backend answered the client directly (VIP:80 -> client); a router says it is too big.
  const Bytes direct = tcp(kGatewayMac, kBackendMac[b], kVip, kClient, 80, 40000, 0x10, 63, test::pattern(1400));
  const Bytes in = icmp_error(kNorthMac, kGatewayMac, kGateway, kVip, 3, 4, 1300, direct);
  const auto v = run(in, out);
  ASSERT_EQ(v.action, Action::kTransmit);
  EXPECT_EQ(v.port, 1);
  EXPECT_EQ(v.event, Handled::kLbIcmpForwarded);
  EXPECT_EQ(out, icmp_error(kBackendMac[b], kSouthMac, kGateway, kVip, 3, 4, 1300, direct));
}

TEST_F(ForwarderTest, IcmpErrorsAboutNothingKnown) {
  set_service(ForwardMode::kNat, three());
  Bytes out;
  const Bytes unknown = tcp(kGatewayMac, kNorthMac, kVip, kClient, 80, 41000, 0x12);
  auto v = run(icmp_error(kNorthMac, kGatewayMac, kGateway, kVip, 3, 4, 1400, unknown), out);
  EXPECT_EQ(v.action, Action::kDrop);
  EXPECT_EQ(v.reason, DropReason::kLbIcmpNoConnection);
  // An error about an ICMP message, sent to the VIP: nothing to translate.
  const Bytes echo = test::ethernet(kGatewayMac, kNorthMac, 0x0800,
                                    test::ipv4({.src = kVip, .dst = kClient, .proto = 1},
                                               test::icmp_echo(0, 1, 1, test::pattern(8))));
  v = run(icmp_error(kNorthMac, kGatewayMac, kGateway, kVip, 3, 1, 0, echo), out);
  EXPECT_EQ(v.action, Action::kDrop);
  EXPECT_EQ(v.reason, DropReason::kLbIcmpBadQuote);
  // Not to a VIP and about no flow: the local stack's.
  v = run(icmp_error(kNorthMac, kGatewayMac, kGateway, test::ip("10.0.0.1"), 3, 3, 0, unknown), out);
  EXPECT_EQ(v.action, Action::kNotMine);
}

TEST_F(ForwarderTest, TunnelAnswersTooBigSegmentsWithFragmentationNeeded) {
  set_service(ForwardMode::kTunnel, three(80));
  Bytes out;
  ASSERT_EQ(run(from_client(40000, 0x02), out).action, Action::kTransmit);
  // 1500 bytes with DF: 1520 once encapsulated, beyond the south port's MTU of 1500.
  const Bytes big = tcp(kNorthMac, kGatewayMac, kClient, kVip, 40000, 80, 0x10, 64, test::pattern(1460));
  auto v = run(big, out);
  ASSERT_EQ(v.action, Action::kTransmit);
  EXPECT_EQ(v.port, 0);
  EXPECT_EQ(v.event, Handled::kLbFragNeededSent);
  ASSERT_EQ(out.size(), 14u + 576u);  // as much of the datagram as fits in 576 bytes
  EXPECT_EQ(Bytes(out.begin(), out.begin() + 12), (Bytes{0x02, 0, 0, 0, 0x0a, 0xfe, 0x02, 0, 0, 0, 0x0a, 1}));
  net::ParsedPacket p;
  ASSERT_EQ(net::parse_packet(out.data(), static_cast<std::uint32_t>(out.size()), p), net::ParseError::kNone);
  EXPECT_EQ(p.src.value, kVip);
  EXPECT_EQ(p.dst.value, kClient);
  EXPECT_EQ(p.proto, 1);
  EXPECT_EQ(p.icmp_type, 3);
  EXPECT_EQ(p.icmp_code, 4);
  EXPECT_EQ(out[p.l4 + 6] << 8 | out[p.l4 + 7], 1480) << "next-hop MTU: the south MTU less the outer header";
  EXPECT_EQ(test::ref_checksum(out.data() + p.l4, out.size() - p.l4), 0) << "ICMP checksum";
  EXPECT_EQ(Bytes(out.begin() + p.l4 + 8, out.end()), Bytes(big.begin() + 14, big.begin() + 14 + 548))
      << "the quote is the datagram as the client sent it";

  // Without DF the unit neither fragments nor answers: counted.
  Bytes no_df = big;
  no_df[14 + 6] = 0;
  no_df[14 + 10] = no_df[14 + 11] = 0;
  const auto sum = test::ref_checksum(no_df.data() + 14, 20);
  no_df[14 + 10] = static_cast<std::uint8_t>(sum >> 8);
  no_df[14 + 11] = static_cast<std::uint8_t>(sum);
  v = run(no_df, out);
  EXPECT_EQ(v.action, Action::kDrop);
  EXPECT_EQ(v.reason, DropReason::kLbTooBig);
  // What fits goes through: 1480 bytes become 1500.
  ASSERT_EQ(run(tcp(kNorthMac, kGatewayMac, kClient, kVip, 40000, 80, 0x10, 64, test::pattern(1440)), out).action,
            Action::kTransmit);
  EXPECT_EQ(out.size(), 14u + 1500u);
}

// --- per service and backend traffic (stats ids) -----------------------------------------------

TEST_F(ForwarderTest, ANewConnectionIsCountedForItsServiceAndBackend) {
  set_service(ForwardMode::kNat, three());
  Bytes out;
  const Bytes syn = from_client(40000, 0x02);
  ASSERT_EQ(run(syn, out).action, Action::kTransmit);
  const conntrack::ConnEntry* e = conns_->find({kClient, kVip, 40000, 80, 6});
  ASSERT_NE(e, nullptr);
  const int b = backend_of(e->backend_addr);
  // The entry holds stats ids, not table positions.
  EXPECT_EQ(e->service, ids_.service_id("web"));
  EXPECT_EQ(e->backend, ids_.backend_id("web", net::Ipv4Addr{kBackend[b]}, 8080));
  EXPECT_NE(e->backend, kUnattributedStats);

  const TrafficCounters& be = backend_stats(kBackend[b]);
  EXPECT_EQ(be.created.get(), 1u);
  EXPECT_EQ(be.active(), 1u);
  EXPECT_EQ(be.packets[0].get(), 1u);
  EXPECT_EQ(be.bytes[0].get(), syn.size());
  EXPECT_EQ(be.packets[1].get(), 0u);
  EXPECT_EQ(service_stats().created.get(), 1u);
  EXPECT_EQ(service_stats().bytes[0].get(), syn.size());
  for (int other = 0; other < 3; ++other) {
    if (other != b) {
      EXPECT_EQ(backend_stats(kBackend[other]).created.get(), 0u) << other;
    }
  }

  // The reply counts out, the client's next packets in.
  const Bytes synack = tcp(kSouthMac, kBackendMac[b], kBackend[b], kClient, 8080, 40000, 0x12);
  ASSERT_EQ(run(synack, out).event, Handled::kLbRepliesForwarded);
  const Bytes ack = from_client(40000, 0x10);
  ASSERT_EQ(run(ack, out).event, Handled::kLbForwarded);
  ASSERT_EQ(run(ack, out).event, Handled::kLbForwarded);
  EXPECT_EQ(be.created.get(), 1u);  // still one connection
  EXPECT_EQ(be.packets[0].get(), 3u);
  EXPECT_EQ(be.bytes[0].get(), syn.size() + 2 * ack.size());
  EXPECT_EQ(be.packets[1].get(), 1u);
  EXPECT_EQ(be.bytes[1].get(), synack.size());
  EXPECT_EQ(service_stats().packets[0].get(), 3u);
  EXPECT_EQ(service_stats().packets[1].get(), 1u);
  // The connection's own figures agree.
  EXPECT_EQ(e->packets[0], 3u);
  EXPECT_EQ(e->bytes[1], synack.size());
}

TEST_F(ForwarderTest, ConnectionsSpreadOverBackendsAreCountedOncePerBackend) {
  set_service(ForwardMode::kDsr, three(80));
  Bytes out;
  constexpr int kFlows = 300;
  std::array<std::uint64_t, 3> created{};
  for (std::uint16_t sport = 1000; sport < 1000 + kFlows; ++sport) {
    ASSERT_EQ(run(from_client(sport, 0x02), out).action, Action::kTransmit);
    ++created[backend_of(conns_->find({kClient, kVip, sport, 80, 6})->backend_addr)];
  }
  std::uint64_t sum = 0;
  for (int b = 0; b < 3; ++b) {
    EXPECT_EQ(backend_stats(kBackend[b], 80).created.get(), created[b]) << b;
    EXPECT_EQ(backend_stats(kBackend[b], 80).active(), created[b]) << b;
    EXPECT_EQ(backend_stats(kBackend[b], 80).packets[1].get(), 0u);  // dsr: replies bypass the unit
    sum += backend_stats(kBackend[b], 80).created.get();
  }
  EXPECT_EQ(sum, static_cast<std::uint64_t>(kFlows));
  EXPECT_EQ(service_stats().created.get(), static_cast<std::uint64_t>(kFlows));
}

TEST_F(ForwarderTest, EveryWayOutOfTheTableClosesTheConnectionOnce) {
  set_service(ForwardMode::kNat, three());
  Bytes out;
  for (std::uint16_t sport = 1; sport <= 30; ++sport) ASSERT_EQ(run(from_client(sport, 0x02), out).action, Action::kTransmit);
  EXPECT_EQ(service_stats().active(), 30u);

  // A client reusing a closed connection's port: the old one closes, a new one is created.
  ASSERT_EQ(run(from_client(1, 0x04), out).action, Action::kTransmit);  // RST: CLOSE
  ASSERT_TRUE(run(from_client(1, 0x02), out).new_flow);
  EXPECT_EQ(service_stats().created.get(), 31u);
  EXPECT_EQ(service_stats().closed.get(), 1u);
  EXPECT_EQ(service_stats().active(), 30u);

  // A flush by a connection query (what a worker runs for the control plane).
  conntrack::ConnQuery q;
  q.op = conntrack::ConnQueryOp::kFlush;
  q.filter.backend = kBackend[0];
  while (!conntrack::advance(*conns_, q, 7)) {
  }
  EXPECT_GT(q.matched, 0u);
  EXPECT_EQ(backend_stats(kBackend[0]).active(), 0u);
  EXPECT_EQ(backend_stats(kBackend[0]).closed.get(), backend_stats(kBackend[0]).created.get());
  EXPECT_EQ(service_stats().active(), 30u - q.matched);

  // Expiry: SYN_SENT times out after 60 s; an erase of an entry already freed counts nothing.
  now_ += 61'000;
  EXPECT_EQ(conns_->expire(now_, conns_->extent()), 30u - q.matched);
  EXPECT_EQ(conns_->size(), 0u);
  EXPECT_EQ(service_stats().active(), 0u);
  EXPECT_EQ(service_stats().closed.get(), 31u);
  std::uint64_t created = 0, closed = 0;
  for (int b = 0; b < 3; ++b) {
    EXPECT_EQ(backend_stats(kBackend[b]).active(), 0u) << b;
    created += backend_stats(kBackend[b]).created.get();
    closed += backend_stats(kBackend[b]).closed.get();
  }
  EXPECT_EQ(created, 31u);
  EXPECT_EQ(closed, 31u);
}

TEST_F(ForwarderTest, ABackendKeepsItsStatsIdWhenTheTableIsRebuilt) {
  set_service(ForwardMode::kNat, three());
  const std::uint32_t svc = table_->services()[0].stats_id;
  std::array<std::uint32_t, 3> id{};
  for (int b = 0; b < 3; ++b) id[b] = table_->services()[0].backends[b].stats_id;
  EXPECT_NE(svc, kUnattributedStats);
  EXPECT_NE(id[0], id[1]);
  EXPECT_NE(id[1], id[2]);

  // A connection to backend 1...
  Bytes out;
  std::uint16_t sport = 1000;
  for (;; ++sport) {
    ASSERT_EQ(run(from_client(sport, 0x02), out).action, Action::kTransmit);
    if (conns_->find({kClient, kVip, sport, 80, 6})->backend_addr == kBackend[1]) break;
  }
  const std::uint64_t created_1 = backend_stats(kBackend[1]).created.get();

  // ...then backend 0 is removed: backend 1 moves to position 0, its id stays.
  auto two = three();
  two.erase(two.begin());
  set_service(ForwardMode::kNat, two);
  EXPECT_EQ(table_->services()[0].stats_id, svc);
  EXPECT_EQ(table_->services()[0].backends[0].stats_id, id[1]);
  EXPECT_EQ(table_->services()[0].backends[1].stats_id, id[2]);
  const std::uint64_t in_before = backend_stats(kBackend[1]).packets[0].get();
  ASSERT_EQ(run(from_client(sport, 0x10), out).action, Action::kTransmit);
  EXPECT_EQ(backend_stats(kBackend[1]).packets[0].get(), in_before + 1);  // still counted to backend 1
  EXPECT_EQ(backend_stats(kBackend[1]).created.get(), created_1);

  // Added back (last this time): its old id again, so its counters carry on.
  auto back = two;
  back.push_back(three()[0]);
  set_service(ForwardMode::kNat, back);
  EXPECT_EQ(table_->services()[0].backends[2].stats_id, id[0]);
  EXPECT_EQ(ids_.backends(), 3u);
  // A new backend gets a new id; so does the same address on another port.
  auto more = back;
  more.push_back({net::Ipv4Addr{kBackend[0]}, 9090, 1});
  set_service(ForwardMode::kNat, more);
  EXPECT_EQ(ids_.backends(), 4u);
  EXPECT_EQ(table_->services()[0].backends[3].stats_id, 4u);
}

TEST(StatsRegistry, AFullRegistryGivesSlotZeroAndWarnsOnce) {
  observe::StatsRegistry ids(3, 4);  // ids 1..2 for services, 1..3 for backends
  const auto service = [](std::string name, int backends) {
    lb::Service s{.name = std::move(name)};
    for (int i = 0; i < backends; ++i) s.backends.push_back({net::Ipv4Addr{0x0a000001u + static_cast<std::uint32_t>(i)}, 80, 1});
    return s;
  };
  std::vector<lb::Service> v{service("a", 2), service("b", 1)};
  EXPECT_EQ(ids.assign(v), "");
  EXPECT_EQ(v[0].stats_id, 1u);
  EXPECT_EQ(v[1].stats_id, 2u);
  EXPECT_EQ(v[0].backends[0].stats_id, 1u);
  EXPECT_EQ(v[0].backends[1].stats_id, 2u);
  EXPECT_EQ(v[1].backends[0].stats_id, 3u);
  // The same backend address in another service is another backend.
  EXPECT_EQ(ids.backend_id("b", net::Ipv4Addr{0x0a000001u}, 80), 3u);

  std::vector<lb::Service> w{service("c", 1), service("a", 3)};
  const std::string warning = ids.assign(w);
  EXPECT_NE(warning.find("no slot left for new services and backends"), std::string::npos) << warning;
  EXPECT_EQ(w[0].stats_id, kUnattributedStats);
  EXPECT_EQ(w[0].backends[0].stats_id, kUnattributedStats);
  EXPECT_EQ(w[1].stats_id, 1u);  // known keys keep their ids
  EXPECT_EQ(w[1].backends[1].stats_id, 2u);
  EXPECT_EQ(w[1].backends[2].stats_id, kUnattributedStats);
  EXPECT_EQ(ids.assign(w), "");  // once
  EXPECT_EQ(ids.services(), 2u);
  EXPECT_EQ(ids.backends(), 3u);
  EXPECT_EQ(ids.service_id("c"), kUnattributedStats);
}

// --- HA: VIP groups this unit owns ------------------------------------------------------------------

namespace {

// The NAT service of the fixture's world, in HA VIP group `group`.
std::unique_ptr<const lb::ServiceTable> service_in_group(std::uint8_t group, observe::StatsRegistry& ids) {
  lb::Service s{.name = "web", .vip = net::Ipv4Addr{kVip}, .proto = 6, .port = 80, .mode = ForwardMode::kNat,
                .backends = three(), .maglev_size = 251, .group = group};
  std::vector<lb::Service> services{s};
  EXPECT_EQ(ids.assign(services), "");
  std::string error;
  auto table = lb::ServiceTable::build(std::move(services), error);
  EXPECT_TRUE(table) << error;
  return table;
}

}  // namespace

TEST_F(ForwarderTest, ANewFlowToAGroupThisUnitDoesNotOwnIsDroppedUntouched) {
  table_ = service_in_group(2, ids_);
  const Bytes in = from_client(40000, 0x02);
  Bytes out;
  lb::LbContext ctx = context();
  ctx.owned_groups = std::uint64_t{1} << 1;  // group 1 only
  const auto v = run_frame(ctx, in, out);
  EXPECT_EQ(v.action, Action::kDrop);
  EXPECT_EQ(v.reason, DropReason::kLbNotActive) << to_string(v.reason);
  EXPECT_FALSE(v.new_flow);
  EXPECT_EQ(out, in) << "the frame is not touched";
  EXPECT_EQ(conns_->size(), 0u) << "no connection is created";
  EXPECT_EQ(conns_->find({kClient, kVip, 40000, 80, 6}), nullptr);
  ctx.owned_groups = 0;
  EXPECT_EQ(run_frame(ctx, in, out).reason, DropReason::kLbNotActive);
  EXPECT_EQ(conns_->size(), 0u);
}

TEST_F(ForwarderTest, ANewFlowToAnOwnedGroupIsForwardedAsBefore) {
  table_ = service_in_group(2, ids_);
  Bytes out;
  lb::LbContext ctx = context();
  ctx.owned_groups = std::uint64_t{1} << 1 | std::uint64_t{1} << 2;
  const auto v = run_frame(ctx, from_client(40000, 0x02), out);
  ASSERT_EQ(v.action, Action::kTransmit);
  EXPECT_TRUE(v.new_flow);
  EXPECT_EQ(v.event, Handled::kLbForwarded);
  const conntrack::ConnEntry* e = conns_->find({kClient, kVip, 40000, 80, 6});
  ASSERT_NE(e, nullptr);
  const int b = backend_of(e->backend_addr);
  ASSERT_GE(b, 0);
  EXPECT_EQ(out, tcp(kBackendMac[b], kSouthMac, kClient, kBackend[b], 40000, 8080, 0x02, 63)) << test::to_hex(out);

  // The group moves to the peer: the flow's next client packet is dropped here, untouched,
  // and its entry stays for when the group comes back.
  ctx.owned_groups = std::uint64_t{1} << 1;
  const Bytes ack = from_client(40000, 0x10);
  const auto lost = run_frame(ctx, ack, out);
  EXPECT_EQ(lost.action, Action::kDrop);
  EXPECT_EQ(lost.reason, DropReason::kLbNotActive);
  EXPECT_EQ(out, ack);
  EXPECT_EQ(conns_->size(), 1u);
  ctx.owned_groups = ~std::uint64_t{0};
  ASSERT_EQ(run_frame(ctx, ack, out).action, Action::kTransmit);
  EXPECT_EQ(out, tcp(kBackendMac[b], kSouthMac, kClient, kBackend[b], 40000, 8080, 0x10, 63));
}

// Just handed over: the group's established flows are still forwarded (the neighbours have not
// followed the new active's gratuitous ARP yet), new ones and port reuses are not.
TEST_F(ForwarderTest, AGroupJustGivenUpKeepsItsEstablishedFlowsOnly) {
  table_ = service_in_group(2, ids_);
  Bytes out;
  lb::LbContext ctx = context();
  ASSERT_EQ(run_frame(ctx, from_client(40000, 0x02), out).action, Action::kTransmit);
  const int b = backend_of(conns_->find({kClient, kVip, 40000, 80, 6})->backend_addr);
  ctx.owned_groups = 0;
  ctx.released_groups = std::uint64_t{1} << 2;
  const auto v = run_frame(ctx, from_client(40000, 0x10), out);
  ASSERT_EQ(v.action, Action::kTransmit);
  EXPECT_EQ(v.event, Handled::kLbReleasedForwarded);
  EXPECT_FALSE(v.new_flow);
  EXPECT_EQ(out, tcp(kBackendMac[b], kSouthMac, kClient, kBackend[b], 40000, 8080, 0x10, 63)) << test::to_hex(out);
  // A new flow, or a SYN on the entry's port: refused, nothing created.
  const Bytes syn = from_client(40001, 0x02);
  EXPECT_EQ(run_frame(ctx, syn, out).reason, DropReason::kLbNotActive);
  EXPECT_EQ(out, syn);
  EXPECT_EQ(run_frame(ctx, from_client(40000, 0x02), out).reason, DropReason::kLbNotActive);
  EXPECT_EQ(run_frame(ctx, from_client(40002, 0x10), out).reason, DropReason::kLbNotActive) << "mid-flow, no entry";
  EXPECT_EQ(conns_->size(), 1u);
  // Another group released: not this one's flows.
  ctx.released_groups = std::uint64_t{1} << 3;
  EXPECT_EQ(run_frame(ctx, from_client(40000, 0x10), out).reason, DropReason::kLbNotActive);
}

TEST_F(ForwarderTest, OwnedGroupsAreBitsOfTheGroupIds) {
  for (const std::uint8_t group : {1, 2, 17, 63}) {
    table_ = service_in_group(group, ids_);
    reset_conns(64);
    Bytes out;
    lb::LbContext ctx = context();
    ctx.owned_groups = ~(std::uint64_t{1} << group);  // every group but this one
    EXPECT_EQ(run_frame(ctx, from_client(40000, 0x02), out).reason, DropReason::kLbNotActive) << int(group);
    ctx.owned_groups = std::uint64_t{1} << group;
    EXPECT_EQ(run_frame(ctx, from_client(40000, 0x02), out).action, Action::kTransmit) << int(group);
  }
  // Without HA every group is owned.
  EXPECT_EQ(lb::LbContext{}.owned_groups, ~std::uint64_t{0});
}

// --- state sync: the changes the fast path logs for the peer (conn_delta.hpp) ---

namespace {

std::vector<conntrack::DeltaKind> kinds(const conntrack::ConnDeltaLog& log) {
  std::vector<conntrack::DeltaKind> k;
  for (std::size_t i = 0; i < log.size(); ++i) k.push_back(log.data()[i].kind);
  return k;
}

}  // namespace

TEST_F(ForwarderTest, SyncLogsACreateAndEveryStateChangeOfANatConnection) {
  using K = conntrack::DeltaKind;
  set_service(ForwardMode::kNat, three());
  conntrack::ConnDeltaLog log;
  Bytes out;
  const auto step = [&](const Bytes& in) {
    lb::LbContext ctx = context();
    ctx.sync = &log;
    return run_frame(ctx, in, out);
  };
  ASSERT_EQ(step(from_client(40000, 0x02)).action, Action::kTransmit);  // SYN: created
  ASSERT_EQ(log.size(), 1u);
  const conntrack::ConnDelta& d = log.data()[0];
  const conntrack::ConnEntry* e = conns_->find({kClient, kVip, 40000, 80, 6});
  ASSERT_NE(e, nullptr);
  // The delta is the entry as it is after the packet, by value.
  EXPECT_EQ(d.kind, K::kCreate);
  EXPECT_EQ(d.client_addr, kClient);
  EXPECT_EQ(d.vip_addr, kVip);
  EXPECT_EQ(d.client_port, 40000);
  EXPECT_EQ(d.vip_port, 80);
  EXPECT_EQ(d.backend_addr, e->backend_addr);
  EXPECT_EQ(d.backend_port, 8080);
  EXPECT_EQ(d.local_addr, kClient);
  EXPECT_EQ(d.local_port, 40000);
  EXPECT_EQ(d.state, conntrack::TcpState::kSynSent);
  EXPECT_EQ(d.mode, ForwardMode::kNat);
  EXPECT_EQ(d.created_ms, now_);
  EXPECT_EQ(d.emitted_ms, now_);
  EXPECT_EQ(e->synced_ms, now_);
  const int b = backend_of(e->backend_addr);

  // SYN+ACK from the backend, the client's ACK: state changes, each logged once.
  ASSERT_EQ(step(tcp(kSouthMac, kBackendMac[b], kBackend[b], kClient, 8080, 40000, 0x12)).action, Action::kTransmit);
  ASSERT_EQ(step(from_client(40000, 0x10)).action, Action::kTransmit);
  EXPECT_EQ(kinds(log), (std::vector<K>{K::kCreate, K::kUpdate, K::kUpdate}));
  EXPECT_EQ(log.data()[2].state, conntrack::TcpState::kEstablished);
  // Data without a state change: nothing more.
  ASSERT_EQ(step(from_client(40000, 0x18)).action, Action::kTransmit);
  ASSERT_EQ(step(tcp(kSouthMac, kBackendMac[b], kBackend[b], kClient, 8080, 40000, 0x18)).action, Action::kTransmit);
  EXPECT_EQ(log.size(), 3u);
  EXPECT_EQ(log.overflow(), 0u);
}

TEST_F(ForwarderTest, SyncLogsAReopenedPortAsADeleteThenACreate) {
  using K = conntrack::DeltaKind;
  set_service(ForwardMode::kDsr, three(80));
  conntrack::ConnDeltaLog log;
  Bytes out;
  lb::LbContext ctx = context();
  ctx.sync = &log;
  ASSERT_EQ(run_frame(ctx, from_client(40000, 0x02), out).action, Action::kTransmit);
  ASSERT_EQ(run_frame(ctx, from_client(40000, 0x04), out).action, Action::kTransmit);  // RST: CLOSE
  ASSERT_EQ(run_frame(ctx, from_client(40000, 0x02), out).action, Action::kTransmit);  // reused
  EXPECT_EQ(kinds(log), (std::vector<K>{K::kCreate, K::kUpdate, K::kDelete, K::kCreate}));
  EXPECT_EQ(log.data()[2].client_port, 40000);
  EXPECT_EQ(log.data()[3].state, conntrack::TcpState::kSynSent);
}

TEST_F(ForwarderTest, NothingIsLoggedWithoutSyncOrForStatelessAndDroppedPackets) {
  set_service(ForwardMode::kNat, three());
  Bytes out;
  ASSERT_EQ(run(from_client(40000, 0x02), out).action, Action::kTransmit);  // no log given: fine
  conntrack::ConnDeltaLog log;
  lb::LbContext ctx = context();
  ctx.sync = &log;
  EXPECT_EQ(run_frame(ctx, from_client(40001, 0x04), out).event, Handled::kLbStateless);  // lone RST
  EXPECT_EQ(run_frame(ctx, from_client(40002, 0x12), out).action, Action::kDrop);        // SYN+ACK
  ctx.owned_groups = 0;  // a standby
  EXPECT_EQ(run_frame(ctx, from_client(40003, 0x02), out).action, Action::kDrop);
  EXPECT_TRUE(log.empty());
}

TEST(ConnDeltaLog, KeepsOrderAndCountsOverflow) {
  conntrack::ConnDeltaLog log;
  conntrack::ConnEntry e;
  for (std::size_t i = 0; i < conntrack::ConnDeltaLog::kCapacity + 5; ++i) {
    e.client_port = static_cast<std::uint16_t>(i);
    log.emit(conntrack::DeltaKind::kUpdate, e, 7 + i);
  }
  EXPECT_EQ(log.size(), conntrack::ConnDeltaLog::kCapacity);
  EXPECT_EQ(log.overflow(), 5u);
  EXPECT_EQ(log.data()[10].client_port, 10);
  EXPECT_EQ(e.synced_ms, 7 + conntrack::ConnDeltaLog::kCapacity + 4);  // marked even when lost
  log.clear();
  EXPECT_TRUE(log.empty());
}
