#include "dataplane/conntrack/conn_table.hpp"

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstring>

namespace tandem::conntrack {

// matches() compares a key with one side of an entry as 12 bytes: both must lay out
// address, address, port, port in the same order.
static_assert(offsetof(FlowKey, src_addr) == 0 && offsetof(FlowKey, dst_addr) == 4 &&
              offsetof(FlowKey, src_port) == 8 && offsetof(FlowKey, dst_port) == 10);
static_assert(offsetof(ConnEntry, client_addr) == 0 && offsetof(ConnEntry, vip_addr) == 4 &&
              offsetof(ConnEntry, client_port) == 8 && offsetof(ConnEntry, vip_port) == 10);
static_assert(offsetof(ConnEntry, backend_addr) == 12 && offsetof(ConnEntry, local_addr) == 16 &&
              offsetof(ConnEntry, backend_port) == 20 && offsetof(ConnEntry, local_port) == 22);
inline constexpr std::size_t kSideBytes = 12;

ConnTable::ConnTable(const ConnTableConfig& config, std::pmr::memory_resource* memory)
    : config_(config), seed_(config.hash_seed), pool_(memory), index_(memory) {
  config_.capacity = std::clamp<std::uint32_t>(config_.capacity, 1, ConnTableConfig::kMaxCapacity);
  pool_.resize(config_.capacity);
  const std::size_t slots = std::bit_ceil(std::size_t{config_.capacity} * 4);
  index_.resize(slots);
  mask_ = slots - 1;
  shift_ = 32 - static_cast<unsigned>(std::countr_zero(slots));
  // Entries are handed out in pool order at first, which keeps a young table compact.
  for (std::uint32_t i = 0; i < config_.capacity; ++i) pool_[i].next_free = i + 1;
  pool_.back().next_free = kNil;
  free_head_ = 0;
  set_timeouts(config_.timeouts);
}

void ConnTable::set_timeouts(const ConntrackTimeouts& t) {
  config_.timeouts = t;
  for (std::size_t s = 0; s < kTcpStateCount; ++s)
    tcp_timeout_ms_[s] = t.tcp_ms(static_cast<TcpState>(s));
}

bool ConnTable::matches(const ConnEntry& e, FlowDir d, const FlowKey& key) const {
  const auto* side = reinterpret_cast<const unsigned char*>(&e) +
                     (d == FlowDir::kOriginal ? offsetof(ConnEntry, client_addr)
                                              : offsetof(ConnEntry, backend_addr));
  return std::memcmp(side, &key, kSideBytes) == 0 && e.proto == key.proto;
}

std::size_t ConnTable::find_slot(const FlowKey& key, std::uint64_t hash) const {
  const std::uint32_t tag = tag_of(hash);
  // Load <= 1/2 guarantees an empty slot, which ends every probe.
  for (std::size_t i = home(tag);; i = (i + 1) & mask_) {
    const Slot& s = index_[i];
    if (s.ref == kEmpty) return kNpos;
    if (s.tag == tag && matches(pool_[s.ref >> 1], static_cast<FlowDir>(s.ref & 1), key)) return i;
  }
}

ConnLookup ConnTable::lookup(const FlowKey& key, std::uint64_t hash) {
  const std::size_t s = find_slot(key, hash);
  if (s == kNpos) {
    ++stats_.lookups_miss;
    return {};
  }
  ++stats_.lookups_hit;
  const std::uint32_t ref = index_[s].ref;
  return {&pool_[ref >> 1], static_cast<FlowDir>(ref & 1)};
}

void ConnTable::prefetch_entry(std::uint64_t hash) const {
  const std::uint32_t tag = tag_of(hash);
  for (std::size_t i = home(tag);; i = (i + 1) & mask_) {
    const Slot& s = index_[i];
    if (s.ref == kEmpty) return;  // a miss: nothing to fetch
    if (s.tag == tag) {
      const auto* e = reinterpret_cast<const char*>(&pool_[s.ref >> 1]);
      __builtin_prefetch(e, 1);  // written by update(): fetch for ownership
      __builtin_prefetch(e + sizeof(ConnEntry) - 1, 1);
      return;
    }
  }
}

void ConnTable::lookup_burst(std::span<const FlowKey> keys, std::span<ConnLookup> out) {
  constexpr std::size_t kStage = 32;
  std::uint64_t hashes[kStage];
  for (std::size_t base = 0; base < keys.size(); base += kStage) {
    const std::size_t n = std::min(kStage, keys.size() - base);
    for (std::size_t j = 0; j < n; ++j) {
      hashes[j] = hash(keys[base + j]);
      prefetch(hashes[j]);
    }
    for (std::size_t j = 0; j < n; ++j) prefetch_entry(hashes[j]);
    for (std::size_t j = 0; j < n; ++j) out[base + j] = lookup(keys[base + j], hashes[j]);
  }
}

const ConnEntry* ConnTable::find(const FlowKey& key) const {
  const std::size_t s = find_slot(key, hash(key));
  return s == kNpos ? nullptr : &pool_[index_[s].ref >> 1];
}

ConnInsert ConnTable::insert(const FlowKey& original, const FlowKey& reply, const ConnParams& params,
                             std::uint64_t now_ms) {
  const bool index_reply = replies_pass_through(params.mode);
  FlowKey rkey = reply;
  rkey.proto = original.proto;  // one protocol per entry: the reply key is stored with it
  const std::uint64_t ho = hash(original);
  const std::uint64_t hr = hash(rkey);
  // Both keys' index lines are needed; fetch them together rather than one after the other.
  prefetch(ho);
  if (index_reply) prefetch(hr);

  if (const std::size_t s = find_slot(original, ho); s != kNpos) {
    ++stats_.insert_failed_exists;
    return {&pool_[index_[s].ref >> 1], InsertStatus::kExists};
  }
  if (index_reply) {
    if (rkey == original) {  // two slots with one key: the reply side could never be found
      ++stats_.insert_failed_exists;
      return {nullptr, InsertStatus::kExists};
    }
    if (const std::size_t s = find_slot(rkey, hr); s != kNpos) {
      ++stats_.insert_failed_exists;
      return {&pool_[index_[s].ref >> 1], InsertStatus::kExists};
    }
  }
  if (free_head_ == kNil) {
    ++stats_.insert_failed_full;
    return {nullptr, InsertStatus::kFull};
  }

  const std::uint32_t idx = free_head_;
  ConnEntry& e = pool_[idx];
  free_head_ = e.next_free;
  if (idx >= extent_) extent_ = idx + std::size_t{1};
  e = ConnEntry{
      .client_addr = original.src_addr,
      .vip_addr = original.dst_addr,
      .client_port = original.src_port,
      .vip_port = original.dst_port,
      .backend_addr = rkey.src_addr,
      .local_addr = rkey.dst_addr,
      .backend_port = rkey.src_port,
      .local_port = rkey.dst_port,
      .proto = original.proto,
      .mode = params.mode,
      .state = params.state,
      .flags = static_cast<std::uint8_t>((params.flags & ~kConnTableFlags) | kConnInUse |
                                         (index_reply ? kConnReplyIndexed : 0)),
      // Range-checked once here, so update() indexes the stats slots without a check.
      .service = params.service < kMaxServiceStats ? params.service : kUnattributedStats,
      .backend = params.backend < kMaxBackendStats ? params.backend : kUnattributedStats,
      .next_free = kNil,
      .created_ms = now_ms,
      .last_seen_ms = now_ms,
  };
  place(ho, idx * 2 + static_cast<std::uint32_t>(FlowDir::kOriginal));
  if (index_reply) place(hr, idx * 2 + static_cast<std::uint32_t>(FlowDir::kReply));
  ++size_;
  ++stats_.inserts;
  if (traffic_) {
    traffic_->services[e.service].created.add();
    traffic_->backends[e.backend].created.add();
  }
  return {&e, InsertStatus::kInserted};
}

void ConnTable::erase(ConnEntry* entry) {
  // A second erase of the same entry would put it on the free list twice.
  if (entry == nullptr || !(entry->flags & kConnInUse)) return;
  release(index_of(entry));
  ++stats_.erased;
}

bool ConnTable::rebind(ConnEntry& e, const FlowKey& reply, ForwardMode mode, std::uint32_t service,
                       std::uint32_t backend) {
  if (!(e.flags & kConnInUse)) return false;
  const std::uint32_t idx = index_of(&e);
  FlowKey rkey = reply;
  rkey.proto = e.proto;
  const bool index_reply = replies_pass_through(mode);
  const std::uint64_t hr = hash(rkey);
  if (index_reply) {
    if (rkey == e.original_key()) return false;
    if (const std::size_t s = find_slot(rkey, hr); s != kNpos && index_[s].ref >> 1 != idx) return false;
  }
  if (e.flags & kConnReplyIndexed) unplace(hash(e.reply_key()), idx * 2 + static_cast<std::uint32_t>(FlowDir::kReply));
  e.backend_addr = rkey.src_addr;
  e.local_addr = rkey.dst_addr;
  e.backend_port = rkey.src_port;
  e.local_port = rkey.dst_port;
  e.mode = mode;
  e.flags = static_cast<std::uint8_t>((e.flags & ~kConnReplyIndexed) | (index_reply ? kConnReplyIndexed : 0));
  if (index_reply) place(hr, idx * 2 + static_cast<std::uint32_t>(FlowDir::kReply));
  service = service < kMaxServiceStats ? service : kUnattributedStats;
  backend = backend < kMaxBackendStats ? backend : kUnattributedStats;
  if (traffic_) {
    if (service != e.service) {
      traffic_->services[e.service].closed.add();
      traffic_->services[service].created.add();
    }
    if (backend != e.backend) {
      traffic_->backends[e.backend].closed.add();
      traffic_->backends[backend].created.add();
    }
  }
  e.service = service;
  e.backend = backend;
  return true;
}

void ConnTable::place(std::uint64_t hash, std::uint32_t ref) {
  const std::uint32_t tag = tag_of(hash);
  std::size_t i = home(tag);
  while (index_[i].ref != kEmpty) i = (i + 1) & mask_;
  index_[i] = Slot{tag, ref};
}

void ConnTable::unplace(std::uint64_t hash, std::uint32_t ref) {
  std::size_t hole = home(tag_of(hash));
  while (index_[hole].ref != ref) {
    if (index_[hole].ref == kEmpty) return;  // not indexed: nothing to remove
    hole = (hole + 1) & mask_;
  }
  // Backward-shift deletion keeps every probe chain unbroken without tombstones.
  for (std::size_t i = (hole + 1) & mask_; index_[i].ref != kEmpty; i = (i + 1) & mask_) {
    const std::size_t h = home(index_[i].tag);
    // Move the slot into the hole unless its home lies cyclically in (hole, i].
    const bool home_between = hole <= i ? (h > hole && h <= i) : (h > hole || h <= i);
    if (!home_between) {
      index_[hole] = index_[i];
      hole = i;
    }
  }
  index_[hole] = Slot{};
}

void ConnTable::release(std::uint32_t idx) {
  ConnEntry& e = pool_[idx];
  const bool reply_indexed = e.flags & kConnReplyIndexed;
  const std::uint64_t ho = hash(e.original_key());
  const std::uint64_t hr = reply_indexed ? hash(e.reply_key()) : 0;
  prefetch(ho);
  if (reply_indexed) prefetch(hr);
  unplace(ho, idx * 2 + static_cast<std::uint32_t>(FlowDir::kOriginal));
  if (reply_indexed) unplace(hr, idx * 2 + static_cast<std::uint32_t>(FlowDir::kReply));
  // Every way an entry is freed passes here, exactly once (erase() ignores a free entry).
  if (traffic_) {
    traffic_->services[e.service].closed.add();
    traffic_->backends[e.backend].closed.add();
  }
  e.flags = 0;
  e.next_free = free_head_;
  free_head_ = idx;
  --size_;
}

bool ConnTable::check_invariants(std::string* why) const {
  auto fail = [&](std::string msg) {
    if (why) *why = std::move(msg);
    return false;
  };
  const std::size_t cap = pool_.size();

  // The free list: exactly the entries not in use, each once.
  std::vector<bool> on_free_list(cap, false);
  std::size_t free_count = 0;
  for (std::uint32_t i = free_head_; i != kNil; i = pool_[i].next_free) {
    if (i >= cap) return fail("free list points outside the pool: " + std::to_string(i));
    if (on_free_list[i]) return fail("free list has a cycle at entry " + std::to_string(i));
    if (pool_[i].flags & kConnInUse) return fail("entry in use on the free list: " + std::to_string(i));
    on_free_list[i] = true;
    ++free_count;
  }
  std::size_t in_use = 0, reply_indexed = 0;
  for (std::size_t i = 0; i < cap; ++i) {
    if (!(pool_[i].flags & kConnInUse)) {
      if (!on_free_list[i]) return fail("entry neither in use nor free: " + std::to_string(i));
      continue;
    }
    ++in_use;
    if (i >= extent_) return fail("entry in use beyond the swept extent: " + std::to_string(i));
    if (pool_[i].flags & kConnReplyIndexed) ++reply_indexed;
  }
  if (in_use != size_) return fail("size " + std::to_string(size_) + " but " + std::to_string(in_use) + " in use");
  if (free_count + in_use != cap) return fail("free + in use != capacity");

  // Every slot: a live entry, through a key that hashes to this tag, reachable from its home.
  std::size_t used_slots = 0;
  for (std::size_t i = 0; i < index_.size(); ++i) {
    const Slot& s = index_[i];
    if (s.ref == kEmpty) continue;
    ++used_slots;
    const std::size_t idx = s.ref >> 1;
    const auto dir = static_cast<FlowDir>(s.ref & 1);
    if (idx >= cap) return fail("slot " + std::to_string(i) + " points outside the pool");
    const ConnEntry& e = pool_[idx];
    if (!(e.flags & kConnInUse)) return fail("slot " + std::to_string(i) + " points to free entry " + std::to_string(idx));
    if (dir == FlowDir::kReply && !(e.flags & kConnReplyIndexed))
      return fail("slot " + std::to_string(i) + " indexes an unindexed reply key");
    if (tag_of(hash(e.key(dir))) != s.tag) return fail("slot " + std::to_string(i) + " has a stale tag");
    for (std::size_t j = home(s.tag); j != i; j = (j + 1) & mask_)
      if (index_[j].ref == kEmpty) return fail("slot " + std::to_string(i) + " unreachable from its home");
  }
  if (used_slots != in_use + reply_indexed)
    return fail("index holds " + std::to_string(used_slots) + " keys, entries have " +
                std::to_string(in_use + reply_indexed));

  // Every entry in use: each indexed key finds exactly this entry.
  for (std::size_t idx = 0; idx < cap; ++idx) {
    const ConnEntry& e = pool_[idx];
    if (!(e.flags & kConnInUse)) continue;
    for (FlowDir d : {FlowDir::kOriginal, FlowDir::kReply}) {
      if (d == FlowDir::kReply && !(e.flags & kConnReplyIndexed)) continue;
      const std::size_t s = find_slot(e.key(d), hash(e.key(d)));
      if (s == kNpos || index_[s].ref != idx * 2 + static_cast<std::uint32_t>(d))
        return fail("entry " + std::to_string(idx) + " not found by its " +
                    (d == FlowDir::kOriginal ? "original" : "reply") + " key");
    }
  }
  return true;
}

}  // namespace tandem::conntrack
