// Who of the two units is active for a VIP group: a pure state machine, no I/O and no clock
// inside. The caller feeds it the peer's adverts (with the path they came on), ticks, tracking
// and operator requests, each with the current time in milliseconds, and acts on what it
// returns (take the VIPs and send gratuitous ARP, or release them; raise or clear an alarm).
//
// The rules, VRRP's where they fit (RFC 9568) with the two-path rule of the design brief:
//   - A unit hears its peer on two independent paths (the sync link and the data network). The
//     peer is alive while either path has brought an advert within the dead interval. Only when
//     both are silent does a standby take over (peer_dead): one silent path is an alarm, never
//     a takeover, so a cut sync link cannot make two actives.
//   - At start a unit listens for one dead interval (kInit). Hearing an active peer it becomes
//     standby; hearing a peer that is not active, the better of the two becomes active at once
//     and the other standby; hearing nobody, it becomes active.
//   - Better = ready (its state resync is complete) first, then higher priority, then higher
//     unit id. Two actives (a partition healed) compare priority, then unit id; the loser
//     steps down at once.
//   - Preemption (off by default): a ready standby better than the active takes over, at most
//     once per hold-down. Tracking: an active whose effective priority fell below its
//     configured one (a link down, a pool too small) and below a ready standby's hands over,
//     preempt or not. Priority 0 means "cannot serve".
//   - A handover (operator failover, maintenance, stepping down for tracking) advertises
//     priority 0 for the hold-down, so the peer takes over at its next advert and this unit
//     does not take the group back meanwhile.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tandem::ha {

enum class Role : std::uint8_t {
  kInit,         // started, listening for a peer
  kStandby,
  kActive,
  kMaintenance,  // held standby by the operator; never becomes active
};
const char* to_string(Role r);

enum class Path : std::uint8_t { kSync = 0, kData = 1 };
inline constexpr std::size_t kPathCount = 2;
const char* to_string(Path p);

struct ElectionConfig {
  std::uint8_t unit_id = 1;         // unique in the pair; the last tie-breaker (higher wins)
  std::uint8_t priority = 100;      // 1..255 as configured
  bool preempt = false;
  std::uint32_t advert_interval_ms = 10;
  std::uint32_t dead_intervals = 3;  // the peer is dead after this many silent intervals
  std::uint32_t hold_down_ms = 1000;  // no preemption or election win this soon after a change

  std::uint64_t dead_ms() const { return std::uint64_t{advert_interval_ms} * dead_intervals; }
};

// What the peer says about itself for this group.
struct PeerAdvert {
  std::uint8_t unit_id = 0;
  std::uint8_t priority = 0;  // effective; 0: cannot or will not serve (handing over)
  Role role = Role::kInit;
  bool ready = true;          // its state resync is complete
};

enum class Cause : std::uint8_t {
  kNoPeerAtStart,     // init: nobody heard for the dead interval
  kPeerActive,        // init: the peer is active already
  kWonElection,       // neither was active; this unit is the better one
  kLostElection,      // neither was active; the peer is the better one
  kPeerDead,          // both paths silent for the dead interval
  kPeerYielded,       // the active peer advertised priority 0
  kPreempt,           // preempt on: this standby is better than the active peer
  kDualActive,        // both active (a partition healed, or the peer preempted); the peer wins
  kTrackingDegraded,  // this active's priority fell below a ready standby's
  kManualFailover,    // the operator handed over
  kMaintenanceOn,
  kMaintenanceOff,
};
const char* to_string(Cause c);

struct Transition {
  Role from = Role::kInit;
  Role to = Role::kInit;
  Cause cause = Cause::kNoPeerAtStart;
  std::uint64_t at_ms = 0;
  // kPeerDead: how long the peer had been silent on its last live path when this unit saw it
  // dead (the detection time); 0 otherwise.
  std::uint64_t silent_ms = 0;
};

// A path's alarm: raised when it falls silent while the other path still hears the peer,
// cleared when it hears the peer again (or when the peer is dead: then it is a failover).
struct PathAlarm {
  Path path = Path::kSync;
  bool raised = false;
  std::uint64_t at_ms = 0;
};

