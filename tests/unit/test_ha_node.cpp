// One unit's side of the HA protocol (controlplane/ha/node.*): two Nodes exchanging the bytes of
// their adverts over the sync path and the data path in a millisecond-step simulation. Each
// path can be cut per direction and delayed, a unit can be killed (it stops sending) and
// restarted with a new epoch, and operators ask for failovers, maintenance and tracking. After
// every step the simulation checks what must always hold: next_deadline_ms() is in the future
// and never after next_advert_ms(), and owned_mask() has the bits of the groups the unit is
// active for.
#include "controlplane/ha/node.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace {

using tandem::ha::Advert;
using tandem::ha::AdvertError;
using tandem::ha::Cause;
using tandem::ha::Decoder;
using tandem::ha::GroupState;
using tandem::ha::Node;
using tandem::ha::NodeConfig;
using tandem::ha::NodeEvent;
using tandem::ha::Path;
using tandem::ha::PathAlarm;
using tandem::ha::Role;
using tandem::ha::Transition;
using Bytes = std::vector<std::uint8_t>;

constexpr std::uint32_t kInterval = 10;
constexpr std::uint64_t kDead = 30;  // 3 intervals
constexpr std::uint64_t kHoldDown = 1000;
const Bytes kKey(32, 0x3c);
const Bytes kOtherKey(32, 0xc3);
constexpr Path kPaths[] = {Path::kSync, Path::kData};

NodeConfig unit(std::uint8_t id, std::vector<NodeConfig::Group> groups = {{1, 100}}, bool preempt = false,
                const Bytes& key = kKey) {
  NodeConfig c;
  c.unit_id = id;
  c.preempt = preempt;
  c.advert_interval_ms = kInterval;
  c.dead_intervals = 3;
  c.hold_down_ms = kHoldDown;
  c.groups = std::move(groups);
  c.key = key;
  return c;
}

std::size_t idx(Path p) { return static_cast<std::size_t>(p); }

std::uint64_t bit(unsigned g) { return std::uint64_t{1} << g; }

// Two units, indices 0 and 1 (their unit ids are in their configs). Adverts are delivered
// `delay` ms after they were built (at least 1: the next step), in the order they were sent.
// Within one millisecond a unit first receives what arrived, then runs its timers, then
// advertises if due, as controlplane/ha_service does.
class Sim {
 public:
  Sim(NodeConfig a, NodeConfig b) : cfg_{std::move(a), std::move(b)} {}
  Sim(const Sim&) = delete;
  Sim& operator=(const Sim&) = delete;
  ~Sim() { EXPECT_EQ(violation_, "") << "an invariant failed (first failure shown)"; }

  // Starts unit i now; a restart is a new epoch.
  void start(int i) {
    node_[i] = std::make_unique<Node>(cfg_[i], 0xe0000000ull + ++starts_, now_);
    EXPECT_GE(node_[i]->next_deadline_ms(now_), now_);
    EXPECT_LE(node_[i]->next_deadline_ms(now_), node_[i]->next_advert_ms());
    wake_[i] = now_;
  }
  void kill(int i) { node_[i].reset(); }
  // Cuts (or restores) `p` from unit `from` to the other.
  void cut(int from, Path p, bool on = true) { cut_[from][idx(p)] = on; }
  void cut(Path p, bool on = true) { cut(0, p, on), cut(1, p, on); }
  void cut_all(bool on = true) { cut(Path::kSync, on), cut(Path::kData, on); }
  void delay(Path p, std::uint64_t ms) { delay_[idx(p)] = std::max<std::uint64_t>(ms, 1); }
  // Call each unit only when something arrived or at its next_deadline_ms(), as tandemd does.
  void only_at_deadlines() { event_driven_ = true; }

  void step() {
    bool got[2] = {false, false};
    std::vector<InFlight> later;
    for (auto& m : flight_) {
      if (m.at > now_) {
        later.push_back(std::move(m));
        continue;
      }
      if (!node_[m.to]) continue;
      AdvertError e = AdvertError::kCount;
      ++delivered_[m.to][idx(m.path)];
      if (!node_[m.to]->receive(m.path, m.bytes, now_, &e)) refusals_[m.to].push_back(e);
      got[m.to] = true;
    }
    flight_ = std::move(later);
    for (int i = 0; i < 2; ++i) {
      if (!node_[i]) continue;
      Node& n = *node_[i];
      if (!event_driven_ || got[i] || now_ >= wake_[i]) {
        n.tick(now_);
        if (now_ >= n.next_advert_ms()) send(i);
      }
      collect(i, true);
      wake_[i] = n.next_deadline_ms(now_);
    }
    for (std::size_t g = 0; g < 64; ++g) {
      int owners = 0;
      for (int i = 0; i < 2; ++i) owners += node_[i] && (node_[i]->owned_mask() >> g & 1);
      if (owners == 2) ++dual_active_ms_;
    }
    ++now_;
  }
  void run_for(std::uint64_t ms) { run_until(now_ + ms); }
  void run_until(std::uint64_t end) {
    while (now_ < end) step();
  }
  template <typename Pred>
  bool run_until(Pred&& pred, std::uint64_t limit) {
    while (!pred()) {
      if (now_ >= limit) return false;
      step();
    }
    return true;
  }

  // An operator action on unit i now (set_tracking, failover, ...); its events are logged.
  template <typename Fn>
  decltype(auto) act(int i, Fn&& fn) {
    struct Collect {
      Sim& s;
      int i;
      ~Collect() { s.collect(i); }
    } c{*this, i};
    return fn(*node_[i], now_);
  }
  // `m` arrives at unit i on `p` now, outside the simulated network.
  bool inject(int i, Path p, const Bytes& m, AdvertError* e) {
    const bool ok = node_[i]->receive(p, m, now_, e);
    collect(i);
    return ok;
  }

  Node& node(int i) { return *node_[i]; }
  bool alive(int i) const { return node_[i] != nullptr; }
  Role role(int i, std::size_t g = 0) const { return node_[i]->election(g).role(); }
  bool active(int i, std::size_t g = 0) const { return node_[i] && role(i, g) == Role::kActive; }
  int actives(std::size_t g = 0) const { return active(0, g) + active(1, g); }
  std::uint64_t now() const { return now_; }
  std::uint64_t dual_active_ms() const { return dual_active_ms_; }
  std::uint64_t delivered(int to, Path p) const { return delivered_[to][idx(p)]; }
  const std::vector<AdvertError>& refusals(int to) const { return refusals_[to]; }
  const Bytes& last_sent(int i) const { return last_sent_[i]; }

