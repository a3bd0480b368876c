// The forwarding modes' rewrites, byte for byte, against frames built independently with
// checksums computed from scratch (frames.cpp), not updated.
#include <gtest/gtest.h>

#include <random>

#include "dataplane/lb/rewrite.hpp"
#include "dataplane/net/checksum.hpp"
#include "tests/unit/frames.hpp"

using namespace tandem;
using test::Bytes;

namespace {

const test::Mac kClientMac = {0x02, 0, 0, 0, 0, 0x0c};
const test::Mac kUnitMac = {0x02, 0, 0, 0, 0, 0x01};
const test::Mac kBackendMac = {0x02, 0, 0, 0, 0, 0xbe};
const std::uint32_t kClient = test::ip("198.51.100.7");
const std::uint32_t kVip = test::ip("203.0.113.10");
const std::uint32_t kBackend = test::ip("10.0.1.21");
const std::uint32_t kLocal = test::ip("10.0.1.2");
const std::uint32_t kUnit = test::ip("10.0.1.1");

Bytes tcp_packet(const test::Mac& dmac, const test::Mac& smac, std::uint32_t src, std::uint32_t dst, std::uint16_t sport,
                 std::uint16_t dport, const Bytes& payload = test::pattern(33), std::uint8_t ttl = 64) {
  test::Ipv4Fields ip{.src = src, .dst = dst, .proto = 6, .ttl = ttl};
  return test::ethernet(dmac, smac, 0x0800, test::ipv4(ip, test::tcp(src, dst, sport, dport, 0x18, payload)));
}

Bytes udp_packet(std::uint32_t src, std::uint32_t dst, std::uint16_t sport, std::uint16_t dport, bool checksum = true) {
  test::Ipv4Fields ip{.src = src, .dst = dst, .proto = 17};
  return test::ethernet(kUnitMac, kClientMac, 0x0800, test::ipv4(ip, test::udp(src, dst, sport, dport, test::pattern(21), checksum)));
}

net::ParsedPacket parsed(const Bytes& f) {
  net::ParsedPacket p;
  EXPECT_EQ(net::parse_packet(f.data(), static_cast<std::uint32_t>(f.size()), p), net::ParseError::kNone);
  return p;
}

net::MacAddr mac(const test::Mac& m) { return net::MacAddr{m}; }

}  // namespace

TEST(Rewrite, NatRequestToBackendAndReplyBackToTheVip) {
  Bytes f = tcp_packet(kUnitMac, kClientMac, kClient, kVip, 40000, 80);
  auto p = parsed(f);
  lb::rewrite_destination(f.data(), p, net::Ipv4Addr{kBackend}, 8080);
  lb::set_macs(f.data(), mac(kUnitMac), mac(kBackendMac));
  EXPECT_EQ(f, tcp_packet(kBackendMac, kUnitMac, kClient, kBackend, 40000, 8080)) << test::to_hex(f);
  EXPECT_EQ(p.dst.value, kBackend);
  EXPECT_EQ(p.dport, 8080);

  Bytes reply = tcp_packet(kUnitMac, kBackendMac, kBackend, kClient, 8080, 40000);
  auto r = parsed(reply);
  lb::rewrite_source(reply.data(), r, net::Ipv4Addr{kVip}, 80);
  lb::set_macs(reply.data(), mac(kUnitMac), mac(kClientMac));
  EXPECT_EQ(reply, tcp_packet(kClientMac, kUnitMac, kVip, kClient, 80, 40000)) << test::to_hex(reply);
}

TEST(Rewrite, FullNatRewritesBothEnds) {
  Bytes f = tcp_packet(kUnitMac, kClientMac, kClient, kVip, 40000, 80);
  auto p = parsed(f);
  lb::rewrite_destination(f.data(), p, net::Ipv4Addr{kBackend}, 80);
  lb::rewrite_source(f.data(), p, net::Ipv4Addr{kLocal}, 1025);
  EXPECT_EQ(f, tcp_packet(kUnitMac, kClientMac, kLocal, kBackend, 1025, 80)) << test::to_hex(f);

  Bytes reply = tcp_packet(kUnitMac, kBackendMac, kBackend, kLocal, 80, 1025);
  auto r = parsed(reply);
  lb::rewrite_source(reply.data(), r, net::Ipv4Addr{kVip}, 80);
  lb::rewrite_destination(reply.data(), r, net::Ipv4Addr{kClient}, 40000);
  EXPECT_EQ(reply, tcp_packet(kUnitMac, kBackendMac, kVip, kClient, 80, 40000));
}

TEST(Rewrite, UdpWithAndWithoutChecksum) {
  Bytes f = udp_packet(kClient, kVip, 5353, 53);
  auto p = parsed(f);
  lb::rewrite_destination(f.data(), p, net::Ipv4Addr{kBackend}, 5300);
  EXPECT_EQ(f, udp_packet(kClient, kBackend, 5353, 5300));

  Bytes none = udp_packet(kClient, kVip, 5353, 53, false);
  auto q = parsed(none);
  lb::rewrite_destination(none.data(), q, net::Ipv4Addr{kBackend}, 5300);
  EXPECT_EQ(none, udp_packet(kClient, kBackend, 5353, 5300, false)) << "no checksum stays no checksum";
}

