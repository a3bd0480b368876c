// SIGHUP: re-read the configuration file and apply what can change while forwarding.
#pragma once

#include <string>

#include "controlplane/config/config.hpp"

namespace tandem {

struct Runtime;

// The XDP steering program's path: the configured one, else the one built beside tandemd (build
// tree), else the installed one. Empty when none exists.
std::string resolve_steer_program(const config::Config& c);

// Applies port addresses (workers first, then XDP steering, never leaving a gap), services and
// backends (a new RCU-published table; existing connections keep their backends), the XDP
// blocklist and the log level; logs every other difference as needing a restart. A file with
// errors changes nothing.
void reload_config(Runtime& rt);

// Steers a port's addresses in its XDP program, in the order that never drops an address that
// stays: publish old+new to the workers, steer new, publish new.
bool apply_port_addresses(Runtime& rt, std::size_t port, const std::vector<net::Ipv4Prefix>& next);

}  // namespace tandem
