#include "controlplane/config/service_rules.hpp"

#include <algorithm>
#include <cctype>

#include "dataplane/lb/maglev.hpp"

namespace tandem::config {

std::string name_problem(const std::string& s) {
  if (s.empty() || s.size() > 32) return "must be 1 to 32 characters";
  const bool ok = std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
  return ok ? "" : "may hold only letters, digits, '-', '_' and '.'";
}

std::string unicast_problem(net::Ipv4Addr a) {
  if (a.value == 0 || a.value == 0xffffffffu || (a.value >> 28) >= 0xe) return "must be a unicast address";
  return "";
}

std::vector<RuleViolation> check_service(const ServiceConfig& svc, std::span<const ServiceConfig> others,
                                         std::span<const PortConfig> ports) {
  std::vector<RuleViolation> out;
  if (!lb::is_prime(svc.maglev_size)) out.push_back({"maglev_size", "must be a prime number, e.g. 65537 or 251"});
  const bool fullnat = svc.mode == conntrack::ForwardMode::kFullNat;
  if (fullnat && svc.local_addresses.empty())
    out.push_back({"mode", "fullnat needs local_addresses (the source addresses used towards backends)"});
  if (!fullnat && !svc.local_addresses.empty()) out.push_back({"local_addresses", "applies to fullnat services only"});
  std::size_t active = 0;
  for (const auto& b : svc.backends) active += b.weight > 0 && b.enabled;
  if (lb::is_prime(svc.maglev_size) && active > svc.maglev_size)
    out.push_back({"maglev_size",
                   "is smaller than the number of backends with weight > 0 (" + std::to_string(active) + ")"});

  const bool has_vip = svc.vip.value != 0;
  for (const auto& other : others) {
    if (!svc.name.empty() && other.name == svc.name)
      out.push_back({"name", "service name \"" + svc.name + "\" is used twice", true});
    if (has_vip && other.vip == svc.vip && other.protocol == svc.protocol && other.port == svc.port)
      out.push_back({"port", "service \"" + other.name + "\" already has " + svc.vip.to_string() + ":" +
                                 std::to_string(svc.port) + "/" + to_string(svc.protocol),
                     true});
  }
  for (const auto& p : ports)
    for (const auto& a : p.addresses())
      if (has_vip && a.addr == svc.vip)
        out.push_back({"vip", svc.vip.to_string() + " is an address of port \"" + p.name + "\"", true});
  return out;
}

std::vector<RuleViolation> check_backend(const ServiceConfig& svc, const BackendConfig& b,
                                         std::span<const BackendConfig> others) {
  std::vector<RuleViolation> out;
  // Without address translation the backend receives the VIP's port as it is.
  const bool translates = svc.mode == conntrack::ForwardMode::kNat || svc.mode == conntrack::ForwardMode::kFullNat;
  if (b.port != svc.port && (!translates || svc.port == 0)) {
    out.push_back({"port", svc.port == 0 ? "an all-ports service keeps the client's destination port; leave port out"
                                         : std::string("mode ") + conntrack::to_string(svc.mode) +
                                               " cannot change the port; leave port out or use " +
                                               std::to_string(svc.port)});
  }
  for (const auto& other : others)
    if (b.address.value != 0 && other.address == b.address && other.port == b.port)
      out.push_back({"address", net::endpoint_string(b.address, b.port) + " is listed twice", true});
  return out;
}

}  // namespace tandem::config
