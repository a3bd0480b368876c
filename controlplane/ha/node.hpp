// One unit's side of the HA protocol, pure (no sockets, no clock): an election per VIP group,
// the advert decoder and encoder, and the advert schedule. The caller (controlplane/ha_service)
// moves bytes and time in and acts on the events that come out: take or release groups, raise
// or clear path alarms. Two Nodes wired together in a test are a pair of units.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "controlplane/ha/advert.hpp"
#include "controlplane/ha/election.hpp"

namespace tandem::ha {

struct NodeConfig {
  std::uint8_t unit_id = 1;
  bool preempt = false;
  std::uint32_t advert_interval_ms = 10;
  std::uint32_t dead_intervals = 3;
  std::uint32_t hold_down_ms = 1000;
  struct Group {
    std::uint8_t id = 1;
    std::uint8_t priority = 100;  // configured, 1..255
  };
  std::vector<Group> groups;  // at least one
  std::vector<std::uint8_t> key;
};

struct NodeEvent {
  // kReassert: this unit stays active for `group` against a peer that claimed it too.
  enum class Kind : std::uint8_t { kTransition, kAlarm, kReassert };
  Kind kind = Kind::kTransition;
  std::uint8_t group = 0;  // kTransition, kReassert
  Transition transition;   // kTransition
  PathAlarm alarm;         // kAlarm (for the unit, not per group)
};

class Node {
 public:
  Node(const NodeConfig& config, std::uint64_t epoch, std::uint64_t now_ms);

  // An advert received on `path`: checked by the decoder (refusals counted there), then given
  // to every group's election. False when refused (`error` says why).
  bool receive(Path path, std::span<const std::uint8_t> message, std::uint64_t now_ms,
               AdvertError* error = nullptr);
  // Runs the timers; call at next_deadline_ms() at the latest.
  void tick(std::uint64_t now_ms);
  // The next advert (the same bytes go on both paths). Call when next_advert_ms() is due.
  void build_advert(std::uint64_t now_ms, std::vector<std::uint8_t>& out);
  std::uint64_t next_advert_ms() const { return next_advert_ms_; }
  // The earliest of the next advert and every election's timers.
  std::uint64_t next_deadline_ms(std::uint64_t now_ms) const;

  // Tracking: every group's effective priority becomes its configured one less `penalty`
  // (at least 1), or 0 when `fault` (this unit cannot serve).
  void set_tracking(std::uint32_t penalty, bool fault, std::uint64_t now_ms);
  void set_ready(bool ready, std::uint64_t now_ms);
  // Hands every group this unit is active for to the peer. Empty when at least one group was
  // handed over; otherwise why nothing was.
  std::string failover(std::uint64_t now_ms);
  void set_maintenance(bool on, std::uint64_t now_ms);

  // What happened since the last call.
  std::vector<NodeEvent> take_events();
  // Bit g set: this unit is active for group g.
  std::uint64_t owned_mask() const;

  std::size_t group_count() const { return elections_.size(); }
  std::uint8_t group_id(std::size_t i) const { return config_.groups[i].id; }
  const Election& election(std::size_t i) const { return elections_[i]; }
  const Decoder& decoder() const { return decoder_; }
  const NodeConfig& config() const { return config_; }
  std::uint64_t epoch() const { return epoch_; }
  std::uint64_t sequence() const { return sequence_; }
  // The peer's unit id (0 before its first accepted advert) and its last advert per path.
  std::uint8_t peer_unit_id() const { return peer_unit_id_; }
  bool peer_ready() const { return peer_ready_; }
  std::uint64_t accepted(Path p) const { return accepted_[static_cast<std::size_t>(p)]; }

 private:
  void absorb(std::size_t group_index, const Step& s);

  NodeConfig config_;
  std::uint64_t epoch_;
  std::uint64_t sequence_ = 0;
  std::uint64_t next_advert_ms_;
  Decoder decoder_;
  std::vector<Election> elections_;
  std::vector<NodeEvent> events_;
  std::uint8_t peer_unit_id_ = 0;
  bool peer_ready_ = false;
  std::array<std::uint64_t, kPathCount> accepted_{};
};

}  // namespace tandem::ha
