// Which of the two units' services configurations is newer (docs/sync-protocol.md#config-sync),
// pure. A version is the services' digest and a version vector of two counters: the changes
// made on this unit (a reload or a ctl edit that changed the services) and the changes made on
// the peer that these services include. Comparing the vectors tells "the peer has everything I
// have and more" (it is newer: take its push) from "each has a change the other lacks" (a
// conflict: reported, never merged). Equal digests are the same configuration whatever the
// counters, which then merge.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "controlplane/sync/message.hpp"

namespace tandem::sync {

// FNV-1a, 64 bits, of the services as text: to compare configurations, not a MAC.
std::uint64_t config_digest_of(std::string_view text);

struct ConfigVersion {
  std::uint64_t digest = 0;
  std::uint64_t own = 0;   // changes made on this unit
  std::uint64_t peer = 0;  // changes made on the peer, included

  bool operator==(const ConfigVersion&) const = default;
};

enum class ConfigRelation : std::uint8_t {
  kSame,      // equal digests
  kNewer,     // mine includes every change the peer's does, and more
  kOlder,     // the peer's includes every change mine does, and more
  kConflict,  // each has a change the other lacks (or both unchanged and different)
};
const char* to_string(ConfigRelation r);

// `theirs` counted as this unit counts (own = changes made here).
ConfigRelation compare(const ConfigVersion& mine, const ConfigVersion& theirs);

// A config record (counted by its sender) as this unit counts, and back.
ConfigVersion as_received(const ConfigRecord& r);
ConfigRecord as_sent(const ConfigVersion& v, std::uint32_t push_id = 0);

// This unit's version and what it knows of the peer's.
class ConfigVersions {
 public:
  const ConfigVersion& mine() const { return mine_; }
  const std::optional<ConfigVersion>& peer() const { return peer_; }
  // Nothing known of the peer: nullopt.
  std::optional<ConfigRelation> relation() const;

  // The running services now digest to `digest`. The first ones are what the unit started with
  // (no change counted). A change made here counts one more own change (newer than every own
  // change the peer knows of, even from before a restart of this unit), unless it is the push
  // being adopted. True when the version changed.
  bool services_changed(std::uint64_t digest);
  // The peer announced its version. Equal digests merge the counters (both units do).
  void peer_announced(const ConfigRecord& r);
  void peer_restarted() { peer_.reset(); }
  // The operator says this unit's services are right: newer than anything the peer holds, so
  // they are pushed (`tandemctl sync config-push`). False when nothing is known of the peer.
  bool take_precedence();
  // A push is applied only when strictly newer than this unit's version.
  bool should_apply(const ConfigRecord& pushed) const;
  // About to apply `pushed`: the services change it brings is not a change made here.
  void adopting(const ConfigRecord& pushed) { adopting_ = as_received(pushed); }
  void adoption_failed() { adopting_.reset(); }

 private:
  bool known_ = false;  // the first services seen are the ones the unit started with
  ConfigVersion mine_;
  std::optional<ConfigVersion> peer_;
  std::optional<ConfigVersion> adopting_;
};

// Puts a pushed configuration back together from its records, in stream order.
class ConfigAssembler {
 public:
  enum class Step : std::uint8_t { kMore, kComplete, kError };
  // A push's config record: starts it (an unfinished one is abandoned: true then).
  bool begin(const ConfigRecord& head);
  // A chunk: kError (and `error`) when it does not continue the push begun; kComplete when the
  // text is whole and its digest is the head's.
  Step add(const ConfigChunk& c, const char** error);
  const ConfigRecord& head() const { return head_; }
  std::string take_text();
  bool active() const { return active_; }

 private:
  bool active_ = false;
  ConfigRecord head_;
  std::uint32_t total_ = 0;
  std::string text_;
};

}  // namespace tandem::sync
