#include <gtest/gtest.h>

#include <initializer_list>
#include <map>
#include <tuple>

#include "dataplane/conntrack/tcp_state.hpp"

using namespace tandem::conntrack;

namespace {

constexpr FlowDir kC = FlowDir::kOriginal;  // from the client
constexpr FlowDir kB = FlowDir::kReply;     // from the backend

// Flag bytes as they appear on the wire.
constexpr std::uint8_t kSyn = kTcpSyn;
constexpr std::uint8_t kSynAck = kTcpSyn | kTcpAck;
constexpr std::uint8_t kFinAck = kTcpFin | kTcpAck;
constexpr std::uint8_t kAck = kTcpAck;
constexpr std::uint8_t kData = kTcpPsh | kTcpAck;
constexpr std::uint8_t kRst = kTcpRst;
constexpr std::uint8_t kRstAck = kTcpRst | kTcpAck;

constexpr TcpState NO = TcpState::kNone;
constexpr TcpState SS = TcpState::kSynSent;
constexpr TcpState SR = TcpState::kSynRecv;
constexpr TcpState ES = TcpState::kEstablished;
constexpr TcpState FW = TcpState::kFinWait;
constexpr TcpState CW = TcpState::kCloseWait;
constexpr TcpState LA = TcpState::kLastAck;
constexpr TcpState TW = TcpState::kTimeWait;
constexpr TcpState CL = TcpState::kClose;
constexpr TcpState kAllStates[] = {NO, SS, SR, ES, FW, CW, LA, TW, CL};

// The three ways a segment can be seen: (direction, view).
enum class Path { kClient, kBackend, kClientOnly };
constexpr Path kAllPaths[] = {Path::kClient, Path::kBackend, Path::kClientOnly};

TcpState next(Path p, TcpState s, std::uint8_t flags) {
  switch (p) {
    case Path::kClient: return tcp_next_state(s, kC, tcp_event(flags), TcpView::kBothWays);
    case Path::kBackend: return tcp_next_state(s, kB, tcp_event(flags), TcpView::kBothWays);
    case Path::kClientOnly: return tcp_next_state(s, kC, tcp_event(flags), TcpView::kClientOnly);
  }
  return s;
}

// One flag byte per event, as a sender would set them.
constexpr std::uint8_t kEventFlags[] = {kSyn, kSynAck, kFinAck, kAck, kRst, 0};

struct Step {
  FlowDir dir;
  std::uint8_t flags;
  TcpState expect;
};

// Plays a conversation from NONE and checks the state after every segment.
void play(TcpView view, std::initializer_list<Step> steps, TcpState start = NO) {
  TcpState s = start;
  int n = 0;
  for (const Step& st : steps) {
    ++n;
    const TcpState got = tcp_next_state(s, st.dir, tcp_event(st.flags), view);
    ASSERT_EQ(got, st.expect) << "segment " << n << " (" << (st.dir == kC ? "client" : "backend")
                              << " " << to_string(tcp_event(st.flags)) << ") in " << to_string(s)
                              << ": got " << to_string(got) << ", want " << to_string(st.expect);
    s = got;
  }
}

}  // namespace

TEST(TcpState, FlagsReduceToOneEventWithIpvsPriority) {
  EXPECT_EQ(tcp_event(kSyn), TcpEvent::kSyn);
  EXPECT_EQ(tcp_event(kSynAck), TcpEvent::kSynAck);
  EXPECT_EQ(tcp_event(kFinAck), TcpEvent::kFin);
  EXPECT_EQ(tcp_event(kTcpFin), TcpEvent::kFin);
  EXPECT_EQ(tcp_event(kAck), TcpEvent::kAck);
  EXPECT_EQ(tcp_event(kData), TcpEvent::kAck);
  EXPECT_EQ(tcp_event(kRst), TcpEvent::kRst);
  EXPECT_EQ(tcp_event(kRstAck), TcpEvent::kRst);
  EXPECT_EQ(tcp_event(kTcpSyn | kTcpRst), TcpEvent::kRst);  // RST beats SYN
  EXPECT_EQ(tcp_event(kTcpSyn | kTcpFin), TcpEvent::kSyn);  // SYN beats FIN
  EXPECT_EQ(tcp_event(kTcpSyn | kTcpFin | kTcpAck), TcpEvent::kSynAck);
  EXPECT_EQ(tcp_event(kTcpFin | kTcpRst), TcpEvent::kRst);
  EXPECT_EQ(tcp_event(0), TcpEvent::kNone);
  EXPECT_EQ(tcp_event(kTcpPsh), TcpEvent::kNone);
  EXPECT_EQ(tcp_event(0xc0), TcpEvent::kNone);  // ECE/CWR alone
}

