// A query over one worker's connection table from the control plane: count, list or flush the
// connections that match a filter. The worker that owns the table runs it from its own loop, a
// bounded slice of the table per iteration (advance()), so there is no lock on the table and a
// query over a million connections never stalls the fast path for long.
//
// Hand-over (Worker::post_conn_query): the control thread fills a ConnQuery (reserving `rows`
// for kList, so the worker never allocates), posts it, and waits for `done`. The worker reads
// the query only between posting and setting `done` (release); the requester reads the results
// after seeing `done` (acquire). A requester that gives up first must withdraw the query with
// Worker::cancel_conn_query before freeing it (or leak it).
//
// A query is a scan, not a snapshot: the worker goes on inserting and expiring between slices,
// so a connection created or freed while the query runs may or may not be seen; one that lives
// through the whole query is seen exactly once (entries never move).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "dataplane/conntrack/conn_delta.hpp"
#include "dataplane/conntrack/conn_table.hpp"

namespace tandem::conntrack {

// Every set field must match; an empty filter matches every connection. Addresses and ports in
// host byte order. `state` matches TCP connections in that state only (UDP has no state);
// `udp_only` matches UDP connections only.
struct ConnFilter {
  std::optional<std::uint32_t> vip;
  std::optional<std::uint16_t> vip_port;
  std::optional<std::uint8_t> proto;
  std::optional<std::uint32_t> client;
  std::optional<std::uint32_t> backend;
  std::optional<std::uint16_t> backend_port;
  std::optional<TcpState> state;  // TCP connections in this state
  bool udp_only = false;          // UDP connections only

  bool matches(const ConnEntry& e) const;
};

enum class ConnQueryOp : std::uint8_t {
  kCount,  // matched = connections matching
  kList,   // matched as kCount; rows = the first of them (in table order), see `limit`
  kFlush,  // erases every matching connection; matched = how many
};

struct ConnQuery {
  ConnQueryOp op = ConnQueryOp::kCount;
  ConnFilter filter;
  // kList: rows kept at most. Call rows.reserve(limit) before posting: the worker keeps at
  // most min(limit, rows.capacity()) rows, so it never reallocates.
  std::size_t limit = 100;
  std::vector<ConnEntry> rows;  // kList: copies of matching entries
  std::uint64_t matched = 0;
  std::size_t cursor = 0;      // next pool index advance() examines
  std::atomic<bool> done{false};
};

// Runs `q` over at most `max_examine` further pool entries of `table` (from q.cursor, free ones
// included). Returns true once the whole used part of the table (extent()) has been covered;
// the caller then sets done. kFlush erases with ConnTable::erase (counted as erased, and closed
// in the traffic counters), which moves no other entry, so the scan goes on safely. Never
// allocates (see ConnQuery::limit). A row's service/backend are stats ids: map them to names
// with the published table's Service::stats_id and Backend::stats_id.
// `ended` (optional, state sync): each connection a flush erases is logged there as a delete
// (not the peer's own pure replicas); give max_examine <= the log's free room.
bool advance(ConnTable& table, ConnQuery& q, std::size_t max_examine, ConnDeltaLog* ended = nullptr,
             std::uint64_t now_ms = 0);

}  // namespace tandem::conntrack
