// ICMP errors of load-balanced flows: reading the datagram an error quotes, translating the
// error across the unit's NAT (the quote as well as the outer header), and building the
// "fragmentation needed" error the unit itself sends. Pure: offsets into the caller's buffer,
// no allocation, no DPDK.
//
// An ICMP error (RFC 792, RFC 1122 3.2.2) quotes the IP header and at least the first 8 bytes
// of the datagram that caused it, i.e. the TCP/UDP ports. The unit rewrote that datagram, so
// the error names addresses its receiver never saw; like IPVS (ip_vs_in_icmp/ip_vs_out_icmp),
// the unit finds the connection by the quote and undoes its rewrites in the quote:
//
//   icmp_lookup_key(q) is the quote's 5-tuple reversed: the direction the error travels. Look
//   it up in the connection table:
//   - dir kReply: the quote is a packet the unit sent to a backend (nat: client -> backend,
//     fullnat: local -> backend); the error goes to the client. translate_icmp_for_client:
//       quote dst backend:bport -> VIP:vport, (fullnat) quote src local:lport -> client:cport,
//       outer src -> VIP, (fullnat) outer dst -> client.
//   - dir kOriginal: the quote is a packet the unit sent to the client (VIP:vport -> client:cport);
//     the error goes to the backend. translate_icmp_for_backend:
//       quote src VIP:vport -> backend:bport, (fullnat) quote dst client:cport -> local:lport,
//       outer dst -> backend, (fullnat) outer src -> local address.
//   dsr and tunnel entries are not translated (their replies bypass the unit, and the backend
//   holds the VIP): the forwarder sends such an error on like a client packet of the flow.
//   The caller still decrements the outer TTL and sets the MACs.
//
// Checksums are updated incrementally (RFC 1624): the quoted IPv4 header's, the quoted TCP/UDP
// checksum when the quote holds it, and the outer ICMP checksum, which covers every quoted byte
// changed (those checksums included). The outer IPv4 header goes through rewrite_source and
// rewrite_destination (rewrite.hpp), which for protocol ICMP update the IPv4 checksum only:
// right, since the ICMP checksum has no pseudo-header.
#pragma once

#include <cstddef>
#include <cstdint>

#include "dataplane/conntrack/conn_table.hpp"
#include "dataplane/conntrack/flow_key.hpp"
#include "dataplane/net/addr.hpp"
#include "dataplane/net/packet.hpp"

namespace tandem::lb {

namespace icmp_type {
inline constexpr std::uint8_t kDestUnreachable = 3;
inline constexpr std::uint8_t kTimeExceeded = 11;
inline constexpr std::uint8_t kParameterProblem = 12;
inline constexpr std::uint8_t kCodeFragNeeded = 4;  // of kDestUnreachable (RFC 1191)
}  // namespace icmp_type

// An ICMP error that quotes a datagram: destination unreachable, time exceeded, parameter
// problem. Source quench (deprecated, RFC 6633) and redirects are not translated.
bool is_icmp_error(const net::ParsedPacket& p);

// Why an ICMP error's quote cannot be translated. Stable names in to_string().
enum class QuoteError : std::uint8_t {
  kNone = 0,
  kNotIcmpError,  // the packet is not an ICMP error (is_icmp_error)
  kTruncated,     // fewer bytes quoted than an IPv4 header, or than the quoted header's IHL
  kMalformed,     // quoted version is not 4 or its IHL < 5
  kNotTcpUdp,     // quoted protocol is not TCP or UDP (an error about an ICMP message, say)
  kL4Truncated,   // fewer than 8 bytes of the quoted TCP/UDP header
  kFragment,      // quote of a non-first fragment: no ports in it
  kCount
};
const char* to_string(QuoteError e);

// The quoted datagram, as offsets into the frame.
struct IcmpQuote {
  std::uint16_t l3 = 0;       // offset of the quoted IPv4 header
  std::uint16_t ihl = 0;      // its length in bytes
  std::uint16_t l4 = 0;       // offset of the quoted TCP/UDP header
  std::uint16_t len = 0;      // bytes quoted from l3 on (bounded by the outer datagram)
  std::uint16_t l4_csum = 0;  // offset of the quoted TCP/UDP checksum, 0 when not quoted
  std::uint8_t proto = 0;
  net::Ipv4Addr src, dst;
  std::uint16_t sport = 0, dport = 0;

