#include "controlplane/xdp/steering.hpp"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <net/if.h>

namespace tandem::xdp {
namespace {

__u32 to_wire(net::Ipv4Addr a) { return __builtin_bswap32(a.value); }  // maps hold network order

tandem_lpm_v4_key lpm_key(const net::Ipv4Prefix& p) {
  return {p.length, to_wire(p.network())};
}

std::string failed(const char* what, const std::string& detail) {
  return std::string(what) + " " + detail + ": " + std::strerror(errno);
}

tandem_steer_source_key source_key(const SteeredSource& s) {
  tandem_steer_source_key k{};
  k.addr = to_wire(s.addr);
  k.port = htons(s.port);
  k.proto = s.proto;
  return k;
}

std::uint64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);  // bpf_ktime_get_ns()'s clock
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(ts.tv_nsec);
}

net::Ipv4Addr from_sockaddr(const sockaddr* sa) {
  return net::Ipv4Addr{ntohl(reinterpret_cast<const sockaddr_in*>(sa)->sin_addr.s_addr)};
}

}  // namespace

std::string SteeredSource::to_string() const {
  return addr.to_string() + ":" + (port ? std::to_string(port) : std::string("*")) + "/" +
         (proto == IPPROTO_UDP ? "udp" : proto == IPPROTO_TCP ? "tcp" : std::to_string(proto));
}

std::optional<std::vector<net::Ipv4Addr>> host_ipv4_addresses(std::string& error) {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) {
    error = std::string("getifaddrs: ") + std::strerror(errno);
    return std::nullopt;
  }
  std::set<net::Ipv4Addr> out;
  for (const ifaddrs* i = list; i; i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET) continue;
    out.insert(from_sockaddr(i->ifa_addr));
    // ifa_broadaddr shares storage with ifa_dstaddr: only a broadcast address with IFF_BROADCAST.
    if ((i->ifa_flags & IFF_BROADCAST) && i->ifa_broadaddr && i->ifa_broadaddr->sa_family == AF_INET)
      out.insert(from_sockaddr(i->ifa_broadaddr));
  }
  freeifaddrs(list);
  return std::vector<net::Ipv4Addr>(out.begin(), out.end());
}

