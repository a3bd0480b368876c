// net::parse_packet: every accepted shape and every rejection reason.
#include <gtest/gtest.h>

#include <random>

#include "dataplane/net/packet.hpp"
#include "tests/unit/frames.hpp"

using namespace tandem;
using net::ParseError;
using test::Bytes;

namespace {

const test::Mac kA = {0x02, 0, 0, 0, 0, 1};
const test::Mac kB = {0x02, 0, 0, 0, 0, 2};
const std::uint32_t kClient = test::ip("198.51.100.7");
const std::uint32_t kVip = test::ip("203.0.113.10");

Bytes tcp_frame(std::uint8_t flags = 0x02, const Bytes& payload = {}) {
  test::Ipv4Fields ip{.src = kClient, .dst = kVip, .proto = 6, .ttl = 61};
  return test::ethernet(kA, kB, 0x0800, test::ipv4(ip, test::tcp(kClient, kVip, 40000, 80, flags, payload)));
}

ParseError parse(const Bytes& f, net::ParsedPacket& p) {
  return net::parse_packet(f.data(), static_cast<std::uint32_t>(f.size()), p);
}

}  // namespace

TEST(ParsePacket, TcpSyn) {
  const Bytes f = tcp_frame(0x02);
  net::ParsedPacket p;
  ASSERT_EQ(parse(f, p), ParseError::kNone);
  EXPECT_FALSE(p.vlan);
  EXPECT_EQ(p.l3, 14);
  EXPECT_EQ(p.ihl, 20);
  EXPECT_EQ(p.ip_len, 40);
  EXPECT_EQ(p.l4, 34);
  EXPECT_EQ(p.proto, 6);
  EXPECT_EQ(p.ttl, 61);
  EXPECT_EQ(p.src.value, kClient);
  EXPECT_EQ(p.dst.value, kVip);
  EXPECT_EQ(p.sport, 40000);
  EXPECT_EQ(p.dport, 80);
  EXPECT_EQ(p.tcp_flags, net::TcpFlags::kSyn);
}

TEST(ParsePacket, UdpAndIcmpEcho) {
  test::Ipv4Fields ip{.src = kClient, .dst = kVip, .proto = 17};
  Bytes f = test::ethernet(kA, kB, 0x0800, test::ipv4(ip, test::udp(kClient, kVip, 5353, 53, test::pattern(11))));
  net::ParsedPacket p;
  ASSERT_EQ(parse(f, p), ParseError::kNone);
  EXPECT_EQ(p.sport, 5353);
  EXPECT_EQ(p.dport, 53);

  ip.proto = 1;
  f = test::ethernet(kA, kB, 0x0800, test::ipv4(ip, test::icmp_echo(8, 0x1234, 7, test::pattern(8))));
  ASSERT_EQ(parse(f, p), ParseError::kNone);
  EXPECT_EQ(p.icmp_type, 8);
  EXPECT_EQ(p.sport, 0x1234);
  EXPECT_EQ(p.dport, 0x1234);
}

TEST(ParsePacket, VlanTaggedFrame) {
  test::Ipv4Fields ip{.src = kClient, .dst = kVip, .proto = 6};
  const Bytes f = test::ethernet_vlan(kA, kB, 0x2064, 0x0800, test::ipv4(ip, test::tcp(kClient, kVip, 1, 2, 0x10)));
  net::ParsedPacket p;
  ASSERT_EQ(parse(f, p), ParseError::kNone);
  EXPECT_TRUE(p.vlan);
  EXPECT_EQ(p.vlan_tci, 0x2064);
  EXPECT_EQ(p.l3, 18);
  EXPECT_EQ(p.l4, 38);
  EXPECT_EQ(p.dport, 2);
}

TEST(ParsePacket, IpOptionsMoveTheL4Header) {
  test::Ipv4Fields ip{.src = kClient, .dst = kVip, .proto = 6, .options = test::hex("01 01 01 00")};
  const Bytes f = test::ethernet(kA, kB, 0x0800, test::ipv4(ip, test::tcp(kClient, kVip, 7, 8, 0x02)));
  net::ParsedPacket p;
  ASSERT_EQ(parse(f, p), ParseError::kNone);
  EXPECT_EQ(p.ihl, 24);
  EXPECT_EQ(p.l4, 38);
  EXPECT_EQ(p.sport, 7);
}

