#include "controlplane/config/config_diff.hpp"

namespace tandem::config {

ConfigDiff diff_configs(const Config& running, const Config& next) {
  ConfigDiff d;
  auto restart_if = [&](bool differs, const std::string& key) {
    if (differs) d.needs_restart.push_back(key);
  };
  restart_if(running.unit != next.unit, "unit");
  restart_if(running.eal != next.eal, "eal");
  restart_if(running.worker != next.worker, "worker");
  restart_if(running.neighbour != next.neighbour, "neighbour");
  restart_if(running.xdp.program != next.xdp.program, "xdp.program");
  restart_if(running.conntrack != next.conntrack, "conntrack");
  restart_if(running.metrics != next.metrics, "metrics");
  restart_if(running.ctl != next.ctl, "ctl");
  restart_if(running.ha != next.ha, "ha");
  restart_if(running.sync != next.sync, "sync");
  d.services_changed = running.services != next.services;
  d.blocklist_changed = running.xdp.blocklist != next.xdp.blocklist;
  d.log_level_changed = running.log.level != next.log.level;

  if (running.ports.size() != next.ports.size()) {
    d.needs_restart.push_back("port (ports added or removed)");
    return d;
  }
  for (std::size_t i = 0; i < running.ports.size(); ++i) {
    const PortConfig& a = running.ports[i];
    const PortConfig& b = next.ports[i];
    // Everything but the addresses is bound to the device as it was started.
    PortConfig a_fixed = a, b_fixed = b;
    a_fixed.address = b_fixed.address = {};
    a_fixed.secondary_addresses.clear();
    b_fixed.secondary_addresses.clear();
    if (a_fixed != b_fixed) {
      d.needs_restart.push_back("port[" + std::to_string(i) + "] (" + a.name + ")");
      continue;
    }
    if (a.addresses() != b.addresses()) d.ports_with_new_addresses.push_back(i);
  }
  return d;
}

}  // namespace tandem::config