  // Unit i's role changes for `group`, and its alarms, since the start or the last clear().
  std::vector<Transition> transitions(int i, std::uint8_t group = 1) const {
    std::vector<Transition> out;
    for (const auto& e : events_[i])
      if (e.kind == NodeEvent::Kind::kTransition && e.group == group) out.push_back(e.transition);
    return out;
  }
  std::size_t transition_count(int i) const {
    return static_cast<std::size_t>(std::count_if(events_[i].begin(), events_[i].end(), [](const NodeEvent& e) {
      return e.kind == NodeEvent::Kind::kTransition;
    }));
  }
  std::vector<PathAlarm> alarms(int i) const {
    std::vector<PathAlarm> out;
    for (const auto& e : events_[i])
      if (e.kind == NodeEvent::Kind::kAlarm) out.push_back(e.alarm);
    return out;
  }
  void clear() { events_[0].clear(), events_[1].clear(); }
  std::string history() const {
    std::string h;
    for (int i = 0; i < 2; ++i)
      for (const auto& e : events_[i]) {
        h += "\n  [" + std::to_string(i) + "] ";
        if (e.kind == NodeEvent::Kind::kTransition)
          h += "group " + std::to_string(e.group) + " at " + std::to_string(e.transition.at_ms) + ": " +
               to_string(e.transition.from) + " -> " + to_string(e.transition.to) + " (" +
               to_string(e.transition.cause) + ")";
        else
          h += std::string("alarm ") + to_string(e.alarm.path) + (e.alarm.raised ? " raised" : " cleared") + " at " +
               std::to_string(e.alarm.at_ms);
      }
    return h;
  }

 private:
  struct InFlight {
    std::uint64_t at;
    int to;
    Path path;
    Bytes bytes;
  };

  void send(int i) {
    Bytes m;
    const std::uint64_t due = node_[i]->next_advert_ms();
    node_[i]->build_advert(now_, m);
    if (node_[i]->next_advert_ms() <= now_ || node_[i]->next_advert_ms() > std::max(due, now_) + kInterval)
      fail("unit " + std::to_string(i) + " at " + std::to_string(now_) + ": next advert at " +
           std::to_string(node_[i]->next_advert_ms()));
    last_sent_[i] = m;
    for (const Path p : kPaths)
      if (!cut_[i][idx(p)]) flight_.push_back({now_ + delay_[idx(p)], 1 - i, p, m});
  }

  // `stepped`: the unit has run its timers and sent what was due at now_, so its next deadline
  // is in the future; between steps (an operator action) it may be now, never earlier.
  void collect(int i, bool stepped = false) {
    if (!node_[i]) return;
    const Node& n = *node_[i];
    for (auto& e : node_[i]->take_events()) events_[i].push_back(e);
    const std::uint64_t deadline = n.next_deadline_ms(now_);
    if (deadline < now_ || (stepped && deadline == now_))
      fail("unit " + std::to_string(i) + " at " + std::to_string(now_) + ": next_deadline_ms " +
           std::to_string(deadline) + (stepped ? " is not in the future" : " is in the past"));
    if (deadline > n.next_advert_ms())
      fail("unit " + std::to_string(i) + " at " + std::to_string(now_) + ": next_deadline_ms " +
           std::to_string(deadline) + " after next_advert_ms " + std::to_string(n.next_advert_ms()));
    std::uint64_t mask = 0;
    for (std::size_t g = 0; g < n.group_count(); ++g)
      if (n.election(g).role() == Role::kActive) mask |= bit(n.group_id(g));
    if (mask != n.owned_mask())
      fail("unit " + std::to_string(i) + " at " + std::to_string(now_) + ": owned_mask " +
           std::to_string(n.owned_mask()) + ", roles say " + std::to_string(mask));
  }

  void fail(const std::string& what) {
    if (violation_.empty()) violation_ = what;
  }

  NodeConfig cfg_[2];
  std::unique_ptr<Node> node_[2];
  std::uint64_t starts_ = 0;
  std::uint64_t now_ = 0;
  std::uint64_t wake_[2] = {0, 0};
  bool event_driven_ = false;
  bool cut_[2][2] = {};
  std::uint64_t delay_[2] = {1, 1};
  std::vector<InFlight> flight_;
  std::vector<NodeEvent> events_[2];
  std::vector<AdvertError> refusals_[2];
  std::uint64_t delivered_[2][2] = {};
  Bytes last_sent_[2];
  std::uint64_t dual_active_ms_ = 0;
  std::string violation_;
};

// --- start ----------------------------------------------------------------------------------

TEST(HaNode, SimultaneousStartEndsWithOneActiveAtTheFirstAdvert) {
  Sim s(unit(1), unit(2));
  s.start(0);
  s.start(1);
  s.run_for(2 * kInterval);
  EXPECT_EQ(s.role(1), Role::kActive) << "equal priorities: the higher unit id wins" << s.history();
  EXPECT_EQ(s.role(0), Role::kStandby);
  const auto won = s.transitions(1);
  ASSERT_EQ(won.size(), 1u) << s.history();
  EXPECT_EQ(won[0].from, Role::kInit);
  EXPECT_EQ(won[0].cause, Cause::kWonElection);
  EXPECT_EQ(won[0].at_ms, 1u) << "the first advert arrives 1 ms after both started";
  const auto lost = s.transitions(0);
  ASSERT_EQ(lost.size(), 1u);
  EXPECT_EQ(lost[0].cause, Cause::kLostElection);
  EXPECT_EQ(lost[0].at_ms, 1u);
  EXPECT_EQ(s.node(0).owned_mask(), 0u);
  EXPECT_EQ(s.node(1).owned_mask(), bit(1));
  EXPECT_EQ(s.node(0).peer_unit_id(), 2);
  EXPECT_EQ(s.node(1).peer_unit_id(), 1);
  s.run_for(5000);
  EXPECT_EQ(s.transition_count(0) + s.transition_count(1), 2u) << "nothing changes afterwards" << s.history();
  EXPECT_TRUE(s.alarms(0).empty() && s.alarms(1).empty()) << s.history();
  EXPECT_EQ(s.dual_active_ms(), 0u);
  // Both paths carried every advert, and each was accepted.
  for (int i = 0; i < 2; ++i)
    for (const Path p : kPaths) {
      EXPECT_GT(s.delivered(i, p), 450u);
      EXPECT_EQ(s.node(i).accepted(p), s.delivered(i, p));
    }
}

