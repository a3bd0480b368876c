// Tests of dataplane/conntrack/conn_query: the filter field by field, count/list/flush over a
// table (holes included), and slicing (many small advance() calls equal one big one).
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "dataplane/conntrack/conn_query.hpp"

using namespace tandem::conntrack;

namespace {

constexpr std::uint8_t kTcp = 6;
constexpr std::uint8_t kUdp = 17;

constexpr std::uint32_t kVip1 = 0xcb007101u;  // 203.0.113.1
constexpr std::uint32_t kVip2 = 0xcb007102u;  // 203.0.113.2
std::uint32_t client(std::uint32_t host) { return 0xc6336400u | host; }  // 198.51.100.x
std::uint32_t backend(std::uint32_t host) { return 0x0a000100u | host; } // 10.0.1.x

FlowKey key(std::uint32_t src, std::uint16_t sport, std::uint32_t dst, std::uint16_t dport, std::uint8_t proto) {
  return {.src_addr = src, .dst_addr = dst, .src_port = sport, .dst_port = dport, .proto = proto};
}

ConnEntry entry() {
  ConnEntry e;
  e.client_addr = client(7);
  e.client_port = 40000;
  e.vip_addr = kVip1;
  e.vip_port = 80;
  e.backend_addr = backend(3);
  e.backend_port = 8080;
  e.local_addr = client(7);
  e.local_port = 40000;
  e.proto = kTcp;
  e.state = TcpState::kEstablished;
  e.flags = kConnInUse;
  return e;
}

// One connection of the test table, as inserted.
struct Conn {
  FlowKey original;
  FlowKey reply;
  ConnParams params;
};

// A mix: two VIPs, two ports, TCP and UDP, 4 backends, 5 clients, TCP states varied. nat
// connections index their reply key too, so a flush must remove both keys.
std::vector<Conn> make_conns(int n) {
  std::vector<Conn> out;
  for (int i = 0; i < n; ++i) {
    const std::uint8_t proto = i % 5 == 4 ? kUdp : kTcp;
    const std::uint32_t vip = i % 2 == 0 ? kVip1 : kVip2;
    const auto vport = static_cast<std::uint16_t>(i % 3 == 0 ? 443 : 80);
    const std::uint32_t c = client(1 + static_cast<std::uint32_t>(i % 5));
    const auto cport = static_cast<std::uint16_t>(10000 + i);
    const std::uint32_t b = backend(1 + static_cast<std::uint32_t>(i % 4));
    const auto bport = static_cast<std::uint16_t>(i % 4 == 3 ? 9090 : 8080);
    const TcpState state = proto == kUdp ? TcpState::kNone
                           : i % 7 == 0  ? TcpState::kSynSent
                           : i % 7 == 1  ? TcpState::kTimeWait
                                         : TcpState::kEstablished;
    const ForwardMode mode = i % 6 == 5 ? ForwardMode::kDsr : ForwardMode::kNat;
    out.push_back({key(c, cport, vip, vport, proto), key(b, bport, c, cport, proto),
                   {.mode = mode, .state = state, .flags = 0, .service = 0, .backend = 0}});
  }
  return out;
}

struct Fixture {
  ConnTable table;
  std::vector<Conn> conns;

  explicit Fixture(int n, std::uint32_t capacity = 1024)
      : table(ConnTableConfig{.capacity = capacity, .timeouts = {}, .hash_seed = 42}), conns(make_conns(n)) {
    for (const Conn& c : conns) {
      const auto r = table.insert(c.original, c.reply, c.params, 0);
      EXPECT_EQ(r.status, InsertStatus::kInserted);
    }
  }
  // What a correct query finds: every entry in use that matches, in pool order.
  std::vector<ConnEntry> expected(const ConnFilter& f) const {
    std::vector<ConnEntry> out;
    table.for_each([&](const ConnEntry& e) {
      if (f.matches(e)) out.push_back(e);
    });
    return out;
  }
};

void expect_consistent(const ConnTable& t) {
  std::string why;
  EXPECT_TRUE(t.check_invariants(&why)) << why;
}

// Runs q to completion in slices of `slice`; returns how many advance() calls it took.
int run(ConnTable& t, ConnQuery& q, std::size_t slice) {
  int calls = 1;
  while (!advance(t, q, slice)) ++calls;
  return calls;
}

bool same_entry(const ConnEntry& a, const ConnEntry& b) {
  return a.original_key() == b.original_key() && a.reply_key() == b.reply_key() && a.state == b.state &&
         a.mode == b.mode && a.flags == b.flags;
}

}  // namespace

