#include "controlplane/sync/apply.hpp"

#include <algorithm>

#include "dataplane/lb/flow_owner.hpp"

namespace tandem::sync {
namespace {

using conntrack::ConnEntry;
using conntrack::FlowKey;
using conntrack::ForwardMode;

bool valid_proto(std::uint8_t proto) {
  return proto == net::ipv4::kProtoTcp || proto == net::ipv4::kProtoUdp;
}

// The checks of the decoder (message.cpp, read_record), repeated: apply() takes records from
// anywhere (tests, a future transport), and an out-of-range enum would index the state tables.
bool valid(const ConnRecord& r) {
  if (r.type != RecordType::kCreate && r.type != RecordType::kUpdate) return false;
  if (!valid_proto(r.proto)) return false;
  if (static_cast<std::uint8_t>(r.mode) > static_cast<std::uint8_t>(ForwardMode::kTunnel)) return false;
  if (static_cast<std::size_t>(r.state) >= conntrack::kTcpStateCount) return false;
  if (r.proto == net::ipv4::kProtoUdp && r.state != conntrack::TcpState::kNone) return false;
  if (r.client_addr == 0 || r.vip_addr == 0 || r.backend_addr == 0 || r.local_addr == 0) return false;
  return r.idle_ms <= r.created_age_ms;
}

FlowKey original_key(const ConnRecord& r) {
  return {.src_addr = r.client_addr, .dst_addr = r.vip_addr, .src_port = r.client_port, .dst_port = r.vip_port,
          .proto = r.proto};
}
FlowKey reply_key(const ConnRecord& r) {
  return {.src_addr = r.backend_addr, .dst_addr = r.local_addr, .src_port = r.backend_port,
          .dst_port = r.local_port, .proto = r.proto};
}

std::uint64_t ago(std::uint64_t now_ms, std::uint64_t age_ms) { return now_ms > age_ms ? now_ms - age_ms : 0; }

}  // namespace

const char* to_string(ApplyResult r) {
#define TANDEM_NAME_ITEM(id, name) \
  case ApplyResult::id:            \
    return name;
  switch (r) {
    TANDEM_APPLY_RESULTS(TANDEM_NAME_ITEM)
    case ApplyResult::kCount: break;
  }
#undef TANDEM_NAME_ITEM
  return "?";
}

std::uint16_t record_owner(const ConnRecord& r, std::uint16_t workers) {
  return r.mode == ForwardMode::kFullNat ? lb::local_port_owner(r.local_port, workers)
                                         : lb::client_owner(r.client_addr, r.client_port, workers);
}

std::uint16_t record_owner(const ConnRecord& r, const lb::ServiceTable& services, std::uint16_t workers,
                           bool* split) {
  const std::uint16_t owner = record_owner(r, workers);
  if (split) {
    // Where the fast path sends each direction now (flow_owner is what the workers run). The
    // client's packets count only when they are forwarded at all (the service exists here).
    bool s = false;
    if (services.find(net::Ipv4Addr{r.vip_addr}, r.proto, r.vip_port))
      s = lb::flow_owner(services, net::Ipv4Addr{r.client_addr}, net::Ipv4Addr{r.vip_addr}, r.client_port,
                         r.vip_port, r.proto, workers) != owner;
    if (conntrack::replies_pass_through(r.mode))
      s = s || lb::flow_owner(services, net::Ipv4Addr{r.backend_addr}, net::Ipv4Addr{r.local_addr},
                              r.backend_port, r.local_port, r.proto, workers) != owner;
    *split = s;
  }
  return owner;
}

std::uint16_t record_owner(const DeleteRecord& d, std::uint16_t workers) {
  return lb::client_owner(d.client_addr, d.client_port, workers);
}

RecordStatsIds record_stats_ids(const ConnRecord& r, const lb::ServiceTable& services) {
  RecordStatsIds ids;
  // find() as the fast path attributes a packet: the exact port, else the VIP's all-ports service.
  const lb::Service* svc = services.find(net::Ipv4Addr{r.vip_addr}, r.proto, r.vip_port);
  if (!svc) return ids;
  ids.service = svc->stats_id;
  for (const lb::Backend& b : svc->backends) {
    // A backend of an all-ports service (port 0) takes the client's destination port.
    const std::uint16_t port = b.port ? b.port : r.vip_port;
    if (b.addr.value == r.backend_addr && port == r.backend_port) {
      ids.backend = b.stats_id;
      break;
    }
  }
  return ids;
}

ApplyResult apply(conntrack::ConnTable& table, const ConnRecord& r, const lb::ServiceTable& services,
                  std::uint64_t now_ms) {
  if (!valid(r)) return ApplyResult::kBadRecord;
  const FlowKey original = original_key(r);
  const FlowKey reply = reply_key(r);
  const bool index_reply = conntrack::replies_pass_through(r.mode);
  if (index_reply && reply == original) return ApplyResult::kBadRecord;  // one key for both ways
  const std::uint64_t created = ago(now_ms, r.created_age_ms);
  const std::uint64_t last_seen = ago(now_ms, r.idle_ms);  // >= created: idle <= age

  if (ConnEntry* e = table.find(original)) {
    // The key may be another entry's reply key (a backend's or local address equal to this
    // client's): not this flow.
    if (e->original_key() != original) return ApplyResult::kConflict;
    // The same flow: refreshed in place. Binding and state follow the better witness (see the
    // header); times merge so that neither side's observation is lost and a duplicate or an
    // older record changes nothing.
    if (pure_replica(*e) || last_seen >= e->last_seen_ms) {
      if (e->reply_key() != reply || e->mode != r.mode) {
        const RecordStatsIds ids = record_stats_ids(r, services);
        if (!table.rebind(*e, reply, r.mode, ids.service, ids.backend)) return ApplyResult::kConflict;
      }
      e->state = r.state;
    }
    e->last_seen_ms = std::max(e->last_seen_ms, last_seen);
    e->created_ms = std::min(e->created_ms, created);
    return ApplyResult::kRefreshed;
  }
  // A new flow here. insert() refuses a reply key another entry holds (kExists): that entry is
  // another flow (this one's original key is absent), and it wins.
  const RecordStatsIds ids = record_stats_ids(r, services);
  const conntrack::ConnParams params{
      .mode = r.mode,
      .state = r.state,
      .flags = static_cast<std::uint8_t>(conntrack::kConnFromPeer | (r.mid_flow ? conntrack::kConnMidFlow : 0)),
      .service = ids.service,
      .backend = ids.backend};
  const conntrack::ConnInsert ins = table.insert(original, reply, params, now_ms);
  switch (ins.status) {
    case conntrack::InsertStatus::kInserted: break;
    case conntrack::InsertStatus::kFull: return ApplyResult::kTableFull;
    case conntrack::InsertStatus::kExists: return ApplyResult::kConflict;
  }
  ins.entry->created_ms = created;
  ins.entry->last_seen_ms = last_seen;
  return ApplyResult::kCreated;
}

ApplyResult apply(conntrack::ConnTable& table, const DeleteRecord& d) {
  if (!valid_proto(d.proto)) return ApplyResult::kBadRecord;
  const FlowKey original{.src_addr = d.client_addr, .dst_addr = d.vip_addr, .src_port = d.client_port,
                         .dst_port = d.vip_port, .proto = d.proto};
  ConnEntry* e = table.find(original);
  // Only the flow's own entry, found by its original key (not another flow's reply key).
  if (!e || e->original_key() != original) return ApplyResult::kAbsent;
  if (!pure_replica(*e)) return ApplyResult::kConflict;
  table.erase(e);
  return ApplyResult::kDeleted;
}

}  // namespace tandem::sync
