// The XDP programs of ebpf/ run by the kernel itself (BPF_PROG_TEST_RUN) on frames built here.
// For every frame: the program's return code, the frame it hands on (byte for byte), and the
// change of the per-CPU verdict counters summed over CPUs (exactly one verdict per frame).
//
// Needs root (or CAP_BPF + CAP_NET_ADMIN): without it loading fails with EPERM and every test
// is skipped with the reason.
//
// Steered frames: with an empty xsks_map (no AF_XDP socket on the queue, as in these test
// runs) bpf_redirect_map returns its fallback, XDP_PASS, exactly like a passed frame. Steered
// and passed frames are told apart by their verdict counter (STEER_* vs PASS_*); one test
// binds an AF_XDP socket into xsks_map to see the real XDP_REDIRECT.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <linux/bpf.h>
#include <linux/if_xdp.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <algorithm>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include "ebpf/tandem_xdp.h"
#include "tests/unit/frames.hpp"

#ifndef AF_XDP
#define AF_XDP 44
#endif
#ifndef SOL_XDP
#define SOL_XDP 283
#endif

using tandem::test::Bytes;
namespace t = tandem::test;

namespace {

const t::Mac kUnitMac = {0x02, 0x00, 0x00, 0x00, 0x00, 0x01};
const t::Mac kPeerMac = {0x02, 0x00, 0x00, 0x00, 0x00, 0x02};
constexpr std::uint16_t kIpv4 = 0x0800, kArp = 0x0806, kIpv6 = 0x86dd, kVlan = 0x8100, kQinQ = 0x88a8,
                        kLldp = 0x88cc;

std::uint32_t be(const char* dotted) { return htonl(t::ip(dotted)); }  // network order, as in maps

const char* const kSteerNames[] = {"STEER_IPV4", "STEER_ARP", "PASS_IPV4", "PASS_ARP",
                                   "PASS_OTHER", "PASS_MALFORMED", "DROP_BLOCKED", "STEER_REPLY"};
const char* const kDecapNames[] = {"DECAP_DONE", "PASS_NOT_IPIP", "PASS_NOT_VIP", "PASS_MALFORMED", "DROP_ERROR"};
static_assert(std::size(kSteerNames) == TANDEM_STEER_VERDICT_COUNT);
static_assert(std::size(kDecapNames) == TANDEM_DECAP_VERDICT_COUNT);

int quiet_libbpf(enum libbpf_print_level level, const char* format, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  return std::vfprintf(stderr, format, args);
}

struct RunResult {
  int err = 0;          // bpf_prog_test_run_opts' return (0 or -errno)
  std::uint32_t retval = 0;
  Bytes out;            // the frame as the program left it (metadata included, if any)
};

// Ethernet/IPv4 test frames.
Bytes ipv4_frame(const char* src, const char* dst, std::uint8_t proto = 17, const Bytes& payload = t::pattern(32),
                 const Bytes& options = {}) {
  t::Ipv4Fields f;
  f.src = t::ip(src);
  f.dst = t::ip(dst);
  f.proto = proto;
  f.options = options;
  return t::ethernet(kUnitMac, kPeerMac, kIpv4, t::ipv4(f, payload));
}

Bytes arp_frame(std::uint16_t op, const char* sender, const char* target) {
  return t::ethernet(op == 1 ? t::kBroadcast : kUnitMac, kPeerMac, kArp,
                     t::arp(op, kPeerMac, t::ip(sender), op == 1 ? t::Mac{} : kUnitMac, t::ip(target)));
}

class XdpProgramTest : public ::testing::Test {
 protected:
  void load(const char* path, const char* prog_name, const char* stats_map, std::size_t verdicts) {
    libbpf_set_print(quiet_libbpf);
    obj_ = bpf_object__open_file(path, nullptr);
    ASSERT_NE(obj_, nullptr) << "cannot open " << path << ": " << std::strerror(errno);
    const int err = bpf_object__load(obj_);
    if (err == -EPERM || err == -EACCES) {
      skip_reason_ = std::string("loading BPF programs needs root or CAP_BPF+CAP_NET_ADMIN (euid ") +
                     std::to_string(geteuid()) + "): " + std::strerror(-err);
      return;
    }
    ASSERT_EQ(err, 0) << "loading " << path << ": " << std::strerror(-err);
    bpf_program* prog = bpf_object__find_program_by_name(obj_, prog_name);
    ASSERT_NE(prog, nullptr) << prog_name;
    prog_fd_ = bpf_program__fd(prog);
    stats_fd_ = map_fd(stats_map);
    verdicts_ = verdicts;
    ncpus_ = libbpf_num_possible_cpus();
    ASSERT_GT(ncpus_, 0);
  }

  void TearDown() override {
    if (obj_) bpf_object__close(obj_);
  }

  int map_fd(const char* name) {
    bpf_map* m = bpf_object__find_map_by_name(obj_, name);
    EXPECT_NE(m, nullptr) << name;
    return m ? bpf_map__fd(m) : -1;
  }

  // Sum over CPUs of a per-CPU array of __u64.
  std::vector<std::uint64_t> stats() {
    std::vector<std::uint64_t> sums(verdicts_, 0), per_cpu(static_cast<std::size_t>(ncpus_));
    for (std::uint32_t v = 0; v < verdicts_; ++v) {
      EXPECT_EQ(bpf_map_lookup_elem(stats_fd_, &v, per_cpu.data()), 0);
      for (auto n : per_cpu) sums[v] += n;
    }
    return sums;
  }

  // data_in = meta_len bytes of metadata + frame. With linear_len, only the first linear_len
  // bytes of the frame are in the linear buffer the program reads (data..data_end); the rest
  // goes into a fragment. That is how frames shorter than an Ethernet header reach the program:
  // the kernel refuses test runs whose frame (data_in minus metadata) is shorter than ETH_HLEN.
  RunResult run(const Bytes& frame, std::uint32_t meta_len = 0, std::optional<std::uint32_t> linear_len = {},
                int repeat = 1) {
    Bytes in(meta_len, 0xa5);
    in.insert(in.end(), frame.begin(), frame.end());
    RunResult r;
    r.out.resize(4096);
    xdp_md ctx{};
    ctx.data = meta_len;
    ctx.data_end = meta_len + linear_len.value_or(static_cast<std::uint32_t>(frame.size()));
    const bool use_ctx = meta_len != 0 || linear_len.has_value();
    LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = in.data(), .data_out = r.out.data(),
                .data_size_in = static_cast<std::uint32_t>(in.size()),
                .data_size_out = static_cast<std::uint32_t>(r.out.size()), .ctx_in = use_ctx ? &ctx : nullptr,
                .ctx_size_in = use_ctx ? static_cast<std::uint32_t>(sizeof ctx) : 0u, .repeat = repeat);
    r.err = bpf_prog_test_run_opts(prog_fd_, &opts);
    if (r.err != 0) r.err = -errno;
    r.retval = opts.retval;
    r.out.resize(r.err == 0 ? opts.data_size_out : 0);
    if (r.out.size() >= meta_len) {
      // The metadata must come back as it went in (moved along with the head, if it moved).
      EXPECT_EQ(Bytes(r.out.begin(), r.out.begin() + meta_len), Bytes(meta_len, 0xa5));
      r.out.erase(r.out.begin(), r.out.begin() + meta_len);
    }
    return r;
  }

  // Runs frame; expects return code `action`, exactly one count of `verdict` and nothing else,
  // and returns the frame as the program left it.
  Bytes expect(const Bytes& frame, std::uint32_t action, std::uint32_t verdict, std::uint32_t meta_len = 0,
               std::optional<std::uint32_t> linear_len = {}) {
    const auto before = stats();
    const RunResult r = run(frame, meta_len, linear_len);
    EXPECT_EQ(r.err, 0) << std::strerror(-r.err);
    EXPECT_EQ(r.retval, action);
    const auto after = stats();
    for (std::uint32_t v = 0; v < verdicts_; ++v)
      EXPECT_EQ(after[v] - before[v], v == verdict ? 1u : 0u) << "counter " << name(v);
    return r.out;
  }

