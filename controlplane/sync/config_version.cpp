#include "controlplane/sync/config_version.hpp"

#include <algorithm>

namespace tandem::sync {

std::uint64_t config_digest_of(std::string_view text) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : text) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

const char* to_string(ConfigRelation r) {
  switch (r) {
    case ConfigRelation::kSame: return "same";
    case ConfigRelation::kNewer: return "newer";
    case ConfigRelation::kOlder: return "older";
    case ConfigRelation::kConflict: return "conflict";
  }
  return "?";
}

ConfigRelation compare(const ConfigVersion& mine, const ConfigVersion& theirs) {
  if (mine.digest == theirs.digest) return ConfigRelation::kSame;
  const bool covers = mine.own >= theirs.own && mine.peer >= theirs.peer;
  const bool covered = theirs.own >= mine.own && theirs.peer >= mine.peer;
  if (covers && !covered) return ConfigRelation::kNewer;
  if (covered && !covers) return ConfigRelation::kOlder;
  return ConfigRelation::kConflict;  // concurrent changes, or equal counters and other contents
}

ConfigVersion as_received(const ConfigRecord& r) { return {r.digest, r.peer, r.own}; }

ConfigRecord as_sent(const ConfigVersion& v, std::uint32_t push_id) {
  return {.push_id = push_id, .digest = v.digest, .own = v.own, .peer = v.peer};
}

std::optional<ConfigRelation> ConfigVersions::relation() const {
  if (!peer_) return std::nullopt;
  return compare(mine_, *peer_);
}

bool ConfigVersions::services_changed(std::uint64_t digest) {
  if (adopting_ && adopting_->digest == digest) {
    const bool changed = !(mine_ == *adopting_);
    mine_ = *adopting_;
    adopting_.reset();
    return changed;
  }
  adopting_.reset();
  if (!known_) {  // the services the unit started with: its file, not a change
    known_ = true;
    mine_.digest = digest;
    return true;
  }
  if (digest == mine_.digest) return false;
  mine_.digest = digest;
  mine_.own = std::max(mine_.own, peer_ ? peer_->own : 0) + 1;
  return true;
}

void ConfigVersions::peer_announced(const ConfigRecord& r) {
  ConfigVersion theirs = as_received(r);
  if (theirs.digest == mine_.digest) {
    mine_.own = std::max(mine_.own, theirs.own);
    mine_.peer = std::max(mine_.peer, theirs.peer);
    theirs = mine_;  // the peer merges the same way
  }
  peer_ = theirs;
}

bool ConfigVersions::take_precedence() {
  if (!peer_) return false;
  mine_.own = std::max(mine_.own, peer_->own) + 1;
  mine_.peer = std::max(mine_.peer, peer_->peer);
  return true;
}

bool ConfigVersions::should_apply(const ConfigRecord& pushed) const {
  return compare(mine_, as_received(pushed)) == ConfigRelation::kOlder;
}

bool ConfigAssembler::begin(const ConfigRecord& head) {
  const bool abandoned = active_;
  active_ = true;
  head_ = head;
  text_.clear();
  return abandoned;
}

ConfigAssembler::Step ConfigAssembler::add(const ConfigChunk& c, const char** error) {
  const auto fail = [&](const char* why) {
    active_ = false;
    text_.clear();
    if (error) *error = why;
    return Step::kError;
  };
  if (!active_) return fail("a chunk without the push's start");
  if (c.push_id != head_.push_id) return fail("a chunk of another push");
  if (c.offset != text_.size()) return fail("a chunk out of place");
  if (c.offset == 0) total_ = c.total;
  else if (c.total != total_) return fail("the size changed");
  text_ += c.text();
  if (text_.size() < c.total) return Step::kMore;
  active_ = false;
  if (config_digest_of(text_) != head_.digest) return fail("the text does not match the push's digest");
  return Step::kComplete;
}

std::string ConfigAssembler::take_text() {
  std::string out = std::move(text_);
  text_.clear();
  return out;
}

}  // namespace tandem::sync
