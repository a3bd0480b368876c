// tandemctl: the operator's command line for a running tandemd, over its ctl socket.
//
// The command tree is generated from the protocol's command table (ctl/protocol.hpp), so the
// CLI and the daemon can never disagree on names, arguments or types: `service.add` is
// `tandemctl service add --name web --vip 10.0.0.10 ...`. Output is a table or key/value lines
// for people, the reply's `result` as JSON with --json for scripts.
//
// Exit codes: 0 success; 1 the daemon refused the request (the error is printed); 2 usage;
// 3 the socket could not be reached or the reply was unreadable.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "controlplane/ctl/protocol.hpp"

using nlohmann::json;
using namespace tandem::ctl;

namespace {

constexpr const char* kDefaultSocket = "/run/tandem/tandemd.sock";
constexpr int kExitRefused = 1, kExitUsage = 2, kExitUnreachable = 3;

// Sends one request and reads one reply line.
bool exchange(const std::string& path, const std::string& request, json& reply, std::string& error) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    error = "socket path too long";
    return false;
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (fd < 0 || ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    error = "cannot connect to " + path + ": " + std::strerror(errno);
    if (fd >= 0) ::close(fd);
    return false;
  }
  timeval tv{.tv_sec = 30, .tv_usec = 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  // A server that refuses the peer answers and closes without reading, so the send may fail
  // (EPIPE) with the refusal already waiting: read it before reporting the send error.
  std::string send_error;
  std::size_t off = 0;
  while (off < request.size()) {
    const ssize_t n = ::send(fd, request.data() + off, request.size() - off, MSG_NOSIGNAL);
    if (n <= 0) {
      send_error = std::string("send: ") + std::strerror(errno);
      break;
    }
    off += static_cast<std::size_t>(n);
  }
  if (send_error.empty()) ::shutdown(fd, SHUT_WR);
  std::string buf;
  char tmp[65536];
  for (;;) {
    const ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
    if (n <= 0) break;
    buf.append(tmp, static_cast<std::size_t>(n));
    if (buf.find('\n') != std::string::npos) break;
  }
  ::close(fd);
  const std::size_t nl = buf.find('\n');
  reply = json::parse(buf.substr(0, nl), nullptr, false);
  if (nl == std::string::npos || reply.is_discarded() || !reply.is_object()) {
    error = send_error.empty() ? "no readable reply from " + path : send_error;
    return false;
  }
  return true;
}

std::string scalar(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_null()) return "-";
  return v.dump();
}

// Arrays of objects as aligned tables (the `first` columns first, then the others in key
// order); objects as "key: value" lines (nested by indentation).
void print_human(const json& v, int indent = 0, const std::vector<std::string>& first = {}) {
  const std::string pad(static_cast<std::size_t>(indent), ' ');
  if (v.is_array() && !v.empty() && v.front().is_object()) {
    std::vector<std::string> cols;
    for (const auto& c : first)
      if (std::any_of(v.begin(), v.end(), [&](const json& row) { return row.contains(c); })) cols.push_back(c);
    for (const auto& row : v)
      for (const auto& [k, x] : row.items())
        if (std::find(cols.begin(), cols.end(), k) == cols.end() && !x.is_structured()) cols.push_back(k);
    std::vector<std::size_t> width;
    for (const auto& c : cols) width.push_back(c.size());
    for (const auto& row : v)
      for (std::size_t i = 0; i < cols.size(); ++i)
        width[i] = std::max(width[i], scalar(row.value(cols[i], json())).size());
    auto line = [&](auto cell) {
      std::cout << pad;
      for (std::size_t i = 0; i < cols.size(); ++i) {
        const std::string s = cell(i);
        std::cout << s << (i + 1 < cols.size() ? std::string(width[i] - s.size() + 2, ' ') : "");
      }
      std::cout << "\n";
    };
    line([&](std::size_t i) {
      std::string h = cols[i];
      for (auto& ch : h) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
      return h;
    });
    for (const auto& row : v) line([&](std::size_t i) { return scalar(row.value(cols[i], json())); });
    return;
  }
  if (v.is_object()) {
    for (const auto& [k, x] : v.items()) {
      if (x.is_structured() && !x.empty()) {
        std::cout << pad << k << ":\n";
        print_human(x, indent + 2);
      } else {
        std::cout << pad << k << ": " << scalar(x) << "\n";
      }
    }
    return;
  }
  if (v.is_array()) {
    for (const auto& x : v) std::cout << pad << "- " << scalar(x) << "\n";
    return;
  }
  std::cout << pad << scalar(v) << "\n";
}