  // Like expect(), and the frame must come out unchanged.
  void expect_untouched(const Bytes& frame, std::uint32_t action, std::uint32_t verdict, std::uint32_t meta_len = 0,
                        std::optional<std::uint32_t> linear_len = {}) {
    const Bytes out = expect(frame, action, verdict, meta_len, linear_len);
    EXPECT_EQ(out, frame) << "frame changed:\n" << t::to_hex(out) << "\nexpected:\n" << t::to_hex(frame);
  }

  virtual const char* name(std::uint32_t v) const = 0;

  bpf_object* obj_ = nullptr;
  int prog_fd_ = -1;
  int stats_fd_ = -1;
  std::size_t verdicts_ = 0;
  int ncpus_ = 0;
  std::string skip_reason_;
};

Bytes with_byte(Bytes f, std::size_t offset, std::uint8_t value) {
  f.at(offset) = value;
  return f;
}

Bytes with_be16(Bytes f, std::size_t offset, std::uint16_t value) {
  f.at(offset) = static_cast<std::uint8_t>(value >> 8);
  f.at(offset + 1) = static_cast<std::uint8_t>(value);
  return f;
}

Bytes first(const Bytes& f, std::size_t n) { return Bytes(f.begin(), f.begin() + static_cast<std::ptrdiff_t>(n)); }

// An AF_XDP socket with a UMEM and rings, not bound to any device: enough to be put into an
// XSKMAP, so that bpf_redirect_map finds a socket and returns XDP_REDIRECT.
class UnboundXsk {
 public:
  UnboundXsk() {
    fd_ = ::socket(AF_XDP, SOCK_RAW, 0);
    if (fd_ < 0) {
      error_ = std::string("socket(AF_XDP): ") + std::strerror(errno);
      return;
    }
    umem_ = ::mmap(nullptr, kUmemSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (umem_ == MAP_FAILED) {
      error_ = std::string("mmap: ") + std::strerror(errno);
      return;
    }
    xdp_umem_reg reg{};
    reg.addr = static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(umem_));
    reg.len = kUmemSize;
    reg.chunk_size = 4096;
    if (::setsockopt(fd_, SOL_XDP, XDP_UMEM_REG, &reg, sizeof reg) != 0) {
      error_ = std::string("XDP_UMEM_REG: ") + std::strerror(errno);
      return;
    }
    const int ring = 64;
    for (int opt : {XDP_UMEM_FILL_RING, XDP_UMEM_COMPLETION_RING, XDP_RX_RING, XDP_TX_RING}) {
      if (::setsockopt(fd_, SOL_XDP, opt, &ring, sizeof ring) != 0) {
        error_ = "XDP ring option " + std::to_string(opt) + ": " + std::strerror(errno);
        return;
      }
    }
  }
  ~UnboundXsk() {
    if (fd_ >= 0) ::close(fd_);
    if (umem_ != MAP_FAILED) ::munmap(umem_, kUmemSize);
  }
  UnboundXsk(const UnboundXsk&) = delete;
  UnboundXsk& operator=(const UnboundXsk&) = delete;
  int fd() const { return fd_; }
  const std::string& error() const { return error_; }

 private:
  static constexpr std::size_t kUmemSize = 16 * 4096;
  int fd_ = -1;
  void* umem_ = MAP_FAILED;
  std::string error_;
};

// ---- steer.bpf.c ----------------------------------------------------------------------------

class SteerTest : public XdpProgramTest {
 protected:
  void SetUp() override {
    load(TANDEM_STEER_BPF_OBJ, "tandem_steer", "steer_stats", TANDEM_STEER_VERDICT_COUNT);
    if (!skip_reason_.empty()) GTEST_SKIP() << skip_reason_;
    if (HasFatalFailure()) return;
    addrs_fd_ = map_fd("steer_addrs");
    blocklist_fd_ = map_fd("blocklist");
    hits_fd_ = map_fd("blocklist_hits");
    xsks_fd_ = map_fd("xsks_map");
    sources_fd_ = map_fd("steer_sources");
    host_fd_ = map_fd("host_addrs");
    steer("10.0.0.100");
    steer("10.0.0.101");
  }

  const char* name(std::uint32_t v) const override { return kSteerNames[v]; }

  void steer(const char* addr, std::uint32_t flags = 0) {
    const std::uint32_t key = be(addr);
    const tandem_steer_value value{flags};
    ASSERT_EQ(bpf_map_update_elem(addrs_fd_, &key, &value, BPF_ANY), 0) << std::strerror(errno);
  }

  static tandem_steer_source_key source_key(const char* addr, std::uint8_t proto, std::uint16_t port) {
    tandem_steer_source_key k{};
    k.addr = be(addr);
    k.port = htons(port);
    k.proto = proto;
    return k;
  }

  void source(const char* addr, std::uint8_t proto, std::uint16_t port) {
    const tandem_steer_source_key k = source_key(addr, proto, port);
    const tandem_steer_source_value v{};
    ASSERT_EQ(bpf_map_update_elem(sources_fd_, &k, &v, BPF_ANY), 0) << std::strerror(errno);
  }

  std::uint64_t last_seen(const char* addr, std::uint8_t proto, std::uint16_t port) {
    const tandem_steer_source_key k = source_key(addr, proto, port);
    tandem_steer_source_value v{};
    EXPECT_EQ(bpf_map_lookup_elem(sources_fd_, &k, &v), 0) << std::strerror(errno);
    return v.last_seen_ns;
  }

  void host(const char* addr) {
    const std::uint32_t key = be(addr);
    const tandem_steer_value value{};
    ASSERT_EQ(bpf_map_update_elem(host_fd_, &key, &value, BPF_ANY), 0) << std::strerror(errno);
  }

  static tandem_lpm_v4_key prefix(const char* addr, std::uint32_t len) {
    tandem_lpm_v4_key k{};
    k.prefixlen = len;
    k.addr = len == 0 ? 0 : be(addr) & htonl(~0u << (32 - len));
    return k;
  }

  void block(const char* addr, std::uint32_t len, std::uint32_t slot) {
    const tandem_lpm_v4_key k = prefix(addr, len);
    ASSERT_EQ(bpf_map_update_elem(blocklist_fd_, &k, &slot, BPF_ANY), 0) << std::strerror(errno);
  }

  void unblock(const char* addr, std::uint32_t len) {
    const tandem_lpm_v4_key k = prefix(addr, len);
    ASSERT_EQ(bpf_map_delete_elem(blocklist_fd_, &k), 0) << std::strerror(errno);
  }

  tandem_hit_counter hits(std::uint32_t slot) {
    std::vector<tandem_hit_counter> per_cpu(static_cast<std::size_t>(ncpus_));
    EXPECT_EQ(bpf_map_lookup_elem(hits_fd_, &slot, per_cpu.data()), 0);
    tandem_hit_counter sum{};
    for (const auto& c : per_cpu) {
      sum.packets += c.packets;
      sum.bytes += c.bytes;
    }
    return sum;
  }

  tandem_hit_counter all_hits() {
    tandem_hit_counter sum{};
    for (std::uint32_t s = 0; s < TANDEM_BLOCKLIST_MAX; ++s) {
      const auto h = hits(s);
      sum.packets += h.packets;
      sum.bytes += h.bytes;
    }
    return sum;
  }

  int addrs_fd_ = -1, blocklist_fd_ = -1, hits_fd_ = -1, xsks_fd_ = -1, sources_fd_ = -1, host_fd_ = -1;
};

