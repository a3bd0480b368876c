// State sync (controlplane/sync/*) on one core: the codec alone (a batch of connection records
// encoded and MAC'd, then authenticated and decoded), HMAC-SHA256 alone, and the whole path
// between two Endpoints looped back in one thread (no sockets): add -> seal -> poll ->
// receive -> next_delivery -> apply() into a 1M-entry ConnTable, with the acks flowing back.
// Everything is seeded; each benchmark checks its result and fails (SkipWithError) otherwise.
// Run: ninja -C build tests/bench/bench_sync && build/tests/bench/bench_sync
#include <benchmark/benchmark.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "controlplane/hmac.hpp"
#include "controlplane/sync/apply.hpp"
#include "controlplane/sync/message.hpp"
#include "controlplane/sync/reliable.hpp"
#include "dataplane/conntrack/conn_table.hpp"
#include "dataplane/lb/service_table.hpp"

using namespace tandem;
using namespace tandem::sync;
using conntrack::ForwardMode;
using conntrack::TcpState;

namespace {

const std::vector<std::uint8_t> kKey(32, 0x5a);

// --- the workload ---------------------------------------------------------------------------

// The services of the peer whose connections are replicated: (VIP, port, proto) and backends.
// The stream's records name these; BM_SyncEndToEnd/services knows them too (stats ids found by
// identity, as apply() does on a real unit), BM_SyncEndToEnd/no_services does not (every
// lookup misses and the entries are unattributed).
struct ServiceSpec {
  std::uint32_t vip;
  std::uint8_t proto;
  std::uint16_t port;  // 0: every port (the client's destination port picks one of kAnyPorts)
  ForwardMode mode;
  std::uint32_t backend_base;  // backends backend_base + 1 .. + n_backends
  std::uint16_t backend_port;  // 0: the VIP port
  std::uint32_t n_backends;
  std::uint32_t weight;  // share of the new flows
};
constexpr std::uint32_t kVip1 = 0xcb00710a, kVip2 = 0xcb007114, kVip3 = 0xcb00711e, kVip4 = 0xcb007128;
constexpr ServiceSpec kServices[] = {
    {kVip1, 6, 80, ForwardMode::kNat, 0x0a010000, 8080, 16, 35},
    {kVip1, 6, 443, ForwardMode::kNat, 0x0a010100, 8443, 16, 30},
    {kVip2, 17, 53, ForwardMode::kNat, 0x0a010200, 53, 4, 10},
    {kVip3, 6, 0, ForwardMode::kDsr, 0x0a010300, 0, 8, 10},
    {kVip4, 6, 443, ForwardMode::kFullNat, 0x0a010400, 443, 8, 15},
    {kVip4, 6, 8443, ForwardMode::kTunnel, 0x0a010500, 8443, 4, 0},  // configured, no traffic
};
constexpr std::uint16_t kAnyPorts[] = {80, 443, 8080, 8443};
constexpr std::uint32_t kLocalBase = 0x0a020000;  // fullnat local addresses kLocalBase + 1 .. + 4
constexpr std::uint32_t kLocals = 4;

std::unique_ptr<const lb::ServiceTable> service_table(bool with_services) {
  std::vector<lb::Service> v;
  if (with_services) {
    std::uint32_t backend_id = 1;
    for (std::uint32_t i = 0; i < std::size(kServices); ++i) {
      const ServiceSpec& s = kServices[i];
      lb::Service svc{.name = "svc" + std::to_string(i), .vip = net::Ipv4Addr{s.vip}, .proto = s.proto,
                      .port = s.port, .mode = s.mode, .maglev_size = 251, .stats_id = i + 1};
      for (std::uint32_t b = 1; b <= s.n_backends; ++b)
        svc.backends.push_back({net::Ipv4Addr{s.backend_base + b}, s.backend_port, 1, backend_id++});
      if (s.mode == ForwardMode::kFullNat)
        for (std::uint32_t l = 1; l <= kLocals; ++l) svc.local_addrs.push_back(net::Ipv4Addr{kLocalBase + l});
      v.push_back(std::move(svc));
    }
  }
  std::string error;
  auto t = lb::ServiceTable::build(std::move(v), error);
  if (!t) std::abort();
  return t;
}

// What the peer's workers replicate, in order: 65% creates of new flows, 25% updates of a live
// flow (its TCP state moves on), 10% deletes of a live flow. Every flow is distinct (a client
// address of its own in 100.64.0.0/10), so applied in order every create is kCreated, every
// update kRefreshed and every delete kDeleted.
struct Stream {
  std::vector<Record> records;
  std::vector<ConnRecord> creates;  // the first connection records, for the codec benchmarks
};

TcpState next_state(TcpState s) {
  switch (s) {
    case TcpState::kSynSent: return TcpState::kSynRecv;
    case TcpState::kSynRecv: return TcpState::kEstablished;
    case TcpState::kEstablished: return TcpState::kFinWait;
    case TcpState::kFinWait: return TcpState::kTimeWait;
    default: return s;
  }
}

Stream make_stream(std::size_t n, std::uint64_t seed) {
  Stream out;
  out.records.reserve(n);
  std::mt19937_64 rng(seed);
  std::vector<std::uint32_t> weights;
  for (const ServiceSpec& s : kServices) weights.push_back(s.weight);
  std::discrete_distribution<std::uint32_t> pick_service(weights.begin(), weights.end());
  std::vector<ConnRecord> live;
  std::uint32_t flows = 0, fullnat_flows = 0;
  while (out.records.size() < n) {
    const std::uint64_t dice = rng() % 100;
    if (live.empty() || dice < 65) {
      const ServiceSpec& s = kServices[pick_service(rng)];
      const std::uint32_t k = ++flows;  // < 2^22: the client addresses are distinct
      ConnRecord c;
      c.type = RecordType::kCreate;
      c.proto = s.proto;
      c.mode = s.mode;
      c.state = s.proto == 17 ? TcpState::kNone : (rng() % 10 < 7 ? TcpState::kSynSent : TcpState::kEstablished);
      c.mid_flow = c.state == TcpState::kEstablished;
      c.client_addr = 0x64400000u | ((k * 0x9E3779B1u) & 0x003fffffu);
      c.client_port = static_cast<std::uint16_t>(1024 + rng() % 64000);
      c.vip_addr = s.vip;
      c.vip_port = s.port ? s.port : kAnyPorts[rng() % std::size(kAnyPorts)];
      c.backend_addr = s.backend_base + 1 + static_cast<std::uint32_t>(rng() % s.n_backends);
      c.backend_port = s.backend_port ? s.backend_port : c.vip_port;
      if (s.mode == ForwardMode::kFullNat) {  // a local address and port of its own
        const std::uint32_t f = fullnat_flows++;
        c.local_addr = kLocalBase + 1 + f % kLocals;
        c.local_port = static_cast<std::uint16_t>(1024 + (f / kLocals) % 64000);
      } else {
        c.local_addr = c.client_addr;
        c.local_port = c.client_port;
      }
      c.created_age_ms = rng() % 50;
      c.idle_ms = static_cast<std::uint32_t>(c.created_age_ms ? rng() % c.created_age_ms : 0);
      live.push_back(c);
      out.records.emplace_back(c);
      if (out.creates.size() < 8192) out.creates.push_back(c);
    } else if (dice < 90) {
      ConnRecord& c = live[rng() % live.size()];
      c.type = RecordType::kUpdate;
      c.state = next_state(c.state);
      c.created_age_ms += 1000 + rng() % 5000;
      c.idle_ms = static_cast<std::uint32_t>(rng() % 100);
      out.records.emplace_back(c);
    } else {
      const std::size_t i = rng() % live.size();
      const ConnRecord& c = live[i];
      out.records.emplace_back(DeleteRecord{.proto = c.proto, .client_addr = c.client_addr, .vip_addr = c.vip_addr,
                                            .client_port = c.client_port, .vip_port = c.vip_port});
      live[i] = live.back();
      live.pop_back();
    }
  }
  return out;
}

constexpr std::size_t kPerRound = 200;                      // records added per 1 ms round
constexpr std::size_t kStreamRecords = kPerRound * 5200;    // 1.04M records, ~680K creates: < 1M capacity
// The end-to-end runs start from a replica that has taken the first half of the stream
// (~280K live flows), applied directly: they measure a table that is already well populated.
constexpr std::size_t kWarmRecords = kPerRound * 2600;

const Stream& stream() {
  static const Stream s = make_stream(kStreamRecords, 42);
  return s;
}

// --- HMAC alone -----------------------------------------------------------------------------

// The library's MAC as it runs per message (hmac.hpp: the thread's kept keyed context), over a
// full data message (1392 bytes) and an ack (64 bytes).
void BM_Hmac(benchmark::State& state) {
  const std::vector<std::uint8_t> data(static_cast<std::size_t>(state.range(0)), 0xa5);
  std::uint8_t mac[kHmacSha256Bytes];
  for (auto _ : state) {
    hmac_sha256(kKey, data, mac);
    benchmark::DoNotOptimize(mac);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_Hmac)->Arg(64)->Arg(64 + 27 * 48);

// OpenSSL's one-shot HMAC() (a fresh context and key schedule per call), what hmac.hpp did
// before it kept a context: the comparison.
void BM_HmacOneShot(benchmark::State& state) {
  const std::vector<std::uint8_t> data(static_cast<std::size_t>(state.range(0)), 0xa5);
  std::uint8_t mac[kHmacSha256Bytes];
  unsigned len = 0;
  for (auto _ : state) {
    HMAC(EVP_sha256(), kKey.data(), static_cast<int>(kKey.size()), data.data(), data.size(), mac, &len);
    benchmark::DoNotOptimize(mac);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_HmacOneShot)->Arg(64)->Arg(64 + 27 * 48);

// The same MAC with a keyed context kept by hand (EVP_MAC_init with no key reuses it): what
// BM_Hmac should match.
void BM_HmacReusedContext(benchmark::State& state) {
  const std::vector<std::uint8_t> data(static_cast<std::size_t>(state.range(0)), 0xa5);
  EVP_MAC* mac_alg = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_new(mac_alg);
  char digest[] = "SHA256";
  const OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                               OSSL_PARAM_construct_end()};
  if (!ctx || !EVP_MAC_init(ctx, kKey.data(), kKey.size(), params)) {
    state.SkipWithError("EVP_MAC_init failed");
    return;
  }
  std::uint8_t mac[kHmacSha256Bytes];
  std::size_t len = 0;
  for (auto _ : state) {
    EVP_MAC_init(ctx, nullptr, 0, nullptr);
    EVP_MAC_update(ctx, data.data(), data.size());
    EVP_MAC_final(ctx, mac, &len, sizeof mac);
    benchmark::DoNotOptimize(mac);
  }
  std::uint8_t want[kHmacSha256Bytes];
  hmac_sha256(kKey, data, want);
  if (len != sizeof mac || std::memcmp(mac, want, sizeof mac) != 0) state.SkipWithError("MAC differs from HMAC()");
  EVP_MAC_CTX_free(ctx);
  EVP_MAC_free(mac_alg);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_HmacReusedContext)->Arg(64)->Arg(64 + 27 * 48);

// --- the codec ------------------------------------------------------------------------------

// One full data message per iteration: Batch::add until the default budget (27 records), then
// finish() (header + HMAC-SHA256) into a reused buffer.
void BM_Encode(benchmark::State& state) {
  const std::vector<ConnRecord>& recs = stream().creates;
  std::vector<Record> pool(recs.begin(), recs.end());
  Batch batch;  // kDefaultBudget
  std::vector<std::uint8_t> out;
  out.reserve(kMaxMessageBytes);
  Header h{.unit_id = 1, .kind = MessageKind::kData, .epoch = 7, .sequence = 0, .oldest = 1};
  std::size_t next = 0;
  std::uint64_t records = 0, bytes = 0;
  for (auto _ : state) {
    batch.reset(MessageKind::kData);
    while (batch.add(pool[next])) next = next + 1 == pool.size() ? 0 : next + 1;
    h.sequence++;
    out.clear();
    batch.finish(h, kKey, out);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
    records += batch.records();
    bytes += out.size();
  }
  if (batch.records() != 27 || out.size() != 64 + 27 * 48 + 32) state.SkipWithError("not a 27-record message");
  // The last message decodes back to what was added.
  Decoder d(2, kKey);
  Message m;
  if (!d.decode(out, m) || m.records.size() != 27) state.SkipWithError("the encoded message does not decode");
  state.SetItemsProcessed(static_cast<std::int64_t>(records));
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
  state.counters["per_record"] =
      benchmark::Counter(static_cast<double>(records), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_Encode);

// One message per iteration through Decoder::decode: length, magic, HMAC check, every field
// validated, 27 records parsed into a reused Message.
void BM_Decode(benchmark::State& state) {
  const std::vector<ConnRecord>& recs = stream().creates;
  constexpr std::size_t kMessages = 256;
  std::vector<std::vector<std::uint8_t>> wire(kMessages);
  Batch batch;
  std::size_t next = 0;
  for (std::size_t i = 0; i < kMessages; ++i) {
    batch.reset(MessageKind::kData);
    while (batch.add(recs[next])) next = (next + 1) % recs.size();
    batch.finish({.unit_id = 1, .epoch = 7, .sequence = i + 1, .oldest = 1}, kKey, wire[i]);
  }
  Decoder d(2, kKey);
  Message m;
  m.records.reserve(64);
  std::size_t i = 0;
  std::uint64_t records = 0, bytes = 0, failed = 0;
  for (auto _ : state) {
    const std::vector<std::uint8_t>& w = wire[i];
    i = i + 1 == kMessages ? 0 : i + 1;
    failed += !d.decode(w, m);
    benchmark::DoNotOptimize(m.records.data());
    records += m.records.size();
    bytes += w.size();
  }
  if (failed != 0 || d.accepted() != static_cast<std::uint64_t>(state.iterations()) ||
      records != 27 * static_cast<std::uint64_t>(state.iterations()))
    state.SkipWithError("a message was refused or lost records");
  state.SetItemsProcessed(static_cast<std::int64_t>(records));
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
  state.counters["per_record"] =
      benchmark::Counter(static_cast<double>(records), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_Decode);

// --- end to end -----------------------------------------------------------------------------

// Unit 1 (the sender, whose workers produced the stream) and unit 2 (the receiver, which
// applies) joined by a perfect in-memory link. One round is one millisecond of the fake clock:
// the sender's datagrams go to the receiver, which applies every delivered record at once,
// and the receiver's (acks) come back.
struct Loopback {
  static EndpointConfig config(std::uint8_t unit, std::uint64_t epoch) {
    EndpointConfig c;
    c.unit_id = unit;
    c.key = kKey;
    c.epoch = epoch;
    return c;
  }

  Loopback(const lb::ServiceTable& s, std::uint32_t table_capacity)
      : a(config(1, 0x1111)), b(config(2, 0x2222)), services(s), capacity(table_capacity) {
    out_a.reserve(1024);
    out_b.reserve(1024);
    reset_table();
  }

  void reset_table() {
    table.reset();
    table = std::make_unique<conntrack::ConnTable>(conntrack::ConnTableConfig{.capacity = capacity, .hash_seed = 9});
    counts = {};
    want_created = want_refreshed = want_deleted = 0;
  }

  void apply_one(const Record& r) {
    if (const auto* c = std::get_if<ConnRecord>(&r))
      counts.count(apply(*table, *c, services, now));
    else if (const auto* d = std::get_if<DeleteRecord>(&r))
      counts.count(apply(*table, *d));
  }
  void expect(const Record& r) {
    if (const auto* c = std::get_if<ConnRecord>(&r))
      ++(c->type == RecordType::kCreate ? want_created : want_refreshed);
    else
      ++want_deleted;
  }

  // The table as a replica that has already taken `records` (applied directly, no link).
  void warm(std::span<const Record> records) {
    for (const Record& r : records) {
      expect(r);
      apply_one(r);
    }
  }

  void deliver() {
    while (const Message* m = b.next_delivery()) {
      for (const Record& r : m->records) apply_one(r);
      applied += m->records.size();
    }
  }

  void round() {
    out_a.clear();
    a.poll(now, out_a);
    for (const auto d : out_a) {
      wire_bytes += d.size();
      if (!b.receive(d, now).accepted) ++refused;
      deliver();
    }
    out_b.clear();
    b.poll(now, out_b);
    for (const auto d : out_b)
      if (!a.receive(d, now).accepted) ++refused;
    ++now;
  }

  void add(const Record& r) {
    expect(r);
    while (a.add(MessageKind::kData, r, now) != AddStatus::kQueued) {
      ++stalls;
      round();
    }
    ++added;
  }

  // Rounds until everything added was applied (the last partial batch goes on its flush timer).
  bool drain() {
    for (int i = 0; i < 1000 && applied != added; ++i) round();
    return applied == added;
  }

  // Every record applied as the stream says, and the table holds exactly the live flows.
  std::string check() const {
    if (refused) return std::to_string(refused) + " datagrams refused";
    if (counts[ApplyResult::kCreated] == want_created && counts[ApplyResult::kRefreshed] == want_refreshed &&
        counts[ApplyResult::kDeleted] == want_deleted && table->size() == want_created - want_deleted)
      return {};
    std::string why = "expected created=" + std::to_string(want_created) + " refreshed=" +
                      std::to_string(want_refreshed) + " deleted=" + std::to_string(want_deleted) + ", got";
    for (std::size_t i = 0; i < kApplyResultCount; ++i)
      why += std::string(" ") + to_string(static_cast<ApplyResult>(i)) + "=" + std::to_string(counts.n[i]);
    return why + ", table size " + std::to_string(table->size());
  }

  Endpoint a, b;
  const lb::ServiceTable& services;
  std::uint32_t capacity;
  std::unique_ptr<conntrack::ConnTable> table;
  std::vector<std::span<const std::uint8_t>> out_a, out_b;
  std::uint64_t now = 1'000'000;
  ApplyCounts counts;
  std::uint64_t want_created = 0, want_refreshed = 0, want_deleted = 0;  // since reset_table()
  std::uint64_t added = 0, applied = 0, wire_bytes = 0, refused = 0, stalls = 0;
};

// One iteration: 200 records added (7.4 messages: batches fill across rounds; a partial one is
// sealed by its flush timer), then one round. In rounds of 1 ms the receiver's delayed ack
// (2 ms) keeps ~20 messages in flight, far below the 256-message window and the 20 ms
// retransmission timeout, so nothing stalls or is sent twice (both are reported). At the end
// of the 1.04M-record stream (~560K live flows) the pipeline is drained (timed), the table checked
// and replaced by a fresh warmed-up one (not timed), and the second half of the stream starts
// over. records_per_msg is above 27 because delete records are 16 bytes, not 48.
void BM_SyncEndToEnd(benchmark::State& state) {
  const Stream& s = stream();
  const auto services = service_table(state.range(0) != 0);
  const std::span<const Record> warm_up(s.records.data(), kWarmRecords);
  Loopback lo(*services, 1u << 20);
  lo.warm(warm_up);
  std::size_t cursor = kWarmRecords;
  std::string error;
  for (auto _ : state) {
    for (std::size_t i = 0; i < kPerRound; ++i) lo.add(s.records[cursor++]);
    lo.round();
    if (cursor == s.records.size()) {
      const bool drained = lo.drain();
      state.PauseTiming();
      if (!drained) error = "the pipeline did not drain";
      if (error.empty()) error = lo.check();
      lo.reset_table();
      lo.warm(warm_up);
      cursor = kWarmRecords;
      state.ResumeTiming();
      if (!error.empty()) {
        state.SkipWithError(error.c_str());
        break;
      }
    }
  }
  if (!error.empty()) return;
  if (!lo.drain()) error = "the pipeline did not drain";
  if (error.empty()) error = lo.check();
  if (error.empty() && lo.applied != kPerRound * static_cast<std::uint64_t>(state.iterations())) error = "records lost";
  if (!error.empty()) {
    state.SkipWithError(error.c_str());
    return;
  }
  const EndpointStats& sa = lo.a.stats();
  state.SetItemsProcessed(static_cast<std::int64_t>(lo.applied));
  state.SetBytesProcessed(static_cast<std::int64_t>(lo.wire_bytes));  // sender -> receiver, on the wire
  state.counters["per_record"] =
      benchmark::Counter(static_cast<double>(lo.applied), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["records_per_msg"] = static_cast<double>(sa.records_sent) / static_cast<double>(sa.messages_sent);
  state.counters["acks_per_msg"] = static_cast<double>(lo.b.stats().acks_sent) / static_cast<double>(sa.messages_sent);
  state.counters["retransmits"] = static_cast<double>(sa.retransmits);
  state.counters["stalls"] = static_cast<double>(lo.stalls);
  state.counters["table_size"] = static_cast<double>(lo.table->size());
  state.SetLabel(state.range(0) ? "6 services, 56 backends" : "no services");
}
BENCHMARK(BM_SyncEndToEnd)->ArgName("services")->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
