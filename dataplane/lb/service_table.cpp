#include "dataplane/lb/service_table.hpp"

#include <algorithm>

namespace tandem::lb {

std::unique_ptr<const ServiceTable> ServiceTable::build(std::vector<Service> services, std::string& error) {
  auto table = std::unique_ptr<ServiceTable>(new ServiceTable());
  for (auto& s : services) {
    std::vector<MaglevBackend> keys;
    for (const auto& b : s.backends) keys.push_back({maglev_key(b.addr, b.port), b.weight});
    std::string why;
    auto maglev = build_maglev(keys, s.maglev_size, &why);
    if (!maglev) {
      error = "service " + s.name + ": " + why;
      return nullptr;
    }
    s.maglev = std::move(*maglev);
  }
  table->services_ = std::move(services);
  for (std::uint32_t i = 0; i < table->services_.size(); ++i) {
    const Service& s = table->services_[i];
    table->by_key_.push_back({key(s.vip, s.proto, s.port), i});
    table->vips_.push_back(s.vip.value);
    for (const auto a : s.local_addrs) table->local_addrs_.push_back(a.value);
  }
  std::sort(table->by_key_.begin(), table->by_key_.end());
  std::sort(table->vips_.begin(), table->vips_.end());
  table->vips_.erase(std::unique(table->vips_.begin(), table->vips_.end()), table->vips_.end());
  std::sort(table->local_addrs_.begin(), table->local_addrs_.end());
  table->local_addrs_.erase(std::unique(table->local_addrs_.begin(), table->local_addrs_.end()),
                            table->local_addrs_.end());
  return table;
}

const Service* ServiceTable::find(net::Ipv4Addr vip, std::uint8_t proto, std::uint16_t port) const {
  for (const std::uint16_t p : {port, std::uint16_t{0}}) {
    const std::uint64_t k = key(vip, proto, p);
    const auto it = std::lower_bound(by_key_.begin(), by_key_.end(), std::pair<std::uint64_t, std::uint32_t>{k, 0});
    if (it != by_key_.end() && it->first == k) return &services_[it->second];
    if (port == 0) break;
  }
  return nullptr;
}

bool ServiceTable::is_vip(net::Ipv4Addr addr) const {
  return std::binary_search(vips_.begin(), vips_.end(), addr.value);
}

bool ServiceTable::is_local_addr(net::Ipv4Addr addr) const {
  return std::binary_search(local_addrs_.begin(), local_addrs_.end(), addr.value);
}

std::vector<net::Ipv4Addr> ServiceTable::vips() const {
  std::vector<net::Ipv4Addr> out;
  for (const auto v : vips_) out.push_back({v});
  return out;
}

}  // namespace tandem::lb
