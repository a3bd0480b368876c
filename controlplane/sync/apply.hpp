// Applying the peer's connection records to this unit's connection tables
// (docs/sync-protocol.md#applying-records). Pure: no socket, no clock, no thread; the caller
// (the worker that owns the table, fed over a ring) passes the table, its own service table and
// its clock. Every record, however malformed, is either applied or refused and counted; none
// crashes.
//
// The rules, in short (the document gives the reasons):
//   - the entry goes to the worker the fast path hands the flow's packets to (record_owner);
//   - it is installed under the record's two keys, so the flow keeps its backend and NAT
//     binding whatever this unit's Maglev tables would pick;
//   - stats ids are this unit's, found by identity: (VIP, VIP port, protocol) -> the local
//     service, (backend address, port) -> the local backend; unattributed (0) when unknown;
//   - an entry of the same flow is refreshed, never duplicated; another flow's entry holding
//     either key is never replaced (the local entry wins, counted as a conflict);
//   - an applied entry expires by its TCP state like any other.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "controlplane/sync/message.hpp"
#include "dataplane/conntrack/conn_table.hpp"
#include "dataplane/lb/service_table.hpp"

namespace tandem::sync {

#define TANDEM_APPLY_RESULTS(X)                                                                  \
  X(kCreated, "created")       /* a new entry, flagged kConnFromPeer */                          \
  X(kRefreshed, "refreshed")   /* the flow's entry was there: updated in place (or unchanged) */ \
  X(kDeleted, "deleted")       /* a delete erased the flow's entry */                            \
  X(kAbsent, "absent")         /* a delete for a flow not in the table (already gone) */         \
  X(kConflict, "conflict")     /* the local table contradicts the record: the local entry wins */ \
  X(kTableFull, "table_full")  /* no free entry: not created */                                  \
  X(kBadRecord, "bad_record")  /* a field out of range: refused */

#define TANDEM_ENUM_ITEM(id, name) id,
enum class ApplyResult : std::uint8_t { TANDEM_APPLY_RESULTS(TANDEM_ENUM_ITEM) kCount };
#undef TANDEM_ENUM_ITEM
inline constexpr std::size_t kApplyResultCount = static_cast<std::size_t>(ApplyResult::kCount);
const char* to_string(ApplyResult r);

// What a caller keeps per result (one per worker, summed for metrics).
struct ApplyCounts {
  std::array<std::uint64_t, kApplyResultCount> n{};
  void count(ApplyResult r) { ++n[static_cast<std::size_t>(r)]; }
  std::uint64_t operator[](ApplyResult r) const { return n[static_cast<std::size_t>(r)]; }
  ApplyCounts& operator+=(const ApplyCounts& o) {
    for (std::size_t i = 0; i < kApplyResultCount; ++i) n[i] += o.n[i];
    return *this;
  }
};

// The worker (of `workers`) whose table must hold the record's entry: the worker this unit's
// fast path hands the flow's packets to (lb/flow_owner.hpp).
//   nat, dsr, tunnel  client_owner(client address, client port): the owner of the client's
//                     packets and, for nat, of the backend's replies (sent to the client)
//   fullnat           local_port_owner(local port): the owner of the backend's replies, and
//                     the only worker that may hand out that local port (each worker allocates
//                     its own share and checks only its own table for a port in use, so the
//                     binding must sit in that worker's table or it could be handed out twice)
// The rule depends on the record alone, not on this unit's configuration, so the entry's place
// never changes when a service is added later. With the same number of workers on both units
// the two directions of a fullnat flow agree (the peer's worker allocated a port it owns for a
// client it owns). `split` (optional) is set when, with `services` as they are now, the fast
// path would hand one direction of the flow to another worker: the units run different numbers
// of workers (fullnat), or this unit does not know the local address as one (fullnat). The
// entry is still placed by the rule above; the caller counts the split.
std::uint16_t record_owner(const ConnRecord& r, const lb::ServiceTable& services, std::uint16_t workers,
                           bool* split = nullptr);
// The same owner without the split check (the sync thread routes records with it; the worker
// that applies a record checks the split against the table it forwards with).
std::uint16_t record_owner(const ConnRecord& r, std::uint16_t workers);

// The worker whose table holds the entry a delete names: client_owner(client address, port).
// A delete carries only the original key, so for fullnat this is the entry's owner exactly when
// the record's was not split (same number of workers on both units); a caller that has counted
// splits offers the delete to every worker instead (apply() is kAbsent where it is not).
std::uint16_t record_owner(const DeleteRecord& d, std::uint16_t workers);

// This unit's stats ids for the record's service and backend (0 when unknown here).
struct RecordStatsIds {
  std::uint32_t service = kUnattributedStats;
  std::uint32_t backend = kUnattributedStats;
};
RecordStatsIds record_stats_ids(const ConnRecord& r, const lb::ServiceTable& services);

// Applies a create or update record to `table` (the owner's) at `now_ms` (the table's clock):
//   no entry for the flow        created under both keys, mode, state, flags | kConnFromPeer,
//                                created = now - age, last seen = now - idle, local stats ids
//                                (kTableFull when no entry is free)
//   the flow's entry (its        refreshed in place (kRefreshed), never a second entry:
//   original key)                  last seen = max(entry, record), created = min;
//                                  state, mode and reply key (backend and NAT binding) taken
//                                  from the record when the peer is the better witness: the
//                                  entry has carried no packet on this unit (a pure replica:
//                                  the peer's ordered stream is the truth), or the record's
//                                  last packet is at least as recent as the entry's;
//                                  packet and byte counters kept
//   a key held by another flow   nothing changed (kConflict): the local entry wins
// An update record is handled exactly as a create (create-or-refresh). A record whose fields a
// decoder would refuse (out-of-range protocol, mode, state, zero address, idle > age, the same
// key both ways) is kBadRecord.
ApplyResult apply(conntrack::ConnTable& table, const ConnRecord& r, const lb::ServiceTable& services,
                  std::uint64_t now_ms);

// Erases the flow's entry (by its original key): kDeleted, or kAbsent when there is none (a
// second delete is harmless). Only a pure replica is erased: an entry that has carried packets
// on this unit (or that this unit created) is kept (kConflict): the peer cannot know about traffic it no longer sees (e.g. it expired the flow
// after this unit took it over), and that traffic ends the entry here by itself.
ApplyResult apply(conntrack::ConnTable& table, const DeleteRecord& d);

}  // namespace tandem::sync
