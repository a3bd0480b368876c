// Applying the peer's connection records (controlplane/sync/apply.*): a connection made by the
// real forwarder on unit A, in every mode, replicated through the real codec to unit B whose
// Maglev table differs, keeps its backend and NAT binding on B byte for byte, in both
// directions; refresh, delete, conflict, table full, unknown services, expiry; and a seeded run
// of random records that never breaks the table.
#include "controlplane/sync/apply.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <memory>
#include <random>
#include <type_traits>

#include "controlplane/observe/stats_registry.hpp"
#include "dataplane/lb/flow_owner.hpp"
#include "tests/unit/lb_frames.hpp"

using namespace tandem;
using namespace tandem::sync;
using conntrack::ConnEntry;
using conntrack::FlowKey;
using conntrack::ForwardMode;
using conntrack::TcpState;
using test::Bytes;
using Action = lb::LbVerdict::Action;

namespace {

using namespace test::lb_world;

const std::vector<std::uint8_t> kKey(32, 0x5a);
constexpr std::uint8_t kSyn = 0x02, kSynAck = 0x12, kAck = 0x10, kPshAck = 0x18, kFinAck = 0x11;

// The "web" service on VIP:80 with the first `n` of the world's backends.
lb::Service web(ForwardMode mode, int n) {
  lb::Service s{.name = "web", .vip = net::Ipv4Addr{kVip}, .proto = 6, .port = 80, .mode = mode, .maglev_size = 251};
  for (int i = 0; i < n; ++i) s.backends.push_back({net::Ipv4Addr{kBackend[i]}, 8080, 1});
  if (mode == ForwardMode::kFullNat) s.local_addrs = {net::Ipv4Addr{kLocal}};
  return s;
}
// Another service, listed first on unit B so that B's stats ids differ from A's.
lb::Service decoy() {
  return {.name = "decoy", .vip = net::Ipv4Addr{kVip}, .proto = 6, .port = 8443, .mode = ForwardMode::kNat,
          .backends = {{net::Ipv4Addr{kBackend[2]}, 9000, 1}}, .maglev_size = 251};
}

// One unit: its ports (alike on both units, so their frames compare byte for byte), its
// services with stats ids from its own registry, one connection table per worker, its clock.
struct Unit {
  Unit(std::vector<lb::Service> s, std::uint16_t w, std::uint64_t t, std::uint32_t capacity = 4096)
      : workers(w), now(t) {
    for (std::uint16_t i = 0; i < workers; ++i)
      conns.push_back(std::make_unique<conntrack::ConnTable>(conntrack::ConnTableConfig{.capacity = capacity}));
    set_services(std::move(s));
  }
  void set_services(std::vector<lb::Service> s) {
    EXPECT_EQ(ids.assign(s), "");
    std::string error;
    services = lb::ServiceTable::build(std::move(s), error);
    EXPECT_TRUE(services) << error;
  }
  // Runs `in` on the worker that owns it, as the workers hand frames to each other.
  lb::LbVerdict run(const Bytes& in, Bytes& out) {
    net::ParsedPacket p;
    EXPECT_EQ(net::parse_packet(in.data(), static_cast<std::uint32_t>(in.size()), p), net::ParseError::kNone);
    const std::uint16_t w =
        lb::packet_owner(in.data(), static_cast<std::uint32_t>(in.size()), p, *services, workers).value_or(0);
    return run_frame({.services = services.get(), .conns = conns[w].get(), .ports = ports.ports, .worker = w,
                      .workers = workers, .now_ms = now},
                     in, out);
  }
  // The entry holding `k` in any worker's table, and that worker.
  ConnEntry* find(const FlowKey& k, std::uint16_t* worker = nullptr) {
    for (std::uint16_t w = 0; w < workers; ++w)
      if (ConnEntry* e = conns[w]->find(k)) {
        if (worker) *worker = w;
        return e;
      }
    return nullptr;
  }
  std::size_t size() const {
    std::size_t n = 0;
    for (const auto& c : conns) n += c->size();
    return n;
  }
  // Every connection as a record, as the bulk resync will stream them.
  std::vector<Record> records(RecordType type = RecordType::kCreate) const {
    std::vector<Record> out;
    for (const auto& c : conns) c->for_each([&](const ConnEntry& e) { out.push_back(conn_record(e, now, type)); });
    return out;
  }

