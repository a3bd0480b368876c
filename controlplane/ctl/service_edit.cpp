#include "controlplane/ctl/service_edit.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "controlplane/config/service_rules.hpp"

namespace tandem::ctl {
namespace {

using config::BackendConfig;
using config::ServiceConfig;
using nlohmann::json;

constexpr std::string_view kEdits[] = {"service.add",    "service.delete", "service.set",  "backend.add",
                                       "backend.delete", "backend.set",    "backend.drain"};

EditOutcome fail(ErrorCode code, std::string message) { return {Error{code, std::move(message)}, {}}; }

net::Ipv4Addr ipv4(const json& v) { return *net::Ipv4Addr::parse(v.get_ref<const std::string&>()); }

std::vector<net::Ipv4Addr> ipv4_list(const json& v) {
  std::vector<net::Ipv4Addr> out;
  for (const auto& a : v) out.push_back(ipv4(a));
  return out;
}

std::string join(const std::vector<net::Ipv4Addr>& v) {
  std::string s;
  for (const auto& a : v) s += (s.empty() ? "" : ",") + a.to_string();
  return s.empty() ? "none" : s;
}


// A rule the file would also refuse: a clash is a conflict, anything else a bad argument.
std::optional<Error> first_violation(const std::vector<config::RuleViolation>& v, std::string_view what) {
  if (v.empty()) return std::nullopt;
  return Error{v.front().conflict ? ErrorCode::kConflict : ErrorCode::kInvalidArgument,
               std::string(what) + ": " + v.front().key + " " + v.front().message};
}

std::vector<ServiceConfig> others_than(const std::vector<ServiceConfig>& all, const ServiceConfig* self) {
  std::vector<ServiceConfig> out;
  for (const auto& s : all)
    if (&s != self) out.push_back(s);
  return out;
}

ServiceConfig* find_service(std::vector<ServiceConfig>& services, const std::string& name) {
  const auto it = std::find_if(services.begin(), services.end(), [&](const auto& s) { return s.name == name; });
  return it == services.end() ? nullptr : &*it;
}

// The backend named by address and, optionally, port: with no port, the only backend at that
// address (several at one address need the port to say which).
struct BackendRef {
  BackendConfig* backend = nullptr;
  std::optional<Error> error;
};
BackendRef find_backend(ServiceConfig& svc, const json& args) {
  const net::Ipv4Addr addr = ipv4(args["address"]);
  std::vector<BackendConfig*> at;
  for (auto& b : svc.backends)
    if (b.address == addr && (!args.contains("port") || b.port == args["port"].get<std::uint16_t>())) at.push_back(&b);
  if (at.empty()) {
    const std::string which = args.contains("port") ? net::endpoint_string(addr, args["port"].get<std::uint16_t>()) : addr.to_string();
    return {nullptr, Error{ErrorCode::kNotFound, "service " + svc.name + " has no backend " + which}};
  }
  if (at.size() > 1)
    return {nullptr, Error{ErrorCode::kInvalidArgument, "service " + svc.name + " has " + std::to_string(at.size()) +
                                                            " backends at " + addr.to_string() + ": give port"}};
  return {at.front(), std::nullopt};
}

EditOutcome service_add(const json& a, std::vector<ServiceConfig>& services, std::span<const config::PortConfig> ports) {
  ServiceConfig svc;
  svc.name = a["name"].get<std::string>();
  if (auto why = config::name_problem(svc.name); !why.empty()) return fail(ErrorCode::kInvalidArgument, "name " + why);
  svc.vip = ipv4(a["vip"]);
  if (auto why = config::unicast_problem(svc.vip); !why.empty()) return fail(ErrorCode::kInvalidArgument, "vip " + why);
  svc.port = a["port"].get<std::uint16_t>();
  svc.protocol = a["protocol"] == "udp" ? config::L4Protocol::kUdp : config::L4Protocol::kTcp;
  svc.mode = *conntrack::parse_forward_mode(a["mode"].get<std::string>());
  if (a.contains("maglev_size")) svc.maglev_size = a["maglev_size"].get<std::uint32_t>();
  if (a.contains("local_addresses")) svc.local_addresses = ipv4_list(a["local_addresses"]);
  for (const auto& l : svc.local_addresses)
    if (auto why = config::unicast_problem(l); !why.empty())
      return fail(ErrorCode::kInvalidArgument, "local_addresses " + l.to_string() + " " + why);
  if (services.size() >= config::kMaxServices)
    return fail(ErrorCode::kConflict, "at most " + std::to_string(config::kMaxServices) + " services are supported");
  if (auto e = first_violation(config::check_service(svc, services, ports), "service " + svc.name))
    return {std::move(e), {}};
  std::string summary = fmt::format("service {} added: {}:{}/{} {}", svc.name, svc.vip.to_string(), svc.port,
                                    config::to_string(svc.protocol), conntrack::to_string(svc.mode));
  services.push_back(std::move(svc));
  return {std::nullopt, std::move(summary)};
}

EditOutcome service_set(const json& a, ServiceConfig& svc, const std::vector<ServiceConfig>& services,
                        std::span<const config::PortConfig> ports) {
  ServiceConfig next = svc;
  std::string summary = "service " + svc.name + ":";
  if (a.contains("maglev_size")) {
    next.maglev_size = a["maglev_size"].get<std::uint32_t>();
    summary += fmt::format(" maglev_size {} -> {}", svc.maglev_size, next.maglev_size);
  }
  if (a.contains("local_addresses")) {
    next.local_addresses = ipv4_list(a["local_addresses"]);
    for (const auto& l : next.local_addresses)
      if (auto why = config::unicast_problem(l); !why.empty())
        return fail(ErrorCode::kInvalidArgument, "local_addresses " + l.to_string() + " " + why);
    summary += " local_addresses " + join(svc.local_addresses) + " -> " + join(next.local_addresses);
  }
  if (next == svc) return fail(ErrorCode::kInvalidArgument, "service.set: give maglev_size or local_addresses to change");
  if (auto e = first_violation(config::check_service(next, others_than(services, &svc), ports), "service " + svc.name))
    return {std::move(e), {}};
  svc = std::move(next);
  return {std::nullopt, std::move(summary)};
}

EditOutcome backend_add(const json& a, ServiceConfig& svc) {
  BackendConfig b;
  b.address = ipv4(a["address"]);
  if (auto why = config::unicast_problem(b.address); !why.empty())
    return fail(ErrorCode::kInvalidArgument, "address " + why);
  b.port = a.contains("port") ? a["port"].get<std::uint16_t>() : 0;
  if (b.port == 0) b.port = svc.port;
  if (a.contains("weight")) b.weight = a["weight"].get<std::uint32_t>();
  if (svc.backends.size() >= config::kMaxBackendsPerService)
    return fail(ErrorCode::kConflict, "service " + svc.name + " has the most backends supported (" +
                                          std::to_string(config::kMaxBackendsPerService) + ")");
  if (auto e = first_violation(config::check_backend(svc, b, svc.backends), "backend " + net::endpoint_string(b.address, b.port)))
    return {std::move(e), {}};
  ServiceConfig next = svc;
  next.backends.push_back(b);
  // The Maglev table must still have room for every backend with weight > 0.
  if (auto e = first_violation(config::check_service(next, {}, {}), "service " + svc.name)) return {std::move(e), {}};
  svc = std::move(next);
  return {std::nullopt, fmt::format("backend {} added to {} with weight {}", net::endpoint_string(b.address, b.port), svc.name, b.weight)};
}

EditOutcome backend_change(const std::string& cmd, const json& a, ServiceConfig& svc) {
  auto ref = find_backend(svc, a);
  if (ref.error) return {std::move(ref.error), {}};
  BackendConfig& b = *ref.backend;
  const std::string who = "backend " + net::endpoint_string(b.address, b.port) + " of " + svc.name;
  if (cmd == "backend.delete") {
    svc.backends.erase(svc.backends.begin() + (&b - svc.backends.data()));
    return {std::nullopt, who + " deleted"};
  }
  BackendConfig next = b;
  std::string summary = who + ":";
  if (cmd == "backend.drain") {
    next.weight = 0;
  } else {
    if (!a.contains("weight") && !a.contains("enabled"))
      return fail(ErrorCode::kInvalidArgument, "backend.set: give weight or enabled to change");
    if (a.contains("weight")) next.weight = a["weight"].get<std::uint32_t>();
    if (a.contains("enabled")) next.enabled = a["enabled"].get<bool>();
  }
  if (next.weight != b.weight) summary += fmt::format(" weight {} -> {}", b.weight, next.weight);
  if (next.enabled != b.enabled) summary += next.enabled ? " enabled" : " disabled";
  if (next == b) summary += " unchanged";
  ServiceConfig after = svc;
  after.backends[static_cast<std::size_t>(&b - svc.backends.data())] = next;
  if (auto e = first_violation(config::check_service(after, {}, {}), "service " + svc.name)) return {std::move(e), {}};
  b = next;
  return {std::nullopt, std::move(summary)};
}

}  // namespace

bool is_service_edit(std::string_view cmd) {
  return std::find(std::begin(kEdits), std::end(kEdits), cmd) != std::end(kEdits);
}

EditOutcome edit_services(const Request& request, std::vector<ServiceConfig>& services,
                          std::span<const config::PortConfig> ports) {
  const json& a = request.args;
  const std::string& cmd = request.cmd;
  if (!is_service_edit(cmd)) return fail(ErrorCode::kInternal, cmd + " is not a service command");
  if (cmd == "service.add") return service_add(a, services, ports);

  const std::string name = a.contains("name") ? a["name"].get<std::string>() : a["service"].get<std::string>();
  ServiceConfig* svc = find_service(services, name);
  if (!svc) return fail(ErrorCode::kNotFound, "no service named " + name);
  if (cmd == "service.delete") {
    const std::string summary = fmt::format("service {} deleted ({}:{}/{}, {} backends)", name, svc->vip.to_string(),
                                            svc->port, config::to_string(svc->protocol), svc->backends.size());
    services.erase(services.begin() + (svc - services.data()));
    return {std::nullopt, summary};
  }
  if (cmd == "service.set") return service_set(a, *svc, services, ports);
  if (cmd == "backend.add") return backend_add(a, *svc);
  return backend_change(cmd, a, *svc);
}

}  // namespace tandem::ctl
