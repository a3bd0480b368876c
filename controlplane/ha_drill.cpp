#include "controlplane/ha_drill.hpp"

#include <chrono>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>

#include "controlplane/conn_queries.hpp"
#include "controlplane/ha_service.hpp"
#include "controlplane/runtime.hpp"
#include "controlplane/sync_service.hpp"

namespace tandem {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

std::uint64_t num(const json& v) { return v.is_number_unsigned() ? v.get<std::uint64_t>() : 0; }

// The groups of `status` (ha status JSON) whose role here is `role`.
std::vector<std::uint64_t> groups_with_role(const json& status, const char* role) {
  std::vector<std::uint64_t> ids;
  for (const auto& g : status["groups"])
    if (g.value("role", "") == role) ids.push_back(g.value("id", 0u));
  return ids;
}

const json* group(const json& status, std::uint64_t id) {
  for (const auto& g : status["groups"])
    if (g.value("id", 0u) == id) return &g;
  return nullptr;
}

}  // namespace

void DrillLog::record(const json& result, bool ok) {
  std::lock_guard lock(mutex_);
  ++(ok ? s_.ok : s_.failed);
  s_.last = result;
}

DrillLog::Snapshot DrillLog::snapshot() const {
  std::lock_guard lock(mutex_);
  return s_;
}

std::uint64_t connections_held(const Runtime& rt) {
  std::uint64_t n = 0;
  for (const auto& w : rt.workers) {
    auto& snap = w->neighbour_snapshot();
    std::lock_guard lock(snap.mutex);
    n += snap.connections;
  }
  return n;
}

json run_drill(Runtime& rt, DrillLog& log, std::uint64_t timeout_ms, std::string& why) {
  if (!rt.ha) {
    why = "high availability is not configured ([ha])";
    return {};
  }
  const json before = rt.ha->status();
  const std::vector<std::uint64_t> groups = groups_with_role(before, "active");
  if (groups.empty()) {
    why = "this unit is active for no group: run the drill on the active unit";
    return {};
  }
  const json& peer = before["peer"];
  if (!peer.value("alive", false)) {
    why = "the peer is not alive: a failover now would leave no unit";
    return {};
  }
  if (!peer.value("ready", false)) {
    why = "the peer is not ready (it has no complete copy of this unit's connections): a failover now would lose them";
    return {};
  }
  // The moment of the handover: what this unit holds, and what the peer has not acked yet.
  const json sync = rt.sync ? rt.sync->status() : json{{"enabled", false}};
  std::uint64_t held = 0;  // counted in the workers (the published counts lag by up to 200 ms)
  for (const auto& q : run_query(rt, conntrack::ConnQueryOp::kCount, {}, 0).per_worker) held += q ? q->matched : 0;
  const std::uint64_t unacked = rt.sync ? num(sync["lag"]["entries"]) : held;
  const auto t0 = Clock::now();
  why = rt.ha->failover();
  if (!why.empty()) return {};

  // Poll the peer's adverts as this unit's HA thread receives them.
  std::optional<double> released_ms, peer_active_ms;
  json after;
  while (ms_since(t0) < static_cast<double>(timeout_ms)) {
    after = rt.ha->status();
    bool released = true, claimed = true;
    for (const auto id : groups) {
      const json* g = group(after, id);
      released = released && g && g->value("role", "") != "active";
      claimed = claimed && g && g->value("peer_role", "") == "active";
    }
    if (released && !released_ms) released_ms = ms_since(t0);
    if (claimed) {
      peer_active_ms = ms_since(t0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  const bool ok = peer_active_ms.has_value();
  const auto rounded = [](std::optional<double> v) { return v ? json(std::round(*v * 10) / 10) : json(nullptr); };
  json result{{"result", ok ? "ok" : "timeout"},
              {"groups", groups},
              {"peer_unit", peer.value("unit_id", 0u)},
              {"released_ms", rounded(released_ms)},
              {"peer_active_ms", rounded(peer_active_ms)},
              {"connections_held", held},
              {"replicated", rt.sync ? json(held > unacked ? held - unacked : 0) : json(nullptr)},
              {"unacked_at_handover", unacked},
              {"lag_ms_at_handover", rt.sync ? json(num(sync["lag"]["ms"])) : json(nullptr)},
              {"sync", rt.sync ? sync.value("mode", "") : std::string("off")},
              {"crash_detection_ms", before.value("dead_interval_ms", 0u)}};
  log.record(result, ok);
  if (ok)
    spdlog::warn("ha: drill: groups handed to unit {}: released in {} ms, the peer active {} ms after the request; "
                 "{} connection(s) held, {} change(s) not yet acked by the peer at the handover",
                 peer.value("unit_id", 0u), result["released_ms"].dump(), result["peer_active_ms"].dump(), held, unacked);
  else
    spdlog::error("ha: drill: the peer did not claim the groups within {} ms (it may still): check `ha status` on both",
                  timeout_ms);
  return result;
}

}  // namespace tandem