  UnitPorts ports;
  observe::StatsRegistry ids;
  std::unique_ptr<const lb::ServiceTable> services;
  std::vector<std::unique_ptr<conntrack::ConnTable>> conns;
  std::uint16_t workers;
  std::uint64_t now;
};

// Through the real codec: encoded by unit 1, authenticated and decoded by unit 2.
std::vector<Record> over_the_link(const std::vector<Record>& records) {
  const Message m{{.unit_id = 1, .kind = MessageKind::kData, .epoch = 7, .sequence = 1, .oldest = 1}, records};
  std::vector<std::uint8_t> wire;
  EXPECT_TRUE(encode(m, kKey, wire));
  Decoder d(2, kKey);
  Message got;
  EXPECT_TRUE(d.decode(wire, got));
  EXPECT_EQ(got.records, records);
  return got.records;
}

// What the sync thread and the workers will do with delivered records: each to its owner.
ApplyCounts apply_all(Unit& u, const std::vector<Record>& records) {
  ApplyCounts n;
  for (const Record& r : records) {
    if (const auto* c = std::get_if<ConnRecord>(&r)) {
      bool split = true;
      const std::uint16_t w = record_owner(*c, *u.services, u.workers, &split);
      EXPECT_FALSE(split);
      n.count(apply(*u.conns[w], *c, *u.services, u.now));
    } else if (const auto* d = std::get_if<DeleteRecord>(&r)) {
      n.count(apply(*u.conns[record_owner(*d, u.workers)], *d));
    }
  }
  return n;
}

Bytes from_client(std::uint16_t sport, std::uint8_t flags, const Bytes& payload = test::pattern(20)) {
  return tcp_frame(kNorthMac, kGatewayMac, kClient, kVip, sport, 80, flags, 64, payload);
}
// The backend's packet back to where the entry says its replies go.
Bytes from_backend(const ConnEntry& e, std::uint8_t flags) {
  const int b = backend_of(e.backend_addr);
  return tcp_frame(kSouthMac, kBackendMac[b < 0 ? 0 : b], e.backend_addr, e.local_addr, e.backend_port, e.local_port,
                   flags);
}

constexpr std::uint16_t kWorkers = 3;

class SyncApplyMode : public ::testing::TestWithParam<ForwardMode> {};

// The case: a backend was added on B just before the failover, so B's Maglev table
// picks another backend for the flow; the replicated entry keeps the flow where A put it.
TEST_P(SyncApplyMode, AFlowKeepsItsBackendAndBindingOnThePeer) {
  const ForwardMode mode = GetParam();
  const bool replies = conntrack::replies_pass_through(mode);
  Unit a({web(mode, 2)}, kWorkers, 1000);
  Unit b({decoy(), web(mode, 3)}, kWorkers, 777'000);
  Unit fresh({decoy(), web(mode, 3)}, kWorkers, 777'000);  // B without the records

  // A client port whose flow B's table would send elsewhere.
  const lb::Service& sa = *a.services->find(net::Ipv4Addr{kVip}, 6, 80);
  const lb::Service& sb = *b.services->find(net::Ipv4Addr{kVip}, 6, 80);
  std::uint16_t sport = 40000;
  while (sa.pick(lb::flow_hash(kClient, kVip, sport, 80, 6))->addr == sb.pick(lb::flow_hash(kClient, kVip, sport, 80, 6))->addr)
    ++sport;

  // The connection on A: handshake through the real forwarder.
  Bytes out;
  ASSERT_EQ(a.run(from_client(sport, kSyn), out).action, Action::kTransmit);
  const FlowKey key{.src_addr = kClient, .dst_addr = kVip, .src_port = sport, .dst_port = 80, .proto = 6};
  std::uint16_t worker_a = 0;
  ConnEntry* ea = a.find(key, &worker_a);
  ASSERT_NE(ea, nullptr);
  if (replies) {
    a.now += 1;
    ASSERT_EQ(a.run(from_backend(*ea, kSynAck), out).action, Action::kTransmit);
  }
  a.now += 1;
  ASSERT_EQ(a.run(from_client(sport, kAck), out).action, Action::kTransmit);
  EXPECT_EQ(ea->state, TcpState::kEstablished);
  a.now += 500;

  // Replicated: records written on A, across the link, each applied by its owner on B.
  const auto records = over_the_link(a.records());
  ASSERT_EQ(records.size(), 1u);
  const ApplyCounts n = apply_all(b, records);
  EXPECT_EQ(n[ApplyResult::kCreated], 1u);
  std::uint16_t worker_b = 0;
  ConnEntry* eb = b.find(key, &worker_b);
  ASSERT_NE(eb, nullptr);
  EXPECT_EQ(worker_b, worker_a);  // same number of workers: the same worker owns it
  EXPECT_EQ(eb->original_key(), ea->original_key());
  EXPECT_EQ(eb->reply_key(), ea->reply_key());
  EXPECT_EQ(eb->mode, mode);
  EXPECT_EQ(eb->state, TcpState::kEstablished);
  EXPECT_TRUE(eb->flags & conntrack::kConnFromPeer);
  EXPECT_FALSE(eb->flags & conntrack::kConnMidFlow);
  EXPECT_EQ(eb->created_ms, b.now - (a.now - ea->created_ms));
  EXPECT_EQ(eb->last_seen_ms, b.now - (a.now - ea->last_seen_ms));
  EXPECT_EQ(eb->packets[0] + eb->packets[1], 0u);  // counters are A's own
  // Stats ids are B's, found by identity; A's are other numbers.
  const net::Ipv4Addr backend{ea->backend_addr};
  EXPECT_EQ(eb->service, b.ids.service_id("web"));
  EXPECT_EQ(eb->backend, b.ids.backend_id("web", backend, 8080));
  EXPECT_NE(eb->service, ea->service);
  EXPECT_NE(eb->backend, ea->backend);
  EXPECT_NE(eb->backend, 0u);

  // A mid-flow packet: B sends it exactly where A does, with the same NAT binding.
  a.now += 100;
  b.now += 100;
  const Bytes data = from_client(sport, kPshAck, test::pattern(200));
  Bytes out_a, out_b, out_fresh;
  ASSERT_EQ(a.run(data, out_a).action, Action::kTransmit);
  const lb::LbVerdict vb = b.run(data, out_b);
  ASSERT_EQ(vb.action, Action::kTransmit);
  EXPECT_FALSE(vb.new_flow);
  EXPECT_EQ(out_b, out_a) << test::to_hex(out_b) << "\n" << test::to_hex(out_a);
  EXPECT_EQ(b.size(), 1u);
  // Without the record B adopts the flow mid-flow and its own table sends it elsewhere.
  ASSERT_EQ(fresh.run(data, out_fresh).action, Action::kTransmit);
  EXPECT_NE(out_fresh, out_a);
  EXPECT_NE(fresh.find(key)->backend_addr, ea->backend_addr);

  // The backend's reply comes back through B translated exactly as through A.
  if (replies) {
    const Bytes reply = from_backend(*ea, kPshAck);
    const lb::LbVerdict ra = a.run(reply, out_a);
    const lb::LbVerdict rb = b.run(reply, out_b);
    ASSERT_EQ(ra.action, Action::kTransmit);
    ASSERT_EQ(rb.action, Action::kTransmit);
    EXPECT_EQ(rb.event, Handled::kLbRepliesForwarded);
    EXPECT_EQ(out_b, out_a) << test::to_hex(out_b) << "\n" << test::to_hex(out_a);
  }
  // The local traffic is counted on B's entry.
  EXPECT_EQ(eb->packets[0], 1u);
  EXPECT_EQ(eb->packets[1], replies ? 1u : 0u);
}

INSTANTIATE_TEST_SUITE_P(Modes, SyncApplyMode,
                         ::testing::Values(ForwardMode::kNat, ForwardMode::kFullNat, ForwardMode::kDsr,
                                           ForwardMode::kTunnel),
                         [](const auto& p) { return std::string(conntrack::to_string(p.param)); });

// Many flows on A's workers: each lands on B in the worker the fast path hands its packets to.
TEST_P(SyncApplyMode, EveryFlowGoesToTheWorkerThatOwnsItsPackets) {
  const ForwardMode mode = GetParam();
  Unit a({web(mode, 3)}, kWorkers, 1000);
  Unit b({web(mode, 3)}, kWorkers, 5000);
  Bytes out;
  for (std::uint16_t sport = 30000; sport < 30200; ++sport)
    ASSERT_EQ(a.run(from_client(sport, kSyn), out).action, Action::kTransmit);
  const auto records = over_the_link(a.records());
  ASSERT_EQ(records.size(), 200u);
  EXPECT_EQ(apply_all(b, records)[ApplyResult::kCreated], 200u);
  for (std::uint16_t w = 0; w < kWorkers; ++w) {
    EXPECT_GT(b.conns[w]->size(), 0u);
    EXPECT_EQ(b.conns[w]->size(), a.conns[w]->size());
    b.conns[w]->for_each([&](const ConnEntry& e) {
      // Both directions' packets are owned by the worker holding the entry.
      EXPECT_EQ(lb::flow_owner(*b.services, net::Ipv4Addr{e.client_addr}, net::Ipv4Addr{e.vip_addr}, e.client_port,
                               e.vip_port, 6, kWorkers),
                w);
      if (conntrack::replies_pass_through(mode)) {
        EXPECT_EQ(lb::flow_owner(*b.services, net::Ipv4Addr{e.backend_addr}, net::Ipv4Addr{e.local_addr},
                                 e.backend_port, e.local_port, 6, kWorkers),
                  w);
      }
      EXPECT_NE(a.conns[w]->find(e.original_key()), nullptr);
    });
  }
  // Their deletes find them by the same rule, and a second round finds nothing.
  std::vector<Record> deletes;
  for (const Record& r : records) {
    const auto& c = std::get<ConnRecord>(r);
    deletes.push_back(DeleteRecord{c.proto, c.client_addr, c.vip_addr, c.client_port, c.vip_port});
  }
  EXPECT_EQ(apply_all(b, over_the_link(deletes))[ApplyResult::kDeleted], 200u);
  EXPECT_EQ(b.size(), 0u);
  EXPECT_EQ(apply_all(b, deletes)[ApplyResult::kAbsent], 200u);
}

// A unit with another number of workers: a fullnat flow's two directions part ways (its local
// port belongs to one worker, its client to another); the split is reported.
TEST(SyncApplyOwner, FullNatOnAnotherNumberOfWorkersIsReportedSplit) {
  Unit a({web(ForwardMode::kFullNat, 3)}, kWorkers, 1000);
  Unit b({web(ForwardMode::kFullNat, 3)}, 2, 1000);
  Bytes out;
  int split_flows = 0;
  for (std::uint16_t sport = 30000; sport < 30050; ++sport) {
    ASSERT_EQ(a.run(from_client(sport, kSyn), out).action, Action::kTransmit);
    const ConnEntry& e = *a.find({kClient, kVip, sport, 80, 6});
    const ConnRecord r = conn_record(e, a.now);
    bool split = false;
    const std::uint16_t w = record_owner(r, *b.services, b.workers, &split);
    EXPECT_EQ(w, lb::local_port_owner(e.local_port, 2));  // the local port decides
    if (lb::client_owner(kClient, sport, 2) != w) {
      EXPECT_TRUE(split);
      ++split_flows;
    } else {
      EXPECT_FALSE(split);
    }
    // nat, dsr, tunnel never split: the client decides both ways.
    for (ForwardMode m : {ForwardMode::kNat, ForwardMode::kDsr, ForwardMode::kTunnel}) {
      ConnRecord n = r;
      n.mode = m;
      n.local_addr = kClient;
      n.local_port = sport;
      EXPECT_EQ(record_owner(n, *b.services, b.workers, &split), lb::client_owner(kClient, sport, 2));
      EXPECT_FALSE(split);
    }
  }
  EXPECT_GT(split_flows, 0);
}

// A record built by hand: an established nat flow of the "web" service on backend 0.
ConnRecord nat_record(std::uint16_t sport = 40000, int backend = 0) {
  ConnRecord r;
  r.type = RecordType::kCreate;
  r.proto = 6;
  r.mode = ForwardMode::kNat;
  r.state = TcpState::kEstablished;
  r.client_addr = kClient;
  r.vip_addr = kVip;
  r.client_port = sport;
  r.vip_port = 80;
  r.backend_addr = kBackend[backend];
  r.local_addr = kClient;
  r.backend_port = 8080;
  r.local_port = sport;
  r.created_age_ms = 10'000;
  r.idle_ms = 1'000;
  return r;
}
ConnRecord fullnat_record(std::uint16_t sport, std::uint16_t local_port, int backend = 0) {
  ConnRecord r = nat_record(sport, backend);
  r.mode = ForwardMode::kFullNat;
  r.local_addr = kLocal;
  r.local_port = local_port;
  return r;
}
DeleteRecord delete_of(const ConnRecord& r) {
  return {r.proto, r.client_addr, r.vip_addr, r.client_port, r.vip_port};
}

class SyncApply : public ::testing::Test {
 protected:
  SyncApply() : unit({web(ForwardMode::kNat, 3)}, 1, 100'000) {}
  conntrack::ConnTable& table() { return *unit.conns[0]; }
  ApplyResult put(const ConnRecord& r) { return apply(table(), r, *unit.services, unit.now); }
  void expect_consistent() {
    std::string why;
    EXPECT_TRUE(table().check_invariants(&why)) << why;
  }
  Unit unit;
};

TEST_F(SyncApply, ADuplicateRefreshesTheOneEntry) {
  const ConnRecord r = nat_record();
  EXPECT_EQ(put(r), ApplyResult::kCreated);
  EXPECT_EQ(put(r), ApplyResult::kRefreshed);
  ConnRecord u = r;
  u.type = RecordType::kUpdate;
  EXPECT_EQ(put(u), ApplyResult::kRefreshed);
  EXPECT_EQ(table().size(), 1u);
  EXPECT_EQ(table().stats().inserts, 1u);
  const ConnEntry& e = *table().find(FlowKey{kClient, kVip, 40000, 80, 6});
  EXPECT_EQ(e.created_ms, 90'000u);
  EXPECT_EQ(e.last_seen_ms, 99'000u);
  expect_consistent();
}

TEST_F(SyncApply, AnUpdateFirstCreates) {
  ConnRecord r = nat_record();
  r.type = RecordType::kUpdate;
  EXPECT_EQ(put(r), ApplyResult::kCreated);
  EXPECT_EQ(table().size(), 1u);
}

TEST_F(SyncApply, DeleteErasesOnceThenIsAbsent) {
  const ConnRecord r = nat_record();
  ASSERT_EQ(put(r), ApplyResult::kCreated);
  EXPECT_EQ(apply(table(), delete_of(r)), ApplyResult::kDeleted);
  EXPECT_EQ(table().size(), 0u);
  EXPECT_EQ(table().find(FlowKey{kBackend[0], kClient, 8080, 40000, 6}), nullptr);
  EXPECT_EQ(apply(table(), delete_of(r)), ApplyResult::kAbsent);
  // Another protocol, or the reply key given as an original key, is not the flow.
  ASSERT_EQ(put(r), ApplyResult::kCreated);
  DeleteRecord udp = delete_of(r);
  udp.proto = 17;
  EXPECT_EQ(apply(table(), udp), ApplyResult::kAbsent);
  EXPECT_EQ(apply(table(), DeleteRecord{6, kBackend[0], kClient, 8080, 40000}), ApplyResult::kAbsent);
  DeleteRecord bad = delete_of(r);
  bad.proto = 1;
  EXPECT_EQ(apply(table(), bad), ApplyResult::kBadRecord);
  EXPECT_EQ(table().size(), 1u);
  expect_consistent();
}

TEST_F(SyncApply, ADeleteKeepsAnEntryThatCarriesTrafficHere) {
  const ConnRecord r = nat_record();
  ASSERT_EQ(put(r), ApplyResult::kCreated);
  Bytes out;
  ASSERT_EQ(unit.run(from_client(40000, kPshAck), out).action, Action::kTransmit);  // this unit took over
  EXPECT_EQ(apply(table(), delete_of(r)), ApplyResult::kConflict);
  EXPECT_EQ(table().size(), 1u);
  // So is an entry this unit created itself.
  ASSERT_EQ(unit.run(from_client(40001, kSyn), out).action, Action::kTransmit);
  EXPECT_EQ(apply(table(), delete_of(nat_record(40001))), ApplyResult::kConflict);
  EXPECT_EQ(table().size(), 2u);
}

TEST_F(SyncApply, AReplyKeyOfAnotherFlowIsAConflictAndTheLocalEntryWins) {
  unit.set_services({web(ForwardMode::kFullNat, 3)});
  ApplyCounts n;
  const ConnRecord first = fullnat_record(40000, 2000);
  n.count(put(first));
  // Another client, the same NAT binding (backend, local address and port).
  const ConnRecord second = fullnat_record(40001, 2000);
  n.count(put(second));
  EXPECT_EQ(n[ApplyResult::kCreated], 1u);
  EXPECT_EQ(n[ApplyResult::kConflict], 1u);
  EXPECT_EQ(table().size(), 1u);
  EXPECT_EQ(table().find(FlowKey{kBackend[0], kLocal, 8080, 2000, 6})->client_port, 40000);
  EXPECT_EQ(table().find(FlowKey{kClient, kVip, 40001, 80, 6}), nullptr);

  // A flow of this unit's own holds the binding: the same.
  Bytes out;
  ASSERT_EQ(unit.run(from_client(40002, kSyn), out).action, Action::kTransmit);
  const ConnEntry& local = *table().find(FlowKey{kClient, kVip, 40002, 80, 6});
  ConnRecord third = fullnat_record(40003, local.local_port);
  third.backend_addr = local.backend_addr;
  EXPECT_EQ(put(third), ApplyResult::kConflict);
  EXPECT_EQ(table().find(local.reply_key())->client_port, 40002);

  // An original key that is another flow's reply key.
  ConnRecord odd = nat_record();
  odd.client_addr = kBackend[0];
  odd.client_port = 8080;
  odd.vip_addr = kLocal;
  odd.vip_port = 2000;
  odd.local_addr = kBackend[0];
  odd.local_port = 8080;
  EXPECT_EQ(put(odd), ApplyResult::kConflict);

  // A rebind (the peer moved the first flow) onto a binding held by another flow.
  ConnRecord moved = first;
  moved.type = RecordType::kUpdate;
  moved.local_port = local.local_port;
  moved.backend_addr = local.backend_addr;
  EXPECT_EQ(put(moved), ApplyResult::kConflict);
  EXPECT_EQ(table().find(FlowKey{kClient, kVip, 40000, 80, 6})->local_port, 2000);
  EXPECT_EQ(table().size(), 2u);
  expect_consistent();
}

TEST_F(SyncApply, AFullTableIsCounted) {
  Unit small({web(ForwardMode::kNat, 3)}, 1, 100'000, 1);
  ApplyCounts n;
  n.count(apply(*small.conns[0], nat_record(40000), *small.services, small.now));
  n.count(apply(*small.conns[0], nat_record(40001), *small.services, small.now));
  n.count(apply(*small.conns[0], nat_record(40000), *small.services, small.now));  // still refreshes
  EXPECT_EQ(n[ApplyResult::kCreated], 1u);
  EXPECT_EQ(n[ApplyResult::kTableFull], 1u);
  EXPECT_EQ(n[ApplyResult::kRefreshed], 1u);
  EXPECT_EQ(small.conns[0]->stats().insert_failed_full, 1u);
}

// Decision: a record of a service this unit does not know (yet) is installed, unattributed.
// The two units' configurations change at different moments, and a record refused now is not
// sent again until the flow changes state; the entry is inert until the service exists here
// (a client's packet to an unknown VIP:port is not the forwarder's) and expires otherwise.
TEST_F(SyncApply, AnUnknownServiceOrBackendIsInstalledUnattributed) {
  ConnRecord r = nat_record(40000, 2);
  r.vip_port = 81;  // no such service here
  ASSERT_EQ(put(r), ApplyResult::kCreated);
  const ConnEntry& e = *table().find(FlowKey{kClient, kVip, 40000, 81, 6});
  EXPECT_EQ(e.service, kUnattributedStats);
  EXPECT_EQ(e.backend, kUnattributedStats);

  // A known service and an unknown backend: the service's id, the backend unattributed.
  unit.set_services({web(ForwardMode::kNat, 2)});
  ASSERT_EQ(put(nat_record(40001, 2)), ApplyResult::kCreated);
  const ConnEntry& f = *table().find(FlowKey{kClient, kVip, 40001, 80, 6});
  EXPECT_EQ(f.service, unit.ids.service_id("web"));
  EXPECT_NE(f.service, kUnattributedStats);
  EXPECT_EQ(f.backend, kUnattributedStats);
  // And the flow is forwarded by its keys to that backend, which Maglev here cannot pick.
  Bytes out;
  ASSERT_EQ(unit.run(from_client(40001, kPshAck), out).action, Action::kTransmit);
  EXPECT_EQ(out, tcp_frame(kBackendMac[2], kSouthMac, kClient, kBackend[2], 40001, 8080, kPshAck, 63));
  ASSERT_EQ(unit.run(tcp_frame(kSouthMac, kBackendMac[2], kBackend[2], kClient, 8080, 40001, kAck), out).action,
            Action::kTransmit);
  EXPECT_EQ(out, tcp_frame(kGatewayMac, kNorthMac, kVip, kClient, 80, 40001, kAck, 63));

  // Once the service on :81 exists here, its client's packets follow the entry.
  lb::Service s81 = web(ForwardMode::kNat, 1);
  s81.name = "web81";
  s81.port = 81;
  unit.set_services({web(ForwardMode::kNat, 2), s81});
  ASSERT_EQ(unit.run(tcp_frame(kNorthMac, kGatewayMac, kClient, kVip, 40000, 81, kPshAck), out).action,
            Action::kTransmit);
  EXPECT_EQ(out, tcp_frame(kBackendMac[2], kSouthMac, kClient, kBackend[2], 40000, 8080, kPshAck, 63));
}

TEST_F(SyncApply, AllPortsServicesMatchTheBackendByTheVipPort) {
  lb::Service all = web(ForwardMode::kNat, 3);
  all.port = 0;
  for (auto& b : all.backends) b.port = 0;
  unit.set_services({all});
  ConnRecord r = nat_record(40000, 1);
  r.vip_port = 443;
  r.backend_port = 443;
  ASSERT_EQ(put(r), ApplyResult::kCreated);
  const ConnEntry& e = *table().find(FlowKey{kClient, kVip, 40000, 443, 6});
  EXPECT_EQ(e.service, unit.ids.service_id("web"));
  EXPECT_EQ(e.backend, unit.ids.backend_id("web", net::Ipv4Addr{kBackend[1]}, 0));
  EXPECT_NE(e.backend, kUnattributedStats);
}

// A pure replica (no packet here) follows the peer's ordered stream: state, binding, times.
TEST_F(SyncApply, APureReplicaFollowsThePeer) {
  ConnRecord r = nat_record();
  ASSERT_EQ(put(r), ApplyResult::kCreated);
  ConnEntry& e = *table().find(FlowKey{kClient, kVip, 40000, 80, 6});
  unit.now += 5'000;
  r.type = RecordType::kUpdate;
  r.state = TcpState::kFinWait;
  r.created_age_ms = 15'000;
  r.idle_ms = 0;
  EXPECT_EQ(put(r), ApplyResult::kRefreshed);
  EXPECT_EQ(e.state, TcpState::kFinWait);
  EXPECT_EQ(e.last_seen_ms, unit.now);
  EXPECT_EQ(e.created_ms, 90'000u);

  // The peer reopened the connection on another backend: re-keyed in place, new stats ids.
  r.state = TcpState::kSynSent;
  r.backend_addr = kBackend[1];
  EXPECT_EQ(put(r), ApplyResult::kRefreshed);
  EXPECT_EQ(table().size(), 1u);
  EXPECT_EQ(table().find(FlowKey{kBackend[1], kClient, 8080, 40000, 6}), &e);
  EXPECT_EQ(table().find(FlowKey{kBackend[0], kClient, 8080, 40000, 6}), nullptr);
  EXPECT_EQ(e.backend, unit.ids.backend_id("web", net::Ipv4Addr{kBackend[1]}, 8080));
  EXPECT_EQ(e.state, TcpState::kSynSent);
  // An older record (more idle) still moves a pure replica's state, never its last seen back.
  r.idle_ms = 3'000;
  r.state = TcpState::kEstablished;
  EXPECT_EQ(put(r), ApplyResult::kRefreshed);
  EXPECT_EQ(e.state, TcpState::kEstablished);
  EXPECT_EQ(e.last_seen_ms, unit.now);
  expect_consistent();
}

// An entry that carries traffic here keeps its own observations against an older record; a
// record at least as recent (the peer saw a later packet) wins. Counters are always kept.
TEST_F(SyncApply, AnEntryWithTrafficHereKeepsWhatItSawLast) {
  ConnRecord r = nat_record();
  ASSERT_EQ(put(r), ApplyResult::kCreated);
  ConnEntry& e = *table().find(FlowKey{kClient, kVip, 40000, 80, 6});
  Bytes out;
  ASSERT_EQ(unit.run(from_client(40000, kFinAck), out).action, Action::kTransmit);  // the client closes here
  EXPECT_EQ(e.state, TcpState::kFinWait);
  EXPECT_EQ(e.last_seen_ms, unit.now);

  // A late record from before that packet: nothing but its times merge (no change).
  unit.now += 10;
  r.type = RecordType::kUpdate;
  r.backend_addr = kBackend[1];
  r.idle_ms = 500;
  EXPECT_EQ(put(r), ApplyResult::kRefreshed);
  EXPECT_EQ(e.state, TcpState::kFinWait);
  EXPECT_EQ(e.backend_addr, kBackend[0]);
  EXPECT_EQ(e.last_seen_ms, unit.now - 10);
  EXPECT_EQ(e.created_ms, 90'000u);

  // The peer saw a later packet: its state is taken, the packet counters stay this unit's.
  r.backend_addr = kBackend[0];
  r.state = TcpState::kTimeWait;
  r.idle_ms = 0;
  EXPECT_EQ(put(r), ApplyResult::kRefreshed);
  EXPECT_EQ(e.state, TcpState::kTimeWait);
  EXPECT_EQ(e.last_seen_ms, unit.now);
  EXPECT_EQ(e.packets[0], 1u);
  EXPECT_GT(e.bytes[0], 0u);
  expect_consistent();
}

// Replicated entries expire by their state like any other: a standby whose deletes were lost
// cleans itself.
TEST_F(SyncApply, ReplicatedEntriesExpireByTheirState) {
  const conntrack::ConntrackTimeouts t;
  unit.now = 10'000'000;
  ConnRecord est = nat_record(40000);
  est.idle_ms = 1'000;
  ConnRecord syn = nat_record(40001);
  syn.state = TcpState::kSynSent;
  syn.idle_ms = 0;
  ConnRecord stale = nat_record(40002);  // idle longer than its timeout already
  stale.created_age_ms = stale.idle_ms = t.established_ms + 1;
  ConnRecord udp = nat_record(40003);
  udp.proto = 17;
  udp.state = TcpState::kNone;
  udp.idle_ms = 0;
  for (const ConnRecord& r : {est, syn, stale, udp}) ASSERT_EQ(put(r), ApplyResult::kCreated);
  const std::uint64_t t0 = unit.now;
  EXPECT_EQ(table().expire(t0, 16), 1u);  // the stale one
  EXPECT_EQ(table().expire(t0 + t.syn_sent_ms - 1, 16), 0u);
  EXPECT_EQ(table().expire(t0 + t.syn_sent_ms, 16), 1u);
  EXPECT_EQ(table().expire(t0 + t.udp_ms, 16), 1u);
  EXPECT_EQ(table().expire(t0 + t.established_ms - 1'000 - 1, 16), 0u);
  EXPECT_EQ(table().expire(t0 + t.established_ms - 1'000, 16), 1u);
  EXPECT_EQ(table().size(), 0u);
}

TEST_F(SyncApply, FieldsADecoderRefusesAreBadRecords) {
  const ConnRecord good = nat_record();
  std::vector<ConnRecord> bad;
  auto with = [&](auto f) {
    ConnRecord r = good;
    f(r);
    bad.push_back(r);
  };
  with([](ConnRecord& r) { r.type = RecordType::kDelete; });
  with([](ConnRecord& r) { r.type = static_cast<RecordType>(0); });
  with([](ConnRecord& r) { r.proto = 1; });
  with([](ConnRecord& r) { r.mode = static_cast<ForwardMode>(4); });
  with([](ConnRecord& r) { r.state = static_cast<TcpState>(9); });
  with([](ConnRecord& r) { r.state = static_cast<TcpState>(255); });
  with([](ConnRecord& r) { r.proto = 17; });  // UDP with a TCP state
  with([](ConnRecord& r) { r.client_addr = 0; });
  with([](ConnRecord& r) { r.vip_addr = 0; });
  with([](ConnRecord& r) { r.backend_addr = 0; });
  with([](ConnRecord& r) { r.local_addr = 0; });
  with([](ConnRecord& r) { r.idle_ms = 10'001; });
  with([](ConnRecord& r) {  // both keys alike: the reply side could never be found
    r.backend_addr = r.client_addr;
    r.local_addr = r.vip_addr;
    r.backend_port = r.client_port;
    r.local_port = r.vip_port;
  });
  for (const ConnRecord& r : bad) EXPECT_EQ(put(r), ApplyResult::kBadRecord);
  EXPECT_EQ(table().size(), 0u);
  // The same keys both ways are fine where the reply key is not indexed (dsr).
  ConnRecord dsr = bad.back();
  dsr.mode = ForwardMode::kDsr;
  EXPECT_EQ(put(dsr), ApplyResult::kCreated);
}

TEST(SyncApplyNames, EveryResultHasAName) {
  for (std::size_t i = 0; i < kApplyResultCount; ++i)
    EXPECT_STRNE(to_string(static_cast<ApplyResult>(i)), "?");
  EXPECT_STREQ(to_string(ApplyResult::kTableFull), "table_full");
}

// Seeded: records drawn from a small space (so they collide, conflict, refresh and fill the
// table), fields often out of range, mixed with deletes, local traffic and expiry. Nothing
// crashes, every record gets a result, and the table stays consistent.
TEST(SyncApplyRandom, RandomRecordsNeverBreakTheTable) {
  std::mt19937_64 rng(20240611);
  auto pick = [&](auto... v) {
    const std::array<std::common_type_t<decltype(v)...>, sizeof...(v)> a{v...};
    return a[rng() % a.size()];
  };
  lb::Service all = web(ForwardMode::kFullNat, 3);
  all.port = 0;
  std::vector<lb::Service> services{web(ForwardMode::kNat, 3), all};
  services[1].name = "all";
  services[1].vip = net::Ipv4Addr{kVip + 1};
  observe::StatsRegistry ids;
  ids.assign(services);
  std::string error;
  const auto table = lb::ServiceTable::build(services, error);
  ASSERT_TRUE(table) << error;
  constexpr std::uint16_t kW = 3;
  std::vector<std::unique_ptr<conntrack::ConnTable>> conns;
  for (int i = 0; i < kW; ++i)
    conns.push_back(std::make_unique<conntrack::ConnTable>(conntrack::ConnTableConfig{.capacity = 32}));

  ApplyCounts n;
  std::uint64_t now = 0;
  constexpr int kRecords = 20'000;
  for (int i = 0; i < kRecords; ++i) {
    now += rng() % 1000;
    const std::uint32_t addr = rng() % 24 == 0 ? pick(0u, kVip, kBackend[0], kLocal, static_cast<std::uint32_t>(rng()))
                                               : pick(kClient, kClient + 1, kClient + 2);
    if (rng() % 4 == 0) {
      const DeleteRecord d{pick(std::uint8_t{6}, std::uint8_t{17}, static_cast<std::uint8_t>(rng())), addr,
                           pick(kVip, kVip + 1, 0u), static_cast<std::uint16_t>(40000 + rng() % 32),
                           pick(std::uint16_t{80}, std::uint16_t{443})};
      n.count(apply(*conns[record_owner(d, kW)], d));
      continue;
    }
    // Mostly valid fields (so entries pile up and collide), each out of range now and then.
    const auto odd = [&] { return rng() % 48 == 0; };
    ConnRecord r;
    r.type = odd() ? static_cast<RecordType>(rng() % 256) : pick(RecordType::kCreate, RecordType::kUpdate);
    r.proto = odd() ? static_cast<std::uint8_t>(rng()) : pick(std::uint8_t{6}, std::uint8_t{6}, std::uint8_t{17});
    r.mode = static_cast<ForwardMode>(odd() ? rng() % 256 : rng() % 4);
    r.state = r.proto == 17 && !odd() ? TcpState::kNone
                                      : static_cast<TcpState>(odd() ? rng() % 256 : rng() % conntrack::kTcpStateCount);
    r.mid_flow = rng() % 2;
    r.client_addr = addr;
    r.vip_addr = odd() ? pick(0u, kLocal) : pick(kVip, kVip + 1);
    r.client_port = static_cast<std::uint16_t>(40000 + rng() % 32);
    r.vip_port = pick(std::uint16_t{80}, std::uint16_t{443}, std::uint16_t{8080});
    r.backend_addr = odd() ? pick(0u, kClient) : pick(kBackend[0], kBackend[1], kBackend[2]);
    r.local_addr = odd() ? pick(0u, kBackend[0]) : pick(kClient, kLocal);
    r.backend_port = pick(std::uint16_t{8080}, std::uint16_t{443}, std::uint16_t{40000});
    r.local_port = pick(static_cast<std::uint16_t>(40000 + rng() % 32), static_cast<std::uint16_t>(1024 + rng() % 32),
                        std::uint16_t{0}, std::uint16_t{65535});
    r.created_age_ms = odd() ? pick(~std::uint64_t{0}, rng()) : rng() % 600'000;
    r.idle_ms = odd() ? pick(~std::uint32_t{0}, static_cast<std::uint32_t>(rng()))
                      : static_cast<std::uint32_t>(rng() % (r.created_age_ms / 4 + 1));
    bool split = false;
    const std::uint16_t w = record_owner(r, *table, pick(std::uint16_t{0}, std::uint16_t{1}, kW), &split) % kW;
    conntrack::ConnTable& t = *conns[w];
    n.count(apply(t, r, *table, now));
    // Sometimes the flow carries a packet here; sometimes the sweep runs.
    if (rng() % 8 == 0) {
      if (ConnEntry* e = t.find({r.client_addr, r.vip_addr, r.client_port, r.vip_port, r.proto}))
        t.update(*e, conntrack::FlowDir::kOriginal, static_cast<std::uint8_t>(rng()), 100, now);
    }
    if (rng() % 4 == 0) t.expire(now, 16);
    if (i % 1000 == 0)
      for (const auto& c : conns) {
        std::string why;
        ASSERT_TRUE(c->check_invariants(&why)) << why << " after record " << i;
      }
  }
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < kApplyResultCount; ++i) {
    total += n.n[i];
    EXPECT_GT(n.n[i], 0u) << to_string(static_cast<ApplyResult>(i));  // every outcome was reached
  }
  EXPECT_EQ(total, static_cast<std::uint64_t>(kRecords));
  std::string summary = "random records:";
  for (std::size_t i = 0; i < kApplyResultCount; ++i)
    summary += " " + std::string(to_string(static_cast<ApplyResult>(i))) + " " + std::to_string(n.n[i]);
  std::printf("%s\n", summary.c_str());
  for (const auto& c : conns) {
    std::string why;
    EXPECT_TRUE(c->check_invariants(&why)) << why;
  }
}

}  // namespace
