// The IPv4 neighbour (ARP) cache of one worker: bounded, aged, no allocation after construction.
//
// States follow the kernel's neighbour cache in a reduced form:
//   incomplete  asked for, no answer yet: probed every probe_interval, dropped after max_probes
//   reachable   confirmed by an ARP message less than reachable_ms ago
//   stale       older than that; still used, and reconfirmed by probes once the fast path uses
//               it; forgotten stale_ms after its last confirmation when nobody uses it
// Time is passed in (milliseconds, any monotonic origin) so the logic is testable without clocks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "dataplane/net/addr.hpp"

namespace tandem::neigh {

struct NeighbourConfig {
  std::uint32_t capacity = 1024;
  std::uint32_t reachable_ms = 30'000;
  std::uint32_t stale_ms = 120'000;
  std::uint32_t probe_interval_ms = 1'000;
  std::uint32_t max_probes = 3;

  bool operator==(const NeighbourConfig&) const = default;
};

enum class NeighState : std::uint8_t { kFree, kIncomplete, kReachable, kStale };
const char* to_string(NeighState s);

struct NeighEntry {
  net::Ipv4Addr ip;
  net::MacAddr mac;
  NeighState state = NeighState::kFree;
  bool in_use = false;         // looked up by the fast path since it went stale
  std::uint8_t probes = 0;     // probes sent since the last confirmation
  std::uint64_t confirmed_ms = 0;
  std::uint64_t next_probe_ms = 0;
};

struct NeighStats {
  std::uint64_t created = 0;
  std::uint64_t updated = 0;
  std::uint64_t mac_changed = 0;
  std::uint64_t evicted = 0;      // an idle stale entry made room for a new one
  std::uint64_t table_full = 0;   // a new entry was refused: nothing evictable
  std::uint64_t expired = 0;      // stale and unused for stale_ms
  std::uint64_t failed = 0;       // no answer to max_probes probes

  NeighStats& operator+=(const NeighStats& o) {
    created += o.created;
    updated += o.updated;
    mac_changed += o.mac_changed;
    evicted += o.evicted;
    table_full += o.table_full;
    expired += o.expired;
    failed += o.failed;
    return *this;
  }
};

enum class LearnResult : std::uint8_t { kIgnored, kCreated, kUpdated, kTableFull };
enum class ResolveResult : std::uint8_t { kKnown, kPending, kTableFull };

class NeighbourTable {
 public:
  explicit NeighbourTable(const NeighbourConfig& config);

  // Fast path: the MAC of `ip` when it is reachable or stale, else nullptr. Using a stale entry
  // marks it for reconfirmation.
  const net::MacAddr* lookup(net::Ipv4Addr ip);

  // Like lookup(), but an unknown address gets an incomplete entry so maintain() probes it.
  ResolveResult resolve(net::Ipv4Addr ip, std::uint64_t now_ms, net::MacAddr* mac_out);

  // An ARP message says `ip` is at `mac`. Existing entries are always refreshed (RFC 826 merge);
  // a new entry is created only when `create` is set (the message was addressed to us), so
  // unsolicited traffic cannot fill the table.
  LearnResult learn(net::Ipv4Addr ip, const net::MacAddr& mac, std::uint64_t now_ms, bool create);

  // Ages entries and collects the addresses to send an ARP request for now (at most
  // probes_out.size(); the rest wait for the next call). Returns how many were written.
  std::size_t maintain(std::uint64_t now_ms, std::span<net::Ipv4Addr> probes_out);

  void remove(net::Ipv4Addr ip);

  template <typename Fn>
  void for_each(Fn&& fn) const {
    for (const auto& e : slots_)
      if (e.state != NeighState::kFree) fn(e);
  }

  const NeighEntry* find(net::Ipv4Addr ip) const;
  std::size_t size() const { return size_; }
  std::size_t capacity() const { return config_.capacity; }
  const NeighStats& stats() const { return stats_; }
  const NeighbourConfig& config() const { return config_; }

 private:
  std::size_t home_slot(net::Ipv4Addr ip) const;
  std::size_t find_slot(net::Ipv4Addr ip) const;  // slot index, or npos
  NeighEntry* insert(net::Ipv4Addr ip, std::uint64_t now_ms);
  bool evict_one();
  void erase_slot(std::size_t slot);

  static constexpr std::size_t kNpos = ~std::size_t{0};
  static constexpr std::size_t kEvictionWindow = 32;

  NeighbourConfig config_;
  std::vector<NeighEntry> slots_;  // open addressing, linear probing, load factor <= 1/2
  std::size_t mask_ = 0;
  std::size_t size_ = 0;
  std::size_t evict_cursor_ = 0;
  NeighStats stats_;
};

}  // namespace tandem::neigh
