// The Prometheus endpoint: GET /metrics over HTTP (cpp-httplib), from a DPDK control thread.
// What it exports is listed in docs/operations.md ("Metrics").
#pragma once

#include <memory>
#include <string>

#include "controlplane/observe/prometheus.hpp"

namespace tandem {
struct Runtime;
}

namespace tandem::observe {

// Every figure of the running unit as Prometheus families. Takes control_mutex and each
// worker's snapshot mutex (which workers only ever try_lock); reads counters relaxed. Never
// waits on a worker.
prometheus::Exposition gather_metrics(const Runtime& rt);

class MetricsServer {
 public:
  // Binds config.metrics (address:port) without serving yet. Null with `error` on failure.
  static std::unique_ptr<MetricsServer> bind(const Runtime& rt, std::string& error);
  // Starts the server thread (a DPDK control thread: off the workers' cores when the machine has
  // spare ones). False with `error` when it cannot be created.
  bool serve(std::string& error);
  // Stops accepting, lets the requests in progress finish and joins the threads.
  ~MetricsServer();

  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  struct Impl;

 private:
  explicit MetricsServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem::observe
