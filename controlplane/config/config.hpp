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

}  // namespace tandem::config
