// A configuration written back as TOML, every key explicit: what `tandemctl config show`
// prints. parse_config(to_toml(c)) gives c back (tested), so the output can be saved and used
// as the configuration file; changes made over the ctl socket are included.
#pragma once

#include <string>

#include "controlplane/config/config.hpp"

namespace tandem::config {

std::string to_toml(const Config& c);
// Only the [[service]] tables (empty text for no services): what the units compare and push to
// each other (docs/sync-protocol.md#config-sync); parse_services() reads it back.
std::string services_toml(const std::vector<ServiceConfig>& services);

}  // namespace tandem::config
