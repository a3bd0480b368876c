#include "controlplane/health/health_state.hpp"

#include <algorithm>
#include <utility>

namespace tandem::health {

const char* to_string(Health h) {
  switch (h) {
    case Health::kUnknown: return "unknown";
    case Health::kUp: return "up";
    case Health::kDown: return "down";
  }
  return "?";
}

HealthState::HealthState(std::uint32_t rise, std::uint32_t fall, std::uint64_t now_ms)
    : rise_(std::max(rise, 1u)), fall_(std::max(fall, 1u)), last_change_ms_(now_ms) {}

bool HealthState::record(bool ok, std::string error, std::uint64_t now_ms, std::uint32_t duration_ms) {
  ++checks_;
  last_check_ms_ = now_ms;
  last_duration_ms_ = duration_ms;
  const bool was_up = up();
  Health next = health_;
  if (ok) {
    consecutive_fail_ = 0;
    ++consecutive_ok_;
    if (health_ == Health::kUnknown || (health_ == Health::kDown && consecutive_ok_ >= rise_)) next = Health::kUp;
  } else {
    ++failures_;
    consecutive_ok_ = 0;
    ++consecutive_fail_;
    last_error_ = std::move(error);
    if (health_ != Health::kDown && consecutive_fail_ >= fall_) next = Health::kDown;
  }
  if (next != health_) {
    health_ = next;
    last_change_ms_ = now_ms;
  }
  return up() != was_up;
}

}  // namespace tandem::health
