#include "controlplane/config/to_toml.hpp"

#include <sstream>

#include <toml++/toml.h>

namespace tandem::config {
namespace {

template <typename T, typename Fn>
toml::array array_of(const std::vector<T>& items, Fn&& to_value) {
  toml::array a;
  for (const auto& i : items) a.push_back(to_value(i));
  return a;
}

toml::array strings(const std::vector<std::string>& items) {
  return array_of(items, [](const std::string& s) { return s; });
}

std::int64_t i64(std::uint64_t v) { return static_cast<std::int64_t>(v); }

toml::table port_table(const PortConfig& p) {
  toml::table t{{"name", p.name},
                {"device", p.device},
                {"role", to_string(p.role)},
                {"address", p.address.to_string()},
                {"secondary_addresses", array_of(p.secondary_addresses, [](const auto& a) { return a.to_string(); })},
                {"xdp_steering", p.xdp_steering},
                {"mtu", i64(p.mtu)},
                {"promiscuous", p.promiscuous},
                {"rx_descriptors", i64(p.rx_descriptors)},
                {"tx_descriptors", i64(p.tx_descriptors)}};
  if (p.gateway) t.insert("gateway", p.gateway->to_string());
  return t;
}

toml::table service_table(const ServiceConfig& s) {
  toml::table t{{"name", s.name},
                {"vip", s.vip.to_string()},
                {"protocol", to_string(s.protocol)},
                {"port", i64(s.port)},
                {"mode", conntrack::to_string(s.mode)},
                {"maglev_size", i64(s.maglev_size)}};
  if (!s.local_addresses.empty())
    t.insert("local_addresses", array_of(s.local_addresses, [](const auto& a) { return a.to_string(); }));
  toml::array backends;
  for (const auto& b : s.backends)
    backends.push_back(toml::table{{"address", b.address.to_string()},
                                   {"port", i64(b.port)},
                                   {"weight", i64(b.weight)},
                                   {"enabled", b.enabled}});
  if (!backends.empty()) t.insert("backend", std::move(backends));
  t.insert("group", i64(s.group));
  t.insert("on_backend_down", to_string(s.on_backend_down));
  const HealthCheckConfig& h = s.health_check;
  if (h != HealthCheckConfig{}) {  // a check switched off keeps its settings too
    toml::table hc{{"type", to_string(h.type)},     {"interval_ms", i64(h.interval_ms)}, {"timeout_ms", i64(h.timeout_ms)},
                   {"rise", i64(h.rise)},           {"fall", i64(h.fall)},               {"port", i64(h.port)}};
    if (h.type == HealthCheckType::kHttp) {
      hc.insert("http_path", h.http_path);
      hc.insert("http_host", h.http_host);
      hc.insert("http_status", i64(h.http_status));
      hc.insert("http_body", h.http_body);
    }
    t.insert("health_check", std::move(hc));
  }
  return t;
}

toml::table ha_table(const HaConfig& ha) {
  toml::table t{{"priority", i64(ha.priority)},
                {"preempt", ha.preempt},
                {"advert_interval_ms", i64(ha.advert_interval_ms)},
                {"dead_intervals", i64(ha.dead_intervals)},
                {"hold_down_ms", i64(ha.hold_down_ms)},
                {"sync_listen", ha.sync_listen},
                {"sync_peer", ha.sync_peer},
                {"data_port", ha.data_port},
                {"data_peer", ha.data_peer.to_string()},
                {"data_udp_port", i64(ha.data_udp_port)},
                {"garp_count", i64(ha.garp_count)},
                {"garp_interval_ms", i64(ha.garp_interval_ms)}};
  // The key is a secret that read-only ctl users may not see: a key_file is named, an inline key
  // is left out (the output then fails to load until a key is added, rather than loading with
  // a wrong one).
  if (!ha.key_file.empty()) t.insert("key_file", ha.key_file);
  t.insert("group", array_of(ha.groups, [](const HaGroupConfig& g) {
    toml::table gt{{"id", i64(g.id)}};
    if (g.priority != 0) gt.insert("priority", i64(g.priority));
    gt.insert("floating_addresses", array_of(g.floating_addresses, [](const FloatingAddress& f) {
      return toml::table{{"port", f.port}, {"address", f.address.to_string()}};
    }));
    return gt;
  }));
  if (!ha.track.empty())
    t.insert("track", array_of(ha.track, [](const HaTrackConfig& k) {
      toml::table kt{{"weight", i64(k.weight)}};
      if (k.kind == TrackKind::kService) {
        kt.insert("service", k.service);
        kt.insert("min_healthy", i64(k.min_healthy));
      } else {
        kt.insert(to_string(k.kind), k.port);
      }
      return kt;
    }));
  return t;
}

}  // namespace

std::string to_toml(const Config& c) {
  const auto& to = c.conntrack.timeouts;
  toml::table root{
      {"unit", toml::table{{"id", i64(c.unit.id)}, {"name", c.unit.name}}},
      {"eal", toml::table{{"lcores", c.eal.lcores},
                          {"memory_mb", i64(c.eal.memory_mb)},
                          {"no_huge", c.eal.no_huge},
                          {"file_prefix", c.eal.file_prefix},
                          {"extra_args", strings(c.eal.extra_args)}}},
      {"worker", toml::table{{"burst_size", i64(c.worker.burst_size)},
                             {"idle_backoff", c.worker.idle_backoff},
                             {"idle_polls_before_sleep", i64(c.worker.idle_polls_before_sleep)},
                             {"idle_sleep_us", i64(c.worker.idle_sleep_us)}}},
      {"neighbour", toml::table{{"capacity", i64(c.neighbour.capacity)},
                                {"reachable_ms", i64(c.neighbour.reachable_ms)},
                                {"stale_ms", i64(c.neighbour.stale_ms)},
                                {"probe_interval_ms", i64(c.neighbour.probe_interval_ms)},
                                {"max_probes", i64(c.neighbour.max_probes)}}},
      {"log", toml::table{{"level", c.log.level}}},
      {"xdp", toml::table{{"program", c.xdp.program},
                          {"blocklist", array_of(c.xdp.blocklist, [](const auto& p) { return p.to_string(); })}}},
      {"conntrack", toml::table{{"capacity", i64(c.conntrack.capacity)},
                                {"tcp_syn_sent_ms", i64(to.syn_sent_ms)},
                                {"tcp_syn_recv_ms", i64(to.syn_recv_ms)},
                                {"tcp_established_ms", i64(to.established_ms)},
                                {"tcp_fin_wait_ms", i64(to.fin_wait_ms)},
                                {"tcp_close_wait_ms", i64(to.close_wait_ms)},
                                {"tcp_last_ack_ms", i64(to.last_ack_ms)},
                                {"tcp_time_wait_ms", i64(to.time_wait_ms)},
                                {"tcp_close_ms", i64(to.close_ms)},
                                {"udp_ms", i64(to.udp_ms)}}},
      {"metrics", toml::table{{"listen", c.metrics.listen}}},
      {"ctl", toml::table{{"socket", c.ctl.socket},
                          {"owner", c.ctl.owner},
                          {"group", c.ctl.group},
                          {"allowed_users", strings(c.ctl.allowed_users)},
                          {"allowed_groups", strings(c.ctl.allowed_groups)},
                          {"read_only_users", strings(c.ctl.read_only_users)},
                          {"read_only_groups", strings(c.ctl.read_only_groups)}}},
  };
  // Octal, as people write file modes.
  toml::value<std::int64_t> mode(i64(c.ctl.mode));
  mode.flags(toml::value_flags::format_as_octal);
  root["ctl"].as_table()->insert("mode", std::move(mode));
  root.insert("port", array_of(c.ports, port_table));
  if (c.ha.enabled) root.insert("ha", ha_table(c.ha));
  if (c.ha.enabled) {
    const SyncConfig& s = c.sync;
    toml::table st{{"enabled", s.enabled},          {"listen", s.listen},
                   {"peer", s.peer},                {"mode", to_string(s.mode)},
                   {"refresh_ms", i64(s.refresh_ms)}, {"flush_ms", i64(s.flush_ms)},
                   {"budget", i64(s.budget)}, {"hold_timeout_ms", i64(s.hold_timeout_ms)},
                   {"config", to_string(s.config)}};
    // As for [ha]: a key file is named, an inline key (a secret) is left out; a key equal to
    // [ha]'s is the default and not repeated.
    if (!s.key_file.empty() && s.key_file != c.ha.key_file) st.insert("key_file", s.key_file);
    root.insert("sync", std::move(st));
  }
  if (!c.services.empty()) root.insert("service", array_of(c.services, service_table));
  // Sections in the order of docs/configuration.md (a toml::table sorts its keys).
  std::ostringstream out;
  out << "# tandemd " << TANDEM_VERSION << ": the running configuration of unit " << c.unit.name << "\n";
  for (const char* section : {"unit", "eal", "worker", "neighbour", "log", "metrics", "ctl", "xdp", "port", "ha", "sync", "conntrack",
                              "service"}) {
    toml::table one;
    if (auto* t = root[section].as_table()) one.insert(section, std::move(*t));
    else if (auto* a = root[section].as_array()) one.insert(section, std::move(*a));
    else continue;
    out << "\n" << toml::toml_formatter(one) << "\n";
  }
  return out.str();
}

std::string services_toml(const std::vector<ServiceConfig>& services) {
  if (services.empty()) return "";
  toml::table one;
  one.insert("service", array_of(services, service_table));
  std::ostringstream out;
  out << toml::toml_formatter(one) << "\n";
  return out.str();
}

}  // namespace tandem::config
