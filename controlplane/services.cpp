#include "controlplane/services.hpp"

#include <algorithm>

#include <spdlog/spdlog.h>

namespace tandem {

observe::StatsRegistry& daemon_stats_registry() {
  static observe::StatsRegistry registry;
  return registry;
}

std::unique_ptr<const lb::ServiceTable> build_service_table(const std::vector<config::ServiceConfig>& services,
                                                            std::string& error) {
  return build_service_table(services, daemon_stats_registry(), error);
}

std::unique_ptr<const lb::ServiceTable> build_service_table(const std::vector<config::ServiceConfig>& services,
                                                            observe::StatsRegistry& ids, std::string& error) {
  std::vector<lb::Service> out;
  for (const auto& s : services) {
    lb::Service svc{.name = s.name,
                    .vip = s.vip,
                    .proto = static_cast<std::uint8_t>(s.protocol),
                    .port = s.port,
                    .mode = s.mode,
                    .local_addrs = s.local_addresses,
                    .maglev_size = s.maglev_size,
                    .group = s.group};
    for (const auto& b : s.backends) svc.backends.push_back({b.address, b.port, b.weight});
    out.push_back(std::move(svc));
  }
  if (const std::string warning = ids.assign(out); !warning.empty()) spdlog::warn("{}", warning);
  return lb::ServiceTable::build(std::move(out), error);
}

namespace {

bool faces_backends(const config::PortConfig& port) { return port.role != config::PortRole::kNorth; }
bool faces_clients(const config::PortConfig& port) { return port.role != config::PortRole::kSouth; }

}  // namespace

std::vector<xdp::SteeredAddress> steered_addresses(const config::PortConfig& port,
                                                   const std::vector<net::Ipv4Prefix>& own,
                                                   const lb::ServiceTable& services, const config::HaConfig& ha) {
  std::vector<xdp::SteeredAddress> out;
  const auto add = [&](net::Ipv4Addr a, std::uint32_t flags) {
    const auto it = std::find_if(out.begin(), out.end(), [&](const auto& s) { return s.addr == a; });
    if (it == out.end())
      out.push_back({a, flags});
    else
      it->flags |= flags;
  };
  for (const auto& p : own) add(p.addr, 0);
  // Floating addresses whichever unit owns their group now: the fast path decides.
  for (const auto& g : ha.groups)
    for (const auto& f : g.floating_addresses)
      if (f.port == port.name) add(f.address.addr, 0);
  if (faces_clients(port))
    for (const auto& vip : services.vips()) add(vip, 0);
  if (faces_backends(port))
    for (const auto& s : services.services())
      if (s.mode == conntrack::ForwardMode::kFullNat)
        for (const auto& local : s.local_addrs) add(local, TANDEM_STEER_FLAG_LOCAL);
  return out;
}

std::vector<xdp::SteeredSource> steered_sources(const config::PortConfig& port, const lb::ServiceTable& services) {
  std::vector<xdp::SteeredSource> out;
  if (!faces_backends(port)) return out;
  for (const auto& s : services.services()) {
    if (s.mode != conntrack::ForwardMode::kNat) continue;
    for (const auto& b : s.backends)
      out.push_back({b.addr, s.proto, static_cast<std::uint16_t>(s.port == 0 ? 0 : b.port)});
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace tandem
