#include "controlplane/config/config.hpp"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <tuple>

#include <toml++/toml.h>

#include "controlplane/config/service_rules.hpp"
#include "dataplane/counters.hpp"
#include "dataplane/lb/maglev.hpp"
#include "dataplane/local_stack.hpp"

namespace tandem::config {

const char* to_string(PortRole r) {
  switch (r) {
    case PortRole::kNorth: return "north";
    case PortRole::kSouth: return "south";
    case PortRole::kBoth: return "both";
  }
  return "unknown";
}

const char* to_string(SyncMode m) { return m == SyncMode::kSync ? "sync" : "async"; }
const char* to_string(ConfigSyncMode m) { return m == ConfigSyncMode::kCompare ? "compare" : "push"; }
const char* to_string(L4Protocol p) { return p == L4Protocol::kTcp ? "tcp" : "udp"; }

const char* to_string(HealthCheckType t) {
  switch (t) {
    case HealthCheckType::kNone: return "none";
    case HealthCheckType::kTcp: return "tcp";
    case HealthCheckType::kHttp: return "http";
  }
  return "unknown";
}

const char* to_string(BackendDownPolicy p) { return p == BackendDownPolicy::kKeep ? "keep" : "reset"; }

const char* to_string(TrackKind k) {
  switch (k) {
    case TrackKind::kPortLink: return "link";
    case TrackKind::kGateway: return "gateway";
    case TrackKind::kService: return "service";
  }
  return "unknown";
}

bool PortConfig::is_pci() const {
  // domain:bus:device.function ("0000:03:00.0") or bus:device.function ("03:00.0")
  const std::string n = device_name();
  const auto colons = std::count(n.begin(), n.end(), ':');
  return (colons == 1 || colons == 2) && n.find('.') != std::string::npos &&
         std::all_of(n.begin(), n.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) || c == ':' || c == '.'; });
}

std::string PortConfig::devarg(std::string_view key) const {
  std::string_view rest = device;
  while (!rest.empty()) {
    const auto comma = rest.find(',');
    const std::string_view item = rest.substr(0, comma);
    if (item.size() > key.size() && item.substr(0, key.size()) == key && item[key.size()] == '=')
      return std::string(item.substr(key.size() + 1));
    rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
  }
  return {};
}

std::vector<net::Ipv4Prefix> PortConfig::addresses() const {
  std::vector<net::Ipv4Prefix> all = {address};
  all.insert(all.end(), secondary_addresses.begin(), secondary_addresses.end());
  return all;
}

std::string ConfigError::to_string() const {
  std::ostringstream s;
  s << file << ':' << line << ':' << column << ": ";
  if (!key.empty()) s << key << ": ";
  s << message;
  return s.str();
}

namespace {

// Reads the keys of one TOML table, checks each against its rules, and remembers which keys
// were read so that anything left over is reported as unknown.
class TableReader {
 public:
  TableReader(const toml::table& table, std::string path, std::string file,
              std::vector<ConfigError>& errors)
      : table_(table), path_(std::move(path)), file_(std::move(file)), errors_(errors) {}

  ~TableReader() {
    for (auto&& [key, node] : table_) {
      if (!known_.count(std::string(key.str())))
        error_at(key.source(), qualified(key.str()), "unknown key");
    }
  }

  TableReader(const TableReader&) = delete;
  TableReader& operator=(const TableReader&) = delete;

  const toml::node* node(std::string_view key) {
    known_.insert(std::string(key));
    return table_.get(key);
  }

  // Integer in [min, max]; keeps `out` (the default) when absent unless required.
  template <typename T>
  void integer(std::string_view key, T& out, std::int64_t min, std::int64_t max, bool required = false) {
    const toml::node* n = node(key);
    if (!n) return missing(key, required);
    const auto* v = n->as_integer();
    if (!v) return error_at(n->source(), qualified(key), "expected an integer");
    const std::int64_t x = v->get();
    if (x < min || x > max) {
      return error_at(n->source(), qualified(key),
                      "must be between " + std::to_string(min) + " and " + std::to_string(max) +
                          ", got " + std::to_string(x));
    }
    out = static_cast<T>(x);
  }

  void boolean(std::string_view key, bool& out) {
    const toml::node* n = node(key);
    if (!n) return;
    const auto* v = n->as_boolean();
    if (!v) return error_at(n->source(), qualified(key), "expected true or false");
    out = v->get();
  }

  // String passing `check` (which returns an error message, empty when the value is good).
  void string(std::string_view key, std::string& out, bool required = false,
              const std::function<std::string(const std::string&)>& check = {}) {
    const toml::node* n = node(key);
    if (!n) return missing(key, required);
    const auto* v = n->as_string();
    if (!v) return error_at(n->source(), qualified(key), "expected a string");
    if (check) {
      if (auto msg = check(v->get()); !msg.empty()) return error_at(n->source(), qualified(key), msg);
    }
    out = v->get();
  }

  void string_array(std::string_view key, std::vector<std::string>& out) {
    const toml::node* n = node(key);
    if (!n) return;
    const auto* arr = n->as_array();
    if (!arr) return error_at(n->source(), qualified(key), "expected an array of strings");
    out.clear();
    for (const auto& item : *arr) {
      const auto* s = item.as_string();
      if (!s) return error_at(item.source(), qualified(key), "expected an array of strings");
      out.push_back(s->get());
    }
  }

