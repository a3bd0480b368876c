#include "dataplane/conntrack/tcp_state.hpp"

#include <array>

#include "dataplane/net/headers.hpp"

namespace tandem::conntrack {

namespace {

constexpr TcpState sNO = TcpState::kNone;
constexpr TcpState sSS = TcpState::kSynSent;
constexpr TcpState sSR = TcpState::kSynRecv;
constexpr TcpState sES = TcpState::kEstablished;
constexpr TcpState sFW = TcpState::kFinWait;
constexpr TcpState sCW = TcpState::kCloseWait;
constexpr TcpState sLA = TcpState::kLastAck;
constexpr TcpState sTW = TcpState::kTimeWait;
constexpr TcpState sCL = TcpState::kClose;

using Row = std::array<TcpState, kTcpStateCount>;     // indexed by the current state
using Column = std::array<Row, kTcpEventCount>;       // indexed by the event
constexpr Row kUnchanged = {sNO, sSS, sSR, sES, sFW, sCW, sLA, sTW, sCL};

// [path][event][state]. Paths: 0 = client, both ways; 1 = backend, both ways; 2 = client only.
// Columns:                  sNO  sSS  sSR  sES  sFW  sCW  sLA  sTW  sCL
constexpr std::array<Column, 3> kNext = {{
    // From the client, replies seen.
    {{
        /*syn   */ Row{sSS, sSS, sSR, sES, sFW, sCW, sLA, sSS, sSS},
        // sNO: a new connection. sSS/sSR: retransmitted SYN. sTW/sCL: the client reuses the
        // port (RFC 1122 reopen). sES..sLA: an old connection is still open; the backend will
        // answer with a challenge ACK or a RST, whose RST then closes the entry.
        /*synack*/ kUnchanged,  // clients do not send SYN+ACK
        /*fin   */ Row{sFW, sSS, sFW, sFW, sFW, sLA, sLA, sTW, sCL},
        // sNO: adopted mid-close. sSS: FIN before any answer, invalid. sSR: FIN carrying the
        // handshake's ACK. sCW -> sLA: the client answers the backend's close.
        /*ack   */ Row{sES, sSS, sES, sES, sFW, sCW, sLA, sTW, sCL},
        // sNO: adopted mid-flow. sSS: no SYN+ACK seen yet, stays. sSR: handshake complete.
        /*rst   */ Row{sNO, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL},
        /*none  */ kUnchanged,
    }},
    // From the backend, replies seen.
    {{
        /*syn   */ kUnchanged,  // backends do not open connections through a VIP
        /*synack*/ Row{sSR, sSR, sSR, sES, sFW, sCW, sLA, sTW, sCL},
        // sSS: the standard open. sSR: retransmitted. Later: a late duplicate, ignored.
        /*fin   */ Row{sCW, sSS, sCW, sCW, sTW, sCW, sLA, sTW, sCL},
        // sFW -> sTW: the backend answers the client's close. sSS: invalid before SYN+ACK.
        /*ack   */ Row{sES, sSS, sSR, sES, sFW, sCW, sCL, sTW, sCL},
        // sLA -> sCL: the backend's ACK of the client's FIN, the last segment. sSR: the client's
        // ACK completes the handshake, not the backend's.
        /*rst   */ Row{sNO, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL},
        /*none  */ kUnchanged,
    }},
    // From the client, replies not seen (dsr, tunnel).
    {{
        /*syn   */ Row{sSS, sSS, sSR, sES, sSS, sSS, sSS, sSS, sSS},
        // Any closing state reopens: the backend's RST or FIN that ended it never reached us.
        /*synack*/ kUnchanged,
        /*fin   */ Row{sFW, sFW, sFW, sFW, sFW, sLA, sLA, sTW, sCL},
        // sSS: the FIN carries the handshake's ACK (the SYN+ACK went past us).
        /*ack   */ Row{sES, sES, sES, sES, sFW, sCW, sLA, sTW, sCL},
        // sSS -> sES: the client's ACK of a SYN+ACK we cannot see.
        /*rst   */ Row{sNO, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL},
        /*none  */ kUnchanged,
    }},
}};

}  // namespace

const char* to_string(TcpState s) {
  switch (s) {
    case TcpState::kNone: return "NONE";
    case TcpState::kSynSent: return "SYN_SENT";
    case TcpState::kSynRecv: return "SYN_RECV";
    case TcpState::kEstablished: return "ESTABLISHED";
    case TcpState::kFinWait: return "FIN_WAIT";
    case TcpState::kCloseWait: return "CLOSE_WAIT";
    case TcpState::kLastAck: return "LAST_ACK";
    case TcpState::kTimeWait: return "TIME_WAIT";
    case TcpState::kClose: return "CLOSE";
  }
  return "unknown";
}

const char* to_string(TcpEvent e) {
  switch (e) {
    case TcpEvent::kSyn: return "SYN";
    case TcpEvent::kSynAck: return "SYN+ACK";
    case TcpEvent::kFin: return "FIN";
    case TcpEvent::kAck: return "ACK";
    case TcpEvent::kRst: return "RST";
    case TcpEvent::kNone: return "none";
  }
  return "unknown";
}

TcpState tcp_next_state(TcpState s, FlowDir dir, TcpEvent ev, TcpView view) {
  const std::size_t path =
      dir == FlowDir::kReply ? 1 : (view == TcpView::kClientOnly ? 2 : 0);
  const auto state = static_cast<std::size_t>(s);
  const auto event = static_cast<std::size_t>(ev);
  if (state >= kTcpStateCount || event >= kTcpEventCount) return s;  // corrupt input: no change
  return kNext[path][event][state];
}

std::uint32_t ConntrackTimeouts::tcp_ms(TcpState s) const {
  switch (s) {
    case TcpState::kNone: return none_ms;
    case TcpState::kSynSent: return syn_sent_ms;
    case TcpState::kSynRecv: return syn_recv_ms;
    case TcpState::kEstablished: return established_ms;
    case TcpState::kFinWait: return fin_wait_ms;
    case TcpState::kCloseWait: return close_wait_ms;
    case TcpState::kLastAck: return last_ack_ms;
    case TcpState::kTimeWait: return time_wait_ms;
    case TcpState::kClose: return close_ms;
  }
  return none_ms;
}

std::uint32_t ConntrackTimeouts::ms(std::uint8_t proto, TcpState s) const {
  return proto == net::ipv4::kProtoTcp ? tcp_ms(s) : udp_ms;
}

NewFlowAction tcp_new_flow_action(TcpEvent ev, MidFlowPolicy policy) {
  switch (ev) {
    case TcpEvent::kSyn: return NewFlowAction::kCreate;
    case TcpEvent::kRst: return NewFlowAction::kForwardStateless;
    case TcpEvent::kSynAck:
    case TcpEvent::kNone: return NewFlowAction::kDrop;
    case TcpEvent::kFin:
    case TcpEvent::kAck: break;
  }
  switch (policy) {
    case MidFlowPolicy::kAdopt: return NewFlowAction::kCreate;
    case MidFlowPolicy::kStateless: return NewFlowAction::kForwardStateless;
    case MidFlowPolicy::kDrop: return NewFlowAction::kDrop;
  }
  return NewFlowAction::kDrop;
}

}  // namespace tandem::conntrack