TEST(ConnFilter, EmptyMatchesEveryConnection) {
  ConnFilter f;
  ConnEntry e = entry();
  EXPECT_TRUE(f.matches(e));
  e.proto = kUdp;
  e.state = TcpState::kNone;
  EXPECT_TRUE(f.matches(e));
}

TEST(ConnFilter, EachFieldAlone) {
  const ConnEntry e = entry();
  struct Case {
    const char* name;
    ConnFilter hit, miss;
  };
  const Case cases[] = {
      {"vip", {.vip = kVip1}, {.vip = kVip2}},
      {"vip_port", {.vip_port = 80}, {.vip_port = 81}},
      {"proto", {.proto = kTcp}, {.proto = kUdp}},
      {"client", {.client = client(7)}, {.client = client(8)}},
      {"backend", {.backend = backend(3)}, {.backend = backend(4)}},
      {"backend_port", {.backend_port = 8080}, {.backend_port = 80}},
      {"state", {.state = TcpState::kEstablished}, {.state = TcpState::kSynSent}},
  };
  for (const Case& c : cases) {
    EXPECT_TRUE(c.hit.matches(e)) << c.name;
    EXPECT_FALSE(c.miss.matches(e)) << c.name;
  }
}

TEST(ConnFilter, FieldsComeFromTheRightSideOfTheEntry) {
  // client and vip are the original key; backend and backend_port the reply key. A filter on
  // one side must not match the other side's values.
  const ConnEntry e = entry();
  EXPECT_FALSE(ConnFilter{.vip = e.backend_addr}.matches(e));
  EXPECT_FALSE(ConnFilter{.client = e.backend_addr}.matches(e));
  EXPECT_FALSE(ConnFilter{.backend = e.client_addr}.matches(e));
  EXPECT_FALSE(ConnFilter{.backend = e.vip_addr}.matches(e));
  EXPECT_FALSE(ConnFilter{.vip_port = e.backend_port}.matches(e));
  EXPECT_FALSE(ConnFilter{.backend_port = e.vip_port}.matches(e));
  // local_addr/local_port (the client itself for nat) is not "client" either: change it.
  ConnEntry fullnat = e;
  fullnat.local_addr = 0x0a0001feu;
  EXPECT_FALSE(ConnFilter{.client = fullnat.local_addr}.matches(fullnat));
  EXPECT_TRUE(ConnFilter{.client = fullnat.client_addr}.matches(fullnat));
}

TEST(ConnFilter, StateMatchesTcpOnly) {
  ConnEntry udp = entry();
  udp.proto = kUdp;
  udp.state = TcpState::kNone;
  EXPECT_FALSE(ConnFilter{.state = TcpState::kNone}.matches(udp));
  ConnEntry tcp = entry();
  tcp.state = TcpState::kNone;  // a TCP entry before its first packet
  EXPECT_TRUE(ConnFilter{.state = TcpState::kNone}.matches(tcp));
  // A UDP entry whose state byte holds anything still does not match a state.
  udp.state = TcpState::kEstablished;
  EXPECT_FALSE(ConnFilter{.state = TcpState::kEstablished}.matches(udp));
}

