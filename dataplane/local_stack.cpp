#include "dataplane/local_stack.hpp"

#include <algorithm>
#include <cstring>

#include "dataplane/net/arp.hpp"
#include "dataplane/net/byteorder.hpp"
#include "dataplane/net/checksum.hpp"
#include "dataplane/net/headers.hpp"
#include "dataplane/net/icmp.hpp"

namespace tandem {
namespace {

using Action = LocalResult::Action;

LocalResult drop(DropReason r) { return {.action = Action::kDrop, .reason = r}; }

LocalResult handle_arp(std::uint8_t* frame, std::uint32_t len, const LocalInterface& itf,
                       neigh::NeighbourTable& neighbours, std::uint64_t now_ms, LearntNeighbour& learnt_out) {
  const auto msg = net::parse_arp(frame, len);
  if (!msg) return drop(DropReason::kArpMalformed);

  const bool for_us = itf.owns(msg->target_ip);
  const bool has_sender = msg->sender_ip.value != 0;  // 0.0.0.0 is an address probe (RFC 5227)
  LocalResult r;
  if (has_sender) {
    // A request to us will be followed by traffic to the sender, so it may create an entry;
    // anything else only refreshes what we already asked for.
    const bool create = for_us && msg->op == net::arp::kOpRequest;
    const auto learnt = neighbours.learn(msg->sender_ip, msg->sender_mac, now_ms, create);
    if (learnt == neigh::LearnResult::kCreated || learnt == neigh::LearnResult::kUpdated) {
      r.learnt = true;
      learnt_out = {msg->sender_ip, msg->sender_mac};
    }
  }

  switch (msg->op) {
    case net::arp::kOpRequest:
      if (!for_us) {
        r.action = Action::kDrop;
        r.reason = DropReason::kArpNotForUs;
        return r;
      }
      net::arp_request_to_reply(frame, *msg, itf.mac);
      r.action = Action::kTransmit;
      r.event = Handled::kArpRepliesSent;
      return r;
    case net::arp::kOpReply:
      if (!r.learnt) {
        r.action = Action::kDrop;
        r.reason = DropReason::kArpUnsolicitedReply;
        return r;
      }
      r.action = Action::kConsume;
      r.event = Handled::kArpRepliesLearnt;
      return r;
    default:
      r.action = Action::kDrop;
      r.reason = DropReason::kArpUnhandledOp;
      return r;
  }
}

LocalResult handle_icmp(std::uint8_t* frame, std::size_t l3, std::size_t ihl, std::size_t ip_len) {
  const std::uint8_t* icmp_hdr = frame + l3 + ihl;
  const std::size_t icmp_len = ip_len - ihl;
  if (icmp_len < net::icmp::kMinLen) return drop(DropReason::kIcmpMalformed);
  if (net::internet_checksum(icmp_hdr, icmp_len) != 0) return drop(DropReason::kIcmpBadChecksum);
  if (icmp_hdr[net::icmp::kType] != net::icmp::kTypeEchoRequest || icmp_hdr[net::icmp::kCode] != 0)
    return drop(DropReason::kIcmpUnhandled);
  net::icmp_echo_request_to_reply(frame, l3, ihl);
  return {.action = Action::kTransmit, .event = Handled::kIcmpEchoRepliesSent};
}

LocalResult handle_ipv4(std::uint8_t* frame, std::uint32_t len, const LocalInterface& itf) {
  constexpr std::size_t l3 = net::eth::kHeaderLen;
  if (len < l3 + net::ipv4::kMinLen) return drop(DropReason::kIpv4Malformed);
  const std::uint8_t* ip = frame + l3;
  const std::size_t ihl = std::size_t{ip[net::ipv4::kVersionIhl] & 0x0fu} * 4;
  const std::size_t ip_len = net::load_be16(ip + net::ipv4::kTotalLen);
  // Frames may carry Ethernet padding after the datagram, never less than it claims.
  if ((ip[net::ipv4::kVersionIhl] >> 4) != 4 || ihl < net::ipv4::kMinLen || ip_len < ihl ||
      l3 + ip_len > len) {
    return drop(DropReason::kIpv4Malformed);
  }
  if (net::internet_checksum(ip, ihl) != 0) return drop(DropReason::kIpv4BadChecksum);

  const net::Ipv4Addr dst{net::load_be32(ip + net::ipv4::kDst)};
  if (!itf.owns(dst)) return drop(DropReason::kIpv4NotLocal);
  const net::Ipv4Addr src{net::load_be32(ip + net::ipv4::kSrc)};
  if (src.value == 0 || src.value == 0xffffffffu || (src.value >> 28) == 0xe || itf.owns(src) ||
      itf.is_subnet_broadcast(src)) {
    return drop(DropReason::kIpv4BadSource);
  }
  const std::uint16_t frag = net::load_be16(ip + net::ipv4::kFragOff);
  if ((frag & (net::ipv4::kFlagMoreFragments | net::ipv4::kFragOffsetMask)) != 0)
    return drop(DropReason::kIpv4Fragment);

  if (ip[net::ipv4::kProto] == net::ipv4::kProtoIcmp) return handle_icmp(frame, l3, ihl, ip_len);
  if (ip[net::ipv4::kProto] == net::ipv4::kProtoUdp && itf.ha_udp_port != 0) {
    const std::uint8_t* udp = ip + ihl;
    if (ip_len < ihl + net::udp::kHeaderLen) return drop(DropReason::kL4Malformed);
    const std::size_t udp_len = net::load_be16(udp + net::udp::kLength);
    if (udp_len < net::udp::kHeaderLen || udp_len > ip_len - ihl) return drop(DropReason::kL4Malformed);
    // Only to the port's own addresses: an advert is never sent to a VIP or floating address.
    if (net::load_be16(udp + net::udp::kDstPort) == itf.ha_udp_port && itf.owns_primary(dst))
      return {.action = Action::kPunt, .event = Handled::kHaAdvertsReceived};
  }
  return drop(DropReason::kL4Unhandled);
}

}  // namespace

bool LocalInterface::add_floating(net::Ipv4Addr a) {
  auto* end = floating.begin() + floating_count;
  auto* it = std::lower_bound(floating.begin(), end, a.value);
  if (it != end && *it == a.value) return true;
  if (floating_count == kMaxFloatingAddrs) return false;
  std::move_backward(it, end, end + 1);
  *it = a.value;
  ++floating_count;
  return true;
}

bool LocalInterface::owns_floating(net::Ipv4Addr a) const {
  const auto* end = floating.begin() + floating_count;
  return std::binary_search(floating.begin(), end, a.value);
}

PuntedPayload punted_payload(const std::uint8_t* frame) {
  const std::uint8_t* ip = frame + net::eth::kHeaderLen;
  const std::uint32_t ihl = std::uint32_t{ip[net::ipv4::kVersionIhl] & 0x0fu} * 4;
  const std::uint8_t* udp = ip + ihl;
  return {static_cast<std::uint32_t>(net::eth::kHeaderLen + ihl + net::udp::kHeaderLen),
          static_cast<std::uint32_t>(net::load_be16(udp + net::udp::kLength) - net::udp::kHeaderLen)};
}

LocalResult handle_local_frame(std::uint8_t* frame, std::uint32_t len, const LocalInterface& itf,
                               neigh::NeighbourTable& neighbours, std::uint64_t now_ms,
                               LearntNeighbour& learnt) {
  if (len < net::eth::kHeaderLen) return drop(DropReason::kRuntFrame);
  net::MacAddr dst;
  std::memcpy(dst.bytes.data(), frame + net::eth::kDst, 6);
  if (dst != itf.mac && !dst.is_broadcast())
    return drop(dst.is_multicast() ? DropReason::kL2Multicast : DropReason::kL2NotForUs);

  switch (net::load_be16(frame + net::eth::kType)) {
    case net::eth::kTypeArp: return handle_arp(frame, len, itf, neighbours, now_ms, learnt);
    case net::eth::kTypeIpv4: return handle_ipv4(frame, len, itf);
    default: return drop(DropReason::kEthertypeUnsupported);
  }
}

}  // namespace tandem
