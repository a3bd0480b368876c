#include "dataplane/conntrack/conn_query.hpp"

#include <algorithm>

#include "dataplane/net/headers.hpp"

namespace tandem::conntrack {

bool ConnFilter::matches(const ConnEntry& e) const {
  if (vip && e.vip_addr != *vip) return false;
  if (vip_port && e.vip_port != *vip_port) return false;
  if (proto && e.proto != *proto) return false;
  if (client && e.client_addr != *client) return false;
  if (backend && e.backend_addr != *backend) return false;
  if (backend_port && e.backend_port != *backend_port) return false;
  if (state && (e.proto != net::ipv4::kProtoTcp || e.state != *state)) return false;
  if (udp_only && e.proto != net::ipv4::kProtoUdp) return false;
  return true;
}

bool advance(ConnTable& table, ConnQuery& q, std::size_t max_examine, ConnDeltaLog* ended, std::uint64_t now_ms) {
  // extent() is read per call: the table may have grown since the last slice.
  const std::size_t extent = table.extent();
  const std::size_t end = q.cursor + std::min(max_examine, q.cursor < extent ? extent - q.cursor : 0);
  // Rows are capped by what the requester reserved too, so the worker never allocates.
  const std::size_t max_rows = std::min(q.limit, q.rows.capacity());
  for (std::size_t i = q.cursor; i < end; ++i) {
    ConnEntry& e = table.entry_at(i);
    if (!(e.flags & kConnInUse) || !q.filter.matches(e)) continue;
    ++q.matched;
    switch (q.op) {
      case ConnQueryOp::kCount:
        break;
      case ConnQueryOp::kList:
        if (q.rows.size() < max_rows) q.rows.push_back(e);
        break;
      case ConnQueryOp::kFlush:
        if (ended && !pure_replica(e)) ended->push(make_delta(DeltaKind::kDelete, e, now_ms));
        table.erase(&e);  // moves no other entry: the scan goes on from i + 1
        break;
    }
  }
  q.cursor = end;
  return end >= extent;
}

}  // namespace tandem::conntrack
