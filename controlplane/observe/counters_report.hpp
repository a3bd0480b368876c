// Sums the workers' counters into one view, for logs, telemetry and (later) metrics.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "dataplane/counters.hpp"

namespace tandem::observe {

struct PortTotals {
  std::string name;
  std::uint64_t rx_packets = 0, rx_bytes = 0, tx_packets = 0, tx_bytes = 0, tx_dropped = 0;
};

struct CounterTotals {
  std::vector<PortTotals> ports;
  std::array<std::uint64_t, kDropReasonCount> drops{};
  std::array<std::uint64_t, kHandledCount> handled{};
  std::uint64_t polls = 0, busy_polls = 0, idle_sleeps = 0;

  std::uint64_t drops_total() const;
};

CounterTotals sum_counters(const std::vector<const WorkerCounters*>& workers,
                           const std::vector<std::string>& port_names);

// Human-readable lines: one per port, then handled events and non-zero drop reasons.
std::vector<std::string> format_counters(const CounterTotals& t);

}  // namespace tandem::observe