  bool has(std::string_view key) const { return table_.contains(key); }

  // An array of tables ([[key]]): calls fn(table, index, path) for each, at most `max`
  // (`plural` names them in the error); reports a non-array, too many entries and non-table
  // elements. `required`: at least one.
  template <typename Fn>
  void tables(std::string_view key, std::string_view plural, std::size_t max, bool required, Fn&& fn) {
    const toml::node* n = node(key);
    const auto* arr = n ? n->as_array() : nullptr;
    const std::string name = qualified(key);
    if (n && !arr) return error(key, "expected [[" + name + "]] tables");
    if (!arr || arr->empty()) {
      if (required) error(key, "at least one [[" + name + "]] is required");
      return;
    }
    if (arr->size() > max)
      return error(key, "at most " + std::to_string(max) + " " + std::string(plural) + " are supported");
    std::size_t i = 0;
    for (const auto& item : *arr) {
      const std::string path = name + "[" + std::to_string(i) + "]";
      if (const auto* t = item.as_table()) fn(*t, i, path);
      else error_at(item.source(), path, "expected a [[" + name + "]] table");
      ++i;
    }
  }

  const toml::table* table(std::string_view key) {
    const toml::node* n = node(key);
    if (!n) return nullptr;
    const auto* t = n->as_table();
    if (!t) error_at(n->source(), qualified(key), "expected a table");
    return t;
  }

  void error_at(const toml::source_region& where, std::string key, std::string message) {
    errors_.push_back({file_, where.begin.line, where.begin.column, std::move(key), std::move(message)});
  }
  void error(std::string_view key, std::string message) {
    const toml::node* n = table_.get(key);
    error_at(n ? n->source() : table_.source(), qualified(key), std::move(message));
  }
  std::string qualified(std::string_view key) const {
    return path_.empty() ? std::string(key) : path_ + "." + std::string(key);
  }
  const std::string& file() const { return file_; }
  std::vector<ConfigError>& errors() { return errors_; }

 private:
  void missing(std::string_view key, bool required) {
    if (required) error_at(table_.source(), qualified(key), "is required");
  }

  const toml::table& table_;
  std::string path_;
  std::string file_;
  std::vector<ConfigError>& errors_;
  std::set<std::string> known_;
};

std::string check_name(const std::string& s) { return name_problem(s); }

// Port names appear in telemetry keys, which allow only letters, digits, '_' and '/'.
std::string check_port_name(const std::string& s) {
  if (s.empty() || s.size() > 32) return "must be 1 to 32 characters";
  const bool ok = std::all_of(s.begin(), s.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; });
  return ok ? "" : "may hold only letters, digits and '_'";
}

std::string check_lcores(const std::string& s) {
  // EAL -l syntax: comma-separated lcore ids and ranges, e.g. "0", "1-3", "0,2-3".
  constexpr unsigned kMaxLcore = 1023;
  const std::string usage = "must be an EAL lcore list such as \"0\", \"1-3\" or \"0,2-3\"";
  auto number = [](std::string_view t, unsigned& out) {
    if (t.empty() || t.size() > 4) return false;
    if (!std::all_of(t.begin(), t.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); })) return false;
    out = static_cast<unsigned>(std::stoul(std::string(t)));
    return out <= kMaxLcore;
  };
  std::string_view rest = s;
  do {
    const auto comma = rest.find(',');
    const std::string_view item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
    const auto dash = item.find('-');
    unsigned lo = 0, hi = 0;
    if (!number(item.substr(0, dash), lo)) return usage;
    if (dash != std::string_view::npos && (!number(item.substr(dash + 1), hi) || hi < lo)) return usage;
    if (comma != std::string_view::npos && rest.empty()) return usage;
  } while (!rest.empty());
  return "";
}

std::string check_log_level(const std::string& s) {
  static const std::set<std::string> kLevels = {"trace", "debug", "info", "warn", "error", "critical", "off"};
  return kLevels.count(s) ? "" : "must be one of trace, debug, info, warn, error, critical, off";
}

bool is_power_of_two(std::uint32_t v) { return v != 0 && (v & (v - 1)) == 0; }

// An address a port answers for, with its subnet: "10.0.0.2/24".
std::string check_host_prefix(const std::string& s) {
  const auto prefix = net::Ipv4Prefix::parse(s);
  if (!prefix) return "must be an IPv4 address with a prefix length, e.g. \"10.0.0.2/24\"";
  if (prefix->length > 30 && prefix->length != 32) return "prefix /31 is not supported";
  if (prefix->length <= 30 && (prefix->addr == prefix->network() || prefix->addr == prefix->broadcast()))
    return "is the network or broadcast address of " + prefix->network().to_string() + "/" + std::to_string(prefix->length);
  return "";
}

// A network: "198.51.100.0/24", host bits zero.
std::string check_network_prefix(const std::string& s) {
  const auto prefix = net::Ipv4Prefix::parse(s);
  if (!prefix) return "must be an IPv4 prefix, e.g. \"198.51.100.0/24\"";
  if (prefix->addr != prefix->network())
    return "has host bits set; the network is " + prefix->network().to_string() + "/" + std::to_string(prefix->length);
  return "";
}

void read_unit(TableReader& root, Config& c) {
  const toml::table* t = root.table("unit");
  if (!t) {
    if (!root.has("unit")) root.error("unit", "the [unit] table is required");
    return;
  }
  TableReader r(*t, "unit", root.file(), root.errors());
  r.integer("id", c.unit.id, 1, 255, true);
  r.string("name", c.unit.name, true, check_name);
}