TEST(HaNode, SimultaneousStartPriorityBeforeUnitId) {
  Sim s(unit(1, {{1, 200}}), unit(2, {{1, 100}}));
  s.start(1);
  s.start(0);
  s.run_for(kDead);
  EXPECT_TRUE(s.active(0)) << s.history();
  EXPECT_EQ(s.role(1), Role::kStandby);
}

TEST(HaNode, TheUnitStartedFirstStaysActiveWhicheverItIs) {
  for (const int first : {0, 1}) {
    SCOPED_TRACE("first " + std::to_string(first));
    const int second = 1 - first;
    Sim s(unit(1), unit(2));
    s.start(first);
    s.run_for(100);
    ASSERT_TRUE(s.active(first));
    const auto alone = s.transitions(first);
    ASSERT_EQ(alone.size(), 1u);
    EXPECT_EQ(alone[0].cause, Cause::kNoPeerAtStart);
    EXPECT_EQ(alone[0].at_ms, kDead) << "it listened for one dead interval";
    s.start(second);
    const std::uint64_t started = s.now();
    s.run_for(3000);
    EXPECT_TRUE(s.active(first)) << s.history();
    EXPECT_EQ(s.role(second), Role::kStandby);
    const auto joined = s.transitions(second);
    ASSERT_EQ(joined.size(), 1u) << s.history();
    EXPECT_EQ(joined[0].cause, Cause::kPeerActive);
    EXPECT_LE(joined[0].at_ms - started, kInterval + 1);
    EXPECT_EQ(s.transitions(first).size(), 1u) << s.history();
    EXPECT_EQ(s.dual_active_ms(), 0u);
    EXPECT_TRUE(s.alarms(0).empty() && s.alarms(1).empty()) << s.history();
  }
}

// --- failures -------------------------------------------------------------------------------

TEST(HaNode, KillingTheActiveHandsTheGroupToTheStandbyWithinTheDeadIntervalAndOneMore) {
  for (const bool event_driven : {false, true})
    for (const std::uint64_t data_delay : {1u, 7u})
      for (const std::uint64_t kill_at : {500u, 503u, 509u}) {
        SCOPED_TRACE("event driven " + std::to_string(event_driven) + ", data delay " + std::to_string(data_delay) +
                     ", killed at " + std::to_string(kill_at));
        Sim s(unit(1), unit(2));
        if (event_driven) s.only_at_deadlines();
        s.delay(Path::kData, data_delay);
        s.start(0);
        s.start(1);
        s.run_until(kill_at);
        ASSERT_TRUE(s.active(1));
        s.clear();
        s.kill(1);
        s.run_for(kDead + kInterval + data_delay + 1);
        ASSERT_TRUE(s.active(0)) << s.history();
        const auto t = s.transitions(0);
        ASSERT_EQ(t.size(), 1u) << s.history();
        EXPECT_EQ(t[0].from, Role::kStandby);
        EXPECT_EQ(t[0].cause, Cause::kPeerDead);
        EXPECT_LE(t[0].at_ms - kill_at, kDead + kInterval) << s.history();
        EXPECT_GE(t[0].at_ms - kill_at, kDead - kInterval) << s.history();
        EXPECT_EQ(t[0].silent_ms, kDead) << "detected exactly at the dead interval";
        if (data_delay == 1) {
          EXPECT_TRUE(s.alarms(0).empty()) << "a dead peer is a failover, not a path alarm" << s.history();
        }
        // With a slower data path the sync path falls silent first (an alarm) until the peer is
        // dead: then it is a failover and no alarm stays raised.
        EXPECT_FALSE(s.node(0).election(0).alarm(Path::kSync) || s.node(0).election(0).alarm(Path::kData));
        EXPECT_EQ(s.node(0).owned_mask(), bit(1));
      }
}

TEST(HaNode, KillingTheStandbyChangesNothingAndItReturnsAsStandby) {
  Sim s(unit(1), unit(2));
  s.start(0);
  s.start(1);
  s.run_for(500);
  s.clear();
  s.kill(0);
  s.run_for(2000);
  EXPECT_TRUE(s.active(1));
  EXPECT_EQ(s.transition_count(1), 0u) << s.history();
  EXPECT_TRUE(s.alarms(1).empty()) << s.history();
  s.start(0);
  s.run_for(2000);
  EXPECT_TRUE(s.active(1));
  EXPECT_EQ(s.role(0), Role::kStandby);
  ASSERT_EQ(s.transitions(0).size(), 1u);
  EXPECT_EQ(s.transitions(0)[0].cause, Cause::kPeerActive);
  EXPECT_EQ(s.transition_count(1), 0u) << "the restarted peer's new epoch is accepted" << s.history();
}

TEST(HaNode, CuttingOnePathRaisesAnAlarmOnBothUnitsAndChangesNoRole) {
  for (const Path p : kPaths) {
    SCOPED_TRACE(to_string(p));
    Sim s(unit(1), unit(2));
    s.start(0);
    s.start(1);
    s.run_for(500);
    s.clear();
    const std::uint64_t cut_at = s.now();
    s.cut(p);
    s.run_for(3000);
    for (int i = 0; i < 2; ++i) {
      const auto a = s.alarms(i);
      ASSERT_EQ(a.size(), 1u) << i << s.history();
      EXPECT_EQ(a[0].path, p);
      EXPECT_TRUE(a[0].raised);
      EXPECT_GE(a[0].at_ms, cut_at + kDead - kInterval);
      EXPECT_LE(a[0].at_ms, cut_at + kDead + 1);
      EXPECT_TRUE(s.node(i).election(0).alarm(p));
      EXPECT_EQ(s.transition_count(i), 0u) << s.history();
    }
    EXPECT_TRUE(s.active(1));
    EXPECT_EQ(s.role(0), Role::kStandby);
    EXPECT_EQ(s.dual_active_ms(), 0u);
    s.cut(p, false);
    s.run_for(2 * kInterval);
    for (int i = 0; i < 2; ++i) {
      const auto a = s.alarms(i);
      ASSERT_EQ(a.size(), 2u) << i << s.history();
      EXPECT_EQ(a[1].path, p);
      EXPECT_FALSE(a[1].raised);
      EXPECT_FALSE(s.node(i).election(0).alarm(p));
    }
  }
}