// A TCP or UDP segment from src:sport to dst:dport in an Ethernet frame.
Bytes l4_frame(std::uint8_t proto, const char* src, std::uint16_t sport, const char* dst, std::uint16_t dport,
               std::uint16_t flags_frag = 0x4000) {
  const Bytes l4 = proto == 6 ? t::tcp(t::ip(src), t::ip(dst), sport, dport, 0x12, t::pattern(20))
                              : t::udp(t::ip(src), t::ip(dst), sport, dport, t::pattern(20));
  t::Ipv4Fields f;
  f.src = t::ip(src);
  f.dst = t::ip(dst);
  f.proto = proto;
  f.flags_frag = flags_frag;
  return t::ethernet(kUnitMac, kPeerMac, kIpv4, t::ipv4(f, l4));
}

// An ICMP error (type/code) from `from` to `to` quoting `quoted_len` bytes of the packet
// inner_src:sport -> inner_dst:dport (TCP or UDP), as RFC 792 has it: IPv4 header + 8 bytes.
Bytes icmp_error_frame(std::uint8_t type, std::uint8_t code, const char* from, const char* to, std::uint8_t proto,
                       const char* inner_src, std::uint16_t sport, const char* inner_dst, std::uint16_t dport,
                       std::size_t quoted_len = 28, const Bytes& inner_options = {}) {
  const Bytes l4 = proto == 6 ? t::tcp(t::ip(inner_src), t::ip(inner_dst), sport, dport, 0x18, t::pattern(100))
                              : t::udp(t::ip(inner_src), t::ip(inner_dst), sport, dport, t::pattern(100));
  t::Ipv4Fields inner;
  inner.src = t::ip(inner_src);
  inner.dst = t::ip(inner_dst);
  inner.proto = proto;
  inner.options = inner_options;
  const Bytes quoted_packet = t::ipv4(inner, l4);
  Bytes icmp = {type, code, 0, 0, 0, 0, 0, 0};
  icmp.insert(icmp.end(), quoted_packet.begin(),
              quoted_packet.begin() + static_cast<std::ptrdiff_t>(std::min(quoted_len, quoted_packet.size())));
  const std::uint16_t sum = t::ref_checksum(icmp);
  icmp[2] = static_cast<std::uint8_t>(sum >> 8);
  icmp[3] = static_cast<std::uint8_t>(sum);
  t::Ipv4Fields f;
  f.src = t::ip(from);
  f.dst = t::ip(to);
  f.proto = 1;
  return t::ethernet(kUnitMac, kPeerMac, kIpv4, t::ipv4(f, icmp));
}

TEST_F(SteerTest, Ipv4ToFastPathAddressIsSteered) {
  // XDP_PASS is bpf_redirect_map's fallback (no XSK in xsks_map); the counter tells.
  expect_untouched(ipv4_frame("192.168.1.7", "10.0.0.100"), XDP_PASS, TANDEM_STEER_IPV4);
  expect_untouched(ipv4_frame("192.168.1.7", "10.0.0.101", 1, t::icmp_echo(8, 1, 1, t::pattern(56))), XDP_PASS,
                   TANDEM_STEER_IPV4);
  expect_untouched(ipv4_frame("192.168.1.7", "10.0.0.100", 6, t::pattern(1400)), XDP_PASS, TANDEM_STEER_IPV4);
  // With options (ihl 6 and the maximum, 15).
  expect_untouched(ipv4_frame("192.168.1.7", "10.0.0.100", 17, t::pattern(8), {0x01, 0x01, 0x01, 0x00}), XDP_PASS,
                   TANDEM_STEER_IPV4);
  expect_untouched(ipv4_frame("192.168.1.7", "10.0.0.100", 17, t::pattern(8), Bytes(40, 0x01)), XDP_PASS,
                   TANDEM_STEER_IPV4);
  // Neither fragments nor the checksum are inspected: tandemd's fast path judges those.
  Bytes frag = ipv4_frame("192.168.1.7", "10.0.0.100");
  frag = with_be16(frag, 14 + 6, 0x2001);  // MF, offset 8
  frag = with_be16(frag, 14 + 10, 0xdead);
  expect_untouched(frag, XDP_PASS, TANDEM_STEER_IPV4);
}

TEST_F(SteerTest, Ipv4ToOtherAddressesPasses) {
  expect_untouched(ipv4_frame("192.168.1.7", "10.0.0.1"), XDP_PASS, TANDEM_PASS_IPV4);
  expect_untouched(ipv4_frame("192.168.1.7", "10.0.0.102", 6), XDP_PASS, TANDEM_PASS_IPV4);
  // A fast-path address as source does not steer (only backends in steer_sources do).
  expect_untouched(ipv4_frame("10.0.0.100", "10.0.0.1"), XDP_PASS, TANDEM_PASS_IPV4);
  expect_untouched(ipv4_frame("192.168.1.7", "255.255.255.255"), XDP_PASS, TANDEM_PASS_IPV4);
}

TEST_F(SteerTest, ArpForFastPathAddressIsSteered) {
  // Request for a fast-path address (tandemd answers it).
  expect_untouched(arp_frame(1, "10.0.0.7", "10.0.0.100"), XDP_PASS, TANDEM_STEER_ARP);
  // Reply to the fast path's own request: its target is the fast-path address.
  expect_untouched(arp_frame(2, "10.0.0.7", "10.0.0.101"), XDP_PASS, TANDEM_STEER_ARP);
  // Unpadded (42 bytes) is enough.
  const Bytes a = arp_frame(1, "10.0.0.7", "10.0.0.100");
  expect_untouched(first(a, 42), XDP_PASS, TANDEM_STEER_ARP);
}

TEST_F(SteerTest, ArpForOtherAddressesPasses) {
  expect_untouched(arp_frame(1, "10.0.0.7", "10.0.0.1"), XDP_PASS, TANDEM_PASS_ARP);
  expect_untouched(arp_frame(2, "10.0.0.7", "10.0.0.1"), XDP_PASS, TANDEM_PASS_ARP);
  // The fast-path address as sender (e.g. the peer unit's gratuitous ARP for another target)
  // does not steer: only the target does.
  expect_untouched(arp_frame(1, "10.0.0.100", "10.0.0.1"), XDP_PASS, TANDEM_PASS_ARP);
}

TEST_F(SteerTest, MalformedArpPassesUntouched) {
  const Bytes good = arp_frame(1, "10.0.0.7", "10.0.0.100");  // would be steered
  expect_untouched(first(good, 14 + 27), XDP_PASS, TANDEM_PASS_MALFORMED);  // one byte short
  expect_untouched(first(good, 14 + 8), XDP_PASS, TANDEM_PASS_MALFORMED);
  expect_untouched(first(good, 14), XDP_PASS, TANDEM_PASS_MALFORMED);        // no ARP body at all
  expect_untouched(with_be16(good, 14 + 0, 6), XDP_PASS, TANDEM_PASS_MALFORMED);       // htype IEEE 802
  expect_untouched(with_be16(good, 14 + 2, 0x86dd), XDP_PASS, TANDEM_PASS_MALFORMED);  // ptype IPv6
  expect_untouched(with_byte(good, 14 + 4, 8), XDP_PASS, TANDEM_PASS_MALFORMED);       // hlen
  expect_untouched(with_byte(good, 14 + 5, 16), XDP_PASS, TANDEM_PASS_MALFORMED);      // plen
}

