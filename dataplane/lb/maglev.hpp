// Weighted Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable Software
// Network Load Balancer", NSDI 2016, section 3.4).
//
// A table of M slots (M prime) holds backend indexes; a new flow goes to lookup(flow_hash(...)),
// i.e. slot flow_hash % M. Each backend walks its own permutation of the slots (offset + j * skip
// mod M, both from a hash of its key) and, turn by turn, claims the next slot of its permutation
// that is still free. Removing one of N backends frees its own slots, about 1/N of the flows,
// and moves a few more because the slots filled last cascade: at M = 65537, 1.02/N for N = 10
// and 1.65/N for N = 100 (the excess, ~0.6% of the table, shrinks as M grows against N).
//
// Weights decide whose turn it is: every backend with weight > 0 takes one turn at time 0, then
// after k turns its next one comes at time (2k + 1) / w (the Sainte-Laguë divisor sequence);
// equal times go to the heavier backend, then to the smaller key. A turn
// claims exactly one slot, so the first M turns are the slot counts: an unbiased apportionment
// of M by weight, within about one slot of M * w_i / sum(w), and never zero for a backend with
// weight > 0. A backend's turn times depend only on its own weight, so adding, removing or
// reweighting one backend leaves the others' relative order intact. Equal weights give the
// paper's plain round robin. (Katran's MaglevV2 interleaves by accumulated credit instead, which
// costs a pass over all backends per round; here backends of one weight take their turns
// together and a heap orders the distinct weights, so a build is O(M log M) probing plus
// O(turn rounds * log(distinct weights)).)
//
// Determinism: two units given the same backends and size build identical tables. Keys are
// hashed with SipHash-2-4 under fixed keys, and backends are processed sorted by key (bytewise),
// so the order of the input list does not matter: slot -> key is the same for any order of the
// same backends; slot -> index refers to the caller's list.
//
// The build runs on the control thread and allocates; the table is immutable once built and is
// what gets published to the workers.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "dataplane/lb/hash.hpp"
#include "dataplane/net/addr.hpp"

namespace tandem::lb {

struct MaglevBackend {
  std::string key;            // stable identity, unique in a service; see maglev_key()
  std::uint32_t weight = 1;   // relative share of new flows; 0 = drained, gets no slots
};

// The key of a backend by address: "10.0.0.5:80". Its canonical text form is what every unit
// derives from the same config, so tables agree; the name a backend has in the config is not
// used, so renaming it does not move its flows.
std::string maglev_key(net::Ipv4Addr addr, std::uint16_t port);

inline constexpr std::uint32_t kMaglevDefaultSize = 65537;

// SipHash keys of the two permutation hashes (offset = h1(key) mod M, skip = h2(key) mod (M-1)
// + 1): 16 ASCII bytes each, fixed forever.
constexpr SipKey sip_key_from_text(const char (&text)[17]) {
  SipKey k;
  for (int i = 0; i < 8; ++i) {
    k.k0 |= std::uint64_t{static_cast<unsigned char>(text[i])} << (8 * i);
    k.k1 |= std::uint64_t{static_cast<unsigned char>(text[8 + i])} << (8 * i);
  }
  return k;
}
inline constexpr SipKey kMaglevOffsetKey = sip_key_from_text("tandem.maglev.of");
inline constexpr SipKey kMaglevSkipKey = sip_key_from_text("tandem.maglev.sk");
// The largest size accepted: the smallest prime above 2^24 (a 64 MiB table).
inline constexpr std::uint32_t kMaglevMaxSize = 16'777'259;

class MaglevTable {
 public:
  static constexpr std::uint32_t kNoBackend = UINT32_MAX;

  // The backend index (into the list the table was built from) for a flow hash, or kNoBackend
  // when no backend has weight > 0. Equal to slots()[hash % size()]; the remainder is computed
  // by multiplication (Lemire, Kaser and Kurz, "Faster Remainder by Direct Computation", 2019),
  // not a division.
  std::uint32_t lookup(std::uint32_t hash) const {
    __extension__ using u128 = unsigned __int128;
    const std::uint64_t low = mod_magic_ * hash;
    return slots_[static_cast<std::uint32_t>((static_cast<u128>(low) * size_) >> 64)];
  }

  std::uint32_t size() const { return size_; }
  std::uint32_t backend_count() const { return backend_count_; }  // length of the input list
  const std::vector<std::uint32_t>& slots() const { return slots_; }

  bool operator==(const MaglevTable& o) const { return slots_ == o.slots_ && backend_count_ == o.backend_count_; }

 private:
  friend std::optional<MaglevTable> build_maglev(std::span<const MaglevBackend>, std::uint32_t,
                                                 std::string*);
  MaglevTable(std::uint32_t size, std::uint32_t backend_count);

  std::vector<std::uint32_t> slots_;
  std::uint64_t mod_magic_ = 0;  // 2^64 / size, rounded up
  std::uint32_t size_ = 0;
  std::uint32_t backend_count_ = 0;
};

// Builds the table for `backends` with `size` slots. Fails (nullopt, reason in *error when
// error is not null) when size is not prime or above kMaglevMaxSize, when size is smaller than
// the number of backends with weight > 0, or when a key is empty or appears twice.
// No backends, or none with weight > 0, is not an error: every slot is kNoBackend (the
// service drops new flows), so draining the last backend is an ordinary change.
std::optional<MaglevTable> build_maglev(std::span<const MaglevBackend> backends,
                                        std::uint32_t size = kMaglevDefaultSize,
                                        std::string* error = nullptr);

// Deterministic primality test, exact for every 64-bit value (Miller-Rabin with the first 12
// prime bases).
bool is_prime(std::uint64_t n);

// How many slots each backend holds, indexed like the input list (for tests and metrics).
std::vector<std::uint32_t> slot_counts(const MaglevTable& table);

// The fraction of slots whose backend differs between two tables, comparing backends by key
// (so the lists may differ in order or membership). Tables of different sizes differ in every
// slot (1.0).
double changed_fraction(const MaglevTable& a, std::span<const MaglevBackend> a_backends,
                        const MaglevTable& b, std::span<const MaglevBackend> b_backends);

}  // namespace tandem::lb
