// ARP for IPv4 over Ethernet (RFC 826): parse, answer in place, build requests.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "dataplane/net/addr.hpp"

namespace tandem::net {

struct ArpMessage {
  std::uint16_t op = 0;
  MacAddr sender_mac;
  Ipv4Addr sender_ip;
  MacAddr target_mac;
  Ipv4Addr target_ip;
};

// Parses the ARP message of an Ethernet frame whose EtherType is ARP. Returns nothing when the
// frame is too short or is not Ethernet/IPv4 ARP (htype 1, ptype 0x0800, hlen 6, plen 4).
std::optional<ArpMessage> parse_arp(const std::uint8_t* frame, std::size_t len);

// Rewrites a parsed ARP request in `frame` into the reply that `our_mac` owns its target
// address. The frame keeps its length (padding included).
void arp_request_to_reply(std::uint8_t* frame, const ArpMessage& request, const MacAddr& our_mac);

// Writes a broadcast ARP request "who has `target`, tell `sender_ip`" padded to the minimum
// frame length. Returns the frame length, or 0 when `capacity` is too small.
std::size_t build_arp_request(std::uint8_t* buf, std::size_t capacity, const MacAddr& sender_mac,
                              Ipv4Addr sender_ip, Ipv4Addr target);

}  // namespace tandem::net
