#include "dataplane/lb/icmp_translate.hpp"

#include <algorithm>
#include <cstring>

#include "dataplane/lb/rewrite.hpp"
#include "dataplane/net/byteorder.hpp"
#include "dataplane/net/checksum.hpp"
#include "dataplane/net/headers.hpp"

namespace tandem::lb {
namespace {

using conntrack::ForwardMode;
using net::load_be16;
using net::load_be32;
using net::store_be16;
using net::store_be32;

constexpr std::size_t kIcmpHeaderLen = 8;  // type, code, checksum, one word of type-specific data
constexpr std::size_t kQuotedL4Min = 8;    // what RFC 792 guarantees: the ports, and more
constexpr std::uint8_t kIcmpErrorTos = 0xc0;  // precedence 6, internetwork control

// Writes 16- and 32-bit fields inside an ICMP message, summing the changes into its checksum;
// store() writes the checksum back. Every field it is given sits at an even offset from the
// message start (the quote begins 8 bytes in and quoted headers are multiples of 4 bytes
// long), so whole checksum words change.
class IcmpPatch {
 public:
  explicit IcmpPatch(std::uint8_t* icmp) : icmp_(icmp), csum_(load_be16(icmp + net::icmp::kChecksum)) {}

  void set16(std::uint8_t* at, std::uint16_t v) {
    csum_ = net::checksum_update16(csum_, load_be16(at), v);
    store_be16(at, v);
  }
  void set32(std::uint8_t* at, std::uint32_t v) {
    csum_ = net::checksum_update32(csum_, load_be32(at), v);
    store_be32(at, v);
  }
  void store() { store_be16(icmp_ + net::icmp::kChecksum, csum_); }

