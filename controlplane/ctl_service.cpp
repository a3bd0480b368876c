#include "controlplane/ctl_service.hpp"
#include "controlplane/ha_service.hpp"
#include "controlplane/ha_drill.hpp"
#include "controlplane/sync_service.hpp"
#include "controlplane/health_service.hpp"

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <thread>

#include <rte_cycles.h>
#include <spdlog/spdlog.h>

#include "controlplane/config/config_diff.hpp"
#include "controlplane/conn_queries.hpp"
#include "controlplane/config/to_toml.hpp"
#include "controlplane/ctl/access.hpp"
#include "controlplane/ctl/service_edit.hpp"
#include "controlplane/reload.hpp"
#include "controlplane/link_state.hpp"
#include "controlplane/runtime.hpp"
#include "dataplane/conntrack/conn_query.hpp"
#include "dataplane/port.hpp"

namespace tandem {
namespace {

using ctl::ErrorCode;
using ctl::Outcome;
using nlohmann::json;

// A drill waits this long for the peer to claim the groups (it takes milliseconds).
constexpr std::uint64_t kDrillTimeoutMs = 3000;

// How long a connection query may take before it is withdrawn (a worker that cannot scan its
// table in this time is stuck, not busy: a slice of 16k entries runs every loop iteration).

std::string who(const ctl::Peer& p) {
  return "uid " + std::to_string(p.uid) + " gid " + std::to_string(p.gid) + " pid " + std::to_string(p.pid);
}

std::string endpoint(std::uint32_t addr, std::uint16_t port) { return net::endpoint_string(net::Ipv4Addr{addr}, port); }

// "standalone" without [ha]; else each group's role ("active", or "1:active 2:standby").
std::string ha_role(const Runtime& rt) {
  if (!rt.ha) return "standalone";
  const json groups = rt.ha->status()["groups"];
  if (groups.size() == 1) return groups[0].value("role", "");
  std::string out;
  for (const auto& g : groups)
    out += (out.empty() ? "" : " ") + std::to_string(g.value("id", 0)) + ":" + g.value("role", "");
  return out;
}

json address_list(const std::vector<net::Ipv4Prefix>& v) {
  json a = json::array();
  for (const auto& p : v) a.push_back(p.to_string());
  return a;
}

// A TCP state as the protocol spells it: "established" (tcp_state.hpp's names, lower case).
std::string state_name(conntrack::TcpState st) {
  std::string s = conntrack::to_string(st);
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// The workers' clock (worker.cpp): TSC milliseconds.
std::uint64_t worker_now_ms() { return rte_rdtsc() / (rte_get_tsc_hz() / 1000); }

void add_totals(json& j, const observe::TrafficTotals& t) {
  j["connections"] = t.connections;
  j["active"] = t.active;
  j["packets_in"] = t.packets_in;
  j["packets_out"] = t.packets_out;
  j["bytes_in"] = t.bytes_in;
  j["bytes_out"] = t.bytes_out;
}

// A configured service with its traffic, when the published table has it (`counters`: the
// table's service of that name, or null).
// The health checks' view of one backend, or null when it has no check.
const health::BackendHealth* health_of(const std::vector<health::BackendHealth>& all, const std::string& service,
                                       const config::BackendConfig& b) {
  for (const auto& h : all)
    if (h.service == service && h.address == b.address && h.port == b.port) return &h;
  return nullptr;
}

json service_json(const config::ServiceConfig& s, const observe::ServiceCounters* counters,
                  const std::vector<health::BackendHealth>& health) {
  json backends = json::array();
  for (const auto& b : s.backends) {
    json j = {{"address", b.address.to_string()}, {"port", b.port}, {"weight", b.weight}, {"enabled", b.enabled}};
    // Health: "up", "down", "unknown" (not checked yet), or "none" (no health check).
    j["health"] = "none";
    if (const auto* h = health_of(health, s.name, b)) {
      j["health"] = h->state;
      if (!h->last_error.empty()) j["health_error"] = h->last_error;
      j["health_checks"] = h->checks;
      j["health_failures"] = h->failures;
    }
    if (counters)
      for (const auto& c : counters->backends)
        if (c.address == b.address && c.port == b.port) add_totals(j, c.totals);
    backends.push_back(std::move(j));
  }
  json locals = json::array();
  for (const auto& a : s.local_addresses) locals.push_back(a.to_string());
  json j = {{"name", s.name}, {"vip", s.vip.to_string()}, {"port", s.port}, {"protocol", config::to_string(s.protocol)},
            {"mode", conntrack::to_string(s.mode)}, {"maglev_size", s.maglev_size}, {"local_addresses", locals},
            {"backends", backends}};
  if (counters) add_totals(j, counters->totals);
  return j;
}

// --- connections --------------------------------------------------------------------------------

struct QueryPlan {
  conntrack::ConnFilter filter;
  std::optional<Outcome> error;
};

QueryPlan plan_query(const Runtime& rt, const json& a) {
  QueryPlan q;
  auto& f = q.filter;
  if (a.contains("service")) {
    const auto name = a["service"].get<std::string>();
    const auto& svcs = rt.config.services;
    const auto it = std::find_if(svcs.begin(), svcs.end(), [&](const auto& s) { return s.name == name; });
    if (it == svcs.end()) {
      q.error = Outcome::failure(ErrorCode::kNotFound, "no service named " + name);
      return q;
    }
    f.vip = it->vip.value;
    f.proto = static_cast<std::uint8_t>(it->protocol);
    if (it->port != 0) f.vip_port = it->port;
  }
  if (a.contains("vip")) f.vip = net::Ipv4Addr::parse(a["vip"].get<std::string>())->value;
  if (a.contains("port")) f.vip_port = a["port"].get<std::uint16_t>();
  if (a.contains("client")) f.client = net::Ipv4Addr::parse(a["client"].get<std::string>())->value;
  if (a.contains("backend")) f.backend = net::Ipv4Addr::parse(a["backend"].get<std::string>())->value;
  if (a.contains("state")) {
    const auto s = a["state"].get<std::string>();
    if (s == "udp") {
      f.udp_only = true;
    } else {
      for (std::size_t i = 0; i < conntrack::kTcpStateCount; ++i)
        if (s == state_name(static_cast<conntrack::TcpState>(i))) f.state = static_cast<conntrack::TcpState>(i);
      if (!f.state) q.error = Outcome::failure(ErrorCode::kInvalidArgument, "args.state: unknown state " + s);
    }
  }
  return q;
}

const char* proto_name(std::uint8_t p) { return p == 6 ? "tcp" : p == 17 ? "udp" : "other"; }

json connection_json(const Runtime& rt, const conntrack::ConnEntry& e, unsigned worker, std::uint64_t now) {
  std::string service = "-";
  for (const auto& s : rt.config.services)
    if (s.vip.value == e.vip_addr && static_cast<std::uint8_t>(s.protocol) == e.proto &&
        (s.port == e.vip_port || (s.port == 0 && service == "-")))
      service = s.name;
  json c = {{"worker", worker},
            {"service", service},
            {"protocol", proto_name(e.proto)},
            {"client", endpoint(e.client_addr, e.client_port)},
            {"vip", endpoint(e.vip_addr, e.vip_port)},
            {"backend", endpoint(e.backend_addr, e.backend_port)},
            {"mode", conntrack::to_string(e.mode)},
            {"state", e.proto == 6 ? state_name(e.state) : "udp"},
            {"age_ms", now > e.created_ms ? now - e.created_ms : 0},
            {"idle_ms", now > e.last_seen_ms ? now - e.last_seen_ms : 0},
            {"packets_in", e.packets[0]},
            {"packets_out", e.packets[1]},
            {"bytes_in", e.bytes[0]},
            {"bytes_out", e.bytes[1]}};
  if (e.mode == conntrack::ForwardMode::kFullNat) c["local"] = endpoint(e.local_addr, e.local_port);
  return c;
}

}  // namespace

std::unique_ptr<CtlService> CtlService::open(Runtime& rt, std::string& error) {
  auto options = ctl::server_options(rt.config.ctl, error);
  if (!options) return nullptr;
  // Like systemd's RuntimeDirectory=: the socket's directory is made when missing.
  std::error_code ec;
  const auto dir = std::filesystem::path(options->path).parent_path();
  if (!std::filesystem::is_directory(dir, ec) && !std::filesystem::create_directories(dir, ec) && ec) {
    error = "cannot create " + dir.string() + ": " + ec.message();
    return nullptr;
  }
  std::unique_ptr<CtlService> s(new CtlService(rt));
  s->server_ = std::make_unique<ctl::Server>(
      std::move(*options), [svc = s.get()](const ctl::Request& r, const ctl::Peer& p) { return svc->handle(r, p); },
      [](ctl::ServerEvent e, const ctl::Peer& p, const std::string& detail) {
        switch (e) {
          case ctl::ServerEvent::kAccepted: spdlog::debug("ctl: {} connected", who(p)); break;
          case ctl::ServerEvent::kRefused: spdlog::warn("ctl: refused {}: {}", who(p), detail); break;
          case ctl::ServerEvent::kReadOnlyRefused:
            spdlog::warn("ctl: refused {} (read-only): {}", who(p), detail);
            break;
          case ctl::ServerEvent::kTooManyClients: spdlog::warn("ctl: refused {}: too many clients ({})", who(p), detail); break;
          case ctl::ServerEvent::kSlowClient: spdlog::warn("ctl: dropped {}: it does not read ({})", who(p), detail); break;
          case ctl::ServerEvent::kBadRequest: spdlog::info("ctl: bad request from {}: {}", who(p), detail); break;
        }
      });
  if (error = s->server_->open(); !error.empty()) return nullptr;
  return s;
}

CtlService::~CtlService() {
  if (thread_.joinable()) thread_.join();
}

void CtlService::start() {
  thread_ = std::thread([this] { server_->run(rt_.stop); });
}

const std::string& CtlService::path() const { return server_->path(); }

Outcome CtlService::handle(const ctl::Request& r, const ctl::Peer& peer) {
  const json& a = r.args;
  Runtime& rt = rt_;
  // Every change is logged with who asked, whether it was applied or refused.
  const auto changed = [&](const std::string& summary, json result = json::object()) {
    spdlog::info("ctl: {} by {}", summary, who(peer));
    result["summary"] = summary;
    return Outcome::success(std::move(result));
  };
  const auto refused = [&](ErrorCode code, const std::string& message) {
    spdlog::warn("ctl: {} refused for {}: {}", r.cmd, who(peer), message);
    return Outcome::failure(code, message);
  };

  if (r.cmd == "status") {
    // Before control_mutex: the HA thread takes its own lock, then control_mutex.
    const std::string role = ha_role(rt);
    const json ha_peer = rt.ha ? rt.ha->status()["peer"] : json(nullptr);
    std::lock_guard lock(rt.control_mutex);
    json ports = json::array();
    for (std::size_t i = 0; i < rt.ports.size(); ++i) {
      const auto& p = rt.config.ports[i];
      ports.push_back({{"name", p.name}, {"device", p.device_name()}, {"driver", rt.ports[i].driver},
                       {"mac", rt.ports[i].mac.to_string()}, {"link", port_link_up(p, rt.ports[i].port_id) ? "up" : "down"},
                       {"role", config::to_string(p.role)}, {"addresses", address_list(p.addresses())},
                       {"xdp_steering", p.xdp_steering}});
    }
    const std::uint64_t connections = connections_held(rt);
    const auto up = std::chrono::duration<double>(std::chrono::steady_clock::now() - rt.started).count();
    const auto& st = server_->stats();
    return Outcome::success(
        {{"unit", {{"id", rt.config.unit.id}, {"name", rt.config.unit.name}}},
         {"version", TANDEM_VERSION},
         {"role", role},
         {"peer", ha_peer},
         {"uptime_s", std::round(up * 10) / 10},
         {"pid", ::getpid()},
         {"config", rt.config_path},
         {"workers", rt.workers.size()},
         {"services", rt.config.services.size()},
         {"connections", connections},
         {"ports", ports},
         {"ctl", {{"clients", st.connected}, {"requests", st.requests}, {"bad_requests", st.bad_requests},
                  {"refused", st.refused + st.read_only_refused}}}});
  }

  if (r.cmd == "ha.status") {
    if (!rt.ha) return Outcome::success({{"enabled", false}});
    return Outcome::success(rt.ha->status());
  }
  if (r.cmd == "ha.failover" || r.cmd == "ha.maintenance") {
    if (!rt.ha) return refused(ErrorCode::kConflict, "high availability is not configured ([ha])");
    const bool maintenance = r.cmd == "ha.maintenance";
    const bool on = maintenance && a.value("on", false);
    const std::string why = maintenance ? rt.ha->set_maintenance(on) : rt.ha->failover();
    if (!why.empty()) return refused(ErrorCode::kConflict, why);
    return changed(maintenance ? std::string("ha.maintenance ") + (on ? "on" : "off") : "ha.failover",
                   rt.ha->status());
  }

  if (r.cmd == "ha.drill") {
    std::string why;
    json result = run_drill(rt, rt.drills, kDrillTimeoutMs, why);
    if (!why.empty()) return refused(ErrorCode::kConflict, why);
    const std::string summary = "ha.drill " + result.value("result", std::string());
    return changed(summary, std::move(result));
  }
  if (r.cmd == "sync.status") {
    if (!rt.sync) return Outcome::success({{"enabled", false}});
    return Outcome::success(rt.sync->status());
  }
  if (r.cmd == "sync.push") {
    if (!rt.sync) return refused(ErrorCode::kConflict, "state sync is not enabled ([sync])");
    std::string why;
    if (!rt.sync->request_config_push(why)) return refused(ErrorCode::kConflict, why);
    return changed("sync.push", {{"pushing", true}});
  }

  if (r.cmd == "services.list") {
    const auto health = rt.health ? rt.health->snapshot() : std::vector<health::BackendHealth>{};
    std::lock_guard lock(rt.control_mutex);
    const auto counters = rt.service_counters();
    json list = json::array();
    for (const auto& s : rt.config.services) {
      const auto c = std::find_if(counters.begin(), counters.end(), [&](const auto& x) { return x.name == s.name; });
      list.push_back(service_json(s, c == counters.end() ? nullptr : &*c, health));
    }
    return Outcome::success({{"services", list}});
  }

  if (r.cmd == "backends") {
    const auto health = rt.health ? rt.health->snapshot() : std::vector<health::BackendHealth>{};
    std::lock_guard lock(rt.control_mutex);
    const std::string only = a.value("service", "");
    if (!only.empty() && std::none_of(rt.config.services.begin(), rt.config.services.end(),
                                      [&](const auto& s) { return s.name == only; }))
      return Outcome::failure(ErrorCode::kNotFound, "no service named " + only);
    json rows = json::array();
    for (const auto& s : rt.config.services) {
      if (!only.empty() && s.name != only) continue;
      for (const auto& b : s.backends) {
        const bool down = rt.health && rt.health->is_down(s.name, b.address, b.port);
        json row = {{"service", s.name},
                    {"backend", b.address.to_string() + ":" + std::to_string(b.port)},
                    {"weight", b.weight},
                    {"state", !b.enabled ? "disabled" : down ? "down" : b.weight == 0 ? "drained" : "active"},
                    {"health", "none"}};
        if (const auto* h = health_of(health, s.name, b)) {
          row["health"] = h->state;
          row["last_error"] = h->last_error;
          row["check"] = std::string(config::to_string(s.health_check.type)) + ":" + std::to_string(h->check_port);
          row["checks"] = h->checks;
          row["failures"] = h->failures;
          row["consecutive_ok"] = h->consecutive_ok;
          row["consecutive_fail"] = h->consecutive_fail;
          row["last_check_ms"] = h->last_duration_ms;
          row["since_change_ms"] = h->ms_since_change;
        }
        rows.push_back(std::move(row));
      }
    }
    return Outcome::success({{"backends", rows}});
  }

  if (ctl::is_service_edit(r.cmd)) {
    std::lock_guard lock(rt.control_mutex);
    auto next = rt.config.services;
    auto out = ctl::edit_services(r, next, rt.config.ports);
    if (out.error) return refused(out.error->code, out.error->message);
    std::string error;
    if (!apply_services(rt, std::move(next), error)) return refused(ErrorCode::kInternal, error);
    return changed(out.summary);
  }

  if (r.cmd == "connections.count" || r.cmd == "connections.list" || r.cmd == "connections.flush") {
    QueryPlan plan;
    {
      std::lock_guard lock(rt.control_mutex);
      plan = plan_query(rt, a);
    }
    if (plan.error) return *plan.error;
    const bool flush = r.cmd == "connections.flush";
    if (flush && !a.contains("service") && !a.contains("backend"))
      return refused(ErrorCode::kInvalidArgument, "connections.flush: give service or backend");
    const auto op = flush ? conntrack::ConnQueryOp::kFlush
                    : r.cmd == "connections.list" ? conntrack::ConnQueryOp::kList
                                                  : conntrack::ConnQueryOp::kCount;
    const std::size_t limit = a.value("limit", std::size_t{100});
    // Workers are only created and destroyed at start and stop, when no ctl thread runs.
    const auto result = run_query(rt, op, plan.filter, limit);
    std::uint64_t matched = 0;
    for (const auto& q : result.per_worker) matched += q->matched;
    if (result.timed_out) return refused(ErrorCode::kInternal, "a worker did not answer the connection query in time");
    if (flush) return changed("connections.flush " + a.dump() + ": " + std::to_string(matched) + " connection(s) dropped",
                              {{"flushed", matched}});
    if (op == conntrack::ConnQueryOp::kCount) return Outcome::success({{"count", matched}});
    std::lock_guard lock(rt.control_mutex);
    json rows = json::array();
    const auto now = worker_now_ms();
    for (std::size_t w = 0; w < result.per_worker.size() && rows.size() < limit; ++w)
      for (const auto& e : result.per_worker[w]->rows) {
        if (rows.size() >= limit) break;
        rows.push_back(connection_json(rt, e, static_cast<unsigned>(w), now));
      }
    const bool truncated = matched > rows.size();
    return Outcome::success({{"count", matched}, {"shown", rows.size()}, {"truncated", truncated}, {"connections", rows}});
  }

  if (r.cmd == "counters") {
    std::lock_guard lock(rt.control_mutex);
    const auto t = rt.counters();
    json ports = json::array();
    for (const auto& p : t.ports)
      ports.push_back({{"name", p.name}, {"rx_packets", p.rx_packets}, {"rx_bytes", p.rx_bytes},
                       {"tx_packets", p.tx_packets}, {"tx_bytes", p.tx_bytes}, {"tx_dropped", p.tx_dropped}});
    json workers = json::array();
    for (const auto& w : rt.workers) {
      const auto& c = w->counters();
      std::uint64_t rx = 0, tx = 0;
      for (std::size_t p = 0; p < rt.ports.size(); ++p) {
        rx += c.ports[p].rx_packets.get();
        tx += c.ports[p].tx_packets.get();
      }
      const auto polls = c.polls.get(), busy = c.busy_polls.get();
      workers.push_back({{"index", w->index()}, {"rx_packets", rx}, {"tx_packets", tx}, {"polls", polls},
                         {"busy_polls", busy}, {"idle_sleeps", c.idle_sleeps.get()},
                         {"busy_ratio", polls ? std::round(1000.0 * static_cast<double>(busy) / static_cast<double>(polls)) / 1000 : 0.0}});
    }
    json drops = json::object(), handled = json::object();
    for (std::size_t i = 0; i < kDropReasonCount; ++i) drops[to_string(static_cast<DropReason>(i))] = t.drops[i];
    for (std::size_t i = 0; i < kHandledCount; ++i) handled[to_string(static_cast<Handled>(i))] = t.handled[i];
    return Outcome::success({{"ports", ports}, {"workers", workers}, {"drops", drops}, {"drops_total", t.drops_total()},
                             {"handled", handled}});
  }

  if (r.cmd == "neighbours") {
    std::lock_guard lock(rt.control_mutex);
    std::optional<std::size_t> only;
    if (a.contains("port")) {
      const auto name = a["port"].get<std::string>();
      for (std::size_t i = 0; i < rt.config.ports.size(); ++i)
        if (rt.config.ports[i].name == name) only = i;
      if (!only) return Outcome::failure(ErrorCode::kNotFound, "no port named " + name);
    }
    json rows = json::array();
    if (!rt.workers.empty()) {
      // Every worker learns the same entries; the first one's copy (at most 200 ms old).
      auto& snap = rt.workers.front()->neighbour_snapshot();
      std::lock_guard snap_lock(snap.mutex);
      for (const auto& row : snap.rows) {
        if (only && row.port_index != *only) continue;
        const auto& e = row.entry;
        rows.push_back({{"port", row.port_index < rt.config.ports.size() ? rt.config.ports[row.port_index].name : "?"},
                        {"address", e.ip.to_string()}, {"mac", e.mac.to_string()}, {"state", neigh::to_string(e.state)},
                        {"confirmed_ms_ago", snap.taken_ms >= e.confirmed_ms ? snap.taken_ms - e.confirmed_ms : 0}});
      }
    }
    return Outcome::success({{"neighbours", rows}});
  }

  if (r.cmd == "config.show") {
    std::lock_guard lock(rt.control_mutex);
    return Outcome::success({{"path", rt.config_path}, {"toml", config::to_toml(rt.config)}});
  }

  if (r.cmd == "config.validate") {
    const auto path = a["path"].get<std::string>();
    auto parsed = config::load_config(path);
    if (!parsed.config) {
      std::string message = std::to_string(parsed.errors.size()) + " error(s) in " + path;
      for (const auto& e : parsed.errors) message += "\n" + e.to_string();
      return Outcome::failure(ErrorCode::kInvalidArgument, message);
    }
    std::string error;
    if (!ctl::server_options(parsed.config->ctl, error))
      return Outcome::failure(ErrorCode::kInvalidArgument, path + ": " + error);
    parsed.config->xdp.program = resolve_steer_program(*parsed.config);
    std::lock_guard lock(rt.control_mutex);
    const auto d = config::diff_configs(rt.config, *parsed.config);
    json live = json::array();
    for (const auto i : d.ports_with_new_addresses) live.push_back("port " + rt.config.ports[i].name + " addresses");
    if (d.services_changed) live.push_back("services");
    if (d.blocklist_changed) live.push_back("xdp blocklist");
    if (d.log_level_changed) live.push_back("log level");
    return Outcome::success({{"path", path}, {"valid", true}, {"reload_would_apply", live},
                             {"needs_restart", d.needs_restart}});
  }

  if (r.cmd == "config.reload") {
    const auto report = reload_config(rt);
    if (!report.errors.empty()) {
      std::string message = std::to_string(report.errors.size()) + " error(s) in " + rt.config_path +
                            "; the running configuration stays";
      for (const auto& e : report.errors) message += "\n" + e;
      return refused(ErrorCode::kInvalidArgument, message);
    }
    json result = {{"applied", report.applied}, {"failed", report.failed}, {"needs_restart", report.needs_restart}};
    if (!report.failed.empty()) return refused(ErrorCode::kConflict, "reload partly failed: " + report.failed.front());
    return changed("config.reload: " + std::to_string(report.applied.size()) + " change(s) applied, " +
                       std::to_string(report.needs_restart.size()) + " waiting for a restart",
                   result);
  }

  if (r.cmd == "log.level") {
    std::lock_guard lock(rt.control_mutex);
    const std::string current(spdlog::level::to_string_view(spdlog::get_level()).data(),
                              spdlog::level::to_string_view(spdlog::get_level()).size());
    if (!a.contains("level")) return Outcome::success({{"level", current}});
    if (peer.read_only) return refused(ErrorCode::kForbidden, "read-only access may not change the log level");
    const auto level = a["level"].get<std::string>();
    spdlog::set_level(spdlog::level::from_str(level));
    rt.config.log.level = level;
    return changed("log level " + current + " -> " + level, {{"level", level}});
  }

  // Only a command added to the protocol's table without a handler here gets this far.
  return Outcome::failure(ErrorCode::kInternal, "tandemd has no handler for " + r.cmd + " (a bug: please report it)");
}

}  // namespace tandem
