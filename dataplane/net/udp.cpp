#include "dataplane/net/udp.hpp"

#include <algorithm>
#include <cstring>

#include "dataplane/net/byteorder.hpp"
#include "dataplane/net/checksum.hpp"
#include "dataplane/net/headers.hpp"

namespace tandem::net {
namespace {

void store_mac(std::uint8_t* p, const MacAddr& m) { std::memcpy(p, m.bytes.data(), 6); }

}  // namespace

std::size_t build_udp_frame(std::uint8_t* buf, std::size_t capacity, const UdpEndpoints& e,
                            std::span<const std::uint8_t> payload) {
  constexpr std::size_t kHeaders = eth::kHeaderLen + ipv4::kMinLen + udp::kHeaderLen;
  const std::size_t ip_len = ipv4::kMinLen + udp::kHeaderLen + payload.size();
  const std::size_t len = std::max(kHeaders + payload.size(), kMinFrameLen);
  if (ip_len > 65535 || len > capacity) return 0;
  std::fill_n(buf, len, std::uint8_t{0});
  store_mac(buf + eth::kDst, e.dst_mac);
  store_mac(buf + eth::kSrc, e.src_mac);
  store_be16(buf + eth::kType, eth::kTypeIpv4);

  std::uint8_t* ip = buf + eth::kHeaderLen;
  ip[ipv4::kVersionIhl] = 0x45;
  store_be16(ip + ipv4::kTotalLen, static_cast<std::uint16_t>(ip_len));
  store_be16(ip + ipv4::kFragOff, 0x4000);  // DF
  ip[ipv4::kTtl] = 255;
  ip[ipv4::kProto] = ipv4::kProtoUdp;
  store_be32(ip + ipv4::kSrc, e.src_ip.value);
  store_be32(ip + ipv4::kDst, e.dst_ip.value);
  store_be16(ip + ipv4::kChecksum, internet_checksum(ip, ipv4::kMinLen));

  std::uint8_t* u = ip + ipv4::kMinLen;
  const std::size_t udp_len = udp::kHeaderLen + payload.size();
  store_be16(u + udp::kSrcPort, e.src_port);
  store_be16(u + udp::kDstPort, e.dst_port);
  store_be16(u + udp::kLength, static_cast<std::uint16_t>(udp_len));
  if (!payload.empty()) std::memcpy(u + udp::kHeaderLen, payload.data(), payload.size());
  // Pseudo-header: addresses, protocol, UDP length; then the datagram.
  std::uint8_t pseudo[12];
  store_be32(pseudo, e.src_ip.value);
  store_be32(pseudo + 4, e.dst_ip.value);
  pseudo[8] = 0;
  pseudo[9] = ipv4::kProtoUdp;
  store_be16(pseudo + 10, static_cast<std::uint16_t>(udp_len));
  std::uint16_t sum = checksum_finish(checksum_accumulate(u, udp_len, checksum_accumulate(pseudo, sizeof pseudo)));
  if (sum == 0) sum = 0xffff;  // RFC 768: 0 means "no checksum"
  store_be16(u + udp::kChecksum, sum);
  return len;
}

}  // namespace tandem::net
