// The Prometheus text writer: HELP/TYPE lines, labels and their escaping, values, and the
// mistakes it refuses (bad names, a family twice, duplicate series, counters not ending _total).
#include "controlplane/observe/prometheus.hpp"

#include <cmath>
#include <limits>
#include <stdexcept>

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace tandem::observe::prometheus
