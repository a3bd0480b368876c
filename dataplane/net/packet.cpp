#include "dataplane/net/packet.hpp"

#include "dataplane/net/byteorder.hpp"
#include "dataplane/net/checksum.hpp"
#include "dataplane/net/headers.hpp"

namespace tandem::net {

namespace {
constexpr std::uint16_t kTypeVlan = 0x8100;
constexpr std::size_t kVlanLen = 4;
constexpr std::size_t kTcpMinLen = 20;
constexpr std::size_t kUdpLen = 8;
}  // namespace

const char* to_string(ParseError e) {
  switch (e) {
    case ParseError::kNone: return "none";
    case ParseError::kTruncatedL2: return "truncated_l2";
    case ParseError::kNotIpv4: return "not_ipv4";
    case ParseError::kIpv4Malformed: return "ipv4_malformed";
    case ParseError::kIpv4BadChecksum: return "ipv4_bad_checksum";
    case ParseError::kIpv4Fragment: return "ipv4_fragment";
    case ParseError::kL4Truncated: return "l4_truncated";
    case ParseError::kTcpBadOffset: return "tcp_bad_offset";
    case ParseError::kUdpBadLength: return "udp_bad_length";
    case ParseError::kCount: break;
  }
  return "unknown";
}

ParseError parse_packet(const std::uint8_t* frame, std::uint32_t len, ParsedPacket& out, bool ip_checksum_verified) {
  out = ParsedPacket{};
  if (len < eth::kHeaderLen) return ParseError::kTruncatedL2;
  std::size_t l3 = eth::kHeaderLen;
  std::uint16_t type = load_be16(frame + eth::kType);
  if (type == kTypeVlan) {
    if (len < eth::kHeaderLen + kVlanLen) return ParseError::kTruncatedL2;
    out.vlan = true;
    out.vlan_tci = load_be16(frame + eth::kHeaderLen);
    type = load_be16(frame + eth::kHeaderLen + 2);
    l3 += kVlanLen;
  }
  if (type != eth::kTypeIpv4) return ParseError::kNotIpv4;

  if (len < l3 + ipv4::kMinLen) return ParseError::kIpv4Malformed;
  const std::uint8_t* ip = frame + l3;
  const std::size_t ihl = std::size_t{ip[ipv4::kVersionIhl] & 0x0fu} * 4;
  const std::size_t ip_len = load_be16(ip + ipv4::kTotalLen);
  if ((ip[ipv4::kVersionIhl] >> 4) != 4 || ihl < ipv4::kMinLen || ip_len < ihl || l3 + ip_len > len)
    return ParseError::kIpv4Malformed;
  if (!ip_checksum_verified && internet_checksum(ip, ihl) != 0) return ParseError::kIpv4BadChecksum;

  // The IPv4 fields are filled before the fragment and L4 checks, so that a caller can tell
  // whom a rejected packet was for (a fragment to a VIP, say).
  out.l3 = static_cast<std::uint16_t>(l3);
  out.ihl = static_cast<std::uint16_t>(ihl);
  out.ip_len = static_cast<std::uint16_t>(ip_len);
  out.l4 = static_cast<std::uint16_t>(l3 + ihl);
  out.proto = ip[ipv4::kProto];
  out.ttl = ip[ipv4::kTtl];
  out.src = {load_be32(ip + ipv4::kSrc)};
  out.dst = {load_be32(ip + ipv4::kDst)};
  if ((load_be16(ip + ipv4::kFragOff) & (ipv4::kFlagMoreFragments | ipv4::kFragOffsetMask)) != 0)
    return ParseError::kIpv4Fragment;

  const std::uint8_t* l4 = frame + out.l4;
  const std::size_t l4_len = ip_len - ihl;
  switch (out.proto) {
    case ipv4::kProtoTcp: {
      if (l4_len < kTcpMinLen) return ParseError::kL4Truncated;
      const std::size_t data_offset = std::size_t{l4[12]} >> 4 << 2;
      if (data_offset < kTcpMinLen || data_offset > l4_len) return ParseError::kTcpBadOffset;
      out.sport = load_be16(l4);
      out.dport = load_be16(l4 + 2);
      out.tcp_flags = l4[13];
      break;
    }
    case ipv4::kProtoUdp: {
      if (l4_len < kUdpLen) return ParseError::kL4Truncated;
      const std::size_t udp_len = load_be16(l4 + 4);
      if (udp_len < kUdpLen || udp_len > l4_len) return ParseError::kUdpBadLength;
      out.sport = load_be16(l4);
      out.dport = load_be16(l4 + 2);
      break;
    }
    case ipv4::kProtoIcmp: {
      if (l4_len < icmp::kMinLen) return ParseError::kL4Truncated;
      out.icmp_type = l4[icmp::kType];
      out.icmp_code = l4[icmp::kCode];
      if (out.icmp_type == icmp::kTypeEchoRequest || out.icmp_type == icmp::kTypeEchoReply)
        out.sport = out.dport = load_be16(l4 + 4);  // the identifier tells flows apart
      break;
    }
    default:
      break;  // other protocols: addresses only
  }
  return ParseError::kNone;
}

}  // namespace tandem::net
