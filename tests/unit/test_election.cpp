// The election state machine (controlplane/ha/election.*): single-unit rules, and two units
// exchanging adverts over two paths in a millisecond-step simulation, with paths cut, units
// killed, priorities changed and operators asking for failovers and maintenance.
#include "controlplane/ha/election.hpp"

#include <gtest/gtest.h>

#include <random>
#include <vector>

namespace {

using tandem::ha::Cause;
using tandem::ha::Election;
using tandem::ha::ElectionConfig;
using tandem::ha::Path;
using tandem::ha::PeerAdvert;
using tandem::ha::Role;
using tandem::ha::Step;
using tandem::ha::Transition;

constexpr std::uint32_t kInterval = 10;
constexpr std::uint64_t kDead = 30;

ElectionConfig config(std::uint8_t id, std::uint8_t priority, bool preempt = false) {
  ElectionConfig c;
  c.unit_id = id;
  c.priority = priority;
  c.preempt = preempt;
  c.advert_interval_ms = kInterval;
  c.dead_intervals = 3;
  c.hold_down_ms = 1000;
  return c;
}

PeerAdvert advert(std::uint8_t id, std::uint8_t priority, Role role, bool ready = true) {
  return {id, priority, role, ready};
}

// --- one unit, adverts fed by hand -----------------------------------------------------------

TEST(Election, AloneItBecomesActiveAfterOneDeadInterval) {
  Election e(config(1, 100), 1000);
  EXPECT_EQ(e.role(), Role::kInit);
  EXPECT_EQ(e.next_deadline_ms(1000), 1000 + kDead);
  EXPECT_FALSE(e.on_tick(1000 + kDead - 1).transition);
  const Step s = e.on_tick(1000 + kDead);
  ASSERT_TRUE(s.transition);
  EXPECT_EQ(s.transition->from, Role::kInit);
  EXPECT_EQ(s.transition->to, Role::kActive);
  EXPECT_EQ(s.transition->cause, Cause::kNoPeerAtStart);
  EXPECT_TRUE(s.alarms.empty()) << "no peer ever heard: no path alarm";
}

TEST(Election, AtStartAnActivePeerMakesItStandbyWhateverItsPriority) {
  Election e(config(2, 250), 0);
  const Step s = e.on_advert(Path::kSync, advert(1, 10, Role::kActive), 5);
  ASSERT_TRUE(s.transition);
  EXPECT_EQ(s.transition->to, Role::kStandby);
  EXPECT_EQ(s.transition->cause, Cause::kPeerActive);
  // Preempt off: it stays standby however long the better priority lasts.
  for (std::uint64_t t = 10; t < 5000; t += kInterval) {
    EXPECT_FALSE(e.on_advert(Path::kSync, advert(1, 10, Role::kActive), t).transition);
    EXPECT_FALSE(e.on_advert(Path::kData, advert(1, 10, Role::kActive), t).transition);
  }
}

TEST(Election, AtStartTheBetterOfTwoTakesTheGroupAtOnce) {
  Election better(config(2, 100), 0), worse(config(1, 100), 0);
  // Equal priorities: the higher unit id wins.
  auto s = better.on_advert(Path::kData, advert(1, 100, Role::kInit), 3);
  ASSERT_TRUE(s.transition);
  EXPECT_EQ(s.transition->to, Role::kActive);
  EXPECT_EQ(s.transition->cause, Cause::kWonElection);
  s = worse.on_advert(Path::kData, advert(2, 100, Role::kInit), 3);
  ASSERT_TRUE(s.transition);
  EXPECT_EQ(s.transition->to, Role::kStandby);
  EXPECT_EQ(s.transition->cause, Cause::kLostElection);
  // Priority before id; readiness before priority.
  Election high(config(1, 200), 0);
  EXPECT_EQ(high.on_advert(Path::kSync, advert(9, 100, Role::kInit), 1).transition->to, Role::kActive);
  Election unready(config(1, 200), 0);
  unready.set_ready(false, 0);
  EXPECT_EQ(unready.on_advert(Path::kSync, advert(9, 100, Role::kInit), 1).transition->to, Role::kStandby);
}

TEST(Election, APeerHeardOnOnePathOnlyRaisesAnAlarmAndChangesNothing) {
  Election e(config(1, 100), 0);
  e.on_advert(Path::kSync, advert(2, 200, Role::kActive), 1);
  auto s = e.on_advert(Path::kData, advert(2, 200, Role::kActive), 1);
  ASSERT_EQ(e.role(), Role::kStandby);
  // The data path goes silent; the sync path keeps hearing the peer.
  std::vector<tandem::ha::PathAlarm> alarms;
  for (std::uint64_t t = 11; t < 2000; t += kInterval) {
    s = e.on_advert(Path::kSync, advert(2, 200, Role::kActive), t);
    EXPECT_FALSE(s.transition) << "at " << t;
    alarms.insert(alarms.end(), s.alarms.begin(), s.alarms.end());
  }
  ASSERT_EQ(alarms.size(), 1u);
  EXPECT_EQ(alarms[0].path, Path::kData);
  EXPECT_TRUE(alarms[0].raised);
  EXPECT_EQ(alarms[0].at_ms, 1 + kDead) << "the first advert after the data path's dead interval";
  EXPECT_TRUE(e.alarm(Path::kData));
  EXPECT_FALSE(e.alarm(Path::kSync));
  // The data path comes back: the alarm clears.
  s = e.on_advert(Path::kData, advert(2, 200, Role::kActive), 2001);
  ASSERT_EQ(s.alarms.size(), 1u);
  EXPECT_FALSE(s.alarms[0].raised);
  EXPECT_FALSE(e.alarm(Path::kData));
}

TEST(Election, BothPathsSilentForTheDeadIntervalIsATakeoverWithItsDetectionTime) {
  Election e(config(1, 100), 0);
  e.on_advert(Path::kSync, advert(2, 200, Role::kActive), 1);
  e.on_advert(Path::kData, advert(2, 200, Role::kActive), 7);  // the last word from the peer
  EXPECT_EQ(e.next_deadline_ms(7), 1 + kDead) << "the sync path falls silent first";
  const auto first = e.on_tick(1 + kDead);
  EXPECT_FALSE(first.transition);
  // The data path has brought nothing since the sync path fell silent: not (yet) an alarm.
  EXPECT_TRUE(first.alarms.empty()) << "a peer dying falls silent on both paths a few ms apart";
  EXPECT_EQ(e.next_deadline_ms(1 + kDead), 7 + kDead);
  EXPECT_FALSE(e.on_tick(7 + kDead - 1).transition);
  const auto s = e.on_tick(7 + kDead);
  ASSERT_TRUE(s.transition);
  EXPECT_EQ(s.transition->to, Role::kActive);
  EXPECT_EQ(s.transition->cause, Cause::kPeerDead);
  EXPECT_EQ(s.transition->silent_ms, kDead);
  EXPECT_FALSE(e.alarm(Path::kSync)) << "a dead peer is a failover, not a path alarm";
  EXPECT_FALSE(e.alarm(Path::kData));
}

TEST(Election, OnePathSilentIsAnAlarmOnceTheOtherBringsAnAdvertAfterIt) {
  Election e(config(1, 100), 0);
  e.on_advert(Path::kSync, advert(2, 200, Role::kActive), 1);
  e.on_advert(Path::kData, advert(2, 200, Role::kActive), 1);
  // The sync path falls silent; the data path goes on every interval.
  std::uint64_t raised_at = 0;
  for (std::uint64_t t = 11; t <= 101; t += kInterval) {
    const auto s = e.on_advert(Path::kData, advert(2, 200, Role::kActive), t);
    EXPECT_FALSE(s.transition) << t;
    for (const auto& a : s.alarms)
      if (a.raised && a.path == Path::kSync && raised_at == 0) raised_at = t;
  }
  // Expired at 1 + kDead = 31: the first data advert at or after it raises the alarm.
  EXPECT_EQ(raised_at, 31u);
  EXPECT_TRUE(e.alarm(Path::kSync));
  EXPECT_FALSE(e.alarm(Path::kData));
  // Heard again on sync: cleared.
  const auto s = e.on_advert(Path::kSync, advert(2, 200, Role::kActive), 105);
  ASSERT_EQ(s.alarms.size(), 1u);
  EXPECT_FALSE(s.alarms[0].raised);
  EXPECT_EQ(e.role(), Role::kStandby);
}

TEST(Election, TwoActivesKeepTheBetterOne) {
  Election low(config(1, 100), 0), high(config(2, 100), 0);
  low.on_tick(kDead);
  high.on_tick(kDead);
  ASSERT_EQ(low.role(), Role::kActive);
  ASSERT_EQ(high.role(), Role::kActive);
  EXPECT_FALSE(high.on_advert(Path::kSync, advert(1, 100, Role::kActive), 50).transition);
  const auto s = low.on_advert(Path::kSync, advert(2, 100, Role::kActive), 50);
  ASSERT_TRUE(s.transition);
  EXPECT_EQ(s.transition->to, Role::kStandby);
  EXPECT_EQ(s.transition->cause, Cause::kDualActive);
  // Priority outranks the id; readiness does not count between two actives.
  Election unready_high(config(1, 200), 0);
  unready_high.set_ready(false, 0);
  unready_high.on_tick(kDead);
  EXPECT_FALSE(unready_high.on_advert(Path::kData, advert(2, 100, Role::kActive), 40).transition);
}

// The winner of two actives announces again, once per claim of the peer: a peer that started
// without hearing it (a loaded machine) took the group and sent gratuitous ARP, so clients and
// backends may now send to the loser, which stops forwarding as it steps down.
TEST(Election, TheWinnerOfTwoActivesAnnouncesAgainOncePerClaim) {
  Election high(config(2, 100), 0);
  high.on_tick(kDead);
  ASSERT_EQ(high.role(), Role::kActive);
  EXPECT_FALSE(high.on_advert(Path::kSync, advert(1, 100, Role::kStandby), 40).reassert);
  auto s = high.on_advert(Path::kSync, advert(1, 100, Role::kActive), 50);
  EXPECT_TRUE(s.reassert);
  EXPECT_FALSE(s.transition);
  EXPECT_FALSE(high.on_advert(Path::kData, advert(1, 100, Role::kActive), 51).reassert) << "once per claim";
  EXPECT_FALSE(high.on_tick(55).reassert);
  EXPECT_FALSE(high.on_advert(Path::kSync, advert(1, 100, Role::kStandby), 60).reassert);
  EXPECT_TRUE(high.on_advert(Path::kSync, advert(1, 100, Role::kActive), 70).reassert) << "a new claim";
  // The loser steps down and never reasserts.
  Election low(config(1, 100), 0);
  low.on_tick(kDead);
  s = low.on_advert(Path::kSync, advert(2, 100, Role::kActive), 50);
  EXPECT_FALSE(s.reassert);
  ASSERT_TRUE(s.transition);
}

TEST(Election, FailoverIsRefusedWithoutAPeerThatCanServe) {
  Election e(config(1, 100), 0);
  EXPECT_EQ(e.failover(0).refused, "this unit is init, not active");
  e.on_tick(kDead);
  EXPECT_EQ(e.failover(kDead).refused, "no peer is alive to take over");
  e.on_advert(Path::kSync, advert(2, 0, Role::kMaintenance), 40);
  EXPECT_EQ(e.failover(41).refused, "the peer cannot take over (maintenance)");
  e.on_advert(Path::kSync, advert(2, 0, Role::kStandby), 50);
  EXPECT_EQ(e.failover(51).refused, "the peer cannot take over (priority 0)");
  EXPECT_EQ(e.role(), Role::kActive);
  e.on_advert(Path::kSync, advert(2, 100, Role::kStandby), 60);
  const auto s = e.failover(61);
  EXPECT_TRUE(s.refused.empty());
  ASSERT_TRUE(s.transition);
  EXPECT_EQ(s.transition->cause, Cause::kManualFailover);
  EXPECT_EQ(e.advertised_priority(61), 0) << "it advertises 0 while handing over";
  EXPECT_EQ(e.advertised_priority(61 + 1000), 100);
}

TEST(Election, PriorityZeroHandsOverOnlyWhenSomebodyCanTakeOver) {
  Election e(config(1, 100), 0);
  e.on_tick(kDead);
  ASSERT_EQ(e.role(), Role::kActive);
  EXPECT_FALSE(e.set_priority(0, 40).transition) << "no peer: still the best there is";
  e.on_advert(Path::kSync, advert(2, 50, Role::kStandby), 50);
  EXPECT_EQ(e.role(), Role::kStandby) << "degraded below a ready standby";
  Election f(config(1, 100), 0);
  f.on_tick(kDead);
  f.on_advert(Path::kSync, advert(2, 50, Role::kStandby), 40);
  const auto s = f.set_priority(0, 41);
  ASSERT_TRUE(s.transition);
  EXPECT_EQ(s.transition->cause, Cause::kTrackingDegraded);
  EXPECT_EQ(f.set_priority(255, 42).transition, std::nullopt);
  EXPECT_EQ(f.effective_priority(), 100) << "never above the configured priority";
}

TEST(Election, MaintenanceIsNeverActive) {
  Election e(config(1, 200), 0);
  e.set_maintenance(true, 0);
  EXPECT_EQ(e.role(), Role::kMaintenance);
  EXPECT_EQ(e.advertised_priority(0), 0);
  for (std::uint64_t t = 0; t < 500; t += 5) EXPECT_FALSE(e.on_tick(t).transition);
  e.on_advert(Path::kSync, advert(2, 100, Role::kActive), 600);
  EXPECT_FALSE(e.on_tick(600 + kDead).transition) << "even with the peer dead";
  const auto s = e.set_maintenance(false, 700);
  ASSERT_TRUE(s.transition);
  EXPECT_EQ(s.transition->to, Role::kStandby);
  EXPECT_EQ(s.transition->cause, Cause::kMaintenanceOff);
  const auto t = e.on_tick(701);
  ASSERT_TRUE(t.transition) << "the peer is dead: somebody must serve";
  EXPECT_EQ(t.transition->to, Role::kActive);
  EXPECT_EQ(t.transition->cause, Cause::kPeerDead);
}

// Every role and every peer advert: a unit in maintenance stays there, a unit that cannot
// serve (priority 0) never becomes active while its peer can, and an active never gives the
// group away to a worse active peer.
TEST(Election, InvariantsOverEveryRoleAndPeerAdvert) {
  const Role roles[] = {Role::kInit, Role::kStandby, Role::kActive, Role::kMaintenance};
  for (const Role mine : roles)
    for (const Role theirs : roles)
      for (const std::uint8_t my_prio : {0, 100})
        for (const std::uint8_t their_prio : {0, 50, 100, 150})
          for (const bool preempt : {false, true})
            for (const bool my_ready : {false, true})
              for (const bool their_ready : {false, true})
                for (const std::uint64_t since_change : {std::uint64_t{1}, std::uint64_t{5000}}) {
                  Election e(config(1, 100, preempt), 0);
                  std::uint64_t now = 0;
                  // Bring the unit to `mine`.
                  if (mine == Role::kActive) now = kDead, e.on_tick(now);
                  if (mine == Role::kStandby) e.on_advert(Path::kSync, advert(2, 100, Role::kActive), now);
                  if (mine == Role::kMaintenance) e.set_maintenance(true, now);
                  ASSERT_EQ(e.role(), mine);
                  e.set_ready(my_ready, now);
                  e.set_priority(my_prio, now);
                  const Role before = e.role();
                  now += since_change;
                  const PeerAdvert a = advert(2, their_prio, theirs, their_ready);
                  const Step s = e.on_advert(Path::kData, a, now);
                  const std::string what = std::string(tandem::ha::to_string(before)) + " prio " +
                                           std::to_string(my_prio) + " vs " + tandem::ha::to_string(theirs) +
                                           " prio " + std::to_string(their_prio);
                  if (before == Role::kMaintenance) {
                    EXPECT_EQ(e.role(), Role::kMaintenance) << what;
                  }
                  if (my_prio == 0 && their_prio > 0 && theirs != Role::kMaintenance && before != Role::kActive) {
                    EXPECT_NE(e.role(), Role::kActive) << what;
                  }
                  if (before == Role::kActive && theirs == Role::kActive && their_prio < e.effective_priority()) {
                    EXPECT_EQ(e.role(), Role::kActive) << what;
                  }
                  if (s.transition) {
                    EXPECT_EQ(s.transition->from, before) << what;
                    EXPECT_NE(s.transition->from, s.transition->to) << what;
                  }
                }
}

// --- two units over two paths ------------------------------------------------------------------

// Two units sending adverts every interval on both paths (A at phase 0, B at `phase_b`), each
// path per direction cut or not, a unit alive or not; time in 1 ms steps.
class Pair {
 public:
  Pair(ElectionConfig a, ElectionConfig b, std::uint64_t phase_b = 5, std::uint64_t start_b = 0)
      : cfg_{a, b}, phase_{0, phase_b}, start_{0, start_b} {}