TEST(ConnFilter, UdpOnly) {
  ConnEntry e = entry();
  const ConnFilter f{.udp_only = true};
  EXPECT_FALSE(f.matches(e));
  e.proto = kUdp;
  EXPECT_TRUE(f.matches(e));
  // Contradictions match nothing.
  EXPECT_FALSE((ConnFilter{.proto = kTcp, .udp_only = true}).matches(e));
  EXPECT_FALSE((ConnFilter{.state = TcpState::kNone, .udp_only = true}).matches(e));
}

TEST(ConnFilter, EveryFieldMustMatch) {
  const ConnEntry e = entry();
  const ConnFilter all{.vip = kVip1,
                       .vip_port = 80,
                       .proto = kTcp,
                       .client = client(7),
                       .backend = backend(3),
                       .backend_port = 8080,
                       .state = TcpState::kEstablished};
  EXPECT_TRUE(all.matches(e));
  // Spoil one field at a time: each alone is enough to refuse.
  for (int field = 0; field < 8; ++field) {
    ConnFilter f = all;
    switch (field) {
      case 0: f.vip = kVip2; break;
      case 1: f.vip_port = 443; break;
      case 2: f.proto = kUdp; break;
      case 3: f.client = client(1); break;
      case 4: f.backend = backend(1); break;
      case 5: f.backend_port = 1; break;
      case 6: f.state = TcpState::kClose; break;
      case 7: f.udp_only = true; break;
    }
    EXPECT_FALSE(f.matches(e)) << "field " << field;
  }
}

TEST(ConnQuery, CountsOverATable) {
  Fixture fx(200);
  struct Case {
    ConnFilter filter;
    std::uint64_t want;
  };
  // make_conns: i even -> vip1; i % 5 == 4 -> UDP; i % 4 -> backend; i % 7 -> TCP state.
  std::uint64_t vip1 = 0, udp = 0, be2 = 0, syn_sent = 0, vip1_udp_443 = 0;
  for (int i = 0; i < 200; ++i) {
    vip1 += i % 2 == 0;
    udp += i % 5 == 4;
    be2 += i % 4 == 1;
    syn_sent += i % 5 != 4 && i % 7 == 0;
    vip1_udp_443 += i % 2 == 0 && i % 5 == 4 && i % 3 == 0;
  }
  const Case cases[] = {
      {{}, 200},
      {{.vip = kVip1}, vip1},
      {{.udp_only = true}, udp},
      {{.proto = kUdp}, udp},
      {{.proto = kTcp}, 200 - udp},
      {{.backend = backend(2)}, be2},
      {{.state = TcpState::kSynSent}, syn_sent},
      {{.vip = kVip1, .vip_port = 443, .udp_only = true}, vip1_udp_443},
      {{.vip = 0x01020304u}, 0},
  };
  for (const Case& c : cases) {
    ConnQuery q;
    q.op = ConnQueryOp::kCount;
    q.filter = c.filter;
    EXPECT_TRUE(advance(fx.table, q, ~std::size_t{0}));
    EXPECT_EQ(q.matched, c.want);
    EXPECT_EQ(q.matched, fx.expected(c.filter).size());
    EXPECT_TRUE(q.rows.empty());
  }
  EXPECT_EQ(fx.table.size(), 200u);  // counting erases nothing
}

TEST(ConnQuery, ListKeepsTheFirstLimitRowsInTableOrder) {
  Fixture fx(200);
  const ConnFilter f{.vip = kVip2};
  const auto want = fx.expected(f);
  ASSERT_EQ(want.size(), 100u);
  for (const std::size_t limit : {std::size_t{0}, std::size_t{1}, std::size_t{37}, std::size_t{100}, std::size_t{500}}) {
    ConnQuery q;
    q.op = ConnQueryOp::kList;
    q.filter = f;
    q.limit = limit;
    q.rows.reserve(limit);
    const auto* data = q.rows.data();
    const std::size_t cap = q.rows.capacity();
    EXPECT_TRUE(advance(fx.table, q, ~std::size_t{0}));
    EXPECT_EQ(q.matched, want.size()) << limit;  // matched counts past the limit
    ASSERT_EQ(q.rows.size(), std::min(limit, want.size())) << limit;
    EXPECT_EQ(q.rows.data(), data) << "reallocated at limit " << limit;
    EXPECT_EQ(q.rows.capacity(), cap);
    for (std::size_t i = 0; i < q.rows.size(); ++i) {
      EXPECT_TRUE(f.matches(q.rows[i]));
      EXPECT_TRUE(same_entry(q.rows[i], want[i])) << "row " << i;
    }
  }
}

