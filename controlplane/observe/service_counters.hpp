// Per service and per backend traffic of the running unit: the workers' counter slots
// (dataplane/counters.hpp) summed, and laid out along the current service table. Pure: no DPDK,
// no locks of its own. The caller keeps the table alive meanwhile (tandemd: hold control_mutex,
// under which new tables are published); the counters are read relaxed, so the workers never
// wait for it.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "dataplane/conntrack/forward_mode.hpp"
#include "dataplane/counters.hpp"
#include "dataplane/lb/service_table.hpp"
#include "dataplane/net/addr.hpp"

namespace tandem::observe {

// One slot summed over the workers. "in" is from the client (to the backend), "out" from the
// backend (to the client; zero for dsr and tunnel, whose replies bypass the unit).
struct TrafficTotals {
  std::uint64_t connections = 0;  // created since start
  std::uint64_t active = 0;       // in the connection tables now
  std::uint64_t packets_in = 0, packets_out = 0;
  std::uint64_t bytes_in = 0, bytes_out = 0;  // Ethernet frames as received

  TrafficTotals& operator+=(const TrafficCounters& c);
  bool operator==(const TrafficTotals&) const = default;
};

struct BackendCounters {
  net::Ipv4Addr address;
  std::uint16_t port = 0;  // 0 in an all-ports service: the client's destination port
  std::uint32_t weight = 0;
  std::uint32_t stats_id = 0;  // kUnattributedStats: no slot of its own, totals left at zero
  TrafficTotals totals;
};

struct ServiceCounters {
  std::string name;
  net::Ipv4Addr vip;
  std::uint16_t port = 0;  // 0: every port
  std::uint8_t proto = 6;
  conntrack::ForwardMode mode = conntrack::ForwardMode::kNat;
  std::uint32_t stats_id = 0;  // as BackendCounters::stats_id
  TrafficTotals totals;
  std::vector<BackendCounters> backends;  // in the table's order
};

// Every service of `table`, in its order, with its backends, and their totals over `workers`.
std::vector<ServiceCounters> service_counters(const lb::ServiceTable& table,
                                              std::span<const WorkerServiceStats* const> workers);

// "10.0.1.21:8080": how a backend is named in labels and listings.
std::string backend_label(const BackendCounters& b);

}  // namespace tandem::observe
