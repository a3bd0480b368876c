// Per-worker counters: one writer (the worker's lcore), any number of relaxed readers.
//
// Each worker owns one cache-aligned WorkerCounters block, so counting costs a plain add and no
// line is shared between cores. Readers (telemetry, the final dump) sum the blocks.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace tandem {

// Why the fast path dropped a frame. The names are the stable keys of counters and metrics.
#define TANDEM_DROP_REASONS(X)                                                            \
  X(kRuntFrame, "runt_frame")                 /* shorter than an Ethernet header */        \
  X(kL2NotForUs, "l2_not_for_us")             /* unicast to another MAC */                 \
  X(kL2Multicast, "l2_multicast")             /* multicast: no group is joined yet */      \
  X(kEthertypeUnsupported, "ethertype_unsupported")                                        \
  X(kArpMalformed, "arp_malformed")                                                        \
  X(kArpNotForUs, "arp_not_for_us")           /* request for an address we don't own */    \
  X(kArpUnhandledOp, "arp_unhandled_op")                                                   \
  X(kArpUnsolicitedReply, "arp_unsolicited_reply") /* a reply for no pending request */   \
  X(kIpv4Malformed, "ipv4_malformed")                                                      \
  X(kIpv4BadChecksum, "ipv4_bad_checksum")                                                 \
  X(kIpv4Fragment, "ipv4_fragment")                                                        \
  X(kIpv4NotLocal, "ipv4_not_local")          /* no service for this destination */        \
  X(kIpv4BadSource, "ipv4_bad_source")        /* multicast, broadcast or own source */     \
  X(kIcmpMalformed, "icmp_malformed")                                                      \
  X(kIcmpBadChecksum, "icmp_bad_checksum")                                                 \
  X(kIcmpUnhandled, "icmp_unhandled")         /* ICMP other than echo request */           \
  X(kL4Unhandled, "l4_unhandled")             /* TCP/UDP/... to a local address */         \
  X(kL4Malformed, "l4_malformed")             /* TCP/UDP/ICMP header to a VIP truncated or bad */ \
  X(kLbNoBackend, "lb_no_backend")            /* a new flow to a service whose backends are all drained */ \
  X(kLbNoRoute, "lb_no_route")                /* no port reaches the next hop */            \
  X(kLbUnresolved, "lb_neighbour_unresolved") /* next hop's MAC not known yet: ARP sent */  \
  X(kLbTtlExceeded, "lb_ttl_exceeded")                                                      \
  X(kLbNoLocalPort, "lb_fullnat_no_port")     /* fullnat: no free local port for the backend */ \
  X(kLbBadFirstSegment, "lb_bad_first_segment") /* no connection, and a SYN+ACK or no flags */ \
  X(kLbTooBig, "lb_too_big")                  /* beyond the next hop's MTU, DF clear (not fragmented) */ \
  X(kLbIcmpBadQuote, "lb_icmp_bad_quote")     /* an ICMP error to a VIP quoting no TCP/UDP header */ \
  X(kLbIcmpNoConnection, "lb_icmp_no_connection") /* an ICMP error to a VIP about no known flow */ \
  X(kMultiSegment, "multi_segment_frame")     /* chained mbufs: not parsed */               \
  X(kTxFull, "tx_full")                       /* the TX queue did not take the frame */    \
  X(kHandoffFull, "handoff_full")             /* the ring to the flow's owning worker was full */ \
  X(kNoMbuf, "no_mbuf")                       /* a generated frame found no buffer */       \
  X(kLbNotActive, "lb_not_active")            /* to a VIP of a group this unit does not own (standby) */ \
  X(kHaPuntFull, "ha_punt_full")              /* an HA advert found the ring to the control thread full */ \
  X(kHaPeerUnresolved, "ha_peer_unresolved")  /* an HA advert not sent: the peer's MAC is unknown (ARP sent) */

