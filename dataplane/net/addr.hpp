// Ethernet and IPv4 address value types, with text parsing/formatting for config and display.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tandem::net {

struct MacAddr {
  std::array<std::uint8_t, 6> bytes{};

  static constexpr MacAddr broadcast() { return {{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}; }
  bool is_broadcast() const { return *this == broadcast(); }
  bool is_multicast() const { return (bytes[0] & 0x01) != 0; }
  bool is_zero() const { return *this == MacAddr{}; }

  static std::optional<MacAddr> parse(std::string_view text);  // "aa:bb:cc:dd:ee:ff"
  std::string to_string() const;
  auto operator<=>(const MacAddr&) const = default;
};

// IPv4 address in host byte order (the fast path compares and hashes it as one integer).
struct Ipv4Addr {
  std::uint32_t value = 0;

  static std::optional<Ipv4Addr> parse(std::string_view text);  // dotted quad, strict
  std::string to_string() const;
  auto operator<=>(const Ipv4Addr&) const = default;
};

// "10.0.1.21:8080": an address and a port as logs, listings and labels show them.
std::string endpoint_string(Ipv4Addr a, std::uint16_t port);

struct Ipv4Prefix {
  Ipv4Addr addr;
  std::uint8_t length = 32;

  static std::optional<Ipv4Prefix> parse(std::string_view text);  // "10.0.0.1/24"
  std::uint32_t mask() const { return length == 0 ? 0 : ~std::uint32_t{0} << (32 - length); }
  bool contains(Ipv4Addr a) const { return (a.value & mask()) == (addr.value & mask()); }
  Ipv4Addr network() const { return {addr.value & mask()}; }
  Ipv4Addr broadcast() const { return {addr.value | ~mask()}; }
  std::string to_string() const;
  auto operator<=>(const Ipv4Prefix&) const = default;
};

}  // namespace tandem::net