TEST_F(SteerTest, OtherEtherTypesPass) {
  expect_untouched(t::ethernet(kUnitMac, kPeerMac, kIpv6, t::pattern(60)), XDP_PASS, TANDEM_PASS_OTHER);
  expect_untouched(t::ethernet(kUnitMac, kPeerMac, kLldp, t::pattern(40)), XDP_PASS, TANDEM_PASS_OTHER);
  // VLAN-tagged frames are the kernel's even when the inner packet is for a fast-path address.
  const Bytes inner = ipv4_frame("192.168.1.7", "10.0.0.100");
  Bytes tagged = {0x00, 0x05, 0x08, 0x00};  // VID 5, then EtherType IPv4
  tagged.insert(tagged.end(), inner.begin() + 14, inner.end());
  expect_untouched(t::ethernet(kUnitMac, kPeerMac, kVlan, tagged), XDP_PASS, TANDEM_PASS_OTHER);
  expect_untouched(t::ethernet(kUnitMac, kPeerMac, kQinQ, tagged), XDP_PASS, TANDEM_PASS_OTHER);
  // Exactly an Ethernet header and nothing else.
  expect_untouched(t::ethernet(kUnitMac, kPeerMac, kIpv6, {}, false), XDP_PASS, TANDEM_PASS_OTHER);
}

TEST_F(SteerTest, MalformedIpv4PassesUntouched) {
  const Bytes good = ipv4_frame("192.168.1.7", "10.0.0.100", 17, t::pattern(8));  // 60 bytes, padded
  ASSERT_EQ(good.size(), 60u);
  expect_untouched(with_byte(good, 14, 0x44), XDP_PASS, TANDEM_PASS_MALFORMED);  // ihl 4
  expect_untouched(with_byte(good, 14, 0x40), XDP_PASS, TANDEM_PASS_MALFORMED);  // ihl 0
  expect_untouched(with_byte(good, 14, 0x65), XDP_PASS, TANDEM_PASS_MALFORMED);  // version 6
  expect_untouched(with_byte(good, 14, 0x05), XDP_PASS, TANDEM_PASS_MALFORMED);  // version 0
  expect_untouched(with_byte(good, 14, 0x4f), XDP_PASS, TANDEM_PASS_MALFORMED);  // ihl 15: 60 > 46 bytes
  expect_untouched(first(with_byte(good, 14, 0x46), 14 + 23), XDP_PASS, TANDEM_PASS_MALFORMED);  // ihl 6, 23 bytes
  expect_untouched(first(good, 14 + 19), XDP_PASS, TANDEM_PASS_MALFORMED);  // fixed header cut
  expect_untouched(first(good, 14), XDP_PASS, TANDEM_PASS_MALFORMED);       // no IPv4 header at all
  // Boundaries that are valid: header exactly fits, ihl 6 with exactly 24 bytes.
  expect_untouched(first(good, 14 + 20), XDP_PASS, TANDEM_STEER_IPV4);
  expect_untouched(first(with_byte(good, 14, 0x46), 14 + 24), XDP_PASS, TANDEM_STEER_IPV4);
}

TEST_F(SteerTest, FramesShorterThanEthernetHeaderPassAsMalformed) {
  // The kernel refuses test runs with a frame shorter than ETH_HLEN (with or without
  // metadata in front) ...
  const Bytes full = ipv4_frame("192.168.1.7", "10.0.0.100");
  for (std::uint32_t len = 0; len < 14; ++len) {
    SCOPED_TRACE("length " + std::to_string(len));
    const auto before = stats();
    EXPECT_EQ(run(first(full, len)).err, -EINVAL);
    EXPECT_EQ(run(first(full, len), 16).err, -EINVAL);
    EXPECT_EQ(stats(), before);
  }
  // ... but lets the linear part be shorter, the rest of the frame in a fragment: the program
  // then sees data_end - data = 0..13 bytes, as for a multi-buffer frame with a short head.
  for (std::uint32_t len = 0; len < 14; ++len) {
    SCOPED_TRACE("linear length " + std::to_string(len));
    expect_untouched(first(full, 14), XDP_PASS, TANDEM_PASS_MALFORMED, 0, len);
  }
  // A steered frame whose IPv4 header is not all in the linear part: malformed for us.
  expect_untouched(full, XDP_PASS, TANDEM_PASS_MALFORMED, 0, 14 + 19);
  expect_untouched(full, XDP_PASS, TANDEM_STEER_IPV4, 0, 14 + 20);
  // Metadata in front of the frame changes nothing.
  expect_untouched(full, XDP_PASS, TANDEM_STEER_IPV4, 16);
}

TEST_F(SteerTest, BlocklistPrefixDropsAndCountsHits) {
  block("192.0.2.0", 24, 7);
  const Bytes a = ipv4_frame("192.0.2.55", "10.0.0.1");
  const Bytes b = ipv4_frame("192.0.2.200", "10.0.0.100", 6, t::pattern(500));  // blocklist wins over steering
  expect_untouched(a, XDP_DROP, TANDEM_DROP_BLOCKED);
  expect_untouched(b, XDP_DROP, TANDEM_DROP_BLOCKED);
  const auto h = hits(7);
  EXPECT_EQ(h.packets, 2u);
  EXPECT_EQ(h.bytes, a.size() + b.size());  // whole frames, Ethernet header included
  // Outside the prefix: untouched, no hit.
  expect_untouched(ipv4_frame("192.0.3.1", "10.0.0.1"), XDP_PASS, TANDEM_PASS_IPV4);
  expect_untouched(ipv4_frame("192.0.1.255", "10.0.0.100"), XDP_PASS, TANDEM_STEER_IPV4);
  // The blocklist is about sources: a blocked prefix as destination does not drop.
  expect_untouched(ipv4_frame("192.168.1.7", "192.0.2.55"), XDP_PASS, TANDEM_PASS_IPV4);
  EXPECT_EQ(all_hits().packets, 2u);
  // Removing the entry lets the source through again.
  unblock("192.0.2.0", 24);
  expect_untouched(a, XDP_PASS, TANDEM_PASS_IPV4);
  EXPECT_EQ(hits(7).packets, 2u);
}

TEST_F(SteerTest, BlocklistHostPrefix) {
  block("198.51.100.9", 32, 3);
  expect_untouched(ipv4_frame("198.51.100.9", "10.0.0.100"), XDP_DROP, TANDEM_DROP_BLOCKED);
  expect_untouched(ipv4_frame("198.51.100.8", "10.0.0.100"), XDP_PASS, TANDEM_STEER_IPV4);
  expect_untouched(ipv4_frame("198.51.100.10", "10.0.0.1"), XDP_PASS, TANDEM_PASS_IPV4);
  EXPECT_EQ(hits(3).packets, 1u);
  EXPECT_EQ(all_hits().packets, 1u);
}

TEST_F(SteerTest, BlocklistDefaultPrefixDropsAllIpv4Only) {
  block("0.0.0.0", 0, 0);
  expect_untouched(ipv4_frame("192.168.1.7", "10.0.0.100"), XDP_DROP, TANDEM_DROP_BLOCKED);
  expect_untouched(ipv4_frame("0.0.0.0", "255.255.255.255"), XDP_DROP, TANDEM_DROP_BLOCKED);
  expect_untouched(ipv4_frame("255.255.255.255", "10.0.0.1"), XDP_DROP, TANDEM_DROP_BLOCKED);
  // Not IPv4, or not valid IPv4: the blocklist does not apply.
  expect_untouched(arp_frame(1, "10.0.0.7", "10.0.0.100"), XDP_PASS, TANDEM_STEER_ARP);
  expect_untouched(t::ethernet(kUnitMac, kPeerMac, kIpv6, t::pattern(60)), XDP_PASS, TANDEM_PASS_OTHER);
  expect_untouched(with_byte(ipv4_frame("192.168.1.7", "10.0.0.100"), 14, 0x44), XDP_PASS, TANDEM_PASS_MALFORMED);
  EXPECT_EQ(hits(0).packets, 3u);
}

