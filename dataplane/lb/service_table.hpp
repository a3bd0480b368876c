// The services the workers balance, as one immutable table: built on the control thread from
// the configuration (Maglev tables included), published to the workers by RCU, replaced whole
// when anything changes. Workers only read it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dataplane/conntrack/forward_mode.hpp"
#include "dataplane/lb/maglev.hpp"
#include "dataplane/net/addr.hpp"

namespace tandem::lb {

struct Backend {
  net::Ipv4Addr addr;
  std::uint16_t port = 0;  // 0 with an all-ports service: the client's destination port
  std::uint32_t weight = 1;
  // Its traffic counters' slot (counters.hpp), stable across tables: given by the control
  // plane's registry (controlplane/observe/stats_ids.hpp); 0 = unattributed.
  std::uint32_t stats_id = 0;
};

struct Service {
  std::string name;
  net::Ipv4Addr vip;
  std::uint8_t proto = 6;  // IPPROTO_TCP or IPPROTO_UDP
  std::uint16_t port = 0;  // 0: every port
  conntrack::ForwardMode mode = conntrack::ForwardMode::kNat;
  std::vector<Backend> backends;
  std::vector<net::Ipv4Addr> local_addrs;  // fullnat source addresses
  std::uint32_t maglev_size = kMaglevDefaultSize;
  std::optional<MaglevTable> maglev;  // built by ServiceTable::build, always set in a table
  std::uint32_t stats_id = 0;  // as Backend::stats_id
  std::uint8_t group = 1;      // HA VIP group: forwarded only while this unit owns it

  // The backend for a new flow with this hash, or nullptr when every backend is drained.
  const Backend* pick(std::uint32_t flow_hash) const {
    const std::uint32_t i = maglev->lookup(flow_hash);
    return i == MaglevTable::kNoBackend ? nullptr : &backends[i];
  }
};

class ServiceTable {
 public:
  // Builds every service's Maglev table. Fails with the service's name in `error`.
  static std::unique_ptr<const ServiceTable> build(std::vector<Service> services, std::string& error);

  // The service for a packet to vip:port/proto: an exact port first, then the VIP's all-ports
  // service. Nothing when the address is no VIP. O(log n), no allocation.
  const Service* find(net::Ipv4Addr vip, std::uint8_t proto, std::uint16_t port) const;
  bool is_vip(net::Ipv4Addr addr) const;
  // A fullnat local (source NAT) address of some service: backends' replies come to it.
  bool is_local_addr(net::Ipv4Addr addr) const;

  const std::vector<Service>& services() const { return services_; }
  std::uint32_t index_of(const Service& s) const { return static_cast<std::uint32_t>(&s - services_.data()); }
  std::vector<net::Ipv4Addr> vips() const;  // distinct, sorted

 private:
  static std::uint64_t key(net::Ipv4Addr vip, std::uint8_t proto, std::uint16_t port) {
    return std::uint64_t{vip.value} << 24 | std::uint64_t{proto} << 16 | port;
  }
  std::vector<Service> services_;
  std::vector<std::pair<std::uint64_t, std::uint32_t>> by_key_;  // sorted: key -> index
  std::vector<std::uint32_t> vips_;                              // sorted, distinct
  std::vector<std::uint32_t> local_addrs_;                       // sorted, distinct
};

}  // namespace tandem::lb