void read_eal(TableReader& root, Config& c) {
  const toml::table* t = root.table("eal");
  if (!t) return;
  TableReader r(*t, "eal", root.file(), root.errors());
  r.string("lcores", c.eal.lcores, false, check_lcores);
  r.integer("memory_mb", c.eal.memory_mb, 64, 1 << 20);
  r.boolean("no_huge", c.eal.no_huge);
  r.string("file_prefix", c.eal.file_prefix, false, check_name);
  r.string_array("extra_args", c.eal.extra_args);
}

void read_worker(TableReader& root, Config& c) {
  const toml::table* t = root.table("worker");
  if (!t) return;
  TableReader r(*t, "worker", root.file(), root.errors());
  r.integer("burst_size", c.worker.burst_size, 1, 512);
  r.boolean("idle_backoff", c.worker.idle_backoff);
  r.integer("idle_polls_before_sleep", c.worker.idle_polls_before_sleep, 1, 1'000'000);
  r.integer("idle_sleep_us", c.worker.idle_sleep_us, 1, 100'000);
}

void read_neighbour(TableReader& root, Config& c) {
  const toml::table* t = root.table("neighbour");
  if (!t) return;
  TableReader r(*t, "neighbour", root.file(), root.errors());
  auto& n = c.neighbour;
  r.integer("capacity", n.capacity, 16, 1 << 20);
  r.integer("reachable_ms", n.reachable_ms, 100, 3'600'000);
  r.integer("stale_ms", n.stale_ms, 100, 86'400'000);
  r.integer("probe_interval_ms", n.probe_interval_ms, 10, 60'000);
  r.integer("max_probes", n.max_probes, 1, 20);
  if (n.stale_ms < n.reachable_ms) r.error("stale_ms", "must not be less than reachable_ms");
}

void read_xdp(TableReader& root, Config& c) {
  const toml::table* t = root.table("xdp");
  if (!t) return;
  TableReader r(*t, "xdp", root.file(), root.errors());
  r.string("program", c.xdp.program);
  std::vector<std::string> blocklist;
  r.string_array("blocklist", blocklist);
  if (blocklist.size() > kMaxBlocklistPrefixes) {
    r.error("blocklist", "at most " + std::to_string(kMaxBlocklistPrefixes) + " prefixes");
    return;
  }
  for (const auto& text : blocklist) {
    if (auto msg = check_network_prefix(text); !msg.empty()) {
      r.error("blocklist", "\"" + text + "\" " + msg);
      continue;
    }
    const auto prefix = *net::Ipv4Prefix::parse(text);
    if (std::find(c.xdp.blocklist.begin(), c.xdp.blocklist.end(), prefix) != c.xdp.blocklist.end())
      r.error("blocklist", prefix.to_string() + " is listed twice");
    else
      c.xdp.blocklist.push_back(prefix);
  }
}

void read_conntrack(TableReader& root, Config& c) {
  const toml::table* t = root.table("conntrack");
  if (!t) return;
  TableReader r(*t, "conntrack", root.file(), root.errors());
  auto& ct = c.conntrack;
  r.integer("capacity", ct.capacity, 16, 1 << 26);
  constexpr std::int64_t kMaxMs = 86'400'000;
  r.integer("tcp_syn_sent_ms", ct.timeouts.syn_sent_ms, 100, kMaxMs);
  r.integer("tcp_syn_recv_ms", ct.timeouts.syn_recv_ms, 100, kMaxMs);
  r.integer("tcp_established_ms", ct.timeouts.established_ms, 100, kMaxMs);
  r.integer("tcp_fin_wait_ms", ct.timeouts.fin_wait_ms, 100, kMaxMs);
  r.integer("tcp_close_wait_ms", ct.timeouts.close_wait_ms, 100, kMaxMs);
  r.integer("tcp_last_ack_ms", ct.timeouts.last_ack_ms, 100, kMaxMs);
  r.integer("tcp_time_wait_ms", ct.timeouts.time_wait_ms, 100, kMaxMs);
  r.integer("tcp_close_ms", ct.timeouts.close_ms, 100, kMaxMs);
  r.integer("udp_ms", ct.timeouts.udp_ms, 100, kMaxMs);
}

void read_log(TableReader& root, Config& c) {
  const toml::table* t = root.table("log");
  if (!t) return;
  TableReader r(*t, "log", root.file(), root.errors());
  r.string("level", c.log.level, false, check_log_level);
}

// "ADDRESS:PORT", an IPv4 address and a TCP port: where the metrics endpoint listens.
std::string check_listen(const std::string& s, net::Ipv4Addr* address = nullptr, std::uint16_t* port = nullptr) {
  const std::string usage = "must be \"ADDRESS:PORT\" with an IPv4 address, e.g. \"127.0.0.1:9469\"";
  const auto colon = s.rfind(':');
  if (colon == std::string::npos) return usage;
  const auto a = net::Ipv4Addr::parse(s.substr(0, colon));
  if (!a) return usage;
  const std::string p = s.substr(colon + 1);
  if (p.empty() || p.size() > 5 || !std::all_of(p.begin(), p.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }))
    return "port must be a number between 1 and 65535, got \"" + p + "\"";
  const unsigned long n = std::stoul(p);
  if (n < 1 || n > 65535) return "port must be between 1 and 65535, got " + p;
  if (address) *address = *a;
  if (port) *port = static_cast<std::uint16_t>(n);
  return "";
}

void read_metrics(TableReader& root, Config& c) {
  const toml::table* t = root.table("metrics");
  if (!t) return;
  TableReader r(*t, "metrics", root.file(), root.errors());
  r.string("listen", c.metrics.listen, false, [](const std::string& s) {
    return s.empty() ? std::string() : check_listen(s);
  });
  if (!c.metrics.listen.empty()) check_listen(c.metrics.listen, &c.metrics.address, &c.metrics.port);
}

// A user or group as /etc/passwd and /etc/group spell them, or a numeric id.
std::string check_account(const std::string& s) {
  const auto digit = [](char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; };
  if (!s.empty() && s.size() <= 10 && std::all_of(s.begin(), s.end(), digit)) return "";
  const bool ok = !s.empty() && s.size() <= 32 && (std::islower(static_cast<unsigned char>(s[0])) || s[0] == '_') &&
                  std::all_of(s.begin(), s.end(), [&](char c) {
                    return std::islower(static_cast<unsigned char>(c)) || digit(c) || c == '_' || c == '-' || c == '.';
                  });
  return ok ? "" : "must be a user or group name (e.g. \"tandem\") or a numeric id";
}

void read_accounts(TableReader& r, std::string_view key, std::vector<std::string>& out) {
  r.string_array(key, out);
  for (const auto& a : out)
    if (auto msg = check_account(a); !msg.empty()) r.error(key, "\"" + a + "\" " + msg);
}

void read_ctl(TableReader& root, Config& c) {
  const toml::table* t = root.table("ctl");
  if (!t) return;
  TableReader r(*t, "ctl", root.file(), root.errors());
  auto& ctl = c.ctl;
  r.string("socket", ctl.socket, false, [](const std::string& s) {
    if (s.empty()) return std::string();  // no ctl socket
    if (s.front() != '/') return std::string("must be an absolute path (or \"\" for no ctl socket)");
    if (s.size() > 107) return std::string("must be at most 107 bytes (a Unix socket address)");
    return std::string();
  });
  r.integer("mode", ctl.mode, 0, 0777);
  r.string("owner", ctl.owner, false, [](const std::string& s) { return s.empty() ? "" : check_account(s); });
  r.string("group", ctl.group, false, [](const std::string& s) { return s.empty() ? "" : check_account(s); });
  read_accounts(r, "allowed_users", ctl.allowed_users);
  read_accounts(r, "allowed_groups", ctl.allowed_groups);
  read_accounts(r, "read_only_users", ctl.read_only_users);
  read_accounts(r, "read_only_groups", ctl.read_only_groups);
}

bool has_port(const Config& c, const std::string& name) {
  return std::any_of(c.ports.begin(), c.ports.end(), [&](const PortConfig& p) { return p.name == name; });
}

void read_ha_group(const toml::table& t, const std::string& path, TableReader& parent, Config& c) {
  TableReader r(t, path, parent.file(), parent.errors());
  HaGroupConfig g;
  g.id = 0;  // stays 0 when the id is missing or out of range: no duplicate check then
  r.integer("id", g.id, 1, kMaxHaGroupId, true);
  r.integer("priority", g.priority, 1, 255);
  if (const toml::node* n = r.node("floating_addresses")) {
    const auto* arr = n->as_array();
    if (!arr) return r.error_at(n->source(), path + ".floating_addresses", "expected an array of { port, address } tables");
    std::size_t i = 0;
    for (const auto& item : *arr) {
      const std::string ipath = path + ".floating_addresses[" + std::to_string(i++) + "]";
      const auto* ft = item.as_table();
      if (!ft) {
        r.error_at(item.source(), ipath, "expected a { port = \"...\", address = \"A.B.C.D/N\" } table");
        continue;
      }
      TableReader fr(*ft, ipath, r.file(), r.errors());
      FloatingAddress f;
      fr.string("port", f.port, true, [&](const std::string& v) {
        return has_port(c, v) ? std::string() : "no [[port]] is named \"" + v + "\"";
      });
      std::string address;
      fr.string("address", address, true, check_host_prefix);
      if (auto prefix = net::Ipv4Prefix::parse(address)) f.address = *prefix;
      g.floating_addresses.push_back(std::move(f));
    }
  }
  for (const auto& other : c.ha.groups)
    if (g.id != 0 && other.id == g.id) r.error("id", "group " + std::to_string(g.id) + " is defined twice");
  c.ha.groups.push_back(std::move(g));
}

void read_ha_track(const toml::table& t, const std::string& path, TableReader& parent, Config& c) {
  TableReader r(t, path, parent.file(), parent.errors());
  HaTrackConfig k;
  const auto port_check = [&](const std::string& v) {
    return has_port(c, v) ? std::string() : "no [[port]] is named \"" + v + "\"";
  };
  int kinds = 0;
  if (r.has("link")) {
    ++kinds;
    k.kind = TrackKind::kPortLink;
    r.string("link", k.port, false, port_check);
  }
  if (r.has("gateway")) {
    ++kinds;
    k.kind = TrackKind::kGateway;
    r.string("gateway", k.port, false, [&](const std::string& v) {
      if (auto msg = port_check(v); !msg.empty()) return msg;
      const auto it = std::find_if(c.ports.begin(), c.ports.end(), [&](const PortConfig& p) { return p.name == v; });
      return it->gateway ? std::string() : "port \"" + v + "\" has no gateway to track";
    });
  }
  if (r.has("service")) {
    ++kinds;
    k.kind = TrackKind::kService;
    r.string("service", k.service, false);  // checked against the services once they are read
  }
  if (kinds != 1) r.error_at(t.source(), path, "needs exactly one of link = PORT, gateway = PORT or service = NAME");
  r.integer("min_healthy", k.min_healthy, 1, kMaxBackendsPerService);
  if (k.kind != TrackKind::kService && r.has("min_healthy")) r.error("min_healthy", "applies to service = NAME only");
  r.integer("weight", k.weight, 0, 254);
  c.ha.track.push_back(std::move(k));
}

// Read after the ports (it names them); the services' groups and tracked services are checked
// after the services (check_ha_references).
void read_ha(TableReader& root, Config& c) {
  const toml::table* t = root.table("ha");
  if (!t) return;
  TableReader r(*t, "ha", root.file(), root.errors());
  HaConfig& ha = c.ha;
  ha.enabled = true;
  r.integer("priority", ha.priority, 1, 255);
  r.boolean("preempt", ha.preempt);
  r.integer("advert_interval_ms", ha.advert_interval_ms, 1, 10'000);
  r.integer("dead_intervals", ha.dead_intervals, 2, 100);
  r.integer("hold_down_ms", ha.hold_down_ms, 0, 600'000);
  r.string("key", ha.key, false, [](const std::string& v) {
    return v.size() >= 16 ? "" : "must be at least 16 bytes";
  });
  r.string("key_file", ha.key_file, false, [](const std::string& v) {
    return !v.empty() && v.front() == '/' ? "" : "must be an absolute path";
  });
  if (!r.has("key") && !r.has("key_file"))
    r.error_at(t->source(), "ha", "needs key or key_file: the pre-shared key that authenticates the peer");
  else if (r.has("key") && r.has("key_file"))
    r.error("key_file", "give key or key_file, not both");
  r.string("sync_listen", ha.sync_listen, true, [](const std::string& v) { return check_listen(v); });
  r.string("sync_peer", ha.sync_peer, true, [](const std::string& v) { return check_listen(v); });
  if (!ha.sync_listen.empty()) check_listen(ha.sync_listen, &ha.sync_address, &ha.sync_port);
  if (!ha.sync_peer.empty()) check_listen(ha.sync_peer, &ha.sync_peer_address, &ha.sync_peer_port);
  r.string("data_port", ha.data_port, true, [&](const std::string& v) {
    return has_port(c, v) ? std::string() : "no [[port]] is named \"" + v + "\"";
  });
  std::string peer;
  r.string("data_peer", peer, true, [&](const std::string& v) {
    const auto a = net::Ipv4Addr::parse(v);
    if (!a) return std::string("must be an IPv4 address");
    const auto it = std::find_if(c.ports.begin(), c.ports.end(), [&](const PortConfig& p) { return p.name == ha.data_port; });
    if (it != c.ports.end() && !it->address.contains(*a))
      return "must be inside " + it->address.to_string() + ", the network of data_port \"" + ha.data_port + "\"";
    if (it != c.ports.end() && it->address.addr == *a) return std::string("is this unit's own address");
    return std::string();
  });
  if (auto a = net::Ipv4Addr::parse(peer)) ha.data_peer = *a;
  r.integer("data_udp_port", ha.data_udp_port, 1, 65535);
  r.integer("garp_count", ha.garp_count, 0, 100);
  r.integer("garp_interval_ms", ha.garp_interval_ms, 1, 60'000);
  r.tables("group", "groups", kMaxHaGroupId, false,
           [&](const toml::table& gt, std::size_t, const std::string& gpath) { read_ha_group(gt, gpath, r, c); });
  if (ha.groups.empty()) ha.groups.push_back(HaGroupConfig{});
  r.tables("track", "tracked objects", 64, false,
           [&](const toml::table& tt, std::size_t, const std::string& tpath) { read_ha_track(tt, tpath, r, c); });
}

// Read after [ha], whose sync link and key it defaults to.
void read_sync(TableReader& root, Config& c) {
  const toml::table* t = root.table("sync");
  SyncConfig& s = c.sync;
  s.enabled = c.ha.enabled;
  if (t) {
    TableReader r(*t, "sync", root.file(), root.errors());
    if (!c.ha.enabled) r.error_at(t->source(), "sync", "needs an [ha] table: state is replicated to the HA peer");
    r.boolean("enabled", s.enabled);
    r.string("listen", s.listen, false, [](const std::string& v) { return check_listen(v); });
    r.string("peer", s.peer, false, [](const std::string& v) { return check_listen(v); });
    std::string mode = "async";
    r.string("mode", mode, false, [](const std::string& v) {
      return v == "async" || v == "sync" ? std::string() : "must be \"async\" or \"sync\"";
    });
    s.mode = mode == "sync" ? SyncMode::kSync : SyncMode::kAsync;
    r.integer("hold_timeout_ms", s.hold_timeout_ms, 1, 1000);
    std::string config = "push";
    r.string("config", config, false, [](const std::string& v) {
      return v == "push" || v == "compare" ? std::string() : "must be \"push\" or \"compare\"";
    });
    s.config = config == "compare" ? ConfigSyncMode::kCompare : ConfigSyncMode::kPush;
    r.integer("refresh_ms", s.refresh_ms, 100, 3'600'000);
    r.integer("flush_ms", s.flush_ms, 1, 100);
    r.integer("budget", s.budget, 200, 8972);  // a 9000-byte jumbo frame's UDP payload
    r.string("key", s.key, false, [](const std::string& v) { return v.size() >= 16 ? "" : "must be at least 16 bytes"; });
    r.string("key_file", s.key_file, false, [](const std::string& v) {
      return !v.empty() && v.front() == '/' ? "" : "must be an absolute path";
    });
    if (r.has("key") && r.has("key_file")) r.error("key_file", "give key or key_file, not both");
    const std::uint64_t shortest = std::min<std::uint64_t>(c.conntrack.timeouts.udp_ms, c.conntrack.timeouts.established_ms);
    if (s.enabled && s.refresh_ms >= shortest)
      r.error("refresh_ms", "must be shorter than the shortest idle timeout of a live connection (" +
                                std::to_string(shortest) + " ms), or the peer's copy expires first");
  }
  if (!c.ha.enabled) {
    s.enabled = false;
    return;
  }
  if (s.key.empty() && s.key_file.empty()) {
    s.key = c.ha.key;
    s.key_file = c.ha.key_file;
  }
  const auto plus_one = [](net::Ipv4Addr a, std::uint16_t port) {
    return a.to_string() + ":" + std::to_string(port == 65535 ? 65535 : port + 1);
  };
  if (s.listen.empty() && !c.ha.sync_listen.empty()) s.listen = plus_one(c.ha.sync_address, c.ha.sync_port);
  if (s.peer.empty() && !c.ha.sync_peer.empty()) s.peer = plus_one(c.ha.sync_peer_address, c.ha.sync_peer_port);
  if (!s.listen.empty()) check_listen(s.listen, &s.address, &s.port);
  if (!s.peer.empty()) check_listen(s.peer, &s.peer_address, &s.peer_port);
  if (s.enabled && !s.listen.empty() && s.listen == c.ha.sync_listen)
    root.error("sync", "[sync] listen " + s.listen + " is [ha] sync_listen: state sync needs a port of its own");
}

void check_ha_references(TableReader& root, Config& c) {
  if (!c.ha.enabled) {
    for (std::size_t i = 0; i < c.services.size(); ++i)
      if (c.services[i].group != 1)
        root.error("service", "service \"" + c.services[i].name + "\" names group " +
                                  std::to_string(c.services[i].group) + " but there is no [ha] table");
    return;
  }
  for (const auto& s : c.services)
    if (std::none_of(c.ha.groups.begin(), c.ha.groups.end(), [&](const HaGroupConfig& g) { return g.id == s.group; }))
      root.error("service", "service \"" + s.name + "\": group " + std::to_string(s.group) + " is not an [[ha.group]]");
  for (const auto& k : c.ha.track)
    if (k.kind == TrackKind::kService && std::none_of(c.services.begin(), c.services.end(),
                                                      [&](const ServiceConfig& s) { return s.name == k.service; }))
      root.error("ha", "[[ha.track]] service \"" + k.service + "\" is not a [[service]]");
}

void read_port(const toml::table& t, std::size_t index, TableReader& root, Config& c) {
  TableReader r(t, "port[" + std::to_string(index) + "]", root.file(), root.errors());
  PortConfig p;
  r.string("name", p.name, true, check_port_name);
  r.string("device", p.device, true, [](const std::string& s) {
    return s.empty() || s.front() == ',' ? std::string("must name a DPDK device") : std::string();
  });
  std::string role = "both";
  r.string("role", role, false, [](const std::string& s) {
    return s == "north" || s == "south" || s == "both" ? "" : "must be north, south or both";
  });
  p.role = role == "north" ? PortRole::kNorth : role == "south" ? PortRole::kSouth : PortRole::kBoth;

  std::string address;
  r.string("address", address, true, check_host_prefix);
  if (auto prefix = net::Ipv4Prefix::parse(address)) p.address = *prefix;

  std::vector<std::string> secondary;
  r.string_array("secondary_addresses", secondary);
  if (secondary.size() + 1 > kMaxLocalAddrs) {
    r.error("secondary_addresses", "at most " + std::to_string(kMaxLocalAddrs - 1) + " secondary addresses per port");
    secondary.clear();
  }
  for (const auto& text : secondary) {
    if (auto msg = check_host_prefix(text); !msg.empty()) {
      r.error("secondary_addresses", "\"" + text + "\" " + msg);
      continue;
    }
    const auto prefix = *net::Ipv4Prefix::parse(text);
    const bool repeated = prefix.addr == p.address.addr ||
                          std::any_of(p.secondary_addresses.begin(), p.secondary_addresses.end(),
                                      [&](const net::Ipv4Prefix& q) { return q.addr == prefix.addr; });
    if (repeated) r.error("secondary_addresses", prefix.addr.to_string() + " is listed twice");
    else p.secondary_addresses.push_back(prefix);
  }

  p.xdp_steering = p.is_af_xdp();
  r.boolean("xdp_steering", p.xdp_steering);
  if (p.xdp_steering && !p.device.empty() && !p.is_af_xdp())
    r.error("xdp_steering", "applies to AF_XDP devices (net_af_xdp) only");
  if (p.xdp_steering && !p.devarg("xdp_prog").empty())
    r.error("device", "xdp_prog= conflicts with xdp_steering; set [xdp] program, or xdp_steering = false");
  if (p.is_af_xdp() && p.devarg("iface").empty()) r.error("device", "an AF_XDP device needs iface=<interface>");

  std::string gateway;
  r.string("gateway", gateway, false, [&](const std::string& s) {
    const auto gw = net::Ipv4Addr::parse(s);
    if (!gw) return std::string("must be an IPv4 address");
    if (!address.empty() && (!p.address.contains(*gw) || *gw == p.address.addr))
      return "must be another address inside " + p.address.to_string();
    if (!address.empty() && p.address.length <= 30 && (*gw == p.address.network() || *gw == p.address.broadcast()))
      return "is the network or broadcast address of " + p.address.to_string();
    return std::string();
  });
  if (!gateway.empty()) p.gateway = net::Ipv4Addr::parse(gateway);

  r.integer("mtu", p.mtu, 68, 9600);
  r.boolean("promiscuous", p.promiscuous);
  r.integer("rx_descriptors", p.rx_descriptors, 64, 16384);
  r.integer("tx_descriptors", p.tx_descriptors, 64, 16384);
  if (!is_power_of_two(p.rx_descriptors)) r.error("rx_descriptors", "must be a power of two");
  if (!is_power_of_two(p.tx_descriptors)) r.error("tx_descriptors", "must be a power of two");

  for (const auto& other : c.ports) {
    if (!p.name.empty() && other.name == p.name) r.error("name", "port name \"" + p.name + "\" is used twice");
    if (!p.device.empty() && other.device_name() == p.device_name())
      r.error("device", "device \"" + p.device_name() + "\" is used by port \"" + other.name + "\"");
    for (const auto& mine : p.addresses())
      for (const auto& theirs : other.addresses())
        if (mine.addr == theirs.addr)
          r.error(mine.addr == p.address.addr ? "address" : "secondary_addresses",
                  mine.addr.to_string() + " is also an address of port \"" + other.name + "\"");
  }
  c.ports.push_back(std::move(p));
}

void read_ports(TableReader& root, Config& c) {
  root.tables("port", "ports", kMaxPorts, true,
              [&](const toml::table& t, std::size_t i, const std::string&) { read_port(t, i, root, c); });
}

std::string check_unicast(const std::string& s) {
  const auto a = net::Ipv4Addr::parse(s);
  if (!a) return "must be an IPv4 address";
  return unicast_problem(*a);
}

void read_backend(const toml::table& t, const std::string& path, TableReader& parent, ServiceConfig& svc) {
  TableReader r(t, path, parent.file(), parent.errors());
  BackendConfig b;
  std::string address;
  r.string("address", address, true, check_unicast);
  if (auto a = net::Ipv4Addr::parse(address)) b.address = *a;
  r.integer("port", b.port, 0, 65535);
  r.integer("weight", b.weight, 0, kMaxBackendWeight);
  r.boolean("enabled", b.enabled);
  if (b.port == 0) b.port = svc.port;
  for (auto& v : check_backend(svc, b, svc.backends)) r.error(v.key, std::move(v.message));
  svc.backends.push_back(b);
}

void read_health_check(const toml::table& t, const std::string& path, TableReader& parent, ServiceConfig& svc) {
  TableReader r(t, path, parent.file(), parent.errors());
  HealthCheckConfig& h = svc.health_check;
  std::string type = "tcp";
  r.string("type", type, false, [](const std::string& v) {
    return v == "none" || v == "tcp" || v == "http" ? "" : "must be none, tcp or http";
  });
  h.type = type == "none" ? HealthCheckType::kNone : type == "http" ? HealthCheckType::kHttp : HealthCheckType::kTcp;
  r.integer("interval_ms", h.interval_ms, 10, 3'600'000);
  r.integer("timeout_ms", h.timeout_ms, 1, 3'600'000);
  r.integer("rise", h.rise, 1, 100);
  r.integer("fall", h.fall, 1, 100);
  r.integer("port", h.port, 0, 65535);
  r.string("http_path", h.http_path, false, [](const std::string& v) {
    const bool printable = std::all_of(v.begin(), v.end(), [](char c) { return c > 0x20 && c < 0x7f; });
    return !v.empty() && v.front() == '/' && printable && v.size() <= 1024
               ? ""
               : "must start with '/' and hold no spaces or control characters (at most 1024 bytes)";
  });
  r.string("http_host", h.http_host, false, [](const std::string& v) {
    const bool printable = std::all_of(v.begin(), v.end(), [](char c) { return c > 0x20 && c < 0x7f; });
    return printable && v.size() <= 255 ? "" : "must be a host name without spaces (at most 255 bytes)";
  });
  r.integer("http_status", h.http_status, 100, 599);
  r.string("http_body", h.http_body, false, [](const std::string& v) {
    return v.size() <= 4096 ? "" : "must be at most 4096 bytes";
  });
  if (h.enabled() && h.timeout_ms >= h.interval_ms) r.error("timeout_ms", "must be less than interval_ms");
  if (h.type != HealthCheckType::kHttp)
    for (const char* key : {"http_path", "http_host", "http_status", "http_body"})
      if (r.has(key)) r.error(key, "applies to type = \"http\" only");
  if (h.enabled() && h.port == 0 && svc.port == 0 &&
      std::any_of(svc.backends.begin(), svc.backends.end(), [](const BackendConfig& b) { return b.port == 0; }))
    r.error("port", "is required: the service takes every port and a backend has no port of its own to check");
}

void read_service(const toml::table& t, std::size_t index, TableReader& root, Config& c) {
  const std::string path = "service[" + std::to_string(index) + "]";
  TableReader r(t, path, root.file(), root.errors());
  ServiceConfig svc;
  r.string("name", svc.name, true, check_name);
  std::string vip;
  r.string("vip", vip, true, check_unicast);
  if (auto a = net::Ipv4Addr::parse(vip); a && !vip.empty()) svc.vip = *a;
  std::string protocol = "tcp";
  r.string("protocol", protocol, false, [](const std::string& s) {
    return s == "tcp" || s == "udp" ? "" : "must be tcp or udp";
  });
  svc.protocol = protocol == "udp" ? L4Protocol::kUdp : L4Protocol::kTcp;
  r.integer("port", svc.port, 0, 65535);
  std::string mode = "nat";
  r.string("mode", mode, false, [](const std::string& s) {
    return conntrack::parse_forward_mode(s) ? "" : "must be nat, fullnat, dsr or tunnel";
  });
  svc.mode = conntrack::parse_forward_mode(mode).value_or(conntrack::ForwardMode::kNat);
  r.integer("maglev_size", svc.maglev_size, 1, lb::kMaglevMaxSize);

  std::vector<std::string> locals;
  r.string_array("local_addresses", locals);
  for (const auto& text : locals) {
    if (auto msg = check_unicast(text); !msg.empty()) {
      r.error("local_addresses", "\"" + text + "\" " + msg);
      continue;
    }
    svc.local_addresses.push_back(*net::Ipv4Addr::parse(text));
  }
  r.tables("backend", "backends per service", kMaxBackendsPerService, false,
           [&](const toml::table& bt, std::size_t, const std::string& bpath) { read_backend(bt, bpath, r, svc); });
  r.integer("group", svc.group, 1, kMaxHaGroupId);
  std::string down = "keep";
  r.string("on_backend_down", down, false, [](const std::string& v) {
    return v == "keep" || v == "reset" ? "" : "must be keep or reset";
  });
  svc.on_backend_down = down == "reset" ? BackendDownPolicy::kReset : BackendDownPolicy::kKeep;
  if (const toml::table* hc = r.table("health_check")) read_health_check(*hc, path + ".health_check", r, svc);
  for (auto& v : check_service(svc, c.services, c.ports)) r.error(v.key, std::move(v.message));
  c.services.push_back(std::move(svc));
}

void read_services(TableReader& root, Config& c) {
  root.tables("service", "services", kMaxServices, false,
              [&](const toml::table& t, std::size_t i, const std::string&) { read_service(t, i, root, c); });
}

// The TOML document, or nullopt with the syntax error in `result`.
std::optional<toml::table> parse_toml(std::string_view text, const std::string& source_name, ParseResult& result) {
  try {
    return toml::parse(text, source_name);
  } catch (const toml::parse_error& e) {
    result.errors.push_back({source_name, e.source().begin.line, e.source().begin.column, "",
                             std::string(e.description())});
    return std::nullopt;
  }
}

// Errors in file order; the configuration only when there are none.
void finish(ParseResult& result, Config&& c) {
  std::stable_sort(result.errors.begin(), result.errors.end(), [](const auto& a, const auto& b) {
    return std::tie(a.line, a.column) < std::tie(b.line, b.column);
  });
  if (result.errors.empty()) result.config = std::move(c);
}

}  // namespace

ParseResult parse_config(std::string_view text, const std::string& source_name) {
  ParseResult result;
  std::optional<toml::table> doc = parse_toml(text, source_name, result);
  if (!doc) return result;
  toml::table& root = *doc;

  Config c;
  c.source = source_name;
  {
    TableReader r(root, "", source_name, result.errors);
    read_unit(r, c);
    read_eal(r, c);
    read_worker(r, c);
    read_neighbour(r, c);
    read_log(r, c);
    read_xdp(r, c);
    read_conntrack(r, c);
    read_metrics(r, c);
    read_ctl(r, c);
    read_ports(r, c);
    read_ha(r, c);
    read_sync(r, c);
    read_services(r, c);
    check_ha_references(r, c);
  }  // the reader reports unknown top-level keys here
  if (c.eal.file_prefix.empty() && !c.unit.name.empty()) c.eal.file_prefix = "tandem-" + c.unit.name;
  finish(result, std::move(c));
  return result;
}

ParseResult parse_services(std::string_view text, const std::string& source_name, const Config& base) {
  ParseResult result;
  std::optional<toml::table> doc = parse_toml(text, source_name, result);
  if (!doc) return result;
  toml::table& root = *doc;
  Config c = base;
  c.services.clear();
  {
    TableReader r(root, "", source_name, result.errors);
    read_services(r, c);
    check_ha_references(r, c);
  }  // anything but [[service]] is an unknown key here
  finish(result, std::move(c));
  return result;
}

ParseResult load_config(const std::string& path) {
  ParseResult r;
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    r.errors.push_back({path, 0, 0, "", ec ? "cannot open the file: " + ec.message() : "not a regular file"});
    return r;
  }
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  if (!(in && text << in.rdbuf()) && in.bad()) {
    r.errors.push_back({path, 0, 0, "", "cannot read the file"});
    return r;
  }
  return parse_config(text.str(), path);
}

}  // namespace tandem::config
