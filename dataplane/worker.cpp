#include "dataplane/worker.hpp"

#include <algorithm>
#include <cstring>
#include <array>
#include <stdexcept>
#include <string>

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_pause.h>
#include <rte_prefetch.h>
#include <rte_ring.h>

#include "dataplane/huge_page_memory.hpp"
#include "dataplane/lb/flow_owner.hpp"
#include "dataplane/net/arp.hpp"
#include "dataplane/net/udp.hpp"

namespace tandem::dpdk {
namespace {

constexpr std::uint32_t kMaxBurst = 512;
constexpr std::uint64_t kPeriodicMs = 10;         // neighbour aging and probes
constexpr std::uint64_t kSnapshotMs = 200;        // neighbour view for telemetry
constexpr std::size_t kMaxProbesPerTick = 32;
constexpr unsigned kInboxSize = 1024;
// Frames handed to this worker by the others: a few bursts from each at line rate.
constexpr unsigned kHandoffRingSize = 4096;
// Connections examined per 10 ms tick: the used part of the table about once a second, so an
// entry outlives its timeout by at most ~1 s and expiry keeps up with the turnover.
constexpr std::size_t kSweepsPerSecond = 1;
constexpr std::size_t kMinExpirePerTick = 256;
// Connection query: pool entries examined per loop iteration (~1.5 MiB of entries, tens of
// microseconds), and the longest idle sleep before a posted query is noticed.
constexpr std::size_t kQuerySlice = 16384;
constexpr std::uint32_t kMaxSleepSliceUs = 1000;
// State sync: peer records applied per loop, and table entries streamed per loop in a bulk
// resync (a few microseconds each: the fast path keeps its latency while a resync runs).
constexpr unsigned kApplyPerLoop = 256;
constexpr std::size_t kResyncSlice = 512;

// What Worker::query_ holds while a slice runs: never a real query.
conntrack::ConnQuery g_query_running;
conntrack::ConnQuery* const kQueryRunning = &g_query_running;

}  // namespace

std::uint64_t monotonic_ms() {
  static const std::uint64_t ticks_per_ms = rte_get_tsc_hz() / 1000;
  return rte_rdtsc() / ticks_per_ms;
}

Worker::Worker(unsigned index, const WorkerSettings& settings, const std::vector<WorkerPort>& ports,
               const neigh::NeighbourConfig& neighbour_config, const conntrack::ConnTableConfig& conn_config,
               const WorkerShared& shared)
    : index_(index), settings_(settings), ports_(ports), shared_(shared), conns_(conn_config, &huge_page_memory()) {
  if (settings_.burst_size > kMaxBurst) settings_.burst_size = kMaxBurst;
  conns_.set_traffic_stats(&traffic_);
  for (WorkerPort& p : ports_) {
    std::uint16_t mtu = 1500;
    if (p.mtu == 0) p.mtu = rte_eth_dev_get_mtu(p.port_id, &mtu) == 0 ? mtu : 1500;
  }
  neighbours_.reserve(ports_.size());
  for (std::size_t i = 0; i < ports_.size(); ++i) neighbours_.emplace_back(neighbour_config);
  // Sized once so that publishing a snapshot on the worker never allocates.
  snapshot_.rows.reserve(ports_.size() * std::size_t{neighbour_config.capacity});
}

Worker::~Worker() {
  if (inbox_) rte_ring_free(inbox_);
  if (handoff_in_) rte_ring_free(handoff_in_);
}

void Worker::set_peers(const std::vector<Worker*>& all) {
  peers_.clear();
  for (Worker* p : all)
    if (p != this) peers_.push_back(p);
  if (peers_.empty()) return;
  const int socket = static_cast<int>(rte_socket_id());
  if (!inbox_) {
    const std::string name = "neigh_inbox_" + std::to_string(index_);
    // Many producers (the other workers), one consumer (this one).
    inbox_ = rte_ring_create_elem(name.c_str(), sizeof(NeighbourUpdate), kInboxSize, socket, RING_F_SC_DEQ);
  }
  if (!handoff_in_) {
    const std::string name = "handoff_" + std::to_string(index_);
    handoff_in_ = rte_ring_create(name.c_str(), kHandoffRingSize, socket, RING_F_SC_DEQ);
    if (!handoff_in_) throw std::runtime_error("cannot create ring " + name);
  }
  handoff_out_.assign(all.size(), Handoff{});
  for (std::size_t i = 0; i < all.size(); ++i) handoff_out_[i].owner = all[i];
}

int Worker::lcore_main(void* self) {
  static_cast<Worker*>(self)->run();
  return 0;
}

void Worker::run() {
  std::uint64_t next_periodic = 0;
  std::uint32_t idle_polls = 0;
  shared_.rcu->online(index_);
  while (!shared_.stop->load(std::memory_order_relaxed)) {
    // Top of the loop: no table pointer from the previous iteration is held any more.
    shared_.rcu->quiescent(index_);
    const std::uint64_t now = monotonic_ms();
    std::uint32_t received = 0;
    for (std::size_t p = 0; p < ports_.size(); ++p) poll_port(p, now, received);
    poll_handoff(now, received);
    if (shared_.ha && index_ == 0) ha_duties(now);
    if (now >= next_periodic) {
      periodic(now);
      next_periodic = now + kPeriodicMs;
    }
    // One relaxed load when no query is pending; a query slice is work, so no back-off then.
    conntrack::ConnQuery* const q = query_.load(std::memory_order_relaxed);
    const bool queried = q != nullptr && run_conn_query(q);
    const bool synced = shared_.sync && sync_duties(now);

    counters_.polls.add();
    if (received != 0) {
      counters_.busy_polls.add();
      idle_polls = 0;
    } else if (settings_.idle_backoff && !queried && !synced) {
      // Spin a little (traffic often comes in bursts), then give the core away.
      if (++idle_polls < settings_.idle_polls_before_sleep) {
        rte_pause();
      } else {
        counters_.idle_sleeps.add();
        idle_sleep();
      }
    }
  }
  if (shared_.sync) {  // stopping: what is held goes now
    flush_sync();
    release_held(monotonic_ms(), true);
  }
  shared_.rcu->offline(index_);
}

void Worker::idle_sleep() {
  // In pieces of at most 1 ms, so that a query posted meanwhile waits no longer than that.
  for (std::uint32_t left = settings_.idle_sleep_us; left != 0;) {
    const std::uint32_t us = std::min(left, kMaxSleepSliceUs);
    rte_delay_us_sleep(us);
    left -= us;
    if (left != 0 && query_.load(std::memory_order_relaxed) != nullptr) return;
  }
}

bool Worker::post_conn_query(conntrack::ConnQuery* q) {
  conntrack::ConnQuery* expected = nullptr;
  // Release: the worker, acquiring, sees the query as the requester filled it.
  return query_.compare_exchange_strong(expected, q, std::memory_order_release, std::memory_order_relaxed);
}

bool Worker::cancel_conn_query(conntrack::ConnQuery* q) {
  conntrack::ConnQuery* expected = q;
  // Fails while query_ is kQueryRunning: the worker is inside advance() with q. Acquire: what
  // the last slice wrote to q is visible before the requester reads or frees it.
  return query_.compare_exchange_strong(expected, nullptr, std::memory_order_acquire, std::memory_order_relaxed);
}

bool Worker::run_conn_query(conntrack::ConnQuery* q) {
  // Claim it for this slice; fails only when the requester withdrew it since the load.
  conntrack::ConnQuery* expected = q;
  if (!query_.compare_exchange_strong(expected, kQueryRunning, std::memory_order_acquire, std::memory_order_relaxed))
    return false;
  // With state sync a flush tells the peer; the slice then fits the delta log.
  bool complete;
  if (shared_.sync) {
    flush_sync();
    complete = conntrack::advance(conns_, *q, conntrack::ConnDeltaLog::kCapacity, &sync_log_, monotonic_ms());
    flush_sync();
  } else {
    complete = conntrack::advance(conns_, *q, kQuerySlice);
  }
  if (complete) {
    // Cleared before done is set, so a requester that sees done may post again at once.
    query_.store(nullptr, std::memory_order_relaxed);
    q->done.store(true, std::memory_order_release);
  } else {
    query_.store(q, std::memory_order_release);
  }
  return true;
}

lb::LbContext Worker::lb_context(std::uint64_t now) {
  for (std::size_t p = 0; p < ports_.size(); ++p)
    lb_ports_[p] = {.local = &shared_.locals->get(p), .neighbours = &neighbours_[p], .gateway = ports_[p].gateway,
                    .mtu = ports_[p].mtu};
  return {.services = shared_.services->get(),
          .conns = &conns_,
          .ports = std::span<lb::LbPort>(lb_ports_.data(), ports_.size()),
          .worker = static_cast<std::uint16_t>(index_),
          .workers = static_cast<std::uint16_t>(shared_.workers),
          .now_ms = now,
          .owned_groups = shared_.ha ? shared_.ha->owned_groups() : ~std::uint64_t{0},
          .released_groups = shared_.ha ? shared_.ha->released_groups(now) : 0,
          .sync = shared_.sync ? &sync_log_ : nullptr};
}

void Worker::poll_port(std::size_t port_index, std::uint64_t now, std::uint32_t& received) {
  WorkerPort& port = ports_[port_index];
  PortCounters& pc = counters_.ports[port_index];
  std::array<rte_mbuf*, kMaxBurst> rx;
  const std::uint16_t n = rte_eth_rx_burst(port.port_id, static_cast<std::uint16_t>(index_), rx.data(),
                                           static_cast<std::uint16_t>(settings_.burst_size));
  if (n == 0) return;
  received += n;
  std::uint64_t rx_bytes = 0;
  for (std::uint16_t i = 0; i < n; ++i) rx_bytes += rx[i]->pkt_len;
  pc.rx_packets.add(n);
  pc.rx_bytes.add(rx_bytes);
  process_burst(rx.data(), n, port_index, now, true);
  flush_handoff();
}

void Worker::poll_handoff(std::uint64_t now, std::uint32_t& received) {
  if (!handoff_in_) return;
  std::array<rte_mbuf*, kMaxBurst> rx;
  const unsigned n = rte_ring_sc_dequeue_burst(handoff_in_, reinterpret_cast<void**>(rx.data()),
                                               settings_.burst_size, nullptr);
  if (n == 0) return;
  received += n;
  process_burst(rx.data(), n, std::nullopt, now, false);
}

void Worker::process_burst(rte_mbuf** pkts, unsigned n, std::optional<std::size_t> port_index, std::uint64_t now,
                           bool may_hand_off) {
  lb::LbContext lb = lb_context(now);
  const bool balancing = !lb.services->services().empty();
  holding_ = shared_.sync && shared_.sync->holding();
  if (balancing) {
    // Parse the whole burst first and start fetching each flow's index line, then its entry:
    // the cache misses of the burst's lookups overlap instead of queueing one after another
    // (the staged lookup of conn_table.hpp; the lookup itself happens in lb_forward).
    for (unsigned i = 0; i < n; ++i) {
      if (i + 1 < n) rte_prefetch0(rte_pktmbuf_mtod(pkts[i + 1], void*));
      const rte_mbuf* m = pkts[i];
      Staged& st = staged_[i];
      st.tracked = false;
      if (m->nb_segs != 1) continue;  // handle_frame drops it
      const bool ip_ok = (m->ol_flags & RTE_MBUF_F_RX_IP_CKSUM_MASK) == RTE_MBUF_F_RX_IP_CKSUM_GOOD;
      st.err = net::parse_packet(rte_pktmbuf_mtod(m, const std::uint8_t*), m->data_len, st.pkt, ip_ok);
      if (st.err == net::ParseError::kNone &&
          (st.pkt.proto == net::ipv4::kProtoTcp || st.pkt.proto == net::ipv4::kProtoUdp)) {
        st.conn_hash = conns_.hash(lb::packet_key(st.pkt));
        conns_.prefetch(st.conn_hash);
        st.tracked = true;
      }
    }
    for (unsigned i = 0; i < n; ++i)
      if (staged_[i].tracked) conns_.prefetch_entry(staged_[i].conn_hash);
  }
  for (unsigned i = 0; i < n; ++i) {
    if (!balancing && i + 1 < n) rte_prefetch0(rte_pktmbuf_mtod(pkts[i + 1], void*));
    handle_frame(port_index ? *port_index : port_index_of(pkts[i]->port), pkts[i], balancing ? &staged_[i] : nullptr,
                 lb, now, may_hand_off);
  }
  free_done();
  flush_tx();
  flush_sync();
}

std::size_t Worker::port_index_of(std::uint16_t port_id) const {
  for (std::size_t p = 0; p < ports_.size(); ++p)
    if (ports_[p].port_id == port_id) return p;
  return 0;  // not reached: only frames received on our ports are handed over
}

void Worker::handle_frame(std::size_t port_index, rte_mbuf* m, Staged* staged, lb::LbContext& lb, std::uint64_t now,
                          bool may_hand_off) {
  if (m->nb_segs != 1) {  // headers and ICMP payload are read from one segment
    counters_.drop(DropReason::kMultiSegment);
    done_[n_done_++] = m;
    return;
  }
  std::uint8_t* data = rte_pktmbuf_mtod(m, std::uint8_t*);

  // Load balancing first: traffic to a VIP, and backends' replies of tracked connections.
  if (staged) {
    net::ParsedPacket& pkt = staged->pkt;
    const net::ParseError perr = staged->err;
    if (perr == net::ParseError::kNone && rte_pktmbuf_headroom(m) >= lb::kIpipOverhead) {
      if (may_hand_off && lb.workers > 1) {
        const auto owner = lb::packet_owner(data, m->data_len, pkt, *lb.services, lb.workers);
        if (owner && *owner != index_) {
          hand_off(*owner, m);
          return;
        }
      }
      std::uint32_t len = m->data_len;
      lb::LbVerdict& v = verdict_;
      lb::lb_forward(data, len, pkt, lb, v);
      if (v.new_flow) counters_.count(Handled::kLbNewFlows);
      if (v.action == lb::LbVerdict::Action::kTransmit) {
        if (v.grew_front) rte_pktmbuf_prepend(m, static_cast<std::uint16_t>(lb::kIpipOverhead));
        m->data_len = static_cast<std::uint16_t>(len);  // a dropped VLAN tag shrinks it
        m->pkt_len = len;
        counters_.count(v.event);
        if (v.new_flow && holding_ && hold(v.port, m, now)) return;  // sync mode: until the peer acked
        enqueue_tx(v.port, m);
        return;
      }
      if (v.action == lb::LbVerdict::Action::kDrop) {
        counters_.drop(v.reason);
        done_[n_done_++] = m;
        return;
      }
    } else if ((perr == net::ParseError::kIpv4Fragment || perr >= net::ParseError::kL4Truncated) &&
               lb.services->is_vip(pkt.dst)) {
      counters_.drop(perr == net::ParseError::kIpv4Fragment ? DropReason::kIpv4Fragment : DropReason::kL4Malformed);
      done_[n_done_++] = m;
      return;
    }
  }

  LearntNeighbour learnt;
  const LocalResult r =
      handle_local_frame(data, m->data_len, shared_.locals->get(port_index), neighbours_[port_index], now, learnt);
  if (r.learnt) share_learnt(port_index, learnt);
  switch (r.action) {
    case LocalResult::Action::kTransmit:
      counters_.count(r.event);
      enqueue_tx(port_index, m);
      break;
    case LocalResult::Action::kConsume:
      counters_.count(r.event);
      done_[n_done_++] = m;
      break;
    case LocalResult::Action::kDrop:
      counters_.drop(r.reason);
      done_[n_done_++] = m;
      break;
    case LocalResult::Action::kPunt:
      punt_to_control(port_index, m);
      done_[n_done_++] = m;
      break;
  }
}

void Worker::punt_to_control(std::size_t port_index, const rte_mbuf* m) {
  // Without [ha] no port has an HA UDP port, so nothing is punted.
  const std::uint8_t* frame = rte_pktmbuf_mtod(m, const std::uint8_t*);
  const PuntedPayload p = punted_payload(frame);
  HaDatagram d;
  d.port = static_cast<std::uint8_t>(port_index);
  d.len = static_cast<std::uint16_t>(std::min<std::uint32_t>(p.len, kMaxHaDatagram));
  if (p.len > kMaxHaDatagram) {
    counters_.drop(DropReason::kL4Malformed);  // larger than any advert
    return;
  }
  std::memcpy(d.bytes.data(), frame + p.offset, d.len);
  if (shared_.ha && shared_.ha->deliver(d)) counters_.count(Handled::kHaAdvertsReceived);
  else counters_.drop(DropReason::kHaPuntFull);
}

void Worker::hand_off(unsigned owner, rte_mbuf* m) {
  Handoff& h = handoff_out_[owner];
  if (h.n == h.pkts.size()) flush_handoff();
  h.pkts[h.n++] = m;
}

void Worker::flush_handoff() {
  for (Handoff& h : handoff_out_) {
    if (h.n == 0) continue;
    const unsigned sent =
        rte_ring_mp_enqueue_burst(h.owner->handoff_in_, reinterpret_cast<void* const*>(h.pkts.data()), h.n, nullptr);
    counters_.count(Handled::kHandedOff, sent);
    if (sent != h.n) {
      rte_pktmbuf_free_bulk(&h.pkts[sent], h.n - sent);
      counters_.drop(DropReason::kHandoffFull, h.n - sent);
    }
    h.n = 0;
  }
}

void Worker::free_done() {
  if (n_done_ != 0) rte_pktmbuf_free_bulk(done_.data(), n_done_);
  n_done_ = 0;
}

void Worker::enqueue_tx(std::size_t port, rte_mbuf* m) {
  TxQueue& q = txq_[port];
  if (q.n == q.pkts.size()) flush_tx();
  q.pkts[q.n++] = m;
  q.bytes += m->pkt_len;
}

void Worker::flush_tx() {
  for (std::size_t p = 0; p < ports_.size(); ++p) {
    TxQueue& q = txq_[p];
    if (q.n == 0) continue;
    const std::uint16_t sent = rte_eth_tx_burst(ports_[p].port_id, static_cast<std::uint16_t>(index_), q.pkts.data(), q.n);
    std::uint64_t bytes = q.bytes;
    for (std::uint16_t i = sent; i < q.n; ++i) bytes -= q.pkts[i]->pkt_len;
    PortCounters& pc = counters_.ports[p];
    pc.tx_packets.add(sent);
    pc.tx_bytes.add(bytes);
    if (sent != q.n) {
      rte_pktmbuf_free_bulk(&q.pkts[sent], q.n - sent);
      pc.tx_dropped.add(q.n - sent);
      counters_.drop(DropReason::kTxFull, q.n - sent);
    }
    q.n = 0;
    q.bytes = 0;
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
  // The part of the table ever used, about once a second (conn_table.hpp: extent()).
  const std::size_t examine = std::max(kMinExpirePerTick, conns_.extent() * kSweepsPerSecond * kPeriodicMs / 1000);
  if (shared_.sync) {
    // The peer learns of every end of a connection this unit carried (its copy would expire
    // too, but later, and a closed connection's entry must not outlive it on the new active).
    // In slices the delta log holds (the sweep is incremental: slices add up to one call).
    for (std::size_t left = examine; left != 0;) {
      const std::size_t slice = std::min<std::size_t>(left, conntrack::ConnDeltaLog::kCapacity);
      conns_.expire(now, slice, [&](const conntrack::ConnEntry& e) {
        if (!conntrack::pure_replica(e)) sync_log_.push(conntrack::make_delta(conntrack::DeltaKind::kDelete, e, now));
      });
      flush_sync();
      left -= slice;
    }
    refresh_slice(now, examine);
    flush_sync();
  } else {
    conns_.expire(now, examine);
  }
  if (now >= next_snapshot_ms_) {
    publish_snapshot(now);
    next_snapshot_ms_ = now + kSnapshotMs;
  }
}

bool Worker::sync_duties(std::uint64_t now) {
  const bool applied = apply_peer_records(now);
  const bool streamed = resync_slice(now);
  flush_sync();
  // Not holding any more (the peer stopped acking, or it is not sync mode): send them all.
  release_held(now, !shared_.sync->holding());
  return applied || streamed;
}

void Worker::flush_sync() {
  if (sync_log_.empty()) return;
  const unsigned taken = shared_.sync->emit(index_, sync_log_.data(), static_cast<unsigned>(sync_log_.size()));
  // The packets held this burst learn their create's number (a create the ring refused: 0).
  for (std::size_t k = held_n_ - unresolved_; k < held_n_; ++k) {
    Held& h = held_[(held_head_ + k) % kHoldCapacity];
    h.change = h.change <= taken ? changes_taken_ + h.change : 0;
  }
  unresolved_ = 0;
  changes_taken_ += taken;
  sync_log_.clear();
}

bool Worker::hold(std::size_t port, rte_mbuf* m, std::uint64_t now) {
  WorkerSyncCounters& c = shared_.sync->counters(index_);
  if (held_n_ == kHoldCapacity || sync_log_.empty()) {
    c.released_unheld.add();
    return false;
  }
  Held& h = held_[(held_head_ + held_n_) % kHoldCapacity];
  h = {.m = m,
       .port = static_cast<std::uint8_t>(port),
       .change = sync_log_.size(),  // its position for now: flush_sync() resolves it
       .since_tsc = rte_rdtsc(),
       .deadline_ms = now + shared_.sync->hold_timeout_ms()};
  ++held_n_;
  ++unresolved_;
  c.held.add();
  return true;
}

void Worker::release_held(std::uint64_t now, bool all) {
  if (held_n_ == unresolved_) return;
  WorkerSyncCounters& c = shared_.sync->counters(index_);
  const std::uint64_t acked = shared_.sync->acked_changes(index_);
  const std::uint64_t tsc = rte_rdtsc();
  static const std::uint64_t tsc_per_us = std::max<std::uint64_t>(rte_get_tsc_hz() / 1'000'000, 1);
  while (held_n_ > unresolved_) {
    Held& h = held_[held_head_];
    if (h.change == 0) c.released_unheld.add();
    else if (h.change <= acked) c.released_acked.add();
    else if (all || now >= h.deadline_ms) c.released_timeout.add();
    else break;  // FIFO: the acks and the deadlines of the ones behind come later
    c.hold_us.add((tsc - h.since_tsc) / tsc_per_us);
    enqueue_tx(h.port, h.m);
    held_head_ = (held_head_ + 1) % kHoldCapacity;
    --held_n_;
  }
  flush_tx();
}

bool Worker::apply_peer_records(std::uint64_t now) {
  std::array<sync::ConnRecord, kApplyPerLoop> in;
  const unsigned n = shared_.sync->take_records(index_, in.data(), kApplyPerLoop);
  if (n == 0) return false;
  WorkerSyncCounters& c = shared_.sync->counters(index_);
  const lb::ServiceTable& services = *shared_.services->get();
  for (unsigned i = 0; i < n; ++i) {
    const sync::ConnRecord& r = in[i];
    sync::ApplyResult result;
    if (r.type == sync::RecordType::kDelete) {
      const sync::DeleteRecord d{.proto = r.proto, .client_addr = r.client_addr, .vip_addr = r.vip_addr,
                                 .client_port = r.client_port, .vip_port = r.vip_port};
      result = sync::apply(conns_, d);
    } else {
      result = sync::apply(conns_, r, services, now);
      bool split = false;
      if (shared_.workers > 1) sync::record_owner(r, services, static_cast<std::uint16_t>(shared_.workers), &split);
      if (split) c.split.add();
    }
    c.applied[static_cast<std::size_t>(result)].add();
  }
  c.records_in.add(n);
  return true;
}

bool Worker::resync_slice(std::uint64_t now) {
  const std::uint32_t generation = shared_.sync->resync_generation();
  if (generation != resync_seen_) {  // (re)start: a newer request replaces one in progress
    resync_seen_ = generation;
    resyncing_ = true;
    resync_cursor_ = 0;
    resync_count_ = 0;
  }
  if (!resyncing_) return false;
  // Streams only what the ring takes now (and the marker), so a resync never drops; live
  // changes logged before go first, so the stream keeps the order things happened in.
  flush_sync();
  const unsigned room = shared_.sync->room(index_);
  if (room < 2) return true;
  const std::size_t end = conns_.extent();
  std::size_t budget = std::min<std::size_t>(room - 1, kResyncSlice);
  std::size_t examined = 0;
  while (resync_cursor_ < end && budget != 0 && examined < 4 * kResyncSlice) {
    conntrack::ConnEntry& e = conns_.entry_at(resync_cursor_++);
    ++examined;
    if (!(e.flags & conntrack::kConnInUse)) continue;
    conntrack::ConnDelta d = conntrack::make_delta(conntrack::DeltaKind::kResync, e, now);
    d.aux = generation;
    sync_log_.push(d);
    --budget;
    ++resync_count_;
  }
  if (resync_cursor_ >= end && budget != 0) {
    conntrack::ConnDelta done;
    done.kind = conntrack::DeltaKind::kResyncDone;
    done.emitted_ms = now;
    done.aux = std::uint64_t{generation} << 32 | (resync_count_ & 0xffffffffu);
    sync_log_.push(done);
    shared_.sync->counters(index_).resync_entries.add(resync_count_);
    resyncing_ = false;
  }
  return true;
}

void Worker::refresh_slice(std::uint64_t now, std::size_t examine) {
  const std::uint64_t period = shared_.sync->refresh_ms();
  const std::size_t end = conns_.extent();
  if (end == 0 || period == 0) return;
  for (std::size_t k = 0; k < examine && k < end; ++k) {
    if (refresh_cursor_ >= end) refresh_cursor_ = 0;
    conntrack::ConnEntry& e = conns_.entry_at(refresh_cursor_++);
    if (!(e.flags & conntrack::kConnInUse) || conntrack::pure_replica(e)) continue;
    // Carried packets since it was last sent, and that was a refresh period ago.
    if (e.last_seen_ms > e.synced_ms && now >= e.synced_ms + period) {
      if (sync_log_.size() + 1 >= conntrack::ConnDeltaLog::kCapacity) flush_sync();
      sync_log_.emit(conntrack::DeltaKind::kUpdate, e, now);
    }
  }
}

void Worker::send_arp_request(std::size_t port_index, net::Ipv4Addr target) {
  const LocalInterface& local = shared_.locals->get(port_index);
  rte_mbuf* m = rte_pktmbuf_alloc(shared_.pool);
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
  transmit_generated(port_index, m, len, Handled::kArpRequestsSent);
}

void Worker::transmit_generated(std::size_t port_index, rte_mbuf* m, std::size_t len, Handled event) {
  m->data_len = static_cast<std::uint16_t>(len);
  m->pkt_len = static_cast<std::uint32_t>(len);
  PortCounters& pc = counters_.ports[port_index];
  if (rte_eth_tx_burst(ports_[port_index].port_id, static_cast<std::uint16_t>(index_), &m, 1) == 1) {
    counters_.count(event);
    pc.tx_packets.add();
    pc.tx_bytes.add(len);
  } else {
    rte_pktmbuf_free(m);
    pc.tx_dropped.add();
    counters_.drop(DropReason::kTxFull);
  }
}

void Worker::ha_duties(std::uint64_t now) {
  const HaLink& ha = *shared_.ha;
  // One relaxed load each when nothing is new.
  if (ha.advert().generation() != advert_seen_) send_advert(now);
  if (ha.announcement().generation() != announcement_seen_) {
    if (const std::uint32_t gen = ha.announcement().read(announcing_); gen != 0) {
      announcement_seen_ = gen;
      bursts_left_ = announcing_.bursts;
      next_burst_ms_ = now;
      if (bursts_left_ == 0) shared_.ha->mark_announced(gen);
    }
  }
  if (bursts_left_ != 0 && now >= next_burst_ms_) {
    send_announcement_burst();
    if (bursts_left_-- == announcing_.bursts) shared_.ha->mark_announced(announcement_seen_);
    next_burst_ms_ = now + announcing_.interval_ms;
  }
}

void Worker::send_advert(std::uint64_t now) {
  const std::uint32_t gen = shared_.ha->advert().read(advert_);
  if (gen == 0) return;  // being written: next loop
  advert_seen_ = gen;
  if (advert_.port >= ports_.size()) return;
  const std::size_t p = advert_.port;
  net::MacAddr peer_mac;
  // An unknown peer gets an incomplete entry that maintain() probes: the next advert finds it.
  if (neighbours_[p].resolve(advert_.peer, now, &peer_mac) != neigh::ResolveResult::kKnown) {
    counters_.drop(DropReason::kHaPeerUnresolved);
    return;
  }
  rte_mbuf* m = rte_pktmbuf_alloc(shared_.pool);
  if (!m) {
    counters_.drop(DropReason::kNoMbuf);
    return;
  }
  const LocalInterface& local = shared_.locals->get(p);
  const net::UdpEndpoints e{.src_mac = local.mac, .dst_mac = peer_mac, .src_ip = local.prefixes[0].addr,
                            .dst_ip = advert_.peer, .src_port = advert_.udp_port, .dst_port = advert_.udp_port};
  const std::size_t len = net::build_udp_frame(rte_pktmbuf_mtod(m, std::uint8_t*), rte_pktmbuf_tailroom(m), e,
                                               {advert_.bytes.data(), advert_.len});
  if (len == 0) {
    rte_pktmbuf_free(m);
    return;
  }
  transmit_generated(p, m, len, Handled::kHaAdvertsSent);
}

void Worker::send_announcement_burst() {
  for (std::uint32_t i = 0; i < announcing_.count && i < announcing_.items.size(); ++i) {
    const Announcement::Item& item = announcing_.items[i];
    if (item.port >= ports_.size()) continue;
    rte_mbuf* m = rte_pktmbuf_alloc(shared_.pool);
    if (!m) {
      counters_.drop(DropReason::kNoMbuf);
      return;
    }
    // Gratuitous ARP: a broadcast request for the address by itself (RFC 5227 announcement),
    // which updates the neighbour entry every host on the segment has for it.
    const std::size_t len = net::build_arp_request(rte_pktmbuf_mtod(m, std::uint8_t*), rte_pktmbuf_tailroom(m),
                                                   shared_.locals->get(item.port).mac, item.addr, item.addr);
    transmit_generated(item.port, m, len, Handled::kGratuitousArpSent);
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
  snapshot_.conn_stats = conns_.stats();
  snapshot_.connections = conns_.size();
  snapshot_.taken_ms = now;
}

}  // namespace tandem::dpdk
