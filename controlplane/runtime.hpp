// What a running tandemd is made of, shared by the control thread and the observers.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "controlplane/config/config.hpp"
#include "controlplane/observe/counters_report.hpp"
#include "controlplane/observe/service_counters.hpp"
#include "controlplane/xdp/steering.hpp"
#include "dataplane/local_tables.hpp"
#include "dataplane/port.hpp"
#include "dataplane/worker.hpp"

struct rte_mempool;

namespace tandem {

struct Runtime {
  std::string config_path;
  config::Config config;
  std::vector<dpdk::PortInfo> ports;                  // index = config.ports index
  std::unique_ptr<dpdk::QsbrDomain> rcu;              // grace periods for what workers read
  std::unique_ptr<dpdk::LocalTables> locals;          // the addresses each port answers for
  dpdk::RcuPointer<lb::ServiceTable> services;        // what the workers balance
  // Service tables (each with its services' Maglev lookup tables) built and published: one at
  // start, one per reload that changed the services. Written by the control thread only.
  std::atomic<std::uint64_t> service_tables_published{0};
  rte_mempool* pool = nullptr;                        // the workers' mbufs; freed by eal_cleanup
  std::vector<std::unique_ptr<dpdk::Worker>> workers;
  std::vector<std::unique_ptr<xdp::Steering>> steering;  // per port; null without XDP steering
  // Serialises the control thread's changes with telemetry's reads of the steering state.
  mutable std::mutex control_mutex;
  std::atomic<bool> stop{false};
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();

  std::vector<std::string> port_names() const {
    std::vector<std::string> names;
    for (const auto& p : config.ports) names.push_back(p.name);
    return names;
  }

  // The table a port's workers use: its MAC and `addresses`.
  LocalInterface local_interface(std::size_t port, const std::vector<net::Ipv4Prefix>& addresses) const {
    LocalInterface itf;
    itf.mac = ports[port].mac;
    for (const auto& a : addresses) itf.add(a);
    return itf;
  }

  observe::CounterTotals counters() const {
    std::vector<const WorkerCounters*> w;
    for (const auto& worker : workers) w.push_back(&worker->counters());
    return observe::sum_counters(w, port_names());
  }

  // Per service and backend traffic along the published service table. Hold control_mutex (new
  // tables are published under it, so the one read here stays alive).
  std::vector<observe::ServiceCounters> service_counters() const {
    const lb::ServiceTable* table = services.get();
    if (!table) return {};
    std::vector<const WorkerServiceStats*> w;
    for (const auto& worker : workers) w.push_back(&worker->service_stats());
    return observe::service_counters(*table, w);
  }
};

}  // namespace tandem
