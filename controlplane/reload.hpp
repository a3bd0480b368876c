// SIGHUP: re-read the configuration file and apply what can change while forwarding.
#pragma once

#include <string>
#include <vector>

#include "controlplane/config/config.hpp"

namespace tandem {

class HealthService;

struct Runtime;

// The XDP steering program's path: the configured one, else the one built beside tandemd (build
// tree), else the installed one. Empty when none exists.
std::string resolve_steer_program(const config::Config& c);

// What a reload did, for the log and for `tandemctl config reload`.
struct ReloadReport {
  std::vector<std::string> errors;         // the file's errors: nothing was applied
  std::vector<std::string> applied;        // one line per change applied
  std::vector<std::string> failed;         // changes that could not be applied (the old value stays)
  std::vector<std::string> needs_restart;  // keys that differ but take effect at the next start
};

// Applies port addresses (workers first, then XDP steering, never leaving a gap), services and
// backends (a new RCU-published table; existing connections keep their backends), the XDP
// blocklist and the log level; reports every other difference as needing a restart. A file
// with errors changes nothing. Logs what it does. Takes control_mutex.
ReloadReport reload_config(Runtime& rt);

// The services as the workers serve them: a disabled backend, or one its health check took
// down, has weight 0 (no new flows).
std::vector<config::ServiceConfig> served_services(std::vector<config::ServiceConfig> services,
                                                   const HealthService* health = nullptr);

// Publishes `next` as the running services: builds the table (Maglev included), publishes it
// by RCU, steers what the new services need, and records `next` in rt.config. Connections
// keep their backends. Call with control_mutex held. False (and `error`) when the table cannot
// be built; nothing changes then.
bool apply_services(Runtime& rt, std::vector<config::ServiceConfig> next, std::string& error);

// Steers a port's addresses in its XDP program, in the order that never drops an address that
// stays: publish old+new to the workers, steer new, publish new.
bool apply_port_addresses(Runtime& rt, std::size_t port, const std::vector<net::Ipv4Prefix>& next);

// Steers what the services need on every steered port, from the published service table: VIPs
// and fullnat local addresses (steer_addrs), nat backends' replies (steer_sources). Call after
// publishing a table with new services and before one without removed ones. Logs failures.
bool apply_service_steering(Runtime& rt);

// Keeps the XDP programs' host_addrs (where backends' frames are the kernel's) equal to the
// kernel's current addresses, and retires backend sources that left the configuration once no
// frame has matched them for longer than the longest conntrack timeout. Cheap when nothing
// changed; the control thread calls it about once a second, with control_mutex held.
void maintain_steering(Runtime& rt);
// The host_addrs part of maintain_steering: the kernel's IPv4 and broadcast addresses (all
// interfaces) into every steered port's program. False (logged once per new error) on failure.
bool apply_host_addresses(Runtime& rt);

}  // namespace tandem