  void run_until(std::uint64_t end) {
    for (; now_ < end; ++now_) {
      for (int i = 0; i < 2; ++i) {
        if (!unit_[i] && alive_[i] && now_ >= start_[i]) {
          unit_[i].emplace(cfg_[i], now_);
          next_[i] = unit_[i]->next_deadline_ms(now_);
        }
        if (!unit_[i]) continue;
        if ((now_ + kInterval - phase_[i]) % kInterval == 0) {
          const Election& me = *unit_[i];
          const PeerAdvert a{cfg_[i].unit_id, me.advertised_priority(now_), me.role(), me.ready()};
          for (int p = 0; p < 2; ++p)
            if (!cut_[i][p] && unit_[1 - i]) record(1 - i, unit_[1 - i]->on_advert(static_cast<Path>(p), a, now_));
        }
      }
      for (int i = 0; i < 2; ++i)
        if (unit_[i] && (tick_every_ms_ || now_ >= next_[i])) record(i, unit_[i]->on_tick(now_));
      if (active(0) && active(1)) ++dual_active_ms_;
    }
  }

  void kill(int i) {
    unit_[i].reset();
    alive_[i] = false;
  }
  void restart(int i) {
    alive_[i] = true;
    start_[i] = now_;
  }
  // Cuts (or restores) `path` in both directions.
  void cut(Path p, bool cut = true) { cut_[0][static_cast<int>(p)] = cut_[1][static_cast<int>(p)] = cut; }
  Election& unit(int i) { return *unit_[i]; }
  bool active(int i) const { return unit_[i] && unit_[i]->role() == Role::kActive; }
  int actives() const { return active(0) + active(1); }
  std::uint64_t now() const { return now_; }
  const std::vector<Transition>& log(int i) const { return log_[i]; }
  const std::vector<tandem::ha::PathAlarm>& alarms(int i) const { return alarms_[i]; }
  std::uint64_t dual_active_ms() const { return dual_active_ms_; }
  void tick_only_at_deadlines() { tick_every_ms_ = false; }
  template <typename Fn>
  void apply(int i, Fn&& fn) {
    record(i, fn(*unit_[i], now_));
  }

