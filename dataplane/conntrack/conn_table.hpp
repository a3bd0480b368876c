// One worker's connection table: bounded, single-threaded, no allocation after construction.
//
// Each worker owns its table and is the only thread that reads or writes it (packets of a flow
// are steered to the worker that owns the flow), so there are no locks or atomics. An entry is
// found by the key of either direction: the client's (client -> VIP) and, when replies pass
// through the unit (nat, fullnat), the backend's (backend -> client or local address).
//
// Layout:
//   pool   `capacity` entries of 96 bytes, allocated once; free entries form a LIFO list, so a
//          freed entry is the next one reused (still in cache).
//   index  open addressing with linear probing over 8-byte slots {32-bit hash tag, entry index
//          and direction}, a power of two >= 4 x capacity slots (two keys per entry, load <= 1/2),
//          deleted by backward shift (no tombstones). A lookup reads one index line and then the
//          entry; the tag makes comparing against a wrong entry rare.
//   expiry an incremental sweep over the pool: each expire() call examines a bounded number of
//          entries from where the last call stopped and frees those idle for longer than the
//          timeout of their state. The free list hands out low indices first and takes freed
//          entries back on top, so entries in use stay below extent() (one past the highest
//          index ever used), and the sweep covers only that part: its cost follows the peak
//          number of connections, not the capacity. No timer work per packet; an entry is freed at most one full
//          sweep after its deadline, and a packet arriving before the sweep reaches it keeps it.
// Time is passed in (milliseconds, any monotonic origin).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory_resource>
#include <span>
#include <string>
#include <vector>

#include "dataplane/conntrack/flow_key.hpp"
#include "dataplane/conntrack/forward_mode.hpp"
#include "dataplane/conntrack/tcp_state.hpp"
#include "dataplane/counters.hpp"
#include "dataplane/net/headers.hpp"

namespace tandem::conntrack {

// ConnEntry::flags. The table owns the low two bits; callers set the others at insert.
inline constexpr std::uint8_t kConnInUse = 0x01;            // table: the entry is allocated
inline constexpr std::uint8_t kConnReplyIndexed = 0x02;     // table: the reply key is in the index
inline constexpr std::uint8_t kConnMidFlow = 0x04;          // created by a non-SYN segment
inline constexpr std::uint8_t kConnFromPeer = 0x08;         // installed by state sync
inline constexpr std::uint8_t kConnTableFlags = kConnInUse | kConnReplyIndexed;

// The two keys live in the entry as addresses and ports in FlowKey order, so a key is compared
// with the entry's 12 bytes of one side directly:
//   original key  client_addr -> vip_addr,     client_port -> vip_port
//   reply key     backend_addr -> local_addr,  backend_port -> local_port
// local_addr/local_port is where the backend sends its replies: the client itself for nat (and
// for dsr/tunnel, where the reply key is stored but not indexed), the unit's local (source NAT)
// address and port for fullnat.
struct alignas(32) ConnEntry {
  std::uint32_t client_addr = 0;
  std::uint32_t vip_addr = 0;
  std::uint16_t client_port = 0;
  std::uint16_t vip_port = 0;
  std::uint32_t backend_addr = 0;
  std::uint32_t local_addr = 0;
  std::uint16_t backend_port = 0;
  std::uint16_t local_port = 0;
  std::uint8_t proto = 0;
  ForwardMode mode = ForwardMode::kNat;
  TcpState state = TcpState::kNone;
  std::uint8_t flags = 0;
  // Stats ids of the service and backend (lb::Service::stats_id, lb::Backend::stats_id), not
  // table positions: those shift when the control plane publishes a new table.
  std::uint32_t service = 0;  // < kMaxServiceStats
  std::uint32_t backend = 0;  // < kMaxBackendStats
  std::uint32_t next_free = 0;  // table-internal: the free list while the entry is free
  std::uint64_t created_ms = 0;
  std::uint64_t last_seen_ms = 0;
  std::uint64_t packets[2] = {0, 0};  // indexed by FlowDir
  std::uint64_t bytes[2] = {0, 0};
  // State sync: when a change of this entry was last handed to the sync thread (0: never). A
  // busy entry is re-sent when it is older than the refresh period (conn_delta.hpp).
  std::uint64_t synced_ms = 0;

