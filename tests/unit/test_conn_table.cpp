#include <gtest/gtest.h>

#include <cstring>

#include <algorithm>
#include <bit>
#include <memory>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "dataplane/conntrack/conn_table.hpp"
#include "dataplane/huge_page_memory.hpp"

using namespace tandem::conntrack;

namespace {

constexpr std::uint8_t kTcp = 6;
constexpr std::uint8_t kUdp = 17;

std::uint32_t client(std::uint32_t host) { return 0xc6336400u | host; }  // 198.51.100.x
std::uint32_t vip(std::uint32_t host) { return 0xcb007100u | host; }     // 203.0.113.x
std::uint32_t backend(std::uint32_t host) { return 0x0a000100u | host; } // 10.0.1.x
constexpr std::uint32_t kLocal = 0x0a0001feu;                             // 10.0.1.254

FlowKey key(std::uint32_t src, std::uint16_t sport, std::uint32_t dst, std::uint16_t dport,
            std::uint8_t proto = kTcp) {
  return {.src_addr = src, .dst_addr = dst, .src_port = sport, .dst_port = dport, .proto = proto};
}

// The client's key and the key of the backend's replies for one connection in each mode.
struct Keys {
  FlowKey original;
  FlowKey reply;
};

Keys nat_keys(std::uint32_t c, std::uint16_t cport, std::uint32_t b, std::uint8_t proto = kTcp) {
  const FlowKey original = key(client(c), cport, vip(1), 80, proto);
  // After DNAT the packet is client -> backend; the backend answers the other way.
  return {original, key(client(c), cport, backend(b), 8080, proto).reversed()};
}

Keys fullnat_keys(std::uint32_t c, std::uint16_t cport, std::uint32_t b, std::uint16_t lport) {
  return {key(client(c), cport, vip(1), 443), key(kLocal, lport, backend(b), 443).reversed()};
}

ConnParams params(ForwardMode mode, std::uint32_t service = 0, std::uint32_t be = 0) {
  return {.mode = mode, .service = service, .backend = be};
}

ConnTableConfig small(std::uint32_t capacity) {
  return {.capacity = capacity, .timeouts = {}, .hash_seed = 0};
}

void expect_consistent(const ConnTable& t) {
  std::string why;
  EXPECT_TRUE(t.check_invariants(&why)) << why;
}

}  // namespace

TEST(FlowKey, ReversedSwapsEndpointsAndIsItsOwnInverse) {
  const FlowKey k = key(client(7), 40000, vip(1), 80);
  const FlowKey r = k.reversed();
  EXPECT_EQ(r.src_addr, vip(1));
  EXPECT_EQ(r.dst_addr, client(7));
  EXPECT_EQ(r.src_port, 80);
  EXPECT_EQ(r.dst_port, 40000);
  EXPECT_EQ(r.proto, kTcp);
  EXPECT_EQ(r.reversed(), k);
  EXPECT_NE(r, k);
  EXPECT_NE(key(client(7), 40000, vip(1), 80, kUdp), k);
}

TEST(FlowKey, HashIsDeterministicSeededAndMixesEveryBit) {
  const FlowKey k = key(client(7), 40000, vip(1), 80);
  EXPECT_EQ(flow_hash(k), flow_hash(k));
  EXPECT_EQ(flow_hash(k, 5), flow_hash(k, 5));
  EXPECT_NE(flow_hash(k, 5), flow_hash(k, 6));
  EXPECT_NE(flow_hash(k), flow_hash(k.reversed()));
  // Avalanche: flipping any one input bit flips about half of the 64 output bits.
  std::mt19937_64 rng(1);
  for (int field = 0; field < 5; ++field) {
    const int bits = field < 2 ? 32 : field < 4 ? 16 : 8;
    for (int bit = 0; bit < bits; ++bit) {
      double flipped = 0;
      constexpr int kSamples = 200;
      for (int n = 0; n < kSamples; ++n) {
        const std::uint64_t r = rng();
        FlowKey a = key(static_cast<std::uint32_t>(r), static_cast<std::uint16_t>(r >> 32),
                        static_cast<std::uint32_t>(r >> 17), static_cast<std::uint16_t>(r >> 48),
                        static_cast<std::uint8_t>(r >> 40));
        FlowKey b = a;
        switch (field) {
          case 0: b.src_addr ^= 1u << bit; break;
          case 1: b.dst_addr ^= 1u << bit; break;
          case 2: b.src_port = static_cast<std::uint16_t>(b.src_port ^ (1u << bit)); break;
          case 3: b.dst_port = static_cast<std::uint16_t>(b.dst_port ^ (1u << bit)); break;
          case 4: b.proto = static_cast<std::uint8_t>(b.proto ^ (1u << bit)); break;
        }
        flipped += std::popcount(flow_hash(a) ^ flow_hash(b));
      }
      const double mean = flipped / kSamples;
      EXPECT_GT(mean, 28.0) << "field " << field << " bit " << bit;
      EXPECT_LT(mean, 36.0) << "field " << field << " bit " << bit;
    }
  }
}

