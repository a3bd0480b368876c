#include "controlplane/ha_service.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>

#include <spdlog/spdlog.h>

#include "controlplane/link_state.hpp"
#include "controlplane/sync_socket.hpp"
#include "controlplane/runtime.hpp"
#include "controlplane/sync_service.hpp"
#include "dataplane/port.hpp"

namespace tandem {
namespace {

// After a handover, how long this unit still forwards the flows it holds of the groups it gave
// up (the new active announces them within milliseconds; a neighbour that missed it re-ARPs).
constexpr std::uint64_t kReleasedFlowsMs = 2000;

using nlohmann::json;

constexpr std::size_t kHistory = 64;
constexpr std::uint64_t kTrackingEveryMs = 50;
// The loop wakes at least this often to collect adverts the workers received.
constexpr std::uint64_t kMaxSleepMs = 1;

std::int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

json change_json(const RoleChange& c) {
  json j{{"group", c.group},         {"from", ha::to_string(c.from)}, {"to", ha::to_string(c.to)},
         {"cause", ha::to_string(c.cause)}, {"unix_ms", c.unix_ms}};
  if (c.cause == ha::Cause::kPeerDead) j["detection_ms"] = c.detection_ms;
  if (c.takeover_ms) j["takeover_ms"] = *c.takeover_ms;
  return j;
}

}  // namespace

HaService::HaService(Runtime& rt) : rt_(rt) {}

std::unique_ptr<HaService> HaService::open(Runtime& rt, std::string& error) {
  const auto& ha = rt.config.ha;
  std::unique_ptr<HaService> s(new HaService(rt));
  if (!read_key(ha.key, ha.key_file, s->key_, error)) return nullptr;
  // Adverts are small and urgent: the interactive traffic class (CS6, network control, as VRRP).
  s->sync_fd_ = open_udp_socket(ha.sync_address, ha.sync_port, ha.sync_listen, 0xc0, 0, error);
  if (s->sync_fd_ < 0) return nullptr;

  ha::NodeConfig nc{.unit_id = static_cast<std::uint8_t>(rt.config.unit.id),
                    .preempt = ha.preempt,
                    .advert_interval_ms = ha.advert_interval_ms,
                    .dead_intervals = ha.dead_intervals,
                    .hold_down_ms = ha.hold_down_ms,
                    .groups = {},
                    .key = s->key_};
  for (const auto& g : ha.groups) nc.groups.push_back({g.id, ha.group_priority(g)});
  std::random_device entropy;
  const std::uint64_t epoch = std::uint64_t{entropy()} << 32 | entropy();
  s->node_ = std::make_unique<ha::Node>(nc, epoch, s->now_ms());
  // With state sync, not ready until the peer's table has arrived: never preempt before.
  if (rt.config.sync.enabled) s->node_->set_ready(false, s->now_ms());

  for (const auto& t : ha.track) {
    std::string name = t.kind == config::TrackKind::kService ? "service " + t.service + " (at least " +
                                                                   std::to_string(t.min_healthy) + " healthy)"
                                                             : std::string(config::to_string(t.kind)) + " " + t.port;
    s->tracked_.push_back({std::move(name), true, t.weight});
  }
  return s;
}

HaService::~HaService() {
  if (thread_.joinable()) thread_.join();
  if (sync_fd_ >= 0) ::close(sync_fd_);
}

void HaService::start() {
  rt_.ha = this;
  thread_ = std::thread([this] { run(); });
  pthread_setname_np(thread_.native_handle(), "tandem-ha");
}

std::uint64_t HaService::now_ms() const {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - epoch_clock_).count());
}