// The complete table: every transition that changes the state is listed here; every other
// (path, state, event) must leave the state unchanged. 3 paths x 9 states x 6 events.
TEST(TcpState, EveryTransition) {
  const std::map<std::tuple<Path, TcpState, std::uint8_t>, TcpState> changes = {
      // Client, replies seen (nat, fullnat).
      {{Path::kClient, NO, kSyn}, SS},      // new connection
      {{Path::kClient, TW, kSyn}, SS},      // port reuse after close
      {{Path::kClient, CL, kSyn}, SS},
      {{Path::kClient, NO, kFinAck}, FW},   // adopted mid-close
      {{Path::kClient, SR, kFinAck}, FW},   // FIN carrying the handshake's ACK
      {{Path::kClient, ES, kFinAck}, FW},   // client closes first
      {{Path::kClient, CW, kFinAck}, LA},   // client answers the backend's close
      {{Path::kClient, NO, kAck}, ES},      // adopted mid-flow
      {{Path::kClient, SR, kAck}, ES},      // handshake complete
      {{Path::kClient, SS, kRst}, CL},
      {{Path::kClient, SR, kRst}, CL},
      {{Path::kClient, ES, kRst}, CL},
      {{Path::kClient, FW, kRst}, CL},
      {{Path::kClient, CW, kRst}, CL},
      {{Path::kClient, LA, kRst}, CL},
      {{Path::kClient, TW, kRst}, CL},
      // Backend, replies seen.
      {{Path::kBackend, NO, kSynAck}, SR},
      {{Path::kBackend, SS, kSynAck}, SR},  // standard open
      {{Path::kBackend, NO, kFinAck}, CW},
      {{Path::kBackend, SR, kFinAck}, CW},
      {{Path::kBackend, ES, kFinAck}, CW},  // backend closes first
      {{Path::kBackend, FW, kFinAck}, TW},  // backend answers the client's close
      {{Path::kBackend, NO, kAck}, ES},
      {{Path::kBackend, LA, kAck}, CL},     // the last ACK
      {{Path::kBackend, SS, kRst}, CL},     // connection refused
      {{Path::kBackend, SR, kRst}, CL},
      {{Path::kBackend, ES, kRst}, CL},
      {{Path::kBackend, FW, kRst}, CL},
      {{Path::kBackend, CW, kRst}, CL},
      {{Path::kBackend, LA, kRst}, CL},
      {{Path::kBackend, TW, kRst}, CL},
      // Client only (dsr, tunnel).
      {{Path::kClientOnly, NO, kSyn}, SS},
      {{Path::kClientOnly, FW, kSyn}, SS},  // reopen: the end of the old one went past us
      {{Path::kClientOnly, CW, kSyn}, SS},
      {{Path::kClientOnly, LA, kSyn}, SS},
      {{Path::kClientOnly, TW, kSyn}, SS},
      {{Path::kClientOnly, CL, kSyn}, SS},
      {{Path::kClientOnly, NO, kFinAck}, FW},
      {{Path::kClientOnly, SS, kFinAck}, FW},
      {{Path::kClientOnly, SR, kFinAck}, FW},
      {{Path::kClientOnly, ES, kFinAck}, FW},
      {{Path::kClientOnly, CW, kFinAck}, LA},
      {{Path::kClientOnly, NO, kAck}, ES},
      {{Path::kClientOnly, SS, kAck}, ES},  // the ACK of a SYN+ACK we cannot see
      {{Path::kClientOnly, SR, kAck}, ES},
      {{Path::kClientOnly, SS, kRst}, CL},
      {{Path::kClientOnly, SR, kRst}, CL},
      {{Path::kClientOnly, ES, kRst}, CL},
      {{Path::kClientOnly, FW, kRst}, CL},
      {{Path::kClientOnly, CW, kRst}, CL},
      {{Path::kClientOnly, LA, kRst}, CL},
      {{Path::kClientOnly, TW, kRst}, CL},
  };
  int checked = 0, changed = 0;
  for (Path p : kAllPaths) {
    for (TcpState s : kAllStates) {
      for (std::uint8_t f : kEventFlags) {
        const auto it = changes.find({p, s, f});
        const TcpState want = it == changes.end() ? s : it->second;
        EXPECT_EQ(next(p, s, f), want) << "path " << static_cast<int>(p) << " state " << to_string(s)
                                       << " event " << to_string(tcp_event(f));
        ++checked;
        changed += it != changes.end();
      }
    }
  }
  EXPECT_EQ(checked, 3 * 9 * 6);
  EXPECT_EQ(changed, static_cast<int>(changes.size()));  // no listed change is for a missing event
}

