// Flow ownership between workers: both directions of every flow, in every mode, come to the
// worker that created its connection, whatever RX queue they arrived on.
#include <gtest/gtest.h>

#include <array>
#include <memory>
#include <random>

#include "dataplane/lb/flow_owner.hpp"
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
const test::Mac kBackendMac = {0x02, 0, 0, 0, 0x0b, 0x20};
const std::uint32_t kVip = test::ip("203.0.113.10");
const std::uint32_t kLocal = test::ip("10.0.1.2");
const std::uint32_t kBackend[3] = {test::ip("10.0.1.21"), test::ip("10.0.1.22"), test::ip("10.0.1.23")};
constexpr std::uint16_t kWorkers = 3;
constexpr std::size_t kHeadroom = 64;

// kWorkers workers, each with its own connection table, in front of three backends.
class FlowOwnerTest : public ::testing::TestWithParam<ForwardMode> {
 protected:
  FlowOwnerTest() : north_neigh_({.capacity = 16}), south_neigh_({.capacity = 16}) {
    north_.mac = net::MacAddr{kNorthMac};
    north_.add(*net::Ipv4Prefix::parse("10.0.0.1/24"));
    south_.mac = net::MacAddr{kSouthMac};
    south_.add(*net::Ipv4Prefix::parse("10.0.1.1/24"));
    north_neigh_.learn(net::Ipv4Addr{test::ip("10.0.0.254")}, net::MacAddr{kGatewayMac}, 0, true);
    for (const auto b : kBackend) south_neigh_.learn(net::Ipv4Addr{b}, net::MacAddr{kBackendMac}, 0, true);
    ports_[0] = {.local = &north_, .neighbours = &north_neigh_, .gateway = net::Ipv4Addr{test::ip("10.0.0.254")}};
    ports_[1] = {.local = &south_, .neighbours = &south_neigh_};
    for (auto& c : conns_) c = std::make_unique<conntrack::ConnTable>(conntrack::ConnTableConfig{.capacity = 4096});

    lb::Service s{.name = "web", .vip = net::Ipv4Addr{kVip}, .proto = 6, .port = 80, .mode = GetParam(),
                  .maglev_size = 251};
    for (const auto b : kBackend) s.backends.push_back({net::Ipv4Addr{b}, 8080, 1});
    if (GetParam() == ForwardMode::kFullNat) s.local_addrs = {net::Ipv4Addr{kLocal}};
    std::string error;
    table_ = lb::ServiceTable::build({s}, error);
    EXPECT_TRUE(table_) << error;
  }

  // The owner of `frame` as a worker computes it, and that worker's verdict on it.
  std::uint16_t owner_of(const Bytes& frame) {
    net::ParsedPacket p;
    EXPECT_EQ(net::parse_packet(frame.data(), static_cast<std::uint32_t>(frame.size()), p), net::ParseError::kNone);
    return lb::flow_owner(*table_, p.src, p.dst, p.sport, p.dport, p.proto, kWorkers);
  }
  lb::LbVerdict run_on(std::uint16_t worker, const Bytes& in, Bytes& out) {
    Bytes buf(kHeadroom, 0);
    buf.insert(buf.end(), in.begin(), in.end());
    std::uint8_t* frame = buf.data() + kHeadroom;
    auto len = static_cast<std::uint32_t>(in.size());
    net::ParsedPacket p;
    EXPECT_EQ(net::parse_packet(frame, len, p), net::ParseError::kNone);
    lb::LbContext ctx{.services = table_.get(), .conns = conns_[worker].get(), .ports = ports_, .worker = worker,
                      .workers = kWorkers, .now_ms = 1000};
    const lb::LbVerdict v = lb::lb_forward(frame, len, p, ctx);
    const std::uint8_t* start = v.grew_front ? frame - lb::kIpipOverhead : frame;
    out.assign(start, start + len);
    return v;
  }
  static Bytes tcp(const test::Mac& dmac, const test::Mac& smac, std::uint32_t src, std::uint32_t dst,
                   std::uint16_t sport, std::uint16_t dport, std::uint8_t flags) {
    test::Ipv4Fields ip{.src = src, .dst = dst, .proto = 6, .ttl = 64};
    return test::ethernet(dmac, smac, 0x0800, test::ipv4(ip, test::tcp(src, dst, sport, dport, flags, test::pattern(8))));
  }