TEST(HaNode, OnePathCutInOneDirectionAlarmsOnlyTheUnitThatNoLongerHears) {
  Sim s(unit(1), unit(2));
  s.start(0);
  s.start(1);
  s.run_for(500);
  s.clear();
  s.cut(1, Path::kSync);  // unit index 1's sync adverts are lost
  s.run_for(1000);
  ASSERT_EQ(s.alarms(0).size(), 1u) << s.history();
  EXPECT_EQ(s.alarms(0)[0].path, Path::kSync);
  EXPECT_TRUE(s.alarms(1).empty()) << s.history();
  EXPECT_EQ(s.transition_count(0) + s.transition_count(1), 0u);
}

TEST(HaNode, BothPathsCutMakesTwoActivesAndHealingLeavesOneWithinTwoIntervals) {
  // Equal priorities (the higher unit id is kept), then the lower id with the higher priority.
  for (const std::uint8_t prio0 : {100, 200}) {
    SCOPED_TRACE("priority of unit 1: " + std::to_string(prio0));
    Sim s(unit(1, {{1, prio0}}), unit(2, {{1, 100}}));
    s.start(0);
    s.start(1);
    s.run_for(500);
    const int winner = prio0 > 100 ? 0 : 1, loser = 1 - winner;
    ASSERT_TRUE(s.active(winner));
    s.clear();
    s.cut_all();
    s.run_for(200);
    EXPECT_EQ(s.actives(), 2) << "each sees the other dead" << s.history();
    ASSERT_EQ(s.transitions(loser).size(), 1u);
    EXPECT_EQ(s.transitions(loser)[0].cause, Cause::kPeerDead);
    s.clear();
    const std::uint64_t healed = s.now();
    s.cut_all(false);
    ASSERT_TRUE(s.run_until([&] { return s.actives() == 1; }, healed + 2 * kInterval)) << s.history();
    EXPECT_TRUE(s.active(winner));
    const auto t = s.transitions(loser);
    ASSERT_EQ(t.size(), 1u) << s.history();
    EXPECT_EQ(t[0].to, Role::kStandby);
    EXPECT_EQ(t[0].cause, Cause::kDualActive);
    EXPECT_LE(t[0].at_ms - healed, 2 * kInterval);
    s.run_for(3000);
    EXPECT_EQ(s.actives(), 1);
    EXPECT_EQ(s.transition_count(0) + s.transition_count(1), 1u) << "no flapping" << s.history();
  }
}

// --- authentication and replay ----------------------------------------------------------------

TEST(HaNode, AWrongKeyIsRefusedEveryTimeAndNeverApplied) {
  Sim s(unit(1), unit(2, {{1, 100}}, false, kOtherKey));
  s.start(0);
  s.start(1);
  s.run_for(1000);
  for (int i = 0; i < 2; ++i) {
    SCOPED_TRACE(i);
    const std::uint64_t delivered = s.delivered(i, Path::kSync) + s.delivered(i, Path::kData);
    EXPECT_GT(delivered, 150u);
    ASSERT_EQ(s.refusals(i).size(), delivered) << "every advert refused";
    EXPECT_TRUE(std::all_of(s.refusals(i).begin(), s.refusals(i).end(),
                            [](AdvertError e) { return e == AdvertError::kBadAuth; }));
    EXPECT_EQ(s.node(i).decoder().errors()[static_cast<std::size_t>(AdvertError::kBadAuth)], delivered);
    EXPECT_EQ(s.node(i).decoder().accepted(), 0u);
    EXPECT_EQ(s.node(i).accepted(Path::kSync) + s.node(i).accepted(Path::kData), 0u);
    EXPECT_EQ(s.node(i).peer_unit_id(), 0) << "nothing of a refused advert is believed";
    EXPECT_FALSE(s.node(i).election(0).last_peer_advert().has_value());
    EXPECT_FALSE(s.node(i).election(0).peer_alive(s.now()));
    // Alone as far as it knows: active.
    EXPECT_TRUE(s.active(i));
    ASSERT_EQ(s.transitions(i).size(), 1u);
    EXPECT_EQ(s.transitions(i)[0].cause, Cause::kNoPeerAtStart);
    EXPECT_TRUE(s.alarms(i).empty());
  }
}

TEST(HaNode, AReplayedAdvertIsRefusedAndChangesNothing) {
  // Index 0 is unit 2: it wins at start. Its "active, priority 100" advert is recorded.
  Sim s(unit(2), unit(1));
  s.start(0);
  s.start(1);
  s.run_for(500);
  ASSERT_TRUE(s.active(0));
  const Bytes recorded = s.last_sent(0);
  EXPECT_EQ(s.act(0, [](Node& n, std::uint64_t now) { return n.failover(now); }), "");
  s.run_for(3 * kInterval);
  ASSERT_TRUE(s.active(1)) << s.history();
  s.clear();
  // Were it believed, unit 2 active with priority 100 beats unit 1: unit 1 would step down.
  for (const Path p : kPaths) {
    AdvertError e = AdvertError::kCount;
    EXPECT_FALSE(s.inject(1, p, recorded, &e));
    EXPECT_EQ(e, AdvertError::kReplayed);
  }
  EXPECT_EQ(s.node(1).decoder().errors()[static_cast<std::size_t>(AdvertError::kReplayed)], 2u);
  EXPECT_TRUE(s.active(1));
  EXPECT_EQ(s.node(1).election(0).last_peer_advert()->role, Role::kStandby) << "the last real advert stands";
  s.run_for(100);
  EXPECT_EQ(s.transition_count(1), 0u) << s.history();

  // Unit 2 restarts (a new epoch): an advert of its earlier run is still refused.
  s.kill(0);
  s.start(0);
  s.run_for(100);
  ASSERT_EQ(s.role(0), Role::kStandby);
  s.clear();
  for (const Path p : kPaths) {
    AdvertError e = AdvertError::kCount;
    EXPECT_FALSE(s.inject(1, p, recorded, &e));
    EXPECT_EQ(e, AdvertError::kReplayed);
  }
  s.run_for(100);
  EXPECT_TRUE(s.active(1));
  EXPECT_EQ(s.transition_count(1), 0u) << s.history();
  // The current advert re-sent once more is a replay too.
  const Bytes current = s.last_sent(0);
  AdvertError e = AdvertError::kCount;
  EXPECT_FALSE(s.inject(1, Path::kSync, current, &e));
  EXPECT_EQ(e, AdvertError::kReplayed);
}

