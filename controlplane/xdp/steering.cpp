#include "controlplane/xdp/steering.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

namespace tandem::xdp {
namespace {

__u32 to_wire(net::Ipv4Addr a) { return __builtin_bswap32(a.value); }  // maps hold network order

tandem_lpm_v4_key lpm_key(const net::Ipv4Prefix& p) {
  return {p.length, to_wire(p.network())};
}

std::string failed(const char* what, const std::string& detail) {
  return std::string(what) + " " + detail + ": " + std::strerror(errno);
}

}  // namespace

const char* verdict_name(int verdict) {
  switch (verdict) {
    case TANDEM_STEER_IPV4: return "steered_ipv4";
    case TANDEM_STEER_ARP: return "steered_arp";
    case TANDEM_PASS_IPV4: return "passed_ipv4";
    case TANDEM_PASS_ARP: return "passed_arp";
    case TANDEM_PASS_OTHER: return "passed_other";
    case TANDEM_PASS_MALFORMED: return "passed_malformed";
    case TANDEM_DROP_BLOCKED: return "dropped_blocklist";
    default: return "unknown";
  }
}

std::unique_ptr<Steering> Steering::open(const std::string& ifname, std::string& error) {
  auto prog = AttachedProgram::find(ifname, error);
  if (!prog) {
    if (error.empty()) error = "no XDP program is attached to " + ifname;
    return nullptr;
  }
  if (prog->name() != kSteerProgramName) {
    error = ifname + " runs XDP program \"" + prog->name() + "\", not " + kSteerProgramName;
    return nullptr;
  }
  std::unique_ptr<Steering> s(new Steering(ifname, std::move(*prog)));
  s->addrs_fd_ = s->program_.map_fd("steer_addrs");
  s->blocklist_fd_ = s->program_.map_fd("blocklist");
  s->hits_fd_ = s->program_.map_fd("blocklist_hits");
  s->stats_fd_ = s->program_.map_fd("steer_stats");
  if (s->addrs_fd_ < 0 || s->blocklist_fd_ < 0 || s->hits_fd_ < 0 || s->stats_fd_ < 0) {
    error = "the XDP program on " + ifname + " lacks one of steer_addrs, blocklist, blocklist_hits, steer_stats";
    return nullptr;
  }
  return s;
}

bool Steering::set_addresses(const std::vector<net::Ipv4Addr>& addresses, std::string& error) {
  const tandem_steer_value value{};
  for (const auto& a : addresses) {
    const __u32 key = to_wire(a);
    if (bpf_map_update_elem(addrs_fd_, &key, &value, BPF_ANY) != 0) {
      error = failed("steering", a.to_string());
      return false;
    }
  }
  for (const auto& old : addresses_) {
    if (std::find(addresses.begin(), addresses.end(), old) != addresses.end()) continue;
    const __u32 key = to_wire(old);
    if (bpf_map_delete_elem(addrs_fd_, &key) != 0 && errno != ENOENT) {
      error = failed("unsteering", old.to_string());
      return false;
    }
  }
  addresses_ = addresses;
  return true;
}

bool Steering::set_blocklist(const std::vector<net::Ipv4Prefix>& prefixes, std::string& error) {
  // Remove first: frees slots for the additions.
  for (auto it = blocklist_.begin(); it != blocklist_.end();) {
    if (std::find(prefixes.begin(), prefixes.end(), it->first) != prefixes.end()) {
      ++it;
      continue;
    }
    const tandem_lpm_v4_key key = lpm_key(it->first);
    if (bpf_map_delete_elem(blocklist_fd_, &key) != 0 && errno != ENOENT) {
      error = failed("removing blocklist prefix", it->first.to_string());
      return false;
    }
    it = blocklist_.erase(it);
  }
  const int cpus = libbpf_num_possible_cpus();
  const std::vector<tandem_hit_counter> zero(static_cast<std::size_t>(std::max(cpus, 1)));
  for (const auto& p : prefixes) {
    if (blocklist_.count(p)) continue;
    __u32 slot = 0;
    while (slot < TANDEM_BLOCKLIST_MAX &&
           std::any_of(blocklist_.begin(), blocklist_.end(), [&](const auto& e) { return e.second == slot; }))
      ++slot;
    if (slot == TANDEM_BLOCKLIST_MAX) {
      error = "the blocklist is full (" + std::to_string(TANDEM_BLOCKLIST_MAX) + " prefixes)";
      return false;
    }
    // A reused slot starts from zero before the prefix can hit it.
    if (bpf_map_update_elem(hits_fd_, &slot, zero.data(), BPF_ANY) != 0) {
      error = failed("clearing blocklist counters for", p.to_string());
      return false;
    }
    const tandem_lpm_v4_key key = lpm_key(p);
    if (bpf_map_update_elem(blocklist_fd_, &key, &slot, BPF_ANY) != 0) {
      error = failed("adding blocklist prefix", p.to_string());
      return false;
    }
    blocklist_[p] = slot;
  }
  return true;
}

std::array<std::uint64_t, TANDEM_STEER_VERDICT_COUNT> Steering::verdicts() const {
  std::array<std::uint64_t, TANDEM_STEER_VERDICT_COUNT> out{};
  for (std::uint32_t v = 0; v < TANDEM_STEER_VERDICT_COUNT; ++v) read_percpu_u64(stats_fd_, v, &out[v], 1);
  return out;
}

std::vector<BlocklistHits> Steering::blocklist_hits() const {
  std::vector<BlocklistHits> out;
  for (const auto& [prefix, slot] : blocklist_) {
    std::uint64_t c[2] = {0, 0};
    read_percpu_u64(hits_fd_, slot, c, 2);
    out.push_back({prefix, c[0], c[1]});
  }
  return out;
}

}  // namespace tandem::xdp
