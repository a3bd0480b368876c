// What a running tandemd is made of, shared by the control thread and the observers.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "controlplane/config/config.hpp"
#include "controlplane/observe/counters_report.hpp"
#include "dataplane/port.hpp"
#include "dataplane/worker.hpp"

namespace tandem {

struct Runtime {
  config::Config config;
  std::vector<dpdk::PortInfo> ports;                  // index = config.ports index
  std::vector<std::unique_ptr<dpdk::Worker>> workers;
  std::atomic<bool> stop{false};
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();

  std::vector<std::string> port_names() const {
    std::vector<std::string> names;
    for (const auto& p : config.ports) names.push_back(p.name);
    return names;
  }

  observe::CounterTotals counters() const {
    std::vector<const WorkerCounters*> w;
    for (const auto& worker : workers) w.push_back(&worker->counters());
    return observe::sum_counters(w, port_names());
  }
};

}  // namespace tandem