// --- groups ---------------------------------------------------------------------------------

TEST(HaNode, AGroupOnlyThePeerHasIsIgnoredAndAGroupThePeerLacksIsTaken) {
  // Unit 1 (index 0) has groups 1 and 2, unit 2 has 1 and 3.
  Sim s(unit(1, {{1, 100}, {2, 100}}), unit(2, {{1, 100}, {3, 100}}));
  s.start(0);
  s.start(1);
  s.run_for(2000);
  EXPECT_EQ(s.node(0).owned_mask(), bit(2)) << s.history();
  EXPECT_EQ(s.node(1).owned_mask(), bit(1) | bit(3)) << s.history();
  // Group 2 at unit 1: the peer's adverts say nothing of it, which counts as "cannot serve".
  const auto& lacking = s.node(0).election(1).last_peer_advert();
  ASSERT_TRUE(lacking.has_value());
  EXPECT_EQ(lacking->priority, 0);
  EXPECT_EQ(lacking->role, Role::kStandby);
  ASSERT_EQ(s.transitions(0, 2).size(), 1u) << s.history();
  EXPECT_EQ(s.transitions(0, 2)[0].to, Role::kActive);
  EXPECT_EQ(s.transitions(0, 2)[0].at_ms, 1u) << "at the peer's first advert, not after a dead interval";
  // Unit 2's group 3 likewise; unit 1's group 2 reaches no election of unit 2.
  EXPECT_EQ(s.transitions(1, 3).size(), 1u);
  EXPECT_TRUE(s.transitions(1, 2).empty());
  EXPECT_EQ(s.node(1).group_count(), 2u);
  EXPECT_EQ(s.dual_active_ms(), 0u);
  EXPECT_TRUE(s.alarms(0).empty() && s.alarms(1).empty()) << s.history();
}

TEST(HaNode, ActiveActiveEachUnitOwnsItsPreferredGroup) {
  const auto a = unit(1, {{1, 200}, {2, 100}}, true);
  const auto b = unit(2, {{1, 100}, {2, 200}}, true);
  {
    SCOPED_TRACE("simultaneous start");
    Sim s(a, b);
    s.start(0);
    s.start(1);
    s.run_for(3000);
    EXPECT_EQ(s.node(0).owned_mask(), bit(1)) << s.history();
    EXPECT_EQ(s.node(1).owned_mask(), bit(2)) << s.history();
    EXPECT_EQ(s.transition_count(0) + s.transition_count(1), 4u) << s.history();
  }
  {
    SCOPED_TRACE("unit 1 first, then unit 2; unit 2 dies and returns");
    Sim s(a, b);
    s.start(0);
    s.run_for(200);
    EXPECT_EQ(s.node(0).owned_mask(), bit(1) | bit(2));
    s.start(1);
    const std::uint64_t started = s.now();
    s.run_for(kHoldDown + 3 * kInterval);
    EXPECT_EQ(s.node(0).owned_mask(), bit(1)) << s.history();
    EXPECT_EQ(s.node(1).owned_mask(), bit(2)) << s.history();
    const auto took = s.transitions(1, 2);
    ASSERT_EQ(took.size(), 2u) << s.history();
    EXPECT_EQ(took[0].cause, Cause::kPeerActive);
    EXPECT_EQ(took[1].cause, Cause::kPreempt);
    EXPECT_GE(took[1].at_ms, started + kHoldDown) << "not before the hold-down";
    EXPECT_EQ(s.transitions(0, 2).back().cause, Cause::kDualActive);
    EXPECT_LE(s.dual_active_ms(), kInterval + 1);

    s.clear();
    s.kill(1);
    s.run_for(kDead + kInterval + 1);
    EXPECT_EQ(s.node(0).owned_mask(), bit(1) | bit(2)) << s.history();
    ASSERT_EQ(s.transitions(0, 2).size(), 1u);
    EXPECT_EQ(s.transitions(0, 2)[0].cause, Cause::kPeerDead);
    s.start(1);
    s.run_for(kHoldDown + 3 * kInterval);
    EXPECT_EQ(s.node(0).owned_mask(), bit(1)) << s.history();
    EXPECT_EQ(s.node(1).owned_mask(), bit(2)) << s.history();
  }
}

TEST(HaNode, OwnedMaskUsesTheGroupIdsAsBitsUpTo63) {
  Sim s(unit(1, {{5, 100}, {63, 100}, {1, 100}}), unit(2, {{5, 50}, {63, 200}, {1, 100}}));
  s.start(0);
  s.start(1);
  s.run_for(200);
  EXPECT_EQ(s.node(0).owned_mask(), bit(5)) << s.history();
  EXPECT_EQ(s.node(1).owned_mask(), bit(63) | bit(1)) << s.history();
  s.kill(1);
  s.run_for(100);
  EXPECT_EQ(s.node(0).owned_mask(), bit(1) | bit(5) | bit(63));
}

// --- tracking -------------------------------------------------------------------------------

TEST(HaNode, ATrackingFaultOnTheActiveHandsOverToTheStandby) {
  Sim s(unit(1), unit(2));
  s.start(0);
  s.start(1);
  s.run_for(500);
  ASSERT_TRUE(s.active(1));
  s.clear();
  const std::uint64_t at = s.now();
  s.act(1, [](Node& n, std::uint64_t now) { n.set_tracking(0, true, now); });
  ASSERT_EQ(s.transitions(1).size(), 1u) << "at once" << s.history();
  EXPECT_EQ(s.transitions(1)[0].to, Role::kStandby);
  EXPECT_EQ(s.transitions(1)[0].cause, Cause::kTrackingDegraded);
  EXPECT_EQ(s.transitions(1)[0].at_ms, at);
  EXPECT_EQ(s.node(1).election(0).effective_priority(), 0);
  ASSERT_TRUE(s.run_until([&] { return s.active(0); }, at + kInterval + 1)) << s.history();
  EXPECT_EQ(s.transitions(0)[0].cause, Cause::kPeerYielded);
  // It stays with unit 1, through the hold-down and after the fault clears (preempt off).
  s.run_for(2 * kHoldDown);
  s.act(1, [](Node& n, std::uint64_t now) { n.set_tracking(0, false, now); });
  EXPECT_EQ(s.node(1).election(0).effective_priority(), 100);
  s.run_for(2 * kHoldDown);
  EXPECT_TRUE(s.active(0));
  EXPECT_EQ(s.transition_count(0) + s.transition_count(1), 2u) << s.history();
}