 private:
  std::uint8_t* icmp_;
  std::uint16_t csum_;
};

// Changes the quoted address at `addr_off` of the quoted IPv4 header and the port at
// `port_off` of the quoted L4 header, with every checksum that covers them.
void rewrite_quote(std::uint8_t* frame, const net::ParsedPacket& p, const IcmpQuote& q, std::size_t addr_off,
                   std::size_t port_off, net::Ipv4Addr addr, std::uint16_t port) {
  IcmpPatch icmp(frame + p.l4);
  std::uint8_t* ip = frame + q.l3;
  const std::uint32_t old_addr = load_be32(ip + addr_off);
  icmp.set32(ip + addr_off, addr.value);
  icmp.set16(ip + net::ipv4::kChecksum,
             net::checksum_update32(load_be16(ip + net::ipv4::kChecksum), old_addr, addr.value));

  std::uint8_t* l4 = frame + q.l4;
  const std::uint16_t old_port = load_be16(l4 + port_off);
  icmp.set16(l4 + port_off, port);

  const bool udp = q.proto == net::ipv4::kProtoUdp;
  // A quoted UDP checksum of 0: the sender sent none.
  if (q.l4_csum != 0 && !(udp && load_be16(frame + q.l4_csum) == 0)) {
    std::uint16_t csum = load_be16(frame + q.l4_csum);
    csum = net::checksum_update32(csum, old_addr, addr.value);  // pseudo-header
    csum = net::checksum_update16(csum, old_port, port);
    if (udp && csum == 0) csum = 0xffff;  // 0 would mean "none"
    icmp.set16(frame + q.l4_csum, csum);
  }
  icmp.store();
}

bool translated_mode(ForwardMode m) { return m == ForwardMode::kNat || m == ForwardMode::kFullNat; }

// A source address that names one host (RFC 1812 4.2.2.11, 5.3.7).
bool unicast_source(std::uint32_t a) {
  const std::uint32_t top = a >> 24;
  return top != 0 && top != 127 && top < 224;  // not "this network", loopback, multicast, class E
}

}  // namespace

bool is_icmp_error(const net::ParsedPacket& p) {
  if (p.proto != net::ipv4::kProtoIcmp) return false;
  return p.icmp_type == icmp_type::kDestUnreachable || p.icmp_type == icmp_type::kTimeExceeded ||
         p.icmp_type == icmp_type::kParameterProblem;
}

const char* to_string(QuoteError e) {
  switch (e) {
    case QuoteError::kNone: return "none";
    case QuoteError::kNotIcmpError: return "not_icmp_error";
    case QuoteError::kTruncated: return "quote_truncated";
    case QuoteError::kMalformed: return "quote_malformed";
    case QuoteError::kNotTcpUdp: return "quote_not_tcp_udp";
    case QuoteError::kL4Truncated: return "quote_l4_truncated";
    case QuoteError::kFragment: return "quote_fragment";
    case QuoteError::kCount: break;
  }
  return "unknown";
}

QuoteError parse_icmp_quote(const std::uint8_t* frame, std::uint32_t len, const net::ParsedPacket& p, IcmpQuote& out) {
  if (!is_icmp_error(p)) return QuoteError::kNotIcmpError;
  // The ICMP message ends with the outer datagram: Ethernet padding after it is not quoted.
  const std::size_t end = std::min<std::size_t>(len, std::size_t{p.l3} + p.ip_len);
  const std::size_t l3 = std::size_t{p.l4} + kIcmpHeaderLen;
  if (l3 + net::ipv4::kMinLen > end) return QuoteError::kTruncated;
  const std::uint8_t* ip = frame + l3;
  const std::size_t ihl = std::size_t{ip[net::ipv4::kVersionIhl] & 0x0fu} * 4;
  if ((ip[net::ipv4::kVersionIhl] >> 4) != 4 || ihl < net::ipv4::kMinLen) return QuoteError::kMalformed;
  if (l3 + ihl > end) return QuoteError::kTruncated;
  const std::uint8_t proto = ip[net::ipv4::kProto];
  if (proto != net::ipv4::kProtoTcp && proto != net::ipv4::kProtoUdp) return QuoteError::kNotTcpUdp;
  if ((load_be16(ip + net::ipv4::kFragOff) & net::ipv4::kFragOffsetMask) != 0) return QuoteError::kFragment;
  const std::size_t l4 = l3 + ihl;
  if (l4 + kQuotedL4Min > end) return QuoteError::kL4Truncated;

  out = IcmpQuote{};
  out.l3 = static_cast<std::uint16_t>(l3);
  out.ihl = static_cast<std::uint16_t>(ihl);
  out.l4 = static_cast<std::uint16_t>(l4);
  out.len = static_cast<std::uint16_t>(end - l3);
  out.proto = proto;
  out.src = {load_be32(ip + net::ipv4::kSrc)};
  out.dst = {load_be32(ip + net::ipv4::kDst)};
  out.sport = load_be16(frame + l4);
  out.dport = load_be16(frame + l4 + 2);
  // The quoted checksum is kept only if both the capture and the quoted datagram hold it: a
  // checksum field beyond the quoted total length would be some other byte.
  const std::size_t csum_off = proto == net::ipv4::kProtoTcp ? 16 : 6;
  const std::size_t datagram_end = l3 + load_be16(ip + net::ipv4::kTotalLen);
  if (l4 + csum_off + 2 <= std::min(end, datagram_end)) out.l4_csum = static_cast<std::uint16_t>(l4 + csum_off);
  return QuoteError::kNone;
}

void rewrite_quote_source(std::uint8_t* frame, const net::ParsedPacket& p, IcmpQuote& q, net::Ipv4Addr addr,
                          std::uint16_t port) {
  rewrite_quote(frame, p, q, net::ipv4::kSrc, 0, addr, port);
  q.src = addr;
  q.sport = port;
}

void rewrite_quote_destination(std::uint8_t* frame, const net::ParsedPacket& p, IcmpQuote& q, net::Ipv4Addr addr,
                               std::uint16_t port) {
  rewrite_quote(frame, p, q, net::ipv4::kDst, 2, addr, port);
  q.dst = addr;
  q.dport = port;
}

bool translate_icmp_for_client(std::uint8_t* frame, net::ParsedPacket& p, IcmpQuote& q,
                               const conntrack::ConnEntry& e) {
  if (!translated_mode(e.mode)) return false;
  const bool fullnat = e.mode == ForwardMode::kFullNat;
  rewrite_quote_destination(frame, p, q, net::Ipv4Addr{e.vip_addr}, e.vip_port);
  if (fullnat) rewrite_quote_source(frame, p, q, net::Ipv4Addr{e.client_addr}, e.client_port);
  // Whoever reported the error (the backend or a router on the way), the client hears it from
  // the VIP, as IPVS does: the backend side stays hidden.
  rewrite_source(frame, p, net::Ipv4Addr{e.vip_addr}, 0);
  if (fullnat) rewrite_destination(frame, p, net::Ipv4Addr{e.client_addr}, 0);
  return true;
}

bool translate_icmp_for_backend(std::uint8_t* frame, net::ParsedPacket& p, IcmpQuote& q,
                                const conntrack::ConnEntry& e) {
  if (!translated_mode(e.mode)) return false;
  const bool fullnat = e.mode == ForwardMode::kFullNat;
  rewrite_quote_source(frame, p, q, net::Ipv4Addr{e.backend_addr}, e.backend_port);
  if (fullnat) rewrite_quote_destination(frame, p, q, net::Ipv4Addr{e.local_addr}, e.local_port);
  rewrite_destination(frame, p, net::Ipv4Addr{e.backend_addr}, 0);
  // fullnat backends only know the local address; nat backends route the client's via the unit.
  if (fullnat) rewrite_source(frame, p, net::Ipv4Addr{e.local_addr}, 0);
  return true;
}

bool may_send_icmp_error(const std::uint8_t* frame, const net::ParsedPacket& p) {
  if ((frame[net::eth::kDst] & 0x01) != 0) return false;  // link-layer broadcast or multicast
  if (p.proto == net::ipv4::kProtoIcmp) {
    // Every ICMP error type, deprecated ones included (3, 4, 5, 11, 12): never an error about one.
    const std::uint8_t t = p.icmp_type;
    if (t == 3 || t == 4 || t == 5 || t == 11 || t == 12) return false;
  }
  if ((load_be16(frame + p.l3 + net::ipv4::kFragOff) & net::ipv4::kFragOffsetMask) != 0) return false;
  const std::uint32_t dst_top = p.dst.value >> 24;
  if (dst_top >= 224) return false;  // multicast, class E, limited broadcast
  return unicast_source(p.src.value);
}

bool dont_fragment(const std::uint8_t* frame, const net::ParsedPacket& p) {
  return (load_be16(frame + p.l3 + net::ipv4::kFragOff) & 0x4000) != 0;
}

std::size_t build_icmp_error(std::uint8_t* frame, std::size_t capacity, const net::ParsedPacket& p, std::uint8_t type,
                             std::uint8_t code, std::uint32_t rest, net::Ipv4Addr src, const net::MacAddr& src_mac,
                             const net::MacAddr& dst_mac) {
  constexpr std::size_t kIp = net::eth::kHeaderLen;
  constexpr std::size_t kIcmp = kIp + net::ipv4::kMinLen;
  constexpr std::size_t kQuote = kIcmp + kIcmpHeaderLen;
  if (capacity < kQuote) return 0;
  const std::size_t want = std::min<std::size_t>(p.ip_len, std::size_t{p.ihl} + kQuotedL4Min);
  const std::size_t quote = std::min({std::size_t{p.ip_len}, kIcmpErrorMaxIpLen - (kQuote - kIp), capacity - kQuote});
  if (quote < want) return 0;

  const net::Ipv4Addr dst = p.src;  // read before the quote moves over the header
  std::memmove(frame + kQuote, frame + p.l3, quote);  // overlaps: the datagram moves forward

  std::memcpy(frame + net::eth::kDst, dst_mac.bytes.data(), 6);
  std::memcpy(frame + net::eth::kSrc, src_mac.bytes.data(), 6);
  store_be16(frame + net::eth::kType, net::eth::kTypeIpv4);

  std::uint8_t* ip = frame + kIp;
  ip[net::ipv4::kVersionIhl] = 0x45;
  ip[net::ipv4::kTos] = kIcmpErrorTos;
  store_be16(ip + net::ipv4::kTotalLen, static_cast<std::uint16_t>(kQuote - kIp + quote));
  store_be16(ip + net::ipv4::kId, 0);
  store_be16(ip + net::ipv4::kFragOff, 0);
  ip[net::ipv4::kTtl] = net::ipv4::kDefaultTtl;
  ip[net::ipv4::kProto] = net::ipv4::kProtoIcmp;
  store_be16(ip + net::ipv4::kChecksum, 0);
  store_be32(ip + net::ipv4::kSrc, src.value);
  store_be32(ip + net::ipv4::kDst, dst.value);
  store_be16(ip + net::ipv4::kChecksum, net::internet_checksum(ip, net::ipv4::kMinLen));

  std::uint8_t* icmp = frame + kIcmp;
  icmp[net::icmp::kType] = type;
  icmp[net::icmp::kCode] = code;
  store_be16(icmp + net::icmp::kChecksum, 0);
  store_be32(icmp + 4, rest);
  store_be16(icmp + net::icmp::kChecksum, net::internet_checksum(icmp, kIcmpHeaderLen + quote));
  return kQuote + quote;
}

}  // namespace tandem::lb
