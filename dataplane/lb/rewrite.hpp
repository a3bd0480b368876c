// Per-packet rewrites of the forwarding modes, on a frame parsed by net::parse_packet. Every
// checksum is updated incrementally (RFC 1624), never recomputed over the payload.
//   nat/fullnat  rewrite_destination (to the backend) and rewrite_source (fullnat: to a local
//                address; replies: back to the VIP)
//   dsr          set_macs only: the backend holds the VIP itself
//   tunnel       encapsulate_ipip: an outer IPv4 header to the backend
#pragma once

#include <cstddef>
#include <cstdint>

#include "dataplane/net/addr.hpp"
#include "dataplane/net/packet.hpp"

namespace tandem::lb {

// New destination address and port (port ignored for protocols without ports). IPv4 header
// and TCP/UDP checksums follow; a UDP datagram without checksum (0) keeps none.
void rewrite_destination(std::uint8_t* frame, net::ParsedPacket& p, net::Ipv4Addr addr, std::uint16_t port);
void rewrite_source(std::uint8_t* frame, net::ParsedPacket& p, net::Ipv4Addr addr, std::uint16_t port);

// Ethernet addresses of the next hop.
void set_macs(std::uint8_t* frame, const net::MacAddr& src, const net::MacAddr& dst);

// Decrements the TTL with its checksum update. Returns false (frame untouched) when the TTL
// would reach 0: the packet must not be forwarded.
bool decrement_ttl(std::uint8_t* frame, net::ParsedPacket& p);

inline constexpr std::size_t kIpipOverhead = 20;

// IPv4-in-IPv4 (protocol 4). `frame` points kIpipOverhead bytes before the original frame (the
// caller made that headroom, e.g. rte_pktmbuf_prepend); `p` describes the original. Writes an
// untagged Ethernet header, the outer header (TOS and DF copied from the inner one, TTL 64,
// id 0) and moves the inner datagram only if a VLAN tag was dropped. Returns the new length.
std::size_t encapsulate_ipip(std::uint8_t* frame, const net::ParsedPacket& p, const net::MacAddr& src_mac,
                             const net::MacAddr& dst_mac, net::Ipv4Addr outer_src, net::Ipv4Addr outer_dst);

}  // namespace tandem::lb
