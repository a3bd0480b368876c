// What the fast path does with frames addressed to the unit itself: ARP for its addresses,
// ICMP echo, neighbour learning. Pure logic over a frame buffer, so it is tested byte for byte
// without DPDK; the worker calls it per frame and acts on the result.
#pragma once

#include <array>
#include <cstdint>

#include "dataplane/counters.hpp"
#include "dataplane/neigh/neighbour_table.hpp"
#include "dataplane/net/addr.hpp"

namespace tandem {

inline constexpr std::size_t kMaxLocalAddrs = 8;

// The addresses one data port answers for.
inline constexpr std::size_t kMaxFloatingAddrs = 256;

struct LocalInterface {
  net::MacAddr mac;
  std::array<net::Ipv4Prefix, kMaxLocalAddrs> prefixes{};
  std::uint8_t count = 0;
  // Addresses this port answers ARP and ICMP echo for while the unit owns their HA group: VIPs
  // (on ports facing clients) and floating addresses. Sorted, so owns() is a binary search.
  std::array<std::uint32_t, kMaxFloatingAddrs> floating{};
  std::uint16_t floating_count = 0;
  // UDP port of the HA adverts addressed to this port's addresses (handed to the control
  // thread); 0: none.
  std::uint16_t ha_udp_port = 0;

  bool add(const net::Ipv4Prefix& p) {
    if (count == kMaxLocalAddrs) return false;
    prefixes[count++] = p;
    return true;
  }
  // Adds a floating address, keeping the list sorted and distinct; false when full.
  bool add_floating(net::Ipv4Addr a);
  bool owns_primary(net::Ipv4Addr a) const {
    for (std::uint8_t i = 0; i < count; ++i)
      if (prefixes[i].addr == a) return true;
    return false;
  }
  bool owns_floating(net::Ipv4Addr a) const;
  bool owns(net::Ipv4Addr a) const { return owns_primary(a) || (floating_count != 0 && owns_floating(a)); }
  bool is_subnet_broadcast(net::Ipv4Addr a) const {
    for (std::uint8_t i = 0; i < count; ++i)
      if (prefixes[i].length < 31 && prefixes[i].broadcast() == a) return true;
    return false;
  }
};

// A neighbour an ARP message taught, for the worker to share with its peers.
struct LearntNeighbour {
  net::Ipv4Addr ip;
  net::MacAddr mac;
};

// Four bytes, returned in a register: the per-frame verdict must not go through memory.
struct LocalResult {
  enum class Action : std::uint8_t {
    kTransmit,  // the frame was rewritten in place: send it back out of the same port
    kConsume,   // handled, nothing to send: free it
    kDrop,      // free it and count `reason`
    kPunt,      // an HA advert (UDP to ha_udp_port): its payload goes to the control thread
  };
  Action action = Action::kDrop;
  DropReason reason = DropReason::kCount;
  Handled event = Handled::kCount;  // set with kTransmit/kConsume
  bool learnt = false;              // `learnt` (below) was written: share it with peers
};
static_assert(sizeof(LocalResult) == 4);

// The UDP payload of a frame handle_local_frame() punted: offset and length in the frame.
struct PuntedPayload {
  std::uint32_t offset = 0;
  std::uint32_t len = 0;
};
PuntedPayload punted_payload(const std::uint8_t* frame);

LocalResult handle_local_frame(std::uint8_t* frame, std::uint32_t len, const LocalInterface& itf,
                               neigh::NeighbourTable& neighbours, std::uint64_t now_ms,
                               LearntNeighbour& learnt);

}  // namespace tandem
