// One backend's health as its checks have shown it: rise/fall hysteresis as in keepalived and
// HAProxy. Pure: no I/O and no clock; the caller passes each check's outcome with the time.
//
// The rules:
//   - A backend starts kUnknown, which counts as up: a restart of the daemon (or a new backend)
//     must not empty the pool before the first checks have run.
//   - From kUnknown, the first success confirms it (kUp); `fall` consecutive failures take it
//     down, so failures count from the very first check.
//   - kUp goes kDown after `fall` consecutive failures; kDown goes kUp after `rise` consecutive
//     successes. Anything less (a lone failure, flapping) changes nothing.
//   - rise and fall of 0 are taken as 1 (the config refuses 0; a check must count for something).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace tandem::health {

enum class Health : std::uint8_t { kUnknown, kUp, kDown };
const char* to_string(Health h);  // "unknown", "up", "down"

class HealthState {
 public:
  HealthState(std::uint32_t rise, std::uint32_t fall, std::uint64_t now_ms);

  // One check's outcome (`error` says why it failed; ignored on success). Returns whether
  // up() changed: kUnknown -> kUp is not a change (unknown already counted as up).
  bool record(bool ok, std::string error, std::uint64_t now_ms, std::uint32_t duration_ms);

  Health health() const { return health_; }
  bool up() const { return health_ != Health::kDown; }
  std::uint32_t rise() const { return rise_; }
  std::uint32_t fall() const { return fall_; }
  std::uint32_t consecutive_ok() const { return consecutive_ok_; }
  std::uint32_t consecutive_fail() const { return consecutive_fail_; }
  std::uint64_t checks() const { return checks_; }
  std::uint64_t failures() const { return failures_; }
  // The most recent failure's text, kept after the backend recovers (it says why it flapped).
  const std::string& last_error() const { return last_error_; }
  // When health() last changed (kUnknown -> kUp included); creation time if it never did.
  std::uint64_t last_change_ms() const { return last_change_ms_; }
  std::optional<std::uint64_t> last_check_ms() const { return last_check_ms_; }
  std::uint32_t last_duration_ms() const { return last_duration_ms_; }

 private:
  std::uint32_t rise_;
  std::uint32_t fall_;
  Health health_ = Health::kUnknown;
  std::uint32_t consecutive_ok_ = 0;
  std::uint32_t consecutive_fail_ = 0;
  std::uint64_t checks_ = 0;
  std::uint64_t failures_ = 0;
  std::string last_error_;
  std::uint64_t last_change_ms_;
  std::optional<std::uint64_t> last_check_ms_;
  std::uint32_t last_duration_ms_ = 0;
};

}  // namespace tandem::health
