#include "dataplane/lb/forwarder.hpp"

#include "dataplane/lb/flow_owner.hpp"
#include "dataplane/lb/hash.hpp"
#include "dataplane/lb/icmp_translate.hpp"
#include "dataplane/lb/rewrite.hpp"

namespace tandem::lb {
namespace {

using Action = LbVerdict::Action;
using conntrack::FlowDir;
using conntrack::FlowKey;
using conntrack::DeltaKind;
using conntrack::ForwardMode;

constexpr int kLocalPortAttempts = 64;

// The per-packet steps are inlined into lb_forward: LbVerdict and Hop returned from a call are
// spilled and rebuilt byte by byte when the caller amends a field, and the wide reload of those
// byte stores stalls store forwarding on every packet (seen with perf; see also local_stack.hpp).
#define TANDEM_HOT_INLINE [[gnu::always_inline]] inline

LbVerdict drop(DropReason r, bool new_flow = false) {
  return {.action = Action::kDrop, .new_flow = new_flow, .reason = r};
}

struct Hop {
  std::uint8_t port = 0;
  net::MacAddr mac;
};

// The port that reaches `dst` (directly connected first, else through a port's gateway) and the
// MAC of the next hop there. An unknown MAC starts its resolution and the packet is dropped:
// the sender's retransmission finds it resolved.
// Fills `hop` in place (resolve() writes the MAC straight into it): a Hop built and copied out
// is shuffled through the stack byte by byte.
TANDEM_HOT_INLINE bool next_hop(LbContext& ctx, net::Ipv4Addr dst, Hop& hop, DropReason& reason) {
  constexpr std::uint8_t kNone = 0xff;
  std::uint8_t port = kNone;
  net::Ipv4Addr via = dst;
  for (std::uint8_t i = 0; i < ctx.ports.size() && port == kNone; ++i) {
    const LocalInterface& l = *ctx.ports[i].local;
    for (std::uint8_t a = 0; a < l.count; ++a)
      if (l.prefixes[a].length < 32 && l.prefixes[a].contains(dst)) port = i;
  }
  for (std::uint8_t i = 0; i < ctx.ports.size() && port == kNone; ++i) {
    if (ctx.ports[i].gateway) {
      port = i;
      via = *ctx.ports[i].gateway;
    }
  }
  if (port == kNone) {
    reason = DropReason::kLbNoRoute;
    return false;
  }
  hop.port = port;
  if (ctx.ports[port].neighbours->resolve(via, ctx.now_ms, &hop.mac) != neigh::ResolveResult::kKnown) {
    reason = DropReason::kLbUnresolved;
    return false;
  }
  return true;
}

// A datagram too big for the next hop: "fragmentation needed" back to its sender (RFC 1191;
// from `source`, or from the unit's address on the sender's side), or a counted drop when DF is
// clear or no ICMP error may be sent about it. The unit never fragments.
LbVerdict too_big(std::uint8_t* frame, std::uint32_t& len, net::ParsedPacket& p, LbContext& ctx, std::uint16_t mtu,
                  std::optional<net::Ipv4Addr> source, bool new_flow) {
  if (!dont_fragment(frame, p) || !may_send_icmp_error(frame, p)) return drop(DropReason::kLbTooBig, new_flow);
  DropReason reason = DropReason::kCount;
  Hop back;
  if (!next_hop(ctx, p.src, back, reason)) return drop(reason, new_flow);
  const LbPort& out = ctx.ports[back.port];
  const std::size_t n =
      build_frag_needed(frame, len, p, mtu, source.value_or(out.local->prefixes[0].addr), out.local->mac, back.mac);
  if (n == 0) return drop(DropReason::kLbTooBig, new_flow);
  len = static_cast<std::uint32_t>(n);
  return {.action = Action::kTransmit, .port = back.port, .new_flow = new_flow, .event = Handled::kLbFragNeededSent};
}

// A local port for a fullnat connection to `backend` that no connection of this worker uses:
// ports are split between workers (flow_owner.hpp) so workers never collide and the replies
// come back to this worker, and the reply key is checked in the table, so a port in use is
// never handed out twice.
std::optional<std::uint16_t> allocate_local_port(LbContext& ctx, net::Ipv4Addr local, net::Ipv4Addr backend,
                                                 std::uint16_t backend_port, std::uint8_t proto, std::uint32_t hash) {
  const std::uint32_t span = local_port_slots(ctx.workers);
  for (int attempt = 0; attempt < kLocalPortAttempts; ++attempt) {
    const std::uint32_t slot = (hash + static_cast<std::uint32_t>(attempt) * 2654435761u) % span;
    const std::uint16_t port = local_port_at(slot, ctx.worker, ctx.workers);
    const FlowKey reply{.src_addr = backend.value, .dst_addr = local.value, .src_port = backend_port,
                        .dst_port = port, .proto = proto};
    if (!ctx.conns->find(reply)) return port;
  }
  return std::nullopt;
}

// Sends the rewritten original-direction packet to its backend according to `mode`.
TANDEM_HOT_INLINE LbVerdict to_backend(std::uint8_t* frame, std::uint32_t& len, net::ParsedPacket& p,
                                       LbContext& ctx, ForwardMode mode, net::Ipv4Addr backend,
                                       std::uint16_t backend_port, net::Ipv4Addr local, std::uint16_t local_port,
                                       bool new_flow) {
  DropReason reason = DropReason::kCount;
  Hop hop;
  if (!next_hop(ctx, backend, hop, reason)) return drop(reason, new_flow);
  const std::uint32_t overhead = mode == ForwardMode::kTunnel ? kIpipOverhead : 0;
  const std::uint16_t mtu = ctx.ports[hop.port].mtu;
  if (p.ip_len + overhead > mtu)
    return too_big(frame, len, p, ctx, static_cast<std::uint16_t>(mtu - overhead), p.dst, new_flow);
  const net::MacAddr& src_mac = ctx.ports[hop.port].local->mac;
  LbVerdict v{.action = Action::kTransmit, .port = hop.port, .new_flow = new_flow, .event = Handled::kLbForwarded};
  switch (mode) {
    case ForwardMode::kNat:
    case ForwardMode::kFullNat:
      if (!decrement_ttl(frame, p)) return drop(DropReason::kLbTtlExceeded, new_flow);
      rewrite_destination(frame, p, backend, backend_port);
      if (mode == ForwardMode::kFullNat) rewrite_source(frame, p, local, local_port);
      set_macs(frame, src_mac, hop.mac);
      return v;
    case ForwardMode::kDsr:
      set_macs(frame, src_mac, hop.mac);  // the backend holds the VIP itself
      return v;
    case ForwardMode::kTunnel: {
      const net::Ipv4Addr outer_src = ctx.ports[hop.port].local->prefixes[0].addr;
      len = static_cast<std::uint32_t>(
          encapsulate_ipip(frame - kIpipOverhead, p, src_mac, hop.mac, outer_src, backend));
      v.grew_front = true;
      return v;
    }
  }
  return drop(DropReason::kLbNoRoute, new_flow);
}

TANDEM_HOT_INLINE LbVerdict forward_original(std::uint8_t* frame, std::uint32_t& len, net::ParsedPacket& p,
                                             LbContext& ctx, const Service& svc) {
  const FlowKey key = packet_key(p);
  conntrack::ConnLookup hit = ctx.conns->lookup(key);
  if (hit && hit.dir == FlowDir::kOriginal) {
    conntrack::ConnEntry& e = *hit.entry;
    const conntrack::TcpState before = e.state;
    const bool changed = ctx.conns->update(e, FlowDir::kOriginal, p.tcp_flags, len, ctx.now_ms);
    const bool reopened = changed && conntrack::tcp_reopened(before, e.state);
    if (ctx.sync && changed) ctx.sync->emit(reopened ? DeltaKind::kDelete : DeltaKind::kUpdate, e, ctx.now_ms);
    if (!reopened) {
      // An existing flow keeps its backend whatever the Maglev table says now.
      return to_backend(frame, len, p, ctx, e.mode, net::Ipv4Addr{e.backend_addr}, e.backend_port,
                        net::Ipv4Addr{e.local_addr}, e.local_port, false);
    }
    // The client reused its port after the connection closed: a new connection, which picks
    // its backend afresh (drains and weight changes apply), as IPVS's conn_reuse_mode does.
    ctx.conns->erase(&e);
  }

  // What a TCP segment without a connection may start: a SYN creates one; ACK or FIN mid-flow
  // follow the policy; a lone RST is forwarded untracked; a SYN+ACK or no flags is dropped.
  const bool tcp = p.proto == net::ipv4::kProtoTcp;
  const conntrack::TcpEvent event = conntrack::tcp_event(p.tcp_flags);
  const conntrack::NewFlowAction action =
      tcp ? conntrack::tcp_new_flow_action(event, ctx.mid_flow) : conntrack::NewFlowAction::kCreate;
  if (action == conntrack::NewFlowAction::kDrop) return drop(DropReason::kLbBadFirstSegment);

  const std::uint32_t hash = flow_hash(p.src.value, p.dst.value, p.sport, p.dport, p.proto);
  const Backend* b = svc.pick(hash);
  if (!b) return drop(DropReason::kLbNoBackend);
  const std::uint16_t backend_port = b->port ? b->port : p.dport;

  // Where the backend's replies go: the client (nat; dsr and tunnel bypass the unit) or a
  // local address and port (fullnat).
  net::Ipv4Addr local = p.src;
  std::uint16_t local_port = p.sport;
  if (svc.mode == ForwardMode::kFullNat) {
    local = svc.local_addrs[hash % svc.local_addrs.size()];
    const auto port = allocate_local_port(ctx, local, b->addr, backend_port, p.proto, hash);
    if (!port) return drop(DropReason::kLbNoLocalPort);
    local_port = *port;
  }

  LbVerdict v;
  if (action == conntrack::NewFlowAction::kForwardStateless) {
    v = to_backend(frame, len, p, ctx, svc.mode, b->addr, backend_port, local, local_port, false);
    if (v.action == Action::kTransmit) v.event = Handled::kLbStateless;
    return v;
  }
  const bool mid_flow = tcp && event != conntrack::TcpEvent::kSyn;
  const FlowKey reply{.src_addr = b->addr.value, .dst_addr = local.value, .src_port = backend_port,
                      .dst_port = local_port, .proto = p.proto};
  const conntrack::ConnParams params{.mode = svc.mode,
                                     .flags = mid_flow ? conntrack::kConnMidFlow : std::uint8_t{0},
                                     .service = svc.stats_id,
                                     .backend = b->stats_id};
  const conntrack::ConnInsert ins = ctx.conns->insert(key, reply, params, ctx.now_ms);
  if (ins.status != conntrack::InsertStatus::kInserted) {
    // Table full (or the reply key is taken): forward statelessly by Maglev, counted. The flow
    // keeps its backend as long as the Maglev table does not change.
    v = to_backend(frame, len, p, ctx, svc.mode, b->addr, backend_port, local, local_port, false);
    if (v.action == Action::kTransmit) v.event = Handled::kLbStateless;
    return v;
  }
  ctx.conns->update(*ins.entry, FlowDir::kOriginal, p.tcp_flags, len, ctx.now_ms);
  if (ctx.sync) ctx.sync->emit(DeltaKind::kCreate, *ins.entry, ctx.now_ms);
  v = to_backend(frame, len, p, ctx, svc.mode, b->addr, backend_port, local, local_port, true);
  if (mid_flow && v.action == Action::kTransmit) v.event = Handled::kLbMidFlowFlows;
  return v;
}

TANDEM_HOT_INLINE LbVerdict forward_reply(std::uint8_t* frame, std::uint32_t& len, net::ParsedPacket& p,
                                          LbContext& ctx, conntrack::ConnEntry& e) {
  if (ctx.conns->update(e, FlowDir::kReply, p.tcp_flags, len, ctx.now_ms) && ctx.sync)
    ctx.sync->emit(DeltaKind::kUpdate, e, ctx.now_ms);
  DropReason reason = DropReason::kCount;
  Hop hop;
  if (!next_hop(ctx, net::Ipv4Addr{e.client_addr}, hop, reason)) return drop(reason);
  if (p.ip_len > ctx.ports[hop.port].mtu) return too_big(frame, len, p, ctx, ctx.ports[hop.port].mtu, {}, false);
  if (!decrement_ttl(frame, p)) return drop(DropReason::kLbTtlExceeded);
  rewrite_source(frame, p, net::Ipv4Addr{e.vip_addr}, e.vip_port);
  if (e.mode == ForwardMode::kFullNat) rewrite_destination(frame, p, net::Ipv4Addr{e.client_addr}, e.client_port);
  set_macs(frame, ctx.ports[hop.port].local->mac, hop.mac);
  return {.action = Action::kTransmit, .port = hop.port, .event = Handled::kLbRepliesForwarded};
}

// An ICMP error quoting a packet of a tracked connection goes to the connection's other end,
// translated (nat, fullnat) or as it is (dsr, tunnel: an error from the client's side about
// the backend's direct reply, e.g. "fragmentation needed" for path MTU discovery, goes to the
// backend like a client packet, as Katran does). Errors about nothing known are the local
// stack's, unless they are addressed to a VIP or a local address: then they are dropped here.
LbVerdict forward_icmp_error(std::uint8_t* frame, std::uint32_t& len, net::ParsedPacket& p, LbContext& ctx) {
  const bool to_service = ctx.services->is_vip(p.dst) || ctx.services->is_local_addr(p.dst);
  IcmpQuote q;
  if (parse_icmp_quote(frame, len, p, q) != QuoteError::kNone)
    return to_service ? drop(DropReason::kLbIcmpBadQuote) : LbVerdict{};
  const conntrack::ConnLookup hit = ctx.conns->lookup(icmp_lookup_key(q));
  if (!hit) return to_service ? drop(DropReason::kLbIcmpNoConnection) : LbVerdict{};
  const conntrack::ConnEntry& e = *hit.entry;
  LbVerdict v;
  if (e.mode == ForwardMode::kDsr || e.mode == ForwardMode::kTunnel) {
    if (hit.dir != FlowDir::kOriginal) return {};  // only the client's key is indexed
    v = to_backend(frame, len, p, ctx, e.mode, net::Ipv4Addr{e.backend_addr}, e.backend_port, {}, 0, false);
  } else {
    const bool for_client = hit.dir == FlowDir::kReply;
    DropReason reason = DropReason::kCount;
    Hop hop;
    if (!next_hop(ctx, net::Ipv4Addr{for_client ? e.client_addr : e.backend_addr}, hop, reason)) return drop(reason);
    if (!decrement_ttl(frame, p)) return drop(DropReason::kLbTtlExceeded);
    if (for_client)
      translate_icmp_for_client(frame, p, q, e);
    else
      translate_icmp_for_backend(frame, p, q, e);
    set_macs(frame, ctx.ports[hop.port].local->mac, hop.mac);
    v = {.action = Action::kTransmit, .port = hop.port};
  }
  if (v.action == Action::kTransmit && v.event != Handled::kLbFragNeededSent) v.event = Handled::kLbIcmpForwarded;
  return v;
}

// A packet of a flow this unit holds an entry for, that is not opening a new one (a SYN may
// reuse a closed connection's port: that would be a new flow).
bool established_here(const net::ParsedPacket& p, LbContext& ctx) {
  if (p.proto == net::ipv4::kProtoTcp && (p.tcp_flags & net::TcpFlags::kSyn) != 0) return false;
  const conntrack::ConnLookup hit = ctx.conns->lookup(packet_key(p));
  return hit && hit.dir == FlowDir::kOriginal;
}

}  // namespace

void lb_forward(std::uint8_t* frame, std::uint32_t& len, net::ParsedPacket& p, LbContext& ctx, LbVerdict& v) {
  if (p.proto == net::ipv4::kProtoTcp || p.proto == net::ipv4::kProtoUdp) {
    if (const Service* svc = ctx.services->find(p.dst, p.proto, p.dport)) {
      if ((ctx.owned_groups >> svc->group & 1) != 0) {
        v = forward_original(frame, len, p, ctx, *svc);
      } else if ((ctx.released_groups >> svc->group & 1) != 0 && established_here(p, ctx)) {
        v = forward_original(frame, len, p, ctx, *svc);
        if (v.action == Action::kTransmit) v.event = Handled::kLbReleasedForwarded;
      } else {
        v = drop(DropReason::kLbNotActive);
      }
      return;
    }
    const conntrack::ConnLookup hit = ctx.conns->lookup(packet_key(p));
    v = hit && hit.dir == FlowDir::kReply ? forward_reply(frame, len, p, ctx, *hit.entry) : LbVerdict{};
    return;
  }
  v = p.proto == net::ipv4::kProtoIcmp && is_icmp_error(p) ? forward_icmp_error(frame, len, p, ctx) : LbVerdict{};
}

}  // namespace tandem::lb