  FlowKey original_key() const {
    return {.src_addr = client_addr, .dst_addr = vip_addr, .src_port = client_port,
            .dst_port = vip_port, .proto = proto};
  }
  FlowKey reply_key() const {
    return {.src_addr = backend_addr, .dst_addr = local_addr, .src_port = backend_port,
            .dst_port = local_port, .proto = proto};
  }
  FlowKey key(FlowDir d) const { return d == FlowDir::kOriginal ? original_key() : reply_key(); }
};
// 96 bytes at 32-byte alignment: every entry spans exactly two cache lines, never three.
static_assert(sizeof(ConnEntry) == 96, "ConnEntry grew: update the memory figures in the docs");

// An entry installed by state sync that has carried no packet on this unit: the peer's copy,
// which only the peer's records change (sync/apply.hpp) and which this unit never replicates back.
inline bool pure_replica(const ConnEntry& e) {
  return (e.flags & kConnFromPeer) && e.packets[0] == 0 && e.packets[1] == 0;
}

// What the caller decides about a new connection; the addresses come from the two keys.
struct ConnParams {
  ForwardMode mode = ForwardMode::kNat;
  TcpState state = TcpState::kNone;  // kNone, then update() with the first packet sets it
  std::uint8_t flags = 0;            // kConnMidFlow, kConnFromPeer; table bits are ignored
  std::uint32_t service = 0;         // stats ids; out of range -> kUnattributedStats
  std::uint32_t backend = 0;
};

struct ConnLookup {
  ConnEntry* entry = nullptr;
  FlowDir dir = FlowDir::kOriginal;  // which of the entry's keys matched
  explicit operator bool() const { return entry != nullptr; }
};

enum class InsertStatus : std::uint8_t {
  kInserted,
  kFull,    // no free entry: the caller forwards statelessly or drops, and counts it
  kExists,  // a key is already in the table; `entry` is the entry that holds it
};

struct ConnInsert {
  ConnEntry* entry = nullptr;
  InsertStatus status = InsertStatus::kFull;
};

struct ConnStats {
  std::uint64_t lookups_hit = 0;
  std::uint64_t lookups_miss = 0;
  std::uint64_t inserts = 0;
  std::uint64_t insert_failed_full = 0;
  std::uint64_t insert_failed_exists = 0;
  std::uint64_t erased = 0;   // by erase()
  std::uint64_t expired = 0;  // by expire()

  ConnStats& operator+=(const ConnStats& o) {
    lookups_hit += o.lookups_hit;
    lookups_miss += o.lookups_miss;
    inserts += o.inserts;
    insert_failed_full += o.insert_failed_full;
    insert_failed_exists += o.insert_failed_exists;
    erased += o.erased;
    expired += o.expired;
    return *this;
  }
};

struct ConnTableConfig {
  std::uint32_t capacity = 1u << 20;  // connections per worker, 1 .. kMaxCapacity
  ConntrackTimeouts timeouts;
  std::uint64_t hash_seed = 0;  // give a random one in production (hash flooding)

  static constexpr std::uint32_t kMaxCapacity = 1u << 30;
};

class ConnTable {
 public:
  // All memory comes from `memory` (e.g. a hugepage-backed resource on the worker's NUMA node)
  // and is allocated and touched here, so the packet path never faults a page in.
  explicit ConnTable(const ConnTableConfig& config,
                     std::pmr::memory_resource* memory = std::pmr::get_default_resource());
  ConnTable(const ConnTable&) = delete;
  ConnTable& operator=(const ConnTable&) = delete;

  // Per service and backend traffic (counters.hpp), by the entries' stats ids: a connection is
  // counted created at insert, closed when freed (erase, expire: every way out), and each
  // update() counts its packet and bytes. Null (the default): not counted. Set before use.
  void set_traffic_stats(WorkerServiceStats* stats) { traffic_ = stats; }

  // The entry holding `key` (either direction), or none. Counted as a hit or a miss.
  ConnLookup lookup(const FlowKey& key) { return lookup(key, hash(key)); }
  ConnLookup lookup(const FlowKey& key, std::uint64_t hash);

