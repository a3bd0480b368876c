#include "dataplane/net/icmp.hpp"

#include <array>
#include <cstring>

#include "dataplane/net/byteorder.hpp"
#include "dataplane/net/checksum.hpp"
#include "dataplane/net/headers.hpp"

namespace tandem::net {

void icmp_echo_request_to_reply(std::uint8_t* frame, std::size_t l3, std::size_t ihl) {
  std::array<std::uint8_t, 6> mac;
  std::memcpy(mac.data(), frame + eth::kDst, 6);
  std::memcpy(frame + eth::kDst, frame + eth::kSrc, 6);
  std::memcpy(frame + eth::kSrc, mac.data(), 6);

  std::uint8_t* ip = frame + l3;
  std::array<std::uint8_t, 4> addr;
  std::memcpy(addr.data(), ip + ipv4::kSrc, 4);
  std::memcpy(ip + ipv4::kSrc, ip + ipv4::kDst, 4);
  std::memcpy(ip + ipv4::kDst, addr.data(), 4);
  ip[ipv4::kTtl] = ipv4::kDefaultTtl;
  store_be16(ip + ipv4::kChecksum, 0);
  store_be16(ip + ipv4::kChecksum, internet_checksum(ip, ihl));

  // Only the type/code word changes, so the ICMP checksum is updated, not recomputed over the
  // whole payload (RFC 1624).
  std::uint8_t* icmp_hdr = ip + ihl;
  const std::uint16_t old_word = load_be16(icmp_hdr + icmp::kType);
  icmp_hdr[icmp::kType] = icmp::kTypeEchoReply;
  const std::uint16_t new_word = load_be16(icmp_hdr + icmp::kType);
  store_be16(icmp_hdr + icmp::kChecksum,
             checksum_update16(load_be16(icmp_hdr + icmp::kChecksum), old_word, new_word));
}

}  // namespace tandem::net
