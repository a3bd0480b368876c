// `tandemctl ha drill`: a controlled failover of a live pair, measured. Run on the active unit:
// it checks that a failover now would lose nothing it can know of (the peer alive and ready,
// holding this unit's table), hands its groups to the peer (the graceful `ha failover`), and
// measures until the peer's adverts claim them, with how many connections this unit held and
// how many of their changes the peer had not acked at the handover (the RPO of that moment).
// Results go to the caller, the log and /metrics (the last drill and counts). Periodic drills
// are how an operator knows the pair would survive the real thing (docs/operations.md).
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace tandem {

struct Runtime;

// What /metrics shows of the drills run since start.
class DrillLog {
 public:
  void record(const nlohmann::json& result, bool ok);
  struct Snapshot {
    std::uint64_t ok = 0, failed = 0;
    std::optional<nlohmann::json> last;
  };
  Snapshot snapshot() const;

 private:
  mutable std::mutex mutex_;
  Snapshot s_;
};

// The connections this unit's workers hold (their last published counts: up to 200 ms old).
std::uint64_t connections_held(const Runtime& rt);

// Runs a drill; waits at most `timeout_ms` for the peer to claim the groups. Empty `why` and
// the result, or `why` the drill was refused (nothing was changed then).
nlohmann::json run_drill(Runtime& rt, DrillLog& log, std::uint64_t timeout_ms, std::string& why);

}  // namespace tandem