const char* verdict_name(int verdict) {
  switch (verdict) {
    case TANDEM_STEER_IPV4: return "steered_ipv4";
    case TANDEM_STEER_ARP: return "steered_arp";
    case TANDEM_PASS_IPV4: return "passed_ipv4";
    case TANDEM_PASS_ARP: return "passed_arp";
    case TANDEM_PASS_OTHER: return "passed_other";
    case TANDEM_PASS_MALFORMED: return "passed_malformed";
    case TANDEM_DROP_BLOCKED: return "dropped_blocklist";
    case TANDEM_STEER_REPLY: return "steered_reply";
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
  s->sources_fd_ = s->program_.map_fd("steer_sources");
  s->host_fd_ = s->program_.map_fd("host_addrs");
  if (s->addrs_fd_ < 0 || s->blocklist_fd_ < 0 || s->hits_fd_ < 0 || s->stats_fd_ < 0 || s->sources_fd_ < 0 ||
      s->host_fd_ < 0) {
    error = "the XDP program on " + ifname +
            " lacks one of steer_addrs, steer_sources, host_addrs, blocklist, blocklist_hits, steer_stats"
            " (an older steer.bpf.o?)";
    return nullptr;
  }
  return s;
}

bool Steering::set_addresses(const std::vector<SteeredAddress>& addresses, std::string& error) {
  for (const auto& a : addresses) {
    // An address whose flags change is updated in place: never missing meanwhile.
    if (std::find(addresses_.begin(), addresses_.end(), a) != addresses_.end()) continue;
    const __u32 key = to_wire(a.addr);
    const tandem_steer_value value{a.flags};
    if (bpf_map_update_elem(addrs_fd_, &key, &value, BPF_ANY) != 0) {
      error = failed("steering", a.addr.to_string());
      return false;
    }
  }
  for (const auto& old : addresses_) {
    if (std::any_of(addresses.begin(), addresses.end(), [&](const auto& a) { return a.addr == old.addr; })) continue;
    const __u32 key = to_wire(old.addr);
    if (bpf_map_delete_elem(addrs_fd_, &key) != 0 && errno != ENOENT) {
      error = failed("unsteering", old.addr.to_string());
      return false;
    }
  }
  addresses_ = addresses;
  return true;
}

bool Steering::set_sources(const std::vector<SteeredSource>& sources, std::string& error) {
  const std::set<SteeredSource> wanted(sources.begin(), sources.end());
  const tandem_steer_source_value fresh{monotonic_ns()};
  for (const auto& s : wanted) {
    if (sources_.count(s)) continue;
    if (lingering_.erase(s)) {  // came back: already in the map, keep its last_seen
      sources_.insert(s);
      continue;
    }
    const tandem_steer_source_key key = source_key(s);
    // BPF_NOEXIST: a source already there (left by nobody else: the map is ours) keeps its value.
    if (bpf_map_update_elem(sources_fd_, &key, &fresh, BPF_NOEXIST) != 0 && errno != EEXIST) {
      error = failed("steering replies of", s.to_string());
      return false;
    }
    sources_.insert(s);
  }
  for (auto it = sources_.begin(); it != sources_.end();) {
    if (wanted.count(*it)) {
      ++it;
      continue;
    }
    // Leaves: lingers from now on (its idle time starts now, whatever it was before).
    const tandem_steer_source_key key = source_key(*it);
    if (bpf_map_update_elem(sources_fd_, &key, &fresh, BPF_EXIST) != 0 && errno != ENOENT) {
      error = failed("retiring", it->to_string());
      return false;
    }
    lingering_.insert(*it);
    it = sources_.erase(it);
  }
  return true;
}

std::vector<SteeredSource> Steering::expire_sources(std::uint64_t idle_ns, std::string& error) {
  std::vector<SteeredSource> expired;
  const std::uint64_t now = monotonic_ns();
  for (auto it = lingering_.begin(); it != lingering_.end();) {
    const tandem_steer_source_key key = source_key(*it);
    tandem_steer_source_value v{};
    if (bpf_map_lookup_elem(sources_fd_, &key, &v) == 0 && (v.last_seen_ns >= now || now - v.last_seen_ns <= idle_ns)) {
      ++it;
      continue;
    }
    if (bpf_map_delete_elem(sources_fd_, &key) != 0 && errno != ENOENT) {
      error = failed("unsteering replies of", it->to_string());
      ++it;
      continue;
    }
    expired.push_back(*it);
    it = lingering_.erase(it);
  }
  return expired;
}

bool Steering::set_host_addresses(const std::vector<net::Ipv4Addr>& addresses, std::string& error) {
  const std::set<net::Ipv4Addr> wanted(addresses.begin(), addresses.end());
  if (wanted == host_addresses_) return true;
  const tandem_steer_value value{};
  for (const auto& a : wanted) {
    if (host_addresses_.count(a)) continue;
    const __u32 key = to_wire(a);
    if (bpf_map_update_elem(host_fd_, &key, &value, BPF_ANY) != 0) {
      error = failed("exempting host address", a.to_string());
      return false;
    }
    host_addresses_.insert(a);
  }
  for (auto it = host_addresses_.begin(); it != host_addresses_.end();) {
    if (wanted.count(*it)) {
      ++it;
      continue;
    }
    const __u32 key = to_wire(*it);
    if (bpf_map_delete_elem(host_fd_, &key) != 0 && errno != ENOENT) {
      error = failed("removing host address", it->to_string());
      return false;
    }
    it = host_addresses_.erase(it);
  }
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