TEST(ConnQuery, ListNeverGrowsRowsPastWhatWasReserved) {
  Fixture fx(50);
  ConnQuery q;
  q.op = ConnQueryOp::kList;
  q.limit = 40;
  q.rows.reserve(10);  // less than limit: the worker must not reallocate
  const std::size_t cap = q.rows.capacity();
  const auto* data = q.rows.data();
  EXPECT_TRUE(advance(fx.table, q, ~std::size_t{0}));
  EXPECT_EQ(q.matched, 50u);
  EXPECT_EQ(q.rows.size(), cap);
  EXPECT_EQ(q.rows.data(), data);

  ConnQuery none;  // nothing reserved: counts, keeps no rows
  none.op = ConnQueryOp::kList;
  EXPECT_TRUE(advance(fx.table, none, ~std::size_t{0}));
  EXPECT_EQ(none.matched, 50u);
  EXPECT_TRUE(none.rows.empty());
}

TEST(ConnQuery, FlushErasesExactlyTheMatchingConnections) {
  Fixture fx(300);
  const ConnFilter f{.proto = kTcp, .backend = backend(1)};
  const std::uint64_t want = fx.expected(f).size();
  ASSERT_GT(want, 0u);
  ConnQuery q;
  q.op = ConnQueryOp::kFlush;
  q.filter = f;
  EXPECT_TRUE(advance(fx.table, q, ~std::size_t{0}));
  EXPECT_EQ(q.matched, want);
  EXPECT_EQ(fx.table.size(), 300u - want);
  EXPECT_EQ(fx.table.stats().erased, want);
  expect_consistent(fx.table);
  for (const Conn& c : fx.conns) {
    const bool flushed = c.reply.src_addr == backend(1) && c.original.proto == kTcp;
    EXPECT_EQ(fx.table.find(c.original) == nullptr, flushed);
    if (replies_pass_through(c.params.mode)) {
      EXPECT_EQ(fx.table.find(c.reply) == nullptr, flushed);
    }
  }
  EXPECT_TRUE(fx.expected(f).empty());

  // A second flush finds nothing; flushing everything empties the table.
  ConnQuery again;
  again.op = ConnQueryOp::kFlush;
  again.filter = f;
  EXPECT_TRUE(advance(fx.table, again, ~std::size_t{0}));
  EXPECT_EQ(again.matched, 0u);
  ConnQuery all;
  all.op = ConnQueryOp::kFlush;
  EXPECT_TRUE(advance(fx.table, all, ~std::size_t{0}));
  EXPECT_EQ(all.matched, 300u - want);
  EXPECT_EQ(fx.table.size(), 0u);
  expect_consistent(fx.table);
  for (const Conn& c : fx.conns) EXPECT_EQ(fx.table.find(c.original), nullptr);
  // The table still works: every connection can come back.
  for (const Conn& c : fx.conns)
    EXPECT_EQ(fx.table.insert(c.original, c.reply, c.params, 1).status, InsertStatus::kInserted);
  expect_consistent(fx.table);
}