TEST(TcpState, RetransmittedSegmentsNeverMoveTheStateTwice) {
  for (Path p : kAllPaths)
    for (TcpState s : kAllStates)
      for (std::uint8_t f : kEventFlags) {
        const TcpState once = next(p, s, f);
        EXPECT_EQ(next(p, once, f), once) << to_string(s) << " " << to_string(tcp_event(f));
      }
}

TEST(TcpState, OddInputLeavesTheStateAlone) {
  EXPECT_EQ(tcp_next_state(static_cast<TcpState>(42), kC, TcpEvent::kSyn), static_cast<TcpState>(42));
  EXPECT_EQ(tcp_next_state(ES, kC, static_cast<TcpEvent>(42)), ES);
  // A reply in the client-only view is treated as in the both-ways view.
  EXPECT_EQ(tcp_next_state(ES, kB, TcpEvent::kFin, TcpView::kClientOnly), CW);
}

TEST(TcpState, HandshakeDataAndClientClosesFirst) {
  play(TcpView::kBothWays, {
                               {kC, kSyn, SS},
                               {kB, kSynAck, SR},
                               {kC, kAck, ES},
                               {kC, kData, ES},
                               {kB, kData, ES},
                               {kC, kFinAck, FW},  // client half-closes
                               {kB, kAck, FW},
                               {kB, kData, FW},    // the backend may still send
                               {kC, kAck, FW},
                               {kB, kFinAck, TW},
                               {kC, kAck, TW},     // the client's last ACK
                           });
}

TEST(TcpState, BackendClosesFirst) {
  play(TcpView::kBothWays, {
                               {kC, kSyn, SS},
                               {kB, kSynAck, SR},
                               {kC, kData, ES},  // ACK carried by the first request
                               {kB, kData, ES},
                               {kB, kFinAck, CW},
                               {kC, kAck, CW},
                               {kC, kData, CW},  // the client may still send
                               {kB, kAck, CW},
                               {kC, kFinAck, LA},
                               {kB, kAck, CL},   // the last ACK
                           });
}

TEST(TcpState, SimultaneousCloseInEitherOrder) {
  // The FINs cross; the unit sees the client's first...
  play(TcpView::kBothWays, {{kC, kFinAck, FW}, {kB, kFinAck, TW}, {kB, kAck, TW}, {kC, kAck, TW}}, ES);
  // ...or the backend's first.
  play(TcpView::kBothWays, {{kB, kFinAck, CW}, {kC, kFinAck, LA}, {kC, kAck, LA}, {kB, kAck, CL}}, ES);
}

