#include "dataplane/net/checksum.hpp"

#include "dataplane/net/byteorder.hpp"

namespace tandem::net {

std::uint32_t checksum_accumulate(const std::uint8_t* data, std::size_t len, std::uint32_t sum) {
  // 64-bit accumulator: no carry handling inside the loop for any frame-sized buffer.
  std::uint64_t acc = sum;
  std::size_t i = 0;
  for (; i + 1 < len; i += 2) acc += load_be16(data + i);
  if (i < len) acc += static_cast<std::uint32_t>(data[i]) << 8;  // odd byte, zero padded
  while (acc >> 32) acc = (acc & 0xffffffffu) + (acc >> 32);
  return static_cast<std::uint32_t>(acc);
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

}  // namespace tandem::net
