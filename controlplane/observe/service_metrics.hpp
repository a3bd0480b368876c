// The per service and per backend traffic counters as Prometheus families (IPVS's per-service
// and per-real-server stats). Pure: service_counters.hpp gathers the figures.
#pragma once

#include <vector>

#include "controlplane/observe/prometheus.hpp"
#include "controlplane/observe/service_counters.hpp"

namespace tandem::observe {

// Adds, always (without samples when there are no services):
//   tandem_service_connections_total{service}          counter
//   tandem_service_connections_active{service}         gauge
//   tandem_service_packets_total{service,direction}    counter, direction "in" | "out"
//   tandem_service_bytes_total{service,direction}      counter
// and the same four as tandem_backend_*{service,backend="address:port",...}. A service or
// backend without a slot of its own (stats_id 0: the registry was full) has no series.
void add_service_metrics(prometheus::Exposition& e, const std::vector<ServiceCounters>& services);

}  // namespace tandem::observe