TEST(HaNode, ATrackingFaultWithoutAPeerKeepsTheGroup) {
  Sim s(unit(1), unit(2));
  s.start(0);
  s.run_for(100);
  ASSERT_TRUE(s.active(0));
  s.act(0, [](Node& n, std::uint64_t now) { n.set_tracking(0, true, now); });
  s.run_for(1000);
  EXPECT_TRUE(s.active(0)) << "still the best there is" << s.history();
  // The peer arrives: the faulted active hands the group over.
  s.start(1);
  s.run_for(3 * kInterval);
  EXPECT_TRUE(s.active(1)) << s.history();
  EXPECT_EQ(s.role(0), Role::kStandby);
}

TEST(HaNode, APenaltyHandsOverOnlyTheGroupsItTakesBelowThePeer) {
  Sim s(unit(1, {{1, 200}, {2, 150}}), unit(2, {{1, 100}, {2, 100}}));
  s.start(0);
  s.start(1);
  s.run_for(500);
  ASSERT_EQ(s.node(0).owned_mask(), bit(1) | bit(2));
  s.clear();
  s.act(0, [](Node& n, std::uint64_t now) { n.set_tracking(60, false, now); });
  EXPECT_EQ(s.node(0).election(0).effective_priority(), 140);
  EXPECT_EQ(s.node(0).election(1).effective_priority(), 90);
  EXPECT_TRUE(s.transitions(0, 1).empty()) << "140 is still above the peer's 100" << s.history();
  ASSERT_EQ(s.transitions(0, 2).size(), 1u) << s.history();
  EXPECT_EQ(s.transitions(0, 2)[0].cause, Cause::kTrackingDegraded);
  s.run_for(2 * kInterval);
  EXPECT_EQ(s.node(0).owned_mask(), bit(1)) << s.history();
  EXPECT_EQ(s.node(1).owned_mask(), bit(2)) << s.history();
  EXPECT_EQ(s.dual_active_ms(), 0u);

  // A penalty larger than the priority leaves 1, not 0: the unit can still serve, worse.
  s.act(0, [](Node& n, std::uint64_t now) { n.set_tracking(500, false, now); });
  EXPECT_EQ(s.node(0).election(0).effective_priority(), 1);
  EXPECT_EQ(s.node(0).election(1).effective_priority(), 1);
  s.run_for(2 * kInterval);
  EXPECT_EQ(s.node(0).owned_mask(), 0u) << s.history();
  EXPECT_EQ(s.node(1).owned_mask(), bit(1) | bit(2)) << s.history();
  // Preempt off: the groups stay where they went.
  s.act(0, [](Node& n, std::uint64_t now) { n.set_tracking(0, false, now); });
  s.run_for(3 * kHoldDown);
  EXPECT_EQ(s.node(1).owned_mask(), bit(1) | bit(2)) << s.history();
}

TEST(HaNode, WithPreemptARecoveredUnitTakesItsGroupBackAfterTheHoldDown) {
  Sim s(unit(1, {{1, 200}}, true), unit(2, {{1, 100}}, true));
  s.start(0);
  s.start(1);
  s.run_for(2000);
  ASSERT_TRUE(s.active(0));
  s.act(0, [](Node& n, std::uint64_t now) { n.set_tracking(150, false, now); });
  s.run_for(2 * kInterval);
  ASSERT_TRUE(s.active(1)) << s.history();
  s.clear();
  const std::uint64_t recovered = s.now();
  s.act(0, [](Node& n, std::uint64_t now) { n.set_tracking(0, false, now); });
  s.run_for(3 * kHoldDown);
  EXPECT_TRUE(s.active(0)) << s.history();
  ASSERT_EQ(s.transitions(0).size(), 1u) << s.history();
  EXPECT_EQ(s.transitions(0)[0].cause, Cause::kPreempt);
  EXPECT_GE(s.transitions(0)[0].at_ms, recovered);
}

// --- operator requests ------------------------------------------------------------------------

TEST(HaNode, FailoverHandsOverEveryGroupAndTheyStayWithThePeer) {
  Sim s(unit(2, {{1, 100}, {2, 100}}), unit(1, {{1, 100}, {2, 100}}));
  s.start(0);
  s.start(1);
  s.run_for(500);
  ASSERT_EQ(s.node(0).owned_mask(), bit(1) | bit(2));
  s.clear();
  const std::uint64_t asked = s.now();
  EXPECT_EQ(s.act(0, [](Node& n, std::uint64_t now) { return n.failover(now); }), "");
  for (const std::uint8_t g : {1, 2}) {
    ASSERT_EQ(s.transitions(0, g).size(), 1u) << s.history();
    EXPECT_EQ(s.transitions(0, g)[0].cause, Cause::kManualFailover);
  }
  EXPECT_EQ(s.node(0).owned_mask(), 0u);
  ASSERT_TRUE(s.run_until([&] { return s.node(1).owned_mask() == (bit(1) | bit(2)); }, asked + 2 * kInterval))
      << s.history();
  EXPECT_EQ(s.transitions(1, 1)[0].cause, Cause::kPeerYielded);
  // Now a standby, it has nothing to hand over.
  EXPECT_EQ(s.act(0, [](Node& n, std::uint64_t now) { return n.failover(now); }), "this unit is standby, not active");
  s.run_for(3 * kHoldDown);
  EXPECT_EQ(s.node(1).owned_mask(), bit(1) | bit(2)) << "preempt off: they stay" << s.history();
  EXPECT_EQ(s.dual_active_ms(), 0u);
}

