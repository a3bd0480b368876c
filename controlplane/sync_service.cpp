#include "controlplane/sync_service.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>

#include <spdlog/spdlog.h>

#include "controlplane/config/to_toml.hpp"
#include "controlplane/runtime.hpp"
#include "controlplane/sync_socket.hpp"
#include "controlplane/sync/apply.hpp"
#include "dataplane/sync_link.hpp"

namespace tandem {
namespace {

using nlohmann::json;
using conntrack::ConnDelta;
using conntrack::DeltaKind;

// The loop wakes at least this often to collect the workers' changes (the batching delay is
// flush_ms on top, so a change leaves within ~2 ms).
constexpr int kMaxSleepMs = 1;
constexpr std::uint64_t kSyncModeSleepUs = 100;
constexpr unsigned kTakePerWorker = 1024;
constexpr std::size_t kMaxInboundWaiting = 1 << 20;
// A resync asked for that shows no progress for this long is asked for again (the peer was
// down, or the request was given up).
constexpr std::uint64_t kResyncRetryMs = 3000;
// Authentication failures within this window, with nothing authentic heard: the alarm.
constexpr std::uint64_t kAlarmWindowMs = 2000;

std::uint64_t age(std::uint64_t now, std::uint64_t then) { return now > then ? now - then : 0; }

sync::ConnRecord record_of(const ConnDelta& d, std::uint64_t now) {
  return sync::conn_record(d, now, d.kind == DeltaKind::kUpdate ? sync::RecordType::kUpdate : sync::RecordType::kCreate);
}


}  // namespace

SyncService::SyncService(Runtime& rt) : rt_(rt) {}


std::unique_ptr<SyncService> SyncService::open(Runtime& rt, std::string& error) {
  const auto& sc = rt.config.sync;
  std::unique_ptr<SyncService> s(new SyncService(rt));
  std::vector<std::uint8_t> key;
  if (!read_key(sc.key, sc.key_file, key, error)) return nullptr;
  // A bulk resync sends a send window's worth at once: room for it both ways.
  s->fd_ = open_udp_socket(sc.address, sc.port, sc.listen, 0, 8 << 20, error);
  if (s->fd_ < 0) return nullptr;
  std::random_device entropy;
  std::uint64_t epoch = 0;
  while (epoch == 0) epoch = std::uint64_t{entropy()} << 32 | entropy();
  sync::EndpointConfig ec;
  ec.unit_id = static_cast<std::uint8_t>(rt.config.unit.id);
  ec.key = std::move(key);
  ec.epoch = epoch;
  ec.budget = sc.budget;
  ec.send_window = 1024;
  ec.receive_window = 1024;
  ec.flush_ms = sc.flush_ms;
  ec.ack_now_always = sc.mode == config::SyncMode::kSync;
  try {
    s->endpoint_ = std::make_unique<sync::Endpoint>(ec);
  } catch (const std::exception& e) {
    error = e.what();
    return nullptr;
  }
  const unsigned workers = rt.sync_link->workers();
  s->waiting_.resize(workers);
  s->inbound_.resize(workers);
  s->worker_done_.assign(workers, false);
  s->changes_handled_.assign(workers, 0);
  s->resync_id_ = entropy() | 1;
  s->push_id_ = entropy();
  s->send_window_ = ec.send_window;
  return s;
}

SyncService::~SyncService() {
  if (thread_.joinable()) thread_.join();
  if (fd_ >= 0) ::close(fd_);
}

void SyncService::start() {
  rt_.sync = this;
  thread_ = std::thread([this] { run(); });
  pthread_setname_np(thread_.native_handle(), "tandem-sync");  // top, perf, /proc/PID/task
}

void SyncService::run() {
  const auto& sc = rt_.config.sync;
  spdlog::info("sync: replicating connections {} -> {} ({} mode, batches of {} bytes, busy connections re-sent "
               "every {} ms)",
               sc.listen, sc.peer, config::to_string(sc.mode), sc.budget, sc.refresh_ms);
  while (!rt_.stop.load()) {
    std::uint64_t now = dpdk::monotonic_ms();
    {
      std::lock_guard lock(mutex_);
      receive(now);
      drain_inbound();
      drain_workers(now);
      sync_config(now);
      maintain(now);
      transmit(now);
      update_lag(now);
    }
    const std::uint64_t wake = endpoint_->next_wakeup(now);
    // Sync mode: workers hold packets for the changes in their rings, so look every 100 us.
    const std::uint64_t max_us = rt_.config.sync.mode == config::SyncMode::kSync ? kSyncModeSleepUs : kMaxSleepMs * 1000;
    const std::uint64_t wait_us = wake <= now ? 0 : std::min<std::uint64_t>((wake - now) * 1000, max_us);
    pollfd pfd{fd_, POLLIN, 0};
    const timespec ts{.tv_sec = 0, .tv_nsec = static_cast<long>(wait_us * 1000)};
    ::ppoll(&pfd, 1, &ts, nullptr);
    if (pending_push_) apply_push();
  }
  spdlog::info("sync: stopping ({} records sent, {} received)", endpoint_->stats().records_sent,
               endpoint_->stats().delivered);
}

void SyncService::receive(std::uint64_t now) {
  std::array<std::uint8_t, sync::kMaxMessageBytes> buf;
  // Bounded, so a flood cannot starve sending; and nothing more is taken while the workers
  // have not applied what came before (the peer then waits: its window is the backpressure).
  for (int i = 0; i < 512 && inbound_waiting_ < kMaxInboundWaiting / 2; ++i) {
    const ssize_t n = ::recv(fd_, buf.data(), buf.size(), 0);
    if (n < 0) {
      break;  // EAGAIN: drained (a UDP socket has no other error worth a counter here)
    }
    const sync::ReceiveResult r = endpoint_->receive({buf.data(), static_cast<std::size_t>(n)}, now);
    if (!r.accepted) {
      if (r.error == sync::SyncError::kBadAuth) {
        ++auth_failures_;
        last_auth_failure_ms_ = now;
      }
      continue;
    }
    heard_ = true;
    last_heard_ms_ = now;
    if (r.peer_restarted) {
      spdlog::warn("sync: the peer restarted (new epoch {:#x}); it will ask for this unit's table",
                   endpoint_->peer_epoch());
      config_.peer_restarted();
      config_announced_ = false;  // tell the new instance
      pushed_.reset();
      if (assembler_.active()) assembler_.begin({});  // its unfinished push is gone
      logged_relation_.reset();
    }
    while (const sync::Message* m = endpoint_->next_delivery()) handle(*m, now);
  }
}

void SyncService::handle(const sync::Message& m, std::uint64_t now) {
  peer_unit_id_ = m.header.unit_id;
  switch (m.header.kind) {
    case sync::MessageKind::kData:
    case sync::MessageKind::kResyncChunk:
      for (const sync::Record& rec : m.records) {
        if (const auto* c = std::get_if<sync::ConnRecord>(&rec)) {
          route(*c);
        } else if (const auto* d = std::get_if<sync::DeleteRecord>(&rec)) {
          sync::ConnRecord r;
          r.type = sync::RecordType::kDelete;
          r.proto = d->proto;
          r.client_addr = d->client_addr;
          r.vip_addr = d->vip_addr;
          r.client_port = d->client_port;
          r.vip_port = d->vip_port;
          route(r);
        }
      }
      if (m.header.kind == sync::MessageKind::kResyncChunk && resync_state_ == ResyncState::kRequested) {
        resync_received_ += m.records.size();
        resync_progress_ms_ = now;
      }
      break;
    case sync::MessageKind::kResyncRequest: {
      const auto& r = std::get<sync::ResyncRecord>(m.records.at(0));
      if (serving_id_)
        spdlog::info("sync: the peer asks for a new bulk resync (id {:#x}) while {:#x} runs: starting over", r.resync_id,
                     *serving_id_);
      else
        spdlog::info("sync: the peer asks for this unit's whole table (bulk resync {:#x})", r.resync_id);
      serving_id_ = r.resync_id;
      serving_generation_ = rt_.sync_link->request_resync();
      std::fill(worker_done_.begin(), worker_done_.end(), false);
      serving_entries_ = 0;
      end_pending_ = false;
      break;
    }
    case sync::MessageKind::kResyncEnd: {
      const auto& r = std::get<sync::ResyncRecord>(m.records.at(0));
      if (resync_state_ == ResyncState::kRequested && r.resync_id == resync_id_) {
        resync_state_ = ResyncState::kDone;
        ++resync_completed_;
        last_resync_entries_ = r.entries;
        last_resync_ms_ = now - resync_started_ms_;
        ready_.store(true, std::memory_order_relaxed);
        spdlog::info("sync: bulk resync {:#x} complete: {} connection(s) in {} ms; this unit holds the peer's table",
                     r.resync_id, r.entries, last_resync_ms_);
      }
      break;
    }
    case sync::MessageKind::kConfig:
      config_.peer_announced(std::get<sync::ConfigRecord>(m.records.at(0)));
      report_relation();
      break;
    case sync::MessageKind::kConfigPush:
      receive_push(m);
      break;
    case sync::MessageKind::kAck:
      break;
  }
}

bool SyncService::route(const sync::ConnRecord& r) {
  const unsigned workers = rt_.sync_link->workers();
  const unsigned w =
      r.type == sync::RecordType::kDelete
          ? sync::record_owner(sync::DeleteRecord{.proto = r.proto, .client_addr = r.client_addr, .vip_addr = r.vip_addr,
                                                  .client_port = r.client_port, .vip_port = r.vip_port},
                               static_cast<std::uint16_t>(workers))
          : sync::record_owner(r, static_cast<std::uint16_t>(workers));
  // Order per worker is kept: nothing overtakes what already waits.
  if (inbound_[w].empty() && rt_.sync_link->deliver(w, r)) return true;
  if (inbound_waiting_ >= kMaxInboundWaiting) {
    ++inbound_dropped_;
    return false;
  }
  inbound_[w].push_back(r);
  ++inbound_waiting_;
  return true;
}

void SyncService::drain_inbound() {
  for (unsigned w = 0; w < inbound_.size(); ++w) {
    auto& q = inbound_[w];
    while (!q.empty() && rt_.sync_link->deliver(w, q.front())) {
      q.pop_front();
      --inbound_waiting_;
    }
  }
}

bool SyncService::send_delta(unsigned worker, const ConnDelta& d, std::uint64_t now) {
  // Counted first, so that the checkpoint of the message carrying it includes it.
  ++changes_handled_[worker];
  if (send_one(worker, d, now)) return true;
  --changes_handled_[worker];  // the window is full: it stays in the queue
  return false;
}

bool SyncService::send_one(unsigned worker, const ConnDelta& d, std::uint64_t now) {
  sync::AddStatus st = sync::AddStatus::kQueued;
  switch (d.kind) {
    case DeltaKind::kCreate:
    case DeltaKind::kUpdate:
      st = endpoint_->add(sync::MessageKind::kData, record_of(d, now), now);
      break;
    case DeltaKind::kDelete:
      st = endpoint_->add(sync::MessageKind::kData,
                          sync::DeleteRecord{.proto = d.proto, .client_addr = d.client_addr, .vip_addr = d.vip_addr,
                                             .client_port = d.client_port, .vip_port = d.vip_port},
                          now);
      break;
    case DeltaKind::kResync:
      // Entries of a resync another request replaced are not sent.
      if (!serving_id_ || d.aux != serving_generation_) return true;
      st = endpoint_->add(sync::MessageKind::kResyncChunk, record_of(d, now), now);
      if (st == sync::AddStatus::kQueued) ++serving_entries_;
      break;
    case DeltaKind::kResyncDone:
      if (serving_id_ && (d.aux >> 32) == serving_generation_) {
        worker_done_[worker] = true;
        if (std::all_of(worker_done_.begin(), worker_done_.end(), [](bool b) { return b; })) end_pending_ = true;
      }
      return true;
  }
  if (st == sync::AddStatus::kWindowFull) return false;
  if (st == sync::AddStatus::kQueued) note_lag(d.emitted_ms);
  return true;
}

void SyncService::drain_workers(std::uint64_t now) {
  std::array<ConnDelta, kTakePerWorker> buf;
  for (unsigned w = 0; w < waiting_.size(); ++w) {
    auto& wait = waiting_[w];
    while (!wait.empty() && send_delta(w, wait.front(), now)) wait.pop_front();
    if (!wait.empty()) continue;  // the window is full
    const unsigned n = rt_.sync_link->take_deltas(w, buf.data(), kTakePerWorker);
    for (unsigned i = 0; i < n; ++i)
      if (!send_delta(w, buf[i], now)) {
        wait.insert(wait.end(), buf.begin() + i, buf.begin() + n);
        break;
      }
  }
  // Sync mode: workers hold packets for these changes, so they go now, not after flush_ms.
  if (rt_.config.sync.mode == config::SyncMode::kSync) endpoint_->flush();
  if (end_pending_ && std::all_of(waiting_.begin(), waiting_.end(), [](const auto& q) { return q.empty(); })) {
    if (endpoint_->send_control(sync::MessageKind::kResyncEnd, sync::ResyncRecord{*serving_id_, serving_entries_},
                                now) == sync::AddStatus::kQueued) {
      spdlog::info("sync: bulk resync {:#x} sent: {} connection(s)", *serving_id_, serving_entries_);
      ++served_;
      served_entries_ += serving_entries_;
      serving_id_.reset();
      end_pending_ = false;
    }
  }
}

void SyncService::request_resync(std::uint64_t now) {
  resync_id_ = resync_id_ + 2;  // odd, never 0
  if (endpoint_->send_control(sync::MessageKind::kResyncRequest, sync::ResyncRecord{resync_id_, 0}, now) !=
      sync::AddStatus::kQueued)
    return;  // window full: next round
  resync_state_ = ResyncState::kRequested;
  resync_progress_ms_ = now;
  resync_started_ms_ = now;
  resync_received_ = 0;
  need_resync_ = false;
  ++resync_requests_;
  spdlog::info("sync: asking the peer for its whole table (bulk resync {:#x})", resync_id_);
}

void SyncService::maintain(std::uint64_t now) {
  // A gap: the peer gave up on messages this unit never received. Its copy is incomplete.
  if (endpoint_->skipped() != skipped_seen_) {
    spdlog::warn("sync: {} message(s) from the peer lost for good (it gave up retransmitting); asking for a bulk "
                 "resync, not ready until it completes",
                 endpoint_->skipped() - skipped_seen_);
    skipped_seen_ = endpoint_->skipped();
    ready_.store(false, std::memory_order_relaxed);
    need_resync_ = true;
  }
  if (resync_state_ == ResyncState::kRequested && now >= resync_progress_ms_ + kResyncRetryMs) need_resync_ = true;
  if (need_resync_) request_resync(now);

  const bool failing = auth_failures_ != 0 && now < last_auth_failure_ms_ + kAlarmWindowMs &&
                       (!heard_ || last_heard_ms_ + kAlarmWindowMs < now);
  if (failing != alarm_) {
    alarm_ = failing;
    if (failing)
      spdlog::error("sync: ALARM: messages on the sync link fail authentication ({} so far): a wrong key on one "
                    "unit? nothing from them is applied",
                    auth_failures_);
    else
      spdlog::info("sync: authentication alarm cleared");
  }
}

void SyncService::transmit(std::uint64_t now) {
  datagrams_.clear();
  endpoint_->poll(now, datagrams_);
  if (datagrams_.empty()) return;
  const auto& sc = rt_.config.sync;
  const sockaddr_in peer = sockaddr_of(sc.peer_address, sc.peer_port);
  for (const auto& d : datagrams_)
    if (::sendto(fd_, d.data(), d.size(), 0, reinterpret_cast<const sockaddr*>(&peer), sizeof peer) < 0 &&
        send_errors_++ % 1000 == 0)
      spdlog::debug("sync: send to {}: {}", sc.peer, std::strerror(errno));
}

void SyncService::note_lag(std::uint64_t emitted_ms) {
  ++records_added_;
  const std::uint64_t seq = endpoint_->last_record_sequence();
  if (!checkpoints_.empty() && checkpoints_.back().sequence == seq) {
    checkpoints_.back().records = records_added_;
    checkpoints_.back().changes = changes_handled_;
    return;
  }
  checkpoints_.push_back({seq, emitted_ms, records_added_, changes_handled_});
}

void SyncService::publish_acked(const std::vector<std::uint64_t>& changes) {
  for (unsigned w = 0; w < changes.size(); ++w) rt_.sync_link->set_acked_changes(w, changes[w]);
}

void SyncService::update_lag(std::uint64_t now) {
  const std::uint64_t acked = endpoint_->acked();
  const bool sync_mode = rt_.config.sync.mode == config::SyncMode::kSync;
  while (!checkpoints_.empty() && checkpoints_.front().sequence <= acked) {
    acked_records_ = checkpoints_.front().records;
    if (sync_mode) publish_acked(checkpoints_.front().changes);
    checkpoints_.pop_front();
  }
  if (checkpoints_.empty()) {
    acked_records_ = records_added_;
    lag_entries_ = 0;
    lag_ms_ = 0;
    if (sync_mode) publish_acked(changes_handled_);  // what was handled without being sent too
  } else {
    lag_entries_ = records_added_ - acked_records_;
    lag_ms_ = age(now, checkpoints_.front().emitted_ms);
    lag_max_ms_ = std::max(lag_max_ms_, lag_ms_);
  }
  // Hold new connections only while the peer acks: a dead peer (or a cut link) must not delay
  // every new connection by the hold timeout.
  if (sync_mode) {
    const std::uint64_t patience = std::max<std::uint64_t>(50, 5 * rt_.config.sync.hold_timeout_ms);
    const bool acking = endpoint_->decoder().has_peer_epoch() && lag_ms_ <= patience;
    if (acking != rt_.sync_link->holding()) {
      rt_.sync_link->set_holding(acking);
      if (acking) spdlog::info("sync: the peer acks: new connections wait for its ack (sync mode)");
      else
        spdlog::warn("sync: the peer does not ack (oldest change {} ms old): new connections are not held (RPO > 0 "
                     "until it acks again)",
                     lag_ms_);
    }
  }
}

json SyncService::status() const {
  std::lock_guard lock(mutex_);
  const std::uint64_t now = dpdk::monotonic_ms();
  const auto& st = endpoint_->stats();
  const auto& sc = rt_.config.sync;
  json errors = json::object();
  for (std::size_t i = 0; i < sync::kSyncErrorCount; ++i)
    errors[sync::to_string(static_cast<sync::SyncError>(i))] = endpoint_->decoder().errors()[i];
  std::uint64_t ring_dropped = 0, deltas = 0, resync_entries = 0, records_in = 0, split = 0;
  std::uint64_t held = 0, released_acked = 0, released_timeout = 0, released_unheld = 0, hold_us = 0;
  std::array<std::uint64_t, sync::kApplyResultCount> applied{};
  for (unsigned w = 0; w < rt_.sync_link->workers(); ++w) {
    const auto& c = rt_.sync_link->counters(w);
    ring_dropped += c.ring_dropped.get();
    deltas += c.deltas.get();
    resync_entries += c.resync_entries.get();
    records_in += c.records_in.get();
    split += c.split.get();
    held += c.held.get();
    released_acked += c.released_acked.get();
    released_timeout += c.released_timeout.get();
    released_unheld += c.released_unheld.get();
    hold_us += c.hold_us.get();
    for (std::size_t i = 0; i < applied.size(); ++i) applied[i] += c.applied[i].get();
  }
  json apply = json::object();
  for (std::size_t i = 0; i < applied.size(); ++i) apply[sync::to_string(static_cast<sync::ApplyResult>(i))] = applied[i];
  apply["split"] = split;
  apply["waiting"] = inbound_waiting_;
  apply["dropped"] = inbound_dropped_;
  const char* state = resync_state_ == ResyncState::kIdle        ? "idle"
                      : resync_state_ == ResyncState::kRequested ? "requested"
                                                                 : "done";
  const bool has_peer = endpoint_->decoder().has_peer_epoch();
  return {{"enabled", true},
          {"mode", config::to_string(sc.mode)},
          {"listen", sc.listen},
          {"peer_address", sc.peer},
          {"ready", ready()},
          {"epoch", endpoint_->epoch()},
          {"peer",
           {{"unit_id", peer_unit_id_ != 0 ? json(peer_unit_id_) : json(nullptr)},
            {"epoch", has_peer ? json(endpoint_->peer_epoch()) : json(nullptr)},
            {"heard", heard_},
            {"last_heard_ms_ago", heard_ ? json(age(now, last_heard_ms_)) : json(nullptr)}}},
          {"send",
           {{"sequence", endpoint_->next_sequence() - 1},
            {"acked", endpoint_->acked()},
            {"in_flight", endpoint_->in_flight()},
            {"messages", st.messages_sent},
            {"records", st.records_sent},
            {"retransmits", st.retransmits},
            {"fast_retransmits", st.fast_retransmits},
            {"acks", st.acks_sent},
            {"gave_up", st.gave_up},
            {"backpressure", st.backpressure},
            {"ring_dropped", ring_dropped},
            {"changes", deltas},
            {"send_errors", send_errors_}}},
          {"receive",
           {{"messages", st.received},
            {"delivered", st.delivered},
            {"out_of_order", st.out_of_order},
            {"duplicates", endpoint_->decoder().error_count(sync::SyncError::kReplayed)},
            {"beyond_window", st.beyond_window},
            {"skipped", endpoint_->skipped()},
            {"peer_restarts", st.peer_restarts},
            {"records", records_in}}},
          {"lag", {{"entries", lag_entries_}, {"ms", lag_ms_}, {"max_ms", lag_max_ms_}}},
          {"hold",
           {{"holding", rt_.sync_link->holding()},
            {"timeout_ms", sc.hold_timeout_ms},
            {"held", held},
            {"released_acked", released_acked},
            {"released_timeout", released_timeout},
            {"not_held", released_unheld},
            {"average_us", released_acked + released_timeout != 0 ? hold_us / (released_acked + released_timeout) : 0}}},
          {"apply", apply},
          {"resync",
           {{"state", state},
            {"id", resync_id_},
            {"requests_sent", resync_requests_},
            {"received_entries", resync_received_},
            {"completed", resync_completed_},
            {"last_entries", last_resync_entries_},
            {"last_ms", last_resync_ms_},
            {"serving", serving_id_.has_value()},
            {"served", served_},
            {"served_entries", served_entries_},
            {"streamed_entries", resync_entries}}},
          {"config", config_status()},
          {"auth_failures", auth_failures_},
          {"errors", errors},
          {"alarm", alarm_}};
}

}  // namespace tandem
