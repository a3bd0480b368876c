// The configured services as the workers' immutable, RCU-published service table.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "controlplane/config/config.hpp"
#include "controlplane/observe/stats_registry.hpp"
#include "controlplane/xdp/steering.hpp"
#include "dataplane/lb/service_table.hpp"

namespace tandem {

// Builds every service's Maglev table; nullptr with the reason in `error` when one fails.
// Services and backends get their stats ids (traffic counter slots) from `ids`, logging a
// warning the first time it has no slot left; without `ids`, from daemon_stats_registry().
std::unique_ptr<const lb::ServiceTable> build_service_table(const std::vector<config::ServiceConfig>& services,
                                                            observe::StatsRegistry& ids, std::string& error);
std::unique_ptr<const lb::ServiceTable> build_service_table(const std::vector<config::ServiceConfig>& services,
                                                            std::string& error);

// The registry of the daemon's life: every table tandemd builds takes its stats ids from it, so
// a service or backend keeps its counters across reloads and ctl changes.
observe::StatsRegistry& daemon_stats_registry();

// The destinations XDP steers to the fast path on a port: its own addresses, its HA floating
// addresses (owned by this unit or not), every VIP on a
// port that faces clients (role north or both), and every fullnat local address on a port that
// faces backends (role south or both), flagged TANDEM_STEER_FLAG_LOCAL (so its traffic counts as
// steered_reply) even when it is also one of the port's own addresses.
std::vector<xdp::SteeredAddress> steered_addresses(const config::PortConfig& port,
                                                   const std::vector<net::Ipv4Prefix>& own,
                                                   const lb::ServiceTable& services, const config::HaConfig& ha);

// The backend sources XDP steers on a port that faces backends (role south or both): every
// backend of every nat service, weight 0 (drained) included, as (address, protocol, backend
// port), port 0 for an all-ports service. fullnat backends are not needed: their replies go to
// a local address, steered by destination. dsr and tunnel backends answer clients directly.
// Sorted, distinct; empty on a north port.
std::vector<xdp::SteeredSource> steered_sources(const config::PortConfig& port, const lb::ServiceTable& services);

}  // namespace tandem
