#include "controlplane/observe/prometheus.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <set>
#include <stdexcept>

namespace tandem::observe::prometheus {

const char* to_string(MetricType t) {
  switch (t) {
    case MetricType::kCounter: return "counter";
    case MetricType::kGauge: return "gauge";
    case MetricType::kUntyped: return "untyped";
  }
  return "untyped";
}

Family& Exposition::family(std::string name, std::string help, MetricType type) {
  families_.push_back({.name = std::move(name), .help = std::move(help), .type = type, .samples = {}});
  return families_.back();
}

namespace {

bool name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool digit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

bool valid_metric_name(std::string_view name) {
  if (name.empty() || !(name_start(name[0]) || name[0] == ':')) return false;
  return std::all_of(name.begin(), name.end(), [](char c) { return name_start(c) || digit(c) || c == ':'; });
}

bool valid_label_name(std::string_view name) {
  if (name.empty() || !name_start(name[0]) || name.starts_with("__")) return false;
  return std::all_of(name.begin(), name.end(), [](char c) { return name_start(c) || digit(c); });
}

std::string escape_label_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (const char c : value) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string escape_help(std::string_view help) {
  std::string out;
  out.reserve(help.size());
  for (const char c : help) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string format_value(const Sample& s) {
  if (const auto* u = std::get_if<std::uint64_t>(&s.value)) return std::to_string(*u);
  if (const auto* i = std::get_if<std::int64_t>(&s.value)) return std::to_string(*i);
  const double d = std::get<double>(s.value);
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d > 0 ? "+Inf" : "-Inf";
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, d);  // shortest form that reads back exactly
  return std::string(buf, r.ptr);
}

namespace {

template <typename Families>
std::string render_families(const Families& families) {
  std::string out;
  std::set<std::string_view> names;
  for (const auto& f : families) {
    if (!valid_metric_name(f.name)) throw std::invalid_argument("invalid metric name \"" + f.name + "\"");
    if (!names.insert(f.name).second) throw std::invalid_argument("metric family \"" + f.name + "\" given twice");
    if (f.type == MetricType::kCounter && !f.name.ends_with("_total"))
      throw std::invalid_argument("counter \"" + f.name + "\" must end in _total");
    out += "# HELP " + f.name + " " + escape_help(f.help) + "\n";
    out += "# TYPE " + f.name + " " + to_string(f.type) + "\n";
    std::set<std::string> series;
    for (const auto& s : f.samples) {
      std::string line = f.name;
      std::vector<std::string_view> label_names;
      if (!s.labels.empty()) {
        line += '{';
        for (std::size_t i = 0; i < s.labels.size(); ++i) {
          const Label& l = s.labels[i];
          if (!valid_label_name(l.name))
            throw std::invalid_argument("metric \"" + f.name + "\": invalid label name \"" + l.name + "\"");
          if (std::find(label_names.begin(), label_names.end(), l.name) != label_names.end())
            throw std::invalid_argument("metric \"" + f.name + "\": label \"" + l.name + "\" given twice");
          label_names.push_back(l.name);
          if (i) line += ',';
          line += l.name + "=\"" + escape_label_value(l.value) + '"';
        }
        line += '}';
      }
      // The series' identity does not depend on the order its labels were given in.
      std::vector<std::pair<std::string_view, std::string_view>> key;
      for (const auto& l : s.labels) key.emplace_back(l.name, l.value);
      std::sort(key.begin(), key.end());
      std::string id;
      for (const auto& [n, v] : key) id += std::string(n) + '\0' + std::string(v) + '\0';
      if (!series.insert(id).second)
        throw std::invalid_argument("metric \"" + f.name + "\": two samples with the labels " + line.substr(f.name.size()));
      out += line + ' ' + format_value(s) + '\n';
    }
  }
  return out;
}

}  // namespace

std::string render(const std::vector<Family>& families) { return render_families(families); }
std::string render(const Exposition& e) { return render_families(e.families()); }

}  // namespace tandem::observe::prometheus
