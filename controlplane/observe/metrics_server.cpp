#include "controlplane/observe/metrics_server.hpp"

#include <pthread.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <thread>

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <rte_lcore.h>
#include <rte_mempool.h>

#include "controlplane/health_service.hpp"
#include "controlplane/observe/ha_metrics.hpp"
#include "controlplane/sync_service.hpp"
#include "controlplane/observe/service_metrics.hpp"
#include "controlplane/runtime.hpp"

namespace tandem::observe {

using prometheus::Label;
using prometheus::MetricType;

prometheus::Exposition gather_metrics(const Runtime& rt) {
  prometheus::Exposition e;
  e.family("tandem_build_info", "tandemd's version; always 1.", MetricType::kGauge).add({{"version", TANDEM_VERSION}}, 1);
  const auto up = std::chrono::duration<double>(std::chrono::steady_clock::now() - rt.started).count();
  e.family("tandem_uptime_seconds", "Seconds since tandemd started.", MetricType::kGauge).add({}, up);

  // Before control_mutex: the HA thread takes its own lock, then control_mutex.
  if (rt.ha) add_ha_metrics(e, rt.ha->metrics());
  if (rt.ha) add_drill_metrics(e, rt.drills.snapshot());
  if (rt.sync) add_sync_metrics(e, rt.sync->status());
  if (rt.health) add_health_metrics(e, rt.health->snapshot());

  std::lock_guard lock(rt.control_mutex);
  const CounterTotals t = rt.counters();

  auto& packets = e.family("tandem_port_packets_total", "Frames received (rx) and sent (tx) per port.", MetricType::kCounter);
  for (const auto& p : t.ports)
    packets.add({{"port", p.name}, {"direction", "rx"}}, p.rx_packets).add({{"port", p.name}, {"direction", "tx"}}, p.tx_packets);
  auto& bytes = e.family("tandem_port_bytes_total", "Bytes received (rx) and sent (tx) per port.", MetricType::kCounter);
  for (const auto& p : t.ports)
    bytes.add({{"port", p.name}, {"direction", "rx"}}, p.rx_bytes).add({{"port", p.name}, {"direction", "tx"}}, p.tx_bytes);
  auto& tx_dropped = e.family("tandem_port_tx_dropped_total", "Frames the port's TX queue did not take.", MetricType::kCounter);
  for (const auto& p : t.ports) tx_dropped.add({{"port", p.name}}, p.tx_dropped);

  auto& drops = e.family("tandem_drops_total", "Frames the fast path dropped, by reason.", MetricType::kCounter);
  for (std::size_t i = 0; i < kDropReasonCount; ++i) drops.add({{"reason", to_string(static_cast<DropReason>(i))}}, t.drops[i]);
  auto& handled = e.family("tandem_handled_total", "Frames the fast path handled itself, by event.", MetricType::kCounter);
  for (std::size_t i = 0; i < kHandledCount; ++i) handled.add({{"event", to_string(static_cast<Handled>(i))}}, t.handled[i]);

  // Neighbour cache and connection table figures, as the workers last published them (at most
  // 200 ms old). A worker only ever try_locks its snapshot: holding it never stalls one.
  neigh::NeighStats n;
  conntrack::ConnStats cs;
  std::uint64_t connections = 0, capacity = 0, memory = 0;
  std::vector<std::uint64_t> neighbours(rt.config.ports.size(), 0);
  for (std::size_t w = 0; w < rt.workers.size(); ++w) {
    capacity += rt.workers[w]->conn_capacity();
    memory += rt.workers[w]->conn_memory_bytes();
    auto& snap = rt.workers[w]->neighbour_snapshot();
    std::lock_guard snap_lock(snap.mutex);
    n += snap.stats;
    cs += snap.conn_stats;
    connections += snap.connections;
    if (w == 0)  // every worker learns the same entries
      for (const auto& row : snap.rows)
        if (row.port_index < neighbours.size()) ++neighbours[row.port_index];
  }
  e.family("tandem_conntrack_connections", "Connections in the tables (all workers).", MetricType::kGauge).add({}, connections);
  e.family("tandem_conntrack_capacity", "Connections the tables can hold (all workers).", MetricType::kGauge).add({}, capacity);
  e.family("tandem_conntrack_memory_bytes", "Memory of the connection tables (all workers).", MetricType::kGauge).add({}, memory);
  e.family("tandem_conntrack_created_total", "Connections entered in the tables.", MetricType::kCounter).add({}, cs.inserts);
  e.family("tandem_conntrack_expired_total", "Connections removed after their timeout.", MetricType::kCounter).add({}, cs.expired);
  e.family("tandem_conntrack_insert_failures_total",
           "Connections not entered: table full, or already there (a race between workers).", MetricType::kCounter)
      .add({{"reason", "full"}}, cs.insert_failed_full)
      .add({{"reason", "exists"}}, cs.insert_failed_exists);
  e.family("tandem_conntrack_lookups_total", "Connection table lookups, by result.", MetricType::kCounter)
      .add({{"result", "hit"}}, cs.lookups_hit)
      .add({{"result", "miss"}}, cs.lookups_miss);

  auto& neigh_entries = e.family("tandem_neighbour_entries", "Entries in the neighbour cache, per port.", MetricType::kGauge);
  for (std::size_t i = 0; i < neighbours.size(); ++i) neigh_entries.add({{"port", rt.config.ports[i].name}}, neighbours[i]);
  e.family("tandem_neighbour_events_total", "Neighbour cache events (all workers and ports).", MetricType::kCounter)
      .add({{"event", "created"}}, n.created)
      .add({{"event", "updated"}}, n.updated)
      .add({{"event", "mac_changed"}}, n.mac_changed)
      .add({{"event", "evicted"}}, n.evicted)
      .add({{"event", "table_full"}}, n.table_full)
      .add({{"event", "expired"}}, n.expired)
      .add({{"event", "failed"}}, n.failed);

  const bool steering = std::any_of(rt.steering.begin(), rt.steering.end(), [](const auto& s) { return s != nullptr; });
  if (steering) {
    auto& verdicts = e.family("tandem_xdp_verdicts_total", "Frames the XDP steering program saw, by verdict, per steered port.",
                              MetricType::kCounter);
    for (std::size_t i = 0; i < rt.steering.size(); ++i) {
      if (!rt.steering[i]) continue;
      const auto v = rt.steering[i]->verdicts();
      for (int k = 0; k < TANDEM_STEER_VERDICT_COUNT; ++k)
        verdicts.add({{"port", rt.config.ports[i].name}, {"verdict", xdp::verdict_name(k)}}, v[k]);
    }
  }

  // Per worker: busy_polls / polls is the share of polls that found work.
  auto& polls = e.family("tandem_worker_polls_total", "Receive polls per worker.", MetricType::kCounter);
  auto& busy = e.family("tandem_worker_busy_polls_total", "Receive polls that returned frames, per worker.", MetricType::kCounter);
  auto& sleeps = e.family("tandem_worker_idle_sleeps_total", "Idle back-off sleeps per worker.", MetricType::kCounter);
  for (const auto& w : rt.workers) {
    const std::string id = std::to_string(w->index());
    polls.add({{"worker", id}}, w->counters().polls.get());
    busy.add({{"worker", id}}, w->counters().busy_polls.get());
    sleeps.add({{"worker", id}}, w->counters().idle_sleeps.get());
  }

  if (rt.pool) {
    const std::string name = rt.pool->name;
    e.family("tandem_mempool_in_use", "Buffers of the mbuf pool in use (in rings, queues, caches of frames in flight).",
             MetricType::kGauge)
        .add({{"pool", name}}, rte_mempool_in_use_count(rt.pool));
    e.family("tandem_mempool_available", "Free buffers of the mbuf pool.", MetricType::kGauge)
        .add({{"pool", name}}, rte_mempool_avail_count(rt.pool));
  }

  std::uint64_t backends = 0;
  for (const auto& svc : rt.config.services) backends += svc.backends.size();
  e.family("tandem_services", "Services configured.", MetricType::kGauge).add({}, rt.config.services.size());
  e.family("tandem_backends", "Backends configured, over all services (drained ones included).", MetricType::kGauge)
      .add({}, backends);
  e.family("tandem_maglev_rebuilds_total",
           "Service tables (with every service's Maglev lookup table) built and published: one at start, one per "
           "reload that changed the services.",
           MetricType::kCounter)
      .add({}, rt.service_tables_published.load(std::memory_order_relaxed));
  add_service_metrics(e, rt.service_counters());
  return e;
}

struct MetricsServer::Impl {
  const Runtime& rt;
  httplib::Server server;
  pthread_t thread{};
  bool started = false;
  std::atomic<bool> finished{false};

