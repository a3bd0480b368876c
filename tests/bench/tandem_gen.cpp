// tandem_gen: the fast-path benchmark's traffic generator and sink, one DPDK process, one lcore.
//
//   port 0 (memif server A)  --TX-->  device under test (north)
//   port 1 (memif server B)  <--RX--  device under test (south)
//
// It sends 64-byte IPv4 frames to a VIP as fast as port 0 takes them and counts what comes back
// on port 1. ARP requests on either port for an address in --arp-for (the backends) or inside
// the client range are answered with that port's MAC, so the device under test can resolve its
// next hops. Two kinds of traffic:
//
//   --established N   cycle over N fixed 5-tuples (TCP ACK, or UDP with --udp)
//   --new-flows       every frame a TCP SYN with a 5-tuple never sent before
//
// Flow k has source port 1024 + k % 64512 and source address --client-base + k / 64512.
// IPv4 and L4 checksums are correct: computed once on a template, then adjusted per frame for
// the source address and port (RFC 1071 sums are order-independent).
//
// Phases: wait for both links (and for --go-file, if given); --warmup-seconds at a gentle pace
// (one burst every 100 us), so that the DUT resolves its neighbours and, for --established,
// learns the flows; a quiet second ("warmup_done" .. "measure_start"); then the measured phase
// at full speed until --seconds or --count frames ("measure_end"). Frames received during it
// are the result; with --linger-seconds it then keeps the links up (draining) until SIGTERM or
// that time. --rate R limits both phases to R frames per second (the warm-up keeps its own pace
// when that is slower): whole bursts of 32 are sent whenever fewer than R x elapsed frames went,
// so the average holds and a burst may run up to 31 frames ahead; in between, the measured phase
// sleeps rather than spins. With --new-flows, R is the rate of new connections offered
// (scripts/bench/sync.py). Progress goes to stdout as JSON lines, {"event": ...}; the summary
// line is {"event": "summary", "rate", "tx", "rx", "tx_pps", "rx_pps", "seconds", ...};
// rx_to_vip counts frames that came back still addressed to the VIP (io forwarding; a NAT must
// leave none).
//
// Example (scripts/bench/fastpath.py runs it):
//   tandem_gen -l 0 --no-huge --no-pci -m 512 --file-prefix gen
//       --vdev net_memif0,role=server,socket=/tmp/a.sock,mac=02:00:00:00:0a:01
//       --vdev net_memif1,role=server,socket=/tmp/b.sock,mac=02:00:00:00:0b:01
//       -- --dut-mac 02:00:00:00:01:01 --vip 203.0.113.10 --vip-port 80
//       --arp-for 198.19.0.11,198.19.0.12 --established 65536 --seconds 5
#include <rte_arp.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_tcp.h>
#include <rte_udp.h>

#include <arpa/inet.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace {

constexpr std::uint16_t kTxPort = 0;
constexpr std::uint16_t kRxPort = 1;
constexpr std::uint16_t kBurst = 32;
constexpr std::uint16_t kRxBurst = 64;
constexpr std::uint16_t kFrameLen = 64;  // without FCS, as testpmd's --txpkts=64
constexpr std::uint32_t kPortsPerAddress = 64512;  // source ports 1024..65535
constexpr std::uint16_t kFirstSourcePort = 1024;

std::atomic<bool> g_stop{false};

void on_signal(int) { g_stop.store(true, std::memory_order_relaxed); }

[[noreturn]] void die(const std::string& message) {
  std::fprintf(stderr, "tandem_gen: %s\n", message.c_str());
  std::exit(2);
}

struct Options {
  rte_ether_addr dut_mac{};
  std::uint32_t vip = 0;                    // host order
  std::uint16_t vip_port = 80;
  std::uint32_t client_base = 0x0a800000;   // 10.128.0.0
  std::vector<std::uint32_t> arp_for;       // host order
  std::uint64_t established = 0;            // flows; 0 with new_flows
  bool new_flows = false;
  bool udp = false;
  double seconds = 5.0;
  double warmup_seconds = 1.0;
  double link_timeout = 20.0;
  double linger_seconds = 0.0;              // after the summary: keep draining until SIGTERM
  std::string go_file;                      // after links up: wait for this file to exist
  std::uint64_t count = UINT64_MAX;         // frames in the measured phase
  double rate = 0.0;                        // frames per second (both phases); 0: no limit
};

