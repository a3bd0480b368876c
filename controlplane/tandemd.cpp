// tandemd: config -> EAL -> ports -> workers -> control loop -> orderly stop.
#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <optional>
#include <random>
#include <cerrno>
#include <ctime>
#include <cstdio>
#include <thread>

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <rte_launch.h>
#include <rte_lcore.h>

#include "controlplane/config/config.hpp"
#include "controlplane/config/eal_args.hpp"
#include "controlplane/ctl/access.hpp"
#include "controlplane/ctl_service.hpp"
#include "controlplane/ha_service.hpp"
#include "controlplane/sync_service.hpp"
#include "controlplane/health_service.hpp"
#include "controlplane/observe/counters_report.hpp"
#include "controlplane/observe/metrics_server.hpp"
#include "controlplane/observe/sd_notify.hpp"
#include "controlplane/observe/telemetry.hpp"
#include "controlplane/reload.hpp"
#include "controlplane/services.hpp"
#include "controlplane/link_state.hpp"
#include "controlplane/runtime.hpp"
#include "dataplane/eal.hpp"
#include "dataplane/pdump.hpp"
#include "dataplane/port.hpp"
#include "dataplane/worker.hpp"

namespace tandem {
namespace {

void setup_logging(const std::string& level) {
  // stderr, no colours, one event per line: what journald and log collectors want.
  auto logger = spdlog::stderr_logger_mt("tandemd");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  logger->set_level(spdlog::level::from_str(level));
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(logger);
}

void log_counters(const Runtime& rt, const char* title) {
  std::lock_guard lock(rt.control_mutex);
  spdlog::info("{}", title);
  for (const auto& line : observe::format_counters(rt.counters())) spdlog::info("  {}", line);
  for (std::size_t i = 0; i < rt.steering.size(); ++i) {
    if (!rt.steering[i]) continue;
    std::string line = "xdp " + rt.config.ports[i].name + ":";
    const auto v = rt.steering[i]->verdicts();
    for (int k = 0; k < TANDEM_STEER_VERDICT_COUNT; ++k) line += fmt::format(" {}={}", xdp::verdict_name(k), v[k]);
    spdlog::info("  {}", line);
    for (const auto& h : rt.steering[i]->blocklist_hits())
      spdlog::info("  xdp {} blocklist {}: {} packets {} bytes", rt.config.ports[i].name, h.prefix.to_string(), h.packets, h.bytes);
  }
}

// The control thread: waits for signals and watches links. Workers never block on it.
void control_loop(Runtime& rt, const sigset_t& signals) {
  std::vector<bool> link_up(rt.ports.size(), false);
  const timespec tick{0, 200'000'000};
  unsigned ticks = 0;
  while (!rt.stop.load()) {
    const int sig = sigtimedwait(&signals, nullptr, &tick);
    if (sig == SIGINT || sig == SIGTERM) {
      spdlog::info("received {}, stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
      rt.stop.store(true);
      break;
    }
    if (sig == SIGUSR1) log_counters(rt, "counters (SIGUSR1)");
    if (sig == SIGHUP) reload_config(rt);
    if (++ticks % 5 == 0 || sig == SIGHUP) {  // about once a second
      std::lock_guard lock(rt.control_mutex);
      maintain_steering(rt);
    }
    for (std::size_t i = 0; i < rt.ports.size(); ++i) {
      const bool up = port_link_up(rt.config.ports[i], rt.ports[i].port_id);
      if (up != link_up[i]) spdlog::info("port {}: link {}", rt.config.ports[i].name, up ? "up" : "down");
      link_up[i] = up;
    }
  }
}

// Detaches a steering program a previous run left behind (kill -9 cannot detach it), so that the
// PMD can attach a fresh one; refuses to touch anybody else's program.
bool clear_stale_steering(const config::Config& c) {
  for (const auto& p : c.ports) {
    if (!p.xdp_steering) continue;
    std::string error;
    if (xdp::AttachedProgram::detach_if_named(p.devarg("iface"), xdp::kSteerProgramName, error)) {
      spdlog::warn("port {}: detached a stale {} program from {}", p.name, xdp::kSteerProgramName, p.devarg("iface"));
    } else if (!error.empty()) {
      spdlog::critical("port {}: {}", p.name, error);
      return false;
    }
  }
  return true;
}

// Takes over the steering program the PMD attached: the host's own addresses (first: they
// exempt frames from source steering), fast-path addresses, backend sources and the blocklist.
bool start_steering(Runtime& rt) {
  rt.steering.resize(rt.config.ports.size());
  std::string error;
  std::optional<std::vector<net::Ipv4Addr>> host;
  if (std::any_of(rt.config.ports.begin(), rt.config.ports.end(), [](const auto& p) { return p.xdp_steering; })) {
    host = xdp::host_ipv4_addresses(error);
    if (!host) {
      spdlog::critical("XDP steering: {}", error);
      return false;
    }
  }
  for (std::size_t i = 0; i < rt.config.ports.size(); ++i) {
    const auto& p = rt.config.ports[i];
    if (!p.xdp_steering) continue;
    auto s = xdp::Steering::open(p.devarg("iface"), error);
    const auto addrs = steered_addresses(p, p.addresses(), *rt.services.get(), rt.config.ha);
    const auto sources = steered_sources(p, *rt.services.get());
    if (!s || !s->set_host_addresses(*host, error) || !s->set_addresses(addrs, error) ||
        !s->set_sources(sources, error) || !s->set_blocklist(rt.config.xdp.blocklist, error)) {
      spdlog::critical("port {}: XDP steering: {}", p.name, error);
      return false;
    }
    spdlog::info("port {}: XDP steering on {} (program id {}): {} address(es), {} backend source(s), {} blocklist "
                 "prefix(es), {} host address(es) exempt",
                 p.name, p.devarg("iface"), s->program_id(), addrs.size(), sources.size(),
                 rt.config.xdp.blocklist.size(), host->size());
    rt.steering[i] = std::move(s);
  }
  return true;
}

// Stops the ports and releases everything that lives in DPDK memory, before rte_eal_cleanup.
// Telemetry may still ask for counters meanwhile: it takes control_mutex and finds no workers.
void stop_ports(Runtime& rt) {
  {
    std::lock_guard lock(rt.control_mutex);
    rt.steering.clear();
    rt.workers.clear();
    rt.ha_link.reset();
    rt.sync_link.reset();
    rt.locals.reset();
    rt.rcu.reset();
  }
  for (const auto& p : rt.ports) dpdk::port_stop(p.port_id);
  // The PMD detaches its program on close; make sure, since a left-over program would keep
  // steering fast-path addresses to nobody.
  std::string error;
  for (const auto& p : rt.config.ports)
    if (p.xdp_steering) xdp::AttachedProgram::detach_if_named(p.devarg("iface"), xdp::kSteerProgramName, error);
}

int run(config::Config cfg, const std::string& config_path) {
  setup_logging(cfg.log.level);
  // Block the stop signals before EAL starts its threads so that they inherit the mask and only
  // the control thread receives them (through sigtimedwait).
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGUSR1);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  // Lives until exit: the telemetry thread may still read it while the process ends.
  static Runtime rt;
  rt.config_path = config_path;
  rt.config = std::move(cfg);
  const auto& c = rt.config;
  const bool steering = std::any_of(c.ports.begin(), c.ports.end(), [](const auto& p) { return p.xdp_steering; });
  if (steering) {
    rt.config.xdp.program = resolve_steer_program(c);
    if (rt.config.xdp.program.empty()) {
      spdlog::critical("XDP steering is on but steer.bpf.o was found neither beside tandemd nor in {}; set [xdp] program",
                       TANDEM_BPF_DIR);
      return 1;
    }
    if (!clear_stale_steering(c)) return 1;
  }
  spdlog::info("tandemd {} starting: unit {} ({}), {} port(s)", TANDEM_VERSION, c.unit.name, c.unit.id, c.ports.size());

  const auto args = config::eal_arguments(c);
  std::string joined;
  for (const auto& a : args) joined += " " + a;
  spdlog::info("EAL arguments:{}", joined);
  if (auto err = dpdk::eal_init(args); !err.empty()) {
    spdlog::critical("{}", err);
    return 1;
  }

  // Capture with dpdk-dumpcap (a secondary process): a warning, not a failure, when the EAL
  // cannot serve secondary processes. rte_pdump_init() succeeds even where no secondary can
  // attach (memory not in shared hugepage files), so say so from the configuration.
  if (auto e = dpdk::pdump_init(); !e.empty()) {
    spdlog::warn("packet capture (dpdk-dumpcap) unavailable: {}", e);
  } else if (c.eal.no_huge) {
    spdlog::info("packet capture (dpdk-dumpcap) unavailable: eal.no_huge (secondary processes cannot attach)");
  } else {
    for (const char* arg : {"--in-memory", "--no-shconf", "--huge-unlink"})
      if (std::find(c.eal.extra_args.begin(), c.eal.extra_args.end(), arg) != c.eal.extra_args.end())
        spdlog::info("packet capture (dpdk-dumpcap) unavailable: {} (secondary processes cannot attach)", arg);
  }

  const unsigned n_workers = rte_lcore_count();
  unsigned rx_total = 0, tx_total = 0;
  for (const auto& p : c.ports) {
    rx_total += p.rx_descriptors * n_workers;
    tx_total += p.tx_descriptors * n_workers;
  }
  std::string err;
  rte_mempool* pool = dpdk::create_mbuf_pool("tandem_mbufs", dpdk::mbuf_pool_size(rx_total, tx_total, n_workers, c.worker.burst_size),
                                               c.eal.no_huge, err);
  if (!pool) {
    spdlog::critical("{}", err);
    dpdk::eal_cleanup();
    return 1;
  }
  rt.pool = pool;

  std::vector<dpdk::WorkerPort> worker_ports;
  for (const auto& p : c.ports) {
    dpdk::PortSetup setup{.device_name = p.device_name(),
                          .queues = static_cast<std::uint16_t>(n_workers),
                          .rx_descriptors = static_cast<std::uint16_t>(p.rx_descriptors),
                          .tx_descriptors = static_cast<std::uint16_t>(p.tx_descriptors),
                          .mtu = p.mtu,
                          .promiscuous = p.promiscuous};
    dpdk::PortInfo info;
    if (auto e = dpdk::port_start(setup, pool, info); !e.empty()) {
      spdlog::critical("port {}: {}", p.name, e);
      stop_ports(rt);
      dpdk::eal_cleanup();
      return 1;
    }
    spdlog::info("port {}: {} (driver {}, port id {}), mac {}, address {}, role {}{}", p.name, p.device,
                 info.driver, info.port_id, info.mac.to_string(), p.address.to_string(), config::to_string(p.role),
                 p.gateway ? ", gateway " + p.gateway->to_string() : std::string());
    rt.ports.push_back(info);
    worker_ports.push_back({.port_id = info.port_id, .gateway = p.gateway});
  }
  if (c.ha.enabled) {
    try {
      rt.ha_link = std::make_unique<dpdk::HaLink>();
    } catch (const std::exception& e) {
      spdlog::critical("ha: {}", e.what());
      stop_ports(rt);
      dpdk::eal_cleanup();
      return 1;
    }
    rt.ha_link->set_owned_groups(0);  // nothing is served until an election says so
  }
  if (c.sync.enabled) {
    try {
      // A few milliseconds of changes at a worker's full rate of new connections.
      rt.sync_link = std::make_unique<dpdk::SyncLink>(static_cast<unsigned>(rte_lcore_count()), 16384,
                                                      c.sync.refresh_ms, c.sync.mode == config::SyncMode::kSync,
                                                      c.sync.hold_timeout_ms);
    } catch (const std::exception& e) {
      spdlog::critical("sync: {}", e.what());
      stop_ports(rt);
      dpdk::eal_cleanup();
      return 1;
    }
  }
  rt.rcu = std::make_unique<dpdk::QsbrDomain>(n_workers);
  rt.locals = std::make_unique<dpdk::LocalTables>(*rt.rcu);
  {
    auto table = build_service_table(served_services(c.services), err);
    if (!table) {
      spdlog::critical("{}", err);
      stop_ports(rt);
      dpdk::eal_cleanup();
      return 1;
    }
    rt.services.publish(std::move(table), *rt.rcu);
    rt.service_tables_published.fetch_add(1, std::memory_order_relaxed);
  }
  for (const auto& s : c.services)
    spdlog::info("service {}: {}:{}/{} {} with {} backend(s)", s.name, s.vip.to_string(), s.port,
                 config::to_string(s.protocol), conntrack::to_string(s.mode), s.backends.size());
  for (std::size_t i = 0; i < c.ports.size(); ++i) rt.locals->publish(i, rt.local_interface(i, c.ports[i].addresses()));
  if (!start_steering(rt)) {
    stop_ports(rt);
    dpdk::eal_cleanup();
    return 1;
  }

  const dpdk::WorkerSettings ws{.burst_size = c.worker.burst_size,
                                .idle_backoff = c.worker.idle_backoff,
                                .idle_polls_before_sleep = c.worker.idle_polls_before_sleep,
                                .idle_sleep_us = c.worker.idle_sleep_us};
  std::vector<unsigned> lcores;
  unsigned lcore = 0;
  RTE_LCORE_FOREACH(lcore) lcores.push_back(lcore);
  const dpdk::WorkerShared shared{.pool = pool, .locals = rt.locals.get(), .services = &rt.services,
                                  .rcu = rt.rcu.get(), .stop = &rt.stop, .workers = static_cast<unsigned>(lcores.size()),
                                  .ha = rt.ha_link.get(), .sync = rt.sync_link.get()};
  std::random_device entropy;
  for (unsigned i = 0; i < lcores.size(); ++i) {
    // A random hash seed per table: senders cannot aim many flows at one index slot.
    const conntrack::ConnTableConfig conn_config{.capacity = c.conntrack.capacity, .timeouts = c.conntrack.timeouts,
                                                 .hash_seed = std::uint64_t{entropy()} << 32 | entropy()};
    rt.workers.push_back(std::make_unique<dpdk::Worker>(i, ws, worker_ports, c.neighbour, conn_config, shared));
  }
  spdlog::info("connection table: {} connections per worker, {:.1f} MiB per worker ({} bytes per connection)",
               rt.workers[0]->conn_capacity(), static_cast<double>(rt.workers[0]->conn_memory_bytes()) / (1 << 20),
               rt.workers[0]->conn_memory_bytes() / rt.workers[0]->conn_capacity());
  std::vector<dpdk::Worker*> all;
  for (auto& w : rt.workers) all.push_back(w.get());
  for (auto& w : rt.workers) w->set_peers(all);

  observe::register_telemetry(rt);

  // The metrics endpoint binds now, so that a taken or wrong address stops the start here.
  std::unique_ptr<observe::MetricsServer> metrics;
  if (c.metrics.enabled()) {
    metrics = observe::MetricsServer::bind(rt, err);
    if (!metrics) {
      spdlog::critical("metrics: cannot listen on {}: {}", c.metrics.listen, err);
      stop_ports(rt);
      dpdk::eal_cleanup();
      return 1;
    }
  }

  // The ctl socket opens now too: a socket another daemon still serves stops the start.
  std::unique_ptr<CtlService> ctl;
  if (c.ctl.enabled()) {
    ctl = CtlService::open(rt, err);
    if (!ctl) {
      spdlog::critical("ctl: cannot serve {}: {}", c.ctl.socket, err);
      metrics.reset();
      stop_ports(rt);
      dpdk::eal_cleanup();
      return 1;
    }
  }

  // The HA sync socket binds now: a taken address stops the start here.
  std::unique_ptr<HaService> ha;
  if (c.ha.enabled) {
    ha = HaService::open(rt, err);
    if (!ha) {
      spdlog::critical("ha: {}", err);
      ctl.reset();
      metrics.reset();
      stop_ports(rt);
      dpdk::eal_cleanup();
      return 1;
    }
  }

  // The state-sync socket too.
  std::unique_ptr<SyncService> sync;
  if (c.sync.enabled) {
    sync = SyncService::open(rt, err);
    if (!sync) {
      spdlog::critical("sync: {}", err);
      ha.reset();
      ctl.reset();
      metrics.reset();
      stop_ports(rt);
      dpdk::eal_cleanup();
      return 1;
    }
  }

  // Worker 0 runs on the main lcore; the control thread is an ordinary (non-EAL) thread.
  for (unsigned i = 1; i < lcores.size(); ++i)
    rte_eal_remote_launch(dpdk::Worker::lcore_main, rt.workers[i].get(), lcores[i]);
  std::optional<dpdk::ControlCpuScope> control_cpus(std::in_place);  // the threads created until worker 0 runs
  spdlog::info("control threads on CPU(s) {}", control_cpus->cpus());
  std::thread control(control_loop, std::ref(rt), std::cref(signals));
  // Served from a DPDK control thread (never a worker lcore), once the workers run.
  bool failed = false;
  if (metrics) {
    if (!metrics->serve(err)) {
      spdlog::critical("metrics: {}", err);
      failed = true;
      rt.stop.store(true);  // the workers and the control thread end; the usual stop follows
    } else {
      spdlog::info("metrics: serving http://{}/metrics", c.metrics.listen);
    }
  }
  // Health checks once the workers run: a backend found down is drained through them.
  std::unique_ptr<HealthService> health;
  try {
    health = std::make_unique<HealthService>(rt);
  } catch (const std::exception& e) {
    spdlog::error("health: checks not running: {}", e.what());
  }
  if (sync) sync->start();  // before HA, which asks it whether this unit is ready
  if (ha) ha->start();
  if (ctl) {
    ctl->start();
    spdlog::info("ctl: serving {} (mode {:o})", ctl->path(), c.ctl.mode);
  }
  if (!failed) {
    spdlog::info("tandemd ready: {} worker(s) on lcores {}, idle back-off {}", lcores.size(), c.eal.lcores,
                 c.worker.idle_backoff ? "on" : "off");
    observe::sd_notify("READY=1\nSTATUS=forwarding");
  }

  control_cpus.reset();  // this thread is worker 0 again, on the main lcore's CPU
  dpdk::Worker::lcore_main(rt.workers[0].get());
  rte_eal_mp_wait_lcore();
  control.join();
  observe::sd_notify("STOPPING=1");
  metrics.reset();  // stops accepting, finishes the scrapes in progress, joins its threads
  ctl.reset();      // its thread ends with rt.stop; removes the socket
  rt.ha = nullptr;  // nobody asks it any more (ctl and metrics are gone)
  ha.reset();       // its thread ended with rt.stop (after telling the peer)
  rt.sync = nullptr;
  sync.reset();     // its thread ended with rt.stop
  health.reset();   // stops the checks before the workers go

  log_counters(rt, "final counters");
  stop_ports(rt);
  dpdk::pdump_uninit();
  dpdk::eal_cleanup();
  spdlog::info("tandemd stopped");
  return failed ? 1 : 0;
}

}  // namespace
}  // namespace tandem

