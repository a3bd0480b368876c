// Prometheus families of the HA control plane, state sync and the backend health checks.
#pragma once

#include <vector>

#include <nlohmann/json.hpp>

#include "controlplane/ha_service.hpp"
#include "controlplane/health/health_monitor.hpp"
#include "controlplane/observe/prometheus.hpp"

namespace tandem::observe {

void add_ha_metrics(prometheus::Exposition& e, const HaMetrics& m);
// From SyncService::status() (the same figures `tandemctl sync status` shows).
void add_sync_metrics(prometheus::Exposition& e, const nlohmann::json& status);
void add_health_metrics(prometheus::Exposition& e, const std::vector<health::BackendHealth>& backends);

}  // namespace tandem::observe
