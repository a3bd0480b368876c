#include "controlplane/observe/stats_registry.hpp"

namespace tandem::observe {

StatsRegistry::StatsRegistry(std::size_t service_slots, std::size_t backend_slots)
    : service_slots_(service_slots), backend_slots_(backend_slots) {}

namespace {

// The key's id, or the next free one (ids start at 1), or kUnattributedStats when none is left.
template <typename Map, typename Key>
std::uint32_t id_for(Map& ids, const Key& key, std::size_t slots, bool& full) {
  if (const auto it = ids.find(key); it != ids.end()) return it->second;
  if (ids.size() + 1 >= slots) {
    full = true;
    return kUnattributedStats;
  }
  const auto id = static_cast<std::uint32_t>(ids.size() + 1);
  ids.emplace(key, id);
  return id;
}

}  // namespace

std::string StatsRegistry::assign(std::vector<lb::Service>& services) {
  std::lock_guard lock(mutex_);
  bool services_full = false, backends_full = false;
  for (lb::Service& s : services) {
    s.stats_id = id_for(services_, s.name, service_slots_, services_full);
    for (lb::Backend& b : s.backends)
      b.stats_id = id_for(backends_, BackendKey{s.name, b.addr.value, b.port}, backend_slots_, backends_full);
  }
  if (warned_ || !(services_full || backends_full)) return {};
  warned_ = true;
  std::string what = services_full && backends_full ? "services and backends"
                     : services_full                ? "services"
                                                    : "backends";
  return "traffic counters: no slot left for new " + what + " (" + std::to_string(service_slots_ - 1) +
         " services, " + std::to_string(backend_slots_ - 1) +
         " backends over the daemon's life); their traffic is not counted per service or backend until a restart";
}

std::uint32_t StatsRegistry::service_id(const std::string& service) const {
  std::lock_guard lock(mutex_);
  const auto it = services_.find(service);
  return it == services_.end() ? kUnattributedStats : it->second;
}

std::uint32_t StatsRegistry::backend_id(const std::string& service, net::Ipv4Addr addr, std::uint16_t port) const {
  std::lock_guard lock(mutex_);
  const auto it = backends_.find(BackendKey{service, addr.value, port});
  return it == backends_.end() ? kUnattributedStats : it->second;
}

std::size_t StatsRegistry::services() const {
  std::lock_guard lock(mutex_);
  return services_.size();
}

std::size_t StatsRegistry::backends() const {
  std::lock_guard lock(mutex_);
  return backends_.size();
}

}  // namespace tandem::observe
