// Parsing and validating a frame up to its L4 ports: what the load balancer needs to classify
// a packet (Ethernet, one optional 802.1Q tag, IPv4, TCP/UDP/ICMP). Pure: offsets into the
// caller's buffer, no copies, no DPDK.
#pragma once

#include <cstdint>

#include "dataplane/net/addr.hpp"

namespace tandem::net {

// Why a frame is not a packet the load balancer can handle. Stable names in to_string().
enum class ParseError : std::uint8_t {
  kNone = 0,
  kTruncatedL2,      // shorter than an Ethernet (+ VLAN) header
  kNotIpv4,          // another EtherType (ARP, IPv6, ...): not an error for the caller's other paths
  kIpv4Malformed,    // version, header length or total length wrong
  kIpv4BadChecksum,
  kIpv4Fragment,     // any fragment, first included: the LB does not reassemble (documented)
  kL4Truncated,      // TCP/UDP/ICMP header shorter than its minimum or beyond the datagram
  kTcpBadOffset,     // TCP data offset < 5 words or beyond the datagram
  kUdpBadLength,     // UDP length field inconsistent with the datagram
  kCount
};
const char* to_string(ParseError e);

struct TcpFlags {
  static constexpr std::uint8_t kFin = 0x01, kSyn = 0x02, kRst = 0x04, kPsh = 0x08, kAck = 0x10;
};

struct ParsedPacket {
  std::uint16_t vlan_tci = 0;   // 0 when untagged
  bool vlan = false;
  std::uint16_t l3 = 0;         // offset of the IPv4 header
  std::uint16_t ihl = 0;        // its length in bytes
  std::uint16_t ip_len = 0;     // IPv4 total length
  std::uint16_t l4 = 0;         // offset of the L4 header
  std::uint8_t proto = 0;
  std::uint8_t ttl = 0;
  Ipv4Addr src, dst;
  std::uint16_t sport = 0, dport = 0;  // ICMP: identifier in both for echo, else 0
  std::uint8_t tcp_flags = 0;
  std::uint8_t icmp_type = 0, icmp_code = 0;
};

// Parses and validates `frame`. On kIpv4Fragment and the L4 errors the IPv4 fields of `out`
// (offsets, protocol, addresses) are already set. IPv4 header checksum is verified unless `ip_checksum_verified`
// (a NIC that checked it already). L4 checksums are not verified here: rewrites update them
// incrementally, so a corrupt segment stays corrupt and the endpoint drops it.
ParseError parse_packet(const std::uint8_t* frame, std::uint32_t len, ParsedPacket& out,
                        bool ip_checksum_verified = false);

}  // namespace tandem::net