// Some results read better reshaped: one row per backend, the configuration as the file it is,
// only the counters that moved.
// Roles first, then the peer per path, tracking, and the failovers an operator asks about.
void print_ha_status(const json& r) {
  const json peer = r.value("peer", json::object());
  std::cout << "unit " << r.value("unit_id", 0) << (r.value("ready", false) ? " (ready)" : " (not ready: resync)")
            << ", peer unit " << peer.value("unit_id", 0) << (peer.value("alive", false) ? " alive" : " DEAD")
            << ", advert every " << r.value("advert_interval_ms", 0) << " ms, dead after "
            << r.value("dead_interval_ms", 0) << " ms, preempt " << (r.value("preempt", false) ? "on" : "off") << "\n\n";
  print_human(r["groups"], 0, {"id", "role", "priority", "effective_priority", "advertised_priority", "peer_role",
                               "peer_priority"});
  json paths = json::array();
  const json p = peer.value("paths", json::object());
  for (const auto& [name, v] : p.items()) {
    json row = v;
    row["path"] = name;
    row["state"] = v.value("alarm", false) ? "ALARM (silent)" : v.value("alive", false) ? "alive" : "silent";
    paths.push_back(row);
  }
  std::cout << "\n";
  print_human(paths, 0, {"path", "state", "adverts_sent", "adverts_received"});
  if (!r.value("tracking", json::array()).empty()) {
    std::cout << "\n";
    print_human(r["tracking"], 0, {"object", "ok", "weight"});
  }
  json refused = json::object();
  const json errors = r.value("advert_errors", json::object());
  for (const auto& [k, v] : errors.items())
    if (v != 0) refused[k] = v;
  std::cout << "\nadverts refused: " << (refused.empty() ? std::string("none") : refused.dump()) << "\n";
  if (r.contains("last_failover") && !r["last_failover"].is_null()) {
    const json& f = r["last_failover"];
    std::cout << "last takeover: group " << f.value("group", 0) << " " << f.value("from", "") << " -> "
              << f.value("to", "") << " (" << f.value("cause", "") << ")";
    if (f.contains("detection_ms")) std::cout << ", detection " << f["detection_ms"] << " ms";
    if (f.contains("takeover_ms")) std::cout << ", takeover " << f["takeover_ms"] << " ms";
    std::cout << "\n";
  }
}

// A drill in the order an operator reads it: did it work, how long, what was at stake.
void print_drill(const json& r) {
  std::cout << "drill " << r.value("result", "") << ": group(s) " << r["groups"].dump() << " handed to unit "
            << scalar(r["peer_unit"]) << "\n";
  std::cout << "released here after " << scalar(r["released_ms"]) << " ms; the peer active after "
            << scalar(r["peer_active_ms"]) << " ms (its adverts; a crash would add the dead interval, "
            << scalar(r["crash_detection_ms"]) << " ms)\n";
  std::cout << "connections held " << scalar(r["connections_held"]) << ", replicated " << scalar(r["replicated"])
            << ", changes not acked by the peer at the handover " << scalar(r["unacked_at_handover"]) << " (sync "
            << r.value("sync", "") << ", lag " << scalar(r["lag_ms_at_handover"]) << " ms)\n";
}