void HaService::run() {
  const auto& ha = rt_.config.ha;
  spdlog::info("ha: unit {} in {} group(s), advert every {} ms, peer dead after {} ms silent on both paths (sync {} "
               "-> {}, data {} -> {}:{}), preempt {}",
               rt_.config.unit.id, ha.groups.size(), ha.advert_interval_ms,
               std::uint64_t{ha.advert_interval_ms} * ha.dead_intervals, ha.sync_listen, ha.sync_peer, ha.data_port,
               ha.data_peer.to_string(), ha.data_udp_port, ha.preempt ? "on" : "off");
  while (!rt_.stop.load()) {
    std::uint64_t now = now_ms();
    {
      std::lock_guard lock(mutex_);
      if (now >= next_tracking_ms_) {
        update_tracking(now);
        next_tracking_ms_ = now + kTrackingEveryMs;
      }
      // Everything that arrived first, then the timers: after this thread was descheduled for
      // longer than the dead interval, the adverts waiting in the socket and the ring prove the
      // peer alive; ticking first would declare it dead.
      receive_sync(now);
      receive_data(now);
      // With state sync a unit is ready once it holds the peer's table (sync_service.hpp).
      if (rt_.config.sync.enabled) {
        const bool ready = rt_.sync && rt_.sync->ready();
        if (ready != node_->election(0).ready()) {
          node_->set_ready(ready, now);
          spdlog::info("ha: this unit is {} (state sync)", ready ? "ready: it holds the peer's connections"
                                                                 : "not ready: it does not hold the peer's connections yet");
        }
      }
      node_->tick(now);
      if (now >= node_->next_advert_ms()) send_advert(now);
      apply_events(now);
      check_announced(now);
    }
    const std::uint64_t deadline = [&] {
      std::lock_guard lock(mutex_);
      return node_->next_deadline_ms(now);
    }();
    const std::uint64_t wait = deadline > now ? std::min(deadline - now, kMaxSleepMs) : 0;
    pollfd pfd{sync_fd_, POLLIN, 0};
    if (::poll(&pfd, 1, static_cast<int>(wait)) > 0 && (pfd.revents & POLLIN)) {
      now = now_ms();
      std::lock_guard lock(mutex_);
      receive_sync(now);
      apply_events(now);
    }
  }
  // Stopping: give the groups up at once, so that the peer need not wait for the dead interval.
  std::lock_guard lock(mutex_);
  const std::uint64_t now = now_ms();
  node_->set_maintenance(true, now);
  send_advert(now);
  spdlog::info("ha: stopping; told the peer this unit will not serve");
}

void HaService::send_advert(std::uint64_t now) {
  std::vector<std::uint8_t> bytes;
  node_->build_advert(now, bytes);
  const auto& ha = rt_.config.ha;
  const sockaddr_in peer = sockaddr_of(ha.sync_peer_address, ha.sync_peer_port);
  if (::sendto(sync_fd_, bytes.data(), bytes.size(), 0, reinterpret_cast<const sockaddr*>(&peer), sizeof peer) ==
      static_cast<ssize_t>(bytes.size())) {
    ++sent_[static_cast<std::size_t>(ha::Path::kSync)];
  } else if (sync_send_errors_++ % 1000 == 0) {
    // A link that is down answers ENETUNREACH or similar at every advert: say so now and then.
    spdlog::debug("ha: sync advert to {} not sent: {}", ha.sync_peer, std::strerror(errno));
  }
  dpdk::HaAdvertOut out;
  const auto it = std::find_if(rt_.config.ports.begin(), rt_.config.ports.end(),
                               [&](const auto& p) { return p.name == ha.data_port; });
  out.port = static_cast<std::uint8_t>(it - rt_.config.ports.begin());
  out.peer = ha.data_peer;
  out.udp_port = ha.data_udp_port;
  out.len = static_cast<std::uint16_t>(std::min(bytes.size(), out.bytes.size()));
  std::memcpy(out.bytes.data(), bytes.data(), out.len);
  rt_.ha_link->publish_advert(out);
  ++sent_[static_cast<std::size_t>(ha::Path::kData)];  // handed to the fast path (it counts what it sent)
}

void HaService::accept(ha::Path path, const std::uint8_t* data, std::size_t len, std::uint64_t now) {
  ha::AdvertError error{};
  if (!node_->receive(path, {data, len}, now, &error)) {
    // Counted by reason in the decoder; logged at most once a second per reason.
    static std::array<std::uint64_t, ha::kAdvertErrorCount> last_logged{};
    auto& last = last_logged[static_cast<std::size_t>(error)];
    if (last == 0 || now >= last + 1000) {
      last = now;
      spdlog::warn("ha: advert refused on the {} path: {}", ha::to_string(path), ha::to_string(error));
    }
  }
}