TEST(ConnTable, NatEntryIsFoundFromBothDirections) {
  ConnTable t(small(16));
  const Keys k = nat_keys(1, 40000, 2);
  const ConnInsert ins = t.insert(k.original, k.reply, params(ForwardMode::kNat, 3, 4), 1000);
  ASSERT_EQ(ins.status, InsertStatus::kInserted);
  ConnEntry& e = *ins.entry;
  EXPECT_EQ(e.client_addr, client(1));
  EXPECT_EQ(e.client_port, 40000);
  EXPECT_EQ(e.vip_addr, vip(1));
  EXPECT_EQ(e.vip_port, 80);
  EXPECT_EQ(e.backend_addr, backend(2));
  EXPECT_EQ(e.backend_port, 8080);
  EXPECT_EQ(e.local_addr, client(1));  // nat: the backend replies to the client itself
  EXPECT_EQ(e.local_port, 40000);
  EXPECT_EQ(e.service, 3u);
  EXPECT_EQ(e.backend, 4u);
  EXPECT_EQ(e.created_ms, 1000u);
  EXPECT_EQ(e.last_seen_ms, 1000u);
  EXPECT_EQ(e.original_key(), k.original);
  EXPECT_EQ(e.reply_key(), k.reply);

  const ConnLookup fwd = t.lookup(k.original);
  ASSERT_TRUE(fwd);
  EXPECT_EQ(fwd.entry, &e);
  EXPECT_EQ(fwd.dir, FlowDir::kOriginal);
  const ConnLookup rev = t.lookup(k.reply);
  ASSERT_TRUE(rev);
  EXPECT_EQ(rev.entry, &e);
  EXPECT_EQ(rev.dir, FlowDir::kReply);

  // Neither key read backwards, nor the same tuple in another protocol, is this connection.
  EXPECT_FALSE(t.lookup(k.original.reversed()));
  EXPECT_FALSE(t.lookup(k.reply.reversed()));
  EXPECT_FALSE(t.lookup(nat_keys(1, 40000, 2, kUdp).original));
  EXPECT_EQ(t.stats().lookups_hit, 2u);
  EXPECT_EQ(t.stats().lookups_miss, 3u);
  EXPECT_EQ(t.size(), 1u);
  expect_consistent(t);
}

TEST(ConnTable, FullNatReplyKeyIsTheLocalAddress) {
  ConnTable t(small(16));
  const Keys k = fullnat_keys(1, 40000, 2, 61000);
  ConnEntry* e = t.insert(k.original, k.reply, params(ForwardMode::kFullNat), 0).entry;
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->local_addr, kLocal);
  EXPECT_EQ(e->local_port, 61000);
  EXPECT_EQ(t.lookup(key(backend(2), 443, kLocal, 61000)).entry, e);
  EXPECT_EQ(t.lookup(key(backend(2), 443, kLocal, 61000)).dir, FlowDir::kReply);
  EXPECT_FALSE(t.lookup(key(backend(2), 443, kLocal, 61001)));
}

TEST(ConnTable, DsrAndTunnelDoNotIndexTheReplyKey) {
  ConnTable t(small(16));
  for (ForwardMode m : {ForwardMode::kDsr, ForwardMode::kTunnel}) {
    const Keys k = nat_keys(static_cast<std::uint32_t>(m), 40000, 2);
    ConnEntry* e = t.insert(k.original, k.reply, params(m), 0).entry;
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->reply_key(), k.reply);  // kept, for display and sync
    EXPECT_EQ(t.lookup(k.original).entry, e);
    EXPECT_FALSE(t.lookup(k.reply)) << to_string(m);
  }
  expect_consistent(t);
}

TEST(ConnTable, ReplyKeyTakesTheOriginalProtocol) {
  ConnTable t(small(16));
  Keys k = nat_keys(1, 40000, 2);
  k.reply.proto = kUdp;
  ASSERT_EQ(t.insert(k.original, k.reply, params(ForwardMode::kNat), 0).status, InsertStatus::kInserted);
  k.reply.proto = kTcp;
  EXPECT_TRUE(t.lookup(k.reply));
  expect_consistent(t);
}

TEST(ConnTable, EitherKeyAlreadyPresentRefusesTheInsert) {
  ConnTable t(small(16));
  const Keys k = nat_keys(1, 40000, 2);
  ConnEntry* first = t.insert(k.original, k.reply, params(ForwardMode::kNat), 0).entry;
  ASSERT_NE(first, nullptr);
  // The same client key again.
  const ConnInsert again = t.insert(k.original, nat_keys(1, 40000, 3).reply, params(ForwardMode::kNat), 0);
  EXPECT_EQ(again.status, InsertStatus::kExists);
  EXPECT_EQ(again.entry, first);
  // Another VIP, same client port, same backend: the replies could not be told apart (nat).
  const FlowKey other_vip = key(client(1), 40000, vip(2), 80);
  const ConnInsert clash = t.insert(other_vip, k.reply, params(ForwardMode::kNat), 0);
  EXPECT_EQ(clash.status, InsertStatus::kExists);
  EXPECT_EQ(clash.entry, first);
  // ...which dsr does not care about: its replies never come back.
  EXPECT_EQ(t.insert(other_vip, k.reply, params(ForwardMode::kDsr), 0).status, InsertStatus::kInserted);
  // A client key equal to an existing reply key is a clash too.
  EXPECT_EQ(t.insert(k.reply, key(1, 1, 2, 2), params(ForwardMode::kNat), 0).status, InsertStatus::kExists);
  // And a connection whose two keys are the same cannot be indexed.
  const FlowKey self = key(client(9), 1, client(9), 1);
  EXPECT_EQ(t.insert(self, self, params(ForwardMode::kNat), 0).status, InsertStatus::kExists);
  EXPECT_EQ(t.stats().insert_failed_exists, 4u);
  EXPECT_EQ(t.stats().inserts, 2u);
  EXPECT_EQ(t.size(), 2u);
  expect_consistent(t);
}

TEST(ConnTable, EraseFreesTheEntryAndBothIndexSlots) {
  ConnTable t(small(4));
  const Keys a = nat_keys(1, 40000, 2);
  const Keys b = nat_keys(2, 40000, 2);
  ConnEntry* ea = t.insert(a.original, a.reply, params(ForwardMode::kNat), 0).entry;
  ConnEntry* eb = t.insert(b.original, b.reply, params(ForwardMode::kNat), 0).entry;
  ASSERT_NE(ea, nullptr);
  ASSERT_NE(eb, nullptr);
  t.erase(ea);
  EXPECT_EQ(t.size(), 1u);
  EXPECT_EQ(t.stats().erased, 1u);
  EXPECT_FALSE(t.lookup(a.original));
  EXPECT_FALSE(t.lookup(a.reply));
  EXPECT_EQ(t.lookup(b.original).entry, eb);  // the neighbour's slots survived the shift
  EXPECT_EQ(t.lookup(b.reply).entry, eb);
  expect_consistent(t);
  t.erase(ea);  // a second erase is ignored, not a corrupted free list
  EXPECT_EQ(t.size(), 1u);
  expect_consistent(t);
  // The freed entry is the next one handed out, and both its keys can be inserted again.
  EXPECT_EQ(t.insert(a.original, a.reply, params(ForwardMode::kNat), 0).entry, ea);
  EXPECT_EQ(t.lookup(a.reply).entry, ea);
  expect_consistent(t);
}

