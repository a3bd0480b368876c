// The load balancer's forwarding, packet by packet: every mode's request and reply rewritten
// exactly (checksums computed from scratch by frames.cpp), connection tracking, drains, the
// policies for a full table and for mid-flow packets.
#include <gtest/gtest.h>

#include <map>

#include "dataplane/lb/forwarder.hpp"
#include "dataplane/lb/rewrite.hpp"
#include "tests/unit/frames.hpp"

using namespace tandem;
using conntrack::ForwardMode;
using test::Bytes;
using Action = lb::LbVerdict::Action;

namespace {

const test::Mac kNorthMac = {0x02, 0, 0, 0, 0x0a, 1};
const test::Mac kSouthMac = {0x02, 0, 0, 0, 0x0b, 1};
const test::Mac kGatewayMac = {0x02, 0, 0, 0, 0x0a, 0xfe};
const test::Mac kBackendMac[3] = {{0x02, 0, 0, 0, 0x0b, 21}, {0x02, 0, 0, 0, 0x0b, 22}, {0x02, 0, 0, 0, 0x0b, 23}};
const std::uint32_t kClient = test::ip("198.51.100.7");
const std::uint32_t kVip = test::ip("203.0.113.10");
const std::uint32_t kGateway = test::ip("10.0.0.254");
const std::uint32_t kSouthAddr = test::ip("10.0.1.1");
const std::uint32_t kLocal = test::ip("10.0.1.2");
const std::uint32_t kBackend[3] = {test::ip("10.0.1.21"), test::ip("10.0.1.22"), test::ip("10.0.1.23")};
constexpr std::size_t kHeadroom = 64;

class ForwarderTest : public ::testing::Test {
 protected:
  ForwarderTest()
      : conns_(std::make_unique<conntrack::ConnTable>(conntrack::ConnTableConfig{.capacity = 4096})),
        north_neigh_(neigh::NeighbourConfig{.capacity = 16}),
        south_neigh_(neigh::NeighbourConfig{.capacity = 16}) {
    north_.mac = net::MacAddr{kNorthMac};
    north_.add(*net::Ipv4Prefix::parse("10.0.0.1/24"));
    south_.mac = net::MacAddr{kSouthMac};
    south_.add(*net::Ipv4Prefix::parse("10.0.1.1/24"));
    north_neigh_.learn(net::Ipv4Addr{kGateway}, net::MacAddr{kGatewayMac}, 0, true);
    for (int i = 0; i < 3; ++i) south_neigh_.learn(net::Ipv4Addr{kBackend[i]}, net::MacAddr{kBackendMac[i]}, 0, true);
    ports_[0] = {.local = &north_, .neighbours = &north_neigh_, .gateway = net::Ipv4Addr{kGateway}};
    ports_[1] = {.local = &south_, .neighbours = &south_neigh_};
  }

  void set_service(ForwardMode mode, std::vector<lb::Backend> backends, std::uint16_t port = 80) {
    lb::Service s{.name = "web", .vip = net::Ipv4Addr{kVip}, .proto = 6, .port = port, .mode = mode,
                  .backends = std::move(backends), .maglev_size = 251};
    if (mode == ForwardMode::kFullNat) s.local_addrs = {net::Ipv4Addr{kLocal}};
    std::string error;
    table_ = lb::ServiceTable::build({s}, error);
    ASSERT_TRUE(table_) << error;
  }

  lb::LbContext context() {
    return {.services = table_.get(), .conns = conns_.get(), .ports = ports_, .now_ms = now_};
  }

  // Runs one frame; returns the verdict and leaves the output frame in `out`.
  lb::LbVerdict run(const Bytes& in, Bytes& out) {
    Bytes buf(kHeadroom, 0);
    buf.insert(buf.end(), in.begin(), in.end());
    std::uint8_t* frame = buf.data() + kHeadroom;
    std::uint32_t len = static_cast<std::uint32_t>(in.size());
    net::ParsedPacket p;
    EXPECT_EQ(net::parse_packet(frame, len, p), net::ParseError::kNone);
    auto ctx = context();
    const lb::LbVerdict v = lb::lb_forward(frame, len, p, ctx);
    const std::uint8_t* start = v.grew_front ? frame - lb::kIpipOverhead : frame;
    out.assign(start, start + len);
    return v;
  }

  static Bytes tcp(const test::Mac& dmac, const test::Mac& smac, std::uint32_t src, std::uint32_t dst,
                   std::uint16_t sport, std::uint16_t dport, std::uint8_t flags, std::uint8_t ttl = 64,
                   const Bytes& payload = test::pattern(20)) {
    test::Ipv4Fields ip{.src = src, .dst = dst, .proto = 6, .ttl = ttl};
    return test::ethernet(dmac, smac, 0x0800, test::ipv4(ip, test::tcp(src, dst, sport, dport, flags, payload)));
  }
  // What the client sends: from the gateway's MAC to the north port.
  static Bytes from_client(std::uint16_t sport, std::uint8_t flags, std::uint8_t ttl = 64) {
    return tcp(kNorthMac, kGatewayMac, kClient, kVip, sport, 80, flags, ttl);
  }

  int backend_of(std::uint32_t addr) const {
    for (int i = 0; i < 3; ++i)
      if (kBackend[i] == addr) return i;
    return -1;
  }

  void reset_conns(std::uint32_t capacity) {
    conns_ = std::make_unique<conntrack::ConnTable>(conntrack::ConnTableConfig{.capacity = capacity});
  }

  std::unique_ptr<const lb::ServiceTable> table_;
  std::unique_ptr<conntrack::ConnTable> conns_;
  LocalInterface north_, south_;
  neigh::NeighbourTable north_neigh_, south_neigh_;
  std::array<lb::LbPort, 2> ports_;
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
  const auto* n = south_neigh_.find(net::Ipv4Addr{test::ip("10.0.1.99")});
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
