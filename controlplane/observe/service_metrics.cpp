#include "controlplane/observe/service_metrics.hpp"

namespace tandem::observe {

using prometheus::Label;
using prometheus::MetricType;

namespace {

struct TrafficFamilies {
  prometheus::Family& connections;
  prometheus::Family& active;
  prometheus::Family& packets;
  prometheus::Family& bytes;

  static TrafficFamilies make(prometheus::Exposition& e, const std::string& prefix, const std::string& who) {
    return {e.family(prefix + "_connections_total", "Connections created, per " + who + ".", MetricType::kCounter),
            e.family(prefix + "_connections_active", "Connections in the tables now, per " + who + ".",
                     MetricType::kGauge),
            e.family(prefix + "_packets_total",
                     "Packets of tracked connections per " + who +
                         ", in (from the client) and out (from the backend; none for dsr and tunnel).",
                     MetricType::kCounter),
            e.family(prefix + "_bytes_total",
                     "Bytes (Ethernet frames as received) of tracked connections per " + who + ", in and out.",
                     MetricType::kCounter)};
  }

  void add(const std::vector<Label>& labels, const TrafficTotals& t) {
    const auto with = [&](const char* direction) {
      std::vector<Label> l = labels;
      l.push_back({"direction", direction});
      return l;
    };
    connections.add(labels, t.connections);
    active.add(labels, t.active);
    packets.add(with("in"), t.packets_in).add(with("out"), t.packets_out);
    bytes.add(with("in"), t.bytes_in).add(with("out"), t.bytes_out);
  }
};

}  // namespace

void add_service_metrics(prometheus::Exposition& e, const std::vector<ServiceCounters>& services) {
  auto svc = TrafficFamilies::make(e, "tandem_service", "service");
  auto be = TrafficFamilies::make(e, "tandem_backend", "backend");
  for (const ServiceCounters& s : services) {
    if (s.stats_id != kUnattributedStats) svc.add({{"service", s.name}}, s.totals);
    for (const BackendCounters& b : s.backends)
      if (b.stats_id != kUnattributedStats) be.add({{"service", s.name}, {"backend", backend_label(b)}}, b.totals);
  }
}

}  // namespace tandem::observe