std::uint32_t parse_ip(const std::string& s) {
  in_addr a{};
  if (inet_pton(AF_INET, s.c_str(), &a) != 1) die("not an IPv4 address: " + s);
  return ntohl(a.s_addr);
}

std::vector<std::uint32_t> parse_ip_list(const std::string& s) {
  std::vector<std::uint32_t> out;
  std::size_t start = 0;
  while (start <= s.size()) {
    const std::size_t comma = s.find(',', start);
    const std::string item = s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (!item.empty()) out.push_back(parse_ip(item));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

Options parse_options(int argc, char** argv) {
  Options o;
  bool have_mac = false, have_vip = false;
  for (int i = 0; i < argc; ++i) {
    const std::string_view arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) die(std::string(arg) + " needs a value");
      return argv[++i];
    };
    if (arg == "--dut-mac") {
      if (rte_ether_unformat_addr(value().c_str(), &o.dut_mac) != 0) die("bad --dut-mac");
      have_mac = true;
    } else if (arg == "--vip") {
      o.vip = parse_ip(value());
      have_vip = true;
    } else if (arg == "--vip-port") {
      o.vip_port = static_cast<std::uint16_t>(std::stoul(value()));
    } else if (arg == "--client-base") {
      o.client_base = parse_ip(value());
    } else if (arg == "--arp-for") {
      o.arp_for = parse_ip_list(value());
    } else if (arg == "--established") {
      o.established = std::stoull(value());
    } else if (arg == "--new-flows") {
      o.new_flows = true;
    } else if (arg == "--udp") {
      o.udp = true;
    } else if (arg == "--seconds") {
      o.seconds = std::stod(value());
    } else if (arg == "--warmup-seconds") {
      o.warmup_seconds = std::stod(value());
    } else if (arg == "--link-timeout") {
      o.link_timeout = std::stod(value());
    } else if (arg == "--go-file") {
      o.go_file = value();
    } else if (arg == "--linger-seconds") {
      o.linger_seconds = std::stod(value());
    } else if (arg == "--count") {
      o.count = std::stoull(value());
    } else if (arg == "--rate") {
      o.rate = std::stod(value());
      if (!(o.rate >= 0.0)) die("--rate must be >= 0 (0: no limit)");
    } else {
      die("unknown option " + std::string(arg));
    }
  }
  if (!have_mac || !have_vip) die("--dut-mac and --vip are required");
  if (o.new_flows == (o.established != 0)) die("give exactly one of --established N and --new-flows");
  if (o.new_flows && o.udp) die("--new-flows sends TCP SYNs; --udp is for --established");
  return o;
}

// 16-bit one's complement sum of big-endian words, not folded.
std::uint32_t sum16(const void* data, std::size_t len) {
  const auto* p = static_cast<const std::uint8_t*>(data);
  std::uint32_t sum = 0;
  for (std::size_t i = 0; i + 1 < len; i += 2) sum += static_cast<std::uint32_t>(p[i] << 8 | p[i + 1]);
  if (len & 1) sum += static_cast<std::uint32_t>(p[len - 1] << 8);
  return sum;
}

std::uint16_t fold(std::uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<std::uint16_t>(sum);
}

// The frame every packet starts from, with source address and port zero, and the checksum sums
// of its IPv4 header and L4 segment (pseudo-header included) without them.
struct Template {
  std::array<std::uint8_t, kFrameLen> bytes{};
  std::uint32_t ip_sum = 0;
  std::uint32_t l4_sum = 0;
  std::size_t l4_csum_offset = 0;
  bool udp = false;
};

constexpr std::size_t kIpOffset = sizeof(rte_ether_hdr);
constexpr std::size_t kL4Offset = kIpOffset + sizeof(rte_ipv4_hdr);

