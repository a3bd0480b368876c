#include "controlplane/ha/election.hpp"

#include <algorithm>
#include <tuple>

namespace tandem::ha {

const char* to_string(Role r) {
  switch (r) {
    case Role::kInit: return "init";
    case Role::kStandby: return "standby";
    case Role::kActive: return "active";
    case Role::kMaintenance: return "maintenance";
  }
  return "?";
}

const char* to_string(Path p) { return p == Path::kSync ? "sync" : "data"; }

const char* to_string(Cause c) {
  switch (c) {
    case Cause::kNoPeerAtStart: return "no_peer_at_start";
    case Cause::kPeerActive: return "peer_active";
    case Cause::kWonElection: return "won_election";
    case Cause::kLostElection: return "lost_election";
    case Cause::kPeerDead: return "peer_dead";
    case Cause::kPeerYielded: return "peer_yielded";
    case Cause::kPreempt: return "preempt";
    case Cause::kDualActive: return "dual_active";
    case Cause::kTrackingDegraded: return "tracking_degraded";
    case Cause::kManualFailover: return "manual_failover";
    case Cause::kMaintenanceOn: return "maintenance_on";
    case Cause::kMaintenanceOff: return "maintenance_off";
  }
  return "?";
}

Election::Election(const ElectionConfig& config, std::uint64_t now_ms)
    : config_(config), started_ms_(now_ms), priority_(config.priority) {}

bool Election::better(const Rank& a, const Rank& b) {
  return std::tie(a.ready, a.priority, a.unit_id) > std::tie(b.ready, b.priority, b.unit_id);
}

bool Election::better_active(const Rank& a, const Rank& b) {
  return std::tie(a.priority, a.unit_id) > std::tie(b.priority, b.unit_id);
}

std::uint8_t Election::advertised_priority(std::uint64_t now_ms) const {
  if (role_ == Role::kMaintenance || yielding(now_ms)) return 0;
  return priority_;
}

bool Election::path_alive(Path p, std::uint64_t now_ms) const {
  const auto& heard = last_heard_[static_cast<std::size_t>(p)];
  return heard && now_ms < *heard + config_.dead_ms();
}

bool Election::peer_alive(std::uint64_t now_ms) const {
  return path_alive(Path::kSync, now_ms) || path_alive(Path::kData, now_ms);
}

std::uint64_t Election::next_deadline_ms(std::uint64_t now_ms) const {
  std::uint64_t next = UINT64_MAX;
  const auto consider = [&](std::uint64_t t) {
    if (t > now_ms) next = std::min(next, t);
  };
  if (role_ == Role::kInit) consider(started_ms_ + config_.dead_ms());
  if (first_heard_) consider(*first_heard_ + config_.dead_ms());  // a never-heard path's alarm
  for (const auto& heard : last_heard_)
    if (heard) consider(*heard + config_.dead_ms());
  // Rules suppressed by the hold-down or a handover apply when it ends.
  if (changed_) consider(changed_ms_ + config_.hold_down_ms);
  consider(yield_until_ms_);
  return next;
}

void Election::change(Step& s, Role to, Cause cause, std::uint64_t now_ms, std::uint64_t silent_ms) {
  s.transition = Transition{role_, to, cause, now_ms, silent_ms};
  role_ = to;
  changed_ = true;
  changed_ms_ = now_ms;
}

void Election::update_alarms(Step& s, std::uint64_t now_ms) {
  const bool any = peer_alive(now_ms);
  for (std::size_t i = 0; i < kPathCount; ++i) {
    const Path p = static_cast<Path>(i);
    // Silent while the other path hears the peer. A path never heard counts too once the peer
    // has been heard for a dead interval on the other one: a sync link cabled wrong is worth an
    // alarm, the first adverts of a starting peer (one path before the other) are not.
    const bool never = !last_heard_[i] && first_heard_ && now_ms < *first_heard_ + config_.dead_ms();
    // Only once the other path has brought an advert after this one fell silent: a peer that
    // dies falls silent on both paths a millisecond apart, which is no alarm but a failover.
    const auto& other = last_heard_[1 - i];
    const std::uint64_t expired = last_heard_[i] ? *last_heard_[i] + config_.dead_ms() : 0;
    const bool heard_since = other && *other >= expired;
    const bool raised = any && !path_alive(p, now_ms) && !never && (alarm_[i] || heard_since);
    if (raised != alarm_[i]) {
      alarm_[i] = raised;
      s.alarms.push_back({p, raised, now_ms});
    }
  }
}

void Election::evaluate(Step& s, std::uint64_t now_ms) {
  if (s.transition) return;  // one change per call; the next call sees the new role
  const bool alive = peer_alive(now_ms);

  if (role_ == Role::kMaintenance) return;

  if (!alive) {
    const bool heard_before = last_heard_[0] || last_heard_[1];
    if (role_ == Role::kStandby && heard_before) {
      std::uint64_t last = 0;
      for (const auto& h : last_heard_)
        if (h) last = std::max(last, *h);
      change(s, Role::kActive, Cause::kPeerDead, now_ms, now_ms - last);
    } else if (role_ == Role::kStandby && !heard_before) {
      // A standby that never heard a peer (it left maintenance alone): nobody serves the group.
      change(s, Role::kActive, Cause::kNoPeerAtStart, now_ms);
    } else if (role_ == Role::kInit && now_ms >= started_ms_ + config_.dead_ms()) {
      change(s, Role::kActive, Cause::kNoPeerAtStart, now_ms);
    }
    return;
  }

  const PeerAdvert& peer = *peer_;
  const bool peer_active = peer.role == Role::kActive;
  const bool peer_serves = peer.priority > 0;
  const bool i_serve = priority_ > 0 && !yielding(now_ms);

  switch (role_) {
    case Role::kInit:
    case Role::kStandby:
      if (peer_active && peer_serves) {
        // Preempt: a ready standby better than the active, once the hold-down has passed.
        if (role_ == Role::kStandby && config_.preempt && i_serve && ready_ && !held_down(now_ms) &&
            better(mine(), of(peer))) {
          change(s, Role::kActive, Cause::kPreempt, now_ms);
        } else if (role_ == Role::kInit) {
          change(s, Role::kStandby, Cause::kPeerActive, now_ms);
        }
        return;
      }
      if (peer_active && !peer_serves) {
        // The active peer hands over (or cannot serve): take the group if this unit can.
        if (i_serve) change(s, Role::kActive, Cause::kPeerYielded, now_ms);
        else if (role_ == Role::kInit) change(s, Role::kStandby, Cause::kLostElection, now_ms);
        return;
      }
      // Nobody active: the better of the two takes the group at once, the other stays standby.
      // A unit that cannot serve (or is handing over) loses; a peer in maintenance never wins.
      {
        const bool peer_can_win = peer_serves && peer.role != Role::kMaintenance;
        const bool i_win = i_serve && (!peer_can_win || better(mine(), of(peer)));
        // The peer was active and now says it will not serve: it handed over.
        const Cause cause = peer_before_ == Role::kActive && !peer_can_win ? Cause::kPeerYielded : Cause::kWonElection;
        if (i_win && (role_ == Role::kInit || !held_down(now_ms) || !peer_can_win))
          change(s, Role::kActive, cause, now_ms);
        else if (!i_win && role_ == Role::kInit)
          change(s, Role::kStandby, Cause::kLostElection, now_ms);
      }
      return;

    case Role::kActive:
      if (peer_active && peer_serves) {
        // Two actives: priority then unit id decide, the loser steps down at once. A peer that
        // preempted (it is better) wins the same way. The winner announces again, once per
        // claim of the peer: neighbours that followed the loser's announcement come back.
        if (better_active(of(peer), mine())) {
          change(s, Role::kStandby, Cause::kDualActive, now_ms);
        } else if (!dual_reasserted_) {
          s.reassert = true;
          dual_reasserted_ = true;
        }
        return;
      }
      dual_reasserted_ = false;
      // Tracking: degraded below a ready standby that can serve: hand over, preempt or not.
      if (!peer_active && peer_serves && peer.ready && peer.role == Role::kStandby && priority_ < config_.priority &&
          peer.priority > priority_) {
        change(s, Role::kStandby, Cause::kTrackingDegraded, now_ms);
        yield_until_ms_ = now_ms + config_.hold_down_ms;
      }
      return;

    case Role::kMaintenance:
      return;
  }
}

Step Election::on_advert(Path path, const PeerAdvert& advert, std::uint64_t now_ms) {
  Step s;
  last_heard_[static_cast<std::size_t>(path)] = now_ms;
  if (!first_heard_) first_heard_ = now_ms;
  peer_before_ = peer_ ? peer_->role : Role::kInit;
  peer_ = advert;
  update_alarms(s, now_ms);
  evaluate(s, now_ms);
  return s;
}

Step Election::on_tick(std::uint64_t now_ms) {
  Step s;
  update_alarms(s, now_ms);
  evaluate(s, now_ms);
  return s;
}

Step Election::set_priority(std::uint8_t effective, std::uint64_t now_ms) {
  Step s;
  priority_ = std::min(effective, config_.priority);
  // An active that can no longer serve hands over when somebody can take the group.
  if (role_ == Role::kActive && priority_ == 0 && peer_alive(now_ms) && peer_ && peer_->priority > 0 &&
      peer_->role != Role::kMaintenance) {
    change(s, Role::kStandby, Cause::kTrackingDegraded, now_ms);
    yield_until_ms_ = now_ms + config_.hold_down_ms;
    return s;
  }
  evaluate(s, now_ms);
  return s;
}

Step Election::set_ready(bool ready, std::uint64_t now_ms) {
  Step s;
  ready_ = ready;
  evaluate(s, now_ms);
  return s;
}

Step Election::failover(std::uint64_t now_ms) {
  Step s;
  if (role_ != Role::kActive) {
    s.refused = std::string("this unit is ") + to_string(role_) + ", not active";
  } else if (!peer_alive(now_ms) || !peer_) {
    s.refused = "no peer is alive to take over";
  } else if (peer_->priority == 0 || peer_->role == Role::kMaintenance) {
    s.refused = std::string("the peer cannot take over (") +
                (peer_->role == Role::kMaintenance ? "maintenance" : "priority 0") + ")";
  } else {
    change(s, Role::kStandby, Cause::kManualFailover, now_ms);
    yield_until_ms_ = now_ms + config_.hold_down_ms;
  }
  return s;
}

Step Election::set_maintenance(bool on, std::uint64_t now_ms) {
  Step s;
  if (on && role_ != Role::kMaintenance) {
    change(s, Role::kMaintenance, Cause::kMaintenanceOn, now_ms);
  } else if (!on && role_ == Role::kMaintenance) {
    change(s, Role::kStandby, Cause::kMaintenanceOff, now_ms);
  }
  return s;
}

}  // namespace tandem::ha