  // A burst in stages, so the cache misses of all its packets overlap instead of queueing:
  // hash every key and prefetch() its index line; then prefetch_entry() each (reads the now
  // cached index line, prefetches the entry it points to); then look each up. lookup_burst()
  // does exactly that. Each stage only hints; a lookup is correct without them.
  std::uint64_t hash(const FlowKey& key) const { return flow_hash(key, seed_); }
  void prefetch(std::uint64_t hash) const { __builtin_prefetch(&index_[home(tag_of(hash))]); }
  void prefetch_entry(std::uint64_t hash) const;
  // out[i] = lookup(keys[i]) for i < keys.size(); `out` must be at least as long.
  void lookup_burst(std::span<const FlowKey> keys, std::span<ConnLookup> out);

  // Like lookup() but not counted (control plane, state sync, tests).
  const ConnEntry* find(const FlowKey& key) const;
  ConnEntry* find(const FlowKey& key) {
    return const_cast<ConnEntry*>(static_cast<const ConnTable*>(this)->find(key));
  }

  // A new connection under both keys (the reply key indexed only when replies pass through the
  // unit). Fails when a key is already present or no entry is free; never allocates.
  ConnInsert insert(const FlowKey& original, const FlowKey& reply, const ConnParams& params,
                    std::uint64_t now_ms);

  // Frees the entry and both its index slots. `entry` must come from this table and be in use.
  void erase(ConnEntry* entry);

  // Gives an entry in use another reply key, mode and stats ids in place (state sync: the peer
  // moved the connection to another backend or NAT binding), keeping its original key, state,
  // times and packet counters. The reply key is re-indexed as the new mode requires. Traffic
  // stats: the connection is counted closed on its old service/backend slots and created on the
  // new ones (only when an id changes), so created - closed stays the entries each slot holds.
  // False, and nothing changed, when the new reply key is held by another entry or (indexed)
  // equals the original key.
  bool rebind(ConnEntry& e, const FlowKey& reply, ForwardMode mode, std::uint32_t service,
              std::uint32_t backend);

  // A packet of the connection travelling `dir`: refreshes last_seen, counts the packet and its
  // `bytes` (whatever length the caller counts, e.g. the IP total length), and for TCP moves
  // the state by the segment's flags (tcp_flags is ignored for other protocols), in the view
  // the entry's mode gives. Returns true when the TCP state changed (the caller may replicate
  // it, or see tcp_reopened()).
  bool update(ConnEntry& e, FlowDir dir, std::uint8_t tcp_flags, std::uint32_t bytes,
              std::uint64_t now_ms) {
    const auto d = static_cast<std::size_t>(dir);
    e.last_seen_ms = now_ms;
    ++e.packets[d];
    e.bytes[d] += bytes;
    if (traffic_) {  // ids were range-checked at insert
      TrafficCounters& s = traffic_->services[e.service];
      TrafficCounters& b = traffic_->backends[e.backend];
      s.packets[d].add();
      s.bytes[d].add(bytes);
      b.packets[d].add();
      b.bytes[d].add(bytes);
    }
    if (e.proto != net::ipv4::kProtoTcp) return false;
    const TcpState next = tcp_next_state(e.state, dir, tcp_event(tcp_flags), tcp_view(e.mode));
    if (next == e.state) return false;
    e.state = next;
    return true;
  }

  // Examines at most `max_examine` entries, continuing where the previous call stopped, and
  // frees those whose state's timeout has passed since their last packet. `on_expire(entry)`
  // sees each one just before it is freed (it must not insert or erase). Returns how many.
  template <typename Fn>
  std::size_t expire(std::uint64_t now_ms, std::size_t max_examine, Fn&& on_expire);
  std::size_t expire(std::uint64_t now_ms, std::size_t max_examine) {
    return expire(now_ms, max_examine, [](const ConnEntry&) {});
  }

  bool is_expired(const ConnEntry& e, std::uint64_t now_ms) const {
    return now_ms >= e.last_seen_ms + timeout_ms(e);
  }
  std::uint32_t timeout_ms(const ConnEntry& e) const {
    return e.proto == net::ipv4::kProtoTcp ? tcp_timeout_ms_[static_cast<std::size_t>(e.state) % kTcpStateCount]
                                : config_.timeouts.udp_ms;
  }
  void set_timeouts(const ConntrackTimeouts& t);

