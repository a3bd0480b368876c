#include "controlplane/health_service.hpp"

#include <algorithm>

#include <spdlog/spdlog.h>

#include "controlplane/conn_queries.hpp"
#include "controlplane/reload.hpp"
#include "controlplane/runtime.hpp"

namespace tandem {

HealthService::HealthService(Runtime& rt) : rt_(rt) {
  monitor_ = std::make_unique<health::HealthMonitor>(
      rt.config.services, [this](const std::string& service, net::Ipv4Addr address, std::uint16_t port, bool up,
                                 const std::string& error) { on_change(service, address, port, up, error); });
  rt_.health = this;
  rt_.healthy_backends = [this](const std::string& service) { return healthy_backends(service); };
  std::size_t checked = 0;
  for (const auto& s : rt.config.services)
    if (s.health_check.enabled()) checked += s.backends.size();
  if (checked) spdlog::info("health: checking {} backend(s)", checked);
}

HealthService::~HealthService() {
  monitor_->stop();  // no callback runs after this
  rt_.healthy_backends = nullptr;
  rt_.health = nullptr;
}

void HealthService::reconfigure(const std::vector<config::ServiceConfig>& services) {
  {
    // Forget the state of backends that are gone: a backend added again starts unknown (up).
    std::lock_guard lock(mutex_);
    std::erase_if(down_, [&](const auto& key) {
      const auto& [service, address, port] = key;
      return std::none_of(services.begin(), services.end(), [&](const config::ServiceConfig& s) {
        return s.name == service && s.health_check.enabled() &&
               std::any_of(s.backends.begin(), s.backends.end(), [&](const config::BackendConfig& b) {
                 return b.address.value == address && b.port == port;
               });
      });
    });
  }
  monitor_->reconfigure(services);
}

bool HealthService::is_down(const std::string& service, net::Ipv4Addr address, std::uint16_t port) const {
  std::lock_guard lock(mutex_);
  return down_.count({service, address.value, port}) != 0;
}

std::uint32_t HealthService::healthy_backends(const std::string& service) const {
  // rt.config is read by the control paths under control_mutex; HA tracking calls this from its
  // thread without it, so take it here.
  std::lock_guard cfg(rt_.control_mutex);
  std::uint32_t n = 0;
  for (const auto& s : rt_.config.services)
    if (s.name == service)
      for (const auto& b : s.backends)
        if (b.enabled && b.weight > 0 && !is_down(service, b.address, b.port)) ++n;
  return n;
}

void HealthService::on_change(const std::string& service, net::Ipv4Addr address, std::uint16_t port, bool up,
                              const std::string& error) {
  {
    std::lock_guard lock(mutex_);
    if (up) down_.erase({service, address.value, port});
    else down_.insert({service, address.value, port});
  }
  const std::string backend = address.to_string() + ":" + std::to_string(port);
  if (up) spdlog::warn("health: service {} backend {} is UP again: new flows may go to it", service, backend);
  else spdlog::warn("health: service {} backend {} is DOWN ({}): no new flows", service, backend, error);

  conntrack::ConnFilter flush;
  bool reset = false;
  {
    std::lock_guard lock(rt_.control_mutex);
    std::string why;
    // The same services, balanced anew: served_services() drains what is down.
    if (!apply_services(rt_, rt_.config.services, why)) {
      spdlog::error("health: service table not rebuilt: {}", why);
      return;
    }
    const auto it = std::find_if(rt_.config.services.begin(), rt_.config.services.end(),
                                 [&](const auto& s) { return s.name == service; });
    if (!up && it != rt_.config.services.end() && it->on_backend_down == config::BackendDownPolicy::kReset) {
      reset = true;
      flush.vip = it->vip.value;
      flush.proto = static_cast<std::uint8_t>(it->protocol);
      if (it->port != 0) flush.vip_port = it->port;
      flush.backend = address.value;
    }
  }
  if (!reset) return;
  // Outside control_mutex: the workers run it, ctl and metrics go on meanwhile.
  const QueryResult r = run_query(rt_, conntrack::ConnQueryOp::kFlush, flush, 0);
  std::uint64_t flushed = 0;
  for (const auto& q : r.per_worker) flushed += q->matched;
  spdlog::warn("health: service {} backend {}: {} connection(s) reset (on_backend_down = reset){}", service, backend,
               flushed, r.timed_out ? "; a worker did not answer in time" : "");
}

}  // namespace tandem
