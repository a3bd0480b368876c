// Prometheus text exposition format (version 0.0.4): families of samples in, text out.
// Pure formatting: no DPDK, no HTTP. metrics_server.cpp gathers the figures and serves the text.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

namespace tandem::observe::prometheus {

enum class MetricType : std::uint8_t { kCounter, kGauge, kUntyped };
const char* to_string(MetricType t);

struct Label {
  std::string name;
  std::string value;
};

struct Sample {
  std::vector<Label> labels;
  std::variant<std::uint64_t, std::int64_t, double> value = std::uint64_t{0};
};

// One metric name: HELP and TYPE lines, then its samples (the series, told apart by labels).
struct Family {
  std::string name;
  std::string help;
  MetricType type = MetricType::kUntyped;
  std::vector<Sample> samples;

  // Any integer or floating-point value: unsigned integers are kept as uint64, signed as int64.
  template <typename T>
    requires std::is_arithmetic_v<T>
  Family& add(std::vector<Label> labels, T v) {
    if constexpr (std::is_floating_point_v<T>) samples.push_back({std::move(labels), static_cast<double>(v)});
    else if constexpr (std::is_signed_v<T>) samples.push_back({std::move(labels), static_cast<std::int64_t>(v)});
    else samples.push_back({std::move(labels), static_cast<std::uint64_t>(v)});
    return *this;
  }
};

// Builds the families of one exposition in order, one per name. The references family()
// returns stay valid while the exposition lives.
class Exposition {
 public:
  Family& family(std::string name, std::string help, MetricType type);
  const std::deque<Family>& families() const { return families_; }

 private:
  std::deque<Family> families_;
};

// [a-zA-Z_:][a-zA-Z0-9_:]*
bool valid_metric_name(std::string_view name);
// [a-zA-Z_][a-zA-Z0-9_]*, and not starting with "__" (reserved)
bool valid_label_name(std::string_view name);
// A label value between double quotes: '\' -> "\\", '"' -> "\"", newline -> "\n".
std::string escape_label_value(std::string_view value);
// HELP text: '\' -> "\\", newline -> "\n".
std::string escape_help(std::string_view help);
// A sample value: integers as they are, doubles in their shortest exact form, NaN, +Inf, -Inf.
std::string format_value(const Sample& s);

// The exposition text. Throws std::invalid_argument for an invalid metric or label name, a
// family name used twice, a counter whose name does not end in "_total", a label given twice in
// a sample, or two samples of a family with the same labels.
std::string render(const std::vector<Family>& families);
std::string render(const Exposition& e);

// The Content-Type of the text format.
inline constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace tandem::observe::prometheus
