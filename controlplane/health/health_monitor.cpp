#include "controlplane/health/health_monitor.hpp"

#include <algorithm>
#include <limits>
#include <utility>

namespace tandem::health {

namespace {

// FNV-1a: a spread of first checks that is the same in every run (std::hash need not be).
std::uint64_t stable_hash(const std::string& service, net::Ipv4Addr address, std::uint16_t port) {
  std::uint64_t h = 14695981039346656037ull;
  const auto mix = [&h](std::uint8_t byte) { h = (h ^ byte) * 1099511628211ull; };
  for (char c : service) mix(static_cast<std::uint8_t>(c));
  for (int shift = 24; shift >= 0; shift -= 8) mix(static_cast<std::uint8_t>(address.value >> shift));
  mix(static_cast<std::uint8_t>(port >> 8));
  mix(static_cast<std::uint8_t>(port));
  return h;
}

std::uint16_t port_to_check(const config::ServiceConfig& s, const config::BackendConfig& b) {
  if (s.health_check.port != 0) return s.health_check.port;
  return b.port != 0 ? b.port : s.port;
}

std::uint32_t interval_of(const config::HealthCheckConfig& c) { return std::max(c.interval_ms, 1u); }

}  // namespace

HealthMonitor::HealthMonitor(const std::vector<config::ServiceConfig>& services, HealthChangeCallback on_change)
    : on_change_(std::move(on_change)) {
  reconfigure(services);
  thread_ = std::thread([this] { run(); });
}

HealthMonitor::~HealthMonitor() { stop(); }

std::uint64_t HealthMonitor::now_ms() const {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - epoch_).count());
}

void HealthMonitor::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  checker_.wake();
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

void HealthMonitor::reconfigure(const std::vector<config::ServiceConfig>& services) {
  std::lock_guard lock(mutex_);
  const std::uint64_t now = now_ms();
  std::map<Key, Entry> next;
  for (const auto& s : services) {
    if (!s.health_check.enabled()) continue;
    for (const auto& b : s.backends) {
      Key key{s.name, b.address, b.port};
      if (next.contains(key)) continue;  // listed twice: one set of checks
      const std::uint16_t check_port = port_to_check(s, b);
      if (const auto it = entries_.find(key);
          it != entries_.end() && it->second.check == s.health_check && it->second.check_port == check_port) {
        next.emplace(std::move(key), std::move(it->second));
        entries_.erase(it);
        continue;
      }
      const std::uint64_t first_due = now + stable_hash(s.name, b.address, b.port) % interval_of(s.health_check);
      next.emplace(std::move(key), Entry{s.health_check, check_port,
                                         HealthState(s.health_check.rise, s.health_check.fall, now), first_due, {}});
    }
  }
  // What is left was removed or changed: its check in flight, if any, is the thread's to cancel.
  for (auto& [key, e] : entries_) {
    if (!e.in_flight) continue;
    in_flight_.erase(*e.in_flight);
    to_cancel_.push_back(*e.in_flight);
  }
  entries_ = std::move(next);
  checker_.wake();  // new backends may be due before the thread's current wait ends
}

std::vector<BackendHealth> HealthMonitor::snapshot() const {
  std::lock_guard lock(mutex_);
  const std::uint64_t now = now_ms();
  std::vector<BackendHealth> out;
  out.reserve(entries_.size());
  for (const auto& [key, e] : entries_) {
    const HealthState& st = e.state;
    out.push_back({key.service, key.address, key.port, e.check_port, to_string(st.health()), st.up(),
                   e.check_port == 0 ? std::string("no port to check") : st.last_error(), st.consecutive_ok(),
                   st.consecutive_fail(), st.checks(), st.failures(), st.last_duration_ms(),
                   now - std::min(now, st.last_change_ms())});
  }
  return out;
}

void HealthMonitor::start_check(const Key& key, Entry& e) {
  const auto& c = e.check;
  CheckRequest r;
  r.id = next_check_id_++;
  r.address = key.address;
  r.port = e.check_port;
  r.type = c.type == config::HealthCheckType::kHttp ? CheckType::kHttp : CheckType::kTcp;
  r.timeout_ms = std::min(c.timeout_ms, interval_of(c));
  r.http_path = c.http_path;
  r.http_host = c.http_host;
  r.http_status = c.http_status;
  r.http_body = c.http_body;
  checker_.start(std::move(r));  // ids are never reused: it cannot be refused
  e.in_flight = next_check_id_ - 1;
  in_flight_.emplace(*e.in_flight, key);
}

int HealthMonitor::start_due_checks(std::uint64_t now) {
  std::uint64_t wait = std::numeric_limits<std::uint64_t>::max();
  for (auto& [key, e] : entries_) {
    if (e.check_port == 0 || e.in_flight) continue;  // one in flight: the next is due once it ends
    if (e.next_due_ms <= now) {
      start_check(key, e);
      // A steady cadence; after a stall (a slow callback) start afresh rather than catch up.
      e.next_due_ms += interval_of(e.check);
      if (e.next_due_ms <= now) e.next_due_ms = now + interval_of(e.check);
      continue;
    }
    wait = std::min(wait, e.next_due_ms - now);
  }
  return wait == std::numeric_limits<std::uint64_t>::max() ? -1 : static_cast<int>(std::min<std::uint64_t>(wait, 1 << 30));
}

void HealthMonitor::record_results(const std::vector<CheckResult>& results, std::vector<Change>& changes) {
  const std::uint64_t now = now_ms();
  for (const auto& r : results) {
    const auto it = in_flight_.find(r.id);
    if (it == in_flight_.end()) continue;  // its backend was dropped meanwhile
    Entry& e = entries_.at(it->second);
    e.in_flight.reset();
    if (e.state.record(r.ok, r.error, now, r.duration_ms)) changes.push_back({it->second, e.state.up(), r.error});
    in_flight_.erase(it);
  }
}

void HealthMonitor::run() {
  std::vector<Change> changes;
  for (;;) {
    int wait_ms = -1;
    {
      std::lock_guard lock(mutex_);
      if (stopping_) break;
      for (const std::uint64_t id : to_cancel_) checker_.cancel(id);
      to_cancel_.clear();
      wait_ms = start_due_checks(now_ms());
    }
    const std::vector<CheckResult> results = checker_.poll(wait_ms);
    {
      std::lock_guard lock(mutex_);
      record_results(results, changes);
    }
    if (on_change_)
      for (const auto& c : changes) on_change_(c.key.service, c.key.address, c.key.port, c.up, c.error);
    changes.clear();
  }
  std::lock_guard lock(mutex_);
  for (const auto& [id, key] : in_flight_) checker_.cancel(id);
  for (const std::uint64_t id : to_cancel_) checker_.cancel(id);
  in_flight_.clear();
  to_cancel_.clear();
  for (auto& [key, e] : entries_) e.in_flight.reset();
}

}  // namespace tandem::health
