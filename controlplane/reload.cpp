#include "controlplane/reload.hpp"

#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include <spdlog/spdlog.h>

#include "controlplane/config/config_diff.hpp"
#include "controlplane/health_service.hpp"
#include "controlplane/runtime.hpp"
#include "controlplane/services.hpp"

namespace tandem {
namespace {

std::string join(const std::vector<net::Ipv4Prefix>& prefixes) {
  std::string s;
  for (const auto& p : prefixes) s += (s.empty() ? "" : ", ") + p.to_string();
  return s.empty() ? "none" : s;
}

std::uint64_t longest_timeout_ms(const conntrack::ConntrackTimeouts& t) {
  return std::max({t.none_ms, t.syn_sent_ms, t.syn_recv_ms, t.established_ms, t.fin_wait_ms, t.close_wait_ms,
                   t.last_ack_ms, t.time_wait_ms, t.close_ms, t.udp_ms});
}

}  // namespace

bool apply_host_addresses(Runtime& rt) {
  // Called every second: a failure that persists (e.g. more addresses than host_addrs holds) is
  // logged when it appears or changes, not every time.
  static std::string last_error;  // control thread only
  std::string error;
  const auto host = xdp::host_ipv4_addresses(error);
  std::string errors;
  if (!host) {
    errors = "XDP steering: " + error;
  } else {
    for (const auto& s : rt.steering)
      if (s && !s->set_host_addresses(*host, error))
        errors += (errors.empty() ? "" : "; ") + s->ifname() + ": " + error;
  }
  if (!errors.empty() && errors != last_error)
    spdlog::error("{} (backends' frames to the host's addresses may be steered away from the kernel)", errors);
  last_error = errors;
  return errors.empty();
}

bool apply_service_steering(Runtime& rt) {
  bool ok = true;
  for (std::size_t i = 0; i < rt.steering.size(); ++i) {
    if (!rt.steering[i]) continue;
    const auto& port = rt.config.ports[i];
    std::string error;
    if (!rt.steering[i]->set_addresses(steered_addresses(port, port.addresses(), *rt.services.get(), rt.config.ha), error) ||
        !rt.steering[i]->set_sources(steered_sources(port, *rt.services.get()), error)) {
      spdlog::error("port {}: {}", port.name, error);
      ok = false;
    }
  }
  return ok;
}

void maintain_steering(Runtime& rt) {
  if (std::none_of(rt.steering.begin(), rt.steering.end(), [](const auto& s) { return s != nullptr; })) return;
  apply_host_addresses(rt);
  // Idle beyond the longest conntrack timeout: no connection of the source can be left (its
  // entry would have expired), plus the granularity of last_seen.
  const std::uint64_t idle_ns =
      longest_timeout_ms(rt.config.conntrack.timeouts) * 1'000'000u + 2 * TANDEM_STEER_SEEN_GRANULARITY_NS;
  for (std::size_t i = 0; i < rt.steering.size(); ++i) {
    if (!rt.steering[i] || rt.steering[i]->lingering_sources() == 0) continue;
    std::string error;
    for (const auto& s : rt.steering[i]->expire_sources(idle_ns, error))
      spdlog::info("port {}: XDP no longer steers replies from {} (left the configuration, idle)",
                   rt.config.ports[i].name, s.to_string());
    if (!error.empty()) spdlog::error("port {}: {}", rt.config.ports[i].name, error);
  }
}

std::string resolve_steer_program(const config::Config& c) {
  if (!c.xdp.program.empty()) return c.xdp.program;
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  const std::vector<std::filesystem::path> candidates = {
      exe.parent_path().parent_path() / "ebpf" / "steer.bpf.o",  // <build>/controlplane/tandemd
      std::filesystem::path(TANDEM_BPF_DIR) / "steer.bpf.o",
  };
  for (const auto& p : candidates)
    if (std::filesystem::is_regular_file(p, ec)) return p.string();
  return {};
}

bool apply_port_addresses(Runtime& rt, std::size_t port, const std::vector<net::Ipv4Prefix>& next) {
  const auto current = rt.config.ports[port].addresses();
  std::vector<net::Ipv4Prefix> both = current;
  for (const auto& p : next)
    if (std::none_of(both.begin(), both.end(), [&](const auto& q) { return q.addr == p.addr; })) both.push_back(p);
  if (both.size() > kMaxLocalAddrs) both = next;  // no room for the overlap: switch in one step

  rt.locals->publish(port, rt.local_interface(port, both));
  if (rt.steering[port]) {
    std::string error;
    if (!rt.steering[port]->set_addresses(steered_addresses(rt.config.ports[port], next, *rt.services.get(), rt.config.ha), error)) {
      spdlog::error("port {}: {}", rt.config.ports[port].name, error);
      rt.locals->publish(port, rt.local_interface(port, current));
      return false;
    }
  }
  rt.locals->publish(port, rt.local_interface(port, next));
  return true;
}

std::vector<config::ServiceConfig> served_services(std::vector<config::ServiceConfig> services,
                                                   const HealthService* health) {
  for (auto& s : services)
    for (auto& b : s.backends)
      if (!b.enabled || (health && health->is_down(s.name, b.address, b.port))) b.weight = 0;
  return services;
}

bool apply_services(Runtime& rt, std::vector<config::ServiceConfig> next, std::string& error) {
  auto table = build_service_table(served_services(next, rt.health), error);
  if (!table) return false;
  if (rt.health) rt.health->reconfigure(next);  // new backends checked, removed ones forgotten
  // New VIPs, local addresses and backends are served before XDP steers them; removed ones
  // stop being steered after (removed backends linger while their connections may live).
  rt.services.publish(std::move(table), *rt.rcu);
  rt.service_tables_published.fetch_add(1, std::memory_order_relaxed);
  rt.publish_local_interfaces();  // ARP for the VIPs as they are now
  apply_host_addresses(rt);
  if (!apply_service_steering(rt)) spdlog::error("services: XDP steering incomplete (see above)");
  rt.config.services = std::move(next);
  return true;
}

ReloadReport reload_config(Runtime& rt) {
  ReloadReport report;
  spdlog::info("reloading {}", rt.config_path);
  auto parsed = config::load_config(rt.config_path);
  if (!parsed.config) {
    for (const auto& e : parsed.errors) {
      spdlog::error("{}", e.to_string());
      report.errors.push_back(e.to_string());
    }
    spdlog::error("reload refused: {} error(s); the running configuration stays", parsed.errors.size());
    return report;
  }
  config::Config next = std::move(*parsed.config);
  next.xdp.program = resolve_steer_program(next);

  std::lock_guard lock(rt.control_mutex);
  const config::ConfigDiff diff = config::diff_configs(rt.config, next);
  if (diff.empty()) {
    spdlog::info("reload: nothing changed");
    return report;
  }
  const auto applied = [&](std::string line) {
    spdlog::info("{}", line);
    report.applied.push_back(std::move(line));
  };
  const auto failed = [&](std::string line) {
    spdlog::error("{}", line);
    report.failed.push_back(std::move(line));
  };
  for (const std::size_t i : diff.ports_with_new_addresses) {
    auto& running = rt.config.ports[i];
    const auto& wanted = next.ports[i];
    const std::string change = "port " + running.name + ": addresses " + join(running.addresses()) + " -> " +
                               join(wanted.addresses());
    if (apply_port_addresses(rt, i, wanted.addresses())) {
      applied(change);
      running.address = wanted.address;
      running.secondary_addresses = wanted.secondary_addresses;
    } else {
      failed(change + " failed (see above)");
    }
  }
  if (diff.services_changed) {
    std::string error;
    const std::size_t before = rt.config.services.size();
    if (apply_services(rt, next.services, error)) {
      for (const auto& s : next.services)
        spdlog::info("service {}: {}:{}/{} {} with {} backend(s)", s.name, s.vip.to_string(), s.port,
                     config::to_string(s.protocol), conntrack::to_string(s.mode), s.backends.size());
      applied("services: " + std::to_string(before) + " -> " + std::to_string(next.services.size()) + " service(s)");
    } else {
      failed("services: " + error + "; the running services stay");
    }
  }
  if (diff.blocklist_changed) {
    bool ok = true;
    for (const auto& s : rt.steering) {
      std::string error;
      if (s && !s->set_blocklist(next.xdp.blocklist, error)) {
        spdlog::error("{}: {}", s->ifname(), error);
        ok = false;
      }
    }
    const std::string change = "xdp blocklist: " + join(rt.config.xdp.blocklist) + " -> " + join(next.xdp.blocklist);
    if (ok) {
      applied(change);
      rt.config.xdp.blocklist = next.xdp.blocklist;
    } else {
      failed(change + " failed (see above)");
    }
  }
  if (diff.log_level_changed) {
    spdlog::set_level(spdlog::level::from_str(next.log.level));
    applied("log level: " + rt.config.log.level + " -> " + next.log.level);
    rt.config.log.level = next.log.level;
  }
  for (const auto& key : diff.needs_restart) {
    spdlog::warn("reload: {} changed; it takes effect at the next restart", key);
    report.needs_restart.push_back(key);
  }
  spdlog::info("reload: applied {} change(s), {} failed, {} waiting for a restart", report.applied.size(),
               report.failed.size(), report.needs_restart.size());
  return report;
}

}  // namespace tandem