TEST(TcpState, ResetFromEitherSide) {
  play(TcpView::kBothWays, {{kC, kSyn, SS}, {kB, kRstAck, CL}});  // connection refused
  play(TcpView::kBothWays, {{kC, kRst, CL}}, ES);
  play(TcpView::kBothWays, {{kB, kRst, CL}}, ES);
  play(TcpView::kBothWays, {{kC, kRst, CL}}, FW);
  play(TcpView::kBothWays, {{kB, kRstAck, CL}}, LA);
  play(TcpView::kClientOnly, {{kC, kRst, CL}}, ES);
  // A RST with no connection creates nothing.
  EXPECT_EQ(tcp_next_state(NO, kC, TcpEvent::kRst), NO);
  EXPECT_EQ(tcp_next_state(NO, kB, TcpEvent::kRst), NO);
}

TEST(TcpState, SynRetransmits) {
  play(TcpView::kBothWays, {{kC, kSyn, SS}, {kC, kSyn, SS}, {kC, kSyn, SS}, {kB, kSynAck, SR},
                            {kC, kSyn, SR},  // the SYN+ACK crossed a retransmitted SYN
                            {kB, kSynAck, SR}, {kC, kAck, ES}, {kB, kSynAck, ES}});
  // Before any answer, the client's stray ACK or FIN does not complete anything.
  play(TcpView::kBothWays, {{kC, kSyn, SS}, {kC, kAck, SS}, {kC, kFinAck, SS}, {kB, kAck, SS}});
}

TEST(TcpState, ClientReusesItsPortAfterClose) {
  play(TcpView::kBothWays, {{kC, kSyn, SS}, {kB, kSynAck, SR}, {kC, kAck, ES}}, TW);
  play(TcpView::kBothWays, {{kC, kSyn, SS}}, CL);
  EXPECT_TRUE(tcp_reopened(TW, SS));
  EXPECT_TRUE(tcp_reopened(CL, SS));
  EXPECT_TRUE(tcp_reopened(FW, SS));
  EXPECT_FALSE(tcp_reopened(NO, SS));  // a new connection, not a reuse
  EXPECT_FALSE(tcp_reopened(SS, SS));  // a retransmitted SYN
  EXPECT_FALSE(tcp_reopened(ES, ES));
  // A SYN on a connection still open is left to the backend (challenge ACK or RST).
  play(TcpView::kBothWays, {{kC, kSyn, ES}, {kB, kRst, CL}, {kC, kSyn, SS}}, ES);
}

TEST(TcpState, ClientOnlyViewForDsrAndTunnel) {
  EXPECT_EQ(tcp_view(ForwardMode::kNat), TcpView::kBothWays);
  EXPECT_EQ(tcp_view(ForwardMode::kFullNat), TcpView::kBothWays);
  EXPECT_EQ(tcp_view(ForwardMode::kDsr), TcpView::kClientOnly);
  EXPECT_EQ(tcp_view(ForwardMode::kTunnel), TcpView::kClientOnly);
  play(TcpView::kClientOnly, {
                                 {kC, kSyn, SS},
                                 {kC, kSyn, SS},
                                 {kC, kAck, ES},  // the SYN+ACK went from the backend directly
                                 {kC, kData, ES},
                                 {kC, kFinAck, FW},
                                 {kC, kAck, FW},
                                 {kC, kSyn, SS},  // the port is reused
                             });
  // A short request: the handshake's ACK rides on the client's FIN.
  play(TcpView::kClientOnly, {{kC, kSyn, SS}, {kC, kFinAck, FW}});
}

