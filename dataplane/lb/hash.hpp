// Stable hashes: the same input gives the same value on every unit, build, compiler and CPU.
//
// Units that share a service must send a flow to the same backend (after a failover, and when
// N units behind ECMP each see part of a flow), so nothing here may depend on std::hash
// (implementation-defined), pointer values, seeds picked at run time or the host's byte order.
// Changing any function or constant here re-maps every flow: the golden values in
// tests/unit/test_maglev.cpp pin them, and a change must be treated as incompatible between units.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace tandem::lb {

// A SipHash key as the reference code reads it: k0 = key bytes 0..7, k1 = bytes 8..15, each
// little-endian.
struct SipKey {
  std::uint64_t k0 = 0;
  std::uint64_t k1 = 0;
};

// SipHash-2-4 (Aumasson and Bernstein, "SipHash: a fast short-input PRF", 2012), 64-bit output.
// For the control plane (backend keys); too slow for every packet.
std::uint64_t siphash24(const SipKey& key, const void* data, std::size_t len);

inline std::uint64_t siphash24(const SipKey& key, std::string_view text) {
  return siphash24(key, text.data(), text.size());
}

// MurmurHash3's 64-bit finaliser (fmix64): a bijection in which every input bit flips every
// output bit with probability about 1/2.
constexpr std::uint64_t fmix64(std::uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}

// The hash of a flow's 5-tuple that picks its Maglev slot: addresses and ports in host byte
// order (as net::Ipv4Addr::value holds them), the forward (client -> VIP) direction.
//
// Two fmix64 rounds: for a fixed address pair the ports map one-to-one before the final round,
// and the final round spreads every bit, so sequential ports or addresses do not land in
// neighbouring slots. Not keyed: every unit must compute it alike, so a client can predict
// which slot its flow hits. That only lets it pick a backend, which it could do by retrying;
// tables an attacker can fill (conntrack) use a keyed hash of their own.
// 32 bits are plenty for M <= 2^24 slots and keep the remainder a 32-bit operation.
constexpr std::uint32_t flow_hash(std::uint32_t src_ip, std::uint32_t dst_ip, std::uint16_t src_port,
                                  std::uint16_t dst_port, std::uint8_t proto) {
  const std::uint64_t addrs = (std::uint64_t{src_ip} << 32) | dst_ip;
  const std::uint64_t rest = (std::uint64_t{src_port} << 24) | (std::uint64_t{dst_port} << 8) | proto;
  // The constant keeps an all-zero tuple away from fmix64's fixed point at 0.
  return static_cast<std::uint32_t>(fmix64(fmix64(addrs ^ 0x9e3779b97f4a7c15ull) ^ rest) >> 32);
}

}  // namespace tandem::lb
