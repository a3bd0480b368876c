#include "controlplane/ctl/protocol.hpp"

#include <array>

#include "dataplane/net/addr.hpp"

namespace tandem::ctl {
namespace {

using nlohmann::json;

constexpr std::size_t kMaxString = 128;
constexpr std::size_t kMaxName = 64;
constexpr std::size_t kMaxPath = 4096;
constexpr std::size_t kMaxIpv4List = 64;
constexpr std::uint64_t kMaxWeight = 1000000;
constexpr std::uint64_t kMaxTableSize = std::uint64_t{1} << 24;

// --- the commands of version 1 -------------------------------------------------------------------

constexpr std::span<const ArgSpec> kNoArgs{};

constexpr ArgSpec kServiceAdd[] = {
    {"name", ArgType::kName, true},       {"vip", ArgType::kIpv4, true},
    {"port", ArgType::kPort, true},       {"protocol", ArgType::kProtocol, true},
    {"mode", ArgType::kMode, true},       {"maglev_size", ArgType::kTableSize},
    {"local_addresses", ArgType::kIpv4List},
};
constexpr ArgSpec kServiceName[] = {{"name", ArgType::kName, true}};
constexpr ArgSpec kServiceSet[] = {
    {"name", ArgType::kName, true},
    {"maglev_size", ArgType::kTableSize},
    {"local_addresses", ArgType::kIpv4List},
};
constexpr ArgSpec kBackendAdd[] = {
    {"service", ArgType::kName, true}, {"address", ArgType::kIpv4, true},
    {"port", ArgType::kPort},          {"weight", ArgType::kWeight},
};
constexpr ArgSpec kBackendKey[] = {
    {"service", ArgType::kName, true}, {"address", ArgType::kIpv4, true}, {"port", ArgType::kPort}};
constexpr ArgSpec kBackendSet[] = {
    {"service", ArgType::kName, true}, {"address", ArgType::kIpv4, true}, {"port", ArgType::kPort},
    {"weight", ArgType::kWeight},      {"enabled", ArgType::kBool},
};
constexpr ArgSpec kConnFilter[] = {
    {"service", ArgType::kName}, {"vip", ArgType::kIpv4},    {"port", ArgType::kPort},
    {"client", ArgType::kIpv4},  {"backend", ArgType::kIpv4}, {"state", ArgType::kTcpState},
};
constexpr ArgSpec kConnList[] = {
    {"service", ArgType::kName}, {"vip", ArgType::kIpv4},      {"port", ArgType::kPort},
    {"client", ArgType::kIpv4},  {"backend", ArgType::kIpv4},  {"state", ArgType::kTcpState},
    {"limit", ArgType::kLimit},
};
constexpr ArgSpec kConnFlush[] = {{"service", ArgType::kName}, {"backend", ArgType::kIpv4}};
constexpr ArgSpec kNeighbours[] = {{"port", ArgType::kName}};
constexpr ArgSpec kConfigValidate[] = {{"path", ArgType::kPath, true}};
constexpr ArgSpec kLogLevel[] = {{"level", ArgType::kLogLevel}};
constexpr ArgSpec kBackendsArgs[] = {{"service", ArgType::kName}};
constexpr ArgSpec kHaMaintenance[] = {{"on", ArgType::kBool, true, true}};

constexpr CommandSpec kCommands[] = {
    {"status", kNoArgs, false, "unit, role, uptime, version, workers, ports, peer"},
    {"services.list", kNoArgs, false, "every service with its backends and weights"},
    {"backends", kBackendsArgs, false, "every backend (of one service): weight, state, health and its last error"},
    {"service.add", kServiceAdd, true, "add a service (then its backends with backend.add)"},
    {"service.delete", kServiceName, true, "delete a service; its connections expire"},
    {"service.set", kServiceSet, true, "change a service's Maglev table size or local addresses"},
    {"backend.add", kBackendAdd, true, "add a backend to a service"},
    {"backend.delete", kBackendKey, true, "remove a backend; its connections continue until they end"},
    {"backend.set", kBackendSet, true, "set a backend's weight, or enable/disable it"},
    {"backend.drain", kBackendKey, true, "weight 0: no new connections, existing ones continue"},
    {"connections.count", kConnFilter, false, "connections matching the filters"},
    {"connections.list", kConnList, false, "connections matching the filters (limit, default 100)"},
    {"connections.flush", kConnFlush, true, "drop the connections of a service or a backend"},
    {"counters", kNoArgs, false, "per port, per worker, per drop reason"},
    {"neighbours", kNeighbours, false, "the neighbour caches (of one port)"},
    {"config.show", kNoArgs, false, "the running configuration"},
    {"config.validate", kConfigValidate, false, "check a configuration file, change nothing"},
    {"config.reload", kNoArgs, true, "read the configuration file again and apply the difference"},
    {"log.level", kLogLevel, false, "show the log level, or set it (`level`)"},
    {"ha.status", kNoArgs, false, "HA roles per group, the peer on each path, tracking, the last failovers"},
    {"ha.failover", kNoArgs, true, "hand every group this unit is active for to the peer now"},
    {"ha.maintenance", kHaMaintenance, true, "on: give the groups up and stay standby; off: serve again"},
    {"ha.drill", kNoArgs, true, "a measured failover: hand this active unit's groups to the ready peer, time it"},
    {"sync.status", kNoArgs, false, "state sync: peer, sequence numbers, lag, bulk resync, apply results, errors"},
    {"sync.push", kNoArgs, true, "this unit's services win a config conflict: push them to the peer"},
};

constexpr std::array<std::string_view, 7> kLogLevels = {"trace", "debug", "info", "warn", "error", "critical", "off"};
constexpr std::array<std::string_view, 4> kModes = {"nat", "fullnat", "dsr", "tunnel"};
constexpr std::array<std::string_view, 10> kTcpStates = {"none",      "syn_sent",   "syn_recv",  "established",
                                                         "fin_wait",  "close_wait", "last_ack",  "time_wait",
                                                         "close",     "udp"};

template <std::size_t N>
bool one_of(const std::array<std::string_view, N>& set, std::string_view v) {
  for (const auto s : set)
    if (s == v) return true;
  return false;
}

bool is_name(std::string_view s) {
  if (s.empty() || s.size() > kMaxName) return false;
  for (const char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                    c == '-' || c == '.';
    if (!ok) return false;
  }
  return true;
}

bool unsigned_in(const json& v, std::uint64_t lo, std::uint64_t hi) {
  if (!v.is_number_integer()) return false;  // floats and booleans are not integers here
  if (v.is_number_unsigned()) {
    const auto n = v.get<std::uint64_t>();
    return n >= lo && n <= hi;
  }
  const auto n = v.get<std::int64_t>();
  return n >= 0 && static_cast<std::uint64_t>(n) >= lo && static_cast<std::uint64_t>(n) <= hi;
}

// What `v` must be for `type`, or nothing when it is that.
std::optional<std::string> type_problem(ArgType type, const json& v) {
  const auto str = [&]() -> std::optional<std::string_view> {
    if (!v.is_string()) return std::nullopt;
    return std::string_view(v.get_ref<const std::string&>());
  };
  switch (type) {
    case ArgType::kString:
      if (const auto s = str(); s && !s->empty() && s->size() <= kMaxString) return std::nullopt;
      return "a non-empty string of at most 128 bytes";
    case ArgType::kName:
      if (const auto s = str(); s && is_name(*s)) return std::nullopt;
      return "a name of 1..64 letters, digits, '_', '-' or '.'";
    case ArgType::kIpv4:
      if (const auto s = str(); s && net::Ipv4Addr::parse(*s)) return std::nullopt;
      return "an IPv4 address (dotted quad) as a string";
    case ArgType::kPort:
      if (unsigned_in(v, 0, 65535)) return std::nullopt;
      return "an integer 0..65535";
    case ArgType::kWeight:
      if (unsigned_in(v, 0, kMaxWeight)) return std::nullopt;
      return "an integer 0..1000000";
    case ArgType::kLimit:
      if (unsigned_in(v, 1, kMaxListLimit)) return std::nullopt;
      return "an integer 1..100000";
    case ArgType::kTableSize:
      if (unsigned_in(v, 1, kMaxTableSize)) return std::nullopt;
      return "an integer 1..16777216";
    case ArgType::kProtocol:
      if (const auto s = str(); s && (*s == "tcp" || *s == "udp")) return std::nullopt;
      return "\"tcp\" or \"udp\"";
    case ArgType::kMode:
      if (const auto s = str(); s && one_of(kModes, *s)) return std::nullopt;
      return "one of \"nat\", \"fullnat\", \"dsr\", \"tunnel\"";
    case ArgType::kLogLevel:
      if (const auto s = str(); s && one_of(kLogLevels, *s)) return std::nullopt;
      return "one of trace, debug, info, warn, error, critical, off";
    case ArgType::kTcpState:
      if (const auto s = str(); s && one_of(kTcpStates, *s)) return std::nullopt;
      return "a connection state (syn_sent, syn_recv, established, fin_wait, close_wait, last_ack, "
             "time_wait, close, udp, none)";
    case ArgType::kBool:
      if (v.is_boolean()) return std::nullopt;
      return "true or false";
    case ArgType::kPath:
      if (const auto s = str(); s && !s->empty() && s->front() == '/' && s->size() <= kMaxPath &&
                                s->find('\0') == std::string_view::npos)
        return std::nullopt;
      return "an absolute path";
    case ArgType::kIpv4List:
      if (v.is_array() && v.size() <= kMaxIpv4List) {
        bool ok = true;
        for (const auto& a : v) ok = ok && a.is_string() && net::Ipv4Addr::parse(a.get_ref<const std::string&>());
        if (ok) return std::nullopt;
      }
      return "an array of at most 64 IPv4 addresses";
  }
  return "a value of a known type";
}

json reply_head(const json& id) {
  json r = json::object();
  r["v"] = kProtocolVersion;
  if (!id.is_null()) r["id"] = id;
  return r;
}

}  // namespace

const char* to_string(ErrorCode c) {
  switch (c) {
    case ErrorCode::kParseError: return "parse_error";
    case ErrorCode::kBadRequest: return "bad_request";
    case ErrorCode::kUnsupportedVersion: return "unsupported_version";
    case ErrorCode::kUnknownCommand: return "unknown_command";
    case ErrorCode::kInvalidArgument: return "invalid_argument";
    case ErrorCode::kNotFound: return "not_found";
    case ErrorCode::kConflict: return "conflict";
    case ErrorCode::kForbidden: return "forbidden";
    case ErrorCode::kLineTooLong: return "line_too_long";
    case ErrorCode::kInternal: return "internal";
    case ErrorCode::kCount: break;
  }
  return "internal";
}

const char* to_string(ArgType t) {
  switch (t) {
    case ArgType::kString: return "string";
    case ArgType::kName: return "name";
    case ArgType::kIpv4: return "ipv4";
    case ArgType::kPort: return "port";
    case ArgType::kWeight: return "weight";
    case ArgType::kLimit: return "limit";
    case ArgType::kProtocol: return "protocol";
    case ArgType::kMode: return "mode";
    case ArgType::kLogLevel: return "log level";
    case ArgType::kTcpState: return "state";
    case ArgType::kBool: return "bool";
    case ArgType::kPath: return "path";
    case ArgType::kIpv4List: return "ipv4 list";
    case ArgType::kTableSize: return "table size";
  }
  return "?";
}

std::span<const CommandSpec> commands() { return kCommands; }

const CommandSpec* find_command(std::string_view name) {
  for (const auto& c : kCommands)
    if (c.name == name) return &c;
  return nullptr;
}

std::optional<Error> check_args(const CommandSpec& spec, const json& args) {
  if (!args.is_object()) return Error{ErrorCode::kBadRequest, "args: expected an object"};
  for (const auto& [key, value] : args.items()) {
    const ArgSpec* a = nullptr;
    for (const auto& s : spec.args)
      if (s.name == key) a = &s;
    if (!a) return Error{ErrorCode::kInvalidArgument, "args." + key + ": unknown argument of " + std::string(spec.name)};
    if (const auto why = type_problem(a->type, value))
      return Error{ErrorCode::kInvalidArgument, "args." + key + ": expected " + *why};
  }
  for (const auto& s : spec.args)
    if (s.required && !args.contains(std::string(s.name)))
      return Error{ErrorCode::kInvalidArgument, "args." + std::string(s.name) + ": required by " + std::string(spec.name)};
  return std::nullopt;
}

Parsed parse_request(std::string_view line) {
  Parsed out;
  if (line.size() > kMaxLineBytes) {
    out.error = {ErrorCode::kLineTooLong, "request longer than " + std::to_string(kMaxLineBytes) + " bytes"};
    return out;
  }
  // No exceptions: a malformed line yields a discarded value. Depth is bounded by the line length.
  json doc = json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) {
    out.error = {ErrorCode::kParseError, "not a JSON value"};
    return out;
  }
  if (!doc.is_object()) {
    out.error = {ErrorCode::kBadRequest, "a request is a JSON object"};
    return out;
  }
  if (const auto it = doc.find("id"); it != doc.end()) {
    if (it->is_number_integer() || (it->is_string() && it->get_ref<const std::string&>().size() <= kMaxString)) {
      out.id = *it;
    } else {
      out.error = {ErrorCode::kBadRequest, "id: expected an integer or a string of at most 128 bytes"};
      return out;
    }
  }
  const auto v = doc.find("v");
  if (v == doc.end() || !v->is_number_integer()) {
    out.error = {ErrorCode::kBadRequest, "v: the protocol version (an integer) is required"};
    return out;
  }
  if (v->get<std::int64_t>() != kProtocolVersion) {
    out.error = {ErrorCode::kUnsupportedVersion,
                 "v: version " + v->dump() + " is not supported (this daemon speaks " +
                     std::to_string(kProtocolVersion) + ")"};
    return out;
  }
  const auto cmd = doc.find("cmd");
  if (cmd == doc.end() || !cmd->is_string()) {
    out.error = {ErrorCode::kBadRequest, "cmd: a command name (a string) is required"};
    return out;
  }
  for (const auto& [key, value] : doc.items()) {
    (void)value;
    if (key != "v" && key != "id" && key != "cmd" && key != "args") {
      out.error = {ErrorCode::kBadRequest, key + ": unknown field (a request has v, id, cmd, args)"};
      return out;
    }
  }
  Request r;
  r.id = out.id;
  r.cmd = cmd->get<std::string>();
  r.spec = find_command(r.cmd);
  if (!r.spec) {
    const std::string shown = r.cmd.size() > 64 ? r.cmd.substr(0, 64) + "..." : r.cmd;
    out.error = {ErrorCode::kUnknownCommand, "cmd: unknown command \"" + shown + "\""};
    return out;
  }
  const auto args = doc.find("args");
  r.args = args == doc.end() ? json::object() : *args;
  if (auto e = check_args(*r.spec, r.args)) {
    out.error = std::move(*e);
    return out;
  }
  out.request = std::move(r);
  return out;
}

std::string encode_result(const json& id, const json& result) {
  json r = reply_head(id);
  r["ok"] = true;
  r["result"] = result;
  return r.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

std::string encode_error(const json& id, const Error& error) {
  json r = reply_head(id);
  r["ok"] = false;
  r["error"] = {{"code", to_string(error.code)}, {"message", error.message}};
  return r.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

std::string encode_request(const json& id, std::string_view cmd, const json& args) {
  json r = json::object();
  r["v"] = kProtocolVersion;
  if (!id.is_null()) r["id"] = id;
  r["cmd"] = cmd;
  if (!args.is_null() && !args.empty()) r["args"] = args;
  return r.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

}  // namespace tandem::ctl