// What the fast path did with a frame it handled itself.
#define TANDEM_HANDLED_EVENTS(X)                   \
  X(kArpRepliesSent, "arp_replies_sent")          \
  X(kArpRepliesLearnt, "arp_replies_learnt")      \
  X(kArpRequestsSent, "arp_requests_sent")        \
  X(kIcmpEchoRepliesSent, "icmp_echo_replies_sent") \
  X(kLbNewFlows, "lb_new_flows")                  \
  X(kLbMidFlowFlows, "lb_midflow_flows")          \
  X(kLbStateless, "lb_stateless_forwarded")       \
  X(kLbForwarded, "lb_forwarded")                 \
  X(kLbRepliesForwarded, "lb_replies_forwarded") \
  X(kLbReleasedForwarded, "lb_released_forwarded") /* an established flow of a group just handed over */ \
  X(kLbIcmpForwarded, "lb_icmp_errors_forwarded") /* translated for the other end of a flow */ \
  X(kLbFragNeededSent, "lb_frag_needed_sent")   /* to a sender whose packet exceeded the MTU */ \
  X(kHandedOff, "handed_off")                     /* to the worker that owns the flow */ \
  X(kHaAdvertsSent, "ha_adverts_sent")            /* HA adverts sent on the data network */ \
  X(kHaAdvertsReceived, "ha_adverts_received")    /* passed to the HA control thread */ \
  X(kGratuitousArpSent, "gratuitous_arp_sent")    /* announcing VIPs and floating addresses */

#define TANDEM_ENUM_ITEM(id, name) id,
enum class DropReason : std::uint8_t { TANDEM_DROP_REASONS(TANDEM_ENUM_ITEM) kCount };
enum class Handled : std::uint8_t { TANDEM_HANDLED_EVENTS(TANDEM_ENUM_ITEM) kCount };
#undef TANDEM_ENUM_ITEM

inline constexpr std::size_t kDropReasonCount = static_cast<std::size_t>(DropReason::kCount);
inline constexpr std::size_t kHandledCount = static_cast<std::size_t>(Handled::kCount);
inline constexpr std::size_t kMaxPorts = 8;

const char* to_string(DropReason r);
const char* to_string(Handled h);

// A counter with a single writer: increments are a relaxed load + store (a plain add on x86),
// reads from other threads never tear.
class Counter {
 public:
  void add(std::uint64_t n = 1) { v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
  std::uint64_t get() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> v_{0};
};

struct PortCounters {
  Counter rx_packets, rx_bytes, tx_packets, tx_bytes, tx_dropped;
};

struct alignas(64) WorkerCounters {
  std::array<PortCounters, kMaxPorts> ports;
  std::array<Counter, kDropReasonCount> drops;
  std::array<Counter, kHandledCount> handled;
  Counter polls, busy_polls, idle_sleeps;

  void drop(DropReason r, std::uint64_t n = 1) { drops[static_cast<std::size_t>(r)].add(n); }
  void count(Handled h, std::uint64_t n = 1) { handled[static_cast<std::size_t>(h)].add(n); }
};

// Per service and per backend traffic, like IPVS's per-service and per-real-server stats. The
// slots are indexed by stats ids that the control plane assigns (lb/stats_ids.hpp) and that
// outlive table rebuilds, so a counter follows its service or backend, not a table position.
// Slot 0 collects what has no id of its own (the registry was full).
inline constexpr std::size_t kMaxServiceStats = 256;
inline constexpr std::size_t kMaxBackendStats = 8192;
inline constexpr std::uint32_t kUnattributedStats = 0;

// One line per slot: a packet touches one service line and one backend line.
struct alignas(64) TrafficCounters {
  Counter created;  // connections created
  Counter closed;   // connections freed: erased, expired or flushed
  std::array<Counter, 2> packets;  // by conntrack::FlowDir: [0] in (from the client), [1] out
  std::array<Counter, 2> bytes;

  // created - closed. Relaxed reads of two counters may see closed's newer value first: clamp.
  std::uint64_t active() const {
    const std::uint64_t c = closed.get();
    const std::uint64_t n = created.get();
    return n > c ? n - c : 0;
  }
};
static_assert(sizeof(TrafficCounters) == 64);

// A worker's slots (540 KiB). Written by the worker's connection table only.
struct WorkerServiceStats {
  std::array<TrafficCounters, kMaxServiceStats> services;
  std::array<TrafficCounters, kMaxBackendStats> backends;
};

}  // namespace tandem
