// The health checks of every service's backends, run by a thread of their own: each backend of
// a service whose [service.health_check] is enabled is checked every interval_ms (Checker), its
// HealthState fed with the results, and `on_change` told when it goes down or comes back up.
//
//   - The port checked: health_check.port if set, else the backend's port. An all-ports service
//     (port 0) needs health_check.port; the config validation refuses one without, and a
//     backend left with no port is listed in snapshot() with "no port to check" and never
//     checked (it stays unknown, so counts as up).
//   - First checks are spread over the first interval by a hash of (service, address, port),
//     so a hundred backends do not all connect at once, and the spread is the same every run.
//   - A check's timeout is capped at the interval, so one backend never has two checks at once.
//   - Backends start unknown, which counts as up (health_state.hpp): on_change is called for
//     up -> down and down -> up only, never for a backend that was up all along.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "controlplane/config/config.hpp"
#include "controlplane/health/checker.hpp"
#include "controlplane/health/health_state.hpp"
#include "dataplane/net/addr.hpp"

namespace tandem::health {

// Called on the monitor's thread, with no lock held: it may call snapshot() and reconfigure()
// (not stop() followed by a wait, nor the destructor). `port` is the backend's as configured
// (0 for an all-ports service). `error` is the failure that took the backend down; empty when
// it comes up. It must not throw.
using HealthChangeCallback = std::function<void(const std::string& service, net::Ipv4Addr address,
                                                std::uint16_t port, bool up, const std::string& error)>;

// One monitored backend, as snapshot() sees it.
struct BackendHealth {
  std::string service;
  net::Ipv4Addr address;
  std::uint16_t port = 0;        // as configured
  std::uint16_t check_port = 0;  // the port the checks go to; 0: none (not checked)
  std::string state;             // "unknown", "up" or "down"
  bool up = true;                // what balancing should do: unknown counts as up
  std::string last_error;        // the most recent failure's text
  std::uint32_t consecutive_ok = 0;
  std::uint32_t consecutive_fail = 0;
  std::uint64_t checks = 0;
  std::uint64_t failures = 0;
  std::uint32_t last_duration_ms = 0;
  std::uint64_t ms_since_change = 0;  // since the state last changed, or since monitoring began
};

class HealthMonitor {
 public:
  // Starts the thread. Throws std::system_error when the checker cannot be set up.
  HealthMonitor(const std::vector<config::ServiceConfig>& services, HealthChangeCallback on_change);
  ~HealthMonitor();  // stop()
  HealthMonitor(const HealthMonitor&) = delete;
  HealthMonitor& operator=(const HealthMonitor&) = delete;

  // Thread-safe. A backend whose (service name, address, port, health_check) is unchanged keeps
  // its state and schedule; one that is gone, or whose check changed, is dropped (a changed one
  // starts again as unknown, without a callback); new ones are added. A backend dropped while
  // down gets no "up" callback: the caller rebuilding its pool from the new config should take
  // every backend as up except those snapshot() says are down.
  void reconfigure(const std::vector<config::ServiceConfig>& services);
  // Thread-safe. Sorted by service, address, port.
  std::vector<BackendHealth> snapshot() const;
  // Stops the checks and joins the thread (from the callback: only asks it to stop).
  void stop();

 private:
  struct Key {
    std::string service;
    net::Ipv4Addr address;
    std::uint16_t port = 0;
    auto operator<=>(const Key&) const = default;
  };
  struct Entry {
    config::HealthCheckConfig check;
    std::uint16_t check_port = 0;
    HealthState state;
    std::uint64_t next_due_ms = 0;
    std::optional<std::uint64_t> in_flight;  // the id of its check under way
  };
  struct Change {
    Key key;
    bool up = true;
    std::string error;
  };

  std::uint64_t now_ms() const;
  void run();
  // With mutex_ held: start the checks that are due; returns how long poll() may wait.
  int start_due_checks(std::uint64_t now);
  void start_check(const Key& key, Entry& e);
  // With mutex_ held: feed results to their backends; state changes go to `changes`.
  void record_results(const std::vector<CheckResult>& results, std::vector<Change>& changes);

  HealthChangeCallback on_change_;
  const std::chrono::steady_clock::time_point epoch_ = std::chrono::steady_clock::now();
  Checker checker_;  // used by the thread only, but for wake()
  mutable std::mutex mutex_;
  std::map<Key, Entry> entries_;
  std::unordered_map<std::uint64_t, Key> in_flight_;  // check id -> its backend
  std::vector<std::uint64_t> to_cancel_;  // checks of dropped backends, for the thread to cancel
  std::uint64_t next_check_id_ = 1;
  bool stopping_ = false;
  std::thread thread_;  // last: starts once everything above is ready
};

}  // namespace tandem::health
