// The load-balancing tests' world: a unit with a north port (clients behind a gateway) and a
// south port (three backends on its subnet), the frames that cross it, and a runner that feeds
// one frame to lb_forward the way a worker does. Shared by test_forwarder and test_flow_owner.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "dataplane/lb/forwarder.hpp"
#include "dataplane/lb/rewrite.hpp"
#include "tests/unit/frames.hpp"

namespace tandem::test::lb_world {

inline const Mac kNorthMac = {0x02, 0, 0, 0, 0x0a, 1};
inline const Mac kSouthMac = {0x02, 0, 0, 0, 0x0b, 1};
inline const Mac kGatewayMac = {0x02, 0, 0, 0, 0x0a, 0xfe};
inline const Mac kBackendMac[3] = {{0x02, 0, 0, 0, 0x0b, 21}, {0x02, 0, 0, 0, 0x0b, 22}, {0x02, 0, 0, 0, 0x0b, 23}};
inline const std::uint32_t kClient = ip("198.51.100.7");
inline const std::uint32_t kVip = ip("203.0.113.10");
inline const std::uint32_t kGateway = ip("10.0.0.254");
inline const std::uint32_t kSouthAddr = ip("10.0.1.1");
inline const std::uint32_t kLocal = ip("10.0.1.2");
inline const std::uint32_t kBackend[3] = {ip("10.0.1.21"), ip("10.0.1.22"), ip("10.0.1.23")};
inline constexpr std::size_t kHeadroom = 64;  // room for tunnel mode's outer header

// The unit's two ports with their neighbours already resolved.
struct UnitPorts {
  UnitPorts() : north_neigh({.capacity = 16}), south_neigh({.capacity = 16}) {
    north.mac = net::MacAddr{kNorthMac};
    north.add(*net::Ipv4Prefix::parse("10.0.0.1/24"));
    south.mac = net::MacAddr{kSouthMac};
    south.add(*net::Ipv4Prefix::parse("10.0.1.1/24"));
    north_neigh.learn(net::Ipv4Addr{kGateway}, net::MacAddr{kGatewayMac}, 0, true);
    for (int i = 0; i < 3; ++i) south_neigh.learn(net::Ipv4Addr{kBackend[i]}, net::MacAddr{kBackendMac[i]}, 0, true);
    ports[0] = {.local = &north, .neighbours = &north_neigh, .gateway = net::Ipv4Addr{kGateway}};
    ports[1] = {.local = &south, .neighbours = &south_neigh};
  }
  UnitPorts(const UnitPorts&) = delete;
  UnitPorts& operator=(const UnitPorts&) = delete;

  LocalInterface north, south;
  neigh::NeighbourTable north_neigh, south_neigh;
  std::array<lb::LbPort, 2> ports;
};

inline int backend_of(std::uint32_t addr) {
  for (int i = 0; i < 3; ++i)
    if (kBackend[i] == addr) return i;
  return -1;
}

inline Bytes tcp_frame(const Mac& dmac, const Mac& smac, std::uint32_t src, std::uint32_t dst, std::uint16_t sport,
                       std::uint16_t dport, std::uint8_t flags, std::uint8_t ttl = 64,
                       const Bytes& payload = pattern(20)) {
  Ipv4Fields f{.src = src, .dst = dst, .proto = 6, .ttl = ttl};
  return ethernet(dmac, smac, 0x0800, ipv4(f, tcp(src, dst, sport, dport, flags, payload)));
}

// An ICMP error from `from` to `to` quoting the first `quoted` bytes of the IPv4 datagram of
// `frame` (an Ethernet frame as the unit sent it), as a router would.
inline Bytes icmp_error(const Mac& dmac, const Mac& smac, std::uint32_t from, std::uint32_t to, std::uint8_t type,
                        std::uint8_t code, std::uint32_t rest, const Bytes& frame, std::uint8_t ttl = 64,
                        std::size_t quoted = 28) {
  const Bytes quote(frame.begin() + 14, frame.begin() + 14 + static_cast<std::ptrdiff_t>(quoted));
  Ipv4Fields f{.src = from, .dst = to, .proto = 1, .ttl = ttl, .flags_frag = 0};
  return ethernet(dmac, smac, 0x0800, ipv4(f, icmp_message(type, code, rest, quote)));
}

// Feeds `in` to lb_forward as a worker would (headroom before it); the frame that comes out
// (grown in front in tunnel mode) is left in `out`.
inline lb::LbVerdict run_frame(lb::LbContext ctx, const Bytes& in, Bytes& out) {
  Bytes buf(kHeadroom, 0);
  buf.insert(buf.end(), in.begin(), in.end());
  std::uint8_t* frame = buf.data() + kHeadroom;
  auto len = static_cast<std::uint32_t>(in.size());
  net::ParsedPacket p;
  if (net::parse_packet(frame, len, p) != net::ParseError::kNone) return {};
  const lb::LbVerdict v = lb::lb_forward(frame, len, p, ctx);
  const std::uint8_t* start = v.grew_front ? frame - lb::kIpipOverhead : frame;
  out.assign(start, start + len);
  return v;
}

}  // namespace tandem::test::lb_world