TEST(ConnQuery, SlicesCoverTheTableOnceAndEqualOneShot) {
  for (const ConnQueryOp op : {ConnQueryOp::kCount, ConnQueryOp::kList, ConnQueryOp::kFlush}) {
    Fixture whole(250), sliced(250);
    const ConnFilter f{.vip_port = 80};
    ConnQuery a, b;
    a.op = b.op = op;
    a.filter = b.filter = f;
    a.limit = b.limit = 1000;
    a.rows.reserve(1000);
    b.rows.reserve(1000);
    EXPECT_EQ(run(whole.table, a, ~std::size_t{0}), 1);
    const std::size_t extent = sliced.table.extent();
    ASSERT_EQ(extent, 250u);
    constexpr std::size_t kSlice = 7;
    std::size_t calls = 0;
    bool finished = false;
    while (!finished) {
      finished = advance(sliced.table, b, kSlice);
      ++calls;
      // Not done before the used part is covered, and never past it.
      EXPECT_EQ(finished, b.cursor >= extent);
      EXPECT_LE(b.cursor, extent);
    }
    EXPECT_EQ(calls, (extent + kSlice - 1) / kSlice);
    EXPECT_EQ(b.matched, a.matched);
    ASSERT_EQ(b.rows.size(), a.rows.size());
    for (std::size_t i = 0; i < a.rows.size(); ++i) EXPECT_TRUE(same_entry(a.rows[i], b.rows[i]));
    EXPECT_EQ(sliced.table.size(), whole.table.size());
    expect_consistent(sliced.table);
  }
}

TEST(ConnQuery, SliceSizesFromOneEntryUp) {
  Fixture fx(64);
  const ConnFilter f{.proto = kTcp};
  const std::uint64_t want = fx.expected(f).size();
  for (const std::size_t slice : {std::size_t{1}, std::size_t{2}, std::size_t{63}, std::size_t{64}, std::size_t{65}}) {
    ConnQuery q;
    q.filter = f;
    EXPECT_EQ(static_cast<std::size_t>(run(fx.table, q, slice)), (64 + slice - 1) / slice) << slice;
    EXPECT_EQ(q.matched, want) << slice;
  }
  // A zero slice makes no progress (and does not claim to be done).
  ConnQuery q;
  EXPECT_FALSE(advance(fx.table, q, 0));
  EXPECT_EQ(q.cursor, 0u);
}

TEST(ConnQuery, ATableThatGrowsBetweenSlicesIsCoveredToItsNewExtent) {
  Fixture fx(10);
  ConnQuery q;
  EXPECT_FALSE(advance(fx.table, q, 8));
  // The worker inserts between slices: the new entries lie beyond the old extent.
  for (const Conn& c : make_conns(30))
    if (!fx.table.find(c.original)) fx.table.insert(c.original, c.reply, c.params, 0);
  EXPECT_EQ(fx.table.extent(), 30u);
  EXPECT_FALSE(advance(fx.table, q, 8));  // up to 16
  EXPECT_FALSE(advance(fx.table, q, 8));  // 24
  EXPECT_TRUE(advance(fx.table, q, 8));   // 30
  EXPECT_EQ(q.matched, 30u);
}

TEST(ConnQuery, AnEmptyTable) {
  ConnTable t(ConnTableConfig{.capacity = 16, .timeouts = {}, .hash_seed = 0});
  for (const ConnQueryOp op : {ConnQueryOp::kCount, ConnQueryOp::kList, ConnQueryOp::kFlush}) {
    ConnQuery q;
    q.op = op;
    q.rows.reserve(q.limit);
    EXPECT_TRUE(advance(t, q, 1));  // nothing was ever used: done at once
    EXPECT_EQ(q.matched, 0u);
    EXPECT_TRUE(q.rows.empty());
  }
  expect_consistent(t);
}

