// What the fast path tells the state-sync thread about its connections (docs/sync-protocol.md):
// a change of one entry, copied by value at the moment it happened, so the entry may change or
// go away afterwards. Workers collect a burst's changes in a ConnDeltaLog (no allocation, no
// I/O) and hand them to the sync thread through a ring after the burst (dataplane/sync_link.*).
// Times are the worker's clock; the sync thread turns them into the ages the wire carries.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "dataplane/conntrack/conn_table.hpp"

namespace tandem::conntrack {

enum class DeltaKind : std::uint8_t {
  kCreate = 1,      // a new connection
  kUpdate = 2,      // its TCP state changed, or a periodic refresh of a busy connection
  kDelete = 3,      // it ended (closed and expired, reopened, flushed)
  kResync = 4,      // an existing connection, streamed for a bulk resync
  kResyncDone = 5,  // marker: this worker streamed its whole table; `aux` = entries streamed
};

// 64 bytes: one cache line per change.
struct alignas(64) ConnDelta {
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
  std::uint8_t flags = 0;  // the entry's (kConnMidFlow matters)
  DeltaKind kind = DeltaKind::kCreate;
  std::uint8_t reserved[3] = {};
  std::uint64_t created_ms = 0;
  std::uint64_t last_seen_ms = 0;
  std::uint64_t emitted_ms = 0;  // when the worker saw the change: the replication lag starts here
  std::uint64_t aux = 0;  // kResync: the resync generation; kResyncDone: generation << 32 | entries
};
static_assert(sizeof(ConnDelta) == 64);

inline ConnDelta make_delta(DeltaKind kind, const ConnEntry& e, std::uint64_t now_ms) {
  ConnDelta d;
  d.client_addr = e.client_addr;
  d.vip_addr = e.vip_addr;
  d.client_port = e.client_port;
  d.vip_port = e.vip_port;
  d.backend_addr = e.backend_addr;
  d.local_addr = e.local_addr;
  d.backend_port = e.backend_port;
  d.local_port = e.local_port;
  d.proto = e.proto;
  d.mode = e.mode;
  d.state = e.state;
  d.flags = e.flags;
  d.kind = kind;
  d.created_ms = e.created_ms;
  d.last_seen_ms = e.last_seen_ms;
  d.emitted_ms = now_ms;
  return d;
}

// A burst's changes, in the order they happened. Sized for the worst burst: every packet may
// reopen a connection (a delete and a create).
class ConnDeltaLog {
 public:
  static constexpr std::size_t kCapacity = 1024;

  // Records a change of `e` and marks it sent (ConnEntry::synced_ms).
  void emit(DeltaKind kind, ConnEntry& e, std::uint64_t now_ms) {
    e.synced_ms = now_ms;
    if (n_ == kCapacity) {
      ++overflow_;
      return;
    }
    items_[n_++] = make_delta(kind, e, now_ms);
  }
  void push(const ConnDelta& d) {
    if (n_ == kCapacity) {
      ++overflow_;
      return;
    }
    items_[n_++] = d;
  }
  const ConnDelta* data() const { return items_.data(); }
  std::size_t size() const { return n_; }
  bool empty() const { return n_ == 0; }
  void clear() { n_ = 0; }
  // Changes lost because the log was full (not reachable with bursts <= 512 packets).
  std::uint64_t overflow() const { return overflow_; }

 private:
  std::array<ConnDelta, kCapacity> items_;
  std::size_t n_ = 0;
  std::uint64_t overflow_ = 0;
};

}  // namespace tandem::conntrack
