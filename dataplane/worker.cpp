#include "dataplane/worker.hpp"

#include <array>
#include <string>

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_pause.h>
#include <rte_prefetch.h>
#include <rte_ring.h>

#include "dataplane/net/arp.hpp"

namespace tandem::dpdk {
namespace {

constexpr std::uint32_t kMaxBurst = 512;
constexpr std::uint64_t kPeriodicMs = 10;         // neighbour aging and probes
constexpr std::uint64_t kSnapshotMs = 200;        // neighbour view for telemetry
constexpr std::size_t kMaxProbesPerTick = 32;
constexpr unsigned kInboxSize = 1024;

std::uint64_t now_ms() {
  static const std::uint64_t ticks_per_ms = rte_get_tsc_hz() / 1000;
  return rte_rdtsc() / ticks_per_ms;
}

}  // namespace

Worker::Worker(unsigned index, const WorkerSettings& settings, const std::vector<WorkerPort>& ports,
               const neigh::NeighbourConfig& neighbour_config, rte_mempool* pool,
               LocalTables& locals, const std::atomic<bool>& stop)
    : index_(index), settings_(settings), ports_(ports), pool_(pool), locals_(locals), stop_(stop) {
  if (settings_.burst_size > kMaxBurst) settings_.burst_size = kMaxBurst;
  neighbours_.reserve(ports_.size());
  for (std::size_t i = 0; i < ports_.size(); ++i) neighbours_.emplace_back(neighbour_config);
  // Sized once so that publishing a snapshot on the worker never allocates.
  snapshot_.rows.reserve(ports_.size() * std::size_t{neighbour_config.capacity});
}

Worker::~Worker() {
  if (inbox_) rte_ring_free(inbox_);
}

void Worker::set_peers(std::vector<Worker*> peers) {
  peers_.clear();
  for (Worker* p : peers)
    if (p != this) peers_.push_back(p);
  if (!peers_.empty() && !inbox_) {
    const std::string name = "neigh_inbox_" + std::to_string(index_);
    // Many producers (the other workers), one consumer (this one).
    inbox_ = rte_ring_create_elem(name.c_str(), sizeof(NeighbourUpdate), kInboxSize,
                                  static_cast<int>(rte_socket_id()), RING_F_SC_DEQ);
  }
}

int Worker::lcore_main(void* self) {
  static_cast<Worker*>(self)->run();
  return 0;
}

void Worker::run() {
  std::uint64_t next_periodic = 0;
  std::uint32_t idle_polls = 0;
  locals_.worker_online(index_);
  while (!stop_.load(std::memory_order_relaxed)) {
    // Top of the loop: no table pointer from the previous iteration is held any more.
    locals_.worker_quiescent(index_);
    const std::uint64_t now = now_ms();
    std::uint32_t received = 0;
    for (std::size_t p = 0; p < ports_.size(); ++p) poll_port(p, now, received);
    if (now >= next_periodic) {
      periodic(now);
      next_periodic = now + kPeriodicMs;
    }

    counters_.polls.add();
    if (received != 0) {
      counters_.busy_polls.add();
      idle_polls = 0;
    } else if (settings_.idle_backoff) {
      // Spin a little (traffic often comes in bursts), then give the core away.
      if (++idle_polls < settings_.idle_polls_before_sleep) {
        rte_pause();
      } else {
        counters_.idle_sleeps.add();
        rte_delay_us_sleep(settings_.idle_sleep_us);
      }
    }
  }
  locals_.worker_offline(index_);
}

void Worker::poll_port(std::size_t port_index, std::uint64_t now, std::uint32_t& received) {
  WorkerPort& port = ports_[port_index];
  PortCounters& pc = counters_.ports[port_index];
  std::array<rte_mbuf*, kMaxBurst> rx;
  std::array<rte_mbuf*, kMaxBurst> tx;
  std::array<rte_mbuf*, kMaxBurst> done;  // freed together at the end of the burst
  const LocalInterface& local = locals_.get(port_index);
  const std::uint16_t n = rte_eth_rx_burst(port.port_id, static_cast<std::uint16_t>(index_), rx.data(),
                                           static_cast<std::uint16_t>(settings_.burst_size));
  if (n == 0) return;
  received += n;

  std::uint16_t n_tx = 0, n_done = 0;
  LearntNeighbour learnt;
  std::uint64_t rx_bytes = 0, tx_bytes = 0;
  for (std::uint16_t i = 0; i < n; ++i) {
    if (i + 1 < n) rte_prefetch0(rte_pktmbuf_mtod(rx[i + 1], void*));
    rte_mbuf* m = rx[i];
    rx_bytes += m->pkt_len;
    if (m->nb_segs != 1) {  // headers and ICMP payload are read from one segment
      counters_.drop(DropReason::kMultiSegment);
      done[n_done++] = m;
      continue;
    }
    const LocalResult r = handle_local_frame(rte_pktmbuf_mtod(m, std::uint8_t*), m->data_len,
                                             local, neighbours_[port_index], now, learnt);
    if (r.learnt) share_learnt(port_index, learnt);
    switch (r.action) {
      case LocalResult::Action::kTransmit:
        counters_.count(r.event);
        tx_bytes += m->pkt_len;
        tx[n_tx++] = m;
        break;
      case LocalResult::Action::kConsume:
        counters_.count(r.event);
        done[n_done++] = m;
        break;
      case LocalResult::Action::kDrop:
        counters_.drop(r.reason);
        done[n_done++] = m;
        break;
    }
  }
  if (n_done != 0) rte_pktmbuf_free_bulk(done.data(), n_done);
  pc.rx_packets.add(n);
  pc.rx_bytes.add(rx_bytes);
  if (n_tx == 0) return;

  const std::uint16_t sent = rte_eth_tx_burst(port.port_id, static_cast<std::uint16_t>(index_), tx.data(), n_tx);
  for (std::uint16_t i = sent; i < n_tx; ++i) tx_bytes -= tx[i]->pkt_len;
  if (sent != n_tx) rte_pktmbuf_free_bulk(&tx[sent], n_tx - sent);
  pc.tx_packets.add(sent);
  pc.tx_bytes.add(tx_bytes);
  if (sent != n_tx) {
    pc.tx_dropped.add(n_tx - sent);
    counters_.drop(DropReason::kTxFull, n_tx - sent);
  }
}

void Worker::periodic(std::uint64_t now) {
  apply_peer_updates(now);
  std::array<net::Ipv4Addr, kMaxProbesPerTick> probes;
  for (std::size_t p = 0; p < ports_.size(); ++p) {
    // One worker keeps the gateway resolved; the others learn it through their inbox.
    if (index_ == 0 && ports_[p].gateway) neighbours_[p].resolve(*ports_[p].gateway, now, nullptr);
    const std::size_t n = neighbours_[p].maintain(now, probes);
    for (std::size_t i = 0; i < n; ++i) send_arp_request(p, probes[i]);
  }
  if (now >= next_snapshot_ms_) {
    publish_snapshot(now);
    next_snapshot_ms_ = now + kSnapshotMs;
  }
}

void Worker::send_arp_request(std::size_t port_index, net::Ipv4Addr target) {
  const WorkerPort& port = ports_[port_index];
  const LocalInterface& local = locals_.get(port_index);
  rte_mbuf* m = rte_pktmbuf_alloc(pool_);
  if (!m) {
    counters_.drop(DropReason::kNoMbuf);
    return;
  }
  // Ask from the address whose subnet holds the target, as the kernel picks its source.
  net::Ipv4Addr source = local.prefixes[0].addr;
  for (std::uint8_t i = 0; i < local.count; ++i)
    if (local.prefixes[i].contains(target)) source = local.prefixes[i].addr;
  const std::size_t len = net::build_arp_request(rte_pktmbuf_mtod(m, std::uint8_t*),
                                                 rte_pktmbuf_tailroom(m), local.mac, source, target);
  m->data_len = static_cast<std::uint16_t>(len);
  m->pkt_len = static_cast<std::uint32_t>(len);
  PortCounters& pc = counters_.ports[port_index];
  if (rte_eth_tx_burst(port.port_id, static_cast<std::uint16_t>(index_), &m, 1) == 1) {
    counters_.count(Handled::kArpRequestsSent);
    pc.tx_packets.add();
    pc.tx_bytes.add(len);
  } else {
    rte_pktmbuf_free(m);
    pc.tx_dropped.add();
    counters_.drop(DropReason::kTxFull);
  }
}

void Worker::share_learnt(std::size_t port_index, const LearntNeighbour& learnt) {
  NeighbourUpdate update{static_cast<std::uint8_t>(port_index), learnt.ip, learnt.mac};
  // A full inbox loses the update, not the packet: the peer learns it from the next ARP.
  for (Worker* peer : peers_) rte_ring_mp_enqueue_elem(peer->inbox_, &update, sizeof update);
}

void Worker::apply_peer_updates(std::uint64_t now) {
  if (!inbox_) return;
  NeighbourUpdate u;
  while (rte_ring_sc_dequeue_elem(inbox_, &u, sizeof(NeighbourUpdate)) == 0) {
    if (u.port_index < neighbours_.size()) neighbours_[u.port_index].learn(u.ip, u.mac, now, true);
  }
}

void Worker::publish_snapshot(std::uint64_t now) {
  std::unique_lock lock(snapshot_.mutex, std::try_to_lock);
  if (!lock.owns_lock()) return;  // a reader holds it: publish next time, never wait
  snapshot_.rows.clear();
  snapshot_.stats = {};
  for (std::size_t p = 0; p < neighbours_.size(); ++p) {
    snapshot_.stats += neighbours_[p].stats();
    neighbours_[p].for_each([&](const neigh::NeighEntry& e) {
      snapshot_.rows.push_back({static_cast<std::uint8_t>(p), e});
    });
  }
  snapshot_.taken_ms = now;
}

}  // namespace tandem::dpdk
