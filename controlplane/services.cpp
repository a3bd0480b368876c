#include "controlplane/services.hpp"

#include <algorithm>

namespace tandem {

std::unique_ptr<const lb::ServiceTable> build_service_table(const std::vector<config::ServiceConfig>& services,
                                                            std::string& error) {
  std::vector<lb::Service> out;
  for (const auto& s : services) {
    lb::Service svc{.name = s.name,
                    .vip = s.vip,
                    .proto = static_cast<std::uint8_t>(s.protocol),
                    .port = s.port,
                    .mode = s.mode,
                    .local_addrs = s.local_addresses,
                    .maglev_size = s.maglev_size};
    for (const auto& b : s.backends) svc.backends.push_back({b.address, b.port, b.weight});
    out.push_back(std::move(svc));
  }
  return lb::ServiceTable::build(std::move(out), error);
}

std::vector<net::Ipv4Addr> steered_addresses(const config::PortConfig& port,
                                             const std::vector<net::Ipv4Prefix>& own,
                                             const lb::ServiceTable& services) {
  std::vector<net::Ipv4Addr> out;
  for (const auto& p : own) out.push_back(p.addr);
  if (port.role != config::PortRole::kSouth)
    for (const auto& vip : services.vips())
      if (std::find(out.begin(), out.end(), vip) == out.end()) out.push_back(vip);
  return out;
}

}  // namespace tandem
