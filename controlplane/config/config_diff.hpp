// What differs between the running configuration and a new one, sorted by what tandemd can
// apply live (port addresses, services and backends, the XDP blocklist, the log level) and what
// needs a restart.
#pragma once

#include <string>
#include <vector>

#include "controlplane/config/config.hpp"

namespace tandem::config {

struct ConfigDiff {
  std::vector<std::size_t> ports_with_new_addresses;  // indexes into Config::ports
  bool blocklist_changed = false;
  bool log_level_changed = false;
  bool services_changed = false;
  std::vector<std::string> needs_restart;  // one line per key that differs and cannot change live

  bool empty() const {
    return ports_with_new_addresses.empty() && !blocklist_changed && !log_level_changed && !services_changed &&
           needs_restart.empty();
  }
};

ConfigDiff diff_configs(const Config& running, const Config& next);

}  // namespace tandem::config