  // The quoted packet's own 5-tuple (the direction it travelled).
  conntrack::FlowKey key() const {
    return {.src_addr = src.value, .dst_addr = dst.value, .src_port = sport, .dst_port = dport, .proto = proto};
  }
};

// Reads the quote of an ICMP error `p` (a packet parse_packet accepted) in `frame`. The quote is
// normally truncated (its total length exceeds the bytes present): not an error, and the quoted
// total length is not checked at all, since some routers mangle it. Neither is the quoted IP
// checksum (routers quote what they got). The quoted L4 checksum is maintained only when it
// lies within both the captured bytes and the quoted total length. `out` is set on kNone only.
QuoteError parse_icmp_quote(const std::uint8_t* frame, std::uint32_t len, const net::ParsedPacket& p, IcmpQuote& out);

// The key to look the connection up by: the quote reversed, see the top of this file.
inline conntrack::FlowKey icmp_lookup_key(const IcmpQuote& q) { return q.key().reversed(); }

// New source (destination) address and port in the quote; the quoted IPv4 and TCP/UDP
// checksums (UDP checksum 0 stays 0) and the outer ICMP checksum follow. `q` is updated.
void rewrite_quote_source(std::uint8_t* frame, const net::ParsedPacket& p, IcmpQuote& q, net::Ipv4Addr addr,
                          std::uint16_t port);
void rewrite_quote_destination(std::uint8_t* frame, const net::ParsedPacket& p, IcmpQuote& q, net::Ipv4Addr addr,
                               std::uint16_t port);

// The two translations of the top of this file, quote and outer IPv4 header (`p` and `q` are
// updated). `e` is the connection icmp_lookup_key(q) found, in the direction named. Return false,
// frame untouched, when e's mode is not nat or fullnat.
bool translate_icmp_for_client(std::uint8_t* frame, net::ParsedPacket& p, IcmpQuote& q, const conntrack::ConnEntry& e);
bool translate_icmp_for_backend(std::uint8_t* frame, net::ParsedPacket& p, IcmpQuote& q, const conntrack::ConnEntry& e);

// Whether the unit may answer `p` with an ICMP error (RFC 1122 3.2.2, RFC 1812 4.3.2.7): not
// for an ICMP error, a non-first fragment, a link-layer or IP broadcast/multicast destination,
// nor a source that is not one host (0.0.0.0, loopback, multicast, class E, broadcast).
bool may_send_icmp_error(const std::uint8_t* frame, const net::ParsedPacket& p);

// The DF bit of `p`'s IPv4 header: only such a datagram gets "fragmentation needed".
bool dont_fragment(const std::uint8_t* frame, const net::ParsedPacket& p);

// Largest IPv4 total length of an ICMP error the unit builds (RFC 1812 4.3.2.3: as much of the
// original datagram as fits in 576 bytes).
inline constexpr std::size_t kIcmpErrorMaxIpLen = 576;

// Turns the frame of `p` in place into an ICMP error about it, sent from `src` to p's source:
// untagged Ethernet (`src_mac` -> `dst_mac`), IPv4 (TOS 0xc0 "internetwork control" as RFC
// 1812 4.3.2.5 asks, id 0, DF clear, TTL 64), ICMP `type`/`code` with `rest` in its second
// word, then the original datagram from its IP header on, as much as fits in
// kIcmpErrorMaxIpLen and in `capacity` (the writable bytes at `frame`, at least the frame's
// length). Returns the new frame length, or 0 (frame untouched) when not even the IP header and
// 8 bytes of payload fit. Checksums computed in full. The caller checks may_send_icmp_error().
std::size_t build_icmp_error(std::uint8_t* frame, std::size_t capacity, const net::ParsedPacket& p, std::uint8_t type,
                             std::uint8_t code, std::uint32_t rest, net::Ipv4Addr src, const net::MacAddr& src_mac,
                             const net::MacAddr& dst_mac);

// Destination unreachable, fragmentation needed and DF set (RFC 1191): `mtu` is the next hop's.
inline std::size_t build_frag_needed(std::uint8_t* frame, std::size_t capacity, const net::ParsedPacket& p,
                                     std::uint16_t mtu, net::Ipv4Addr src, const net::MacAddr& src_mac,
                                     const net::MacAddr& dst_mac) {
  return build_icmp_error(frame, capacity, p, icmp_type::kDestUnreachable, icmp_type::kCodeFragNeeded, mtu, src,
                          src_mac, dst_mac);
}

}  // namespace tandem::lb
