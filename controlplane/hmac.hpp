// HMAC-SHA256, the MAC of the HA adverts and of the state-sync messages (OpenSSL 3).
//
// OpenSSL's one-shot HMAC() fetches the digest and builds a context on every call (~2 µs for a
// 1.4 kB message, ~1.8 µs of it for a 64-byte one). The thread keeps one keyed context instead
// and re-initialises it with the same key (EVP_MAC_init with a null key), which only resets the
// state: 2–5× faster (bench_sync). A call with another key re-keys it.
#pragma once

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

namespace tandem {

inline constexpr std::size_t kHmacSha256Bytes = 32;

namespace detail {

class HmacContext {
 public:
  HmacContext() {
    mac_ = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
    if (mac_) ctx_ = EVP_MAC_CTX_new(mac_);
  }
  ~HmacContext() {
    EVP_MAC_CTX_free(ctx_);
    EVP_MAC_free(mac_);
  }
  HmacContext(const HmacContext&) = delete;
  HmacContext& operator=(const HmacContext&) = delete;

  // False when OpenSSL could not give a context (the caller falls back to HMAC()).
  bool mac(std::span<const std::uint8_t> key, std::span<const std::uint8_t> data, std::uint8_t* out) {
    if (!ctx_) return false;
    const bool same_key = keyed_ && key.size() == key_.size() && std::memcmp(key.data(), key_.data(), key.size()) == 0;
    if (same_key) {
      if (EVP_MAC_init(ctx_, nullptr, 0, nullptr) != 1) return false;
    } else {
      char digest[] = "SHA256";
      const OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                                   OSSL_PARAM_construct_end()};
      keyed_ = false;
      if (EVP_MAC_init(ctx_, key.data(), key.size(), params) != 1) return false;
      key_.assign(key.begin(), key.end());
      keyed_ = true;
    }
    std::size_t len = 0;
    return EVP_MAC_update(ctx_, data.data(), data.size()) == 1 &&
           EVP_MAC_final(ctx_, out, &len, kHmacSha256Bytes) == 1 && len == kHmacSha256Bytes;
  }

 private:
  EVP_MAC* mac_ = nullptr;
  EVP_MAC_CTX* ctx_ = nullptr;
  std::vector<std::uint8_t> key_;
  bool keyed_ = false;
};

}  // namespace detail

// Writes the kHmacSha256Bytes MAC of `data` under `key` to `out`.
inline void hmac_sha256(std::span<const std::uint8_t> key, std::span<const std::uint8_t> data, std::uint8_t* out) {
  thread_local detail::HmacContext context;
  if (context.mac(key, data, out)) return;
  unsigned len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), data.data(), data.size(), out, &len);
}

}  // namespace tandem
