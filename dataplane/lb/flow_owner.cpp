#include "dataplane/lb/flow_owner.hpp"

#include "dataplane/lb/icmp_translate.hpp"

namespace tandem::lb {

std::uint16_t flow_owner(const ServiceTable& services, net::Ipv4Addr src, net::Ipv4Addr dst, std::uint16_t sport,
                         std::uint16_t dport, std::uint8_t proto, std::uint16_t workers) {
  if (workers <= 1) return 0;
  if (services.find(dst, proto, dport)) return client_owner(src.value, sport, workers);
  if (services.is_local_addr(dst)) return local_port_owner(dport, workers);
  return client_owner(dst.value, dport, workers);  // a nat reply, or nobody's
}

std::optional<std::uint16_t> packet_owner(const std::uint8_t* frame, std::uint32_t len, const net::ParsedPacket& p,
                                          const ServiceTable& services, std::uint16_t workers) {
  if (p.proto == net::ipv4::kProtoTcp || p.proto == net::ipv4::kProtoUdp)
    return flow_owner(services, p.src, p.dst, p.sport, p.dport, p.proto, workers);
  IcmpQuote q;
  if (is_icmp_error(p) && parse_icmp_quote(frame, len, p, q) == QuoteError::kNone) {
    // The error travels against the quoted packet: its owner is the reversed quote's.
    return flow_owner(services, q.dst, q.src, q.dport, q.sport, q.proto, workers);
  }
  return std::nullopt;
}

}  // namespace tandem::lb
