#include "controlplane/ha/node.hpp"

#include <algorithm>

namespace tandem::ha {

Node::Node(const NodeConfig& config, std::uint64_t epoch, std::uint64_t now_ms)
    : config_(config), epoch_(epoch), next_advert_ms_(now_ms), decoder_(config.unit_id, config.key) {
  elections_.reserve(config_.groups.size());
  for (const auto& g : config_.groups) {
    ElectionConfig ec{.unit_id = config_.unit_id,
                      .priority = g.priority,
                      .preempt = config_.preempt,
                      .advert_interval_ms = config_.advert_interval_ms,
                      .dead_intervals = config_.dead_intervals,
                      .hold_down_ms = config_.hold_down_ms};
    elections_.emplace_back(ec, now_ms);
  }
}

void Node::absorb(std::size_t group_index, const Step& s) {
  if (s.transition)
    events_.push_back({.kind = NodeEvent::Kind::kTransition, .group = config_.groups[group_index].id,
                       .transition = *s.transition});
  if (s.reassert) events_.push_back({.kind = NodeEvent::Kind::kReassert, .group = config_.groups[group_index].id});
  // Path liveness is the same in every group's election (they hear the same adverts at the
  // same times): the unit's alarms are the first group's.
  if (group_index == 0)
    for (const auto& a : s.alarms) events_.push_back({.kind = NodeEvent::Kind::kAlarm, .alarm = a});
}

bool Node::receive(Path path, std::span<const std::uint8_t> message, std::uint64_t now_ms, AdvertError* error) {
  const auto advert = decoder_.decode(path, message, error);
  if (!advert) return false;
  peer_unit_id_ = advert->unit_id;
  peer_ready_ = advert->ready;
  ++accepted_[static_cast<std::size_t>(path)];
  for (std::size_t i = 0; i < elections_.size(); ++i) {
    const auto it = std::find_if(advert->groups.begin(), advert->groups.end(),
                                 [&](const GroupState& g) { return g.group == config_.groups[i].id; });
    // A group the peer does not have: it cannot serve it (a configuration difference the
    // status shows), so this unit takes it.
    const PeerAdvert pa = it == advert->groups.end()
                              ? PeerAdvert{advert->unit_id, 0, Role::kStandby, advert->ready}
                              : PeerAdvert{advert->unit_id, it->priority, it->role, advert->ready};
    absorb(i, elections_[i].on_advert(path, pa, now_ms));
  }
  return true;
}

void Node::tick(std::uint64_t now_ms) {
  for (std::size_t i = 0; i < elections_.size(); ++i) absorb(i, elections_[i].on_tick(now_ms));
}

void Node::build_advert(std::uint64_t now_ms, std::vector<std::uint8_t>& out) {
  Advert a;
  a.unit_id = config_.unit_id;
  a.ready = elections_.front().ready();
  a.epoch = epoch_;
  a.sequence = ++sequence_;
  for (std::size_t i = 0; i < elections_.size(); ++i)
    a.groups.push_back({config_.groups[i].id, elections_[i].advertised_priority(now_ms), elections_[i].role()});
  out.clear();
  encode(a, config_.key, out);
  // On schedule, not from now: a late tick does not stretch every following interval.
  // The next slot of the grid after now: a late call skips the slots it missed rather than
  // shifting the grid or sending two adverts in one slot.
  do next_advert_ms_ += config_.advert_interval_ms;
  while (next_advert_ms_ <= now_ms);
}

std::uint64_t Node::next_deadline_ms(std::uint64_t now_ms) const {
  std::uint64_t next = next_advert_ms_;
  for (const auto& e : elections_) next = std::min(next, e.next_deadline_ms(now_ms));
  return next;
}

void Node::set_tracking(std::uint32_t penalty, bool fault, std::uint64_t now_ms) {
  for (std::size_t i = 0; i < elections_.size(); ++i) {
    const std::uint32_t configured = config_.groups[i].priority;
    const std::uint8_t effective =
        fault ? 0 : static_cast<std::uint8_t>(penalty >= configured ? 1 : configured - penalty);
    if (effective != elections_[i].effective_priority()) absorb(i, elections_[i].set_priority(effective, now_ms));
  }
}

void Node::set_ready(bool ready, std::uint64_t now_ms) {
  for (std::size_t i = 0; i < elections_.size(); ++i)
    if (elections_[i].ready() != ready) absorb(i, elections_[i].set_ready(ready, now_ms));
}

std::string Node::failover(std::uint64_t now_ms) {
  std::string refused;
  bool any = false;
  for (std::size_t i = 0; i < elections_.size(); ++i) {
    const Step s = elections_[i].failover(now_ms);
    if (s.transition) any = true;
    else if (refused.empty()) refused = s.refused;
    absorb(i, s);
  }
  return any ? std::string() : refused;
}

void Node::set_maintenance(bool on, std::uint64_t now_ms) {
  for (std::size_t i = 0; i < elections_.size(); ++i) absorb(i, elections_[i].set_maintenance(on, now_ms));
}

std::vector<NodeEvent> Node::take_events() {
  std::vector<NodeEvent> out;
  out.swap(events_);
  return out;
}

std::uint64_t Node::owned_mask() const {
  std::uint64_t mask = 0;
  for (std::size_t i = 0; i < elections_.size(); ++i)
    if (elections_[i].role() == Role::kActive) mask |= std::uint64_t{1} << config_.groups[i].id;
  return mask;
}

}  // namespace tandem::ha
