// build_udp_frame (dataplane/net/udp.*): the frames the fast path originates (HA adverts on the
// data network), byte for byte against frames.cpp's independent builders, with the UDP checksum
// verified over the pseudo-header by the reference sum.
#include "dataplane/net/udp.hpp"

#include <gtest/gtest.h>

#include <random>

#include "tests/unit/frames.hpp"

using namespace tandem;
using test::Bytes;

namespace {

const test::Mac kSrcMac = {0x02, 0x00, 0x00, 0x00, 0x0a, 0x01};
const test::Mac kDstMac = {0x02, 0x00, 0x00, 0x00, 0x0a, 0x02};
const std::uint32_t kSrc = test::ip("203.0.113.2");
const std::uint32_t kDst = test::ip("203.0.113.3");
constexpr std::uint16_t kPort = 8694;

net::UdpEndpoints endpoints(std::uint16_t sport = kPort, std::uint16_t dport = kPort) {
  return {.src_mac = net::MacAddr{kSrcMac},
          .dst_mac = net::MacAddr{kDstMac},
          .src_ip = net::Ipv4Addr{kSrc},
          .dst_ip = net::Ipv4Addr{kDst},
          .src_port = sport,
          .dst_port = dport};
}

// The frame built into a buffer of `capacity` bytes (filled with 0xee first), cut to the
// returned length; `len` gets that length.
Bytes build(const Bytes& payload, std::size_t& len, std::size_t capacity = 2048, const net::UdpEndpoints& e = endpoints()) {
  Bytes buf(capacity, 0xee);
  len = net::build_udp_frame(buf.data(), capacity, e, payload);
  EXPECT_TRUE(std::all_of(buf.begin() + static_cast<std::ptrdiff_t>(len), buf.end(), [](std::uint8_t b) { return b == 0xee; }))
      << "nothing written after the frame";
  buf.resize(len);
  return buf;
}

// What the frame must be, from frames.cpp: DF, TTL 255, IP id 0, checksums filled in, padded to 60.
Bytes expected(const Bytes& payload, std::uint16_t sport = kPort, std::uint16_t dport = kPort) {
  test::Ipv4Fields ip{.src = kSrc, .dst = kDst, .proto = 17, .ttl = 255, .id = 0, .flags_frag = 0x4000};
  return test::ethernet(kDstMac, kSrcMac, 0x0800, test::ipv4(ip, test::udp(kSrc, kDst, sport, dport, payload)));
}

std::uint16_t be16(const Bytes& b, std::size_t at) { return static_cast<std::uint16_t>(b[at] << 8 | b[at + 1]); }

// The reference sum over pseudo-header + UDP datagram (as it is in the frame): 0 when the
// checksum in it is right.
std::uint16_t udp_verify(const Bytes& frame) {
  const std::size_t udp_len = be16(frame, 14 + 20 + 4);
  Bytes b = {frame.begin() + 26, frame.begin() + 34};  // source and destination address
  b.push_back(0);
  b.push_back(17);
  b.push_back(static_cast<std::uint8_t>(udp_len >> 8));
  b.push_back(static_cast<std::uint8_t>(udp_len));
  b.insert(b.end(), frame.begin() + 34, frame.begin() + 34 + static_cast<std::ptrdiff_t>(udp_len));
  return test::ref_checksum(b);
}

}  // namespace

TEST(UdpFrame, EveryByteOfAFrame) {
  const Bytes payload = test::pattern(100, 9);
  std::size_t len = 0;
  const Bytes f = build(payload, len);
  ASSERT_EQ(len, 14u + 20 + 8 + 100);
  EXPECT_EQ(f, expected(payload)) << test::to_hex(f);
  // The same, field by field.
  EXPECT_EQ(Bytes(f.begin(), f.begin() + 6), Bytes(kDstMac.begin(), kDstMac.end()));
  EXPECT_EQ(Bytes(f.begin() + 6, f.begin() + 12), Bytes(kSrcMac.begin(), kSrcMac.end()));
  EXPECT_EQ(be16(f, 12), 0x0800);
  EXPECT_EQ(f[14], 0x45) << "IPv4, no options";
  EXPECT_EQ(f[15], 0) << "TOS";
  EXPECT_EQ(be16(f, 16), 20 + 8 + 100) << "total length";
  EXPECT_EQ(be16(f, 18), 0) << "id";
  EXPECT_EQ(be16(f, 20), 0x4000) << "DF, no fragment offset";
  EXPECT_EQ(f[22], 255) << "TTL";
  EXPECT_EQ(f[23], 17) << "UDP";
  EXPECT_EQ(test::ref_checksum(f.data() + 14, 20), 0) << "header checksum";
  EXPECT_EQ(Bytes(f.begin() + 26, f.begin() + 30), test::hex("cb 00 71 02"));
  EXPECT_EQ(Bytes(f.begin() + 30, f.begin() + 34), test::hex("cb 00 71 03"));
  EXPECT_EQ(be16(f, 34), kPort);
  EXPECT_EQ(be16(f, 36), kPort);
  EXPECT_EQ(be16(f, 38), 8 + 100) << "UDP length";
  EXPECT_NE(be16(f, 40), 0) << "a checksum is sent";
  EXPECT_EQ(udp_verify(f), 0) << "UDP checksum over the pseudo-header";
  EXPECT_EQ(Bytes(f.begin() + 42, f.end()), payload);
}

TEST(UdpFrame, DistinctPortsAndAnEmptyPayload) {
  std::size_t len = 0;
  const Bytes f = build({}, len, 2048, endpoints(40000, 53));
  ASSERT_EQ(len, 60u) << "padded to the Ethernet minimum";
  EXPECT_EQ(f, expected({}, 40000, 53)) << test::to_hex(f);
  EXPECT_EQ(be16(f, 16), 28);
  EXPECT_EQ(be16(f, 38), 8);
  EXPECT_EQ(udp_verify(f), 0);
  EXPECT_EQ(Bytes(f.begin() + 42, f.end()), Bytes(18, 0)) << "zero padding";
}

