// User-space side of ebpf/steer.bpf.c on one AF_XDP port: which addresses go to the fast path,
// which source prefixes are dropped, and what the program did (its per-CPU verdict counters).
// Every change is an element update of a live map: no reload, no frame lost while it happens.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "ebpf/attached_program.hpp"
#include "dataplane/net/addr.hpp"
#include "ebpf/tandem_xdp.h"

namespace tandem::xdp {

// The name the kernel reports for steer.bpf.c's program (BPF names keep 15 characters).
inline constexpr const char* kSteerProgramName = "tandem_steer";

const char* verdict_name(int verdict);  // "steered_ipv4", ... (telemetry and metrics keys)

// A destination steered to the fast path; flags TANDEM_STEER_FLAG_* (LOCAL: a fullnat local
// address, whose traffic counts as steered_reply).
struct SteeredAddress {
  net::Ipv4Addr addr;
  std::uint32_t flags = 0;

  bool operator==(const SteeredAddress&) const = default;
};

// A backend whose replies are steered by their source: (address, protocol, port); port 0 for a
// backend of an all-ports service (every port of the protocol).
struct SteeredSource {
  net::Ipv4Addr addr;
  std::uint8_t proto = 6;
  std::uint16_t port = 0;

  auto operator<=>(const SteeredSource&) const = default;
  std::string to_string() const;  // "10.0.0.21:8080/tcp"
};

// Every IPv4 address and broadcast address of the host's interfaces (getifaddrs): where a
// backend's frames are the kernel's, never a reply for the fast path. nullopt on failure.
std::optional<std::vector<net::Ipv4Addr>> host_ipv4_addresses(std::string& error);

struct BlocklistHits {
  net::Ipv4Prefix prefix;
  std::uint64_t packets = 0;
  std::uint64_t bytes = 0;
};

class Steering {
 public:
  // Takes over the maps of steer.bpf.c attached to `ifname` (by the af_xdp PMD).
  static std::unique_ptr<Steering> open(const std::string& ifname, std::string& error);

  // Make the steered set exactly `addresses`: new ones are added before stale ones go, so an
  // address kept across the change is never missing.
  bool set_addresses(const std::vector<SteeredAddress>& addresses, std::string& error);
  // Make the steered backend sources `sources`: new ones are added first. A source that leaves
  // is not deleted at once: it lingers (still steered) so that the established connections of a
  // removed backend keep their replies, until expire_sources() finds it idle long enough. A
  // lingering source that comes back is simply wanted again.
  bool set_sources(const std::vector<SteeredSource>& sources, std::string& error);
  // Deletes the lingering sources no frame has matched for `idle_ns`; returns what it deleted.
  std::vector<SteeredSource> expire_sources(std::uint64_t idle_ns, std::string& error);
  // Make the host's own addresses (exempt from source steering) exactly `addresses`; does
  // nothing when they did not change.
  bool set_host_addresses(const std::vector<net::Ipv4Addr>& addresses, std::string& error);
  std::size_t lingering_sources() const { return lingering_.size(); }
  // Make the blocklist exactly `prefixes`; a prefix that stays keeps its counters.
  bool set_blocklist(const std::vector<net::Ipv4Prefix>& prefixes, std::string& error);

  std::array<std::uint64_t, TANDEM_STEER_VERDICT_COUNT> verdicts() const;
  std::vector<BlocklistHits> blocklist_hits() const;
  const std::string& ifname() const { return ifname_; }
  std::uint32_t program_id() const { return program_.id(); }

 private:
  Steering(std::string ifname, AttachedProgram program) : ifname_(std::move(ifname)), program_(std::move(program)) {}

  std::string ifname_;
  AttachedProgram program_;
  int addrs_fd_ = -1, blocklist_fd_ = -1, hits_fd_ = -1, stats_fd_ = -1, sources_fd_ = -1, host_fd_ = -1;
  std::vector<SteeredAddress> addresses_;
  std::set<SteeredSource> sources_;    // wanted
  std::set<SteeredSource> lingering_;  // left the configuration, still in steer_sources
  std::set<net::Ipv4Addr> host_addresses_;
  std::map<net::Ipv4Prefix, std::uint32_t> blocklist_;  // prefix -> slot in blocklist_hits
};

}  // namespace tandem::xdp
