#include "dataplane/neigh/neighbour_table.hpp"

#include <algorithm>
#include <bit>

namespace tandem::neigh {

const char* to_string(NeighState s) {
  switch (s) {
    case NeighState::kFree: return "free";
    case NeighState::kIncomplete: return "incomplete";
    case NeighState::kReachable: return "reachable";
    case NeighState::kStale: return "stale";
  }
  return "unknown";
}

NeighbourTable::NeighbourTable(const NeighbourConfig& config) : config_(config) {
  config_.capacity = std::max<std::uint32_t>(config_.capacity, 1);
  const std::size_t slots = std::bit_ceil(std::size_t{config_.capacity} * 2);
  slots_.resize(slots);
  mask_ = slots - 1;
}

std::size_t NeighbourTable::home_slot(net::Ipv4Addr ip) const {
  // Fibonacci hashing spreads sequential addresses (a /24 of backends) over the table.
  return static_cast<std::size_t>((std::uint64_t{ip.value} * 0x9E3779B97F4A7C15ull) >> 32) & mask_;
}

std::size_t NeighbourTable::find_slot(net::Ipv4Addr ip) const {
  for (std::size_t i = home_slot(ip);; i = (i + 1) & mask_) {
    const NeighEntry& e = slots_[i];
    if (e.state == NeighState::kFree) return kNpos;
    if (e.ip == ip) return i;
  }
}

const NeighEntry* NeighbourTable::find(net::Ipv4Addr ip) const {
  const std::size_t s = find_slot(ip);
  return s == kNpos ? nullptr : &slots_[s];
}

const net::MacAddr* NeighbourTable::lookup(net::Ipv4Addr ip) {
  const std::size_t s = find_slot(ip);
  if (s == kNpos) return nullptr;
  NeighEntry& e = slots_[s];
  switch (e.state) {
    case NeighState::kReachable: return &e.mac;
    case NeighState::kStale: e.in_use = true; return &e.mac;
    default: return nullptr;
  }
}

ResolveResult NeighbourTable::resolve(net::Ipv4Addr ip, std::uint64_t now_ms, net::MacAddr* mac_out) {
  if (const net::MacAddr* mac = lookup(ip)) {
    if (mac_out) *mac_out = *mac;
    return ResolveResult::kKnown;
  }
  if (find_slot(ip) != kNpos) return ResolveResult::kPending;
  NeighEntry* e = insert(ip, now_ms);
  if (!e) return ResolveResult::kTableFull;
  e->state = NeighState::kIncomplete;
  e->next_probe_ms = now_ms;  // the next maintain() sends the first request
  return ResolveResult::kPending;
}

LearnResult NeighbourTable::learn(net::Ipv4Addr ip, const net::MacAddr& mac, std::uint64_t now_ms,
                                  bool create) {
  if (mac.is_multicast() || mac.is_zero()) return LearnResult::kIgnored;
  NeighEntry* e = nullptr;
  LearnResult result = LearnResult::kUpdated;
  if (const std::size_t s = find_slot(ip); s != kNpos) {
    e = &slots_[s];
    if (e->state != NeighState::kIncomplete && e->mac != mac) ++stats_.mac_changed;
    ++stats_.updated;
  } else {
    if (!create) return LearnResult::kIgnored;
    e = insert(ip, now_ms);
    if (!e) return LearnResult::kTableFull;
    result = LearnResult::kCreated;
  }
  e->mac = mac;
  e->state = NeighState::kReachable;
  e->in_use = false;
  e->probes = 0;
  e->confirmed_ms = now_ms;
  return result;
}

std::size_t NeighbourTable::maintain(std::uint64_t now_ms, std::span<net::Ipv4Addr> probes_out) {
  std::size_t n = 0;
  // Erasing shifts later entries back by one slot, so an erase re-examines the same index.
  for (std::size_t i = 0; i < slots_.size();) {
    NeighEntry& e = slots_[i];
    if (e.state == NeighState::kReachable && now_ms >= e.confirmed_ms + config_.reachable_ms) {
      e.state = NeighState::kStale;
      e.in_use = false;
      e.probes = 0;
    }
    const bool wants_probe =
        e.state == NeighState::kIncomplete || (e.state == NeighState::kStale && e.in_use);
    if (wants_probe && now_ms >= e.next_probe_ms) {
      if (e.probes >= config_.max_probes) {
        ++stats_.failed;
        erase_slot(i);
        continue;
      }
      if (n == probes_out.size()) {  // out of room: probe on a later call
        ++i;
        continue;
      }
      probes_out[n++] = e.ip;
      ++e.probes;
      e.next_probe_ms = now_ms + config_.probe_interval_ms;
    } else if (e.state == NeighState::kStale && !e.in_use &&
               now_ms >= e.confirmed_ms + config_.stale_ms) {
      ++stats_.expired;
      erase_slot(i);
      continue;
    }
    ++i;
  }
  return n;
}

void NeighbourTable::remove(net::Ipv4Addr ip) {
  if (const std::size_t s = find_slot(ip); s != kNpos) erase_slot(s);
}

NeighEntry* NeighbourTable::insert(net::Ipv4Addr ip, std::uint64_t now_ms) {
  if (size_ >= config_.capacity && !evict_one()) {
    ++stats_.table_full;
    return nullptr;
  }
  std::size_t i = home_slot(ip);
  while (slots_[i].state != NeighState::kFree) i = (i + 1) & mask_;
  slots_[i] = NeighEntry{.ip = ip, .confirmed_ms = now_ms};
  ++size_;
  ++stats_.created;
  return &slots_[i];
}

bool NeighbourTable::evict_one() {
  // Look at a bounded window so a flood of new senders costs O(1) per packet, not a full scan.
  std::size_t victim = kNpos;
  for (std::size_t k = 0; k < kEvictionWindow; ++k) {
    const std::size_t i = (evict_cursor_ + k) & mask_;
    const NeighEntry& e = slots_[i];
    if (e.state == NeighState::kStale && !e.in_use &&
        (victim == kNpos || e.confirmed_ms < slots_[victim].confirmed_ms)) {
      victim = i;
    }
  }
  evict_cursor_ = (evict_cursor_ + kEvictionWindow) & mask_;
  if (victim == kNpos) return false;
  erase_slot(victim);
  ++stats_.evicted;
  return true;
}

void NeighbourTable::erase_slot(std::size_t slot) {
  // Backward-shift deletion keeps every probe chain unbroken without tombstones.
  std::size_t hole = slot;
  for (std::size_t i = (hole + 1) & mask_; slots_[i].state != NeighState::kFree; i = (i + 1) & mask_) {
    const std::size_t home = home_slot(slots_[i].ip);
    // Move the entry into the hole unless its home lies cyclically in (hole, i].
    const bool home_between = hole <= i ? (home > hole && home <= i) : (home > hole || home <= i);
    if (!home_between) {
      slots_[hole] = slots_[i];
      hole = i;
    }
  }
  slots_[hole] = NeighEntry{};
  --size_;
}

}  // namespace tandem::neigh
