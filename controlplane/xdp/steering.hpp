// User-space side of ebpf/steer.bpf.c on one AF_XDP port: which addresses go to the fast path,
// which source prefixes are dropped, and what the program did (its per-CPU verdict counters).
// Every change is an element update of a live map: no reload, no frame lost while it happens.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ebpf/attached_program.hpp"
#include "dataplane/net/addr.hpp"
#include "ebpf/tandem_xdp.h"

namespace tandem::xdp {

// The name the kernel reports for steer.bpf.c's program (BPF names keep 15 characters).
inline constexpr const char* kSteerProgramName = "tandem_steer";

const char* verdict_name(int verdict);  // "steered_ipv4", ... (telemetry and metrics keys)

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
  bool set_addresses(const std::vector<net::Ipv4Addr>& addresses, std::string& error);
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
  int addrs_fd_ = -1, blocklist_fd_ = -1, hits_fd_ = -1, stats_fd_ = -1;
  std::vector<net::Ipv4Addr> addresses_;
  std::map<net::Ipv4Prefix, std::uint32_t> blocklist_;  // prefix -> slot in blocklist_hits
};

}  // namespace tandem::xdp
