#include "dataplane/net/arp.hpp"

#include <algorithm>
#include <cstring>

#include "dataplane/net/byteorder.hpp"
#include "dataplane/net/headers.hpp"

namespace tandem::net {
namespace {

MacAddr load_mac(const std::uint8_t* p) {
  MacAddr m;
  std::memcpy(m.bytes.data(), p, 6);
  return m;
}

void store_mac(std::uint8_t* p, const MacAddr& m) { std::memcpy(p, m.bytes.data(), 6); }

}  // namespace

std::optional<ArpMessage> parse_arp(const std::uint8_t* frame, std::size_t len) {
  if (len < eth::kHeaderLen + arp::kLen) return std::nullopt;
  const std::uint8_t* a = frame + eth::kHeaderLen;
  if (load_be16(a + arp::kHtype) != arp::kHtypeEthernet || load_be16(a + arp::kPtype) != eth::kTypeIpv4 ||
      a[arp::kHlen] != 6 || a[arp::kPlen] != 4) {
    return std::nullopt;
  }
  ArpMessage m;
  m.op = load_be16(a + arp::kOper);
  m.sender_mac = load_mac(a + arp::kSha);
  m.sender_ip = {load_be32(a + arp::kSpa)};
  m.target_mac = load_mac(a + arp::kTha);
  m.target_ip = {load_be32(a + arp::kTpa)};
  return m;
}

void arp_request_to_reply(std::uint8_t* frame, const ArpMessage& request, const MacAddr& our_mac) {
  // Reply to the link-layer sender of the request, as the kernel does.
  store_mac(frame + eth::kDst, load_mac(frame + eth::kSrc));
  store_mac(frame + eth::kSrc, our_mac);
  std::uint8_t* a = frame + eth::kHeaderLen;
  store_be16(a + arp::kOper, arp::kOpReply);
  store_mac(a + arp::kSha, our_mac);
  store_be32(a + arp::kSpa, request.target_ip.value);
  store_mac(a + arp::kTha, request.sender_mac);
  store_be32(a + arp::kTpa, request.sender_ip.value);
}

std::size_t build_arp_request(std::uint8_t* buf, std::size_t capacity, const MacAddr& sender_mac,
                              Ipv4Addr sender_ip, Ipv4Addr target) {
  if (capacity < kMinFrameLen) return 0;
  std::fill_n(buf, kMinFrameLen, std::uint8_t{0});
  store_mac(buf + eth::kDst, MacAddr::broadcast());
  store_mac(buf + eth::kSrc, sender_mac);
  store_be16(buf + eth::kType, eth::kTypeArp);
  std::uint8_t* a = buf + eth::kHeaderLen;
  store_be16(a + arp::kHtype, arp::kHtypeEthernet);
  store_be16(a + arp::kPtype, eth::kTypeIpv4);
  a[arp::kHlen] = 6;
  a[arp::kPlen] = 4;
  store_be16(a + arp::kOper, arp::kOpRequest);
  store_mac(a + arp::kSha, sender_mac);
  store_be32(a + arp::kSpa, sender_ip.value);
  // target hardware address stays zero: unknown, which is what is being asked
  store_be32(a + arp::kTpa, target.value);
  return kMinFrameLen;
}

}  // namespace tandem::net
