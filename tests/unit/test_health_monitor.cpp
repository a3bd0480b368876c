// The monitor thread (controlplane/health/health_monitor.*) with real servers on 127.0.0.1 and
// intervals of tens of milliseconds: backends going down when their server stops and back when
// it returns, reconfiguration keeping what did not change, backends with no port to check.
// Waits are for events (up to 5 s); assertions are on counts and order, never on timings.
#include "controlplane/health/health_monitor.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "tests/unit/loopback_server.hpp"

namespace {

using tandem::config::BackendConfig;
using tandem::config::HealthCheckType;
using tandem::config::ServiceConfig;
using tandem::health::BackendHealth;
using tandem::health::HealthMonitor;
using tandem::net::Ipv4Addr;
using tandem::test::LoopbackServer;
using tandem::test::eventually;
using tandem::test::kLoopback;
using tandem::test::kPatience;

ServiceConfig service(const std::string& name, std::vector<std::uint16_t> backend_ports,
                      HealthCheckType type = HealthCheckType::kTcp) {
  ServiceConfig s;
  s.name = name;
  s.vip = Ipv4Addr{0x0a000001};
  s.port = 80;
  for (const std::uint16_t p : backend_ports) s.backends.push_back(BackendConfig{kLoopback, p, 1, true});
  s.health_check.type = type;
  s.health_check.interval_ms = 20;
  s.health_check.timeout_ms = 15;
  s.health_check.rise = 2;
  s.health_check.fall = 3;
  return s;
}

struct Event {
  std::string service;
  std::uint16_t port = 0;
  bool up = true;
  std::string error;
  std::optional<BackendHealth> seen;  // the backend in snapshot(), taken inside the callback
};

// Collects the monitor's callbacks, each with the snapshot of its backend at that moment.
class Events {
 public:
  tandem::health::HealthChangeCallback callback() {
    return [this](const std::string& service, Ipv4Addr address, std::uint16_t port, bool up, const std::string& error) {
      Event e{service, port, up, error, std::nullopt};
      if (HealthMonitor* m = monitor_.load())
        for (const auto& b : m->snapshot())
          if (b.service == service && b.address == address && b.port == port) e.seen = b;
      std::lock_guard lock(mutex_);
      events_.push_back(std::move(e));
      cv_.notify_all();
    };
  }
  void watch(HealthMonitor* m) { monitor_ = m; }

  // Waits until there are `n` events; returns them all.
  std::vector<Event> wait_for(std::size_t n) {
    std::unique_lock lock(mutex_);
    cv_.wait_for(lock, kPatience, [&] { return events_.size() >= n; });
    return events_;
  }
  std::vector<Event> all() {
    std::lock_guard lock(mutex_);
    return events_;
  }

 private:
  std::atomic<HealthMonitor*> monitor_{nullptr};
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<Event> events_;
};

std::optional<BackendHealth> find(const HealthMonitor& m, const std::string& service, std::uint16_t port) {
  for (const auto& b : m.snapshot())
    if (b.service == service && b.port == port) return b;
  return std::nullopt;
}

// Whether the backend's snapshot() comes to satisfy `done` within kPatience.
bool wait_until(const HealthMonitor& m, const std::string& service, std::uint16_t port,
                const std::function<bool(const BackendHealth&)>& done) {
  return eventually([&] {
    const auto b = find(m, service, port);
    return b && done(*b);
  });
}

TEST(HealthMonitor, ABackendGoesDownAfterFallFailuresAndComesBackAfterRise) {
  auto server = std::make_unique<LoopbackServer>(tandem::test::close_at_once);
  const std::uint16_t port = server->port();
  Events events;
  HealthMonitor monitor({service("web", {port})}, events.callback());
  events.watch(&monitor);

  ASSERT_TRUE(wait_until(monitor, "web", port, [](const BackendHealth& b) { return b.checks >= 4; }));
  auto b = find(monitor, "web", port);
  EXPECT_EQ(b->state, "up");
  EXPECT_EQ(b->failures, 0u);
  EXPECT_TRUE(events.all().empty()) << "a backend up from the start is never reported";

  server->stop();
  auto seen = events.wait_for(1);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].service, "web");
  EXPECT_EQ(seen[0].port, port);
  EXPECT_FALSE(seen[0].up);
  EXPECT_EQ(seen[0].error, "connection refused");
  ASSERT_TRUE(seen[0].seen);
  EXPECT_EQ(seen[0].seen->state, "down");
  EXPECT_EQ(seen[0].seen->consecutive_fail, 3u) << "down at exactly `fall` failures";
  EXPECT_EQ(seen[0].seen->last_error, "connection refused");

  server = std::make_unique<LoopbackServer>(tandem::test::close_at_once, port);  // back on its port
  seen = events.wait_for(2);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_TRUE(seen[1].up);
  EXPECT_EQ(seen[1].error, "");
  ASSERT_TRUE(seen[1].seen);
  EXPECT_EQ(seen[1].seen->state, "up");
  EXPECT_EQ(seen[1].seen->consecutive_ok, 2u) << "up at exactly `rise` successes";
  EXPECT_EQ(seen[1].seen->last_error, "connection refused") << "why it was down stays visible";
  monitor.stop();
  EXPECT_EQ(events.all().size(), 2u);
}

