#include "controlplane/observe/ha_metrics.hpp"

#include <string>

namespace tandem::observe {

using prometheus::MetricType;

void add_ha_metrics(prometheus::Exposition& e, const HaMetrics& m) {
  auto& role = e.family("tandem_ha_role", "1 for this unit's role in each VIP group (init, standby, active, maintenance).",
                        MetricType::kGauge);
  for (const auto& g : m.groups)
    for (const auto r : {ha::Role::kInit, ha::Role::kStandby, ha::Role::kActive, ha::Role::kMaintenance})
      role.add({{"group", std::to_string(g.id)}, {"role", ha::to_string(r)}}, g.role == r ? 1 : 0);
  auto& prio = e.family("tandem_ha_priority", "Configured and effective (after tracking) priority per VIP group.",
                        MetricType::kGauge);
  for (const auto& g : m.groups) {
    prio.add({{"group", std::to_string(g.id)}, {"kind", "configured"}}, g.priority);
    prio.add({{"group", std::to_string(g.id)}, {"kind", "effective"}}, g.effective_priority);
  }
  auto& alive = e.family("tandem_ha_peer_path_alive", "1 while the peer's adverts arrive on the path.", MetricType::kGauge);
  auto& alarm = e.family("tandem_ha_path_alarm", "1 while the path is silent and the other still hears the peer.",
                         MetricType::kGauge);
  auto& sent = e.family("tandem_ha_adverts_sent_total", "Adverts sent per path (data: handed to the fast path).",
                        MetricType::kCounter);
  auto& received = e.family("tandem_ha_adverts_received_total", "Adverts from the peer accepted per path.",
                            MetricType::kCounter);
  for (std::size_t p = 0; p < ha::kPathCount; ++p) {
    const std::string path = ha::to_string(static_cast<ha::Path>(p));
    alive.add({{"path", path}}, m.path_alive[p] ? 1 : 0);
    alarm.add({{"path", path}}, m.path_alarm[p] ? 1 : 0);
    sent.add({{"path", path}}, m.adverts_sent[p]);
    received.add({{"path", path}}, m.adverts_received[p]);
  }
  auto& refused = e.family("tandem_ha_adverts_refused_total", "Adverts refused, by reason (bad_auth: wrong key).",
                           MetricType::kCounter);
  for (std::size_t i = 0; i < ha::kAdvertErrorCount; ++i)
    refused.add({{"reason", ha::to_string(static_cast<ha::AdvertError>(i))}}, m.advert_errors[i]);
  auto& transitions = e.family("tandem_ha_transitions_total", "Role changes, by cause.", MetricType::kCounter);
  for (const auto& [cause, n] : m.transitions) transitions.add({{"cause", cause}}, n);
  e.family("tandem_ha_tracking_failed", "Tracked objects failing now.", MetricType::kGauge).add({}, m.tracking_failed);
  if (m.last_takeover) {
    const auto& t = *m.last_takeover;
    if (t.cause == ha::Cause::kPeerDead)
      e.family("tandem_ha_last_detection_ms",
               "Last takeover after the peer died: how long it had been silent on both paths.", MetricType::kGauge)
          .add({{"group", std::to_string(t.group)}}, t.detection_ms);
    if (t.takeover_ms)
      e.family("tandem_ha_last_takeover_ms", "Last takeover: from the decision to the first gratuitous ARP burst.",
               MetricType::kGauge)
          .add({{"group", std::to_string(t.group)}, {"cause", ha::to_string(t.cause)}}, *t.takeover_ms);
  }
}

void add_health_metrics(prometheus::Exposition& e, const std::vector<health::BackendHealth>& backends) {
  if (backends.empty()) return;
  auto& up = e.family("tandem_backend_health_up",
                      "1 while the backend's health check passes (or has not failed yet), 0 while it is down.",
                      MetricType::kGauge);
  auto& checks = e.family("tandem_backend_health_checks_total", "Health checks run.", MetricType::kCounter);
  auto& failures = e.family("tandem_backend_health_failures_total", "Health checks failed.", MetricType::kCounter);
  for (const auto& b : backends) {
    const std::vector<prometheus::Label> labels = {{"service", b.service},
                                                   {"backend", b.address.to_string() + ":" + std::to_string(b.port)}};
    up.add(labels, b.up ? 1 : 0);
    checks.add(labels, b.checks);
    failures.add(labels, b.failures);
  }
}

}  // namespace tandem::observe