  explicit Impl(const Runtime& runtime) : rt(runtime) {}

  static void* run(void* arg) {
    auto* self = static_cast<Impl*>(arg);
    if (!self->server.listen_after_bind()) spdlog::error("metrics: the HTTP server stopped on an error");
    self->finished.store(true);
    return nullptr;
  }
};

MetricsServer::MetricsServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

std::unique_ptr<MetricsServer> MetricsServer::bind(const Runtime& rt, std::string& error) {
  auto impl = std::make_unique<Impl>(rt);
  httplib::Server& s = impl->server;
  const Runtime* runtime = &rt;
  s.Get("/metrics", [runtime](const httplib::Request&, httplib::Response& res) {
    try {
      res.set_content(prometheus::render(gather_metrics(*runtime)), prometheus::kContentType);
    } catch (const std::exception& e) {
      spdlog::error("metrics: {}", e.what());
      res.status = 500;
      res.set_content(std::string("error: ") + e.what() + "\n", "text/plain");
    }
  });
  s.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (res.body.empty()) res.set_content(res.status == 404 ? "not found: try /metrics\n" : "error\n", "text/plain");
  });
  // Two threads serve scrapes; a connection carries one request and gives up on a silent peer
  // soon, so that stopping never waits long.
  s.new_task_queue = [] { return new httplib::ThreadPool(2); };
  s.set_keep_alive_max_count(1);
  s.set_read_timeout(2, 0);
  s.set_write_timeout(2, 0);
  // SO_REUSEADDR only: httplib's default (SO_REUSEPORT) would let a second daemon share the port.
  s.set_socket_options([](int sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  errno = 0;
  if (!s.bind_to_port(rt.config.metrics.address.to_string(), rt.config.metrics.port)) {
    error = errno != 0 ? std::strerror(errno) : "bind failed";
    return nullptr;
  }
  return std::unique_ptr<MetricsServer>(new MetricsServer(std::move(impl)));
}

bool MetricsServer::serve(std::string& error) {
  // A DPDK control thread runs on the CPUs no lcore uses (the main lcore's when there are none);
  // httplib's pool threads, started from it, inherit that.
  if (const int rc = rte_ctrl_thread_create(&impl_->thread, "tandem-metrics", nullptr, Impl::run, impl_.get()); rc != 0) {
    error = std::string("cannot create the server thread: ") + std::strerror(rc < 0 ? -rc : rc);
    return false;
  }
  impl_->started = true;
  return true;
}

MetricsServer::~MetricsServer() {
  if (!impl_->started) {
    impl_->server.stop();  // closes the bound socket if listening began; harmless otherwise
    return;
  }
  // listen_after_bind marks the server running first thing; a stop() before that would be lost.
  while (!impl_->server.is_running() && !impl_->finished.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  impl_->server.stop();
  pthread_join(impl_->thread, nullptr);
}

}  // namespace tandem::observe
