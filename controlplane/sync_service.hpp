// tandemd's state-sync thread (docs/sync-protocol.md): replicates this unit's connections to
// the peer and applies the peer's, over UDP on the sync link.
//   - Out: the workers' changes (dataplane/sync_link.hpp rings) become records in the reliable
//     stream (sync/reliable.hpp): batched, acked, retransmitted; a full send window leaves them
//     waiting in the rings (backpressure, counted when a ring overflows).
//   - In: delivered records go to the worker that owns the flow, which applies them
//     (sync/apply.hpp).
//   - Bulk resync: a unit asks its peer for the whole table when it starts, and again after a
//     gap (the peer gave up on messages); the peer's workers stream their tables into the same
//     ordered stream as the live changes, so nothing is missed and nothing applied twice. Until
//     a resync has completed the unit is not ready: the HA election never lets it preempt.
//   - Config (sync_service_config.cpp): each unit announces its services' version; the newer
//     one is pushed to the peer, which applies it; concurrent changes are a conflict, reported,
//     never merged.
// Lag (RPO): changes handed over by the workers and not yet acked by the peer, as a count and as
// the age of the oldest.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "controlplane/sync/config_version.hpp"
#include "controlplane/sync/reliable.hpp"
#include "dataplane/conntrack/conn_delta.hpp"

namespace tandem {

struct Runtime;

class SyncService {
 public:
  // Reads the key, binds the socket; nullptr and `error` when it cannot. rt.sync_link must exist.
  static std::unique_ptr<SyncService> open(Runtime& rt, std::string& error);
  ~SyncService();  // joins the thread (it ends with rt.stop)
  SyncService(const SyncService&) = delete;
  SyncService& operator=(const SyncService&) = delete;

  void start();
  // This unit holds the peer's table (a bulk resync completed and no gap since).
  bool ready() const { return ready_.load(std::memory_order_relaxed); }
  // From any thread (ctl, metrics): `tandemctl sync status`, also the source of the metrics.
  nlohmann::json status() const;
  // `tandemctl sync config-push`: this unit's services win, they are pushed to the peer at the
  // next loop. False (and why) when sync does not push or the peer's version is not known.
  bool request_config_push(std::string& why);

 private:
  explicit SyncService(Runtime& rt);
  void run();
  void receive(std::uint64_t now);
  void handle(const sync::Message& m, std::uint64_t now);
  bool route(const sync::ConnRecord& r);
  void drain_inbound();
  void drain_workers(std::uint64_t now);
  // False when the send window is full: the delta stays for the next round.
  bool send_delta(unsigned worker, const conntrack::ConnDelta& d, std::uint64_t now);
  bool send_one(unsigned worker, const conntrack::ConnDelta& d, std::uint64_t now);
  void request_resync(std::uint64_t now);
  void maintain(std::uint64_t now);
  void transmit(std::uint64_t now);
  void note_lag(std::uint64_t emitted_ms);
  void publish_acked(const std::vector<std::uint64_t>& changes);
  void update_lag(std::uint64_t now);
  // Config sync (sync_service_config.cpp).
  void sync_config(std::uint64_t now);
  void report_relation();
  void push_config(std::uint64_t now);
  void receive_push(const sync::Message& m);
  void apply_push();
  nlohmann::json config_status() const;

  Runtime& rt_;
  int fd_ = -1;
  std::unique_ptr<sync::Endpoint> endpoint_;
  std::atomic<bool> ready_{false};
  mutable std::mutex mutex_;  // what status() reads below
  std::vector<std::span<const std::uint8_t>> datagrams_;

  // Deltas taken from a worker's ring that the window did not take yet (in order).
  std::vector<std::deque<conntrack::ConnDelta>> waiting_;
  // Peer records whose owner's ring was full.
  std::vector<std::deque<sync::ConnRecord>> inbound_;
  std::size_t inbound_waiting_ = 0;
  std::uint64_t inbound_dropped_ = 0;

  // Resync we asked for.
  enum class ResyncState : std::uint8_t { kIdle, kRequested, kDone };
  ResyncState resync_state_ = ResyncState::kIdle;
  bool need_resync_ = true;
  std::uint32_t resync_id_ = 0;
  std::uint64_t resync_progress_ms_ = 0;  // last request or chunk
  std::uint64_t resync_requests_ = 0, resync_received_ = 0, resync_completed_ = 0;
  std::uint64_t last_resync_entries_ = 0, last_resync_ms_ = 0, resync_started_ms_ = 0;
  std::uint64_t skipped_seen_ = 0;
  // Resync we serve.
  std::optional<std::uint32_t> serving_id_;
  std::uint32_t serving_generation_ = 0;
  std::vector<bool> worker_done_;
  std::uint64_t serving_entries_ = 0;
  std::uint64_t served_ = 0, served_entries_ = 0;
  bool end_pending_ = false;

  // Lag: per sequence of the stream, the oldest change it carries, and records so far.
  struct Checkpoint {
    std::uint64_t sequence;
    std::uint64_t emitted_ms;
    std::uint64_t records;  // cumulative, through this sequence
    std::vector<std::uint64_t> changes;  // per worker: its changes handled through this sequence
  };
  std::vector<std::uint64_t> changes_handled_;  // per worker, in ring order (sync mode's acks)
  std::deque<Checkpoint> checkpoints_;
  std::uint64_t records_added_ = 0, acked_records_ = 0;
  std::uint64_t lag_entries_ = 0, lag_ms_ = 0, lag_max_ms_ = 0;

  // Config sync: versions, what was announced and pushed, a push being received and applied.
  sync::ConfigVersions config_;
  std::uint64_t digested_tables_ = ~std::uint64_t{0};  // rt.service_tables_published when digested
  std::string config_text_;                            // the running services as pushed
  bool config_announced_ = false;
  std::atomic<bool> push_requested_{false};
  struct Pushed {
    sync::ConfigVersion mine, peer;
  };
  std::optional<Pushed> pushed_;  // the last push: not repeated for the same two versions
  std::uint32_t push_id_ = 0;
  std::size_t send_window_ = 0;
  sync::ConfigAssembler assembler_;
  struct PendingPush {
    sync::ConfigRecord head;
    std::string text;
  };
  std::optional<PendingPush> pending_push_;  // complete, applied after the loop's lock
  std::optional<sync::ConfigRelation> logged_relation_;
  std::uint64_t pushes_sent_ = 0, pushes_received_ = 0, pushes_applied_ = 0, pushes_refused_ = 0,
                push_errors_ = 0;
  std::string last_push_error_;

  // Peer and alarm.
  std::uint64_t last_heard_ms_ = 0;
  bool heard_ = false;
  std::uint8_t peer_unit_id_ = 0;
  std::uint64_t auth_failures_ = 0, last_auth_failure_ms_ = 0;
  bool alarm_ = false;
  std::uint64_t send_errors_ = 0;
  std::thread thread_;
};

}  // namespace tandem
