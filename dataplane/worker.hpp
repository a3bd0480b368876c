// The fast-path loop of one worker lcore: burst RX -> classify/handle -> burst TX, plus the
// worker's periodic duties (neighbour aging and ARP probes) and its idle back-off.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "dataplane/conntrack/conn_query.hpp"
#include "dataplane/conntrack/conn_table.hpp"
#include "dataplane/counters.hpp"
#include "dataplane/ha_link.hpp"
#include "dataplane/lb/forwarder.hpp"
#include "dataplane/lb/rewrite.hpp"
#include "dataplane/lb/service_table.hpp"
#include "dataplane/local_stack.hpp"
#include "dataplane/local_tables.hpp"
#include "dataplane/neigh/neighbour_table.hpp"
#include "dataplane/sync_link.hpp"

struct rte_mempool;
struct rte_mbuf;
struct rte_ring;

namespace tandem::dpdk {

// The workers' clock (milliseconds, TSC-based): connection times are in it, so whoever turns
// them into ages (the state-sync thread) reads this one.
std::uint64_t monotonic_ms();

struct WorkerSettings {
  std::uint32_t burst_size = 32;
  bool idle_backoff = false;
  std::uint32_t idle_polls_before_sleep = 256;
  std::uint32_t idle_sleep_us = 100;
};

// A data port as the workers see it. Its addresses live in LocalTables, which can change.
struct WorkerPort {
  std::uint16_t port_id = 0;
  std::uint16_t mtu = 0;  // 0: read from the started port
  std::optional<net::Ipv4Addr> gateway;  // resolved and kept fresh by worker 0
};

// A neighbour learnt by one worker, passed to the others so every worker's cache agrees.
struct NeighbourUpdate {
  std::uint8_t port_index;
  net::Ipv4Addr ip;
  net::MacAddr mac;
};

// A copy of a worker's neighbour caches for readers off the fast path, refreshed by the worker
// every few hundred milliseconds. The worker only ever try_locks it, so it never waits.
struct NeighbourSnapshot {
  struct Row {
    std::uint8_t port_index;
    neigh::NeighEntry entry;
  };
  std::mutex mutex;
  std::vector<Row> rows;
  neigh::NeighStats stats;  // summed over the worker's ports
  conntrack::ConnStats conn_stats;
  std::uint64_t connections = 0;
  std::uint64_t taken_ms = 0;
};

// What every worker shares with the control thread.
struct WorkerShared {
  rte_mempool* pool = nullptr;
  const LocalTables* locals = nullptr;                    // per-port addresses (RCU)
  const RcuPointer<lb::ServiceTable>* services = nullptr;  // the services (RCU)
  QsbrDomain* rcu = nullptr;
  const std::atomic<bool>* stop = nullptr;
  unsigned workers = 1;
  HaLink* ha = nullptr;  // null without [ha]: every group is owned, nothing is advertised
  SyncLink* sync = nullptr;  // null without state sync: nothing replicated, nothing applied
};

class Worker {
 public:
  Worker(unsigned index, const WorkerSettings& settings, const std::vector<WorkerPort>& ports,
         const neigh::NeighbourConfig& neighbour_config, const conntrack::ConnTableConfig& conn_config,
         const WorkerShared& shared);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Wires the rings between workers (neighbour updates, frames handed to a flow's owner).
  // `all` is every worker, indexed by worker index. Call before run().
  void set_peers(const std::vector<Worker*>& all);

  // The lcore entry point (rte_eal_remote_launch); returns once `stop` is set.
  static int lcore_main(void* self);
  void run();

  const WorkerCounters& counters() const { return counters_; }
  // Per service and backend traffic by stats id; read relaxed from any thread.
  const WorkerServiceStats& service_stats() const { return traffic_; }
  NeighbourSnapshot& neighbour_snapshot() { return snapshot_; }
  unsigned index() const { return index_; }
  // Fixed at construction, so safe to read from any thread.
  std::size_t conn_capacity() const { return conns_.capacity(); }
  std::size_t conn_memory_bytes() const { return conns_.memory_bytes(); }

  // Connection queries (conn_query.hpp), from the control thread. The worker runs a posted
  // query a slice per loop iteration (at least once a millisecond, idle or not) and sets
  // q->done (release) when it is complete. False when a query is already pending here.
  bool post_conn_query(conntrack::ConnQuery* q);
  // Withdraws `q` if it is pending and no slice of it is running right now: true means the
  // worker will never touch `q` again (its results are partial; a flush may have erased some).
  // False when `q` is not pending (done, or never posted) or a slice is running: check done,
  // then retry. A stopped worker's query can always be withdrawn; a requester that can neither
  // see done nor withdraw (a worker hung mid-slice) must leak `q`, never free it.
  bool cancel_conn_query(conntrack::ConnQuery* q);

 private:
  void poll_port(std::size_t port_index, std::uint64_t now_ms, std::uint32_t& received);
  // Frames other workers received for flows this worker owns (lb/flow_owner.hpp).
  void poll_handoff(std::uint64_t now_ms, std::uint32_t& received);
  // A frame of the burst as the first pass parsed it (process_burst).
  struct Staged {
    net::ParsedPacket pkt;
    net::ParseError err = net::ParseError::kNone;
    bool tracked = false;  // TCP/UDP: its connection lookup was prefetched
    std::uint64_t conn_hash = 0;
  };
  // A burst received on `port_index` (nullopt: each frame's own port, for frames handed over).
  void process_burst(rte_mbuf** pkts, unsigned n, std::optional<std::size_t> port_index, std::uint64_t now_ms,
                     bool may_hand_off);
  // One received frame: load balancing (when there are services: `staged` is then its parse),
  // else the local stack. A frame of a flow another worker owns is handed to it, unless it was
  // handed over already (`may_hand_off` false).
  void handle_frame(std::size_t port_index, rte_mbuf* m, Staged* staged, lb::LbContext& lb, std::uint64_t now_ms,
                    bool may_hand_off);
  void hand_off(unsigned owner, rte_mbuf* m);
  void flush_handoff();
  // Frees the frames handle_frame() consumed or dropped in this burst.
  void free_done();
  std::size_t port_index_of(std::uint16_t port_id) const;
  // Queues a frame for `port`'s TX queue; flush_tx() sends every queue.
  void enqueue_tx(std::size_t port, rte_mbuf* m);
  void flush_tx();
  // The load balancer's view of the ports and tables for this burst.
  lb::LbContext lb_context(std::uint64_t now_ms);
  void periodic(std::uint64_t now_ms);
  void send_arp_request(std::size_t port_index, net::Ipv4Addr target);
  // Sends a frame the worker built itself (`len` bytes already in `m`) out of `port_index` at
  // once, counting `event` on success.
  void transmit_generated(std::size_t port_index, rte_mbuf* m, std::size_t len, Handled event);
  // Worker 0's HA duties, every loop: send the newest data-path advert once, start a new
  // gratuitous ARP announcement, and send its further bursts when due.
  void ha_duties(std::uint64_t now_ms);
  void send_advert(std::uint64_t now_ms);
  void send_announcement_burst();
  // A punted HA advert (local stack): its UDP payload goes to the control thread.
  void punt_to_control(std::size_t port_index, const rte_mbuf* m);
  void share_learnt(std::size_t port_index, const LearntNeighbour& learnt);
  void apply_peer_updates(std::uint64_t now_ms);
  void publish_snapshot(std::uint64_t now_ms);
  // One slice of `q`, the pending connection query as last loaded; true when it ran.
  bool run_conn_query(conntrack::ConnQuery* q);
  // The idle back-off's sleep, cut short when a connection query is posted.
  void idle_sleep();
  // State sync, every loop: apply the peer's records, stream a slice of a bulk resync, hand
  // the changes logged since to the sync thread. True when there was work.
  bool sync_duties(std::uint64_t now_ms);
  void flush_sync();
  bool apply_peer_records(std::uint64_t now_ms);
  bool resync_slice(std::uint64_t now_ms);
  // Re-sends busy connections not sent for refresh_ms, a slice per periodic tick (the peer's
  // copy would otherwise expire while the connection lives on here).
  void refresh_slice(std::uint64_t now_ms, std::size_t examine);
  // Sync mode: holds `m` (a new connection's first packet, whose create is the last change in
  // sync_log_) until the peer acked it; false when it cannot (queue full).
  bool hold(std::size_t port, rte_mbuf* m, std::uint64_t now_ms);
  // Sends the held packets whose create the peer acked, or whose time is up (`all`: every one).
  void release_held(std::uint64_t now_ms, bool all);

  unsigned index_;
  WorkerSettings settings_;
  std::vector<WorkerPort> ports_;
  std::vector<neigh::NeighbourTable> neighbours_;  // one per port: each port is its own L2 domain
  WorkerShared shared_;
  conntrack::ConnTable conns_;
  std::array<lb::LbPort, kMaxPorts> lb_ports_{};
  struct TxQueue {
    std::array<rte_mbuf*, 512> pkts;
    std::uint16_t n = 0;
    std::uint64_t bytes = 0;
  };
  std::array<TxQueue, kMaxPorts> txq_{};
  rte_ring* inbox_ = nullptr;  // neighbour updates from the other workers
  std::vector<Worker*> peers_;
  // Frames handed over: the ring others fill for this worker, and per owner what this burst
  // hands off (flushed once per burst, so a ring operation carries many frames).
  rte_ring* handoff_in_ = nullptr;
  struct Handoff {
    Worker* owner = nullptr;
    std::uint16_t n = 0;
    std::array<rte_mbuf*, 512> pkts;
  };
  std::vector<Handoff> handoff_out_;  // indexed by worker index
  std::array<rte_mbuf*, 512> done_;   // frames to free at the end of the burst
  std::array<Staged, 512> staged_;
  lb::LbVerdict verdict_;  // lb_forward's, read field by field (forwarder.hpp)
  std::uint16_t n_done_ = 0;
  WorkerCounters counters_;
  WorkerServiceStats traffic_;  // written through conns_
  NeighbourSnapshot snapshot_;
  std::uint64_t next_snapshot_ms_ = 0;
  // The posted connection query: null, the query, or kQueryRunning while the worker runs a
  // slice (so cancel_conn_query cannot pull it away mid-slice).
  std::atomic<conntrack::ConnQuery*> query_{nullptr};
  // State sync: this burst's changes, the bulk resync being streamed, the refresh scan.
  conntrack::ConnDeltaLog sync_log_;
  std::uint32_t resync_seen_ = 0;
  bool resyncing_ = false;
  std::size_t resync_cursor_ = 0;
  std::uint64_t resync_count_ = 0;
  std::size_t refresh_cursor_ = 0;
  std::uint64_t changes_taken_ = 0;  // changes the ring to the sync thread took, ever
  // Sync mode's hold queue (FIFO; the newest `unresolved_` wait for their create to be handed
  // over, and know only its position in sync_log_).
  struct Held {
    rte_mbuf* m = nullptr;
    std::uint8_t port = 0;
    std::uint64_t change = 0;  // resolved: the create's number among the changes taken; 0: dropped
    std::uint64_t since_tsc = 0;
    std::uint64_t deadline_ms = 0;
  };
  static constexpr std::size_t kHoldCapacity = 512;
  std::array<Held, kHoldCapacity> held_{};
  std::size_t held_head_ = 0, held_n_ = 0, unresolved_ = 0;
  bool holding_ = false;  // for this burst
  // HA (worker 0): the generations handled so far, and the announcement being sent.
  std::uint32_t advert_seen_ = 0;
  HaAdvertOut advert_;
  std::uint32_t announcement_seen_ = 0;
  Announcement announcing_;
  std::uint32_t bursts_left_ = 0;
  std::uint64_t next_burst_ms_ = 0;
};

}  // namespace tandem::dpdk
