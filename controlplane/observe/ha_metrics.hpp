// Prometheus families of the HA control plane, state sync and the backend health checks.
#pragma once

#include <vector>

#include <nlohmann/json.hpp>

#include "controlplane/ha_drill.hpp"
#include "controlplane/ha_service.hpp"
#include "controlplane/health/health_monitor.hpp"
#include "controlplane/observe/prometheus.hpp"

namespace tandem::observe {

void add_ha_metrics(prometheus::Exposition& e, const HaMetrics& m);
// From SyncService::status() (the same figures `tandemctl sync status` shows).
void add_sync_metrics(prometheus::Exposition& e, const nlohmann::json& status);
// `tandemctl ha drill`s: counts by result, and the last one's figures.
void add_drill_metrics(prometheus::Exposition& e, const DrillLog::Snapshot& drills);
void add_health_metrics(prometheus::Exposition& e, const std::vector<health::BackendHealth>& backends);

}  // namespace tandem::observe
