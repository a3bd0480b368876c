// The HA advert: what a unit tells its peer several times per dead interval, on both paths
// (the sync link and the data network), about itself and each VIP group. The wire format is
// docs/ha-protocol.md (version 1); this is its codec, with no socket: encode() builds a
// message, Decoder checks one (length, magic, version, HMAC-SHA256 with the pre-shared key,
// replay) and counts every refusal by reason. Nothing here allocates per message after
// construction except the decoded group list.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "controlplane/ha/election.hpp"

namespace tandem::ha {

inline constexpr std::uint8_t kAdvertVersion = 1;
inline constexpr std::size_t kAdvertHeaderBytes = 32;
inline constexpr std::size_t kAdvertGroupBytes = 4;
inline constexpr std::size_t kAdvertMacBytes = 32;  // HMAC-SHA256
inline constexpr std::size_t kMaxAdvertGroups = 64;
inline constexpr std::size_t kMaxAdvertBytes =
    kAdvertHeaderBytes + kMaxAdvertGroups * kAdvertGroupBytes + kAdvertMacBytes;

struct GroupState {
  std::uint8_t group = 0;     // VIP group id
  std::uint8_t priority = 0;  // effective; 0: will not serve (handing over, maintenance)
  Role role = Role::kInit;

  bool operator==(const GroupState&) const = default;
};

struct Advert {
  std::uint8_t unit_id = 0;
  bool ready = true;           // state resync complete
  std::uint64_t epoch = 0;     // random per start of the sender: a restart is a new epoch
  std::uint64_t sequence = 0;  // increases by one per advert within an epoch
  std::vector<GroupState> groups;

  bool operator==(const Advert&) const = default;
};

// Appends the encoded advert (header, groups, HMAC over both) to `out`. `key` is the
// pre-shared key (at least 16 bytes). At most kMaxAdvertGroups groups.
void encode(const Advert& a, std::span<const std::uint8_t> key, std::vector<std::uint8_t>& out);

#define TANDEM_ADVERT_ERRORS(X)                                                  \
  X(kTooShort, "too_short")           /* shorter than a header and a MAC */     \
  X(kBadMagic, "bad_magic")                                                     \
  X(kBadVersion, "bad_version")                                                 \
  X(kBadLength, "bad_length")         /* the group count disagrees with the size */ \
  X(kBadAuth, "bad_auth")             /* HMAC mismatch: wrong key or altered */ \
  X(kBadField, "bad_field")           /* a role, flag or reserved byte out of range */ \
  X(kOwnUnit, "own_unit")             /* our own unit id: a loop, or a misconfigured peer */ \
  X(kReplayed, "replayed")            /* an epoch/sequence already seen */

#define TANDEM_ENUM_ITEM(id, name) id,
enum class AdvertError : std::uint8_t { TANDEM_ADVERT_ERRORS(TANDEM_ENUM_ITEM) kCount };
#undef TANDEM_ENUM_ITEM
inline constexpr std::size_t kAdvertErrorCount = static_cast<std::size_t>(AdvertError::kCount);
const char* to_string(AdvertError e);

// Checks adverts from the peer, keeping what replay detection needs: the peer's current epoch
// and, per path (both carry the same sequence numbers), the highest sequence accepted in it. An
// advert of another epoch is the peer restarted: accepted whatever its sequence, and the
// previous epoch joins the last kRetiredEpochs refused from then on (so a recorded advert of an
// earlier run cannot be replayed).
class Decoder {
 public:
  Decoder(std::uint8_t my_unit_id, std::span<const std::uint8_t> key);

  // The advert, or nothing (and `error` says why; the counter is incremented).
  std::optional<Advert> decode(Path path, std::span<const std::uint8_t> message, AdvertError* error = nullptr);

  const std::array<std::uint64_t, kAdvertErrorCount>& errors() const { return errors_; }
  std::uint64_t accepted() const { return accepted_; }

 private:
  std::optional<Advert> fail(AdvertError e, AdvertError* out);

  std::uint8_t my_unit_id_;
  std::vector<std::uint8_t> key_;
  static constexpr std::size_t kRetiredEpochs = 16;
  std::optional<std::uint64_t> epoch_;
  std::array<std::uint64_t, kRetiredEpochs> retired_{};
  std::size_t n_retired_ = 0;
  std::array<std::uint64_t, kPathCount> last_sequence_{};
  std::array<bool, kPathCount> seen_{};
  std::array<std::uint64_t, kAdvertErrorCount> errors_{};
  std::uint64_t accepted_ = 0;
};

}  // namespace tandem::ha
