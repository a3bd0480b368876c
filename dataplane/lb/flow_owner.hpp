// Which worker owns a flow.
//
// Each worker keeps its own connection table (conntrack/conn_table.hpp: no locks, no shared
// lines), so every packet of a flow, in both directions, must be handled by one worker. The RX
// queue a packet arrives on cannot promise that: RSS hashes the two directions of a NATed flow
// differently, and AF_PACKET's fanout rolls a flow over to another socket when one is full. So
// the owner is computed from what both directions of a flow carry, and a worker that receives a
// packet it does not own hands it to the owner over a ring (worker.cpp):
//   original (client -> VIP)          the client's address and port
//   nat reply (backend -> client)     the same client address and port, as the destination
//   fullnat reply (backend -> local)  the local port: each worker allocates only local ports
//                                     whose local_port_owner() is itself
//   ICMP error                        the owner of the flow its quote belongs to
// dsr and tunnel flows have no replies through the unit; their originals follow the same rule,
// so a flow never splits between workers however the NIC spreads it. The state sync of a peer
// unit installs a flow in the same worker by the same rule.
#pragma once

#include <cstdint>
#include <optional>

#include "dataplane/lb/hash.hpp"
#include "dataplane/lb/service_table.hpp"
#include "dataplane/net/packet.hpp"

namespace tandem::lb {

// Fullnat local ports are allocated from here up; lower ports are never a local port.
inline constexpr std::uint16_t kFirstLocalPort = 1024;

constexpr std::uint16_t client_owner(std::uint32_t addr, std::uint16_t port, std::uint16_t workers) {
  if (workers <= 1) return 0;
  const std::uint64_t h = fmix64((std::uint64_t{addr} << 16 | port) ^ 0x5851f42d4c957f2dull);
  return static_cast<std::uint16_t>((h >> 32) % workers);
}

// Local ports are dealt round-robin: worker w of W gets kFirstLocalPort + w, + W + w, ...
constexpr std::uint32_t local_port_slots(std::uint16_t workers) {
  return (65536u - kFirstLocalPort) / (workers ? workers : 1);
}
constexpr std::uint16_t local_port_at(std::uint32_t slot, std::uint16_t worker, std::uint16_t workers) {
  return static_cast<std::uint16_t>(kFirstLocalPort + slot * workers + worker);
}
constexpr std::uint16_t local_port_owner(std::uint16_t port, std::uint16_t workers) {
  if (workers <= 1 || port < kFirstLocalPort) return 0;
  return static_cast<std::uint16_t>((port - kFirstLocalPort) % workers);
}

// The owner of a TCP/UDP packet (addresses and ports as parsed, host order). A packet that
// turns out to belong to no flow is handled by its owner all the same (by the local stack).
std::uint16_t flow_owner(const ServiceTable& services, net::Ipv4Addr src, net::Ipv4Addr dst, std::uint16_t sport,
                         std::uint16_t dport, std::uint8_t proto, std::uint16_t workers);

// The owner of a parsed frame the forwarder may handle: TCP/UDP by flow_owner(), an ICMP error
// by the flow its quote answers. Nothing for other frames (ARP, echo, ...): any worker's.
std::optional<std::uint16_t> packet_owner(const std::uint8_t* frame, std::uint32_t len, const net::ParsedPacket& p,
                                          const ServiceTable& services, std::uint16_t workers);

}  // namespace tandem::lb
