#include "controlplane/observe/ha_metrics.hpp"

#include <string>

namespace tandem::observe {

using prometheus::MetricType;

void add_sync_metrics(prometheus::Exposition& e, const nlohmann::json& s) {
  const auto num = [](const nlohmann::json& v) { return v.is_number() ? v.get<double>() : 0.0; };
  e.family("tandem_sync_ready", "1 when this unit holds the peer's connections (its bulk resync completed).",
           MetricType::kGauge)
      .add({}, s.value("ready", false) ? 1 : 0);
  e.family("tandem_sync_alarm", "1 while messages on the sync link fail authentication.", MetricType::kGauge)
      .add({}, s.value("alarm", false) ? 1 : 0);
  const auto& lag = s["lag"];
  e.family("tandem_sync_lag_entries", "Changes handed to the sync thread and not yet acked by the peer (RPO, entries).",
           MetricType::kGauge)
      .add({}, num(lag["entries"]));
  e.family("tandem_sync_lag_ms", "Age of the oldest change not yet acked by the peer (RPO, time).", MetricType::kGauge)
      .add({}, num(lag["ms"]));
  e.family("tandem_sync_lag_max_ms", "The largest replication lag seen since the start.", MetricType::kGauge)
      .add({}, num(lag["max_ms"]));
  const auto& send = s["send"];
  const auto& recv = s["receive"];
  const auto counter = [&](const char* name, const char* help, double v) {
    e.family(name, help, MetricType::kCounter).add({}, v);
  };
  counter("tandem_sync_messages_sent_total", "Sequenced messages sent (first transmissions).", num(send["messages"]));
  counter("tandem_sync_records_sent_total", "Connection records sent.", num(send["records"]));
  counter("tandem_sync_retransmits_total", "Messages sent again (not acked in time, or a hole the selective ack showed).",
          num(send["retransmits"]));
  counter("tandem_sync_gave_up_total", "Messages given up after the last retransmission.", num(send["gave_up"]));
  counter("tandem_sync_backpressure_total", "Records the full send window refused for a while.", num(send["backpressure"]));
  counter("tandem_sync_ring_dropped_total", "Changes lost: a worker's ring to the sync thread was full.",
          num(send["ring_dropped"]));
  counter("tandem_sync_messages_received_total", "Authentic, valid messages from the peer.", num(recv["messages"]));
  counter("tandem_sync_messages_skipped_total", "Messages the peer gave up on before they arrived (a gap: resync).",
          num(recv["skipped"]));
  auto& errors = e.family("tandem_sync_errors_total", "Messages refused, by reason (bad_auth: wrong key).",
                          MetricType::kCounter);
  for (const auto& [reason, n] : s["errors"].items()) errors.add({{"reason", reason}}, num(n));
  auto& apply = e.family("tandem_sync_apply_total", "The peer's records applied by the workers, by result.",
                         MetricType::kCounter);
  for (const char* r : {"created", "refreshed", "deleted", "absent", "conflict", "table_full", "bad_record"})
    apply.add({{"result", r}}, num(s["apply"][r]));
  const auto& hold = s["hold"];
  e.family("tandem_sync_holding", "1 while new connections' first packets wait for the peer's ack (sync mode).",
           MetricType::kGauge)
      .add({}, hold.value("holding", false) ? 1 : 0);
  auto& released = e.family("tandem_sync_held_packets_total",
                            "Sync mode: new connections' first packets, by how they left the hold queue.",
                            MetricType::kCounter);
  released.add({{"outcome", "acked"}}, num(hold["released_acked"]))
      .add({{"outcome", "timeout"}}, num(hold["released_timeout"]))
      .add({{"outcome", "not_held"}}, num(hold["not_held"]));
  const auto& resync = s["resync"];
  counter("tandem_sync_resyncs_completed_total", "Bulk resyncs this unit received whole.", num(resync["completed"]));
  counter("tandem_sync_resyncs_served_total", "Bulk resyncs this unit sent the peer.", num(resync["served"]));
  const auto& cfg = s["config"];
  e.family("tandem_sync_config_match", "1 when the peer's services equal this unit's, 0 when they differ.",
           MetricType::kGauge)
      .add({}, cfg["match"].is_boolean() ? (cfg["match"].get<bool>() ? 1 : 0) : 1);
  e.family("tandem_sync_config_conflict", "1 when each unit changed its services and neither is newer (never merged).",
           MetricType::kGauge)
      .add({}, cfg.contains("relation") && cfg["relation"] == "conflict" ? 1 : 0);
  const auto& pushes = cfg["pushes"];
  e.family("tandem_sync_config_pushes_total", "Services pushes: sent to the peer, received, applied, refused (not "
           "newer, or compare mode), errors (incomplete, unreadable, not applicable).", MetricType::kCounter)
      .add({{"event", "sent"}}, num(pushes["sent"]))
      .add({{"event", "received"}}, num(pushes["received"]))
      .add({{"event", "applied"}}, num(pushes["applied"]))
      .add({{"event", "refused"}}, num(pushes["refused"]))
      .add({{"event", "errors"}}, num(pushes["errors"]));
}

void add_drill_metrics(prometheus::Exposition& e, const DrillLog::Snapshot& d) {
  e.family("tandem_ha_drills_total", "Drills (`tandemctl ha drill`) run on this unit, by result.", MetricType::kCounter)
      .add({{"result", "ok"}}, static_cast<double>(d.ok))
      .add({{"result", "failed"}}, static_cast<double>(d.failed));
  if (!d.last) return;
  const auto& l = *d.last;
  const auto num = [](const nlohmann::json& v) { return v.is_number() ? v.get<double>() : 0.0; };
  e.family("tandem_ha_drill_last_peer_active_ms", "The last drill: milliseconds from the request until the peer's "
           "adverts claimed the groups.", MetricType::kGauge).add({}, num(l["peer_active_ms"]));
  e.family("tandem_ha_drill_last_connections", "The last drill: connections this unit held, and the changes the peer "
           "had not acked at the handover.", MetricType::kGauge)
      .add({{"kind", "held"}}, num(l["connections_held"]))
      .add({{"kind", "unacked"}}, num(l["unacked_at_handover"]));
}

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