TEST(UdpFrame, SmallPayloadsArePaddedWithZerosOutsideTheDatagram) {
  for (std::size_t n = 0; n <= 20; ++n) {
    const Bytes payload = test::pattern(n, static_cast<std::uint8_t>(n));
    std::size_t len = 0;
    const Bytes f = build(payload, len);
    ASSERT_EQ(len, std::max<std::size_t>(60, 42 + n)) << n;
    EXPECT_EQ(f, expected(payload)) << n << ": " << test::to_hex(f);
    EXPECT_EQ(be16(f, 16), 28 + n) << "the padding is not in the IP length";
    EXPECT_EQ(be16(f, 38), 8 + n) << "nor in the UDP length";
    EXPECT_EQ(udp_verify(f), 0) << n;
    for (std::size_t i = 42 + n; i < f.size(); ++i) EXPECT_EQ(f[i], 0) << n << " at " << i;
  }
}

TEST(UdpFrame, OneBytePayloadHasTheRightChecksum) {
  // An odd length: the last byte is summed as the high byte of a word padded with zero.
  for (const std::uint8_t b : {0x00, 0x01, 0x7f, 0x80, 0xff}) {
    std::size_t len = 0;
    const Bytes f = build({b}, len);
    ASSERT_EQ(len, 60u);
    EXPECT_EQ(f, expected({b})) << test::to_hex(f);
    EXPECT_EQ(udp_verify(f), 0) << int(b);
    EXPECT_EQ(f[42], b);
  }
  // Odd lengths over the padding too.
  for (const std::size_t n : {19u, 21u, 101u, 1471u}) {
    const Bytes payload = test::pattern(n, 3);
    std::size_t len = 0;
    const Bytes f = build(payload, len);
    EXPECT_EQ(f, expected(payload)) << n;
    EXPECT_EQ(udp_verify(f), 0) << n;
  }
}

TEST(UdpFrame, AChecksumThatComputesToZeroIsSentAsAllOnes) {
  // Two payload bytes set to the checksum of the datagram with them zero make the one's
  // complement sum 0xffff, whose complement is 0: "no checksum" in UDP, so 0xffff is sent.
  Bytes payload = test::pattern(10, 5);
  payload[4] = payload[5] = 0;
  std::size_t len = 0;
  const Bytes first = build(payload, len);
  const std::uint16_t c = be16(first, 40);
  payload[4] = static_cast<std::uint8_t>(c >> 8);
  payload[5] = static_cast<std::uint8_t>(c);
  const Bytes f = build(payload, len);
  EXPECT_EQ(be16(f, 40), 0xffff) << test::to_hex(f);
  EXPECT_EQ(udp_verify(f), 0) << "0xffff is a correct checksum";
  EXPECT_EQ(f, expected(payload));
}

TEST(UdpFrame, TheChecksumIsNeverZero) {
  std::mt19937 rng(8694);
  for (int round = 0; round < 20000; ++round) {
    Bytes payload(rng() % 80);
    for (auto& b : payload) b = static_cast<std::uint8_t>(rng());
    net::UdpEndpoints e = endpoints(static_cast<std::uint16_t>(rng()), static_cast<std::uint16_t>(rng()));
    e.src_ip.value = static_cast<std::uint32_t>(rng());
    e.dst_ip.value = static_cast<std::uint32_t>(rng());
    std::uint8_t buf[128];
    const std::size_t len = net::build_udp_frame(buf, sizeof buf, e, payload);
    ASSERT_EQ(len, std::max<std::size_t>(60, 42 + payload.size()));
    ASSERT_NE(buf[40] << 8 | buf[41], 0) << round;
    ASSERT_EQ(udp_verify(Bytes(buf, buf + len)), 0) << round;
    ASSERT_EQ(test::ref_checksum(buf + 14, 20), 0) << round;
  }
}

TEST(UdpFrame, TooSmallABufferGivesZeroAndWritesNothing) {
  const Bytes payload = test::pattern(100);
  std::size_t len = 0;
  EXPECT_EQ(build(payload, len, 142).size(), 142u) << "exactly enough";
  for (const std::size_t capacity : {0u, 14u, 42u, 141u}) {
    Bytes buf(capacity + 1, 0xee);  // one byte more than the function is told it has
    EXPECT_EQ(net::build_udp_frame(buf.data(), capacity, endpoints(), payload), 0u) << capacity;
    EXPECT_EQ(buf, Bytes(capacity + 1, 0xee)) << capacity;
  }
  // A small payload needs room for the padding too.
  EXPECT_EQ(build({1, 2, 3}, len, 60).size(), 60u);
  Bytes buf(60, 0xee);
  EXPECT_EQ(net::build_udp_frame(buf.data(), 59, endpoints(), Bytes{1, 2, 3}), 0u);
  EXPECT_EQ(buf, Bytes(60, 0xee));
}

TEST(UdpFrame, TheLargestDatagramFitsOneMoreByteDoesNot) {
  const std::size_t largest = 65535 - 20 - 8;
  std::size_t len = 0;
  const Bytes f = build(test::pattern(largest), len, 70000);
  ASSERT_EQ(len, 14 + 65535u);
  EXPECT_EQ(be16(f, 16), 65535);
  EXPECT_EQ(be16(f, 38), 65535 - 20);
  EXPECT_EQ(udp_verify(f), 0);
  EXPECT_EQ(build(test::pattern(largest + 1), len, 70000).size(), 0u);
}