TEST(Rewrite, RandomAddressesAndPortsKeepEveryChecksumValid) {
  std::mt19937 rng(5);
  for (int i = 0; i < 20000; ++i) {
    const std::uint32_t src = rng(), dst = rng();
    const auto sport = static_cast<std::uint16_t>(rng()), dport = static_cast<std::uint16_t>(rng());
    const bool tcp = rng() % 2;
    const Bytes payload = test::pattern(rng() % 64, static_cast<std::uint8_t>(i));
    Bytes f = tcp ? tcp_packet(kUnitMac, kClientMac, src, dst, sport, dport, payload) : udp_packet(src, dst, sport, dport);
    auto p = parsed(f);
    const std::uint32_t nsrc = rng(), ndst = rng();
    const auto nsport = static_cast<std::uint16_t>(rng()), ndport = static_cast<std::uint16_t>(rng());
    lb::rewrite_destination(f.data(), p, net::Ipv4Addr{ndst}, ndport);
    lb::rewrite_source(f.data(), p, net::Ipv4Addr{nsrc}, nsport);
    const Bytes want = tcp ? tcp_packet(kUnitMac, kClientMac, nsrc, ndst, nsport, ndport, payload)
                           : udp_packet(nsrc, ndst, nsport, ndport);
    if (!tcp) {
      // The incremental update may yield 0xffff where a fresh sum gives 0 (one's complement zero).
      ASSERT_EQ(Bytes(f.begin(), f.begin() + 40), Bytes(want.begin(), want.begin() + 40));
      const std::uint16_t got = static_cast<std::uint16_t>(f[40] << 8 | f[41]);
      const std::uint16_t exp = static_cast<std::uint16_t>(want[40] << 8 | want[41]);
      ASSERT_TRUE(got == exp || (got == 0xffff && exp == 0) || (got == 0 && exp == 0xffff)) << i;
      ASSERT_NE(got, 0) << "a UDP checksum must never become 0 (no checksum)";
    } else {
      ASSERT_EQ(f, want) << "round " << i;
    }
  }
}

TEST(Rewrite, DecrementTtl) {
  Bytes f = tcp_packet(kUnitMac, kClientMac, kClient, kVip, 1, 2, test::pattern(5), 17);
  auto p = parsed(f);
  ASSERT_TRUE(lb::decrement_ttl(f.data(), p));
  EXPECT_EQ(f, tcp_packet(kUnitMac, kClientMac, kClient, kVip, 1, 2, test::pattern(5), 16));
  Bytes last = tcp_packet(kUnitMac, kClientMac, kClient, kVip, 1, 2, test::pattern(5), 1);
  const Bytes before = last;
  auto q = parsed(last);
  EXPECT_FALSE(lb::decrement_ttl(last.data(), q));
  EXPECT_EQ(last, before);
}

TEST(Rewrite, IpipEncapsulationByteForByte) {
  const Bytes original = tcp_packet(kUnitMac, kClientMac, kClient, kVip, 40000, 80);
  Bytes buf(lb::kIpipOverhead, 0xee);
  buf.insert(buf.end(), original.begin(), original.end());
  auto p = parsed(original);
  const std::size_t n = lb::encapsulate_ipip(buf.data(), p, mac(kUnitMac), mac(kBackendMac), net::Ipv4Addr{kUnit},
                                             net::Ipv4Addr{kBackend});
  buf.resize(n);
  const Bytes inner(original.begin() + 14, original.end());
  test::Ipv4Fields outer{.src = kUnit, .dst = kBackend, .proto = 4, .id = 0, .flags_frag = 0x4000};
  EXPECT_EQ(buf, test::ethernet(kBackendMac, kUnitMac, 0x0800, test::ipv4(outer, inner))) << test::to_hex(buf);
}

TEST(Rewrite, IpipFromAVlanTaggedFrameDropsTheTag) {
  test::Ipv4Fields ip{.src = kClient, .dst = kVip, .proto = 6};
  const Bytes inner = test::ipv4(ip, test::tcp(kClient, kVip, 1, 2, 0x02));
  const Bytes original = test::ethernet_vlan(kUnitMac, kClientMac, 100, 0x0800, inner);
  Bytes buf(lb::kIpipOverhead, 0);
  buf.insert(buf.end(), original.begin(), original.end());
  auto p = parsed(original);
  buf.resize(lb::encapsulate_ipip(buf.data(), p, mac(kUnitMac), mac(kBackendMac), net::Ipv4Addr{kUnit},
                                  net::Ipv4Addr{kBackend}));
  test::Ipv4Fields outer{.src = kUnit, .dst = kBackend, .proto = 4, .id = 0, .flags_frag = 0x4000};
  EXPECT_EQ(buf, test::ethernet(kBackendMac, kUnitMac, 0x0800, test::ipv4(outer, inner), false));
}
