#include "dataplane/lb/flow_owner.hpp"

namespace tandem::lb {

std::uint16_t flow_owner(const ServiceTable& services, net::Ipv4Addr src, net::Ipv4Addr dst, std::uint16_t sport,
                         std::uint16_t dport, std::uint8_t proto, std::uint16_t workers) {
  if (workers <= 1) return 0;
  if (services.find(dst, proto, dport)) return client_owner(src.value, sport, workers);
  if (services.is_local_addr(dst)) return local_port_owner(dport, workers);
  return client_owner(dst.value, dport, workers);  // a nat reply, or nobody's
}

}  // namespace tandem::lb