Template make_template(const Options& o, const rte_ether_addr& src_mac) {
  Template t;
  t.udp = o.udp;
  auto* eth = reinterpret_cast<rte_ether_hdr*>(t.bytes.data());
  eth->dst_addr = o.dut_mac;
  eth->src_addr = src_mac;
  eth->ether_type = htons(RTE_ETHER_TYPE_IPV4);

  auto* ip = reinterpret_cast<rte_ipv4_hdr*>(t.bytes.data() + kIpOffset);
  const std::size_t l4_len = o.udp ? kFrameLen - kL4Offset : sizeof(rte_tcp_hdr);  // TCP: no payload, Ethernet padding
  ip->version_ihl = RTE_IPV4_VHL_DEF;
  ip->total_length = htons(static_cast<std::uint16_t>(sizeof(rte_ipv4_hdr) + l4_len));
  ip->packet_id = 0;
  ip->fragment_offset = htons(RTE_IPV4_HDR_DF_FLAG);
  ip->time_to_live = 64;
  ip->next_proto_id = o.udp ? IPPROTO_UDP : IPPROTO_TCP;
  ip->src_addr = 0;
  ip->dst_addr = htonl(o.vip);
  ip->hdr_checksum = 0;
  t.ip_sum = sum16(ip, sizeof(rte_ipv4_hdr));

  std::uint8_t* l4 = t.bytes.data() + kL4Offset;
  if (o.udp) {
    auto* udp = reinterpret_cast<rte_udp_hdr*>(l4);
    udp->src_port = 0;
    udp->dst_port = htons(o.vip_port);
    udp->dgram_len = htons(static_cast<std::uint16_t>(l4_len));
    udp->dgram_cksum = 0;
    for (std::size_t i = sizeof(rte_udp_hdr); i < l4_len; ++i) l4[i] = static_cast<std::uint8_t>(i);
    t.l4_csum_offset = kL4Offset + offsetof(rte_udp_hdr, dgram_cksum);
  } else {
    auto* tcp = reinterpret_cast<rte_tcp_hdr*>(l4);
    tcp->src_port = 0;
    tcp->dst_port = htons(o.vip_port);
    tcp->sent_seq = htonl(0x10000000);
    tcp->recv_ack = o.new_flows ? 0 : htonl(0x20000000);
    tcp->data_off = (sizeof(rte_tcp_hdr) / 4) << 4;
    tcp->tcp_flags = o.new_flows ? RTE_TCP_SYN_FLAG : RTE_TCP_ACK_FLAG;
    tcp->rx_win = htons(65535);
    tcp->cksum = 0;
    tcp->tcp_urp = 0;
    t.l4_csum_offset = kL4Offset + offsetof(rte_tcp_hdr, cksum);
  }
  // Pseudo-header: source (zero here), destination, protocol, L4 length.
  t.l4_sum = sum16(&ip->dst_addr, 4) + ip->next_proto_id + static_cast<std::uint32_t>(l4_len) + sum16(l4, l4_len);
  return t;
}

void put16(std::uint8_t* p, std::uint16_t v) {
  p[0] = static_cast<std::uint8_t>(v >> 8);
  p[1] = static_cast<std::uint8_t>(v);
}

// Writes flow k's frame into dst.
void write_frame(std::uint8_t* dst, const Template& t, std::uint32_t client_base, std::uint64_t k) {
  const std::uint32_t src = client_base + static_cast<std::uint32_t>(k / kPortsPerAddress);
  const auto sport = static_cast<std::uint16_t>(kFirstSourcePort + k % kPortsPerAddress);
  std::memcpy(dst, t.bytes.data(), kFrameLen);
  const std::uint32_t src_sum = (src >> 16) + (src & 0xffff);
  put16(dst + kIpOffset + offsetof(rte_ipv4_hdr, src_addr), static_cast<std::uint16_t>(src >> 16));
  put16(dst + kIpOffset + offsetof(rte_ipv4_hdr, src_addr) + 2, static_cast<std::uint16_t>(src));
  put16(dst + kIpOffset + offsetof(rte_ipv4_hdr, hdr_checksum), static_cast<std::uint16_t>(~fold(t.ip_sum + src_sum)));
  put16(dst + kL4Offset, sport);  // source port: first field of both TCP and UDP headers
  std::uint16_t l4 = static_cast<std::uint16_t>(~fold(t.l4_sum + src_sum + sport));
  if (t.udp && l4 == 0) l4 = 0xffff;  // UDP: zero means "no checksum"
  put16(dst + t.l4_csum_offset, l4);
}

struct Stats {
  std::uint64_t tx = 0;             // frames port 0 took
  std::uint64_t tx_bursts = 0;      // tx_burst calls with frames to send
  std::uint64_t tx_short = 0;       // ... that the ring did not take whole (the DUT is behind)
  std::uint64_t rx = 0;             // frames back on port 1, ARP excluded
  std::uint64_t rx_to_vip = 0;      // ... still addressed to the VIP (not NATed, e.g. io forward)
  std::uint64_t rx_port0 = 0;       // frames on port 0, ARP excluded (should be none)
  std::uint64_t arp_replies = 0;
  std::uint64_t arp_ignored = 0;
};