TEST_F(SteerTest, BlocklistLongestPrefixChoosesTheSlot) {
  block("10.0.0.0", 8, 1);
  block("10.1.0.0", 16, 2);
  expect_untouched(ipv4_frame("10.1.2.3", "10.0.0.100"), XDP_DROP, TANDEM_DROP_BLOCKED);
  EXPECT_EQ(hits(2).packets, 1u);
  EXPECT_EQ(hits(1).packets, 0u);
  expect_untouched(ipv4_frame("10.2.0.1", "10.0.0.100"), XDP_DROP, TANDEM_DROP_BLOCKED);
  EXPECT_EQ(hits(1).packets, 1u);
  EXPECT_EQ(hits(2).packets, 1u);
}

TEST_F(SteerTest, BlocklistSlotOutOfRangeDropsWithoutHit) {
  block("203.0.113.0", 24, TANDEM_BLOCKLIST_MAX);
  expect_untouched(ipv4_frame("203.0.113.5", "10.0.0.100"), XDP_DROP, TANDEM_DROP_BLOCKED);
  const auto h = all_hits();
  EXPECT_EQ(h.packets, 0u);
  EXPECT_EQ(h.bytes, 0u);
  block("203.0.113.0", 24, TANDEM_BLOCKLIST_MAX - 1);  // the last valid slot
  expect_untouched(ipv4_frame("203.0.113.5", "10.0.0.100"), XDP_DROP, TANDEM_DROP_BLOCKED);
  EXPECT_EQ(hits(TANDEM_BLOCKLIST_MAX - 1).packets, 1u);
}

TEST_F(SteerTest, SteeredFramesAreRedirectedToTheQueuesXsk) {
  UnboundXsk xsk;
  if (!xsk.error().empty()) GTEST_SKIP() << "no AF_XDP socket: " << xsk.error();
  const std::uint32_t queue = 0;  // test runs are on rx queue 0
  const int fd = xsk.fd();
  ASSERT_EQ(bpf_map_update_elem(xsks_fd_, &queue, &fd, BPF_ANY), 0) << std::strerror(errno);
  expect_untouched(ipv4_frame("192.168.1.7", "10.0.0.100"), XDP_REDIRECT, TANDEM_STEER_IPV4);
  expect_untouched(arp_frame(1, "10.0.0.7", "10.0.0.101"), XDP_REDIRECT, TANDEM_STEER_ARP);
  source("10.1.0.21", 6, 8080);
  expect_untouched(l4_frame(6, "10.1.0.21", 8080, "198.51.100.7", 40000), XDP_REDIRECT, TANDEM_STEER_REPLY);
  expect_untouched(l4_frame(6, "10.1.0.21", 22, "198.51.100.7", 40000), XDP_PASS, TANDEM_PASS_IPV4);
  expect_untouched(ipv4_frame("192.168.1.7", "10.0.0.1"), XDP_PASS, TANDEM_PASS_IPV4);
  expect_untouched(arp_frame(1, "10.0.0.7", "10.0.0.1"), XDP_PASS, TANDEM_PASS_ARP);
  block("192.0.2.0", 24, 1);
  expect_untouched(ipv4_frame("192.0.2.1", "10.0.0.100"), XDP_DROP, TANDEM_DROP_BLOCKED);
}

// ---- steer.bpf.c: backends' replies (steer_sources, host_addrs, local addresses) -----------

constexpr std::uint8_t kTcp = 6, kUdp = 17;

TEST_F(SteerTest, NatReplyFromASteeredBackendIsSteered) {
  source("10.1.0.21", kTcp, 8080);
  source("10.1.0.21", kUdp, 5353);
  source("10.1.0.22", kTcp, 8080);
  // backend:port -> client, any client address: the reply of a nat connection.
  expect_untouched(l4_frame(kTcp, "10.1.0.21", 8080, "198.51.100.7", 40000), XDP_PASS, TANDEM_STEER_REPLY);
  expect_untouched(l4_frame(kTcp, "10.1.0.22", 8080, "203.0.113.200", 1024), XDP_PASS, TANDEM_STEER_REPLY);
  expect_untouched(l4_frame(kUdp, "10.1.0.21", 5353, "198.51.100.7", 33333), XDP_PASS, TANDEM_STEER_REPLY);
  // Only TCP and UDP headers need to be there (4 bytes of ports; no checksum looked at).
  const Bytes reply = l4_frame(kTcp, "10.1.0.21", 8080, "198.51.100.7", 40000);
  expect_untouched(first(reply, 14 + 20 + 4), XDP_PASS, TANDEM_STEER_REPLY);
  // The match refreshed last_seen (CLOCK_MONOTONIC, as user space reads it).
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  const std::uint64_t now_ns = static_cast<std::uint64_t>(now.tv_sec) * 1'000'000'000u + now.tv_nsec;
  const std::uint64_t seen = last_seen("10.1.0.21", kTcp, 8080);
  EXPECT_GT(seen, 0u);
  EXPECT_LE(seen, now_ns);
  EXPECT_EQ(last_seen("10.1.0.21", kUdp, 5353) > 0, true);
}

TEST_F(SteerTest, OtherTrafficOfABackendHostPasses) {
  source("10.1.0.21", kTcp, 8080);
  // Another port, another protocol, another host, the ports reversed (traffic TO the service).
  expect_untouched(l4_frame(kTcp, "10.1.0.21", 22, "198.51.100.7", 40000), XDP_PASS, TANDEM_PASS_IPV4);
  expect_untouched(l4_frame(kUdp, "10.1.0.21", 8080, "198.51.100.7", 40000), XDP_PASS, TANDEM_PASS_IPV4);
  expect_untouched(l4_frame(kTcp, "10.1.0.23", 8080, "198.51.100.7", 40000), XDP_PASS, TANDEM_PASS_IPV4);
  expect_untouched(l4_frame(kTcp, "10.1.0.21", 40000, "198.51.100.7", 8080), XDP_PASS, TANDEM_PASS_IPV4);
  expect_untouched(l4_frame(kTcp, "198.51.100.7", 40000, "10.1.0.21", 8080), XDP_PASS, TANDEM_PASS_IPV4);
  // Ping from a backend (not an error message).
  expect_untouched(ipv4_frame("10.1.0.21", "198.51.100.7", 1, t::icmp_echo(8, 1, 1, t::pattern(56))), XDP_PASS,
                   TANDEM_PASS_IPV4);
  // Other protocols (GRE) from the backend.
  expect_untouched(ipv4_frame("10.1.0.21", "198.51.100.7", 47), XDP_PASS, TANDEM_PASS_IPV4);
  EXPECT_EQ(last_seen("10.1.0.21", kTcp, 8080), 0u);
}

TEST_F(SteerTest, AllPortsBackendMatchesEveryPortOfItsProtocol) {
  source("10.1.0.21", kUdp, 0);
  expect_untouched(l4_frame(kUdp, "10.1.0.21", 53, "198.51.100.7", 40000), XDP_PASS, TANDEM_STEER_REPLY);
  expect_untouched(l4_frame(kUdp, "10.1.0.21", 65535, "198.51.100.7", 1), XDP_PASS, TANDEM_STEER_REPLY);
  expect_untouched(l4_frame(kTcp, "10.1.0.21", 53, "198.51.100.7", 40000), XDP_PASS, TANDEM_PASS_IPV4);
}

