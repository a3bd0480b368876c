// Building a UDP datagram in an Ethernet frame, for frames the fast path originates itself
// (the HA advert on the data network). Checksums computed in full: the frame is small and rare.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "dataplane/net/addr.hpp"

namespace tandem::net {

struct UdpEndpoints {
  MacAddr src_mac, dst_mac;
  Ipv4Addr src_ip, dst_ip;
  std::uint16_t src_port = 0, dst_port = 0;
};

// Writes Ethernet + IPv4 (DF set, TTL 255 so a receiver may insist on an unrouted sender) + UDP
// + payload into `buf`. Returns the frame length (padded to the Ethernet minimum), or 0 when
// `capacity` is too small or the datagram would exceed 65535 bytes.
std::size_t build_udp_frame(std::uint8_t* buf, std::size_t capacity, const UdpEndpoints& e,
                            std::span<const std::uint8_t> payload);

}  // namespace tandem::net
