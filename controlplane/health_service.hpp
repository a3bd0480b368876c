// tandemd's backend health checks: the monitor (health/health_monitor.hpp) over the running
// services, and what a change does to the running unit:
//   - a backend that goes down is balanced as if drained (weight 0 in the Maglev table: new
//     flows go elsewhere), through the same RCU publish as a reload;
//   - with on_backend_down = "reset" its connections are flushed inside the workers, so their
//     next packets are balanced afresh (TCP ones then get a reset from the new backend);
//   - it comes back after `rise` good checks.
// Every change is logged with its error. State is shown in `tandemctl services list`, metrics
// and HA tracking.
#pragma once

#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "controlplane/config/config.hpp"
#include "controlplane/health/health_monitor.hpp"

namespace tandem {

struct Runtime;

class HealthService {
 public:
  // Starts checking rt.config.services; registers itself as rt.health. Throws
  // std::system_error when the checker cannot be set up.
  explicit HealthService(Runtime& rt);
  ~HealthService();  // stops the checks; unregisters
  HealthService(const HealthService&) = delete;
  HealthService& operator=(const HealthService&) = delete;

  // The services changed (reload, ctl): unchanged backends keep their state.
  void reconfigure(const std::vector<config::ServiceConfig>& services);
  std::vector<health::BackendHealth> snapshot() const { return monitor_->snapshot(); }
  // Whether the checks took this backend out (thread-safe, cheap).
  bool is_down(const std::string& service, net::Ipv4Addr address, std::uint16_t port) const;
  // Backends of `service` that take new flows: enabled, weight > 0, not down.
  std::uint32_t healthy_backends(const std::string& service) const;

 private:
  void on_change(const std::string& service, net::Ipv4Addr address, std::uint16_t port, bool up,
                 const std::string& error);

  Runtime& rt_;
  mutable std::mutex mutex_;
  std::set<std::tuple<std::string, std::uint32_t, std::uint16_t>> down_;
  std::unique_ptr<health::HealthMonitor> monitor_;
};

}  // namespace tandem
