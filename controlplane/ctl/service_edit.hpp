// The ctl commands that change services and backends, applied to a copy of the running
// services: service.add/delete/set, backend.add/delete/set/drain. Pure (no daemon state), so
// every command's validation is unit-tested; the daemon publishes the result only when this
// says it is good, so a refused request changes nothing.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <vector>

#include "controlplane/config/config.hpp"
#include "controlplane/ctl/protocol.hpp"

namespace tandem::ctl {

struct EditOutcome {
  std::optional<Error> error;  // set: the request is refused and `services` is unchanged
  std::string summary;         // what changed, for the log: "backend 10.0.1.1:80 of web: weight 1 -> 0"
};

// Applies `request` (a parsed request of one of the commands above: its arguments are already
// of the right types) to `services`, checking the same rules as the configuration file
// (config/service_rules.hpp) against `ports`.
EditOutcome edit_services(const Request& request, std::vector<config::ServiceConfig>& services,
                          std::span<const config::PortConfig> ports);

// True for the commands edit_services() handles.
bool is_service_edit(std::string_view cmd);

}  // namespace tandem::ctl
