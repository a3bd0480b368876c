// What the state-sync thread (controlplane/sync_service.*) shares with the workers
// (docs/sync-protocol.md#transport):
//   - out: per worker, a single-producer single-consumer ring of ConnDelta (conn_delta.hpp): the
//     connections the worker created, changed or ended, and the entries it streams for a bulk
//     resync, in the order they happened. A full ring drops the change, counted (ring_dropped):
//     a worker never waits for the sync link;
//   - in: per worker, a ring of the peer's records (sync::ConnRecord; a delete is a ConnRecord of
//     type kDelete with only the original key set) for the worker that owns the flow to apply;
//   - a bulk resync request: a generation the sync thread raises; each worker then walks its
//     table a slice per loop, streaming every entry, and ends with a kResyncDone marker.
// Nothing here blocks either side.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "controlplane/sync/apply.hpp"
#include "dataplane/conntrack/conn_delta.hpp"
#include "dataplane/counters.hpp"

struct rte_ring;

namespace tandem::dpdk {

// What one worker counts about state sync (one writer, relaxed readers).
struct alignas(64) WorkerSyncCounters {
  Counter deltas;           // changes handed to the sync thread
  Counter ring_dropped;     // changes lost: the ring to the sync thread was full
  Counter resync_entries;   // entries streamed for bulk resyncs
  Counter records_in;       // peer records taken from the inbound ring
  std::array<Counter, sync::kApplyResultCount> applied;  // by sync::ApplyResult
  Counter split;            // applied records whose directions this unit's workers split
  // Sync mode: new connections' first packets held until the peer acked their create.
  Counter held;             // packets held
  Counter released_acked;   // ... sent once the peer acked
  Counter released_timeout; // ... sent after hold_timeout_ms without the ack
  Counter released_unheld;  // ... sent at once: the hold queue was full, or the change was dropped
  Counter hold_us;          // total time held, microseconds (the average: hold_us / released)
};

class SyncLink {
 public:
  // `workers` rings each way, each of `ring_size` elements (a power of two). Throws
  // std::runtime_error when a ring cannot be created.
  SyncLink(unsigned workers, unsigned ring_size, std::uint64_t refresh_ms, bool sync_mode = false,
           std::uint32_t hold_timeout_ms = 10);
  ~SyncLink();
  SyncLink(const SyncLink&) = delete;
  SyncLink& operator=(const SyncLink&) = delete;

  unsigned workers() const { return static_cast<unsigned>(lanes_.size()); }
  std::uint64_t refresh_ms() const { return refresh_ms_; }
  std::uint32_t hold_timeout_ms() const { return hold_timeout_ms_; }
  // Sync mode and the peer acks: workers hold a new connection's first packet. The sync thread
  // clears it while the peer does not ack (dead, or the link is cut), so that new connections
  // are not delayed by the timeout each.
  bool holding() const { return holding_.load(std::memory_order_relaxed); }
  void set_holding(bool on) { holding_.store(on && sync_mode_, std::memory_order_relaxed); }
  bool sync_mode() const { return sync_mode_; }
  // How many of worker `w`'s changes (counted from 1, in ring order) the peer has acked.
  std::uint64_t acked_changes(unsigned w) const { return lanes_[w].acked->load(std::memory_order_acquire); }
  void set_acked_changes(unsigned w, std::uint64_t n) { lanes_[w].acked->store(n, std::memory_order_release); }

  // --- worker `w` ---
  // Hands `n` changes to the sync thread; what does not fit is dropped and counted. Returns how
  // many were taken (the first ones).
  unsigned emit(unsigned w, const conntrack::ConnDelta* d, unsigned n);
  // Room in the ring: a resync slice takes no more than this, so it never drops.
  unsigned room(unsigned w) const;
  unsigned take_records(unsigned w, sync::ConnRecord* out, unsigned max);
  std::uint32_t resync_generation() const { return resync_generation_.load(std::memory_order_acquire); }
  WorkerSyncCounters& counters(unsigned w) { return *lanes_[w].counters; }

  // --- the sync thread ---
  unsigned take_deltas(unsigned w, conntrack::ConnDelta* out, unsigned max);
  // False when the worker's ring is full (the caller retries later).
  bool deliver(unsigned w, const sync::ConnRecord& r);
  // Asks every worker to stream its whole table; returns the new generation.
  std::uint32_t request_resync() { return resync_generation_.fetch_add(1, std::memory_order_acq_rel) + 1; }
  const WorkerSyncCounters& counters(unsigned w) const { return *lanes_[w].counters; }

 private:
  struct Lane {
    rte_ring* out = nullptr;
    rte_ring* in = nullptr;
    std::unique_ptr<WorkerSyncCounters> counters;
    std::unique_ptr<std::atomic<std::uint64_t>> acked;  // its own line: written by the sync thread
  };
  std::vector<Lane> lanes_;
  std::uint64_t refresh_ms_;
  bool sync_mode_;
  std::uint32_t hold_timeout_ms_;
  std::atomic<bool> holding_{false};
  std::atomic<std::uint32_t> resync_generation_{0};
};

}  // namespace tandem::dpdk
