#include "controlplane/observe/service_counters.hpp"

namespace tandem::observe {

TrafficTotals& TrafficTotals::operator+=(const TrafficCounters& c) {
  connections += c.created.get();
  active += c.active();
  packets_in += c.packets[0].get();
  packets_out += c.packets[1].get();
  bytes_in += c.bytes[0].get();
  bytes_out += c.bytes[1].get();
  return *this;
}

namespace {

// A slot summed over the workers; slot 0 is shared by everything without a slot: not reported.
template <std::size_t N>
TrafficTotals sum(std::span<const WorkerServiceStats* const> workers,
                  std::array<TrafficCounters, N> WorkerServiceStats::*slots, std::uint32_t id) {
  TrafficTotals t;
  if (id == kUnattributedStats || id >= N) return t;
  for (const WorkerServiceStats* w : workers)
    if (w) t += (w->*slots)[id];
  return t;
}

}  // namespace

std::vector<ServiceCounters> service_counters(const lb::ServiceTable& table,
                                              std::span<const WorkerServiceStats* const> workers) {
  std::vector<ServiceCounters> out;
  out.reserve(table.services().size());
  for (const lb::Service& s : table.services()) {
    ServiceCounters sc{.name = s.name,
                       .vip = s.vip,
                       .port = s.port,
                       .proto = s.proto,
                       .mode = s.mode,
                       .stats_id = s.stats_id,
                       .totals = sum(workers, &WorkerServiceStats::services, s.stats_id),
                       .backends = {}};
    sc.backends.reserve(s.backends.size());
    for (const lb::Backend& b : s.backends)
      sc.backends.push_back({.address = b.addr,
                             .port = b.port,
                             .weight = b.weight,
                             .stats_id = b.stats_id,
                             .totals = sum(workers, &WorkerServiceStats::backends, b.stats_id)});
    out.push_back(std::move(sc));
  }
  return out;
}

std::string backend_label(const BackendCounters& b) {
  return net::endpoint_string(b.address, b.port);
}

}  // namespace tandem::observe
