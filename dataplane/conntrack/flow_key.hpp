// The IPv4 5-tuple that names one direction of a flow, and its hash.
//
// Addresses and ports are in host byte order, like net::Ipv4Addr. The key is 16 bytes; its
// padding is explicit and always zero, so two equal keys are also equal byte for byte.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tandem::conntrack {

// Which way a packet travels relative to the connection it belongs to.
enum class FlowDir : std::uint8_t {
  kOriginal = 0,  // from the client (towards the VIP)
  kReply = 1,     // from the backend (towards the client or the unit's local address)
};

inline constexpr FlowDir opposite(FlowDir d) {
  return d == FlowDir::kOriginal ? FlowDir::kReply : FlowDir::kOriginal;
}

struct FlowKey {
  std::uint32_t src_addr = 0;
  std::uint32_t dst_addr = 0;
  std::uint16_t src_port = 0;
  std::uint16_t dst_port = 0;
  std::uint8_t proto = 0;
  std::uint8_t pad_[3] = {0, 0, 0};  // always zero; not part of equality or the hash

  // The key of the packets travelling the other way between the same two endpoints.
  constexpr FlowKey reversed() const {
    return FlowKey{.src_addr = dst_addr, .dst_addr = src_addr, .src_port = dst_port,
                   .dst_port = src_port, .proto = proto};
  }

  constexpr bool operator==(const FlowKey& o) const {
    return src_addr == o.src_addr && dst_addr == o.dst_addr && src_port == o.src_port &&
           dst_port == o.dst_port && proto == o.proto;
  }
};
static_assert(sizeof(FlowKey) == 16, "FlowKey: four per cache line, no hidden padding");

namespace detail {
// 64x64 -> 128-bit multiply folded to 64 bits (the "mum" step of wyhash): one multiply mixes
// every input bit into the middle of the product, and the fold brings them down.
inline std::uint64_t mum(std::uint64_t a, std::uint64_t b) {
  __extension__ using u128 = unsigned __int128;
  const u128 r = static_cast<u128>(a) * b;
  return static_cast<std::uint64_t>(r) ^ static_cast<std::uint64_t>(r >> 64);
}
}  // namespace detail

// Fast, deterministic for a given seed, and well mixed in every bit: the connection table takes
// its index position from the high bits and its tag from the rest. Each word is multiplied by a
// constant rather than by the other word, so no single input value (a zero factor) collapses a
// whole family of keys onto one hash. A per-process random seed makes positions unpredictable to
// senders (hash flooding); the default seed gives reproducible tests.
inline std::uint64_t flow_hash(const FlowKey& k, std::uint64_t seed = 0) {
  const std::uint64_t a = (std::uint64_t{k.src_addr} << 32) | k.dst_addr;
  const std::uint64_t b = (std::uint64_t{k.src_port} << 48) | (std::uint64_t{k.dst_port} << 32) |
                          k.proto;
  const std::uint64_t h = detail::mum(a ^ seed, 0xa0761d6478bd642full) ^ b;
  return detail::mum(h ^ 0xe7037ed1a0b428dbull, 0x8ebc6af09c88c6e3ull);
}

// For std::unordered_map and friends (tests, the control plane).
struct FlowKeyHash {
  std::size_t operator()(const FlowKey& k) const { return flow_hash(k); }
};

}  // namespace tandem::conntrack
