// How a service forwards a flow to its backend. Shared by the service model (lb/) and the
// connection table, which needs to know whether the backend's replies come back through the unit.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace tandem::conntrack {

enum class ForwardMode : std::uint8_t {
  kNat = 0,     // destination rewritten to the backend; replies return through the unit (gateway)
  kFullNat = 1, // source rewritten too (a local address/port); replies return to that address
  kDsr = 2,     // MAC rewrite only; the backend answers the client directly
  kTunnel = 3,  // IPv4-in-IPv4 to the backend; the backend answers the client directly
};

inline constexpr const char* to_string(ForwardMode m) {
  switch (m) {
    case ForwardMode::kNat: return "nat";
    case ForwardMode::kFullNat: return "fullnat";
    case ForwardMode::kDsr: return "dsr";
    case ForwardMode::kTunnel: return "tunnel";
  }
  return "unknown";
}

// The mode named `s` ("nat", "fullnat", "dsr", "tunnel"), or nothing.
inline constexpr std::optional<ForwardMode> parse_forward_mode(std::string_view s) {
  for (const auto m : {ForwardMode::kNat, ForwardMode::kFullNat, ForwardMode::kDsr, ForwardMode::kTunnel})
    if (s == to_string(m)) return m;
  return std::nullopt;
}

// True when the backend's packets pass through the unit, so the connection table indexes the
// reply key and the TCP state machine sees both directions.
inline constexpr bool replies_pass_through(ForwardMode m) {
  return m == ForwardMode::kNat || m == ForwardMode::kFullNat;
}

}  // namespace tandem::conntrack
