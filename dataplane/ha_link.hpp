// What the HA control thread and the fast path share (controlplane/ha_service.*):
//   - which VIP groups this unit owns (one atomic word: the workers forward a group's VIP
//     traffic only while its bit is set);
//   - the advert to send on the data network: the control thread encodes and authenticates it
//     every advert interval, worker 0 sends each new one once. A hung fast path therefore stops
//     the data-path adverts, and a hung control thread stops both (the peer's decoder refuses a
//     repeated sequence number);
//   - gratuitous ARP announcements on takeover, sent by worker 0 in bursts;
//   - adverts received on the data ports, passed to the control thread through a ring.
// Nothing here blocks either side.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

#include "dataplane/net/addr.hpp"
#include "dataplane/seqlock.hpp"

struct rte_ring;

namespace tandem::dpdk {

inline constexpr std::size_t kMaxHaDatagram = 512;
inline constexpr std::size_t kMaxAnnounced = 512;

// A datagram for the control thread: an HA advert's UDP payload and the port it came in on.
struct HaDatagram {
  std::uint16_t len = 0;
  std::uint8_t port = 0;
  std::array<std::uint8_t, kMaxHaDatagram> bytes{};
};

// The advert worker 0 sends, from `port`'s primary address to `peer`.
struct HaAdvertOut {
  std::uint8_t port = 0;
  net::Ipv4Addr peer;
  std::uint16_t udp_port = 0;
  std::uint16_t len = 0;
  std::array<std::uint8_t, kMaxHaDatagram> bytes{};
};

// Addresses to announce by gratuitous ARP: `bursts` times, `interval_ms` apart.
struct Announcement {
  struct Item {
    std::uint8_t port = 0;
    net::Ipv4Addr addr;
  };
  std::uint32_t count = 0;
  std::uint32_t bursts = 0;
  std::uint32_t interval_ms = 0;
  std::array<Item, kMaxAnnounced> items{};
};

class HaLink {
 public:
  HaLink();  // throws std::runtime_error when the ring cannot be created
  ~HaLink();
  HaLink(const HaLink&) = delete;
  HaLink& operator=(const HaLink&) = delete;

  // --- control thread ---
  void set_owned_groups(std::uint64_t mask) { owned_.store(mask, std::memory_order_relaxed); }
  // Groups just given up: until `until_ms` (dpdk::monotonic_ms) the workers still forward their
  // established flows (an entry here), which clients and backends keep sending to this unit
  // until the new active's gratuitous ARP reaches them; new flows are refused.
  void set_released_groups(std::uint64_t mask, std::uint64_t until_ms) {
    released_until_.store(until_ms, std::memory_order_relaxed);
    released_.store(mask, std::memory_order_relaxed);
  }
  void publish_advert(const HaAdvertOut& a) { advert_.write(a); }
  // Returns the announcement's generation: announced_generation() reaches it once worker 0 has
  // sent its first burst.
  std::uint32_t announce(const Announcement& a) {
    announcement_.write(a);
    return announcement_.generation();
  }
  std::uint32_t announced_generation() const { return announced_.load(std::memory_order_acquire); }
  // Adverts received since the last call, at most `max`.
  unsigned receive(HaDatagram* out, unsigned max);

  // --- workers ---
  std::uint64_t owned_groups() const { return owned_.load(std::memory_order_relaxed); }
  std::uint64_t released_groups(std::uint64_t now_ms) const {
    return now_ms < released_until_.load(std::memory_order_relaxed) ? released_.load(std::memory_order_relaxed) : 0;
  }
  const Seqlocked<HaAdvertOut>& advert() const { return advert_; }
  const Seqlocked<Announcement>& announcement() const { return announcement_; }
  void mark_announced(std::uint32_t generation) { announced_.store(generation, std::memory_order_release); }
  // Any worker; false when the ring is full (the advert is lost, counted by the caller).
  bool deliver(const HaDatagram& d);

 private:
  std::atomic<std::uint64_t> owned_{~std::uint64_t{0}};
  std::atomic<std::uint64_t> released_{0};
  std::atomic<std::uint64_t> released_until_{0};
  Seqlocked<HaAdvertOut> advert_;
  Seqlocked<Announcement> announcement_;
  std::atomic<std::uint32_t> announced_{0};
  rte_ring* inbox_ = nullptr;
};

}  // namespace tandem::dpdk
