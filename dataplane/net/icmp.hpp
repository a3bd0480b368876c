// ICMP echo (RFC 792) answered in place.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tandem::net {

// Turns a validated IPv4 ICMP echo request into its reply, in place: Ethernet and IP addresses
// swapped, TTL reset, type 0, both checksums updated. `l3` is the IP header's offset in the
// frame and `ihl` its length in bytes.
void icmp_echo_request_to_reply(std::uint8_t* frame, std::size_t l3, std::size_t ihl);

}  // namespace tandem::net
