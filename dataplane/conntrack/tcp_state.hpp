// The TCP state of a balanced connection, as a pure function of (state, direction, flags).
//
// The unit is a man in the middle: it guesses the endpoints' states from the flags it sees, does
// not check sequence numbers, and never refuses a packet because of its state (an odd packet
// leaves the state as it is and is forwarded; the backend decides). The state picks the
// connection's idle timeout, like IPVS (ip_vs_proto_tcp.c) and Linux conntrack
// (nf_conntrack_proto_tcp.c), whose tables this one is modelled on:
//   - states and their meaning follow conntrack (SYN_SENT = the client's SYN seen, SYN_RECV =
//     the backend's SYN+ACK seen), with the closing states named from the client's side so the
//     table records who closed first: FIN_WAIT = the client closed first, CLOSE_WAIT = the
//     backend closed first;
//   - flags are reduced to one event with IPVS's priority RST > SYN > FIN > ACK, SYN+ACK kept
//     apart from SYN (conntrack's TCP_SYNACK_SET);
//   - when only the client's packets pass through the unit (dsr, tunnel) a third column set is
//     used, like IPVS's INPUT_ONLY table: the client's ACK completes the handshake and a SYN
//     reopens a closing entry, because the backend's SYN+ACK, FIN and RST are never seen.
// Every transition is idempotent: a retransmitted packet never moves the state a second time.
#pragma once

#include <cstddef>
#include <cstdint>

#include "dataplane/conntrack/flow_key.hpp"
#include "dataplane/conntrack/forward_mode.hpp"

namespace tandem::conntrack {

// TCP header flag bits (byte 13 of the header).
inline constexpr std::uint8_t kTcpFin = 0x01;
inline constexpr std::uint8_t kTcpSyn = 0x02;
inline constexpr std::uint8_t kTcpRst = 0x04;
inline constexpr std::uint8_t kTcpPsh = 0x08;
inline constexpr std::uint8_t kTcpAck = 0x10;

enum class TcpState : std::uint8_t {
  kNone,         // nothing seen yet
  kSynSent,      // the client's SYN seen
  kSynRecv,      // the backend's SYN+ACK seen
  kEstablished,  // the handshake completed (or a mid-flow packet adopted the flow)
  kFinWait,      // the client sent FIN first; the backend may still send
  kCloseWait,    // the backend sent FIN first; the client may still send
  kLastAck,      // both FINs seen, the backend's first: waiting for its last ACK
  kTimeWait,     // both FINs seen, the client's first
  kClose,        // reset, or the last ACK after LAST_ACK
};
inline constexpr std::size_t kTcpStateCount = 9;
const char* to_string(TcpState s);

// One event per segment: RST > SYN (SYN+ACK apart) > FIN > ACK; none of the four is kNone.
enum class TcpEvent : std::uint8_t { kSyn, kSynAck, kFin, kAck, kRst, kNone };
inline constexpr std::size_t kTcpEventCount = 6;
const char* to_string(TcpEvent e);

constexpr TcpEvent tcp_event(std::uint8_t flags) {
  if (flags & kTcpRst) return TcpEvent::kRst;
  if (flags & kTcpSyn) return (flags & kTcpAck) ? TcpEvent::kSynAck : TcpEvent::kSyn;
  if (flags & kTcpFin) return TcpEvent::kFin;
  if (flags & kTcpAck) return TcpEvent::kAck;
  return TcpEvent::kNone;
}

// Which of the flow's packets the unit sees.
enum class TcpView : std::uint8_t {
  kBothWays,    // nat, fullnat: replies come back through the unit
  kClientOnly,  // dsr, tunnel: the backend answers the client directly
};

constexpr TcpView tcp_view(ForwardMode m) {
  return replies_pass_through(m) ? TcpView::kBothWays : TcpView::kClientOnly;
}

// The state after a segment travelling `dir` with event `ev`. In the client-only view a reply
// (which cannot normally arrive) is treated as in the both-ways view.
TcpState tcp_next_state(TcpState s, FlowDir dir, TcpEvent ev, TcpView view = TcpView::kBothWays);

// A SYN that turned a finished (or finishing) connection back into SYN_SENT: the client reused
// its port. The caller may treat the flow as new (pick a backend again, replicate it as new).
constexpr bool tcp_reopened(TcpState from, TcpState to) {
  return to == TcpState::kSynSent && from != TcpState::kNone && from != TcpState::kSynSent;
}

// Idle timeouts per state, in milliseconds (defaults as IPVS, SYN states shortened to 60 s).
// An entry expires when it has seen no packet for the timeout of its current state.
struct ConntrackTimeouts {
  std::uint32_t none_ms = 2'000;
  std::uint32_t syn_sent_ms = 60'000;
  std::uint32_t syn_recv_ms = 60'000;
  std::uint32_t established_ms = 900'000;
  std::uint32_t fin_wait_ms = 120'000;
  std::uint32_t close_wait_ms = 60'000;
  std::uint32_t last_ack_ms = 30'000;
  std::uint32_t time_wait_ms = 120'000;
  std::uint32_t close_ms = 10'000;
  std::uint32_t udp_ms = 300'000;  // UDP and every other non-TCP protocol

  std::uint32_t tcp_ms(TcpState s) const;
  // The timeout of an entry of protocol `proto` (IP protocol number) in state `s`.
  std::uint32_t ms(std::uint8_t proto, TcpState s) const;

  bool operator==(const ConntrackTimeouts&) const = default;
};

// What to do with a client's TCP segment for which no connection exists. A SYN always creates
// one. Any other segment means the connection began before this unit knew of it (a restart, or
// a failover that lost the entry): Maglev picks the same backend the old owner picked as long as
// the backend set is unchanged, so adopting the flow keeps it alive.
enum class MidFlowPolicy : std::uint8_t {
  kAdopt,      // create the entry (ESTABLISHED for an ACK, FIN_WAIT for a FIN), flagged mid-flow
  kStateless,  // forward by Maglev without creating an entry
  kDrop,       // drop it: only SYNs start connections (IPVS without sloppy_tcp)
};

enum class NewFlowAction : std::uint8_t { kCreate, kForwardStateless, kDrop };

// kCreate: insert an entry whose state is tcp_next_state(kNone, kOriginal, ev, view). An RST is
// forwarded without an entry (there is nothing to track, the backend should see it); a client
// SYN+ACK or a segment without SYN/FIN/RST/ACK is invalid and dropped.
NewFlowAction tcp_new_flow_action(TcpEvent ev, MidFlowPolicy policy);

}  // namespace tandem::conntrack