TEST(ConnTable, FullTableRefusesAndCounts) {
  ConnTable t(small(8));
  EXPECT_EQ(t.capacity(), 8u);
  EXPECT_EQ(t.index_slots(), 32u);
  std::vector<ConnEntry*> entries;
  for (std::uint16_t i = 0; i < 8; ++i) {
    const Keys k = nat_keys(1, static_cast<std::uint16_t>(1000 + i), 2);
    const ConnInsert r = t.insert(k.original, k.reply, params(ForwardMode::kNat), 0);
    ASSERT_EQ(r.status, InsertStatus::kInserted) << i;
    entries.push_back(r.entry);
  }
  const Keys extra = nat_keys(1, 2000, 2);
  const ConnInsert r = t.insert(extra.original, extra.reply, params(ForwardMode::kNat), 0);
  EXPECT_EQ(r.status, InsertStatus::kFull);
  EXPECT_EQ(r.entry, nullptr);
  EXPECT_EQ(t.stats().insert_failed_full, 1u);
  EXPECT_EQ(t.size(), 8u);
  EXPECT_FALSE(t.lookup(extra.original));
  // Room again after an erase.
  t.erase(entries[3]);
  EXPECT_EQ(t.insert(extra.original, extra.reply, params(ForwardMode::kNat), 0).status, InsertStatus::kInserted);
  EXPECT_EQ(t.stats().insert_failed_full, 1u);
  expect_consistent(t);
}

TEST(ConnTable, CapacityIsClampedToAtLeastOne) {
  ConnTable t(small(0));
  EXPECT_EQ(t.capacity(), 1u);
  const Keys k = nat_keys(1, 1, 1);
  EXPECT_EQ(t.insert(k.original, k.reply, params(ForwardMode::kNat), 0).status, InsertStatus::kInserted);
  const Keys k2 = nat_keys(1, 2, 1);
  EXPECT_EQ(t.insert(k2.original, k2.reply, params(ForwardMode::kNat), 0).status, InsertStatus::kFull);
}

TEST(ConnTable, TableFlagsBelongToTheTable) {
  ConnTable t(small(4));
  const Keys k = nat_keys(1, 1, 1);
  ConnParams p = params(ForwardMode::kDsr);
  p.flags = kConnMidFlow | kConnReplyIndexed;  // a caller cannot claim the reply is indexed
  ConnEntry* e = t.insert(k.original, k.reply, p, 0).entry;
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->flags, kConnInUse | kConnMidFlow);
  expect_consistent(t);
}

TEST(ConnTable, UpdateCountsPerDirectionAndMovesTheTcpState) {
  ConnTable t(small(4));
  const Keys k = nat_keys(1, 40000, 2);
  ConnEntry& e = *t.insert(k.original, k.reply, params(ForwardMode::kNat), 0).entry;
  EXPECT_EQ(e.state, TcpState::kNone);
  EXPECT_TRUE(t.update(e, FlowDir::kOriginal, kTcpSyn, 60, 10));
  EXPECT_EQ(e.state, TcpState::kSynSent);
  EXPECT_FALSE(t.update(e, FlowDir::kOriginal, kTcpSyn, 60, 20));  // retransmit: no change
  EXPECT_TRUE(t.update(e, FlowDir::kReply, kTcpSyn | kTcpAck, 60, 30));
  EXPECT_EQ(e.state, TcpState::kSynRecv);
  EXPECT_TRUE(t.update(e, FlowDir::kOriginal, kTcpAck | kTcpPsh, 500, 40));
  EXPECT_EQ(e.state, TcpState::kEstablished);
  EXPECT_EQ(e.packets[0], 3u);
  EXPECT_EQ(e.bytes[0], 620u);
  EXPECT_EQ(e.packets[1], 1u);
  EXPECT_EQ(e.bytes[1], 60u);
  EXPECT_EQ(e.last_seen_ms, 40u);
  EXPECT_EQ(e.created_ms, 0u);
}

TEST(ConnTable, TrafficIsCountedPerServiceAndBackendSlot) {
  ConnTable t(small(8));
  const auto traffic = std::make_unique<tandem::WorkerServiceStats>();
  t.set_traffic_stats(traffic.get());
  const Keys a = nat_keys(1, 40000, 2);
  const Keys b = nat_keys(2, 40000, 3);
  ConnEntry& ea = *t.insert(a.original, a.reply, params(ForwardMode::kNat, 5, 7), 0).entry;
  ConnEntry& eb = *t.insert(b.original, b.reply, params(ForwardMode::kNat, 5, 8), 0).entry;
  const auto& svc = traffic->services[5];
  const auto& b7 = traffic->backends[7];
  const auto& b8 = traffic->backends[8];
  EXPECT_EQ(svc.created.get(), 2u);
  EXPECT_EQ(svc.active(), 2u);
  EXPECT_EQ(b7.created.get(), 1u);
  EXPECT_EQ(b8.created.get(), 1u);
  t.update(ea, FlowDir::kOriginal, kTcpSyn, 60, 1);
  t.update(ea, FlowDir::kReply, kTcpSyn | kTcpAck, 64, 2);
  t.update(eb, FlowDir::kOriginal, kTcpSyn, 70, 3);
  EXPECT_EQ(b7.packets[0].get(), 1u);
  EXPECT_EQ(b7.bytes[0].get(), 60u);
  EXPECT_EQ(b7.packets[1].get(), 1u);
  EXPECT_EQ(b7.bytes[1].get(), 64u);
  EXPECT_EQ(b8.bytes[0].get(), 70u);
  EXPECT_EQ(svc.packets[0].get(), 2u);
  EXPECT_EQ(svc.bytes[0].get(), 130u);
  EXPECT_EQ(svc.bytes[1].get(), 64u);

  // Freed by erase (once, however often erase is called) and by expiry.
  t.erase(&ea);
  t.erase(&ea);
  EXPECT_EQ(b7.closed.get(), 1u);
  EXPECT_EQ(b7.active(), 0u);
  EXPECT_EQ(svc.active(), 1u);
  EXPECT_EQ(t.expire(1'000'000, 8), 1u);
  EXPECT_EQ(b8.active(), 0u);
  EXPECT_EQ(svc.closed.get(), 2u);
  EXPECT_EQ(svc.active(), 0u);
  // Counters outlive the connections: they only grow.
  EXPECT_EQ(svc.created.get(), 2u);
  EXPECT_EQ(svc.packets[0].get(), 2u);
}