void HaService::receive_sync(std::uint64_t now) {
  std::array<std::uint8_t, 2048> buf;
  for (int i = 0; i < 64; ++i) {
    const ssize_t n = ::recv(sync_fd_, buf.data(), buf.size(), 0);
    if (n < 0) return;
    accept(ha::Path::kSync, buf.data(), static_cast<std::size_t>(n), now);
  }
}

void HaService::receive_data(std::uint64_t now) {
  std::array<dpdk::HaDatagram, 16> in;
  unsigned n;
  do {
    n = rt_.ha_link->receive(in.data(), static_cast<unsigned>(in.size()));
    for (unsigned i = 0; i < n; ++i) accept(ha::Path::kData, in[i].bytes.data(), in[i].len, now);
  } while (n == in.size());
}

void HaService::update_tracking(std::uint64_t now) {
  const auto& ha = rt_.config.ha;
  std::uint32_t penalty = 0;
  bool fault = false;
  for (std::size_t i = 0; i < ha.track.size(); ++i) {
    const auto& t = ha.track[i];
    bool ok = true;
    const auto port = std::find_if(rt_.config.ports.begin(), rt_.config.ports.end(),
                                   [&](const auto& p) { return p.name == t.port; });
    const std::size_t pi = static_cast<std::size_t>(port - rt_.config.ports.begin());
    switch (t.kind) {
      case config::TrackKind::kPortLink:
        ok = pi < rt_.ports.size() && port_link_up(*port, rt_.ports[pi].port_id);
        break;
      case config::TrackKind::kGateway: {
        // Worker 0 keeps the gateway resolved: failed means its ARP probes went unanswered.
        ok = false;
        auto& snap = rt_.workers[0]->neighbour_snapshot();
        std::lock_guard snap_lock(snap.mutex);
        for (const auto& row : snap.rows)
          if (row.port_index == pi && port->gateway && row.entry.ip == *port->gateway)
            ok = row.entry.state == neigh::NeighState::kReachable || row.entry.state == neigh::NeighState::kStale;
        break;
      }
      case config::TrackKind::kService:
        ok = rt_.healthy_backends ? rt_.healthy_backends(t.service) >= t.min_healthy : true;
        break;
    }
    Tracked& tr = tracked_[i];
    if (ok != tr.ok) {
      tr.ok = ok;
      if (ok) spdlog::info("ha: tracked {} is back", tr.name);
      else
        spdlog::warn("ha: tracked {} failed: {}", tr.name,
                     t.weight == 0 ? "this unit cannot serve" : "priority lowered by " + std::to_string(t.weight));
    }
    if (!ok) {
      if (t.weight == 0) fault = true;
      penalty += t.weight;
    }
  }
  node_->set_tracking(penalty, fault, now);
}

void HaService::apply_events(std::uint64_t now) {
  std::uint64_t gained = 0, reassert = 0;
  std::vector<std::uint64_t> gained_records;
  for (const auto& e : node_->take_events()) {
    if (e.kind == ha::NodeEvent::Kind::kReassert) {
      spdlog::warn("ha: group {}: the peer claims it too and yields to this unit: announcing it again", e.group);
      reassert |= std::uint64_t{1} << e.group;
      continue;
    }
    if (e.kind == ha::NodeEvent::Kind::kAlarm) {
      if (e.alarm.raised)
        spdlog::warn("ha: ALARM: the {} path is silent while the peer is heard on the other (no takeover)",
                     ha::to_string(e.alarm.path));
      else if (node_->election(0).path_alive(e.alarm.path, now))
        spdlog::info("ha: the {} path hears the peer again (alarm cleared)", ha::to_string(e.alarm.path));
      else
        spdlog::info("ha: the {} path alarm ends: the peer is silent on both paths now", ha::to_string(e.alarm.path));
      continue;
    }
    const ha::Transition& t = e.transition;
    RoleChange c{.id = next_record_id_++,
                 .group = e.group,
                 .from = t.from,
                 .to = t.to,
                 .cause = t.cause,
                 .unix_ms = unix_ms(),
                 .detection_ms = t.silent_ms};
    ++by_cause_[ha::to_string(t.cause)];
    if (t.to == ha::Role::kActive) {
      gained |= std::uint64_t{1} << e.group;
      gained_records.push_back(c.id);
    }
    if (t.cause == ha::Cause::kPeerDead)
      spdlog::warn("ha: group {}: {} -> {} ({}: the peer was silent on both paths for {} ms)", e.group,
                   ha::to_string(t.from), ha::to_string(t.to), ha::to_string(t.cause), t.silent_ms);
    else
      spdlog::warn("ha: group {}: {} -> {} ({})", e.group, ha::to_string(t.from), ha::to_string(t.to),
                   ha::to_string(t.cause));
    history_.push_back(c);
    if (history_.size() > kHistory) history_.pop_front();
  }
  const std::uint64_t mask = node_->owned_mask();
  if (mask != owned_) {
    apply_ownership(mask, gained & mask, now);
    if (!gained_records.empty() && pending_) pending_->records = gained_records;
  }
  if (reassert & owned_ & ~gained) announce(reassert & owned_ & ~gained, now);
}

