#include "dataplane/lb/rewrite.hpp"

#include <cstring>

#include "dataplane/net/byteorder.hpp"
#include "dataplane/net/checksum.hpp"
#include "dataplane/net/headers.hpp"

namespace tandem::lb {
namespace {

using net::load_be16;
using net::load_be32;
using net::store_be16;
using net::store_be32;

// Offset of the checksum inside the L4 header, 0 when the protocol has none we maintain.
std::size_t l4_checksum_offset(std::uint8_t proto) {
  switch (proto) {
    case net::ipv4::kProtoTcp: return 16;
    case net::ipv4::kProtoUdp: return 6;
    default: return 0;
  }
}

// Changes the 32-bit address at `addr_off` of the IPv4 header and the 16-bit port at
// `port_off` of the L4 header, keeping both checksums right.
void rewrite(std::uint8_t* frame, const net::ParsedPacket& p, std::size_t addr_off, std::size_t port_off,
             net::Ipv4Addr addr, std::uint16_t port) {
  std::uint8_t* ip = frame + p.l3;
  const std::uint32_t old_addr = load_be32(ip + addr_off);
  store_be32(ip + addr_off, addr.value);
  store_be16(ip + net::ipv4::kChecksum,
             net::checksum_update32(load_be16(ip + net::ipv4::kChecksum), old_addr, addr.value));

  const std::size_t csum_off = l4_checksum_offset(p.proto);
  if (csum_off == 0) return;
  std::uint8_t* l4 = frame + p.l4;
  const std::uint16_t old_port = load_be16(l4 + port_off);
  store_be16(l4 + port_off, port);
  std::uint16_t csum = load_be16(l4 + csum_off);
  if (p.proto == net::ipv4::kProtoUdp && csum == 0) return;  // sender sent no checksum
  // The pseudo-header holds the addresses, so the L4 checksum covers them too.
  csum = net::checksum_update32(csum, old_addr, addr.value);
  csum = net::checksum_update16(csum, old_port, port);
  if (p.proto == net::ipv4::kProtoUdp && csum == 0) csum = 0xffff;  // 0 would mean "none"
  store_be16(l4 + csum_off, csum);
}

}  // namespace

void rewrite_destination(std::uint8_t* frame, net::ParsedPacket& p, net::Ipv4Addr addr, std::uint16_t port) {
  const bool ports = l4_checksum_offset(p.proto) != 0;
  rewrite(frame, p, net::ipv4::kDst, 2, addr, ports ? port : 0);
  p.dst = addr;
  if (ports) p.dport = port;
}

void rewrite_source(std::uint8_t* frame, net::ParsedPacket& p, net::Ipv4Addr addr, std::uint16_t port) {
  const bool ports = l4_checksum_offset(p.proto) != 0;
  rewrite(frame, p, net::ipv4::kSrc, 0, addr, ports ? port : 0);
  p.src = addr;
  if (ports) p.sport = port;
}

void set_macs(std::uint8_t* frame, const net::MacAddr& src, const net::MacAddr& dst) {
  std::memcpy(frame + net::eth::kDst, dst.bytes.data(), 6);
  std::memcpy(frame + net::eth::kSrc, src.bytes.data(), 6);
}

bool decrement_ttl(std::uint8_t* frame, net::ParsedPacket& p) {
  std::uint8_t* ip = frame + p.l3;
  if (ip[net::ipv4::kTtl] <= 1) return false;
  // TTL shares a 16-bit word with the protocol field. The new word is computed, not read back
  // after a byte store: a 16-bit load over a fresh 8-bit store cannot be forwarded and stalls.
  const std::uint16_t old_word = load_be16(ip + net::ipv4::kTtl);
  const auto new_word = static_cast<std::uint16_t>(old_word - 0x0100);
  store_be16(ip + net::ipv4::kTtl, new_word);
  store_be16(ip + net::ipv4::kChecksum, net::checksum_update16(load_be16(ip + net::ipv4::kChecksum), old_word, new_word));
  p.ttl = static_cast<std::uint8_t>(new_word >> 8);
  return true;
}

std::size_t encapsulate_ipip(std::uint8_t* frame, const net::ParsedPacket& p, const net::MacAddr& src_mac,
                             const net::MacAddr& dst_mac, net::Ipv4Addr outer_src, net::Ipv4Addr outer_dst) {
  constexpr std::size_t kInnerAt = net::eth::kHeaderLen + kIpipOverhead;
  const std::uint8_t* inner_now = frame + kIpipOverhead + p.l3;
  std::uint8_t* inner = frame + kInnerAt;
  if (inner_now != inner) std::memmove(inner, inner_now, p.ip_len);  // a VLAN tag was dropped

  set_macs(frame, src_mac, dst_mac);
  store_be16(frame + net::eth::kType, net::eth::kTypeIpv4);

  std::uint8_t* outer = frame + net::eth::kHeaderLen;
  outer[net::ipv4::kVersionIhl] = 0x45;
  outer[net::ipv4::kTos] = inner[net::ipv4::kTos];
  store_be16(outer + net::ipv4::kTotalLen, static_cast<std::uint16_t>(p.ip_len + kIpipOverhead));
  store_be16(outer + net::ipv4::kId, 0);
  store_be16(outer + net::ipv4::kFragOff, load_be16(inner + net::ipv4::kFragOff) & 0x4000);  // DF
  outer[net::ipv4::kTtl] = net::ipv4::kDefaultTtl;
  outer[net::ipv4::kProto] = 4;
  store_be32(outer + net::ipv4::kSrc, outer_src.value);
  store_be32(outer + net::ipv4::kDst, outer_dst.value);
  store_be16(outer + net::ipv4::kChecksum, 0);
  store_be16(outer + net::ipv4::kChecksum, net::internet_checksum(outer, net::ipv4::kMinLen));
  return kInnerAt + p.ip_len;
}

}  // namespace tandem::lb