TEST(ConnTable, RebindMovesTheReplyKeyAndKeepsTheRest) {
  ConnTable t(small(8));
  const auto traffic = std::make_unique<tandem::WorkerServiceStats>();
  t.set_traffic_stats(traffic.get());
  const Keys a = fullnat_keys(1, 40000, 2, 61000);
  ConnEntry& e = *t.insert(a.original, a.reply, params(ForwardMode::kFullNat, 5, 7), 100).entry;
  t.update(e, FlowDir::kOriginal, kTcpSyn, 60, 200);
  const Keys moved = fullnat_keys(1, 40000, 3, 61001);
  ASSERT_TRUE(t.rebind(e, moved.reply, ForwardMode::kFullNat, 5, 8));
  EXPECT_EQ(e.reply_key(), moved.reply);
  EXPECT_EQ(t.find(moved.reply), &e);
  EXPECT_EQ(t.find(a.reply), nullptr);
  EXPECT_EQ(t.find(a.original), &e);
  EXPECT_EQ(e.state, TcpState::kSynSent);
  EXPECT_EQ(e.created_ms, 100u);
  EXPECT_EQ(e.last_seen_ms, 200u);
  EXPECT_EQ(e.packets[0], 1u);
  EXPECT_EQ(e.backend, 8u);
  // The connection moved from backend slot 7 to 8; the service slot is unchanged.
  EXPECT_EQ(traffic->backends[7].active(), 0u);
  EXPECT_EQ(traffic->backends[8].active(), 1u);
  EXPECT_EQ(traffic->services[5].created.get(), 1u);
  EXPECT_EQ(traffic->services[5].active(), 1u);
  expect_consistent(t);

  // To dsr: the reply key is kept but no longer indexed; back to nat: indexed again.
  ASSERT_TRUE(t.rebind(e, moved.reply, ForwardMode::kDsr, 5, 8));
  EXPECT_EQ(t.find(moved.reply), nullptr);
  EXPECT_EQ(e.mode, ForwardMode::kDsr);
  expect_consistent(t);
  const Keys nat = nat_keys(1, 40000, 4);
  ASSERT_TRUE(t.rebind(e, nat.reply, ForwardMode::kNat, 5, 8));
  EXPECT_EQ(t.find(nat.reply), &e);
  expect_consistent(t);
  // The same binding again is no change.
  ASSERT_TRUE(t.rebind(e, nat.reply, ForwardMode::kNat, 5, 8));
  EXPECT_EQ(t.find(nat.reply), &e);
  expect_consistent(t);

  // Erased: closed once, on the slots it holds now.
  t.erase(&e);
  EXPECT_EQ(traffic->backends[8].active(), 0u);
  EXPECT_EQ(traffic->backends[7].closed.get(), 1u);
  EXPECT_EQ(traffic->services[5].active(), 0u);
}

TEST(ConnTable, RebindRefusesAReplyKeyOfAnotherEntry) {
  ConnTable t(small(8));
  const Keys a = nat_keys(1, 40000, 2);
  const Keys b = nat_keys(2, 40000, 3);
  ConnEntry& ea = *t.insert(a.original, a.reply, params(ForwardMode::kNat), 0).entry;
  t.insert(b.original, b.reply, params(ForwardMode::kNat), 0);
  EXPECT_FALSE(t.rebind(ea, b.reply, ForwardMode::kNat, 0, 0));
  EXPECT_FALSE(t.rebind(ea, b.original, ForwardMode::kNat, 0, 0));  // b's original key
  EXPECT_FALSE(t.rebind(ea, a.original, ForwardMode::kNat, 0, 0));  // its own original key
  EXPECT_EQ(ea.reply_key(), a.reply);
  EXPECT_EQ(t.find(a.reply), &ea);
  // Not indexed (dsr), the same key is no collision.
  EXPECT_TRUE(t.rebind(ea, b.reply, ForwardMode::kDsr, 0, 0));
  expect_consistent(t);
}

TEST(ConnTable, StatsIdsOutOfRangeAreUnattributed) {
  ConnTable t(small(4));
  const auto traffic = std::make_unique<tandem::WorkerServiceStats>();
  t.set_traffic_stats(traffic.get());
  const Keys k = nat_keys(1, 40000, 2);
  ConnEntry& e = *t.insert(k.original, k.reply,
                           params(ForwardMode::kNat, tandem::kMaxServiceStats, tandem::kMaxBackendStats + 5), 0)
                      .entry;
  EXPECT_EQ(e.service, tandem::kUnattributedStats);
  EXPECT_EQ(e.backend, tandem::kUnattributedStats);
  t.update(e, FlowDir::kOriginal, kTcpSyn, 60, 1);
  EXPECT_EQ(traffic->services[0].created.get(), 1u);
  EXPECT_EQ(traffic->backends[0].bytes[0].get(), 60u);
  // The last valid ids are kept.
  const Keys l = nat_keys(3, 40000, 2);
  ConnEntry& last = *t.insert(l.original, l.reply,
                              params(ForwardMode::kNat, tandem::kMaxServiceStats - 1, tandem::kMaxBackendStats - 1), 0)
                         .entry;
  EXPECT_EQ(last.service, tandem::kMaxServiceStats - 1);
  EXPECT_EQ(last.backend, tandem::kMaxBackendStats - 1);
  EXPECT_EQ(traffic->backends[tandem::kMaxBackendStats - 1].created.get(), 1u);
}