TEST(ParsePacket, EveryRejection) {
  net::ParsedPacket p;
  EXPECT_EQ(parse(test::hex("02 00 00 00 00 01 02 00 00 00 00 02 08"), p), ParseError::kTruncatedL2);
  EXPECT_EQ(parse(test::hex("02 00 00 00 00 01 02 00 00 00 00 02 81 00 00"), p), ParseError::kTruncatedL2);
  EXPECT_EQ(parse(test::ethernet(kA, kB, 0x0806, test::pattern(28)), p), ParseError::kNotIpv4);
  EXPECT_EQ(parse(test::ethernet(kA, kB, 0x86dd, test::pattern(60)), p), ParseError::kNotIpv4);

  Bytes f = tcp_frame();
  f[14] = 0x65;  // version 6
  EXPECT_EQ(parse(f, p), ParseError::kIpv4Malformed);
  f = tcp_frame();
  f[14] = 0x44;  // ihl 16 bytes
  EXPECT_EQ(parse(f, p), ParseError::kIpv4Malformed);
  f = tcp_frame();
  f.resize(14 + 19);
  EXPECT_EQ(parse(f, p), ParseError::kIpv4Malformed);
  f = tcp_frame(0x02, test::pattern(30));
  f.resize(f.size() - 1);  // total length beyond the frame
  EXPECT_EQ(parse(f, p), ParseError::kIpv4Malformed);
  f = tcp_frame();
  f[14 + 11] ^= 1;
  EXPECT_EQ(parse(f, p), ParseError::kIpv4BadChecksum);
  EXPECT_EQ(net::parse_packet(f.data(), static_cast<std::uint32_t>(f.size()), p, true), ParseError::kNone)
      << "a checksum the NIC verified is not checked again";

  for (std::uint16_t frag : {0x2000, 0x0001, 0x3fff}) {
    test::Ipv4Fields ip{.src = kClient, .dst = kVip, .proto = 6, .flags_frag = frag};
    EXPECT_EQ(parse(test::ethernet(kA, kB, 0x0800, test::ipv4(ip, test::tcp(kClient, kVip, 1, 2, 2))), p),
              ParseError::kIpv4Fragment);
  }

  test::Ipv4Fields ip{.src = kClient, .dst = kVip, .proto = 6};
  EXPECT_EQ(parse(test::ethernet(kA, kB, 0x0800, test::ipv4(ip, test::pattern(19))), p), ParseError::kL4Truncated);
  Bytes seg = test::tcp(kClient, kVip, 1, 2, 2);
  seg[12] = 4 << 4;  // data offset 16 bytes
  EXPECT_EQ(parse(test::ethernet(kA, kB, 0x0800, test::ipv4(ip, seg)), p), ParseError::kTcpBadOffset);
  seg[12] = 6 << 4;  // 24 bytes, beyond the 20-byte segment
  EXPECT_EQ(parse(test::ethernet(kA, kB, 0x0800, test::ipv4(ip, seg)), p), ParseError::kTcpBadOffset);

  ip.proto = 17;
  EXPECT_EQ(parse(test::ethernet(kA, kB, 0x0800, test::ipv4(ip, test::pattern(7))), p), ParseError::kL4Truncated);
  Bytes dgram = test::udp(kClient, kVip, 1, 2, test::pattern(10));
  dgram[5] = 19;  // UDP length 19 > 18
  EXPECT_EQ(parse(test::ethernet(kA, kB, 0x0800, test::ipv4(ip, dgram)), p), ParseError::kUdpBadLength);
  dgram[5] = 7;
  EXPECT_EQ(parse(test::ethernet(kA, kB, 0x0800, test::ipv4(ip, dgram)), p), ParseError::kUdpBadLength);

  ip.proto = 1;
  EXPECT_EQ(parse(test::ethernet(kA, kB, 0x0800, test::ipv4(ip, test::pattern(7))), p), ParseError::kL4Truncated);
}

TEST(ParsePacket, ReasonsHaveNames) {
  for (int i = 0; i < static_cast<int>(ParseError::kCount); ++i)
    EXPECT_STRNE(net::to_string(static_cast<ParseError>(i)), "unknown");
}

// Random and mutated frames never read outside the buffer (ASan) and whatever parses is
// self-consistent.
TEST(ParsePacket, SurvivesRandomAndMutatedFrames) {
  std::mt19937 rng(77);
  const Bytes seed = tcp_frame(0x12, test::pattern(40));
  for (int round = 0; round < 50000; ++round) {
    Bytes f = seed;
    for (int flips = 1 + rng() % 4; flips > 0; --flips) f[rng() % f.size()] ^= static_cast<std::uint8_t>(1u << (rng() % 8));
    if (rng() % 3 == 0) f.resize(rng() % (f.size() + 1));
    auto* buf = new std::uint8_t[f.size()];
    std::copy(f.begin(), f.end(), buf);
    net::ParsedPacket p;
    if (net::parse_packet(buf, static_cast<std::uint32_t>(f.size()), p) == ParseError::kNone) {
      ASSERT_LE(p.l3 + p.ip_len, f.size());
      ASSERT_LE(p.l4, p.l3 + p.ip_len);
    }
    delete[] buf;
  }
}