class Generator {
 public:
  Generator(const Options& o, rte_mempool* pool) : o_(o), pool_(pool) {
    rte_ether_addr mac{};
    rte_eth_macaddr_get(kTxPort, &mac);
    tmpl_ = make_template(o, mac);
    rte_eth_macaddr_get(kTxPort, &macs_[0]);
    rte_eth_macaddr_get(kRxPort, &macs_[1]);
  }

  // Sends one burst of the next flows. Frames the ring refuses are kept and offered again.
  void send_burst() {
    if (pending_ == 0) {
      if (rte_pktmbuf_alloc_bulk(pool_, tx_.data(), kBurst) != 0) return;  // all buffers in flight
      for (std::uint16_t i = 0; i < kBurst; ++i) {
        rte_mbuf* m = tx_[i];
        write_frame(rte_pktmbuf_mtod(m, std::uint8_t*), tmpl_, o_.client_base, next_flow());
        m->data_len = kFrameLen;
        m->pkt_len = kFrameLen;
      }
      pending_ = kBurst;
      first_ = 0;
    }
    const std::uint16_t n = rte_eth_tx_burst(kTxPort, 0, tx_.data() + first_, pending_);
    stats_.tx += n;
    stats_.tx_bursts += 1;
    if (n != pending_) stats_.tx_short += 1;
    pending_ -= n;
    first_ += n;
  }

  // Drains both ports: counts port 1's frames, answers ARP on either.
  void receive() {
    for (std::uint16_t port : {kRxPort, kTxPort}) {
      std::array<rte_mbuf*, kRxBurst> rx;
      const std::uint16_t n = rte_eth_rx_burst(port, 0, rx.data(), kRxBurst);
      if (n == 0) continue;
      std::array<rte_mbuf*, kRxBurst> done;
      std::uint16_t n_done = 0;
      for (std::uint16_t i = 0; i < n; ++i) {
        rte_mbuf* m = rx[i];
        const auto* eth = rte_pktmbuf_mtod(m, const rte_ether_hdr*);
        if (m->data_len >= sizeof(rte_ether_hdr) && eth->ether_type == htons(RTE_ETHER_TYPE_ARP)) {
          if (answer_arp(port, m)) continue;  // m was sent back
          done[n_done++] = m;
          continue;
        }
        if (port == kRxPort) {
          stats_.rx += 1;
          if (m->data_len >= kL4Offset && eth->ether_type == htons(RTE_ETHER_TYPE_IPV4)) {
            const auto* ip = reinterpret_cast<const rte_ipv4_hdr*>(eth + 1);
            if (ip->dst_addr == htonl(o_.vip)) stats_.rx_to_vip += 1;
          }
        } else {
          stats_.rx_port0 += 1;
        }
        done[n_done++] = m;
      }
      if (n_done != 0) rte_pktmbuf_free_bulk(done.data(), n_done);
    }
  }

  // Unsent frames go back to the pool at the end.
  void release_pending() {
    if (pending_ != 0) rte_pktmbuf_free_bulk(tx_.data() + first_, pending_);
    pending_ = 0;
  }

  Stats& stats() { return stats_; }

 private:
  std::uint64_t next_flow() {
    const std::uint64_t k = flow_;
    flow_ += 1;
    if (!o_.new_flows && flow_ == o_.established) flow_ = 0;
    return k;
  }

  bool want_arp_for(std::uint32_t ip) const {
    if (ip - o_.client_base < (1u << 22)) return true;  // the client range (up to 2^22 addresses)
    for (std::uint32_t a : o_.arp_for)
      if (a == ip) return true;
    return false;
  }

  // An ARP request for an address we stand for becomes the reply, sent on the same port.
  bool answer_arp(std::uint16_t port, rte_mbuf* m) {
    if (m->data_len < sizeof(rte_ether_hdr) + sizeof(rte_arp_hdr)) return false;
    auto* eth = rte_pktmbuf_mtod(m, rte_ether_hdr*);
    auto* arp = reinterpret_cast<rte_arp_hdr*>(eth + 1);
    if (arp->arp_opcode != htons(RTE_ARP_OP_REQUEST) || arp->arp_hardware != htons(RTE_ARP_HRD_ETHER) ||
        arp->arp_protocol != htons(RTE_ETHER_TYPE_IPV4) || !want_arp_for(ntohl(arp->arp_data.arp_tip))) {
      stats_.arp_ignored += 1;
      return false;
    }
    const rte_ether_addr& mine = macs_[port == kTxPort ? 0 : 1];
    const std::uint32_t target = arp->arp_data.arp_tip;
    arp->arp_opcode = htons(RTE_ARP_OP_REPLY);
    arp->arp_data.arp_tha = arp->arp_data.arp_sha;
    arp->arp_data.arp_tip = arp->arp_data.arp_sip;
    arp->arp_data.arp_sha = mine;
    arp->arp_data.arp_sip = target;
    eth->dst_addr = eth->src_addr;
    eth->src_addr = mine;
    if (rte_eth_tx_burst(port, 0, &m, 1) != 1) return false;
    stats_.arp_replies += 1;
    return true;
  }

