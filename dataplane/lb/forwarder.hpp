// The load balancer's per-packet decision: a packet to a VIP goes to its connection's backend
// (a new connection gets one from the service's Maglev table), rewritten for the service's
// mode; a backend's reply (nat, fullnat) is translated back to the VIP; an ICMP error about a
// connection's packet is translated for the other end (icmp_translate.hpp); a packet too big
// for the next hop's MTU is answered with "fragmentation needed" (or dropped without DF). Pure
// logic over a frame buffer and the worker's tables, so every mode is tested packet by packet
// without DPDK.
#pragma once

#include <cstdint>
#include <optional>
#include <span>

#include "dataplane/conntrack/conn_delta.hpp"
#include "dataplane/conntrack/conn_table.hpp"
#include "dataplane/counters.hpp"
#include "dataplane/lb/service_table.hpp"
#include "dataplane/local_stack.hpp"
#include "dataplane/neigh/neighbour_table.hpp"
#include "dataplane/net/packet.hpp"

namespace tandem::lb {

// A data port as the forwarder sees it: what it answers for, whom it reaches.
struct LbPort {
  const LocalInterface* local = nullptr;
  neigh::NeighbourTable* neighbours = nullptr;
  std::optional<net::Ipv4Addr> gateway;
  std::uint16_t mtu = 1500;  // largest IPv4 datagram it sends; bigger ones get "fragmentation needed"
};

struct LbContext {
  const ServiceTable* services = nullptr;
  conntrack::ConnTable* conns = nullptr;
  std::span<LbPort> ports;
  std::uint16_t worker = 0;   // fullnat local ports are split between workers by this
  std::uint16_t workers = 1;
  std::uint64_t now_ms = 0;
  // A client TCP segment without SYN and without a connection (after a restart or a failover
  // that lost the entry): adopted by default, like Maglev.
  conntrack::MidFlowPolicy mid_flow = conntrack::MidFlowPolicy::kAdopt;
  // HA: the VIP groups this unit serves (bit g: group g). A standby's VIP traffic is dropped
  // (lb_not_active); without HA every group is owned.
  std::uint64_t owned_groups = ~std::uint64_t{0};
  // Groups given up moments ago (a handover): their established flows are still forwarded
  // (lb_released_forwarded) while the neighbours move to the new active; new ones are not.
  std::uint64_t released_groups = 0;
  // State sync: every connection created, changing TCP state or ended here is logged for the
  // peer (null: not replicated).
  conntrack::ConnDeltaLog* sync = nullptr;
};

struct LbVerdict {
  enum class Action : std::uint8_t {
    kNotMine,   // neither to a VIP nor a tracked reply: the local stack's
    kTransmit,  // rewritten: send out of `port`
    kDrop,      // count `reason`
  };
  Action action = Action::kNotMine;
  std::uint8_t port = 0;
  bool new_flow = false;       // a connection was created (count it)
  bool grew_front = false;     // tunnel: the frame now starts kIpipOverhead bytes earlier
  DropReason reason = DropReason::kCount;
  Handled event = Handled::kCount;
};

// The connection-table key of a parsed TCP/UDP packet, in the direction it travels: what
// lb_forward looks up, and what a worker hashes to prefetch that lookup.
inline conntrack::FlowKey packet_key(const net::ParsedPacket& p) {
  return {.src_addr = p.src.value, .dst_addr = p.dst.value, .src_port = p.sport, .dst_port = p.dport,
          .proto = p.proto};
}

// `frame` must have kIpipOverhead bytes of writable headroom before it (tunnel mode); `len`
// is updated when the frame grows. `p` is the packet as parse_packet left it.
// The verdict is written into `v`, field by field (read it the same way): one returned by value is
// assembled from byte stores and reloaded whole, which stalls store forwarding on every packet.
void lb_forward(std::uint8_t* frame, std::uint32_t& len, net::ParsedPacket& p, LbContext& ctx, LbVerdict& v);
inline LbVerdict lb_forward(std::uint8_t* frame, std::uint32_t& len, net::ParsedPacket& p, LbContext& ctx) {
  LbVerdict v;
  lb_forward(frame, len, p, ctx, v);
  return v;
}

}  // namespace tandem::lb