TEST(HealthMonitor, ABackendThatNeverAnswersIsReportedDownOnceAndOthersNotAtAll) {
  LoopbackServer good(tandem::test::close_at_once);
  const std::uint16_t dead = tandem::test::closed_port();
  Events events;
  HealthMonitor monitor({service("api", {good.port(), dead})}, events.callback());
  const auto seen = events.wait_for(1);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].port, dead);
  EXPECT_FALSE(seen[0].up);
  // Long enough for many more checks: still one event, and the good backend's checks all passed.
  ASSERT_TRUE(wait_until(monitor, "api", dead, [](const BackendHealth& b) { return b.checks >= 10; }));
  EXPECT_EQ(events.all().size(), 1u);
  const auto b = find(monitor, "api", good.port());
  EXPECT_EQ(b->state, "up");
  EXPECT_EQ(b->failures, 0u);
  EXPECT_GE(b->checks, 1u);
}

TEST(HealthMonitor, HttpChecksGoThroughTheMonitor) {
  LoopbackServer healthy(tandem::test::answer("HTTP/1.0 200 OK\r\n\r\nok"));
  LoopbackServer failing(tandem::test::answer("HTTP/1.0 503 Service Unavailable\r\n\r\n"));
  ServiceConfig s = service("app", {healthy.port(), failing.port()}, HealthCheckType::kHttp);
  s.health_check.http_body = "ok";
  s.health_check.timeout_ms = 20;
  Events events;
  HealthMonitor monitor({s}, events.callback());
  const auto seen = events.wait_for(1);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].port, failing.port());
  EXPECT_EQ(seen[0].error, "status 503, expected 200");
  ASSERT_TRUE(wait_until(monitor, "app", healthy.port(), [](const BackendHealth& b) { return b.checks >= 3; }));
  EXPECT_EQ(find(monitor, "app", healthy.port())->state, "up");
}

TEST(HealthMonitor, ReconfigureKeepsWhatDidNotChange) {
  LoopbackServer server(tandem::test::close_at_once);
  const std::uint16_t dead = tandem::test::closed_port();
  const ServiceConfig web = service("web", {server.port(), dead});
  ServiceConfig other = service("other", {dead});
  Events events;
  HealthMonitor monitor({web, other}, events.callback());
  ASSERT_EQ(events.wait_for(2).size(), 2u);  // `dead` went down in both services
  ASSERT_TRUE(wait_until(monitor, "web", server.port(), [](const BackendHealth& b) { return b.checks >= 3; }));
  const auto kept_before = find(monitor, "web", server.port());
  const auto dead_before = find(monitor, "web", dead);

  // web: unchanged but for a weight (kept); other: its check changed (starts again, and with a
  // 1 s interval cannot be down again for 2 s); a new service is added.
  ServiceConfig web2 = web;
  web2.backends[0].weight = 5;
  other.health_check.interval_ms = 1000;
  const ServiceConfig added = service("new", {server.port()});
  monitor.reconfigure({web2, other, added});
  EXPECT_EQ(monitor.snapshot().size(), 4u);
  const auto kept = find(monitor, "web", server.port());
  EXPECT_GE(kept->checks, kept_before->checks) << "state kept";
  const auto still_dead = find(monitor, "web", dead);
  EXPECT_EQ(still_dead->state, "down");
  EXPECT_GE(still_dead->failures, dead_before->failures);
  const auto restarted = find(monitor, "other", dead);
  EXPECT_EQ(restarted->state, "unknown") << "a changed check starts again";
  EXPECT_TRUE(restarted->up);
  ASSERT_TRUE(wait_until(monitor, "new", server.port(), [](const BackendHealth& b) { return b.checks >= 2; }));
  EXPECT_EQ(find(monitor, "new", server.port())->state, "up");

  // Dropping a service and disabling another's checks removes their backends.
  ServiceConfig off = web2;
  off.health_check.type = HealthCheckType::kNone;
  monitor.reconfigure({off, added});
  const auto after = monitor.snapshot();
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(after[0].service, "new");
  EXPECT_EQ(events.all().size(), 2u) << "no callback for backends dropped or kept";
}

TEST(HealthMonitor, AnAllPortsBackendNeedsTheCheckPort) {
  LoopbackServer server(tandem::test::close_at_once);
  ServiceConfig all = service("all", {0});
  all.port = 0;
  ServiceConfig with_port = service("all-with-port", {0});
  with_port.port = 0;
  with_port.health_check.port = server.port();
  Events events;
  HealthMonitor monitor({all, with_port}, events.callback());
  ASSERT_TRUE(wait_until(monitor, "all-with-port", 0, [](const BackendHealth& b) { return b.checks >= 2; }));
  const auto checked = find(monitor, "all-with-port", 0);
  EXPECT_EQ(checked->check_port, server.port());
  EXPECT_EQ(checked->state, "up");
  const auto unchecked = find(monitor, "all", 0);
  EXPECT_EQ(unchecked->check_port, 0u);
  EXPECT_EQ(unchecked->last_error, "no port to check");
  EXPECT_EQ(unchecked->checks, 0u);
  EXPECT_EQ(unchecked->state, "unknown");
  EXPECT_TRUE(unchecked->up);
  EXPECT_TRUE(events.all().empty());
}

TEST(HealthMonitor, StopLeavesNoDescriptorOpen) {
  const std::size_t before = tandem::test::open_fd_count();
  {
    LoopbackServer silent(tandem::test::hold_open);
    ServiceConfig s = service("slow", {silent.port()}, HealthCheckType::kHttp);
    s.health_check.interval_ms = 3000;  // the first check within 3 s, then in flight for 3 s
    s.health_check.timeout_ms = 3000;
    HealthMonitor monitor({s}, nullptr);
    ASSERT_TRUE(eventually([&] { return silent.held() >= 1; })) << "a check is in flight";
  }  // monitor stopped with its check in flight, then the server
  EXPECT_EQ(tandem::test::open_fd_count(), before);
}

}  // namespace