TEST_F(SteerTest, BackendFramesToTheHostItselfPass) {
  source("10.1.0.21", kTcp, 8080);
  host("10.1.0.3");    // the unit kernel's address on the port
  host("10.1.0.255");  // its broadcast address
  host("192.168.50.1");  // an address on another interface
  // The reply to the unit's own health check of backend:8080, and other host-bound frames.
  expect_untouched(l4_frame(kTcp, "10.1.0.21", 8080, "10.1.0.3", 50000), XDP_PASS, TANDEM_PASS_IPV4);
  expect_untouched(l4_frame(kTcp, "10.1.0.21", 8080, "192.168.50.1", 50000), XDP_PASS, TANDEM_PASS_IPV4);
  expect_untouched(l4_frame(kTcp, "10.1.0.21", 8080, "10.1.0.255", 50000), XDP_PASS, TANDEM_PASS_IPV4);
  // Multicast and limited broadcast are nobody's client.
  expect_untouched(l4_frame(kTcp, "10.1.0.21", 8080, "224.0.0.251", 8080), XDP_PASS, TANDEM_PASS_IPV4);
  expect_untouched(l4_frame(kTcp, "10.1.0.21", 8080, "239.255.255.255", 8080), XDP_PASS, TANDEM_PASS_IPV4);
  expect_untouched(l4_frame(kTcp, "10.1.0.21", 8080, "255.255.255.255", 8080), XDP_PASS, TANDEM_PASS_IPV4);
  // The destination rule comes first: a fast-path address is steered whatever the source.
  expect_untouched(l4_frame(kTcp, "10.1.0.21", 8080, "10.0.0.100", 50000), XDP_PASS, TANDEM_STEER_IPV4);
  // A client elsewhere: still a reply.
  expect_untouched(l4_frame(kTcp, "10.1.0.21", 8080, "10.1.0.4", 50000), XDP_PASS, TANDEM_STEER_REPLY);
}

TEST_F(SteerTest, FragmentedOrTruncatedBackendFramesPass) {
  source("10.1.0.21", kUdp, 5353);
  // The fast path does not reassemble, and non-first fragments carry no ports.
  expect_untouched(l4_frame(kUdp, "10.1.0.21", 5353, "198.51.100.7", 40000, 0x2000), XDP_PASS, TANDEM_PASS_IPV4);
  expect_untouched(l4_frame(kUdp, "10.1.0.21", 5353, "198.51.100.7", 40000, 0x0010), XDP_PASS, TANDEM_PASS_IPV4);
  // DF alone, or the reserved bit, is no fragment.
  expect_untouched(l4_frame(kUdp, "10.1.0.21", 5353, "198.51.100.7", 40000, 0x8000), XDP_PASS, TANDEM_STEER_REPLY);
  // Fewer than 4 bytes after the IPv4 header: no ports to match.
  const Bytes reply = l4_frame(kUdp, "10.1.0.21", 5353, "198.51.100.7", 40000);
  expect_untouched(first(reply, 14 + 20 + 3), XDP_PASS, TANDEM_PASS_IPV4);
  expect_untouched(reply, XDP_PASS, TANDEM_PASS_IPV4, 0, 14 + 20 + 3);  // ports beyond the linear part
  // With IPv4 options the ports are found after them.
  t::Ipv4Fields f;
  f.src = t::ip("10.1.0.21");
  f.dst = t::ip("198.51.100.7");
  f.proto = kUdp;
  f.options = Bytes(40, 0x01);
  const Bytes with_options = t::ethernet(
      kUnitMac, kPeerMac, kIpv4, t::ipv4(f, t::udp(f.src, f.dst, 5353, 40000, t::pattern(8))));
  expect_untouched(with_options, XDP_PASS, TANDEM_STEER_REPLY);
  expect_untouched(first(with_options, 14 + 60 + 3), XDP_PASS, TANDEM_PASS_IPV4);
}

TEST_F(SteerTest, IcmpErrorsAboutABackendsServiceAreSteered) {
  source("10.1.0.21", kTcp, 8080);
  source("10.1.0.21", kUdp, 5353);
  // From the backend (port unreachable, fragmentation needed) or from a router in front of it,
  // to the client, quoting the client's packet to backend:port.
  expect_untouched(icmp_error_frame(3, 3, "10.1.0.21", "198.51.100.7", kUdp, "198.51.100.7", 40000, "10.1.0.21", 5353),
                   XDP_PASS, TANDEM_STEER_REPLY);
  expect_untouched(icmp_error_frame(3, 4, "10.1.0.21", "198.51.100.7", kTcp, "198.51.100.7", 40000, "10.1.0.21", 8080),
                   XDP_PASS, TANDEM_STEER_REPLY);
  expect_untouched(icmp_error_frame(11, 0, "10.1.0.1", "198.51.100.7", kTcp, "198.51.100.7", 40000, "10.1.0.21", 8080),
                   XDP_PASS, TANDEM_STEER_REPLY);
  expect_untouched(icmp_error_frame(12, 0, "10.1.0.21", "198.51.100.7", kTcp, "198.51.100.7", 40000, "10.1.0.21",
                                    8080, 28 + 4, {0x01, 0x01, 0x01, 0x00}),
                   XDP_PASS, TANDEM_STEER_REPLY);  // quoted header with options
  // A longer quote (RFC 1812 routers quote more) changes nothing.
  expect_untouched(icmp_error_frame(3, 1, "10.1.0.21", "198.51.100.7", kTcp, "198.51.100.7", 40000, "10.1.0.21", 8080,
                                    120),
                   XDP_PASS, TANDEM_STEER_REPLY);
  // About another port or protocol of the backend, or a packet the backend sent (the backend
  // as quoted source): the kernel's.
  expect_untouched(icmp_error_frame(3, 3, "10.1.0.21", "198.51.100.7", kUdp, "198.51.100.7", 40000, "10.1.0.21", 53),
                   XDP_PASS, TANDEM_PASS_IPV4);
  expect_untouched(icmp_error_frame(3, 3, "10.1.0.21", "198.51.100.7", kTcp, "198.51.100.7", 40000, "10.1.0.21", 5353),
                   XDP_PASS, TANDEM_PASS_IPV4);
  expect_untouched(icmp_error_frame(3, 3, "10.1.0.1", "198.51.100.7", kTcp, "10.1.0.21", 8080, "198.51.100.7", 40000),
                   XDP_PASS, TANDEM_PASS_IPV4);
  // Not an error (redirect, echo reply), or a quote cut before the ports: the kernel's.
  expect_untouched(icmp_error_frame(5, 1, "10.1.0.21", "198.51.100.7", kTcp, "198.51.100.7", 40000, "10.1.0.21", 8080),
                   XDP_PASS, TANDEM_PASS_IPV4);
  expect_untouched(icmp_error_frame(0, 0, "10.1.0.21", "198.51.100.7", kTcp, "198.51.100.7", 40000, "10.1.0.21", 8080),
                   XDP_PASS, TANDEM_PASS_IPV4);
  expect_untouched(icmp_error_frame(3, 3, "10.1.0.21", "198.51.100.7", kUdp, "198.51.100.7", 40000, "10.1.0.21", 5353,
                                    20 + 3),
                   XDP_PASS, TANDEM_PASS_IPV4);
  expect_untouched(icmp_error_frame(3, 3, "10.1.0.21", "198.51.100.7", kUdp, "198.51.100.7", 40000, "10.1.0.21", 5353,
                                    19),
                   XDP_PASS, TANDEM_PASS_IPV4);
  // An error to the host itself (about the unit's own health check) is the kernel's.
  host("10.1.0.3");
  expect_untouched(icmp_error_frame(3, 3, "10.1.0.21", "10.1.0.3", kUdp, "10.1.0.3", 40000, "10.1.0.21", 5353),
                   XDP_PASS, TANDEM_PASS_IPV4);
}

