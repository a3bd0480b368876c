// Stable stats ids for services and backends: the slots of their traffic counters in every
// worker (dataplane/counters.hpp, WorkerServiceStats).
//
// Table positions shift whenever the control plane publishes a new service table (a service or
// backend added or removed by a reload or the ctl socket), so counters are kept by id instead.
// A service's id is keyed by its name; a backend's by (service name, address, port). Ids are
// never reused or freed: a backend removed and added again gets its old id back, so its
// Prometheus counters stay monotonic. The registry lives as long as the daemon.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "dataplane/counters.hpp"
#include "dataplane/lb/service_table.hpp"

namespace tandem::observe {

class StatsRegistry {
 public:
  // Slots per worker; slot 0 (kUnattributedStats) is never handed out.
  explicit StatsRegistry(std::size_t service_slots = kMaxServiceStats,
                         std::size_t backend_slots = kMaxBackendStats);

  // Sets stats_id of every service and backend in `services` (before ServiceTable::build): the
  // id its key got when first seen, else a new one, else (slots used up) kUnattributedStats.
  // Returns a warning to log the first time a service or backend finds no slot, else "".
  std::string assign(std::vector<lb::Service>& services);

  // The id of a key seen before; kUnattributedStats when it never was (or found no slot).
  std::uint32_t service_id(const std::string& service) const;
  std::uint32_t backend_id(const std::string& service, net::Ipv4Addr addr, std::uint16_t port) const;
  // Ids handed out so far.
  std::size_t services() const;
  std::size_t backends() const;

 private:
  using BackendKey = std::tuple<std::string, std::uint32_t, std::uint16_t>;

  mutable std::mutex mutex_;  // control-plane callers only (reload, ctl); never a worker
  std::size_t service_slots_, backend_slots_;
  std::map<std::string, std::uint32_t> services_;
  std::map<BackendKey, std::uint32_t> backends_;
  bool warned_ = false;
};

}  // namespace tandem::observe