void HaService::apply_ownership(std::uint64_t mask, std::uint64_t gained, std::uint64_t now) {
  const std::uint64_t lost = owned_ & ~mask;
  owned_ = mask;
  // Forwarding follows the mask at the workers' next burst; ARP answers after a grace period.
  // What was given up keeps its established flows for a moment: clients and backends send to
  // this unit until the new active's gratuitous ARP reaches them.
  if (lost) rt_.ha_link->set_released_groups(lost, dpdk::monotonic_ms() + kReleasedFlowsMs);
  rt_.ha_link->set_owned_groups(mask);
  {
    std::lock_guard lock(rt_.control_mutex);
    rt_.publish_local_interfaces();
  }
  if (lost) spdlog::info("ha: released group(s) {:#x}: no VIP traffic forwarded, no ARP answered for them", lost);
  if (!gained) return;
  const std::uint32_t addresses = announce(gained, now);
  spdlog::info("ha: took group(s) {:#x}: forwarding, answering ARP, announcing {} address(es) x {}", gained, addresses,
               rt_.config.ha.garp_count);
}

std::uint32_t HaService::announce(std::uint64_t groups, std::uint64_t now) {
  // Gratuitous ARP for the groups: the VIPs of their services on ports facing clients, their
  // floating addresses on their ports.
  const std::uint64_t gained = groups;
  dpdk::Announcement a;
  a.bursts = rt_.config.ha.garp_count;
  a.interval_ms = rt_.config.ha.garp_interval_ms;
  const auto add = [&](std::size_t port, net::Ipv4Addr addr) {
    for (std::uint32_t i = 0; i < a.count; ++i)
      if (a.items[i].port == port && a.items[i].addr == addr) return;
    if (a.count < a.items.size()) a.items[a.count++] = {static_cast<std::uint8_t>(port), addr};
  };
  for (std::size_t p = 0; p < rt_.config.ports.size(); ++p) {
    const auto& pc = rt_.config.ports[p];
    if (pc.role != config::PortRole::kSouth)
      for (const auto& s : rt_.config.services)
        if (gained >> s.group & 1) add(p, s.vip);
    for (const auto& g : rt_.config.ha.groups)
      if (gained >> g.id & 1)
        for (const auto& f : g.floating_addresses)
          if (f.port == pc.name) add(p, f.address.addr);
  }
  pending_ = PendingTakeover{.generation = rt_.ha_link->announce(a), .started_ms = now, .records = {}};
  return a.count;
}

void HaService::check_announced(std::uint64_t now) {
  if (!pending_) return;
  const std::uint32_t done = rt_.ha_link->announced_generation();
  if (static_cast<std::int32_t>(done - pending_->generation) < 0) return;
  const std::uint64_t took = now - pending_->started_ms;
  for (auto& c : history_)
    if (std::find(pending_->records.begin(), pending_->records.end(), c.id) != pending_->records.end()) {
      c.takeover_ms = took;
      last_takeover_ = c;
    }
  spdlog::warn("ha: takeover complete in {} ms (forwarding, ARP answered, first gratuitous ARP burst sent)", took);
  pending_.reset();
}

