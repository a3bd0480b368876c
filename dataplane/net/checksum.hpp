// The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
#pragma once

#include <cstddef>
#include <cstdint>

namespace tandem::net {

// One's-complement sum of `len` bytes, 16 bits at a time in network order, added to `sum`.
std::uint32_t checksum_accumulate(const std::uint8_t* data, std::size_t len, std::uint32_t sum = 0);

// Folds a 32-bit accumulator to 16 bits and complements it: the value to store in a header.
std::uint16_t checksum_finish(std::uint32_t sum);

// Checksum of a buffer, ready to store (host order value of the network-order field).
inline std::uint16_t internet_checksum(const std::uint8_t* data, std::size_t len) {
  return checksum_finish(checksum_accumulate(data, len));
}

// RFC 1624 eqn. 3: the new checksum after one 16-bit word of the covered data changed from
// `old_word` to `new_word`. HC' = ~(~HC + ~m + m').
std::uint16_t checksum_update16(std::uint16_t old_checksum, std::uint16_t old_word,
                                std::uint16_t new_word);

// The same for a 32-bit field (an IPv4 address: both its 16-bit words at once).
std::uint16_t checksum_update32(std::uint16_t old_checksum, std::uint32_t old_value,
                                std::uint32_t new_value);

}  // namespace tandem::net