TEST(ConnTable, WithoutTrafficStatsNothingIsCounted) {
  ConnTable t(small(4));  // the default: no slots (tests, benchmarks of the table alone)
  const Keys k = nat_keys(1, 40000, 2);
  ConnEntry& e = *t.insert(k.original, k.reply, params(ForwardMode::kNat, 1, 1), 0).entry;
  t.update(e, FlowDir::kOriginal, kTcpSyn, 60, 1);
  t.erase(&e);
  EXPECT_EQ(t.size(), 0u);
}

TEST(ConnTable, DsrEntriesUseTheClientOnlyView) {
  ConnTable t(small(4));
  const Keys k = nat_keys(1, 40000, 2);
  ConnEntry& e = *t.insert(k.original, k.reply, params(ForwardMode::kDsr), 0).entry;
  t.update(e, FlowDir::kOriginal, kTcpSyn, 60, 0);
  EXPECT_TRUE(t.update(e, FlowDir::kOriginal, kTcpAck, 60, 0));
  EXPECT_EQ(e.state, TcpState::kEstablished);  // both-ways view would still say SYN_SENT
}

TEST(ConnTable, UdpHasNoStateButIsCounted) {
  ConnTable t(small(4));
  const Keys k = nat_keys(1, 5353, 2, kUdp);
  ConnEntry& e = *t.insert(k.original, k.reply, params(ForwardMode::kNat), 0).entry;
  EXPECT_FALSE(t.update(e, FlowDir::kOriginal, kTcpSyn, 100, 5));  // flags mean nothing here
  EXPECT_EQ(e.state, TcpState::kNone);
  EXPECT_EQ(e.packets[0], 1u);
  EXPECT_EQ(t.timeout_ms(e), ConntrackTimeouts{}.udp_ms);
}

TEST(ConnTable, EstablishedOutlivesSynSent) {
  ConnTable t(small(8));
  const Keys est = nat_keys(1, 1, 2);
  const Keys syn = nat_keys(1, 2, 2);
  ConnEntry& e1 = *t.insert(est.original, est.reply, params(ForwardMode::kNat), 0).entry;
  ConnEntry& e2 = *t.insert(syn.original, syn.reply, params(ForwardMode::kNat), 0).entry;
  t.update(e1, FlowDir::kOriginal, kTcpSyn, 60, 0);
  t.update(e1, FlowDir::kReply, kTcpSyn | kTcpAck, 60, 0);
  t.update(e1, FlowDir::kOriginal, kTcpAck, 60, 0);
  t.update(e2, FlowDir::kOriginal, kTcpSyn, 60, 0);
  const ConntrackTimeouts to;

  std::vector<FlowKey> gone;
  auto collect = [&](const ConnEntry& e) { gone.push_back(e.original_key()); };
  EXPECT_EQ(t.expire(to.syn_sent_ms - 1, 8, collect), 0u);
  EXPECT_EQ(t.expire(to.syn_sent_ms, 8, collect), 1u);
  ASSERT_EQ(gone.size(), 1u);
  EXPECT_EQ(gone[0], syn.original);
  EXPECT_FALSE(t.lookup(syn.original));
  EXPECT_FALSE(t.lookup(syn.reply));
  EXPECT_TRUE(t.lookup(est.original));
  EXPECT_EQ(t.expire(to.established_ms - 1, 8, collect), 0u);
  EXPECT_EQ(t.expire(to.established_ms, 8, collect), 1u);
  EXPECT_EQ(gone.back(), est.original);
  EXPECT_EQ(t.size(), 0u);
  EXPECT_EQ(t.stats().expired, 2u);
  expect_consistent(t);
}