TEST(HaNode, FailoverWithoutAPeerThatCanServeIsRefused) {
  Sim s(unit(1), unit(2));
  s.start(0);
  s.run_for(100);
  ASSERT_TRUE(s.active(0));
  EXPECT_EQ(s.act(0, [](Node& n, std::uint64_t now) { return n.failover(now); }), "no peer is alive to take over");
  EXPECT_TRUE(s.active(0));
  s.start(1);
  s.act(1, [](Node& n, std::uint64_t now) { n.set_maintenance(true, now); });
  s.run_for(100);
  EXPECT_EQ(s.act(0, [](Node& n, std::uint64_t now) { return n.failover(now); }),
            "the peer cannot take over (maintenance)");
  s.act(1, [](Node& n, std::uint64_t now) { n.set_tracking(0, true, now); });
  s.act(1, [](Node& n, std::uint64_t now) { n.set_maintenance(false, now); });
  s.run_for(100);
  EXPECT_EQ(s.act(0, [](Node& n, std::uint64_t now) { return n.failover(now); }),
            "the peer cannot take over (priority 0)");
  EXPECT_TRUE(s.active(0));
  EXPECT_EQ(s.transitions(0).size(), 1u) << s.history();
}

TEST(HaNode, MaintenanceHandsOverAndNeverTakesAGroup) {
  Sim s(unit(2), unit(1));
  s.start(0);
  s.start(1);
  s.run_for(500);
  ASSERT_TRUE(s.active(0));
  s.clear();
  const std::uint64_t on = s.now();
  s.act(0, [](Node& n, std::uint64_t now) { n.set_maintenance(true, now); });
  EXPECT_EQ(s.role(0), Role::kMaintenance);
  ASSERT_EQ(s.transitions(0).size(), 1u);
  EXPECT_EQ(s.transitions(0)[0].cause, Cause::kMaintenanceOn);
  EXPECT_EQ(s.node(0).owned_mask(), 0u);
  ASSERT_TRUE(s.run_until([&] { return s.active(1); }, on + 2 * kInterval)) << s.history();
  EXPECT_EQ(s.transitions(1)[0].cause, Cause::kPeerYielded);
  s.run_for(3 * kHoldDown);
  EXPECT_EQ(s.role(0), Role::kMaintenance);
  // The active dies: a unit in maintenance still does not take the group.
  s.kill(1);
  s.run_for(1000);
  EXPECT_EQ(s.role(0), Role::kMaintenance) << s.history();
  s.start(1);
  s.run_for(100);
  ASSERT_TRUE(s.active(1)) << "it found no active peer" << s.history();
  s.clear();
  s.act(0, [](Node& n, std::uint64_t now) { n.set_maintenance(false, now); });
  ASSERT_EQ(s.transitions(0).size(), 1u);
  EXPECT_EQ(s.transitions(0)[0].to, Role::kStandby);
  EXPECT_EQ(s.transitions(0)[0].cause, Cause::kMaintenanceOff);
  s.run_for(3 * kHoldDown);
  EXPECT_TRUE(s.active(1)) << "preempt off: the group stays" << s.history();
  EXPECT_EQ(s.role(0), Role::kStandby);
  EXPECT_EQ(s.transition_count(1), 0u) << s.history();
}

TEST(HaNode, MaintenanceOffAloneTakesTheGroup) {
  Sim s(unit(1), unit(2));
  s.start(0);
  s.act(0, [](Node& n, std::uint64_t now) { n.set_maintenance(true, now); });
  s.run_for(500);
  EXPECT_EQ(s.role(0), Role::kMaintenance);
  s.act(0, [](Node& n, std::uint64_t now) { n.set_maintenance(false, now); });
  s.run_for(2 * kInterval);
  EXPECT_TRUE(s.active(0)) << s.history();
}

// --- adverts and schedule -----------------------------------------------------------------------

TEST(HaNode, TheAdvertCarriesEveryGroupWithItsRoleAndAdvertisedPriority) {
  Node n(unit(3, {{4, 180}, {9, 20}}), 0x0102030405060708ull, 1000);
  Decoder peer(1, kKey);
  Bytes m;
  n.build_advert(1000, m);
  auto a = peer.decode(Path::kSync, m);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->unit_id, 3);
  EXPECT_TRUE(a->ready);
  EXPECT_EQ(a->epoch, 0x0102030405060708ull);
  EXPECT_EQ(a->sequence, 1u);
  EXPECT_EQ(a->groups, (std::vector<GroupState>{{4, 180, Role::kInit}, {9, 20, Role::kInit}}));
  n.tick(1000 + kDead);
  n.set_maintenance(true, 1000 + kDead);
  n.set_ready(false, 1000 + kDead);
  n.build_advert(1000 + kDead, m);
  a = peer.decode(Path::kData, m);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->sequence, 2u) << "one more per advert";
  EXPECT_EQ(n.sequence(), 2u);
  EXPECT_FALSE(a->ready);
  EXPECT_EQ(a->groups, (std::vector<GroupState>{{4, 0, Role::kMaintenance}, {9, 0, Role::kMaintenance}}));
}

TEST(HaNode, NextDeadlineIsNeverInThePastNorAfterTheNextAdvert) {
  Node n(unit(1), 1, 1000);
  EXPECT_EQ(n.next_advert_ms(), 1000u) << "the first advert is due at once";
  EXPECT_EQ(n.next_deadline_ms(1000), 1000u);
  Bytes m;
  for (std::uint64_t t = 1000; t < 1200; ++t) {
    n.tick(t);
    if (t >= n.next_advert_ms()) n.build_advert(t, m);
    const std::uint64_t d = n.next_deadline_ms(t);
    ASSERT_GT(d, t);
    ASSERT_LE(d, n.next_advert_ms());
  }
  // Before the dead interval (1030) and the adverts' grid, the start-up wait is a deadline.
  Node fresh(unit(1), 2, 0);
  fresh.build_advert(0, m);
  EXPECT_EQ(fresh.next_deadline_ms(0), kInterval);
  EXPECT_EQ(fresh.election(0).next_deadline_ms(0), kDead);
}

TEST(HaNode, AdvertScheduleStaysOnTheGridWhenCalledLateWithinAnInterval) {
  Node n(unit(1), 1, 1000);
  Bytes m;
  n.build_advert(1000, m);
  EXPECT_EQ(n.next_advert_ms(), 1010u);
  n.build_advert(1013, m);  // 3 ms late: the next one is not pushed back
  EXPECT_EQ(n.next_advert_ms(), 1020u);
  n.build_advert(1020, m);
  EXPECT_EQ(n.next_advert_ms(), 1030u);
  n.build_advert(1039, m);  // 9 ms late
  EXPECT_EQ(n.next_advert_ms(), 1040u);
  EXPECT_EQ(n.sequence(), 4u);
}

