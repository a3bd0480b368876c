// tandemd's HA control plane: a thread of its own that runs this unit's side of the protocol
// (ha/node.hpp) over the two paths and applies what the elections decide.
//   - Sync path: adverts over UDP on the sync link (a kernel netdev), sent and received here.
//   - Data path: the same advert bytes handed to worker 0 to send from the data port; adverts
//     the workers receive come back through the HaLink ring.
//   - A group won: the workers forward its VIP traffic at once (HaLink owned mask), answer ARP
//     for its VIPs and floating addresses (the ports' local tables, RCU), and worker 0 sends
//     gratuitous ARP bursts; the takeover time runs until the first burst is out. A group lost:
//     the same in reverse, forwarding first.
//   - Tracking (link, gateway, pool health) sets the effective priority.
// Every role change is logged, counted by cause and kept (last 64) with its detection and
// takeover times, for `tandemctl ha status` and the metrics.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "controlplane/ha/node.hpp"

namespace tandem {

struct Runtime;

// One role change of one group, as kept for the status and metrics.
struct RoleChange {
  std::uint64_t id = 0;  // increasing
  std::uint8_t group = 0;
  ha::Role from = ha::Role::kInit;
  ha::Role to = ha::Role::kInit;
  ha::Cause cause = ha::Cause::kNoPeerAtStart;
  std::int64_t unix_ms = 0;           // when it happened (wall clock)
  std::uint64_t detection_ms = 0;     // peer_dead: how long the peer had been silent
  std::optional<std::uint64_t> takeover_ms;  // to active: until the first gratuitous ARP went out
};

// Figures for /metrics, copied under the service's lock.
struct HaMetrics {
  struct Group {
    std::uint8_t id = 0;
    ha::Role role = ha::Role::kInit;
    std::uint8_t priority = 0, effective_priority = 0;
  };
  std::vector<Group> groups;
  std::array<bool, ha::kPathCount> path_alive{};
  std::array<bool, ha::kPathCount> path_alarm{};
  std::array<std::uint64_t, ha::kPathCount> adverts_sent{};
  std::array<std::uint64_t, ha::kPathCount> adverts_received{};
  std::array<std::uint64_t, ha::kAdvertErrorCount> advert_errors{};
  std::map<std::string, std::uint64_t> transitions;  // by "cause"
  std::optional<RoleChange> last_takeover;
  std::uint64_t tracking_failed = 0;  // tracked objects failing now
};

class HaService {
 public:
  // Reads the key, binds the sync socket; nullptr and `error` when it cannot. rt.ha_link must
  // exist (created before the workers).
  static std::unique_ptr<HaService> open(Runtime& rt, std::string& error);
  ~HaService();  // joins the thread (it ends with rt.stop)
  HaService(const HaService&) = delete;
  HaService& operator=(const HaService&) = delete;

  void start();

  // From any thread (ctl, metrics).
  nlohmann::json status() const;
  HaMetrics metrics() const;
  // Empty when done, else why not.
  std::string failover();
  std::string set_maintenance(bool on);

 private:
  explicit HaService(Runtime& rt);
  void run();
  std::uint64_t now_ms() const;
  void send_advert(std::uint64_t now);
  void receive_sync(std::uint64_t now);
  void receive_data(std::uint64_t now);
  void accept(ha::Path path, const std::uint8_t* data, std::size_t len, std::uint64_t now);
  void update_tracking(std::uint64_t now);
  // Applies the node's events: ownership, announcements, logs, records. Hold mutex_.
  void apply_events(std::uint64_t now);
  void apply_ownership(std::uint64_t mask, std::uint64_t gained, std::uint64_t now);
  // Gratuitous ARP bursts for the groups' addresses (worker 0 sends them); how many addresses.
  std::uint32_t announce(std::uint64_t groups, std::uint64_t now);
  void check_announced(std::uint64_t now);

  Runtime& rt_;
  int sync_fd_ = -1;
  std::vector<std::uint8_t> key_;
  mutable std::mutex mutex_;  // node_ and everything recorded below
  std::unique_ptr<ha::Node> node_;
  std::uint64_t owned_ = 0;
  std::deque<RoleChange> history_;
  std::map<std::string, std::uint64_t> by_cause_;
  std::optional<RoleChange> last_takeover_;
  // A takeover waiting for worker 0's first gratuitous ARP burst: its announcement's generation
  // and the index of its record.
  struct PendingTakeover {
    std::uint32_t generation = 0;
    std::uint64_t started_ms = 0;
    std::vector<std::uint64_t> records;  // RoleChange ids
  };
  std::uint64_t next_record_id_ = 1;
  std::optional<PendingTakeover> pending_;
  std::array<std::uint64_t, ha::kPathCount> sent_{};
  std::uint64_t sync_send_errors_ = 0;
  struct Tracked {
    std::string name;  // "link north0"
    bool ok = true;
    std::uint8_t weight = 0;
  };
  std::vector<Tracked> tracked_;
  std::uint64_t next_tracking_ms_ = 0;
  std::chrono::steady_clock::time_point epoch_clock_ = std::chrono::steady_clock::now();
  std::thread thread_;
};

}  // namespace tandem
