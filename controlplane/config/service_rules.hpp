// The rules a service and its backends must follow, whichever way they arrive: read from the
// configuration file, or changed at run time over the ctl socket. One place, so a service the
// file would refuse cannot be built by hand, and the reverse.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "controlplane/config/config.hpp"

namespace tandem::config {

// One broken rule: `key` is relative to the service (or backend) table, e.g. "maglev_size".
struct RuleViolation {
  std::string key;
  std::string message;
  bool conflict = false;  // it clashes with another service, backend or port (else: a bad value)
};

// Empty when `name` may name a unit, a file prefix or a service, else why not.
std::string name_problem(const std::string& name);
// Empty when `a` is a unicast address (VIPs, backends, local addresses), else why not.
std::string unicast_problem(net::Ipv4Addr a);

// `svc` on its own (Maglev size, mode and local addresses, backends with weight > 0 against the
// table size), among `others` (names and VIP:port/protocol are unique) and the ports (a VIP is
// no port address). A zero VIP or an empty name (already reported by the reader) skips the
// rules that need it. `others` must not contain `svc`.
std::vector<RuleViolation> check_service(const ServiceConfig& svc, std::span<const ServiceConfig> others,
                                         std::span<const PortConfig> ports);

// `b` as a backend of `svc`: a port only where the mode translates it, and not listed twice
// among `others` (the service's other backends).
std::vector<RuleViolation> check_backend(const ServiceConfig& svc, const BackendConfig& b,
                                         std::span<const BackendConfig> others);

}  // namespace tandem::config
