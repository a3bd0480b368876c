// Frame builders for unit tests. They are written independently of dataplane/net (their own
// checksum, their own field layout) so that a test compares the code against a second opinion.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tandem::test {

using Bytes = std::vector<std::uint8_t>;
using Mac = std::array<std::uint8_t, 6>;

inline constexpr Mac kBroadcast = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

// "0a:00:..." or "0a 00 ..." or "0a00..." -> bytes
Bytes hex(std::string_view text);
std::string to_hex(const Bytes& b);

// RFC 1071 reference: sum 16-bit big-endian words, fold, complement.
std::uint16_t ref_checksum(const std::uint8_t* data, std::size_t len);
inline std::uint16_t ref_checksum(const Bytes& b) { return ref_checksum(b.data(), b.size()); }

std::uint32_t ip(std::string_view dotted);  // host order

Bytes ethernet(const Mac& dst, const Mac& src, std::uint16_t type, const Bytes& payload,
               bool pad_to_60 = true);
Bytes arp(std::uint16_t op, const Mac& sha, std::uint32_t spa, const Mac& tha, std::uint32_t tpa);

struct Ipv4Fields {
  std::uint32_t src = 0, dst = 0;
  std::uint8_t proto = 1;
  std::uint8_t ttl = 64;
  std::uint16_t id = 0x1234;
  std::uint16_t flags_frag = 0x4000;  // DF
  Bytes options;                      // multiple of 4 bytes
};
Bytes ipv4(const Ipv4Fields& f, const Bytes& payload);  // header checksum filled in
Bytes icmp_echo(std::uint8_t type, std::uint16_t id, std::uint16_t seq, const Bytes& data);

// TCP and UDP segments with their checksum over the IPv4 pseudo-header of (src, dst).
Bytes tcp(std::uint32_t src, std::uint32_t dst, std::uint16_t sport, std::uint16_t dport, std::uint8_t flags,
          const Bytes& payload = {}, std::uint32_t seq = 1000, std::uint32_t ack = 0);
Bytes udp(std::uint32_t src, std::uint32_t dst, std::uint16_t sport, std::uint16_t dport, const Bytes& payload,
          bool with_checksum = true);
// An Ethernet frame with one 802.1Q tag.
Bytes ethernet_vlan(const Mac& dst, const Mac& src, std::uint16_t tci, std::uint16_t type, const Bytes& payload);

Bytes pattern(std::size_t n, std::uint8_t seed = 0);  // deterministic payload bytes

// An ICMP message: type, code, the 32-bit rest of the header (an error's unused word, the
// next-hop MTU of "fragmentation needed", ...) and a body (an error's quote), checksum filled in.
Bytes icmp_message(std::uint8_t type, std::uint8_t code, std::uint32_t rest, const Bytes& body);

}  // namespace tandem::test
