#include "controlplane/observe/counters_report.hpp"

#include <numeric>
#include <sstream>

namespace tandem::observe {

std::uint64_t CounterTotals::drops_total() const {
  return std::accumulate(drops.begin(), drops.end(), std::uint64_t{0});
}

CounterTotals sum_counters(const std::vector<const WorkerCounters*>& workers,
                           const std::vector<std::string>& port_names) {
  CounterTotals t;
  for (const auto& name : port_names) t.ports.push_back({.name = name});
  for (const WorkerCounters* w : workers) {
    for (std::size_t p = 0; p < t.ports.size() && p < kMaxPorts; ++p) {
      const PortCounters& c = w->ports[p];
      t.ports[p].rx_packets += c.rx_packets.get();
      t.ports[p].rx_bytes += c.rx_bytes.get();
      t.ports[p].tx_packets += c.tx_packets.get();
      t.ports[p].tx_bytes += c.tx_bytes.get();
      t.ports[p].tx_dropped += c.tx_dropped.get();
    }
    for (std::size_t i = 0; i < kDropReasonCount; ++i) t.drops[i] += w->drops[i].get();
    for (std::size_t i = 0; i < kHandledCount; ++i) t.handled[i] += w->handled[i].get();
    t.polls += w->polls.get();
    t.busy_polls += w->busy_polls.get();
    t.idle_sleeps += w->idle_sleeps.get();
  }
  return t;
}

std::vector<std::string> format_counters(const CounterTotals& t) {
  std::vector<std::string> lines;
  for (const auto& p : t.ports) {
    std::ostringstream s;
    s << "port " << p.name << ": rx " << p.rx_packets << " pkts " << p.rx_bytes << " bytes, tx "
      << p.tx_packets << " pkts " << p.tx_bytes << " bytes, tx dropped " << p.tx_dropped;
    lines.push_back(s.str());
  }
  std::ostringstream h;
  h << "handled:";
  for (std::size_t i = 0; i < kHandledCount; ++i) h << ' ' << to_string(static_cast<Handled>(i)) << '=' << t.handled[i];
  lines.push_back(h.str());
  std::ostringstream d;
  d << "drops: total=" << t.drops_total();
  for (std::size_t i = 0; i < kDropReasonCount; ++i)
    if (t.drops[i] != 0) d << ' ' << to_string(static_cast<DropReason>(i)) << '=' << t.drops[i];
  lines.push_back(d.str());
  std::ostringstream w;
  w << "workers: polls=" << t.polls << " busy_polls=" << t.busy_polls << " idle_sleeps=" << t.idle_sleeps;
  lines.push_back(w.str());
  return lines;
}

}  // namespace tandem::observe