TEST(TcpState, MidFlowSegmentsStartAConnection) {
  // The state an adopted connection starts in is the transition out of NONE.
  play(TcpView::kBothWays, {{kC, kData, ES}, {kB, kData, ES}, {kC, kFinAck, FW}});
  play(TcpView::kBothWays, {{kC, kFinAck, FW}, {kB, kFinAck, TW}});
  play(TcpView::kClientOnly, {{kC, kAck, ES}});
  // Packets that do not describe a connection create nothing.
  EXPECT_EQ(tcp_next_state(NO, kC, TcpEvent::kSynAck), NO);
  EXPECT_EQ(tcp_next_state(NO, kC, TcpEvent::kNone), NO);
  EXPECT_EQ(tcp_next_state(NO, kB, TcpEvent::kSyn), NO);

  for (MidFlowPolicy p : {MidFlowPolicy::kAdopt, MidFlowPolicy::kStateless, MidFlowPolicy::kDrop}) {
    EXPECT_EQ(tcp_new_flow_action(TcpEvent::kSyn, p), NewFlowAction::kCreate);
    EXPECT_EQ(tcp_new_flow_action(TcpEvent::kRst, p), NewFlowAction::kForwardStateless);
    EXPECT_EQ(tcp_new_flow_action(TcpEvent::kSynAck, p), NewFlowAction::kDrop);
    EXPECT_EQ(tcp_new_flow_action(TcpEvent::kNone, p), NewFlowAction::kDrop);
  }
  for (TcpEvent e : {TcpEvent::kAck, TcpEvent::kFin}) {
    EXPECT_EQ(tcp_new_flow_action(e, MidFlowPolicy::kAdopt), NewFlowAction::kCreate);
    EXPECT_EQ(tcp_new_flow_action(e, MidFlowPolicy::kStateless), NewFlowAction::kForwardStateless);
    EXPECT_EQ(tcp_new_flow_action(e, MidFlowPolicy::kDrop), NewFlowAction::kDrop);
  }
  // Whatever creates an entry leaves NONE.
  for (std::uint8_t f : kEventFlags) {
    if (tcp_new_flow_action(tcp_event(f), MidFlowPolicy::kAdopt) == NewFlowAction::kCreate) {
      EXPECT_NE(tcp_next_state(NO, kC, tcp_event(f)), NO) << to_string(tcp_event(f));
    }
  }
}

TEST(TcpState, DefaultTimeoutsAreIpvsLike) {
  const ConntrackTimeouts t;
  EXPECT_EQ(t.tcp_ms(NO), 2'000u);
  EXPECT_EQ(t.tcp_ms(SS), 60'000u);
  EXPECT_EQ(t.tcp_ms(SR), 60'000u);
  EXPECT_EQ(t.tcp_ms(ES), 900'000u);
  EXPECT_EQ(t.tcp_ms(FW), 120'000u);
  EXPECT_EQ(t.tcp_ms(CW), 60'000u);
  EXPECT_EQ(t.tcp_ms(LA), 30'000u);
  EXPECT_EQ(t.tcp_ms(TW), 120'000u);
  EXPECT_EQ(t.tcp_ms(CL), 10'000u);
  EXPECT_EQ(t.ms(17, ES), 300'000u);  // UDP ignores the TCP state
  EXPECT_EQ(t.ms(17, NO), 300'000u);
  EXPECT_EQ(t.ms(1, NO), 300'000u);   // other protocols use the UDP timeout
  EXPECT_EQ(t.ms(6, ES), 900'000u);
}

TEST(TcpState, EachTimeoutIsItsOwnSetting) {
  ConntrackTimeouts t;
  t.none_ms = 1;
  t.syn_sent_ms = 2;
  t.syn_recv_ms = 3;
  t.established_ms = 4;
  t.fin_wait_ms = 5;
  t.close_wait_ms = 6;
  t.last_ack_ms = 7;
  t.time_wait_ms = 8;
  t.close_ms = 9;
  t.udp_ms = 10;
  std::uint32_t want = 1;
  for (TcpState s : kAllStates) EXPECT_EQ(t.ms(6, s), want++) << to_string(s);
  EXPECT_EQ(t.ms(17, SS), 10u);
  EXPECT_NE(t, ConntrackTimeouts{});
}

TEST(TcpState, Names) {
  EXPECT_STREQ(to_string(ES), "ESTABLISHED");
  EXPECT_STREQ(to_string(TW), "TIME_WAIT");
  EXPECT_STREQ(to_string(TcpEvent::kSynAck), "SYN+ACK");
  EXPECT_STREQ(to_string(ForwardMode::kFullNat), "fullnat");
}
