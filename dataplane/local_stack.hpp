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
struct LocalInterface {
  net::MacAddr mac;
  std::array<net::Ipv4Prefix, kMaxLocalAddrs> prefixes{};
  std::uint8_t count = 0;

  bool add(const net::Ipv4Prefix& p) {
    if (count == kMaxLocalAddrs) return false;
    prefixes[count++] = p;
    return true;
  }
  bool owns(net::Ipv4Addr a) const {
    for (std::uint8_t i = 0; i < count; ++i)
      if (prefixes[i].addr == a) return true;
    return false;
  }
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
  };
  Action action = Action::kDrop;
  DropReason reason = DropReason::kCount;
  Handled event = Handled::kCount;  // set with kTransmit/kConsume
  bool learnt = false;              // `learnt` (below) was written: share it with peers
};
static_assert(sizeof(LocalResult) == 4);

LocalResult handle_local_frame(std::uint8_t* frame, std::uint32_t len, const LocalInterface& itf,
                               neigh::NeighbourTable& neighbours, std::uint64_t now_ms,
                               LearntNeighbour& learnt);

}  // namespace tandem