// A caller stalled for more than an interval (a slow control thread) sends one advert for the
// slots it missed; the schedule stays on the grid of the first advert.
TEST(HaNode, AdvertScheduleStaysOnTheGridAfterAStallLongerThanAnInterval) {
  Node n(unit(1), 1, 1000);
  Bytes m;
  n.build_advert(1000, m);
  n.build_advert(1010, m);
  ASSERT_EQ(n.next_advert_ms(), 1020u);
  n.build_advert(1045, m);  // the slots of 1020 and 1030 were missed; this one is 1040's
  EXPECT_EQ(n.next_advert_ms(), 1050u) << "the next slot of the grid";
  n.build_advert(1050, m);
  EXPECT_EQ(n.next_advert_ms(), 1060u);
}

// Called whenever it is due, at random late times (up to 8 ms late, or up to 35): one advert
// per grid slot at most, and the schedule on the grid. The first problem is reported.
TEST(HaNode, AdvertScheduleNeverFiresTwiceForOneSlot) {
  std::mt19937 rng(77);
  std::string off_grid, twice;
  for (int round = 0; round < 50; ++round) {
    const std::uint64_t start = 1000 + rng() % kInterval;
    Node n(unit(1), 1, start);
    Bytes m;
    std::uint64_t last = UINT64_MAX;
    for (std::uint64_t t = start; t < start + 2000; t += 1 + rng() % (round % 2 ? 35 : 8)) {
      if (t < n.next_advert_ms()) continue;
      n.build_advert(t, m);
      const std::uint64_t slot = (t - start) / kInterval;
      if (slot == last && twice.empty())
        twice = "round " + std::to_string(round) + " (start " + std::to_string(start) + "): a second advert at " +
                std::to_string(t) + " in the slot of " + std::to_string(start + slot * kInterval);
      last = slot;
      if ((n.next_advert_ms() - start) % kInterval != 0 && off_grid.empty())
        off_grid = "round " + std::to_string(round) + " (start " + std::to_string(start) + "): after an advert at " +
                   std::to_string(t) + ", next at " + std::to_string(n.next_advert_ms());
      ASSERT_GT(n.next_advert_ms(), t);
    }
  }
  EXPECT_EQ(off_grid, "") << "the schedule left the grid";
  EXPECT_EQ(twice, "") << "two adverts in one slot";
}

// The same, by hand: after a stall the schedule is off the grid, and the next late call
// fires twice in one slot, 1 ms apart.
TEST(HaNode, AdvertScheduleNeverFiresTwiceForOneSlotAfterAStall) {
  Node n(unit(1), 1, 1000);
  Bytes m;
  n.build_advert(1000, m);
  n.build_advert(1035, m);  // stalled: the slots of 1010 and 1020 were missed
  n.build_advert(1054, m);  // the slot of 1050, 4 ms late
  EXPECT_GE(n.next_advert_ms(), 1060u) << "the slot of 1050 has had its advert";
}

// --- everything at once ---------------------------------------------------------------------------

// Random cuts, delays, kills, restarts, tracking and operator requests for a while, both units
// called only at their deadlines; then everything heals. The invariants hold throughout (the
// Sim checks them) and the pair settles with exactly one active per group.
TEST(HaNode, RandomTroubleThenCalmEndsWithOneActivePerGroup) {
  for (const unsigned seed : {1u, 2u, 3u, 4u, 5u, 6u}) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    const bool preempt = seed % 2 == 0;
    Sim s(unit(1, {{1, 200}, {2, 100}, {3, 150}}, preempt), unit(2, {{1, 100}, {2, 200}, {3, 150}}, preempt));
    if (seed % 3 == 0) s.only_at_deadlines();
    s.start(0);
    s.start(1);
    for (int event = 0; event < 60; ++event) {
      s.run_for(1 + rng() % 300);
      const int i = static_cast<int>(rng() % 2);
      switch (rng() % 9) {
        case 0: s.cut(i, rng() % 2 ? Path::kSync : Path::kData, rng() % 2 == 0); break;
        case 1: s.delay(rng() % 2 ? Path::kSync : Path::kData, 1 + rng() % 15); break;
        case 2:
          if (s.alive(i)) s.kill(i);
          else s.start(i);
          break;
        case 3:
          if (s.alive(i)) s.act(i, [&](Node& n, std::uint64_t now) { n.set_tracking(rng() % 120, rng() % 4 == 0, now); });
          break;
        case 4:
          if (s.alive(i)) s.act(i, [](Node& n, std::uint64_t now) { return n.failover(now); });
          break;
        case 5:
          if (s.alive(i)) s.act(i, [&](Node& n, std::uint64_t now) { n.set_maintenance(rng() % 2 == 0, now); });
          break;
        case 6:
          if (s.alive(i)) s.act(i, [&](Node& n, std::uint64_t now) { n.set_ready(rng() % 3 != 0, now); });
          break;
        default: break;
      }
    }
    for (int i = 0; i < 2; ++i) {
      if (!s.alive(i)) s.start(i);
      s.act(i, [](Node& n, std::uint64_t now) {
        n.set_maintenance(false, now);
        n.set_tracking(0, false, now);
        n.set_ready(true, now);
      });
    }
    s.cut_all(false);
    s.run_for(3 * kHoldDown);
    for (std::size_t g = 0; g < 3; ++g) EXPECT_EQ(s.actives(g), 1) << "group index " << g << s.history();
    EXPECT_EQ(s.node(0).owned_mask() & s.node(1).owned_mask(), 0u);
    EXPECT_EQ(s.node(0).owned_mask() | s.node(1).owned_mask(), bit(1) | bit(2) | bit(3));
    if (preempt) {
      // Preempt: each unit's better group returns to it; equal priorities (group 3): the
      // higher unit id.
      EXPECT_EQ(s.node(0).owned_mask(), bit(1));
      EXPECT_EQ(s.node(1).owned_mask(), bit(2) | bit(3));
    }
    // Calm: nothing changes any more.
    s.clear();
    s.run_for(3 * kHoldDown);
    EXPECT_EQ(s.transition_count(0) + s.transition_count(1), 0u) << s.history();
  }
}

}  // namespace