  const Options& o_;
  rte_mempool* pool_;
  Template tmpl_;
  std::array<rte_ether_addr, 2> macs_{};
  std::array<rte_mbuf*, kBurst> tx_{};
  std::uint16_t pending_ = 0;
  std::uint16_t first_ = 0;
  std::uint64_t flow_ = 0;
  Stats stats_;
};

void setup_port(std::uint16_t port, rte_mempool* pool) {
  rte_eth_conf conf{};
  if (rte_eth_dev_configure(port, 1, 1, &conf) != 0) die("cannot configure port " + std::to_string(port));
  const int socket = rte_eth_dev_socket_id(port);
  const unsigned sock = socket < 0 ? 0 : static_cast<unsigned>(socket);
  if (rte_eth_rx_queue_setup(port, 0, 1024, sock, nullptr, pool) != 0) die("rx queue setup failed");
  if (rte_eth_tx_queue_setup(port, 0, 1024, sock, nullptr) != 0) die("tx queue setup failed");
  if (rte_eth_dev_start(port) != 0) die("cannot start port " + std::to_string(port));
}

bool links_up() {
  for (std::uint16_t port : {kTxPort, kRxPort}) {
    rte_eth_link link{};
    if (rte_eth_link_get_nowait(port, &link) != 0 || link.link_status != RTE_ETH_LINK_UP) return false;
  }
  return true;
}