// What one call produced.
struct Step {
  std::optional<Transition> transition;
  // This unit stays active against a peer that claimed the group too (both active, this one
  // better): the peer's gratuitous ARP may have moved the neighbours to it, so announce again.
  bool reassert = false;
  std::vector<PathAlarm> alarms;
  std::string refused;  // an operator request that could not be honoured, and why
};

class Election {
 public:
  Election(const ElectionConfig& config, std::uint64_t now_ms);

  Step on_advert(Path path, const PeerAdvert& advert, std::uint64_t now_ms);
  // Call at next_deadline_ms() at the latest (and as often as convenient).
  Step on_tick(std::uint64_t now_ms);
  // Tracking: the effective priority (0..configured). 0: this unit cannot serve the group.
  Step set_priority(std::uint8_t effective, std::uint64_t now_ms);
  // Whether this unit's state resync is complete (a not-ready unit loses elections and never
  // preempts; it still takes over from a dead peer, being the only one left).
  Step set_ready(bool ready, std::uint64_t now_ms);
  // Hand the group to the peer now: refused unless active with a live peer able to serve.
  Step failover(std::uint64_t now_ms);
  Step set_maintenance(bool on, std::uint64_t now_ms);

  Role role() const { return role_; }
  // What this unit's adverts carry: 0 while handing over or in maintenance.
  std::uint8_t advertised_priority(std::uint64_t now_ms) const;
  std::uint8_t effective_priority() const { return priority_; }
  bool ready() const { return ready_; }
  bool peer_alive(std::uint64_t now_ms) const;
  bool path_alive(Path p, std::uint64_t now_ms) const;
  bool alarm(Path p) const { return alarm_[static_cast<std::size_t>(p)]; }
  const std::optional<PeerAdvert>& last_peer_advert() const { return peer_; }
  // The next time after `now_ms` at which a timer may fire: call on_tick() then (or earlier).
  // UINT64_MAX when no timer runs.
  std::uint64_t next_deadline_ms(std::uint64_t now_ms) const;
  const ElectionConfig& config() const { return config_; }

 private:
  struct Rank {
    bool ready;
    std::uint8_t priority;
    std::uint8_t unit_id;
  };
  Rank mine() const { return {ready_, priority_, config_.unit_id}; }
  static Rank of(const PeerAdvert& a) { return {a.ready, a.priority, a.unit_id}; }
  // Standby election: ready, then priority, then unit id.
  static bool better(const Rank& a, const Rank& b);
  // Two actives: priority, then unit id.
  static bool better_active(const Rank& a, const Rank& b);

  bool yielding(std::uint64_t now_ms) const { return now_ms < yield_until_ms_; }
  bool held_down(std::uint64_t now_ms) const { return changed_ && now_ms < changed_ms_ + config_.hold_down_ms; }
  void change(Step& s, Role to, Cause cause, std::uint64_t now_ms, std::uint64_t silent_ms = 0);
  // Alarms for the current path liveness; peer death handled by the caller.
  void update_alarms(Step& s, std::uint64_t now_ms);
  // The rules that depend on the peer's last advert and this unit's state.
  void evaluate(Step& s, std::uint64_t now_ms);

  ElectionConfig config_;
  Role role_ = Role::kInit;
  std::uint64_t started_ms_;
  bool changed_ = false;             // a role change happened (the hold-down runs from it)
  std::uint64_t changed_ms_ = 0;
  std::uint64_t yield_until_ms_ = 0;  // advertise priority 0 until then
  std::uint8_t priority_;
  bool ready_ = true;
  std::optional<PeerAdvert> peer_;
  Role peer_before_ = Role::kInit;  // the peer's role in the advert before the last one
  bool dual_reasserted_ = false;    // announced again for the peer's current claim
  std::array<std::optional<std::uint64_t>, kPathCount> last_heard_{};
  std::optional<std::uint64_t> first_heard_;  // the peer's first advert on any path
  std::array<bool, kPathCount> alarm_{};
};

}  // namespace tandem::ha
