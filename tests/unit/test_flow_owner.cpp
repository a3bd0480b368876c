// Flow ownership between workers: both directions of every flow, in every mode, come to the
// worker that created its connection, whatever RX queue they arrived on.
#include <gtest/gtest.h>

#include <array>
#include <memory>
#include <random>

#include "dataplane/lb/flow_owner.hpp"
#include "tests/unit/lb_frames.hpp"

using namespace tandem;
using conntrack::ForwardMode;
using test::Bytes;
using Action = lb::LbVerdict::Action;

namespace {

using namespace test::lb_world;

constexpr std::uint16_t kWorkers = 3;

// kWorkers workers, each with its own connection table, in front of three backends.
class FlowOwnerTest : public ::testing::TestWithParam<ForwardMode> {
 protected:
  FlowOwnerTest() {
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
    const auto owner = lb::packet_owner(frame.data(), static_cast<std::uint32_t>(frame.size()), p, *table_, kWorkers);
    EXPECT_TRUE(owner.has_value());
    return owner.value_or(kWorkers);
  }
  lb::LbVerdict run_on(std::uint16_t worker, const Bytes& in, Bytes& out) {
    return run_frame({.services = table_.get(), .conns = conns_[worker].get(), .ports = unit_.ports, .worker = worker,
                      .workers = kWorkers, .now_ms = 1000},
                     in, out);
  }

  // "Port unreachable" to `to` quoting the IPv4 datagram of `frame`, from its destination.
  static Bytes port_unreachable(const Bytes& frame, std::uint32_t to) {
    const auto from = static_cast<std::uint32_t>(frame[30] << 24 | frame[31] << 16 | frame[32] << 8 | frame[33]);
    return icmp_error(kNorthMac, kGatewayMac, from, to, 3, 3, 0, frame);
  }

  UnitPorts unit_;
  std::array<std::unique_ptr<conntrack::ConnTable>, kWorkers> conns_;
  std::unique_ptr<const lb::ServiceTable> table_;
};

TEST_P(FlowOwnerTest, BothDirectionsOfEveryFlowReachTheWorkerThatOwnsIt) {
  std::mt19937 rng(7);
  std::array<int, kWorkers> per_worker{};
  for (int i = 0; i < 600; ++i) {
    const std::uint32_t client = test::ip("198.51.100.0") + rng() % 4096;
    const auto cport = static_cast<std::uint16_t>(1024 + rng() % 60000);
    const Bytes syn = tcp_frame(kNorthMac, kGatewayMac, client, kVip, cport, 80, 0x02);
    const std::uint16_t w = owner_of(syn);
    ASSERT_LT(w, kWorkers);
    ++per_worker[w];
    Bytes out;
    ASSERT_EQ(run_on(w, syn, out).action, Action::kTransmit);
    const conntrack::ConnEntry* e = conns_[w]->find({client, kVip, cport, 80, 6});
    ASSERT_NE(e, nullptr);
    // Every later client packet of the flow comes to the same worker.
    ASSERT_EQ(owner_of(tcp_frame(kNorthMac, kGatewayMac, client, kVip, cport, 80, 0x10)), w);
    // So does an ICMP error about what the unit sent the backend (from the backend's side; not
    // tunnel, whose errors quote the outer IPIP header: those are the local stack's).
    if (GetParam() != ForwardMode::kTunnel) {
      ASSERT_EQ(owner_of(port_unreachable(out, e->local_addr)), w);
    }
    if (GetParam() != ForwardMode::kNat && GetParam() != ForwardMode::kFullNat) continue;
    // The backend's reply, to wherever the rewritten request came from.
    const Bytes reply = tcp_frame(kSouthMac, kBackendMac[0], e->backend_addr, e->local_addr, e->backend_port,
                            e->local_port, 0x12);
    ASSERT_EQ(owner_of(reply), w) << "flow " << i;
    // And an error from the client's side about the reply the unit sent it.
    Bytes to_client;
    ASSERT_EQ(run_on(w, reply, to_client).action, Action::kTransmit);
    ASSERT_EQ(owner_of(port_unreachable(to_client, kVip)), w);
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