// The two units' services (config sync): the same, which is newer, or a conflict.
std::string services_relation(const json& cfg) {
  const std::string rel = cfg.value("relation", "");
  const std::string where = " (" + scalar(cfg["digest"]) + " here, " + scalar(cfg["peer_digest"]) + " there)";
  const bool push = cfg.value("mode", "") == "push";
  if (rel.empty()) return "not compared yet";
  if (rel == "same") return "match";
  if (rel == "newer") return "DIFFER: this unit's are newer" + where + (push ? ", pushed to the peer" : "");
  if (rel == "older") return "DIFFER: the peer's are newer" + where + (push ? ", its push expected" : "");
  return "CONFLICT: each unit changed them" + where + "; nothing merged (`tandemctl sync push` on the right one)";
}

// What an operator asks first: ready, the peer, lag, resync; then the streams and what was
// refused (only what is not zero).
void print_sync_status(const json& r) {
  const json peer = r.value("peer", json::object());
  const json lag = r.value("lag", json::object());
  const json resync = r.value("resync", json::object());
  const json cfg = r.value("config", json::object());
  std::cout << "state sync " << r.value("mode", "") << " " << r.value("listen", "") << " -> "
            << r.value("peer_address", "") << ", "
            << (r.value("ready", false) ? "ready (holds the peer's connections)" : "NOT READY (no complete resync)")
            << (r.value("alarm", false) ? ", ALARM: authentication failures" : "") << "\n";
  std::cout << "peer: " << (peer.value("heard", false) ? "unit " + scalar(peer["unit_id"]) + ", last heard " +
                                                             scalar(peer["last_heard_ms_ago"]) + " ms ago"
                                                       : std::string("never heard"))
            << "; services " << services_relation(cfg) << "\n";
  std::cout << "lag: " << scalar(lag["entries"]) << " change(s), " << scalar(lag["ms"]) << " ms (max "
            << scalar(lag["max_ms"]) << " ms)\n";
  if (r.value("mode", "") == "sync") {
    const json hold = r.value("hold", json::object());
    std::cout << "hold: " << (hold.value("holding", false) ? "on" : "OFF (the peer does not ack)") << ", "
              << scalar(hold["held"]) << " first packets held, " << scalar(hold["released_acked"]) << " acked, "
              << scalar(hold["released_timeout"]) << " timed out, " << scalar(hold["not_held"])
              << " not held; average " << scalar(hold["average_us"]) << " us\n";
  }
  std::cout << "resync: " << resync.value("state", "") << ", " << scalar(resync["completed"]) << " received ("
            << scalar(resync["last_entries"]) << " connections in " << scalar(resync["last_ms"]) << " ms last), "
            << scalar(resync["served"]) << " served" << (resync.value("serving", false) ? ", serving one now" : "")
            << "\n\n";
  const json send = r.value("send", json::object()), receive = r.value("receive", json::object());
  print_human(json::array({json{{"stream", "send"},
                                {"sequence", send.value("sequence", 0)},
                                {"acked", send.value("acked", 0)},
                                {"in_flight", send.value("in_flight", 0)},
                                {"messages", send.value("messages", 0)},
                                {"records", send.value("records", 0)},
                                {"retransmits", send.value("retransmits", 0)}},
                           json{{"stream", "receive"},
                                {"messages", receive.value("messages", 0)},
                                {"delivered", receive.value("delivered", 0)},
                                {"records", receive.value("records", 0)},
                                {"out_of_order", receive.value("out_of_order", 0)},
                                {"duplicates", receive.value("duplicates", 0)},
                                {"skipped", receive.value("skipped", 0)}}}),
              0, {"stream", "sequence", "acked", "in_flight", "messages", "delivered", "records"});
  const auto nonzero = [](const json& o) {
    json out = json::object();
    for (const auto& [k, v] : o.items())
      if (v.is_number() && v != 0) out[k] = v;
    return out.empty() ? std::string("none") : out.dump();
  };
  std::cout << "\napplied: " << nonzero(r.value("apply", json::object())) << "\n";
  std::cout << "refused: " << nonzero(r.value("errors", json::object())) << "\n";
  std::cout << "lost or held back: "
            << nonzero(json{{"gave_up", send.value("gave_up", 0)},
                            {"backpressure", send.value("backpressure", 0)},
                            {"ring_dropped", send.value("ring_dropped", 0)}})
            << "\n";
}

