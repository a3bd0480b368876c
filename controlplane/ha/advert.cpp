#include "controlplane/ha/advert.hpp"

#include <openssl/crypto.h>

#include <algorithm>
#include <cstring>

#include "controlplane/hmac.hpp"
#include "dataplane/net/byteorder.hpp"

namespace tandem::ha {
namespace {

constexpr std::uint8_t kMagic[4] = {'T', 'D', 'H', 'A'};
constexpr std::uint8_t kFlagReady = 0x01;

}  // namespace

const char* to_string(AdvertError e) {
#define TANDEM_NAME_ITEM(id, name) \
  case AdvertError::id:            \
    return name;
  switch (e) {
    TANDEM_ADVERT_ERRORS(TANDEM_NAME_ITEM)
    case AdvertError::kCount: break;
  }
#undef TANDEM_NAME_ITEM
  return "?";
}

// Layout (docs/ha-protocol.md), network byte order:
//   0  magic "TDHA"      4  version      5  unit id     6  flags (bit 0: ready)   7  reserved 0
//   8  epoch (8)        16  sequence (8) 24  group count (2)  26  reserved 0 (6)
//   32 groups, 4 bytes each: group id, priority, role, reserved 0
//   then HMAC-SHA256 (32) over everything before it.
void encode(const Advert& a, std::span<const std::uint8_t> key, std::vector<std::uint8_t>& out) {
  const std::size_t n = std::min(a.groups.size(), kMaxAdvertGroups);
  const std::size_t start = out.size();
  out.resize(start + kAdvertHeaderBytes + n * kAdvertGroupBytes + kAdvertMacBytes, 0);
  std::uint8_t* p = out.data() + start;
  std::memcpy(p, kMagic, 4);
  p[4] = kAdvertVersion;
  p[5] = a.unit_id;
  p[6] = a.ready ? kFlagReady : 0;
  net::store_be64(p + 8, a.epoch);
  net::store_be64(p + 16, a.sequence);
  net::store_be16(p + 24, static_cast<std::uint16_t>(n));
  for (std::size_t i = 0; i < n; ++i) {
    std::uint8_t* g = p + kAdvertHeaderBytes + i * kAdvertGroupBytes;
    g[0] = a.groups[i].group;
    g[1] = a.groups[i].priority;
    g[2] = static_cast<std::uint8_t>(a.groups[i].role);
  }
  const std::size_t body = kAdvertHeaderBytes + n * kAdvertGroupBytes;
  hmac_sha256(key, {p, body}, p + body);
}

Decoder::Decoder(std::uint8_t my_unit_id, std::span<const std::uint8_t> key)
    : my_unit_id_(my_unit_id), key_(key.begin(), key.end()) {}

std::optional<Advert> Decoder::fail(AdvertError e, AdvertError* out) {
  ++errors_[static_cast<std::size_t>(e)];
  if (out) *out = e;
  return std::nullopt;
}

std::optional<Advert> Decoder::decode(Path path, std::span<const std::uint8_t> m, AdvertError* error) {
  if (m.size() < kAdvertHeaderBytes + kAdvertMacBytes) return fail(AdvertError::kTooShort, error);
  const std::uint8_t* p = m.data();
  if (std::memcmp(p, kMagic, 4) != 0) return fail(AdvertError::kBadMagic, error);
  if (p[4] != kAdvertVersion) return fail(AdvertError::kBadVersion, error);
  const std::size_t n = net::load_be16(p + 24);
  if (n > kMaxAdvertGroups || m.size() != kAdvertHeaderBytes + n * kAdvertGroupBytes + kAdvertMacBytes)
    return fail(AdvertError::kBadLength, error);
  // Authenticate before believing any field.
  const std::size_t body = m.size() - kAdvertMacBytes;
  std::uint8_t mac[kAdvertMacBytes];
  hmac_sha256(key_, m.first(body), mac);
  if (CRYPTO_memcmp(mac, p + body, kAdvertMacBytes) != 0) return fail(AdvertError::kBadAuth, error);

  if ((p[6] & ~kFlagReady) != 0 || p[7] != 0 || std::any_of(p + 26, p + 32, [](std::uint8_t b) { return b != 0; }))
    return fail(AdvertError::kBadField, error);
  Advert a;
  a.unit_id = p[5];
  a.ready = (p[6] & kFlagReady) != 0;
  a.epoch = net::load_be64(p + 8);
  a.sequence = net::load_be64(p + 16);
  if (a.unit_id == 0) return fail(AdvertError::kBadField, error);
  if (a.unit_id == my_unit_id_) return fail(AdvertError::kOwnUnit, error);
  a.groups.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint8_t* g = p + kAdvertHeaderBytes + i * kAdvertGroupBytes;
    if (g[2] > static_cast<std::uint8_t>(Role::kMaintenance) || g[3] != 0) return fail(AdvertError::kBadField, error);
    a.groups.push_back({g[0], g[1], static_cast<Role>(g[2])});
  }

  const std::size_t pi = static_cast<std::size_t>(path);
  if (std::find(retired_.begin(), retired_.begin() + static_cast<std::ptrdiff_t>(n_retired_), a.epoch) !=
      retired_.begin() + static_cast<std::ptrdiff_t>(n_retired_))
    return fail(AdvertError::kReplayed, error);
  if (epoch_ && *epoch_ == a.epoch) {
    if (seen_[pi] && a.sequence <= last_sequence_[pi]) return fail(AdvertError::kReplayed, error);
  } else {
    // The peer (re)started: its previous epoch is never accepted again.
    if (epoch_) {
      if (n_retired_ == kRetiredEpochs) {
        std::move(retired_.begin() + 1, retired_.end(), retired_.begin());
        --n_retired_;
      }
      retired_[n_retired_++] = *epoch_;
    }
    epoch_ = a.epoch;
    seen_ = {};
  }
  seen_[pi] = true;
  last_sequence_[pi] = a.sequence;
  ++accepted_;
  return a;
}

}  // namespace tandem::ha
