// tandemd's configuration: one TOML file turned into typed, validated values.
// The format is documented in docs/configuration.md; keep the two in step.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <string>
#include <vector>

#include "dataplane/conntrack/forward_mode.hpp"
#include "dataplane/conntrack/tcp_state.hpp"
#include "dataplane/neigh/neighbour_table.hpp"
#include "dataplane/net/addr.hpp"

namespace tandem::config {

inline constexpr int kFormatVersion = 1;
inline constexpr std::size_t kMaxBlocklistPrefixes = 4096;  // TANDEM_BLOCKLIST_MAX in ebpf/

enum class PortRole : std::uint8_t { kNorth, kSouth, kBoth };
const char* to_string(PortRole r);

struct UnitConfig {
  std::uint32_t id = 0;
  std::string name;

  bool operator==(const UnitConfig&) const = default;
};

struct EalConfig {
  std::string lcores = "0";  // EAL -l: every listed lcore runs a worker
  std::uint32_t memory_mb = 512;
  bool no_huge = false;
  std::string file_prefix;  // defaults to "tandem-<unit name>"
  std::vector<std::string> extra_args;

  bool operator==(const EalConfig&) const = default;
};

struct WorkerConfig {
  std::uint32_t burst_size = 32;
  bool idle_backoff = false;           // off on an appliance: workers spin
  std::uint32_t idle_polls_before_sleep = 256;
  std::uint32_t idle_sleep_us = 100;

  bool operator==(const WorkerConfig&) const = default;
};

struct PortConfig {
  std::string name;
  std::string device;  // DPDK devargs ("net_af_xdp0,iface=eth1") or a PCI address
  PortRole role = PortRole::kBoth;
  net::Ipv4Prefix address;                      // primary: the source of the port's ARP requests
  std::vector<net::Ipv4Prefix> secondary_addresses;  // further fast-path addresses
  std::optional<net::Ipv4Addr> gateway;
  bool xdp_steering = false;  // AF_XDP only: Tandem's XDP program shares the interface with the kernel
  std::uint32_t mtu = 1500;
  bool promiscuous = false;
  std::uint32_t rx_descriptors = 1024;
  std::uint32_t tx_descriptors = 1024;

  // The DPDK device name: the devargs up to the first comma.
  std::string device_name() const { return device.substr(0, device.find(',')); }
  bool is_pci() const;
  bool is_af_xdp() const { return device.rfind("net_af_xdp", 0) == 0; }
  // The value of a "key=value" devarg ("iface" of "net_af_xdp0,iface=eth1"), empty if absent.
  std::string devarg(std::string_view key) const;
  // Every address the fast path answers for on this port, primary first.
  std::vector<net::Ipv4Prefix> addresses() const;
  bool operator==(const PortConfig&) const = default;
};

struct XdpConfig {
  std::string program;                     // steer.bpf.o; empty: the one installed with tandemd
  std::vector<net::Ipv4Prefix> blocklist;  // source prefixes dropped in XDP on steered ports

  bool operator==(const XdpConfig&) const = default;
};

enum class L4Protocol : std::uint8_t { kTcp = 6, kUdp = 17 };
const char* to_string(L4Protocol p);

// A backend health check, per service (docs/configuration.md, [service.health_check]). Checks run
// from the control plane through the kernel (controlplane/health/).
enum class HealthCheckType : std::uint8_t { kNone, kTcp, kHttp };
const char* to_string(HealthCheckType t);

struct HealthCheckConfig {
  HealthCheckType type = HealthCheckType::kNone;
  std::uint32_t interval_ms = 2000;  // between the starts of two checks of one backend
  std::uint32_t timeout_ms = 1000;   // a check not done by then failed (< interval_ms)
  std::uint32_t rise = 2;            // consecutive successes that bring a backend (back) up
  std::uint32_t fall = 3;            // consecutive failures that take it down
  std::uint16_t port = 0;            // 0: the backend's port
  std::string http_path = "/";       // http: the request target
  std::string http_host;             // http: the Host header; empty: the backend's address
  std::uint32_t http_status = 200;   // http: the status the answer must have
  std::string http_body;             // http: a string the body must contain; empty: any body