TEST(ConnQuery, ATableWithHoles) {
  Fixture fx(120);
  // Free every third entry: the pool keeps holes below the extent.
  std::vector<Conn> kept, gone;
  for (std::size_t i = 0; i < fx.conns.size(); ++i) {
    if (i % 3 == 0) {
      fx.table.erase(fx.table.lookup(fx.conns[i].original).entry);
      gone.push_back(fx.conns[i]);
    } else {
      kept.push_back(fx.conns[i]);
    }
  }
  ASSERT_EQ(fx.table.extent(), 120u);
  ASSERT_EQ(fx.table.size(), 80u);

  ConnQuery count;
  EXPECT_EQ(run(fx.table, count, 16), 8);
  EXPECT_EQ(count.matched, 80u);

  ConnQuery list;
  list.op = ConnQueryOp::kList;
  list.limit = 200;
  list.rows.reserve(200);
  run(fx.table, list, 16);
  ASSERT_EQ(list.rows.size(), 80u);
  for (const ConnEntry& e : list.rows) {
    EXPECT_TRUE(e.flags & kConnInUse);
    for (const Conn& g : gone) EXPECT_FALSE(e.original_key() == g.original);
  }

  ConnQuery flush;
  flush.op = ConnQueryOp::kFlush;
  flush.filter = {.udp_only = true};
  run(fx.table, flush, 16);
  expect_consistent(fx.table);
  std::uint64_t kept_udp = 0;
  for (const Conn& c : kept) {
    const bool udp = c.original.proto == kUdp;
    kept_udp += udp;
    EXPECT_EQ(fx.table.find(c.original) == nullptr, udp);
  }
  EXPECT_EQ(flush.matched, kept_udp);
  for (const Conn& g : gone) EXPECT_EQ(fx.table.find(g.original), nullptr);
  // Freed entries are reused (the holes), and the next query sees the new connections.
  for (const Conn& g : gone) fx.table.insert(g.original, g.reply, g.params, 5);
  ConnQuery after;
  run(fx.table, after, 16);
  EXPECT_EQ(after.matched, 80u - kept_udp + gone.size());
  EXPECT_EQ(fx.table.extent(), 120u);
}

TEST(ConnQuery, AFullTableFlushedInSlices) {
  Fixture fx(256, 256);
  ASSERT_EQ(fx.table.size(), fx.table.capacity());
  ConnQuery q;
  q.op = ConnQueryOp::kFlush;
  q.filter = {.vip = kVip1};
  run(fx.table, q, 10);
  EXPECT_EQ(q.matched, 128u);
  EXPECT_EQ(fx.table.size(), 128u);
  expect_consistent(fx.table);
  for (const Conn& c : fx.conns) EXPECT_EQ(fx.table.find(c.original) == nullptr, c.original.dst_addr == kVip1);
}

TEST(ConnQuery, AFlushLogsADeleteForEveryConnectionButThePeersOwnReplicas) {
  Fixture fx(50);
  // Five of them are pure replicas (installed by state sync, no packet here): not logged.
  int replicas = 0;
  for (std::size_t i = 0; i < fx.table.extent(); ++i) {
    ConnEntry& e = fx.table.entry_at(i);
    if ((e.flags & kConnInUse) && replicas < 5) {
      e.flags |= kConnFromPeer;
      ++replicas;
    }
  }
  ConnDeltaLog log;
  ConnQuery q;
  q.op = ConnQueryOp::kFlush;
  EXPECT_TRUE(advance(fx.table, q, ~std::size_t{0}, &log, 77));
  EXPECT_EQ(q.matched, 50u);
  ASSERT_EQ(log.size(), 45u);
  std::set<std::uint16_t> ports;
  for (std::size_t i = 0; i < log.size(); ++i) {
    EXPECT_EQ(log.data()[i].kind, DeltaKind::kDelete);
    EXPECT_EQ(log.data()[i].emitted_ms, 77u);
    ports.insert(log.data()[i].client_port);
  }
  EXPECT_EQ(ports.size(), 45u) << "each connection once";
  // A count or list logs nothing.
  ConnDeltaLog none;
  ConnQuery c;
  EXPECT_TRUE(advance(fx.table, c, ~std::size_t{0}, &none, 78));
  EXPECT_TRUE(none.empty());
}