  // Every entry in use, in pool order (bulk sync, telemetry snapshots, tests).
  template <typename Fn>
  void for_each(Fn&& fn) const {
    for (const ConnEntry& e : pool_)
      if (e.flags & kConnInUse) fn(e);
  }

  // The pool entry at `index` < capacity(), in use or free (test flags & kConnInUse). For scans
  // that span many calls (conn_query.hpp): entries never move, and erase() touches only the
  // erased entry, so an index stays valid and a scan may erase as it goes.
  const ConnEntry& entry_at(std::size_t index) const { return pool_[index]; }
  ConnEntry& entry_at(std::size_t index) { return pool_[index]; }

  std::size_t size() const { return size_; }
  // One past the highest entry index ever handed out: what a full expiry sweep covers.
  std::size_t extent() const { return extent_; }
  std::size_t capacity() const { return pool_.size(); }
  std::size_t index_slots() const { return index_.size(); }
  // Bytes allocated for entries and index; divide by capacity() for the cost of a connection.
  std::size_t memory_bytes() const {
    return pool_.size() * sizeof(ConnEntry) + index_.size() * sizeof(Slot);
  }
  const ConnStats& stats() const { return stats_; }
  const ConnTableConfig& config() const { return config_; }

  // Walks the whole table and checks that the index and the pool agree (every slot points to
  // an entry in use through a key that hashes to it and is reachable from its home slot; every
  // entry in use is found by its keys; the free list holds exactly the other entries). O(size
  // of the table): for tests and debugging. Returns false and says why on the first violation.
  bool check_invariants(std::string* why = nullptr) const;

 private:
  static constexpr std::uint32_t kEmpty = ~std::uint32_t{0};  // Slot::ref of a free slot
  static constexpr std::uint32_t kNil = ~std::uint32_t{0};    // end of the free list
  static constexpr std::size_t kNpos = ~std::size_t{0};

  struct Slot {
    std::uint32_t tag = 0;     // high 32 bits of the key's hash; the home slot is its top bits
    std::uint32_t ref = kEmpty;  // entry index * 2 + FlowDir
  };

  static std::uint32_t tag_of(std::uint64_t hash) { return static_cast<std::uint32_t>(hash >> 32); }
  std::size_t home(std::uint32_t tag) const { return tag >> shift_; }
  bool matches(const ConnEntry& e, FlowDir d, const FlowKey& key) const;
  std::size_t find_slot(const FlowKey& key, std::uint64_t hash) const;
  void place(std::uint64_t hash, std::uint32_t ref);
  void unplace(std::uint64_t hash, std::uint32_t ref);
  void release(std::uint32_t index);
  std::uint32_t index_of(const ConnEntry* e) const {
    return static_cast<std::uint32_t>(e - pool_.data());
  }

  ConnTableConfig config_;
  std::uint64_t seed_ = 0;
  std::uint32_t tcp_timeout_ms_[kTcpStateCount] = {};
  std::pmr::vector<ConnEntry> pool_;
  std::pmr::vector<Slot> index_;
  unsigned shift_ = 0;  // 32 - log2(index size)
  std::size_t mask_ = 0;
  std::size_t size_ = 0;
  std::uint32_t free_head_ = kNil;
  std::size_t sweep_ = 0;   // next pool entry expire() examines
  std::size_t extent_ = 0;  // entries [0, extent_) have been used
  ConnStats stats_;
  WorkerServiceStats* traffic_ = nullptr;
};

template <typename Fn>
std::size_t ConnTable::expire(std::uint64_t now_ms, std::size_t max_examine, Fn&& on_expire) {
  const std::size_t cap = extent_;
  if (max_examine > cap) max_examine = cap;
  std::size_t n = 0;
  for (std::size_t k = 0; k < max_examine; ++k) {
    const std::size_t i = sweep_;
    sweep_ = i + 1 == cap ? 0 : i + 1;
    const ConnEntry& e = pool_[i];
    if ((e.flags & kConnInUse) && is_expired(e, now_ms)) {
      on_expire(e);
      release(static_cast<std::uint32_t>(i));
      ++n;
    }
  }
  stats_.expired += n;
  return n;
}

}  // namespace tandem::conntrack