int main(int argc, char** argv) {
  CLI::App app{"tandemd: the Tandem redundancy appliance daemon"};
  std::string config_path, check_path;
  auto* run_opt = app.add_option("-c,--config", config_path, "configuration file (TOML)")->check(CLI::ExistingFile);
  auto* check_opt = app.add_option("--check-config", check_path, "validate a configuration file and exit");
  run_opt->excludes(check_opt);
  app.set_version_flag("--version", std::string("tandemd ") + TANDEM_VERSION);
  CLI11_PARSE(app, argc, argv);
  if (config_path.empty() && check_path.empty()) {
    std::fputs("tandemd: --config FILE or --check-config FILE is required (see --help)\n", stderr);
    return 2;
  }

  const std::string& path = check_path.empty() ? config_path : check_path;
  auto parsed = tandem::config::load_config(path);
  if (!parsed.config) {
    for (const auto& e : parsed.errors) std::fprintf(stderr, "%s\n", e.to_string().c_str());
    std::fprintf(stderr, "tandemd: %zu error(s) in %s\n", parsed.errors.size(), path.c_str());
    return 1;
  }
  // Users and groups of [ctl] must exist here, or the operator would be locked out.
  std::string error;
  if (parsed.config->ctl.enabled() && !tandem::ctl::server_options(parsed.config->ctl, error)) {
    std::fprintf(stderr, "%s: %s\n", path.c_str(), error.c_str());
    return 1;
  }
  if (!check_path.empty()) {
    std::printf("%s: configuration is valid\n", path.c_str());
    return 0;
  }
  return tandem::run(std::move(*parsed.config), path);
}