void print_for_people(std::string_view cmd, const json& result) {
  if (cmd == "config.show" && result.contains("toml")) {
    std::cout << result["toml"].get<std::string>();
    return;
  }
  if (cmd == "services.list" && result.contains("services")) {
    json rows = json::array();
    for (const auto& s : result["services"]) {
      const json row = {{"service", s.value("name", "")}, {"vip", s.value("vip", "")}, {"port", s.value("port", 0)},
                        {"proto", s.value("protocol", "")}, {"mode", s.value("mode", "")}};
      const json backends = s.value("backends", json::array());
      if (backends.empty()) {
        json r = row;
        r["backend"] = "-";
        rows.push_back(r);
      }
      for (const auto& b : backends) {
        json r = row;
        r["backend"] = b.value("address", "?") + ":" + std::to_string(b.value("port", 0));
        r["weight"] = b.value("weight", 0);
        const std::string health = b.value("health", "none");
        r["state"] = !b.value("enabled", true) ? "disabled"
                     : health == "down"         ? "down"
                     : b.value("weight", 0) == 0 ? "drained"
                                                 : "active";
        if (health != "none") r["health"] = health;
        for (const auto& [k, v] : b.items())
          if (k != "address" && k != "port" && k != "weight" && k != "enabled" && k != "health" && !v.is_structured())
            r[k] = v;
        rows.push_back(r);
      }
    }
    if (rows.empty()) std::cout << "no services\n";
    else print_human(rows, 0, {"service", "vip", "port", "proto", "mode", "backend", "weight", "state", "health", "health_error", "connections",
                          "active", "packets_in", "packets_out", "bytes_in", "bytes_out"});
    return;
  }
  if (cmd == "connections.list" && result.contains("connections")) {
    if (!result["connections"].empty())
      print_human(result["connections"], 0,
                  {"service", "protocol", "client", "vip", "backend", "local", "mode", "state", "age_ms", "idle_ms",
                   "packets_in", "packets_out", "bytes_in", "bytes_out", "worker"});
    std::cout << result.value("shown", 0) << " of " << result.value("count", 0) << " connection(s) shown\n";
    return;
  }
  if (cmd == "counters") {
    json moved = result;
    for (const char* group : {"drops", "handled"}) {
      json nonzero = json::object();
      const json all = result.value(group, json::object());  // items() must not outlive it
      for (const auto& [k, v] : all.items())
        if (v != 0) nonzero[k] = v;
      moved[group] = nonzero.empty() ? json("none") : nonzero;
    }
    print_human(moved);
    return;
  }
  if (cmd == "backends" && result.contains("backends")) {
    if (result["backends"].empty()) std::cout << "no backends\n";
    else
      print_human(result["backends"], 0,
                  {"service", "backend", "weight", "state", "health", "last_error", "check", "checks", "failures",
                   "consecutive_ok", "consecutive_fail", "last_check_ms", "since_change_ms"});
    return;
  }
  if (cmd == "sync.status" && result.contains("lag")) {
    print_sync_status(result);
    return;
  }
  if (cmd == "ha.status" && result.contains("groups")) {
    print_ha_status(result);
    return;
  }
  if (cmd == "ha.drill" && result.contains("peer_active_ms")) {
    print_drill(result);
    return;
  }
  if (cmd == "neighbours" && result.contains("neighbours")) {
    if (result["neighbours"].empty()) std::cout << "no neighbours\n";
    else print_human(result["neighbours"], 0, {"port", "address", "mac", "state"});
    return;
  }
  print_human(result);
}