TEST_F(SteerTest, FullnatLocalAddressIsSteeredAsReply) {
  steer("10.1.0.5", TANDEM_STEER_FLAG_LOCAL);
  // backend -> local address: whatever the protocol, port or fragment.
  expect_untouched(l4_frame(kTcp, "10.1.0.21", 8080, "10.1.0.5", 1025), XDP_PASS, TANDEM_STEER_REPLY);
  expect_untouched(l4_frame(kUdp, "10.1.0.22", 53, "10.1.0.5", 4000, 0x2000), XDP_PASS, TANDEM_STEER_REPLY);
  expect_untouched(ipv4_frame("10.1.0.21", "10.1.0.5", 1, t::icmp_echo(0, 1, 1, t::pattern(56))), XDP_PASS,
                   TANDEM_STEER_REPLY);
  // ARP for it: the fast path answers (the flag only changes how IPv4 is counted).
  expect_untouched(arp_frame(1, "10.1.0.21", "10.1.0.5"), XDP_PASS, TANDEM_STEER_ARP);
  // The blocklist still wins.
  block("10.1.0.22", 32, 9);
  expect_untouched(l4_frame(kTcp, "10.1.0.22", 8080, "10.1.0.5", 1025), XDP_DROP, TANDEM_DROP_BLOCKED);
  source("10.1.0.22", kTcp, 8080);
  expect_untouched(l4_frame(kTcp, "10.1.0.22", 8080, "198.51.100.7", 1025), XDP_DROP, TANDEM_DROP_BLOCKED);
  // Without the flag the same address counts as an ordinary fast-path address.
  steer("10.1.0.5");
  expect_untouched(l4_frame(kTcp, "10.1.0.21", 8080, "10.1.0.5", 1025), XDP_PASS, TANDEM_STEER_IPV4);
}

TEST_F(SteerTest, SourcesCanChangeWhileAttached) {
  const Bytes reply = l4_frame(kTcp, "10.1.0.21", 8080, "198.51.100.7", 40000);
  expect_untouched(reply, XDP_PASS, TANDEM_PASS_IPV4);
  source("10.1.0.21", kTcp, 8080);
  expect_untouched(reply, XDP_PASS, TANDEM_STEER_REPLY);
  const tandem_steer_source_key k = source_key("10.1.0.21", kTcp, 8080);
  ASSERT_EQ(bpf_map_delete_elem(sources_fd_, &k), 0);
  expect_untouched(reply, XDP_PASS, TANDEM_PASS_IPV4);
}

TEST_F(SteerTest, CountsEveryRepetition) {
  const auto before = stats();
  const RunResult r = run(ipv4_frame("192.168.1.7", "10.0.0.100"), 0, {}, 1000);
  ASSERT_EQ(r.err, 0);
  EXPECT_EQ(stats()[TANDEM_STEER_IPV4] - before[TANDEM_STEER_IPV4], 1000u);
}

// ---- decap.bpf.c ----------------------------------------------------------------------------

const t::Mac kBackendMac = {0x02, 0x00, 0x00, 0x00, 0x00, 0x20};

Bytes inner_packet(const char* dst, std::uint8_t proto = 6, const Bytes& payload = t::pattern(40),
                   const Bytes& options = {}) {
  t::Ipv4Fields f;
  f.src = t::ip("198.18.0.7");  // the client
  f.dst = t::ip(dst);
  f.proto = proto;
  f.options = options;
  return t::ipv4(f, payload);
}

Bytes ipip_frame(const Bytes& inner, const Bytes& outer_options = {}, std::uint16_t flags_frag = 0x4000,
                 std::uint8_t outer_proto = 4) {
  t::Ipv4Fields f;
  f.src = t::ip("10.1.0.1");   // the unit
  f.dst = t::ip("10.1.0.20");  // this backend
  f.proto = outer_proto;
  f.flags_frag = flags_frag;
  f.options = outer_options;
  return t::ethernet(kBackendMac, kUnitMac, kIpv4, t::ipv4(f, inner));
}

// What the kernel must receive: the same MACs, EtherType IPv4, the inner packet.
Bytes decapsulated(const Bytes& inner) { return t::ethernet(kBackendMac, kUnitMac, kIpv4, inner, false); }

class DecapTest : public XdpProgramTest {
 protected:
  void SetUp() override {
    load(TANDEM_DECAP_BPF_OBJ, "tandem_decap", "decap_stats", TANDEM_DECAP_VERDICT_COUNT);
    if (!skip_reason_.empty()) GTEST_SKIP() << skip_reason_;
    if (HasFatalFailure()) return;
    vips_fd_ = map_fd("decap_vips");
    vip("10.0.0.100");
    vip("10.0.0.101");
  }

  const char* name(std::uint32_t v) const override { return kDecapNames[v]; }

  void vip(const char* addr) {
    const std::uint32_t key = be(addr), zero = 0;
    ASSERT_EQ(bpf_map_update_elem(vips_fd_, &key, &zero, BPF_ANY), 0) << std::strerror(errno);
  }

  void expect_decap(const Bytes& frame, const Bytes& expected) {
    const Bytes out = expect(frame, XDP_PASS, TANDEM_DECAP_DONE);
    EXPECT_EQ(out, expected) << "got:\n" << t::to_hex(out) << "\nexpected:\n" << t::to_hex(expected);
  }

  int vips_fd_ = -1;
};

TEST_F(DecapTest, StripsOuterHeaderOfIpipToVip) {
  const Bytes inner = inner_packet("10.0.0.100");
  const Bytes frame = ipip_frame(inner);
  ASSERT_EQ(frame.size(), 14u + 20 + 60);
  expect_decap(frame, decapsulated(inner));
  // The other VIP; UDP; outer without DF; inner ICMP.
  const Bytes udp = inner_packet("10.0.0.101", 17, t::pattern(100));
  expect_decap(ipip_frame(udp, {}, 0x0000), decapsulated(udp));
  const Bytes icmp = inner_packet("10.0.0.100", 1, t::icmp_echo(8, 7, 1, t::pattern(56)));
  expect_decap(ipip_frame(icmp), decapsulated(icmp));
  // Full-size: 1480-byte inner packet.
  const Bytes big = inner_packet("10.0.0.100", 6, t::pattern(1460));
  expect_decap(ipip_frame(big), decapsulated(big));
}

TEST_F(DecapTest, StripsOuterOptionsToo) {
  const Bytes inner = inner_packet("10.0.0.100");
  expect_decap(ipip_frame(inner, {0x01, 0x01, 0x01, 0x00}), decapsulated(inner));  // ihl 6
  expect_decap(ipip_frame(inner, Bytes(40, 0x01)), decapsulated(inner));            // ihl 15
}

TEST_F(DecapTest, KeepsInnerOptions) {
  const Bytes inner = inner_packet("10.0.0.100", 17, t::pattern(16), {0x94, 0x04, 0x00, 0x00});  // router alert
  expect_decap(ipip_frame(inner), decapsulated(inner));
}

TEST_F(DecapTest, KeepsEthernetPaddingBehindTheInnerPacket) {
  const Bytes inner = inner_packet("10.0.0.100", 6, {});  // 20 bytes: outer frame 54, padded to 60
  const Bytes frame = ipip_frame(inner);
  ASSERT_EQ(frame.size(), 60u);
  Bytes expected = decapsulated(inner);
  expected.resize(60 - 20, 0);
  expect_decap(frame, expected);
}

TEST_F(DecapTest, NotIpipPassesUntouched) {
  expect_untouched(ipv4_frame("198.18.0.7", "10.0.0.100"), XDP_PASS, TANDEM_DECAP_PASS_NOT_IPIP);
  expect_untouched(ipv4_frame("198.18.0.7", "10.0.0.100", 6), XDP_PASS, TANDEM_DECAP_PASS_NOT_IPIP);
  const Bytes inner = inner_packet("10.0.0.100");
  expect_untouched(ipip_frame(inner, {}, 0x4000, 41), XDP_PASS, TANDEM_DECAP_PASS_NOT_IPIP);  // 6in4
  expect_untouched(ipip_frame(inner, {}, 0x4000, 47), XDP_PASS, TANDEM_DECAP_PASS_NOT_IPIP);  // GRE
  expect_untouched(arp_frame(1, "10.1.0.1", "10.1.0.20"), XDP_PASS, TANDEM_DECAP_PASS_NOT_IPIP);
  expect_untouched(t::ethernet(kBackendMac, kUnitMac, kIpv6, t::pattern(80)), XDP_PASS, TANDEM_DECAP_PASS_NOT_IPIP);
  // A VLAN-tagged IPIP frame is not looked into.
  const Bytes ipip = ipip_frame(inner);
  Bytes tagged = {0x00, 0x05, 0x08, 0x00};
  tagged.insert(tagged.end(), ipip.begin() + 14, ipip.end());
  expect_untouched(t::ethernet(kBackendMac, kUnitMac, kVlan, tagged), XDP_PASS, TANDEM_DECAP_PASS_NOT_IPIP);
  // A bare Ethernet header with a foreign EtherType.
  expect_untouched(t::ethernet(kBackendMac, kUnitMac, kArp, {}, false), XDP_PASS, TANDEM_DECAP_PASS_NOT_IPIP);
}

