#include "controlplane/observe/telemetry.hpp"

#include <rte_telemetry.h>

#include <string>

#include "controlplane/runtime.hpp"

namespace tandem::observe {
namespace {

const Runtime* g_runtime = nullptr;

// /tandem/info: who this unit is and what it runs.
int info_cmd(const char*, const char*, rte_tel_data* d) {
  const Runtime& rt = *g_runtime;
  std::lock_guard lock(rt.control_mutex);
  rte_tel_data_start_dict(d);
  rte_tel_data_add_dict_int(d, "unit_id", static_cast<int>(rt.config.unit.id));
  rte_tel_data_add_dict_string(d, "unit_name", rt.config.unit.name.c_str());
  rte_tel_data_add_dict_string(d, "version", TANDEM_VERSION);
  rte_tel_data_add_dict_int(d, "workers", static_cast<int>(rt.workers.size()));
  rte_tel_data_add_dict_int(d, "ports", static_cast<int>(rt.ports.size()));
  const auto up = std::chrono::steady_clock::now() - rt.started;
  rte_tel_data_add_dict_u64(d, "uptime_s", static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(up).count()));
  return 0;
}

// /tandem/counters: a flat dictionary, "<port>/<counter>", "drop/<reason>", "handled/<event>",
// "worker/<counter>" (telemetry keys allow letters, digits, '_' and '/').
int counters_cmd(const char*, const char*, rte_tel_data* d) {
  std::lock_guard lock(g_runtime->control_mutex);
  const CounterTotals t = g_runtime->counters();
  rte_tel_data_start_dict(d);
  for (const auto& p : t.ports) {
    rte_tel_data_add_dict_u64(d, (p.name + "/rx_packets").c_str(), p.rx_packets);
    rte_tel_data_add_dict_u64(d, (p.name + "/rx_bytes").c_str(), p.rx_bytes);
    rte_tel_data_add_dict_u64(d, (p.name + "/tx_packets").c_str(), p.tx_packets);
    rte_tel_data_add_dict_u64(d, (p.name + "/tx_bytes").c_str(), p.tx_bytes);
    rte_tel_data_add_dict_u64(d, (p.name + "/tx_dropped").c_str(), p.tx_dropped);
  }
  for (std::size_t i = 0; i < kHandledCount; ++i)
    rte_tel_data_add_dict_u64(d, (std::string("handled/") + to_string(static_cast<Handled>(i))).c_str(), t.handled[i]);
  for (std::size_t i = 0; i < kDropReasonCount; ++i)
    rte_tel_data_add_dict_u64(d, (std::string("drop/") + to_string(static_cast<DropReason>(i))).c_str(), t.drops[i]);
  // Neighbour cache and connection table figures, as the workers last published them (at
  // most 200 ms old).
  neigh::NeighStats n;
  conntrack::ConnStats cs;
  std::uint64_t connections = 0, capacity = 0, memory = 0;
  for (const auto& w : g_runtime->workers) {
    capacity += w->conn_capacity();
    memory += w->conn_memory_bytes();
    auto& snap = w->neighbour_snapshot();
    std::lock_guard snap_lock(snap.mutex);
    n += snap.stats;
    cs += snap.conn_stats;
    connections += snap.connections;
  }
  rte_tel_data_add_dict_u64(d, "conntrack/active", connections);
  rte_tel_data_add_dict_u64(d, "conntrack/capacity", capacity);
  rte_tel_data_add_dict_u64(d, "conntrack/memory_bytes", memory);
  rte_tel_data_add_dict_u64(d, "conntrack/entry_bytes", sizeof(conntrack::ConnEntry));
  rte_tel_data_add_dict_u64(d, "conntrack/created", cs.inserts);
  rte_tel_data_add_dict_u64(d, "conntrack/expired", cs.expired);
  rte_tel_data_add_dict_u64(d, "conntrack/insert_failed_full", cs.insert_failed_full);
  rte_tel_data_add_dict_u64(d, "conntrack/insert_failed_exists", cs.insert_failed_exists);
  rte_tel_data_add_dict_u64(d, "conntrack/lookups_hit", cs.lookups_hit);
  rte_tel_data_add_dict_u64(d, "conntrack/lookups_miss", cs.lookups_miss);
  rte_tel_data_add_dict_u64(d, "neighbour/created", n.created);
  rte_tel_data_add_dict_u64(d, "neighbour/updated", n.updated);
  rte_tel_data_add_dict_u64(d, "neighbour/mac_changed", n.mac_changed);
  rte_tel_data_add_dict_u64(d, "neighbour/evicted", n.evicted);
  rte_tel_data_add_dict_u64(d, "neighbour/table_full", n.table_full);
  rte_tel_data_add_dict_u64(d, "neighbour/expired", n.expired);
  rte_tel_data_add_dict_u64(d, "neighbour/failed", n.failed);
  for (std::size_t i = 0; i < g_runtime->steering.size(); ++i) {
    if (!g_runtime->steering[i]) continue;
    const auto v = g_runtime->steering[i]->verdicts();
    for (int k = 0; k < TANDEM_STEER_VERDICT_COUNT; ++k)
      rte_tel_data_add_dict_u64(d, (g_runtime->config.ports[i].name + "/xdp/" + xdp::verdict_name(k)).c_str(), v[k]);
  }
  rte_tel_data_add_dict_u64(d, "worker/polls", t.polls);
  rte_tel_data_add_dict_u64(d, "worker/busy_polls", t.busy_polls);
  rte_tel_data_add_dict_u64(d, "worker/idle_sleeps", t.idle_sleeps);
  return 0;
}

// /tandem/neighbours: one string per entry, "<port> <address> <mac> <state> <age_ms>", as the
// first worker last published them (every worker learns the same entries).
int neighbours_cmd(const char*, const char*, rte_tel_data* d) {
  rte_tel_data_start_array(d, RTE_TEL_STRING_VAL);
  std::lock_guard runtime_lock(g_runtime->control_mutex);
  if (g_runtime->workers.empty()) return 0;
  auto& snap = g_runtime->workers.front()->neighbour_snapshot();
  std::lock_guard lock(snap.mutex);
  for (const auto& row : snap.rows) {
    const auto& e = row.entry;
    const std::uint64_t age = snap.taken_ms >= e.confirmed_ms ? snap.taken_ms - e.confirmed_ms : 0;
    const std::string& port = row.port_index < g_runtime->config.ports.size() ? g_runtime->config.ports[row.port_index].name : "?";
    const std::string line = port + " " + e.ip.to_string() + " " + e.mac.to_string() + " " +
                             neigh::to_string(e.state) + " " + std::to_string(age);
    if (rte_tel_data_add_array_string(d, line.c_str()) != 0) break;  // array full
  }
  return 0;
}

// /tandem/blocklist: one string per prefix and steered port, "<port> <prefix> <packets> <bytes>".
int blocklist_cmd(const char*, const char*, rte_tel_data* d) {
  rte_tel_data_start_array(d, RTE_TEL_STRING_VAL);
  std::lock_guard lock(g_runtime->control_mutex);
  for (std::size_t i = 0; i < g_runtime->steering.size(); ++i) {
    if (!g_runtime->steering[i]) continue;
    for (const auto& h : g_runtime->steering[i]->blocklist_hits()) {
      const std::string line = g_runtime->config.ports[i].name + " " + h.prefix.to_string() + " " +
                               std::to_string(h.packets) + " " + std::to_string(h.bytes);
      if (rte_tel_data_add_array_string(d, line.c_str()) != 0) return 0;
    }
  }
  return 0;
}

// /tandem/services[,NAME]: one string per service (only NAME's when given), each followed by one
// per backend:
//   "service <name> <vip>:<port>/<tcp|udp> <mode> <connections> <active> <packets_in> <packets_out> <bytes_in> <bytes_out>"
//   "backend <service> <address>:<port> <weight> <connections> <active> <packets_in> <packets_out> <bytes_in> <bytes_out>"
// The figures of the tandem_service_* and tandem_backend_* metrics. A string longer than
// telemetry's 128 bytes is cut; the array holds at most 512 (ask for one service then).
int services_cmd(const char*, const char* params, rte_tel_data* d) {
  rte_tel_data_start_array(d, RTE_TEL_STRING_VAL);
  const std::string only = params ? params : "";
  const auto figures = [](const TrafficTotals& t) {
    return std::to_string(t.connections) + " " + std::to_string(t.active) + " " + std::to_string(t.packets_in) + " " +
           std::to_string(t.packets_out) + " " + std::to_string(t.bytes_in) + " " + std::to_string(t.bytes_out);
  };
  std::lock_guard lock(g_runtime->control_mutex);
  for (const ServiceCounters& s : g_runtime->service_counters()) {
    if (!only.empty() && s.name != only) continue;
    const std::string line = "service " + s.name + " " + s.vip.to_string() + ":" + std::to_string(s.port) + "/" +
                             (s.proto == 17 ? "udp" : "tcp") + " " + conntrack::to_string(s.mode) + " " +
                             figures(s.totals);
    if (rte_tel_data_add_array_string(d, line.c_str()) < 0) return 0;  // array full (> 0: cut)
    for (const BackendCounters& b : s.backends) {
      const std::string row = "backend " + s.name + " " + backend_label(b) + " " + std::to_string(b.weight) + " " +
                              figures(b.totals);
      if (rte_tel_data_add_array_string(d, row.c_str()) < 0) return 0;
    }
  }
  return 0;
}

}  // namespace

void register_telemetry(const Runtime& runtime) {
  g_runtime = &runtime;
  rte_telemetry_register_cmd("/tandem/info", info_cmd, "Unit identity, version, workers, ports, uptime.");
  rte_telemetry_register_cmd("/tandem/counters", counters_cmd,
                             "Fast-path counters: per port, handled events, drops by reason.");
  rte_telemetry_register_cmd("/tandem/neighbours", neighbours_cmd,
                             "Neighbour cache: \"port address mac state age_ms\" per entry.");
  rte_telemetry_register_cmd("/tandem/blocklist", blocklist_cmd,
                             "XDP blocklist hits: \"port prefix packets bytes\" per prefix.");
  rte_telemetry_register_cmd("/tandem/services", services_cmd,
                             "Traffic per service and backend (param: a service name): connections, active, packets and bytes in/out.");
}

}  // namespace tandem::observe
