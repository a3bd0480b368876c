#include "dataplane/net/checksum.hpp"

#include <bit>
#include <cstring>

namespace tandem::net {

std::uint32_t checksum_accumulate(const std::uint8_t* data, std::size_t len, std::uint32_t sum) {
  // The one's-complement sum does not depend on byte order (RFC 1071 section 2B): add the
  // buffer as native 32-bit words into a 64-bit accumulator, fold, and swap once at the end.
  std::uint64_t acc = 0;
  std::size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    std::uint64_t w;
    std::memcpy(&w, data + i, sizeof w);
    acc += (w & 0xffffffffu) + (w >> 32);
  }
  for (; i + 2 <= len; i += 2) {
    std::uint16_t w;
    std::memcpy(&w, data + i, sizeof w);
    acc += w;
  }
  if (i < len) {  // odd byte: the high-order byte of a zero-padded network-order word
    acc += std::endian::native == std::endian::little ? std::uint64_t{data[i]} : std::uint64_t{data[i]} << 8;
  }
  while (acc >> 16) acc = (acc & 0xffffu) + (acc >> 16);
  std::uint16_t folded = static_cast<std::uint16_t>(acc);
  if constexpr (std::endian::native == std::endian::little) folded = __builtin_bswap16(folded);
  std::uint64_t total = std::uint64_t{sum} + folded;
  while (total >> 32) total = (total & 0xffffffffu) + (total >> 32);
  return static_cast<std::uint32_t>(total);
}

std::uint16_t checksum_finish(std::uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffffu) + (sum >> 16);
  return static_cast<std::uint16_t>(~sum & 0xffffu);
}

std::uint16_t checksum_update16(std::uint16_t old_checksum, std::uint16_t old_word,
                                std::uint16_t new_word) {
  std::uint32_t sum = static_cast<std::uint16_t>(~old_checksum);
  sum += static_cast<std::uint16_t>(~old_word);
  sum += new_word;
  return checksum_finish(sum);
}

std::uint16_t checksum_update32(std::uint16_t old_checksum, std::uint32_t old_value,
                                std::uint32_t new_value) {
  std::uint32_t sum = static_cast<std::uint16_t>(~old_checksum);
  sum += static_cast<std::uint16_t>(~(old_value >> 16)) + static_cast<std::uint16_t>(~old_value & 0xffffu);
  sum += (new_value >> 16) + (new_value & 0xffffu);
  return checksum_finish(sum);
}

}  // namespace tandem::net