 private:
  void record(int i, const Step& s) {
    next_[i] = unit_[i]->next_deadline_ms(now_);
    if (s.transition) log_[i].push_back(*s.transition);
    alarms_[i].insert(alarms_[i].end(), s.alarms.begin(), s.alarms.end());
  }

  ElectionConfig cfg_[2];
  std::uint64_t phase_[2];
  std::uint64_t start_[2];
  bool alive_[2] = {true, true};
  std::optional<Election> unit_[2];
  bool cut_[2][2] = {};
  std::uint64_t now_ = 0;
  std::uint64_t next_[2] = {0, 0};  // each unit's next deadline, after its last call
  bool tick_every_ms_ = true;
  std::uint64_t dual_active_ms_ = 0;
  std::vector<Transition> log_[2];
  std::vector<tandem::ha::PathAlarm> alarms_[2];
};

std::string history(const Pair& p) {
  std::string h;
  for (int i = 0; i < 2; ++i)
    for (const auto& t : p.log(i))
      h += "\n  unit " + std::to_string(i) + " at " + std::to_string(t.at_ms) + ": " + tandem::ha::to_string(t.from) +
           " -> " + tandem::ha::to_string(t.to) + " (" + tandem::ha::to_string(t.cause) + ")";
  return h;
}

TEST(ElectionPair, SimultaneousStartsEndWithExactlyOneActiveWhateverThePhases) {
  for (std::uint64_t phase = 0; phase < kInterval; ++phase)
    for (std::uint64_t start_b = 0; start_b < 2 * kDead; start_b += 7) {
      Pair p(config(1, 100), config(2, 100), phase, start_b);
      p.run_until(start_b + 2 * kDead);
      ASSERT_EQ(p.actives(), 1) << "phase " << phase << " start_b " << start_b;
      // B started late, after A took the group alone: A keeps it. Otherwise B (higher id) wins.
      EXPECT_TRUE(p.active(start_b >= kDead ? 0 : 1)) << "phase " << phase << " start_b " << start_b;
      // B may start just as A's start-up wait ends: A goes active before it hears B, which has
      // already won on A's last Init advert. A steps down at B's first advert.
      EXPECT_LE(p.dual_active_ms(), kInterval) << "phase " << phase << " start_b " << start_b;
      p.run_until(p.now() + 5000);
      EXPECT_LE(p.log(0).size() + p.log(1).size(), 3u) << "no further change";
    }
}

TEST(ElectionPair, KillingTheActiveHandsTheGroupOverWithinTheDeadInterval) {
  Pair p(config(1, 100), config(2, 200));
  p.run_until(500);
  ASSERT_TRUE(p.active(1));
  const std::uint64_t killed = p.now();
  p.kill(1);
  p.run_until(killed + kDead + kInterval + 1);
  ASSERT_TRUE(p.active(0));
  const Transition& t = p.log(0).back();
  EXPECT_EQ(t.cause, Cause::kPeerDead);
  EXPECT_GE(t.at_ms - killed, kDead - kInterval);
  EXPECT_LE(t.at_ms - killed, kDead);
  EXPECT_GE(t.silent_ms, kDead);
  // B returns: it hears A active and becomes standby (preempt off), though its priority is higher.
  p.restart(1);
  p.run_until(p.now() + 3000);
  EXPECT_TRUE(p.active(0));
  EXPECT_EQ(p.unit(1).role(), Role::kStandby);
  EXPECT_EQ(p.log(1).back().cause, Cause::kPeerActive);
}

TEST(ElectionPair, ASilentSyncLinkIsAnAlarmOnBothUnitsAndNeverASecondActive) {
  for (const Path cut : {Path::kSync, Path::kData}) {
    Pair p(config(1, 100), config(2, 200));
    p.run_until(500);
    p.cut(cut);
    p.run_until(10000);
    EXPECT_EQ(p.actives(), 1);
    EXPECT_EQ(p.dual_active_ms(), 0u);
    for (int i = 0; i < 2; ++i) {
      ASSERT_EQ(p.alarms(i).size(), 1u) << i;
      EXPECT_EQ(p.alarms(i)[0].path, cut);
      EXPECT_TRUE(p.alarms(i)[0].raised);
      EXPECT_LE(p.alarms(i)[0].at_ms, 500 + kDead + 1);
    }
    p.cut(cut, false);
    p.run_until(10100);
    for (int i = 0; i < 2; ++i) {
      ASSERT_EQ(p.alarms(i).size(), 2u);
      EXPECT_FALSE(p.alarms(i)[1].raised);
    }
    EXPECT_EQ(p.log(0).size() + p.log(1).size(), 2u) << "no role changed";
  }
}

TEST(ElectionPair, APartitionMakesTwoActivesAndHealingKeepsTheBetterOneAtOnce) {
  Pair p(config(1, 100), config(2, 200));
  p.run_until(500);
  ASSERT_TRUE(p.active(1));
  p.cut(Path::kSync);
  p.cut(Path::kData);
  p.run_until(1000);
  EXPECT_EQ(p.actives(), 2) << "each side sees the other dead";
  const std::uint64_t healed = p.now();
  p.cut(Path::kSync, false);
  p.cut(Path::kData, false);
  const std::uint64_t dual_before = p.dual_active_ms();
  p.run_until(healed + 1000);
  EXPECT_TRUE(p.active(1));
  EXPECT_FALSE(p.active(0));
  EXPECT_EQ(p.log(0).back().cause, Cause::kDualActive);
  EXPECT_LE(p.log(0).back().at_ms - healed, kInterval) << "the loser steps down at the first advert";
  EXPECT_LE(p.dual_active_ms() - dual_before, kInterval);
}

TEST(ElectionPair, ManualFailoverMovesTheGroupInOneIntervalAndItDoesNotComeBack) {
  for (const bool preempt : {false, true}) {
    Pair p(config(1, 100, preempt), config(2, 200, preempt));
    p.run_until(500);
    ASSERT_TRUE(p.active(1));
    const std::uint64_t asked = p.now();
    p.apply(1, [](Election& e, std::uint64_t now) { return e.failover(now); });
    EXPECT_EQ(p.unit(1).role(), Role::kStandby);
    p.run_until(asked + kInterval + 1);
    ASSERT_TRUE(p.active(0));
    EXPECT_EQ(p.log(0).back().cause, Cause::kPeerYielded);
    EXPECT_LE(p.log(0).back().at_ms - asked, kInterval);
    // During the hold-down B does not take it back, preempt or not.
    p.run_until(asked + 999);
    EXPECT_TRUE(p.active(0));
    p.run_until(asked + 3000);
    // After it, only preemption brings the group back to the better unit.
    EXPECT_EQ(p.active(1), preempt);
    if (preempt) {
      EXPECT_EQ(p.log(1).back().cause, Cause::kPreempt);
    }
    EXPECT_LE(p.dual_active_ms(), preempt ? kInterval : 0u) << "a preemption: until the old active hears it";
  }
}

TEST(ElectionPair, MaintenanceDrainsTheUnitAndKeepsItStandby) {
  Pair p(config(1, 100, true), config(2, 200, true));
  p.run_until(500);
  ASSERT_TRUE(p.active(1));
  p.apply(1, [](Election& e, std::uint64_t now) { return e.set_maintenance(true, now); });
  p.run_until(600);
  EXPECT_TRUE(p.active(0));
  EXPECT_EQ(p.log(0).back().cause, Cause::kPeerYielded);
  p.run_until(10000);
  EXPECT_EQ(p.unit(1).role(), Role::kMaintenance) << "better and preempting, but held in maintenance";
  p.apply(1, [](Election& e, std::uint64_t now) { return e.set_maintenance(false, now); });
  p.run_until(10000 + 999);
  EXPECT_TRUE(p.active(0)) << "hold-down after leaving maintenance";
  p.run_until(12000);
  EXPECT_TRUE(p.active(1)) << "then preemption";
}

TEST(ElectionPair, TrackingHandsOverAndPreemptOffKeepsTheNewActive) {
  Pair p(config(1, 100), config(2, 200));
  p.run_until(500);
  ASSERT_TRUE(p.active(1));
  // B's north link goes down: its effective priority falls below A's.
  p.apply(1, [](Election& e, std::uint64_t now) { return e.set_priority(50, now); });
  p.run_until(600);
  EXPECT_TRUE(p.active(0));
  EXPECT_EQ(p.log(1).back().cause, Cause::kTrackingDegraded);
  EXPECT_EQ(p.log(0).back().cause, Cause::kPeerYielded);
  // The link comes back: without preemption A keeps the group.
  p.apply(1, [](Election& e, std::uint64_t now) { return e.set_priority(200, now); });
  p.run_until(5000);
  EXPECT_TRUE(p.active(0)) << history(p);
  // Both degraded alike (e.g. the same backend pool): nobody hands over. (A acts on B's last
  // advert, so B's change must have been advertised.)
  p.apply(1, [](Election& e, std::uint64_t now) { return e.set_priority(60, now); });
  p.run_until(p.now() + kInterval);
  p.apply(0, [](Election& e, std::uint64_t now) { return e.set_priority(60, now); });
  p.run_until(8000);
  EXPECT_TRUE(p.active(0)) << history(p);
  EXPECT_EQ(p.dual_active_ms(), 0u);
}

TEST(ElectionPair, AFlappingLinkChangesRolesAtMostOncePerHoldDown) {
  Pair p(config(1, 100, true), config(2, 200, true));
  p.run_until(500);
  ASSERT_TRUE(p.active(1));
  // B's tracked link flaps every 50 ms for 10 s.
  for (int i = 0; i < 200; ++i) {
    const std::uint8_t prio = i % 2 == 0 ? 50 : 200;
    p.apply(1, [prio](Election& e, std::uint64_t now) { return e.set_priority(prio, now); });
    p.run_until(p.now() + 50);
  }
  const std::size_t changes = p.log(1).size() - 1;  // the first is the start
  EXPECT_LE(changes, 2 * (10000 / 1000) + 2) << "at most a handover and a preemption per hold-down";
  EXPECT_GE(changes, 2u);
  EXPECT_EQ(p.actives(), 1);
}

TEST(ElectionPair, ANotReadyUnitNeverPreemptsButTakesOverFromADeadPeer) {
  Pair p(config(1, 100, true), config(2, 200, true));
  p.run_until(500);
  ASSERT_TRUE(p.active(1));
  p.kill(1);
  p.run_until(600);
  ASSERT_TRUE(p.active(0));
  p.restart(1);
  p.run_until(601);
  p.apply(1, [](Election& e, std::uint64_t now) { return e.set_ready(false, now); });  // resyncing
  p.run_until(5000);
  EXPECT_TRUE(p.active(0)) << "B is better and preempts, but not before its resync completed";
  p.apply(1, [](Election& e, std::uint64_t now) { return e.set_ready(true, now); });
  p.run_until(5000 + 50);
  EXPECT_TRUE(p.active(1));
  EXPECT_EQ(p.log(1).back().cause, Cause::kPreempt);
}

// Ticking only at next_deadline_ms() (and on adverts) gives the same history as ticking every
// millisecond: the deadline never hides a timer.
TEST(ElectionPair, DeadlinesAreEnough) {
  std::mt19937 rng(7);
  for (int round = 0; round < 40; ++round) {
    const bool preempt = rng() % 2;
    Pair every(config(1, 100, preempt), config(2, 150, preempt), rng() % kInterval);
    Pair lazy = every;
    lazy.tick_only_at_deadlines();
    for (int step = 0; step < 30; ++step) {
      const auto action = rng() % 8;
      const bool coin = rng() % 2;
      const auto until = every.now() + 20 + rng() % 400;
      for (Pair* p : {&every, &lazy}) {
        switch (action) {
          case 0: p->cut(Path::kSync, true); break;
          case 1: p->cut(Path::kSync, false); break;
          case 2: p->cut(Path::kData, coin); break;
          case 3: p->cut(Path::kData, false), p->cut(Path::kSync, false); break;
          default: break;
        }
        p->run_until(until);
      }
      ASSERT_EQ(every.actives(), lazy.actives()) << "round " << round << " step " << step;
    }
    ASSERT_EQ(every.log(0).size(), lazy.log(0).size());
    ASSERT_EQ(every.log(1).size(), lazy.log(1).size());
    for (int i = 0; i < 2; ++i)
      for (std::size_t k = 0; k < every.log(i).size(); ++k) {
        EXPECT_EQ(every.log(i)[k].at_ms, lazy.log(i)[k].at_ms);
        EXPECT_EQ(every.log(i)[k].cause, lazy.log(i)[k].cause);
      }
  }
}

}  // namespace
