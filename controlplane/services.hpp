// The configured services as the workers' immutable, RCU-published service table.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "controlplane/config/config.hpp"
#include "dataplane/lb/service_table.hpp"

namespace tandem {

// Builds every service's Maglev table; nullptr with the reason in `error` when one fails.
std::unique_ptr<const lb::ServiceTable> build_service_table(const std::vector<config::ServiceConfig>& services,
                                                            std::string& error);

// The addresses XDP steers to the fast path on a port: its own, plus every VIP on a port that
// faces clients (role north or both).
std::vector<net::Ipv4Addr> steered_addresses(const config::PortConfig& port,
                                             const std::vector<net::Ipv4Prefix>& own,
                                             const lb::ServiceTable& services);

}  // namespace tandem
