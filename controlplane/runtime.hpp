// What a running tandemd is made of, shared by the control thread and the observers.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "controlplane/config/config.hpp"
#include "controlplane/ha_drill.hpp"
#include "controlplane/observe/counters_report.hpp"
#include "controlplane/observe/service_counters.hpp"
#include "controlplane/xdp/steering.hpp"
#include "dataplane/ha_link.hpp"
#include "dataplane/local_tables.hpp"
#include "dataplane/port.hpp"
#include "dataplane/sync_link.hpp"
#include "dataplane/worker.hpp"

struct rte_mempool;

namespace tandem {

class HaService;
class HealthService;
class SyncService;

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
  std::unique_ptr<dpdk::HaLink> ha_link;  // with [ha]: what the HA thread shares with the workers
  HaService* ha = nullptr;                // with [ha], while it runs: status and operator requests
  DrillLog drills;                        // `tandemctl ha drill`s run, for /metrics
  std::unique_ptr<dpdk::SyncLink> sync_link;  // with [sync]: the workers' rings to the sync thread
  SyncService* sync = nullptr;                // with [sync], while it runs: status, readiness
  HealthService* health = nullptr;        // while it runs: backend health checks
  // Healthy backends of a service (for [[ha.track]] service = NAME): set by the health checks.
  // Unset: every enabled backend with a weight counts.
  std::function<std::uint32_t(const std::string& service)> healthy_backends;
  // Serialises the control thread's changes with telemetry's reads of the steering state.
  mutable std::mutex control_mutex;
  std::atomic<bool> stop{false};
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();

  std::vector<std::string> port_names() const {
    std::vector<std::string> names;
    for (const auto& p : config.ports) names.push_back(p.name);
    return names;
  }

  // The table a port's workers use: its MAC and `addresses`, and the addresses that move with
  // the HA groups this unit owns now (all of them without [ha]): the VIPs of the groups'
  // services on a port facing clients, the groups' floating addresses on their port.
  // Hold control_mutex (it reads the published service table).
  LocalInterface local_interface(std::size_t port, const std::vector<net::Ipv4Prefix>& addresses) const {
    LocalInterface itf;
    itf.mac = ports[port].mac;
    for (const auto& a : addresses) itf.add(a);
    const auto& pc = config.ports[port];
    const std::uint64_t owned = ha_link ? ha_link->owned_groups() : ~std::uint64_t{0};
    const auto owns = [&](std::uint8_t group) { return (owned >> group & 1) != 0; };
    if (pc.role != config::PortRole::kSouth && services.get())
      for (const auto& s : services.get()->services())
        if (owns(s.group)) itf.add_floating(s.vip);
    for (const auto& g : config.ha.groups)
      if (owns(g.id))
        for (const auto& f : g.floating_addresses)
          if (f.port == pc.name) itf.add_floating(f.address.addr);
    if (config.ha.enabled && config.ha.data_port == pc.name) itf.ha_udp_port = config.ha.data_udp_port;
    return itf;
  }

  // Republishes every port's table (after the owned groups or the services changed).
  void publish_local_interfaces() {
    for (std::size_t i = 0; i < config.ports.size(); ++i) locals->publish(i, local_interface(i, config.ports[i].addresses()));
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