void event(const char* name) {
  std::printf("{\"event\": \"%s\"}\n", name);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  const int eal_args = rte_eal_init(argc, argv);
  if (eal_args < 0) die("EAL initialisation failed");
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  const Options o = parse_options(argc - eal_args - 1, argv + eal_args + 1);
  if (rte_eth_dev_count_avail() != 2) die("need exactly two ports (two --vdev net_memif...,role=server)");

  rte_mempool* pool = rte_pktmbuf_pool_create("gen_pool", 16383, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                              static_cast<int>(rte_socket_id()));
  if (!pool) die("cannot create the mbuf pool");
  setup_port(kTxPort, pool);
  setup_port(kRxPort, pool);

  const std::uint64_t hz = rte_get_tsc_hz();
  const auto ticks = [hz](double s) { return static_cast<std::uint64_t>(s * static_cast<double>(hz)); };
  Generator gen(o, pool);
  int status = 0;

  // Both ends must be connected; answer ARP meanwhile.
  const std::uint64_t link_deadline = rte_rdtsc() + ticks(o.link_timeout);
  while (!links_up() && !g_stop.load(std::memory_order_relaxed)) {
    if (rte_rdtsc() > link_deadline) die("memif links not up after --link-timeout");
    gen.receive();
    rte_delay_us_sleep(1000);
  }
  event("links_up");

  // The DUT may be slower to become ready than its links (tandemd allocates its connection
  // table after starting the ports): the driver creates --go-file when it is.
  if (!o.go_file.empty()) {
    const std::uint64_t go_deadline = rte_rdtsc() + ticks(o.link_timeout);
    while (access(o.go_file.c_str(), F_OK) != 0 && !g_stop.load(std::memory_order_relaxed)) {
      if (rte_rdtsc() > go_deadline) die("--go-file did not appear within --link-timeout");
      gen.receive();
      rte_delay_us_sleep(1000);
    }
    event("go");
  }

  // Warm-up: a gentle pace, so neighbours are resolved and flows learnt before measuring; no
  // faster than --rate either.
  const double warm_interval = o.rate > 0.0 ? std::max(100e-6, kBurst / o.rate) : 100e-6;
  const std::uint64_t warm_end = rte_rdtsc() + ticks(o.warmup_seconds);
  std::uint64_t next_burst = 0;
  while (rte_rdtsc() < warm_end && !g_stop.load(std::memory_order_relaxed)) {
    const std::uint64_t now = rte_rdtsc();
    if (now >= next_burst) {
      gen.send_burst();
      next_burst = now + ticks(warm_interval);
    }
    gen.receive();
  }
  // A quiet second between the phases (still answering ARP): the DUT's published counters
  // settle, and the driver reads them before the measured phase.
  event("warmup_done");
  const std::uint64_t quiet_end = rte_rdtsc() + ticks(1.0);
  while (rte_rdtsc() < quiet_end && !g_stop.load(std::memory_order_relaxed)) gen.receive();
  const Stats warm = gen.stats();
  gen.stats() = Stats{};
  event("measure_start");

  // Measured phase: as fast as port 0 takes frames; with --rate, a burst whenever fewer than
  // rate x elapsed frames went, and while ahead of that the core is given away (sleeps of at most
  // 100 us), so that a paced generator leaves its core to the threads that share it.
  const std::uint64_t start = rte_rdtsc();
  const std::uint64_t end = start + ticks(o.seconds);
  const double rate_per_tick = o.rate / static_cast<double>(hz);
  std::uint64_t now = start;
  while (now < end && gen.stats().tx < o.count && !g_stop.load(std::memory_order_relaxed)) {
    if (o.rate <= 0.0) {
      gen.send_burst();
    } else {
      const double ahead = static_cast<double>(gen.stats().tx) - static_cast<double>(now - start) * rate_per_tick;
      if (ahead < 0.0) {
        gen.send_burst();
      } else if (const double wait_us = ahead / o.rate * 1e6; wait_us >= 20.0) {
        rte_delay_us_sleep(static_cast<unsigned>(std::min(wait_us, 100.0)));
      }
    }
    gen.receive();
    now = rte_rdtsc();
  }
  const Stats measured = gen.stats();
  const double elapsed = static_cast<double>(now - start) / static_cast<double>(hz);
  gen.release_pending();
  event("measure_end");

  // Drain what is still in flight (not part of the result), still answering ARP.
  const std::uint64_t drain_end = rte_rdtsc() + ticks(0.2);
  while (rte_rdtsc() < drain_end) gen.receive();
  if (g_stop.load(std::memory_order_relaxed)) status = 1;

  std::printf(
      "{\"event\": \"summary\", \"mode\": \"%s\", \"rate\": %.1f, \"flows\": %llu, \"seconds\": %.6f, \"tx\": %llu, "
      "\"rx\": %llu, \"tx_pps\": %.1f, \"rx_pps\": %.1f, \"rx_to_vip\": %llu, \"rx_port0\": %llu, "
      "\"tx_bursts\": %llu, \"tx_short_bursts\": %llu, \"arp_replies\": %llu, \"arp_ignored\": %llu, "
      "\"warmup_tx\": %llu, \"warmup_rx\": %llu, \"interrupted\": %s}\n",
      o.new_flows ? "new-flows" : (o.udp ? "established-udp" : "established-tcp"), o.rate,
      static_cast<unsigned long long>(o.new_flows ? warm.tx + measured.tx : o.established), elapsed,
      static_cast<unsigned long long>(measured.tx), static_cast<unsigned long long>(measured.rx),
      elapsed > 0 ? static_cast<double>(measured.tx) / elapsed : 0.0,
      elapsed > 0 ? static_cast<double>(measured.rx) / elapsed : 0.0,
      static_cast<unsigned long long>(measured.rx_to_vip), static_cast<unsigned long long>(measured.rx_port0),
      static_cast<unsigned long long>(measured.tx_bursts), static_cast<unsigned long long>(measured.tx_short),
      static_cast<unsigned long long>(warm.arp_replies + gen.stats().arp_replies),  // drain included
      static_cast<unsigned long long>(warm.arp_ignored + gen.stats().arp_ignored),
      static_cast<unsigned long long>(warm.tx), static_cast<unsigned long long>(warm.rx),
      status != 0 ? "true" : "false");
  std::fflush(stdout);

  // Linger, links still up, so that the driver can read the DUT's counters before the DUT
  // sees its links go down. SIGTERM ends it (and is not a failure here).
  const std::uint64_t linger_end = rte_rdtsc() + ticks(o.linger_seconds);
  while (rte_rdtsc() < linger_end && !g_stop.load(std::memory_order_relaxed)) {
    gen.receive();
    rte_delay_us_sleep(100);
  }

  for (std::uint16_t port : {kTxPort, kRxPort}) {
    rte_eth_dev_stop(port);
    rte_eth_dev_close(port);
  }
  rte_eal_cleanup();
  return status;
}