  bool enabled() const { return type != HealthCheckType::kNone; }
  bool operator==(const HealthCheckConfig&) const = default;
};

// What happens to the connections of a backend its health check took down.
enum class BackendDownPolicy : std::uint8_t {
  kKeep,   // they go on (the backend may still serve them); only new flows avoid it
  kReset,  // their entries are flushed: the next packet of each finds another backend or none
};
const char* to_string(BackendDownPolicy p);

struct BackendConfig {
  net::Ipv4Addr address;
  std::uint16_t port = 0;     // 0: the service's port (or the client's, for an all-ports service)
  std::uint32_t weight = 1;   // share of new flows; 0 drains: no new flows, existing ones stay
  bool enabled = true;        // false: like weight 0, but the weight is kept for when it returns

  bool operator==(const BackendConfig&) const = default;
};

// A virtual service: flows to vip:port/protocol are balanced over the backends.
struct ServiceConfig {
  std::string name;
  net::Ipv4Addr vip;
  L4Protocol protocol = L4Protocol::kTcp;
  std::uint16_t port = 0;  // 0: every port of the VIP
  conntrack::ForwardMode mode = conntrack::ForwardMode::kNat;
  std::uint32_t maglev_size = 65537;
  std::vector<net::Ipv4Addr> local_addresses;  // fullnat: the source addresses towards backends
  std::vector<BackendConfig> backends;
  HealthCheckConfig health_check;
  BackendDownPolicy on_backend_down = BackendDownPolicy::kKeep;
  std::uint8_t group = 1;  // the HA VIP group the service belongs to ([[ha.group]] id)

  bool operator==(const ServiceConfig&) const = default;
};

inline constexpr std::size_t kMaxServices = 256;
inline constexpr std::size_t kMaxBackendsPerService = 4096;
inline constexpr std::uint32_t kMaxBackendWeight = 1'000'000;

struct ConntrackConfig {
  std::uint32_t capacity = 262144;  // connections per worker
  conntrack::ConntrackTimeouts timeouts;

  bool operator==(const ConntrackConfig&) const = default;
};

// The Prometheus endpoint (GET /metrics over HTTP), served by its own thread.
struct MetricsConfig {
  std::string listen;     // "ADDRESS:PORT" as written; empty: no endpoint
  net::Ipv4Addr address;  // parsed from listen
  std::uint16_t port = 0;

  bool enabled() const { return !listen.empty(); }
  bool operator==(const MetricsConfig&) const = default;
};

// The ctl socket (docs/ctl-protocol.md). Users and groups are names or numeric ids, resolved
// when tandemd starts (controlplane/ctl/access.hpp). Root and tandemd's own user always have
// full access.
struct CtlConfig {
  std::string socket = "/run/tandem/tandemd.sock";  // empty: no ctl socket
  std::uint32_t mode = 0660;
  std::string owner;  // of the socket file; empty: tandemd's user
  std::string group;  // of the socket file; empty: tandemd's group
  std::vector<std::string> allowed_users;   // every command
  std::vector<std::string> allowed_groups;
  std::vector<std::string> read_only_users;  // commands that change nothing
  std::vector<std::string> read_only_groups;

  bool enabled() const { return !socket.empty(); }
  bool operator==(const CtlConfig&) const = default;
};

// High availability ([ha], docs/configuration.md; the protocol is docs/ha-protocol.md).
inline constexpr std::uint8_t kMaxHaGroupId = 63;  // groups are bits of a 64-bit mask

// An address that moves with a VIP group (e.g. the backends' default gateway): the active unit
// answers ARP for it on `port` and announces it by gratuitous ARP on takeover.
struct FloatingAddress {
  std::string port;  // a [[port]] name
  net::Ipv4Prefix address;

  bool operator==(const FloatingAddress&) const = default;
};

struct HaGroupConfig {
  std::uint8_t id = 1;        // 1..kMaxHaGroupId; services name it in `group`
  std::uint8_t priority = 0;  // this unit's priority for the group; 0: [ha] priority
  std::vector<FloatingAddress> floating_addresses;

  bool operator==(const HaGroupConfig&) const = default;
};

// A tracked object: while it fails, the unit's priority for every group drops by `weight`
// (0: to 0, the unit cannot serve), which may hand the groups to the peer.
enum class TrackKind : std::uint8_t {
  kPortLink,  // `port`'s link is down
  kGateway,   // `port`'s gateway does not answer ARP
  kService,   // fewer than `min_healthy` backends of `service` are healthy
};
const char* to_string(TrackKind k);

struct HaTrackConfig {
  TrackKind kind = TrackKind::kPortLink;
  std::string port;     // kPortLink, kGateway
  std::string service;  // kService
  std::uint32_t min_healthy = 1;
  std::uint8_t weight = 0;

