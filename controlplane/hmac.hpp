// HMAC-SHA256, the MAC of the HA adverts and of the state-sync messages (OpenSSL).
#pragma once

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstddef>
#include <cstdint>
#include <span>

namespace tandem {

inline constexpr std::size_t kHmacSha256Bytes = 32;

// Writes the kHmacSha256Bytes MAC of `data` under `key` to `out`.
inline void hmac_sha256(std::span<const std::uint8_t> key, std::span<const std::uint8_t> data, std::uint8_t* out) {
  unsigned len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), data.data(), data.size(), out, &len);
}

}  // namespace tandem
