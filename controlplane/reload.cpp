#include "controlplane/reload.hpp"

#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include <spdlog/spdlog.h>

#include "controlplane/config/config_diff.hpp"
#include "controlplane/runtime.hpp"
#include "controlplane/services.hpp"

namespace tandem {
namespace {

std::string join(const std::vector<net::Ipv4Prefix>& prefixes) {
  std::string s;
  for (const auto& p : prefixes) s += (s.empty() ? "" : ", ") + p.to_string();
  return s.empty() ? "none" : s;
}

}  // namespace

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
    if (!rt.steering[port]->set_addresses(steered_addresses(rt.config.ports[port], next, *rt.services.get()), error)) {
      spdlog::error("port {}: {}", rt.config.ports[port].name, error);
      rt.locals->publish(port, rt.local_interface(port, current));
      return false;
    }
  }
  rt.locals->publish(port, rt.local_interface(port, next));
  return true;
}

void reload_config(Runtime& rt) {
  spdlog::info("reloading {}", rt.config_path);
  auto parsed = config::load_config(rt.config_path);
  if (!parsed.config) {
    for (const auto& e : parsed.errors) spdlog::error("{}", e.to_string());
    spdlog::error("reload refused: {} error(s); the running configuration stays", parsed.errors.size());
    return;
  }
  config::Config next = std::move(*parsed.config);
  next.xdp.program = resolve_steer_program(next);
  const config::ConfigDiff diff = config::diff_configs(rt.config, next);
  if (diff.empty()) {
    spdlog::info("reload: nothing changed");
    return;
  }

  std::lock_guard lock(rt.control_mutex);
  std::size_t applied = 0;
  for (const std::size_t i : diff.ports_with_new_addresses) {
    auto& running = rt.config.ports[i];
    const auto& wanted = next.ports[i];
    if (apply_port_addresses(rt, i, wanted.addresses())) {
      spdlog::info("port {}: addresses {} -> {}", running.name, join(running.addresses()), join(wanted.addresses()));
      running.address = wanted.address;
      running.secondary_addresses = wanted.secondary_addresses;
      ++applied;
    }
  }
  if (diff.services_changed) {
    std::string error;
    auto table = build_service_table(next.services, error);
    if (!table) {
      spdlog::error("services: {}; the running services stay", error);
    } else {
      // New VIPs are served before XDP steers them; removed ones stop being steered after.
      rt.services.publish(std::move(table), *rt.rcu);
      bool ok = true;
      for (std::size_t i = 0; i < rt.steering.size(); ++i) {
        if (!rt.steering[i]) continue;
        const auto addrs = steered_addresses(rt.config.ports[i], rt.config.ports[i].addresses(), *rt.services.get());
        if (!rt.steering[i]->set_addresses(addrs, error)) {
          spdlog::error("port {}: {}", rt.config.ports[i].name, error);
          ok = false;
        }
      }
      for (const auto& s : next.services)
        spdlog::info("service {}: {}:{}/{} {} with {} backend(s)", s.name, s.vip.to_string(), s.port,
                     config::to_string(s.protocol), conntrack::to_string(s.mode), s.backends.size());
      spdlog::info("services: {} -> {} service(s){}", rt.config.services.size(), next.services.size(),
                   ok ? "" : " (XDP steering incomplete, see above)");
      rt.config.services = next.services;
      ++applied;
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
    if (ok) {
      spdlog::info("xdp blocklist: {} -> {}", join(rt.config.xdp.blocklist), join(next.xdp.blocklist));
      rt.config.xdp.blocklist = next.xdp.blocklist;
      ++applied;
    }
  }
  if (diff.log_level_changed) {
    spdlog::set_level(spdlog::level::from_str(next.log.level));
    spdlog::info("log level: {} -> {}", rt.config.log.level, next.log.level);
    rt.config.log.level = next.log.level;
    ++applied;
  }
  for (const auto& key : diff.needs_restart) spdlog::warn("reload: {} changed; it takes effect at the next restart", key);
  spdlog::info("reload: applied {} change(s), {} waiting for a restart", applied, diff.needs_restart.size());
}

}  // namespace tandem