  bool operator==(const HaTrackConfig&) const = default;
};

struct HaConfig {
  bool enabled = false;  // an [ha] table is present
  std::uint8_t priority = 100;  // 1..255; per group unless the group sets its own
  bool preempt = false;
  std::uint32_t advert_interval_ms = 10;
  std::uint32_t dead_intervals = 3;
  std::uint32_t hold_down_ms = 1000;
  std::string key_file;  // the pre-shared HMAC key: the file's bytes (a final newline dropped)
  std::string key;       // or the key itself (at least 16 bytes); one of the two is required
  // The sync link (a kernel netdev): adverts over UDP from the control thread.
  std::string sync_listen;  // "ADDRESS:PORT" this unit binds
  std::string sync_peer;    // "ADDRESS:PORT" of the peer
  net::Ipv4Addr sync_address, sync_peer_address;  // parsed from the two above
  std::uint16_t sync_port = 0, sync_peer_port = 0;
  // The data network: adverts sent by the fast path from `data_port`'s address.
  std::string data_port;            // a [[port]] name
  net::Ipv4Addr data_peer;          // the peer's address on that network
  std::uint16_t data_udp_port = 8694;  // both units' adverts use it as source and destination
  std::uint32_t garp_count = 3;     // gratuitous ARPs per address on takeover
  std::uint32_t garp_interval_ms = 100;
  std::vector<HaGroupConfig> groups;  // at least one; default: group 1
  std::vector<HaTrackConfig> track;

  // The group's configured priority on this unit.
  std::uint8_t group_priority(const HaGroupConfig& g) const { return g.priority != 0 ? g.priority : priority; }
  bool operator==(const HaConfig&) const = default;
};

// [sync]: connection-state replication to the peer (docs/sync-protocol.md). Needs [ha].
enum class SyncMode : std::uint8_t { kAsync, kSync };
// What the units do with their services configurations: push the newer one to the peer, which
// applies it, or only compare them and report a difference.
enum class ConfigSyncMode : std::uint8_t { kPush, kCompare };
struct SyncConfig {
  bool enabled = false;  // [ha] present and not `enabled = false`
  // UDP on the sync link. Defaults: [ha] sync_listen's and sync_peer's addresses, their port + 1.
  std::string listen;
  std::string peer;
  net::Ipv4Addr address, peer_address;  // parsed from the two above
  std::uint16_t port = 0, peer_port = 0;
  SyncMode mode = SyncMode::kAsync;
  // Sync mode: a new connection's first packet waits at most this long for the peer's ack.
  std::uint32_t hold_timeout_ms = 10;
  std::uint32_t refresh_ms = 10'000;  // a busy connection is re-sent at least this often
  std::uint32_t flush_ms = 1;         // an open batch waits at most this long
  std::uint32_t budget = 1400;        // UDP payload bytes per message
  ConfigSyncMode config = ConfigSyncMode::kPush;
  std::string key;       // default: [ha]'s key (key_file likewise)
  std::string key_file;

  bool operator==(const SyncConfig&) const = default;
};
const char* to_string(SyncMode m);
const char* to_string(ConfigSyncMode m);

struct LogConfig {
  std::string level = "info";

  bool operator==(const LogConfig&) const = default;
};

struct Config {
  std::string source;  // the file it came from
  UnitConfig unit;
  EalConfig eal;
  WorkerConfig worker;
  neigh::NeighbourConfig neighbour;
  LogConfig log;
  XdpConfig xdp;
  ConntrackConfig conntrack;
  MetricsConfig metrics;
  CtlConfig ctl;
  HaConfig ha;
  SyncConfig sync;
  std::vector<PortConfig> ports;
  std::vector<ServiceConfig> services;

  bool operator==(const Config&) const = default;
};

// One problem found in a file, with the place it is at.
struct ConfigError {
  std::string file;
  std::uint32_t line = 0;
  std::uint32_t column = 0;
  std::string key;  // dotted path, e.g. "port[1].address"
  std::string message;
  std::string to_string() const;  // "file:line:column: key: message"
};

struct ParseResult {
  std::optional<Config> config;  // set only when errors is empty
  std::vector<ConfigError> errors;
};

ParseResult parse_config(std::string_view text, const std::string& source_name);
ParseResult load_config(const std::string& path);
// A text holding only [[service]] tables (services_toml()), read by the same rules as the file
// as if it were `base`'s services (its ports, [ha] groups): `base` with these services.
ParseResult parse_services(std::string_view text, const std::string& source_name, const Config& base);

}  // namespace tandem::config