  LocalInterface north_, south_;
  neigh::NeighbourTable north_neigh_, south_neigh_;
  std::array<lb::LbPort, 2> ports_;
  std::array<std::unique_ptr<conntrack::ConnTable>, kWorkers> conns_;
  std::unique_ptr<const lb::ServiceTable> table_;
};

TEST_P(FlowOwnerTest, BothDirectionsOfEveryFlowReachTheWorkerThatOwnsIt) {
  std::mt19937 rng(7);
  std::array<int, kWorkers> per_worker{};
  for (int i = 0; i < 600; ++i) {
    const std::uint32_t client = test::ip("198.51.100.0") + rng() % 4096;
    const auto cport = static_cast<std::uint16_t>(1024 + rng() % 60000);
    const Bytes syn = tcp(kNorthMac, kGatewayMac, client, kVip, cport, 80, 0x02);
    const std::uint16_t w = owner_of(syn);
    ASSERT_LT(w, kWorkers);
    ++per_worker[w];
    Bytes out;
    ASSERT_EQ(run_on(w, syn, out).action, Action::kTransmit);
    const conntrack::ConnEntry* e = conns_[w]->find({client, kVip, cport, 80, 6});
    ASSERT_NE(e, nullptr);
    // Every later client packet of the flow comes to the same worker.
    ASSERT_EQ(owner_of(tcp(kNorthMac, kGatewayMac, client, kVip, cport, 80, 0x10)), w);
    if (GetParam() != ForwardMode::kNat && GetParam() != ForwardMode::kFullNat) continue;
    // The backend's reply, to wherever the rewritten request came from.
    const Bytes reply = tcp(kSouthMac, kBackendMac, e->backend_addr, e->local_addr, e->backend_port,
                            e->local_port, 0x12);
    ASSERT_EQ(owner_of(reply), w) << "flow " << i;
    const auto v = run_on(w, reply, out);
    ASSERT_EQ(v.action, Action::kTransmit);
    EXPECT_EQ(v.event, Handled::kLbRepliesForwarded);
  }
  // Spread over all workers (600 flows, ~200 each).
  for (const int n : per_worker) EXPECT_GT(n, 140);
}

INSTANTIATE_TEST_SUITE_P(Modes, FlowOwnerTest,
                         ::testing::Values(ForwardMode::kNat, ForwardMode::kFullNat, ForwardMode::kDsr,
                                           ForwardMode::kTunnel),
                         [](const ::testing::TestParamInfo<ForwardMode>& p) { return std::string(conntrack::to_string(p.param)); });

TEST(FlowOwner, LocalPortsAreDealtToTheirOwners) {
  for (std::uint16_t workers = 1; workers <= 8; ++workers) {
    const std::uint32_t slots = lb::local_port_slots(workers);
    for (std::uint16_t w = 0; w < workers; ++w) {
      for (const std::uint32_t slot : {0u, 1u, slots / 2, slots - 1}) {
        const std::uint16_t port = lb::local_port_at(slot, w, workers);
        EXPECT_GE(port, lb::kFirstLocalPort);
        EXPECT_EQ(lb::local_port_owner(port, workers), w) << port << " of " << workers;
      }
    }
  }
}

TEST(FlowOwner, OneWorkerOwnsEverything) {
  EXPECT_EQ(lb::client_owner(0x0a000001, 80, 1), 0);
  EXPECT_EQ(lb::local_port_owner(5000, 1), 0);
}

// Two units must agree on owners (state sync installs a peer's flow in its owner): the function
// is part of the wire contract like flow_hash, pinned here.
TEST(FlowOwner, ClientOwnerIsStable) {
  EXPECT_EQ(lb::client_owner(test::ip("198.51.100.7"), 40000, 4), 0);
  EXPECT_EQ(lb::client_owner(test::ip("198.51.100.7"), 40001, 4), 0);
  EXPECT_EQ(lb::client_owner(test::ip("10.1.2.3"), 443, 7), 6);
}

}  // namespace