TEST_F(DecapTest, IpipToOtherAddressesPassesUntouched) {
  expect_untouched(ipip_frame(inner_packet("10.0.0.7")), XDP_PASS, TANDEM_DECAP_PASS_NOT_VIP);
  // The outer destination is not what counts: an inner VIP as outer destination does not help.
  expect_untouched(ipip_frame(inner_packet("10.1.0.20")), XDP_PASS, TANDEM_DECAP_PASS_NOT_VIP);
  // VIPs can be added and removed while attached.
  const Bytes inner = inner_packet("10.0.0.102");
  expect_untouched(ipip_frame(inner), XDP_PASS, TANDEM_DECAP_PASS_NOT_VIP);
  vip("10.0.0.102");
  expect_decap(ipip_frame(inner), decapsulated(inner));
  const std::uint32_t key = be("10.0.0.102");
  ASSERT_EQ(bpf_map_delete_elem(vips_fd_, &key), 0);
  expect_untouched(ipip_frame(inner), XDP_PASS, TANDEM_DECAP_PASS_NOT_VIP);
}

TEST_F(DecapTest, MalformedOuterHeaderPassesUntouched) {
  const Bytes inner = inner_packet("10.0.0.100");
  const Bytes good = ipip_frame(inner);  // outer at 14, inner at 34, 94 bytes
  expect_untouched(with_byte(good, 14, 0x44), XDP_PASS, TANDEM_DECAP_PASS_MALFORMED);  // ihl 4
  expect_untouched(with_byte(good, 14, 0x65), XDP_PASS, TANDEM_DECAP_PASS_MALFORMED);  // version 6
  expect_untouched(first(good, 14 + 19), XDP_PASS, TANDEM_DECAP_PASS_MALFORMED);       // fixed header cut
  expect_untouched(first(good, 14), XDP_PASS, TANDEM_DECAP_PASS_MALFORMED);            // no header at all
  // ihl 15 in a frame with only 46 bytes after Ethernet.
  Bytes short_ipip = first(with_byte(good, 14, 0x4f), 60);
  expect_untouched(short_ipip, XDP_PASS, TANDEM_DECAP_PASS_MALFORMED);
  // Total length beyond the frame, or too short for both headers.
  expect_untouched(with_be16(good, 14 + 2, 20 + 60 + 1), XDP_PASS, TANDEM_DECAP_PASS_MALFORMED);
  expect_untouched(with_be16(good, 14 + 2, 39), XDP_PASS, TANDEM_DECAP_PASS_MALFORMED);
  expect_untouched(with_be16(good, 14 + 2, 0), XDP_PASS, TANDEM_DECAP_PASS_MALFORMED);
  // Boundaries that are valid: total length exactly the headers, or shorter than the frame.
  // (The program does not trim: the kernel trims to the inner total length.)
  expect_decap(with_be16(good, 14 + 2, 40), decapsulated(inner));
  expect_decap(with_be16(good, 14 + 2, 20 + 60 - 1), decapsulated(inner));
}

TEST_F(DecapTest, OuterFragmentsPassUntouched) {
  const Bytes inner = inner_packet("10.0.0.100");
  expect_untouched(ipip_frame(inner, {}, 0x2000), XDP_PASS, TANDEM_DECAP_PASS_MALFORMED);  // MF
  expect_untouched(ipip_frame(inner, {}, 0x0001), XDP_PASS, TANDEM_DECAP_PASS_MALFORMED);  // offset 8
  expect_untouched(ipip_frame(inner, {}, 0x1fff), XDP_PASS, TANDEM_DECAP_PASS_MALFORMED);  // last offset
  expect_untouched(ipip_frame(inner, {}, 0x6000), XDP_PASS, TANDEM_DECAP_PASS_MALFORMED);  // DF + MF
  expect_decap(ipip_frame(inner, {}, 0x8000), decapsulated(inner));  // the reserved bit is not a fragment
}

TEST_F(DecapTest, MalformedInnerHeaderPassesUntouched) {
  const Bytes inner = inner_packet("10.0.0.100");
  const Bytes good = ipip_frame(inner);
  constexpr std::size_t kInner = 14 + 20;
  expect_untouched(with_byte(good, kInner, 0x44), XDP_PASS, TANDEM_DECAP_PASS_MALFORMED);  // ihl 4
  expect_untouched(with_byte(good, kInner, 0x65), XDP_PASS, TANDEM_DECAP_PASS_MALFORMED);  // version 6
  expect_untouched(with_byte(good, kInner, 0x04), XDP_PASS, TANDEM_DECAP_PASS_MALFORMED);  // version 0
  // Inner header cut: 10 bytes of it (total length consistent with that).
  expect_untouched(with_be16(first(good, kInner + 10), 14 + 2, 30), XDP_PASS, TANDEM_DECAP_PASS_MALFORMED);
  // Inner ihl 15 when 60 bytes of inner packet exist but the frame ends sooner.
  expect_untouched(first(with_byte(good, kInner, 0x4f), kInner + 59), XDP_PASS, TANDEM_DECAP_PASS_MALFORMED);
  // Inner ihl 15 with the header in the frame but beyond the outer total length.
  expect_untouched(with_be16(with_byte(good, kInner, 0x4f), 14 + 2, 20 + 59), XDP_PASS,
                   TANDEM_DECAP_PASS_MALFORMED);
}

TEST_F(DecapTest, FramesShorterThanEthernetHeaderPassAsMalformed) {
  // See SteerTest.FramesShorterThanEthernetHeaderPassAsMalformed for how these get in.
  const Bytes full = ipip_frame(inner_packet("10.0.0.100"));
  for (std::uint32_t len = 0; len < 14; ++len) {
    SCOPED_TRACE("linear length " + std::to_string(len));
    EXPECT_EQ(run(first(full, len)).err, -EINVAL);
    expect_untouched(first(full, 14), XDP_PASS, TANDEM_DECAP_PASS_MALFORMED, 0, len);
  }
  // Headers cut by the end of the linear part.
  expect_untouched(full, XDP_PASS, TANDEM_DECAP_PASS_MALFORMED, 0, 14 + 19);       // outer
  expect_untouched(full, XDP_PASS, TANDEM_DECAP_PASS_MALFORMED, 0, 14 + 20 + 19);  // inner
}

TEST_F(DecapTest, DecapsulatesBehindMetadata) {
  // XDP metadata in front of the frame (another program's, in a chain) survives, and the
  // frame after it is decapsulated.
  const Bytes inner = inner_packet("10.0.0.100");
  const Bytes out = expect(ipip_frame(inner), XDP_PASS, TANDEM_DECAP_DONE, 16);
  EXPECT_EQ(out, decapsulated(inner)) << t::to_hex(out);
}

// TANDEM_DECAP_DROP_ERROR (bpf_xdp_adjust_head failing) cannot be provoked: the program moves
// the head by the outer header length only after checking that a whole inner IPv4 header (at
// least 20 bytes) follows it, and adjust_head fails only when fewer than ETH_HLEN bytes would
// remain. The verdict is there for the kernel's sake, not for a reachable case.

}  // namespace
