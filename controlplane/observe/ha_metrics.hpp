// Prometheus families of the HA control plane and the backend health checks.
#pragma once

#include <vector>

#include "controlplane/ha_service.hpp"
#include "controlplane/health/health_monitor.hpp"
#include "controlplane/observe/prometheus.hpp"

namespace tandem::observe {

void add_ha_metrics(prometheus::Exposition& e, const HaMetrics& m);
void add_health_metrics(prometheus::Exposition& e, const std::vector<health::BackendHealth>& backends);

}  // namespace tandem::observe