std::string HaService::failover() {
  std::lock_guard lock(mutex_);
  const std::uint64_t now = now_ms();
  std::string refused = node_->failover(now);
  if (refused.empty()) {
    send_advert(now);  // tell the peer at once rather than at the next interval
    apply_events(now);
  }
  return refused;
}

std::string HaService::set_maintenance(bool on) {
  std::lock_guard lock(mutex_);
  const std::uint64_t now = now_ms();
  node_->set_maintenance(on, now);
  send_advert(now);
  apply_events(now);
  return {};
}

HaMetrics HaService::metrics() const {
  std::lock_guard lock(mutex_);
  const std::uint64_t now = now_ms();
  HaMetrics m;
  for (std::size_t i = 0; i < node_->group_count(); ++i) {
    const auto& e = node_->election(i);
    m.groups.push_back({node_->group_id(i), e.role(), e.config().priority, e.effective_priority()});
  }
  const auto& e0 = node_->election(0);
  for (std::size_t p = 0; p < ha::kPathCount; ++p) {
    m.path_alive[p] = e0.path_alive(static_cast<ha::Path>(p), now);
    m.path_alarm[p] = e0.alarm(static_cast<ha::Path>(p));
    m.adverts_sent[p] = sent_[p];
    m.adverts_received[p] = node_->accepted(static_cast<ha::Path>(p));
  }
  m.advert_errors = node_->decoder().errors();
  m.transitions = by_cause_;
  m.last_takeover = last_takeover_;
  for (const auto& t : tracked_) m.tracking_failed += t.ok ? 0 : 1;
  return m;
}

json HaService::status() const {
  const HaMetrics m = metrics();
  std::lock_guard lock(mutex_);
  const std::uint64_t now = now_ms();
  json groups = json::array();
  for (std::size_t i = 0; i < node_->group_count(); ++i) {
    const auto& e = node_->election(i);
    json g{{"id", node_->group_id(i)},
           {"role", ha::to_string(e.role())},
           {"priority", e.config().priority},
           {"effective_priority", e.effective_priority()},
           {"advertised_priority", e.advertised_priority(now)}};
    if (const auto& p = e.last_peer_advert()) {
      g["peer_role"] = ha::to_string(p->role);
      g["peer_priority"] = p->priority;
    }
    groups.push_back(std::move(g));
  }
  json paths = json::object();
  for (std::size_t p = 0; p < ha::kPathCount; ++p)
    paths[ha::to_string(static_cast<ha::Path>(p))] = {{"alive", m.path_alive[p]},
                                                      {"alarm", m.path_alarm[p]},
                                                      {"adverts_sent", m.adverts_sent[p]},
                                                      {"adverts_received", m.adverts_received[p]}};
  const auto& e0 = node_->election(0);
  json errors = json::object();
  for (std::size_t i = 0; i < ha::kAdvertErrorCount; ++i)
    errors[ha::to_string(static_cast<ha::AdvertError>(i))] = m.advert_errors[i];
  json tracking = json::array();
  for (const auto& t : tracked_) tracking.push_back({{"object", t.name}, {"ok", t.ok}, {"weight", t.weight}});
  json history = json::array();
  for (const auto& c : history_) history.push_back(change_json(c));
  json causes = json::object();
  for (const auto& [cause, n] : by_cause_) causes[cause] = n;
  const auto& ha = rt_.config.ha;
  return {{"enabled", true},
          {"unit_id", rt_.config.unit.id},
          {"ready", e0.ready()},
          {"epoch", node_->epoch()},
          {"preempt", ha.preempt},
          {"advert_interval_ms", ha.advert_interval_ms},
          {"dead_interval_ms", std::uint64_t{ha.advert_interval_ms} * ha.dead_intervals},
          {"peer",
           {{"unit_id", node_->peer_unit_id()},
            {"alive", e0.peer_alive(now)},
            {"ready", node_->peer_ready()},
            {"paths", paths}}},
          {"groups", groups},
          {"tracking", tracking},
          {"advert_errors", errors},
          {"transitions_by_cause", causes},
          {"last_failover", last_takeover_ ? change_json(*last_takeover_) : json(nullptr)},
          {"transitions", history}};
}

}  // namespace tandem
