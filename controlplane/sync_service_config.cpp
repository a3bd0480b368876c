// The sync thread's config sync (docs/sync-protocol.md#config-sync): each unit announces the
// version of its services (sync/config_version.hpp); the newer one is pushed as text in the
// reliable stream and the peer applies it through the same path as a reload; concurrent
// changes are a conflict, logged and shown, never merged.
#include <cstdio>

#include <spdlog/spdlog.h>

#include "controlplane/config/to_toml.hpp"
#include "controlplane/reload.hpp"
#include "controlplane/runtime.hpp"
#include "controlplane/sync_service.hpp"

namespace tandem {
namespace {

using nlohmann::json;

std::string digest_hex(std::uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

std::string describe(const sync::ConfigVersion& v) {
  return fmt::format("{} ({} change(s) here, {} on the peer)", digest_hex(v.digest), v.own, v.peer);
}

json version_json(const sync::ConfigVersion& v) {
  return {{"digest", digest_hex(v.digest)}, {"own", v.own}, {"peer", v.peer}};
}

}  // namespace

void SyncService::sync_config(std::uint64_t now) {
  // The services change only with a new service table (reload, ctl, an applied push; health
  // changes publish tables too, with the same services): digest them then.
  const std::uint64_t tables = rt_.service_tables_published.load(std::memory_order_relaxed);
  if (tables != digested_tables_) {
    std::lock_guard control(rt_.control_mutex);  // the writer holds it until the config is updated
    digested_tables_ = tables;
    config_text_ = config::services_toml(rt_.config.services);
    if (config_.services_changed(sync::config_digest_of(config_text_))) {
      config_announced_ = false;
      spdlog::info("sync: services version {}", describe(config_.mine()));
    }
  }
  if (push_requested_.exchange(false) && config_.take_precedence()) {
    config_announced_ = false;
    spdlog::warn("sync: config-push: this unit's services {} take precedence over the peer's", describe(config_.mine()));
  }
  if (!config_announced_) {
    config_announced_ =
        endpoint_->send_control(sync::MessageKind::kConfig, sync::as_sent(config_.mine()), now) == sync::AddStatus::kQueued;
    if (config_announced_) report_relation();
  }
  push_config(now);
}

void SyncService::report_relation() {
  const auto rel = config_.relation();
  if (!rel || rel == logged_relation_) return;
  logged_relation_ = rel;
  const bool push = rt_.config.sync.config == config::ConfigSyncMode::kPush;
  const std::string mine = describe(config_.mine()), theirs = describe(*config_.peer());
  switch (*rel) {
    case sync::ConfigRelation::kSame:
      spdlog::info("sync: the peer's services match this unit's (digest {})", digest_hex(config_.mine().digest));
      break;
    case sync::ConfigRelation::kNewer:
      if (push) spdlog::info("sync: this unit's services {} are newer than the peer's {}: pushing them", mine, theirs);
      else spdlog::warn("sync: the peer's services {} differ from this unit's newer {} ([sync] config = compare: not pushed)", theirs, mine);
      break;
    case sync::ConfigRelation::kOlder:
      if (push) spdlog::info("sync: the peer's services {} are newer than this unit's {}: expecting its push", theirs, mine);
      else spdlog::warn("sync: the peer's services {} are newer than this unit's {} ([sync] config = compare: not applied)", theirs, mine);
      break;
    case sync::ConfigRelation::kConflict:
      spdlog::warn("sync: CONFLICT: this unit's services {} and the peer's {} each have changes the other lacks; nothing is "
                   "merged: make them equal, or run `tandemctl sync config-push` on the unit whose services are right",
                   mine, theirs);
      break;
  }
}

void SyncService::push_config(std::uint64_t now) {
  if (rt_.config.sync.config != config::ConfigSyncMode::kPush || config_.relation() != sync::ConfigRelation::kNewer)
    return;
  const sync::ConfigVersion& peer = *config_.peer();
  if (pushed_ && pushed_->mine == config_.mine() && pushed_->peer == peer) return;  // sent; the peer answers
  const auto chunks = sync::config_chunks(++push_id_ ? push_id_ : ++push_id_, config_text_);
  // The whole push goes at once or waits: a push cut by a full window would be abandoned.
  const std::size_t per_message = std::max<std::size_t>(1, (rt_.config.sync.budget - sync::kHeaderBytes - sync::kMacBytes) /
                                                               sync::kConfigChunkBytes);
  const std::size_t messages = 2 + chunks.size() / per_message;
  if (endpoint_->in_flight() + messages + 1 > send_window_) return;
  bool queued = endpoint_->add(sync::MessageKind::kConfigPush, sync::as_sent(config_.mine(), push_id_), now) ==
                sync::AddStatus::kQueued;
  for (std::size_t i = 0; queued && i < chunks.size(); ++i)
    queued = endpoint_->add(sync::MessageKind::kConfigPush, chunks[i], now) == sync::AddStatus::kQueued;
  endpoint_->flush();
  if (!queued) {  // cannot happen with the room checked; the peer abandons the part it gets
    spdlog::error("sync: config push {:#x} cut short (send window full); trying again", push_id_);
    return;
  }
  pushed_ = Pushed{config_.mine(), peer};
  ++pushes_sent_;
  spdlog::info("sync: pushed this unit's services {} to the peer ({} bytes)", describe(config_.mine()), config_text_.size());
}

void SyncService::receive_push(const sync::Message& m) {
  for (const sync::Record& rec : m.records) {
    if (const auto* head = std::get_if<sync::ConfigRecord>(&rec)) {
      if (assembler_.begin(*head)) {
        ++push_errors_;
        last_push_error_ = "a push began before the previous one was complete";
      }
      continue;
    }
    const char* error = nullptr;
    const auto step = assembler_.add(std::get<sync::ConfigChunk>(rec), &error);
    if (step == sync::ConfigAssembler::Step::kError) {
      ++push_errors_;
      last_push_error_ = error;
      spdlog::warn("sync: config push from the peer refused: {}", error);
    } else if (step == sync::ConfigAssembler::Step::kComplete) {
      ++pushes_received_;
      const sync::ConfigRecord& head = assembler_.head();
      const sync::ConfigVersion theirs = sync::as_received(head);
      if (rt_.config.sync.config != config::ConfigSyncMode::kPush) {
        ++pushes_refused_;
        spdlog::warn("sync: the peer pushed its services {}; not applied ([sync] config = compare here)", describe(theirs));
      } else if (!config_.should_apply(head)) {
        ++pushes_refused_;
        const auto rel = sync::compare(config_.mine(), theirs);
        if (rel != sync::ConfigRelation::kSame)
          spdlog::warn("sync: CONFLICT: the peer pushed its services {}, not newer than this unit's {} ({}); not applied",
                       describe(theirs), describe(config_.mine()), sync::to_string(rel));
      } else {
        pending_push_ = PendingPush{head, assembler_.take_text()};
      }
    }
  }
}

// Outside the loop's lock: building the service tables (Maglev) takes a while, and status
// readers should not wait for it.
void SyncService::apply_push() {
  PendingPush push;
  {
    std::lock_guard lock(mutex_);
    push = std::move(*pending_push_);
    pending_push_.reset();
  }
  const sync::ConfigVersion theirs = sync::as_received(push.head);
  std::string error;
  std::size_t before = 0, after = 0;
  {
    std::lock_guard control(rt_.control_mutex);
    const std::string source = "services pushed by unit " + std::to_string(peer_unit_id_);
    auto parsed = config::parse_services(push.text, source, rt_.config);
    if (!parsed.config) {
      error = parsed.errors.front().to_string();
      if (parsed.errors.size() > 1) error += fmt::format(" (and {} more)", parsed.errors.size() - 1);
    } else if (sync::config_digest_of(config::services_toml(parsed.config->services)) != push.head.digest) {
      // Applied, it would not read back as the peer's version, and both would push forever.
      error = "the pushed services do not read back the same here (another tandemd version?)";
    } else {
      before = rt_.config.services.size();
      after = parsed.config->services.size();
      {
        std::lock_guard lock(mutex_);
        config_.adopting(push.head);
      }
      if (!apply_services(rt_, std::move(parsed.config->services), error)) {
        std::lock_guard lock(mutex_);
        config_.adoption_failed();
      }
    }
  }
  std::lock_guard lock(mutex_);
  if (error.empty()) {
    ++pushes_applied_;
    last_push_error_.clear();
    spdlog::warn("sync: applied the services pushed by the peer {}: {} -> {} service(s); this unit's configuration "
                 "file no longer says what runs (`tandemctl config show` does)",
                 describe(theirs), before, after);
  } else {
    ++push_errors_;
    last_push_error_ = error;
    spdlog::error("sync: the services pushed by the peer {} cannot be applied: {}; the running services stay",
                  describe(theirs), error);
  }
}

bool SyncService::request_config_push(std::string& why) {
  if (rt_.config.sync.config != config::ConfigSyncMode::kPush) {
    why = "[sync] config = \"compare\": this unit does not push its services";
    return false;
  }
  std::lock_guard lock(mutex_);
  if (!config_.peer()) {
    why = "the peer's services version is not known yet (is the peer running?)";
    return false;
  }
  push_requested_.store(true);
  return true;
}

json SyncService::config_status() const {
  const auto rel = config_.relation();
  const auto& peer = config_.peer();
  return {{"mode", config::to_string(rt_.config.sync.config)},
          {"digest", digest_hex(config_.mine().digest)},
          {"version", version_json(config_.mine())},
          {"peer_digest", peer ? json(digest_hex(peer->digest)) : json(nullptr)},
          {"peer_version", peer ? version_json(*peer) : json(nullptr)},
          {"relation", rel ? json(sync::to_string(*rel)) : json(nullptr)},
          {"match", rel ? json(*rel == sync::ConfigRelation::kSame) : json(nullptr)},
          {"pushes",
           {{"sent", pushes_sent_},
            {"received", pushes_received_},
            {"applied", pushes_applied_},
            {"refused", pushes_refused_},
            {"errors", push_errors_}}},
          {"last_error", last_push_error_.empty() ? json(nullptr) : json(last_push_error_)}};
}

}  // namespace tandem