TEST(ConnTable, TrafficAndStateChangesMoveTheDeadline) {
  ConnTable t(small(4));
  const Keys k = nat_keys(1, 1, 2);
  ConnEntry& e = *t.insert(k.original, k.reply, params(ForwardMode::kNat), 0).entry;
  t.update(e, FlowDir::kOriginal, kTcpAck, 60, 0);  // adopted: ESTABLISHED
  t.update(e, FlowDir::kOriginal, kTcpAck, 60, 800'000);
  EXPECT_EQ(t.expire(900'000, 4), 0u);  // refreshed at 800 s
  t.update(e, FlowDir::kOriginal, kTcpRst, 40, 900'000);  // CLOSE: 10 s from now
  EXPECT_EQ(t.expire(909'999, 4), 0u);
  EXPECT_EQ(t.expire(910'000, 4), 1u);
}

TEST(ConnTable, TimeoutsCanChangeLive) {
  ConnTable t(small(4));
  const Keys k = nat_keys(1, 1, 2);
  ConnEntry& e = *t.insert(k.original, k.reply, params(ForwardMode::kNat), 0).entry;
  t.update(e, FlowDir::kOriginal, kTcpAck, 60, 0);
  ConntrackTimeouts to;
  to.established_ms = 5'000;
  t.set_timeouts(to);
  EXPECT_EQ(t.config().timeouts.established_ms, 5'000u);
  EXPECT_EQ(t.expire(4'999, 4), 0u);
  EXPECT_EQ(t.expire(5'000, 4), 1u);
}

TEST(ConnTable, ATimestampFromTheFutureDoesNotExpire) {
  // Another worker's clock read may be slightly ahead of the one that sweeps.
  ConnTable t(small(4));
  const Keys k = nat_keys(1, 1, 2);
  t.insert(k.original, k.reply, params(ForwardMode::kNat), 5'000);
  EXPECT_EQ(t.expire(4'000, 4), 0u);
  EXPECT_EQ(t.size(), 1u);
}

TEST(ConnTable, EachExpireCallExaminesABoundedNumberOfEntries) {
  ConnTable t(small(100));
  for (std::uint16_t i = 0; i < 100; ++i) {
    const Keys k = nat_keys(1, i, 2);
    t.insert(k.original, k.reply, params(ForwardMode::kNat), 0);
  }
  const std::uint64_t later = 1'000'000'000;  // everything is long expired
  for (int call = 0; call < 10; ++call) EXPECT_EQ(t.expire(later, 10), 10u) << call;
  EXPECT_EQ(t.size(), 0u);
  EXPECT_EQ(t.expire(later, 0), 0u);
  expect_consistent(t);
}

TEST(ConnTable, TheSweepCoversOnlyThePartEverUsed) {
  // 10 connections in a table of 100 000: the sweep's extent is 10, and churn reuses the same
  // entries (freed ones go back on top of the free list), so it stays 10.
  ConnTable t(small(100'000));
  const std::uint64_t later = 1'000'000'000;
  for (int round = 0; round < 5; ++round) {
    for (std::uint16_t i = 0; i < 10; ++i) {
      const Keys k = nat_keys(1, static_cast<std::uint16_t>(round * 10 + i), 2);
      ASSERT_EQ(t.insert(k.original, k.reply, params(ForwardMode::kNat), later * round).status, InsertStatus::kInserted);
    }
    EXPECT_EQ(t.extent(), 10u) << round;
    // One call with a budget of 10 examines the whole used part and frees everything.
    EXPECT_EQ(t.expire(later * (round + 1), 10), 10u) << round;
    EXPECT_EQ(t.size(), 0u);
    expect_consistent(t);
  }
}

TEST(ConnTable, TheSweepResumesWhereItStopped) {
  // One expired entry at pool position 50 of 100: the sweep reaches it on its sixth call of 10,
  // whatever it finds (or not) before, and never examines more than it was allowed.
  ConnTable t(small(100));
  std::vector<ConnEntry*> e;
  for (std::uint16_t i = 0; i < 51; ++i) {
    const Keys k = nat_keys(1, i, 2);
    e.push_back(t.insert(k.original, k.reply, params(ForwardMode::kNat), 0).entry);
  }
  ASSERT_EQ(e[50] - e[0], 50);  // a young table hands entries out in pool order
  for (std::size_t i = 0; i < 50; ++i) t.update(*e[i], FlowDir::kOriginal, kTcpAck, 60, 1'000'000);
  // At 1 000 500 ms only e[50] (NONE since 0, 2 s timeout) is due.
  for (int call = 0; call < 5; ++call) EXPECT_EQ(t.expire(1'000'500, 10), 0u) << call;
  EXPECT_EQ(t.expire(1'000'500, 10), 1u);
  EXPECT_EQ(t.size(), 50u);
  // A budget larger than the table examines each entry once.
  EXPECT_EQ(t.expire(1'000'500, 1'000'000), 0u);
}

TEST(ConnTable, ForEachVisitsEveryEntryInUse) {
  ConnTable t(small(16));
  std::vector<ConnEntry*> e;
  for (std::uint16_t i = 0; i < 10; ++i) {
    const Keys k = nat_keys(1, i, 2);
    e.push_back(t.insert(k.original, k.reply, params(ForwardMode::kNat), 0).entry);
  }
  t.erase(e[2]);
  t.erase(e[7]);
  std::vector<std::uint16_t> ports;
  t.for_each([&](const ConnEntry& c) { ports.push_back(c.client_port); });
  std::sort(ports.begin(), ports.end());
  EXPECT_EQ(ports, (std::vector<std::uint16_t>{0, 1, 3, 4, 5, 6, 8, 9}));
}

TEST(ConnTable, MemoryPerConnection) {
  // 96-byte entry + 4 index slots of 8 bytes when the capacity is a power of two.
  EXPECT_EQ(sizeof(ConnEntry), 96u);
  EXPECT_EQ(alignof(ConnEntry), 32u);
  ConnTable t(small(1u << 16));
  EXPECT_EQ(t.index_slots(), 4u << 16);
  EXPECT_EQ(t.memory_bytes() / t.capacity(), 128u);
  EXPECT_LE(t.memory_bytes() / t.capacity(), 256u);  // the design's ceiling
  // Not a power of two: the index rounds up (here to 8 slots per entry at worst).
  ConnTable u(small((1u << 16) + 1));
  EXPECT_EQ(u.index_slots(), 8u << 16);
}

TEST(ConnTable, HashedLookupAndPrefetchAgreeWithPlainLookup) {
  ConnTable t(ConnTableConfig{.capacity = 64, .timeouts = {}, .hash_seed = 0x1234});
  const Keys k = nat_keys(1, 1, 2);
  ConnEntry* e = t.insert(k.original, k.reply, params(ForwardMode::kNat), 0).entry;
  const std::uint64_t h = t.hash(k.reply);
  EXPECT_EQ(h, flow_hash(k.reply, 0x1234));
  t.prefetch(h);
  EXPECT_EQ(t.lookup(k.reply, h).entry, e);
  EXPECT_EQ(t.find(k.original), e);
  EXPECT_EQ(t.stats().lookups_hit, 1u);  // find() is not counted
}

TEST(ConnTable, LookupBurstAgreesWithLookup) {
  ConnTable t(small(128));
  for (std::uint16_t i = 0; i < 100; ++i) {
    const Keys k = nat_keys(1, i, 2);
    t.insert(k.original, k.reply, params(ForwardMode::kNat), 0);
  }
  // 70 keys (more than one stage of 32): present in either direction, and absent.
  std::vector<FlowKey> keys;
  for (std::uint16_t i = 0; i < 70; ++i) {
    const Keys k = nat_keys(1, static_cast<std::uint16_t>(i * 3), 2);
    keys.push_back(i % 2 ? k.reply : k.original);
  }
  std::vector<ConnLookup> out(keys.size());
  t.lookup_burst(keys, out);
  for (std::size_t i = 0; i < keys.size(); ++i) {
    t.prefetch_entry(t.hash(keys[i]));  // a hint only: harmless for hits and misses
    const ConnLookup one = t.lookup(keys[i]);
    EXPECT_EQ(out[i].entry, one.entry) << i;
    EXPECT_EQ(out[i].dir, one.dir) << i;
    EXPECT_EQ(static_cast<bool>(one), i * 3 < 100) << i;
  }
  EXPECT_EQ(t.stats().lookups_hit, 2u * 34);
  EXPECT_EQ(t.stats().lookups_miss, 2u * 36);
}

// A long random run against std::unordered_map: inserts (with clashes and a full table),
// lookups of present and absent keys in both directions, updates, erases, and bounded expiry
// sweeps as time moves on. After each step the table must agree with the model; the index is
// checked against the pool every few hundred steps.
TEST(ConnTable, RandomOperationsAgreeWithAModel) {
  constexpr std::uint32_t kCapacity = 1024;
  ConntrackTimeouts to;
  to.none_ms = 3'000;
  to.syn_sent_ms = 2'000;
  to.syn_recv_ms = 2'000;
  to.established_ms = 30'000;
  to.fin_wait_ms = 5'000;
  to.close_wait_ms = 4'000;
  to.last_ack_ms = 3'000;
  to.time_wait_ms = 5'000;
  to.close_ms = 1'000;
  to.udp_ms = 10'000;
  ConnTable t(ConnTableConfig{.capacity = kCapacity, .timeouts = to, .hash_seed = 7});

  struct Model {
    FlowKey original, reply;
    bool reply_indexed;
    ConnEntry* entry;
    TcpState state;
    std::uint64_t last_seen;
    std::uint64_t packets[2];
    std::uint64_t bytes[2];
    std::size_t pos;  // in `live`
  };
  std::unordered_map<FlowKey, Model, FlowKeyHash> by_original;
  std::unordered_map<FlowKey, FlowKey, FlowKeyHash> reply_to_original;  // indexed reply keys only
  std::vector<FlowKey> live;

  std::mt19937_64 rng(20240607);
  auto pick = [&](std::uint64_t n) { return static_cast<std::uint64_t>(rng() % n); };
  // A small key space, so that clashes, reuse and a full table all happen.
  auto random_original = [&] {
    return key(client(static_cast<std::uint32_t>(pick(16))), static_cast<std::uint16_t>(1000 + pick(128)),
               vip(static_cast<std::uint32_t>(1 + pick(2))), 80, pick(4) == 0 ? kUdp : kTcp);
  };
  auto random_reply = [&](const FlowKey& o, ForwardMode m) {
    if (m == ForwardMode::kFullNat)
      return key(backend(static_cast<std::uint32_t>(pick(8))), 8080, kLocal,
                 static_cast<std::uint16_t>(20000 + pick(2048)), o.proto);
    return key(backend(static_cast<std::uint32_t>(pick(8))), 8080, o.src_addr, o.src_port, o.proto);
  };
  auto present = [&](const FlowKey& k) {
    return by_original.count(k) != 0 || reply_to_original.count(k) != 0;
  };
  auto forget = [&](const FlowKey& original) {
    const Model& m = by_original.at(original);
    const std::size_t pos = m.pos;
    if (m.reply_indexed) reply_to_original.erase(m.reply);
    by_original.erase(original);
    if (pos != live.size() - 1) {
      live[pos] = live.back();
      by_original.at(live[pos]).pos = pos;
    }
    live.pop_back();
  };
  auto model_expired = [&](const Model& m, std::uint64_t at) {
    return at >= m.last_seen + to.ms(m.original.proto, m.state);
  };

  std::uint64_t now = 0;
  std::uint64_t n_insert = 0, n_full = 0, n_exists = 0, n_erase = 0, n_expired = 0, n_lookup_hit = 0,
                n_lookup_miss = 0;
  constexpr int kSteps = 400'000;
  for (int step = 0; step < kSteps; ++step) {
    now += pick(4);
    const std::uint64_t op = pick(100);
    if (op < 35) {  // insert
      const FlowKey o = random_original();
      const auto mode = static_cast<ForwardMode>(pick(4));
      const FlowKey r = random_reply(o, mode);
      const bool idx_reply = replies_pass_through(mode);
      const ConnInsert res = t.insert(o, r, params(mode), now);
      InsertStatus want = InsertStatus::kInserted;
      if (present(o) || (idx_reply && (present(r) || r == o))) want = InsertStatus::kExists;
      else if (live.size() == kCapacity) want = InsertStatus::kFull;
      ASSERT_EQ(res.status, want) << "step " << step;
      if (want == InsertStatus::kExists && res.entry != nullptr) {
        // The entry returned holds one of the keys.
        ASSERT_TRUE(res.entry->original_key() == o || res.entry->original_key() == r ||
                    ((res.entry->flags & kConnReplyIndexed) &&
                     (res.entry->reply_key() == o || res.entry->reply_key() == r)))
            << "step " << step;
      }
      if (want != InsertStatus::kInserted) {
        n_full += want == InsertStatus::kFull;
        n_exists += want == InsertStatus::kExists;
        continue;
      }
      ++n_insert;
      live.push_back(o);
      by_original[o] = Model{o, r, idx_reply, res.entry, TcpState::kNone, now, {0, 0}, {0, 0}, live.size() - 1};
      if (idx_reply) reply_to_original[r] = o;
    } else if (op < 60) {  // lookup: a live key (either side) or a random one
      FlowKey k;
      if (!live.empty() && pick(2) == 0) {
        const Model& m = by_original.at(live[pick(live.size())]);
        k = (m.reply_indexed && pick(2) == 0) ? m.reply : m.original;
      } else {
        k = pick(2) ? random_original() : random_reply(random_original(), ForwardMode::kNat);
      }
      const ConnLookup l = t.lookup(k);
      const Model* m = nullptr;
      FlowDir want_dir = FlowDir::kOriginal;
      if (auto it = by_original.find(k); it != by_original.end()) {
        m = &it->second;
      } else if (auto r = reply_to_original.find(k); r != reply_to_original.end()) {
        m = &by_original.at(r->second);
        want_dir = FlowDir::kReply;
      }
      if (m == nullptr) {
        ASSERT_FALSE(l) << "step " << step;
        ++n_lookup_miss;
      } else {
        ASSERT_TRUE(l) << "step " << step;
        ASSERT_EQ(l.entry, m->entry) << "step " << step;
        ASSERT_EQ(l.dir, want_dir) << "step " << step;
        ++n_lookup_hit;
      }
    } else if (op < 85) {  // a packet of a live connection
      if (live.empty()) continue;
      Model& m = by_original.at(live[pick(live.size())]);
      const FlowDir d = (m.reply_indexed && pick(2)) ? FlowDir::kReply : FlowDir::kOriginal;
      static constexpr std::uint8_t kFlags[] = {kTcpSyn, kTcpSyn | kTcpAck, kTcpAck, kTcpAck | kTcpPsh,
                                                kTcpFin | kTcpAck, kTcpRst, 0};
      const std::uint8_t f = kFlags[pick(std::size(kFlags))];
      const auto bytes = static_cast<std::uint32_t>(40 + pick(1460));
      const bool changed = t.update(*m.entry, d, f, bytes, now);
      const TcpState before = m.state;
      if (m.original.proto == kTcp)
        m.state = tcp_next_state(m.state, d, tcp_event(f), m.reply_indexed ? TcpView::kBothWays : TcpView::kClientOnly);
      ASSERT_EQ(changed, m.state != before) << "step " << step;
      m.last_seen = now;
      ++m.packets[static_cast<int>(d)];
      m.bytes[static_cast<int>(d)] += bytes;
      ASSERT_EQ(m.entry->state, m.state);
    } else if (op < 90) {  // erase
      if (live.empty()) continue;
      const FlowKey o = live[pick(live.size())];
      t.erase(by_original.at(o).entry);
      forget(o);
      ++n_erase;
    } else {  // a bounded sweep; sometimes a whole one, after which nothing overdue may remain
      const bool whole = pick(50) == 0;
      const std::size_t budget = whole ? kCapacity : pick(64);
      const std::size_t n = t.expire(now, budget, [&](const ConnEntry& e) {
        const auto it = by_original.find(e.original_key());
        ASSERT_NE(it, by_original.end()) << "expired an entry the model does not have";
        ASSERT_EQ(it->second.entry, &e);
        ASSERT_TRUE(model_expired(it->second, now)) << "expired early, step " << step;
        forget(e.original_key());
      });
      n_expired += n;
      if (whole) {
        for (const FlowKey& o : live) ASSERT_FALSE(model_expired(by_original.at(o), now)) << "step " << step;
      }
    }
    ASSERT_EQ(t.size(), live.size()) << "step " << step;
    if (step % 500 == 0) {
      std::string why;
      ASSERT_TRUE(t.check_invariants(&why)) << "step " << step << ": " << why;
    }
  }

  // The end state, entry by entry.
  std::size_t seen = 0;
  t.for_each([&](const ConnEntry& e) {
    ++seen;
    const Model& m = by_original.at(e.original_key());
    EXPECT_EQ(&e, m.entry);
    EXPECT_EQ(e.reply_key(), m.reply);
    EXPECT_EQ(e.last_seen_ms, m.last_seen);
    EXPECT_EQ(e.packets[0], m.packets[0]);
    EXPECT_EQ(e.packets[1], m.packets[1]);
    EXPECT_EQ(e.bytes[0], m.bytes[0]);
    EXPECT_EQ(e.bytes[1], m.bytes[1]);
  });
  EXPECT_EQ(seen, live.size());
  std::string why;
  EXPECT_TRUE(t.check_invariants(&why)) << why;
  const ConnStats& s = t.stats();
  EXPECT_EQ(s.inserts, n_insert);
  EXPECT_EQ(s.insert_failed_full, n_full);
  EXPECT_EQ(s.insert_failed_exists, n_exists);
  EXPECT_EQ(s.erased, n_erase);
  EXPECT_EQ(s.expired, n_expired);
  EXPECT_EQ(s.lookups_hit, n_lookup_hit);
  EXPECT_EQ(s.lookups_miss, n_lookup_miss);
  // Every path was exercised, or the run proves little.
  EXPECT_GT(n_full, 1000u);
  EXPECT_GT(n_exists, 1000u);
  EXPECT_GT(n_expired, 1000u);
  EXPECT_GT(n_erase, 1000u);
  EXPECT_GT(n_lookup_hit, 1000u);
  EXPECT_GT(n_lookup_miss, 1000u);
  RecordProperty("inserts", std::to_string(n_insert));
  RecordProperty("insert_failed_full", std::to_string(n_full));
  RecordProperty("expired", std::to_string(n_expired));
}

TEST(HugePageMemory, MappingsAreHugePageAlignedAndServeATable) {
  tandem::HugePageMemory& mem = tandem::huge_page_memory();
  void* p = mem.allocate(5u << 20, 64);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % tandem::HugePageMemory::kHugePage, 0u);
  std::memset(p, 0xab, 5u << 20);  // every byte writable
  mem.deallocate(p, 5u << 20, 64);

  ConnTable t(small(100'000), &mem);
  for (std::uint16_t i = 0; i < 1000; ++i) {
    const Keys k = nat_keys(1, i, 2);
    ASSERT_EQ(t.insert(k.original, k.reply, params(ForwardMode::kNat), 0).status, InsertStatus::kInserted);
  }
  expect_consistent(t);
}
