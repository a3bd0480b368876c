// The Prometheus text writer: HELP/TYPE lines, labels and their escaping, values, and the
// mistakes it refuses (bad names, a family twice, duplicate series, counters not ending _total).
#include "controlplane/observe/prometheus.hpp"

#include <cmath>
#include <memory>
#include <limits>
#include <stdexcept>

#include <gtest/gtest.h>

#include "controlplane/observe/service_counters.hpp"
#include "controlplane/observe/service_metrics.hpp"
#include "controlplane/observe/stats_registry.hpp"

namespace tandem::observe::prometheus {
namespace {

TEST(Prometheus, CounterAndGaugeFamilies) {
  Exposition e;
  e.family("tandem_port_packets_total", "Frames per port and direction.", MetricType::kCounter)
      .add({{"port", "north0"}, {"direction", "rx"}}, std::uint64_t{12})
      .add({{"port", "north0"}, {"direction", "tx"}}, std::uint64_t{7});
  e.family("tandem_connections", "Connections in the tables.", MetricType::kGauge).add({}, std::uint64_t{3});
  EXPECT_EQ(render(e),
            "# HELP tandem_port_packets_total Frames per port and direction.\n"
            "# TYPE tandem_port_packets_total counter\n"
            "tandem_port_packets_total{port=\"north0\",direction=\"rx\"} 12\n"
            "tandem_port_packets_total{port=\"north0\",direction=\"tx\"} 7\n"
            "# HELP tandem_connections Connections in the tables.\n"
            "# TYPE tandem_connections gauge\n"
            "tandem_connections 3\n");
}

TEST(Prometheus, EmptyFamilyStillDeclared) {
  Exposition e;
  e.family("tandem_xdp_verdicts_total", "XDP verdicts.", MetricType::kCounter);
  EXPECT_EQ(render(e), "# HELP tandem_xdp_verdicts_total XDP verdicts.\n# TYPE tandem_xdp_verdicts_total counter\n");
  EXPECT_EQ(render(std::vector<Family>{}), "");
}

TEST(Prometheus, LabelValuesAreEscaped) {
  EXPECT_EQ(escape_label_value(R"(a"b\c)" "\n" "d"), R"(a\"b\\c\nd)");
  EXPECT_EQ(escape_label_value("plain-value_1.2"), "plain-value_1.2");
  Exposition e;
  e.family("m", "h", MetricType::kGauge).add({{"l", "x\"y\\z\nw"}}, 1);
  EXPECT_EQ(render(e), "# HELP m h\n# TYPE m gauge\nm{l=\"x\\\"y\\\\z\\nw\"} 1\n");
}

TEST(Prometheus, HelpIsEscapedButKeepsQuotes) {
  EXPECT_EQ(escape_help("back\\slash \"quoted\"\nnext"), "back\\\\slash \"quoted\"\\nnext");
}

TEST(Prometheus, Values) {
  EXPECT_EQ(format_value({{}, std::uint64_t{18446744073709551615u}}), "18446744073709551615");
  EXPECT_EQ(format_value({{}, std::int64_t{-5}}), "-5");
  EXPECT_EQ(format_value({{}, 0.25}), "0.25");
  EXPECT_EQ(format_value({{}, 1.0}), "1");
  EXPECT_EQ(format_value({{}, std::numeric_limits<double>::infinity()}), "+Inf");
  EXPECT_EQ(format_value({{}, -std::numeric_limits<double>::infinity()}), "-Inf");
  EXPECT_EQ(format_value({{}, std::nan("")}), "NaN");
  Family f{.name = "x", .help = "", .type = MetricType::kGauge, .samples = {}};
  f.add({}, 3).add({{"k", "v"}}, -2).add({{"k", "w"}}, 2.5f).add({{"k", "u"}}, std::size_t{9});
  EXPECT_EQ(std::get<std::int64_t>(f.samples[0].value), 3);
  EXPECT_EQ(std::get<std::int64_t>(f.samples[1].value), -2);
  EXPECT_EQ(std::get<double>(f.samples[2].value), 2.5);
  EXPECT_EQ(std::get<std::uint64_t>(f.samples[3].value), 9u);
}

TEST(Prometheus, Names) {
  EXPECT_TRUE(valid_metric_name("tandem_drops_total"));
  EXPECT_TRUE(valid_metric_name("a:b_c9"));
  EXPECT_TRUE(valid_metric_name(":x"));
  EXPECT_FALSE(valid_metric_name(""));
  EXPECT_FALSE(valid_metric_name("9abc"));
  EXPECT_FALSE(valid_metric_name("a-b"));
  EXPECT_FALSE(valid_metric_name("a b"));
  EXPECT_TRUE(valid_label_name("port"));
  EXPECT_TRUE(valid_label_name("_p1"));
  EXPECT_FALSE(valid_label_name("__name__"));
  EXPECT_FALSE(valid_label_name("a:b"));
  EXPECT_FALSE(valid_label_name("1a"));
  EXPECT_FALSE(valid_label_name(""));
}

TEST(Prometheus, RefusesMistakes) {
  auto one = [](std::string name, MetricType type, std::vector<Sample> samples) {
    return std::vector<Family>{{.name = std::move(name), .help = "h", .type = type, .samples = std::move(samples)}};
  };
  EXPECT_THROW(render(one("bad-name", MetricType::kGauge, {})), std::invalid_argument);
  EXPECT_THROW(render(one("tandem_drops", MetricType::kCounter, {})), std::invalid_argument);
  EXPECT_THROW(render(one("m", MetricType::kGauge, {{{{"__x", "v"}}, std::uint64_t{1}}})), std::invalid_argument);
  EXPECT_THROW(render(one("m", MetricType::kGauge, {{{{"a", "1"}, {"a", "2"}}, std::uint64_t{1}}})),
               std::invalid_argument);
  // The same series twice, even with its labels in another order.
  EXPECT_THROW(render(one("m", MetricType::kGauge,
                          {{{{"a", "1"}, {"b", "2"}}, std::uint64_t{1}}, {{{"b", "2"}, {"a", "1"}}, std::uint64_t{2}}})),
               std::invalid_argument);
  EXPECT_THROW(render(one("m", MetricType::kGauge, {{{}, std::uint64_t{1}}, {{}, std::uint64_t{2}}})),
               std::invalid_argument);
  Exposition twice;
  twice.family("m", "h", MetricType::kGauge);
  twice.family("m", "h", MetricType::kGauge);
  EXPECT_THROW(render(twice), std::invalid_argument);
  // Different label values are different series.
  EXPECT_NO_THROW(render(one("m", MetricType::kGauge, {{{{"a", "1"}}, std::uint64_t{1}}, {{{"a", "2"}}, std::uint64_t{1}}})));
}

TEST(Prometheus, UntypedAndTypeNames) {
  EXPECT_STREQ(to_string(MetricType::kCounter), "counter");
  EXPECT_STREQ(to_string(MetricType::kGauge), "gauge");
  EXPECT_STREQ(to_string(MetricType::kUntyped), "untyped");
  Exposition e;
  e.family("tandem_build_info", "Build.", MetricType::kGauge).add({{"version", "0.1.0"}}, 1);
  EXPECT_EQ(render(e), "# HELP tandem_build_info Build.\n# TYPE tandem_build_info gauge\ntandem_build_info{version=\"0.1.0\"} 1\n");
}

// --- per service and backend traffic -------------------------------------------------------------

// Two services as tandemd builds them (stats ids from a registry), and two workers' slots.
struct ServiceWorld {
  std::unique_ptr<const lb::ServiceTable> table;
  std::unique_ptr<WorkerServiceStats> w0 = std::make_unique<WorkerServiceStats>();
  std::unique_ptr<WorkerServiceStats> w1 = std::make_unique<WorkerServiceStats>();
  StatsRegistry ids;

  explicit ServiceWorld(std::vector<lb::Service> services) {
    EXPECT_EQ(ids.assign(services), "");
    std::string error;
    table = lb::ServiceTable::build(std::move(services), error);
    EXPECT_TRUE(table) << error;
  }
  std::vector<ServiceCounters> gather() const {
    const WorkerServiceStats* workers[] = {w0.get(), w1.get()};
    return service_counters(*table, workers);
  }
};

lb::Service web() {
  return {.name = "web",
          .vip = net::Ipv4Addr{0xcb00710au},  // 203.0.113.10
          .proto = 6,
          .port = 80,
          .mode = conntrack::ForwardMode::kNat,
          .backends = {{net::Ipv4Addr{0x0a000115u}, 8080, 1}, {net::Ipv4Addr{0x0a000116u}, 8080, 0}},
          .maglev_size = 251};
}

lb::Service dns() {
  return {.name = "dns \"quoted\"",
          .vip = net::Ipv4Addr{0xcb00710bu},
          .proto = 17,
          .port = 0,
          .mode = conntrack::ForwardMode::kDsr,
          .backends = {{net::Ipv4Addr{0x0a000121u}, 0, 2}},
          .maglev_size = 251};
}

void count(TrafficCounters& c, std::uint64_t created, std::uint64_t closed, std::uint64_t pin, std::uint64_t pout,
           std::uint64_t bin, std::uint64_t bout) {
  c.created.add(created);
  c.closed.add(closed);
  c.packets[0].add(pin);
  c.packets[1].add(pout);
  c.bytes[0].add(bin);
  c.bytes[1].add(bout);
}

TEST(ServiceCounters, SumsTheWorkersSlotsAlongTheTable) {
  ServiceWorld w({web(), dns()});
  const lb::Service& s = w.table->services()[0];
  count(w.w0->services[s.stats_id], 5, 2, 50, 40, 5000, 40000);
  count(w.w1->services[s.stats_id], 3, 3, 30, 20, 3000, 20000);
  count(w.w0->backends[s.backends[0].stats_id], 5, 2, 50, 40, 5000, 40000);
  count(w.w1->backends[s.backends[0].stats_id], 3, 3, 30, 20, 3000, 20000);
  // Slot 0 (unattributed) is never reported as anybody's.
  count(w.w0->services[0], 99, 0, 99, 99, 99, 99);
  count(w.w0->backends[0], 99, 0, 99, 99, 99, 99);

  const auto got = w.gather();
  ASSERT_EQ(got.size(), 2u);
  const ServiceCounters& a = got[0];
  EXPECT_EQ(a.name, "web");
  EXPECT_EQ(a.vip.to_string(), "203.0.113.10");
  EXPECT_EQ(a.port, 80);
  EXPECT_EQ(a.proto, 6);
  EXPECT_EQ(a.mode, conntrack::ForwardMode::kNat);
  EXPECT_EQ(a.stats_id, s.stats_id);
  const TrafficTotals want{.connections = 8, .active = 3, .packets_in = 80, .packets_out = 60, .bytes_in = 8000,
                           .bytes_out = 60000};
  EXPECT_EQ(a.totals, want);
  ASSERT_EQ(a.backends.size(), 2u);
  EXPECT_EQ(backend_label(a.backends[0]), "10.0.1.21:8080");
  EXPECT_EQ(a.backends[0].weight, 1u);
  EXPECT_EQ(a.backends[0].totals, want);
  EXPECT_EQ(a.backends[1].weight, 0u);  // drained: listed, nothing counted
  EXPECT_EQ(a.backends[1].totals, TrafficTotals{});
  EXPECT_EQ(got[1].name, "dns \"quoted\"");
  EXPECT_EQ(got[1].totals, TrafficTotals{});
  EXPECT_EQ(backend_label(got[1].backends[0]), "10.0.1.33:0");

  // No workers: the layout, with zeros.
  const auto none = service_counters(*w.table, {});
  ASSERT_EQ(none.size(), 2u);
  EXPECT_EQ(none[0].totals, TrafficTotals{});
}

TEST(ServiceCounters, ActiveIsNeverNegative) {
  TrafficCounters c;
  c.created.add(2);
  c.closed.add(3);  // as a reader may see it, closed's increment before created's
  EXPECT_EQ(c.active(), 0u);
  TrafficTotals t;
  t += c;
  EXPECT_EQ(t.active, 0u);
}

TEST(ServiceMetrics, FamiliesAndLabels) {
  ServiceWorld w({web(), dns()});
  const lb::Service& s = w.table->services()[0];
  count(w.w0->services[s.stats_id], 2, 1, 10, 8, 1000, 800);
  count(w.w0->backends[s.backends[0].stats_id], 2, 1, 10, 8, 1000, 800);
  Exposition e;
  add_service_metrics(e, w.gather());
  const std::string text = render(e);
  const std::string dns_label = "service=\"dns \\\"quoted\\\"\"";  // escaped once for the label
  const char* want_lines[] = {
      "# TYPE tandem_service_connections_total counter\n",
      "tandem_service_connections_total{service=\"web\"} 2\n",
      "# TYPE tandem_service_connections_active gauge\n",
      "tandem_service_connections_active{service=\"web\"} 1\n",
      "tandem_service_packets_total{service=\"web\",direction=\"in\"} 10\n",
      "tandem_service_packets_total{service=\"web\",direction=\"out\"} 8\n",
      "tandem_service_bytes_total{service=\"web\",direction=\"in\"} 1000\n",
      "tandem_service_bytes_total{service=\"web\",direction=\"out\"} 800\n",
      "# TYPE tandem_backend_connections_total counter\n",
      "tandem_backend_connections_total{service=\"web\",backend=\"10.0.1.21:8080\"} 2\n",
      "tandem_backend_connections_active{service=\"web\",backend=\"10.0.1.21:8080\"} 1\n",
      "tandem_backend_packets_total{service=\"web\",backend=\"10.0.1.21:8080\",direction=\"in\"} 10\n",
      "tandem_backend_packets_total{service=\"web\",backend=\"10.0.1.21:8080\",direction=\"out\"} 8\n",
      "tandem_backend_bytes_total{service=\"web\",backend=\"10.0.1.21:8080\",direction=\"in\"} 1000\n",
      "tandem_backend_bytes_total{service=\"web\",backend=\"10.0.1.21:8080\",direction=\"out\"} 800\n",
      "tandem_backend_connections_total{service=\"web\",backend=\"10.0.1.22:8080\"} 0\n",
  };
  for (const char* line : want_lines) EXPECT_NE(text.find(line), std::string::npos) << line << "\n" << text;
  EXPECT_NE(text.find("tandem_service_connections_total{" + dns_label + "} 0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("tandem_backend_bytes_total{" + dns_label + ",backend=\"10.0.1.33:0\",direction=\"out\"} 0\n"),
            std::string::npos)
      << text;
  // 2 services x (1 + 1 + 2 + 2) samples, 3 backends x 6.
  std::size_t samples = 0;
  for (const auto& f : e.families()) samples += f.samples.size();
  EXPECT_EQ(samples, 2u * 6 + 3u * 6);
  EXPECT_EQ(e.families().size(), 8u);
}

TEST(ServiceMetrics, NoServicesStillDeclaresTheFamilies) {
  Exposition e;
  add_service_metrics(e, {});
  ASSERT_EQ(e.families().size(), 8u);
  for (const auto& f : e.families()) EXPECT_TRUE(f.samples.empty()) << f.name;
  EXPECT_NO_THROW(render(e));
}

TEST(ServiceMetrics, UnattributedServicesAndBackendsHaveNoSeries) {
  ServiceCounters s{.name = "late", .stats_id = kUnattributedStats};
  s.backends.push_back({.address = net::Ipv4Addr{0x0a000101u}, .port = 80, .stats_id = kUnattributedStats});
  s.backends.push_back({.address = net::Ipv4Addr{0x0a000102u}, .port = 80, .stats_id = 9});
  Exposition e;
  add_service_metrics(e, {s});
  const std::string text = render(e);
  EXPECT_EQ(text.find("tandem_service_connections_total{"), std::string::npos) << text;
  EXPECT_EQ(text.find("10.0.1.1:80"), std::string::npos) << text;
  EXPECT_NE(text.find("tandem_backend_connections_total{service=\"late\",backend=\"10.0.1.2:80\"} 0"), std::string::npos)
      << text;
}

}  // namespace
}  // namespace tandem::observe::prometheus