// A CLI value as the JSON type the protocol wants; the daemon checks ranges again.
json to_arg(ArgType t, const std::string& text) {
  switch (t) {
    case ArgType::kPort:
    case ArgType::kWeight:
    case ArgType::kLimit:
    case ArgType::kTableSize: {
      std::size_t used = 0;
      try {
        const long long n = std::stoll(text, &used, 10);
        if (used == text.size()) return n;
      } catch (const std::exception&) {
      }
      return text;  // refused by the daemon with the argument's name
    }
    case ArgType::kBool:
      if (text == "true" || text == "yes" || text == "on" || text == "1") return true;
      if (text == "false" || text == "no" || text == "off" || text == "0") return false;
      return text;
    case ArgType::kIpv4List: {
      json list = json::array();
      std::size_t start = 0;
      while (start <= text.size() && !text.empty()) {
        const std::size_t comma = text.find(',', start);
        list.push_back(text.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
        if (comma == std::string::npos) break;
        start = comma + 1;
      }
      return list;
    }
    default:
      return text;
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tandemctl: drive a running tandemd through its ctl socket (protocol v1, docs/ctl-protocol.md)"};
  app.require_subcommand(1);
  std::string socket_path = kDefaultSocket;
  bool as_json = false;
  app.add_option("-s,--socket", socket_path, "tandemd's ctl socket")->capture_default_str();
  app.add_flag("--json", as_json, "print the reply's result as JSON");

  // One subcommand per command, grouped by the part before the dot: "service.add" is
  // `service add`, "status" is `status`.
  struct Chosen {
    const CommandSpec* spec = nullptr;
    std::map<std::string, std::string> values;
  };
  Chosen chosen;
  std::map<std::string, CLI::App*> groups;
  std::vector<std::pair<CLI::App*, const CommandSpec*>> leaves;
  std::map<const CommandSpec*, std::map<std::string, std::string>> storage;
  for (const auto& spec : commands()) {
    const std::string name(spec.name);
    const std::size_t dot = name.find('.');
    CLI::App* leaf = nullptr;
    if (dot == std::string::npos) {
      leaf = app.add_subcommand(name, std::string(spec.summary));
    } else {
      const std::string group = name.substr(0, dot);
      if (!groups.count(group)) {
        groups[group] = app.add_subcommand(group, group + " commands");
        groups[group]->require_subcommand(1);
        if (group == "connections") groups[group]->alias("conns");
      }
      leaf = groups[group]->add_subcommand(name.substr(dot + 1), std::string(spec.summary));
    }
    auto& values = storage[&spec];
    for (const auto& a : spec.args) {
      std::string opt = "--" + std::string(a.name);
      for (auto& ch : opt)
        if (ch == '_') ch = '-';
      const std::string names = a.positional ? std::string(a.name) + "," + opt : opt;
      auto* o = leaf->add_option(names, values[std::string(a.name)], std::string(to_string(a.type)));
      if (a.required) o->required();
    }
    leaves.emplace_back(leaf, &spec);
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : kExitUsage;
  }
  for (const auto& [leaf, spec] : leaves)
    if (leaf->parsed()) chosen.spec = spec;
  if (!chosen.spec) {
    std::cerr << app.help();
    return kExitUsage;
  }

  json args = json::object();
  for (const auto& a : chosen.spec->args) {
    const std::string key(a.name);
    const auto& value = storage[chosen.spec][key];
    std::string opt = "--" + key;
    for (auto& ch : opt)
      if (ch == '_') ch = '-';
    bool given = false;
    for (const auto& [leaf, spec] : leaves)
      if (spec == chosen.spec) given = leaf->count(opt) > 0;
    if (given) args[key] = to_arg(a.type, value);
  }

  json reply;
  std::string error;
  if (!exchange(socket_path, encode_request(1, chosen.spec->name, args), reply, error)) {
    std::cerr << "tandemctl: " << error << "\n";
    return kExitUnreachable;
  }
  if (!reply.value("ok", false)) {
    const json e = reply.value("error", json::object());
    std::cerr << "tandemctl: " << e.value("code", "error") << ": " << e.value("message", "") << "\n";
    return kExitRefused;
  }
  const json result = reply.value("result", json::object());
  if (as_json)
    std::cout << result.dump(2) << "\n";
  else
    print_for_people(chosen.spec->name, result);
  return 0;
}
