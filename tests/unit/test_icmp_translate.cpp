// ICMP errors across the NAT, byte for byte: every translated frame is compared with the frame
// built directly in its expected form by frames.cpp, whose checksums are computed from scratch
// (the code under test only ever updates them).
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <memory>
#include <random>

#include "dataplane/conntrack/conn_table.hpp"
#include "dataplane/lb/icmp_translate.hpp"
#include "tests/unit/frames.hpp"

using namespace tandem;
using conntrack::ForwardMode;
using test::Bytes;

namespace {

const test::Mac kUnitMac = {0x02, 0, 0, 0, 0, 0x01};
const test::Mac kPeerMac = {0x02, 0, 0, 0, 0, 0x99};
const test::Mac kNewSrcMac = {0x02, 0, 0, 0, 0, 0x11};
const test::Mac kNewDstMac = {0x02, 0, 0, 0, 0, 0x22};
const std::uint32_t kClient = test::ip("198.51.100.7");
const std::uint32_t kVip = test::ip("203.0.113.10");
const std::uint32_t kBackend = test::ip("10.0.1.21");
const std::uint32_t kLocal = test::ip("10.0.1.2");
const std::uint32_t kBackendRouter = test::ip("10.0.1.254");
const std::uint32_t kClientRouter = test::ip("192.0.2.254");
constexpr std::uint16_t kCport = 40000, kVport = 80, kBport = 8080, kLport = 1025;
constexpr std::uint8_t kTcp = 6, kUdp = 17;

conntrack::ConnEntry entry(ForwardMode mode, std::uint8_t proto) {
  conntrack::ConnEntry e;
  e.client_addr = kClient;
  e.vip_addr = kVip;
  e.client_port = kCport;
  e.vip_port = kVport;
  e.backend_addr = kBackend;
  e.backend_port = kBport;
  const bool fullnat = mode == ForwardMode::kFullNat;
  e.local_addr = fullnat ? kLocal : kClient;
  e.local_port = fullnat ? kLport : kCport;
  e.proto = proto;
  e.mode = mode;
  return e;
}

struct Dgram {
  std::uint8_t proto = kUdp;
  std::uint32_t src = 0, dst = 0;
  std::uint16_t sport = 0, dport = 0;
  Bytes options;
  bool udp_checksum = true;
  Bytes payload = test::pattern(40, 3);
  std::uint16_t flags_frag = 0x4000;
};

// The whole IPv4 datagram as its sender sent it.
Bytes datagram(const Dgram& d) {
  const Bytes l4 = d.proto == kTcp ? test::tcp(d.src, d.dst, d.sport, d.dport, 0x18, d.payload)
                                   : test::udp(d.src, d.dst, d.sport, d.dport, d.payload, d.udp_checksum);
  test::Ipv4Fields f{.src = d.src, .dst = d.dst, .proto = d.proto, .ttl = 63, .id = 0x4242,
                     .flags_frag = d.flags_frag, .options = d.options};
  return test::ipv4(f, l4);
}

Bytes head(const Bytes& b, std::size_t n) {
  return Bytes(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(std::min(n, b.size())));
}

// An ICMP error frame from `src` to `dst` quoting `quote`.
Bytes icmp_frame(std::uint32_t src, std::uint32_t dst, std::uint8_t type, std::uint8_t code, std::uint32_t rest,
                 const Bytes& quote) {
  test::Ipv4Fields f{.src = src, .dst = dst, .proto = 1, .ttl = 60, .id = 0x77, .flags_frag = 0};
  return test::ethernet(kUnitMac, kPeerMac, 0x0800, test::ipv4(f, test::icmp_message(type, code, rest, quote)));
}

net::ParsedPacket parsed(const Bytes& f) {
  net::ParsedPacket p;
  EXPECT_EQ(net::parse_packet(f.data(), static_cast<std::uint32_t>(f.size()), p), net::ParseError::kNone);
  return p;
}

lb::IcmpQuote quote_of(const Bytes& f, const net::ParsedPacket& p) {
  lb::IcmpQuote q;
  EXPECT_EQ(lb::parse_icmp_quote(f.data(), static_cast<std::uint32_t>(f.size()), p, q), lb::QuoteError::kNone);
  return q;
}

lb::QuoteError quote_error(const Bytes& f) {
  net::ParsedPacket p;
  if (net::parse_packet(f.data(), static_cast<std::uint32_t>(f.size()), p) != net::ParseError::kNone) {
    ADD_FAILURE() << "outer packet does not parse";
    return lb::QuoteError::kCount;
  }
  lb::IcmpQuote q;
  q.l3 = 0xabcd;  // a sentinel: an error leaves `out` alone
  const lb::QuoteError e = lb::parse_icmp_quote(f.data(), static_cast<std::uint32_t>(f.size()), p, q);
  if (e != lb::QuoteError::kNone) {
    EXPECT_EQ(q.l3, 0xabcd);
  }
  return e;
}

std::uint16_t be16(const Bytes& b, std::size_t at) { return static_cast<std::uint16_t>(b[at] << 8 | b[at + 1]); }
std::uint32_t be32(const Bytes& b, std::size_t at) {
  return std::uint32_t{be16(b, at)} << 16 | be16(b, at + 2);
}

// Both the outer IPv4 header's and the ICMP message's checksums verify from scratch.
void expect_outer_checksums(const Bytes& f, const net::ParsedPacket& p) {
  EXPECT_EQ(test::ref_checksum(f.data() + p.l3, p.ihl), 0) << "IPv4 header";
  EXPECT_EQ(test::ref_checksum(f.data() + p.l4, p.ip_len - p.ihl), 0) << "ICMP message";
}

}  // namespace

TEST(IcmpTranslate, IsIcmpErrorTakesTheTypesThatQuoteADatagram) {
  for (int type = 0; type < 256; ++type) {
    net::ParsedPacket p;
    p.proto = 1;
    p.icmp_type = static_cast<std::uint8_t>(type);
    EXPECT_EQ(lb::is_icmp_error(p), type == 3 || type == 11 || type == 12) << type;
  }
  net::ParsedPacket tcp;
  tcp.proto = kTcp;
  tcp.icmp_type = 3;
  EXPECT_FALSE(lb::is_icmp_error(tcp));
}

TEST(IcmpTranslate, NatPortUnreachableQuotingUdpGoesBackToTheClientFromTheVip) {
  // The backend's port is closed: it answers the packet the unit sent it (client -> backend).
  const Bytes sent = datagram({.proto = kUdp, .src = kClient, .dst = kBackend, .sport = kCport, .dport = kBport});
  Bytes f = icmp_frame(kBackend, kClient, 3, 3, 0, sent);
  auto p = parsed(f);
  auto q = quote_of(f, p);
  EXPECT_EQ(q.l3, 14 + 20 + 8);
  EXPECT_EQ(q.ihl, 20);
  EXPECT_EQ(q.l4, 14 + 20 + 8 + 20);
  EXPECT_EQ(q.l4_csum, q.l4 + 6);
  EXPECT_EQ(q.len, sent.size());
  const auto e = entry(ForwardMode::kNat, kUdp);
  EXPECT_EQ(lb::icmp_lookup_key(q), e.reply_key());

  ASSERT_TRUE(lb::translate_icmp_for_client(f.data(), p, q, e));
  const Bytes client_sent = datagram({.proto = kUdp, .src = kClient, .dst = kVip, .sport = kCport, .dport = kVport});
  EXPECT_EQ(f, icmp_frame(kVip, kClient, 3, 3, 0, client_sent)) << test::to_hex(f);
  expect_outer_checksums(f, p);
  EXPECT_EQ(p.src.value, kVip);
  EXPECT_EQ(p.dst.value, kClient);
  EXPECT_EQ(q.key(), e.original_key());
}

TEST(IcmpTranslate, FullNatFragNeededQuotingEightBytesOfTcp) {
  // A router between the unit and the backend cannot forward local -> backend without
  // fragmenting; it quotes the header and 8 bytes of TCP (no TCP checksum), as RFC 792 allows.
  const Dgram d{.proto = kTcp, .src = kLocal, .dst = kBackend, .sport = kLport, .dport = kBport,
                .payload = test::pattern(1400)};
  Bytes f = icmp_frame(kBackendRouter, kLocal, 3, 4, 1400, head(datagram(d), 28));
  auto p = parsed(f);
  auto q = quote_of(f, p);
  EXPECT_EQ(q.l4_csum, 0) << "the TCP checksum is not in the quote";
  const auto e = entry(ForwardMode::kFullNat, kTcp);
  EXPECT_EQ(lb::icmp_lookup_key(q), e.reply_key());

  ASSERT_TRUE(lb::translate_icmp_for_client(f.data(), p, q, e));
  const Dgram want{.proto = kTcp, .src = kClient, .dst = kVip, .sport = kCport, .dport = kVport,
                   .payload = test::pattern(1400)};
  EXPECT_EQ(f, icmp_frame(kVip, kClient, 3, 4, 1400, head(datagram(want), 28))) << test::to_hex(f);
  expect_outer_checksums(f, p);
}

TEST(IcmpTranslate, TimeExceededQuotingUdpWithoutChecksumKeepsItZero) {
  const Dgram d{.proto = kUdp, .src = kClient, .dst = kBackend, .sport = kCport, .dport = kBport,
                .udp_checksum = false};
  Bytes f = icmp_frame(kBackendRouter, kClient, 11, 0, 0, head(datagram(d), 36));
  auto p = parsed(f);
  auto q = quote_of(f, p);
  ASSERT_NE(q.l4_csum, 0);
  ASSERT_TRUE(lb::translate_icmp_for_client(f.data(), p, q, entry(ForwardMode::kNat, kUdp)));
  const Dgram want{.proto = kUdp, .src = kClient, .dst = kVip, .sport = kCport, .dport = kVport, .udp_checksum = false};
  EXPECT_EQ(f, icmp_frame(kVip, kClient, 11, 0, 0, head(datagram(want), 36))) << test::to_hex(f);
  EXPECT_EQ(be16(f, q.l4_csum), 0);
  expect_outer_checksums(f, p);
}

TEST(IcmpTranslate, QuoteWithIpOptionsAndTheTcpChecksumFullNatToTheBackend) {
  // The client's side cannot deliver VIP -> client (the unit's translation of the backend's
  // reply); the error comes to the VIP and goes on to the backend as local -> backend.
  const Bytes options = {0x94, 0x04, 0x00, 0x00, 0x01, 0x01, 0x01, 0x00};  // router alert, NOPs, EOL
  const Dgram d{.proto = kTcp, .src = kVip, .dst = kClient, .sport = kVport, .dport = kCport, .options = options};
  Bytes f = icmp_frame(kClientRouter, kVip, 3, 1, 0, head(datagram(d), 28 + 20 + 12));
  auto p = parsed(f);
  auto q = quote_of(f, p);
  EXPECT_EQ(q.ihl, 28);
  EXPECT_EQ(q.l4_csum, q.l4 + 16);
  const auto e = entry(ForwardMode::kFullNat, kTcp);
  EXPECT_EQ(lb::icmp_lookup_key(q), e.original_key());

  ASSERT_TRUE(lb::translate_icmp_for_backend(f.data(), p, q, e));
  const Dgram want{.proto = kTcp, .src = kBackend, .dst = kLocal, .sport = kBport, .dport = kLport, .options = options};
  EXPECT_EQ(f, icmp_frame(kLocal, kBackend, 3, 1, 0, head(datagram(want), 28 + 20 + 12))) << test::to_hex(f);
  expect_outer_checksums(f, p);
  EXPECT_EQ(q.key(), e.reply_key()) << "what the backend sent";
}

TEST(IcmpTranslate, NatToTheBackendKeepsTheReporterAsSource) {
  const Dgram d{.proto = kUdp, .src = kVip, .dst = kClient, .sport = kVport, .dport = kCport};
  Bytes f = icmp_frame(kClient, kVip, 3, 3, 0, datagram(d));
  auto p = parsed(f);
  auto q = quote_of(f, p);
  const auto e = entry(ForwardMode::kNat, kUdp);
  EXPECT_EQ(lb::icmp_lookup_key(q), e.original_key());
  ASSERT_TRUE(lb::translate_icmp_for_backend(f.data(), p, q, e));
  const Dgram want{.proto = kUdp, .src = kBackend, .dst = kClient, .sport = kBport, .dport = kCport};
  EXPECT_EQ(f, icmp_frame(kClient, kBackend, 3, 3, 0, datagram(want))) << test::to_hex(f);
  expect_outer_checksums(f, p);
}

TEST(IcmpTranslate, NatToTheClientWithTcpChecksumInTheQuote) {
  const Dgram d{.proto = kTcp, .src = kClient, .dst = kBackend, .sport = kCport, .dport = kBport};
  Bytes f = icmp_frame(kBackendRouter, kClient, 3, 4, 1280, datagram(d));
  auto p = parsed(f);
  auto q = quote_of(f, p);
  ASSERT_TRUE(lb::translate_icmp_for_client(f.data(), p, q, entry(ForwardMode::kNat, kTcp)));
  const Dgram want{.proto = kTcp, .src = kClient, .dst = kVip, .sport = kCport, .dport = kVport};
  EXPECT_EQ(f, icmp_frame(kVip, kClient, 3, 4, 1280, datagram(want))) << test::to_hex(f);
}

TEST(IcmpTranslate, FullNatToTheBackendFromVlanTaggedFrame) {
  const Dgram d{.proto = kUdp, .src = kVip, .dst = kClient, .sport = kVport, .dport = kCport};
  test::Ipv4Fields outer{.src = kClientRouter, .dst = kVip, .proto = 1, .flags_frag = 0};
  auto frame = [&](const Bytes& quote) {
    return test::ethernet_vlan(kUnitMac, kPeerMac, 7, 0x0800, test::ipv4(outer, test::icmp_message(11, 0, 0, quote)));
  };
  Bytes f = frame(datagram(d));
  auto p = parsed(f);
  auto q = quote_of(f, p);
  EXPECT_EQ(q.l3, 18 + 20 + 8);
  ASSERT_TRUE(lb::translate_icmp_for_backend(f.data(), p, q, entry(ForwardMode::kFullNat, kUdp)));
  const Dgram want{.proto = kUdp, .src = kBackend, .dst = kLocal, .sport = kBport, .dport = kLport};
  outer.src = kLocal;
  outer.dst = kBackend;
  EXPECT_EQ(f, frame(datagram(want)));
}

TEST(IcmpTranslate, DsrAndTunnelEntriesAreNotTranslated) {
  const Dgram d{.proto = kUdp, .src = kVip, .dst = kClient, .sport = kVport, .dport = kCport};
  for (const ForwardMode mode : {ForwardMode::kDsr, ForwardMode::kTunnel}) {
    Bytes f = icmp_frame(kClientRouter, kVip, 3, 3, 0, datagram(d));
    const Bytes before = f;
    auto p = parsed(f);
    auto q = quote_of(f, p);
    EXPECT_FALSE(lb::translate_icmp_for_backend(f.data(), p, q, entry(mode, kUdp)));
    EXPECT_FALSE(lb::translate_icmp_for_client(f.data(), p, q, entry(mode, kUdp)));
    EXPECT_EQ(f, before);
    EXPECT_EQ(p.dst.value, kVip);
    EXPECT_EQ(q.src.value, kVip);
  }
}

TEST(IcmpTranslate, LookupKeyFindsTheConnectionInEachDirection) {
  conntrack::ConnTable table(conntrack::ConnTableConfig{.capacity = 16});
  for (const ForwardMode mode : {ForwardMode::kNat, ForwardMode::kFullNat}) {
    const auto e = entry(mode, kTcp);
    const auto ins = table.insert(e.original_key(), e.reply_key(), {.mode = mode}, 0);
    ASSERT_EQ(ins.status, conntrack::InsertStatus::kInserted);

    // To the client: about what the unit sent the backend.
    const std::uint32_t src = mode == ForwardMode::kFullNat ? kLocal : kClient;
    const std::uint16_t sport = mode == ForwardMode::kFullNat ? kLport : kCport;
    const Dgram sent{.proto = kTcp, .src = src, .dst = kBackend, .sport = sport, .dport = kBport};
    const Bytes to_client = icmp_frame(kBackendRouter, src, 3, 4, 1400, head(datagram(sent), 28));
    auto p = parsed(to_client);
    auto hit = table.lookup(lb::icmp_lookup_key(quote_of(to_client, p)));
    ASSERT_TRUE(hit);
    EXPECT_EQ(hit.entry, ins.entry);
    EXPECT_EQ(hit.dir, conntrack::FlowDir::kReply);

    // To the backend: about what the unit sent the client.
    const Dgram replied{.proto = kTcp, .src = kVip, .dst = kClient, .sport = kVport, .dport = kCport};
    const Bytes to_backend = icmp_frame(kClientRouter, kVip, 3, 4, 1400, head(datagram(replied), 28));
    p = parsed(to_backend);
    hit = table.lookup(lb::icmp_lookup_key(quote_of(to_backend, p)));
    ASSERT_TRUE(hit);
    EXPECT_EQ(hit.entry, ins.entry);
    EXPECT_EQ(hit.dir, conntrack::FlowDir::kOriginal);
    table.erase(ins.entry);
  }
}

TEST(IcmpTranslate, EveryMalformedQuoteClassHasItsError) {
  const Bytes udp = datagram({.proto = kUdp, .src = kClient, .dst = kBackend, .sport = kCport, .dport = kBport});
  auto with = [&](std::size_t at, std::uint8_t v) {
    Bytes b = udp;
    b[at] = v;
    return b;
  };
  using lb::QuoteError;
  EXPECT_EQ(quote_error(icmp_frame(kBackend, kClient, 3, 3, 0, udp)), QuoteError::kNone);

  // Not an ICMP error at all.
  test::Ipv4Fields echo_ip{.src = kClient, .dst = kVip, .proto = 1};
  EXPECT_EQ(quote_error(test::ethernet(kUnitMac, kPeerMac, 0x0800, test::ipv4(echo_ip, test::icmp_echo(8, 1, 1, udp)))),
            QuoteError::kNotIcmpError);
  EXPECT_EQ(quote_error(icmp_frame(kBackend, kClient, 4, 0, 0, udp)), QuoteError::kNotIcmpError) << "source quench";
  EXPECT_EQ(quote_error(icmp_frame(kBackend, kClient, 5, 0, 0, udp)), QuoteError::kNotIcmpError) << "redirect";
  test::Ipv4Fields tcp_ip{.src = kClient, .dst = kVip, .proto = kTcp};
  const Bytes syn = test::ipv4(tcp_ip, test::tcp(kClient, kVip, 1, 2, 0x02));
  EXPECT_EQ(quote_error(test::ethernet(kUnitMac, kPeerMac, 0x0800, syn)), QuoteError::kNotIcmpError);

  // Shorter than an IPv4 header, or than its own IHL.
  EXPECT_EQ(quote_error(icmp_frame(kBackend, kClient, 3, 3, 0, {})), QuoteError::kTruncated);
  EXPECT_EQ(quote_error(icmp_frame(kBackend, kClient, 3, 3, 0, head(udp, 19))), QuoteError::kTruncated);
  EXPECT_EQ(quote_error(icmp_frame(kBackend, kClient, 3, 3, 0, head(with(0, 0x4f), 59))), QuoteError::kTruncated);

  // Version or IHL wrong.
  EXPECT_EQ(quote_error(icmp_frame(kBackend, kClient, 3, 3, 0, with(0, 0x65))), QuoteError::kMalformed);
  EXPECT_EQ(quote_error(icmp_frame(kBackend, kClient, 3, 3, 0, with(0, 0x44))), QuoteError::kMalformed);
  EXPECT_EQ(quote_error(icmp_frame(kBackend, kClient, 3, 3, 0, with(0, 0x40))), QuoteError::kMalformed);

  // ICMP in ICMP, and other protocols.
  test::Ipv4Fields icmp_ip{.src = kClient, .dst = kBackend, .proto = 1};
  const Bytes echo = test::ipv4(icmp_ip, test::icmp_echo(8, 1, 1, test::pattern(8)));
  EXPECT_EQ(quote_error(icmp_frame(kBackend, kClient, 3, 3, 0, echo)), QuoteError::kNotTcpUdp);
  EXPECT_EQ(quote_error(icmp_frame(kBackend, kClient, 3, 3, 0, with(9, 132))), QuoteError::kNotTcpUdp) << "SCTP";

  // Fewer than 8 bytes of L4, even with Ethernet padding after the datagram.
  EXPECT_EQ(quote_error(icmp_frame(kBackend, kClient, 3, 3, 0, head(udp, 27))), QuoteError::kL4Truncated);
  EXPECT_EQ(quote_error(icmp_frame(kBackend, kClient, 3, 3, 0, head(udp, 20))), QuoteError::kL4Truncated);
  Bytes padded = icmp_frame(kBackend, kClient, 3, 3, 0, head(udp, 24));
  padded.resize(padded.size() + 16, 0);
  EXPECT_EQ(quote_error(padded), QuoteError::kL4Truncated);

  // A non-first fragment has no ports; a first fragment does.
  const Bytes later = datagram({.proto = kUdp, .src = kClient, .dst = kBackend, .sport = kCport, .dport = kBport,
                                .flags_frag = 0x2000 | 185});
  EXPECT_EQ(quote_error(icmp_frame(kBackend, kClient, 3, 3, 0, later)), QuoteError::kFragment);
  const Bytes last = datagram({.proto = kUdp, .src = kClient, .dst = kBackend, .sport = kCport, .dport = kBport,
                               .flags_frag = 185});
  EXPECT_EQ(quote_error(icmp_frame(kBackend, kClient, 3, 3, 0, last)), QuoteError::kFragment);
  const Bytes first = datagram({.proto = kUdp, .src = kClient, .dst = kBackend, .sport = kCport, .dport = kBport,
                                .flags_frag = 0x2000});
  EXPECT_EQ(quote_error(icmp_frame(kBackend, kClient, 3, 3, 0, first)), QuoteError::kNone);

  for (int e = 0; e <= static_cast<int>(QuoteError::kCount); ++e)
    EXPECT_STRNE(lb::to_string(static_cast<QuoteError>(e)), "") << e;
  EXPECT_STREQ(lb::to_string(QuoteError::kFragment), "quote_fragment");
}

TEST(IcmpTranslate, QuotedChecksumIsKeptOnlyWithinCaptureAndQuotedLength) {
  const Bytes tcp = datagram({.proto = kTcp, .src = kClient, .dst = kBackend, .sport = kCport, .dport = kBport});
  auto csum_of = [](const Bytes& quote) {
    const Bytes f = icmp_frame(kBackend, kClient, 3, 3, 0, quote);
    net::ParsedPacket p = parsed(f);
    return quote_of(f, p);
  };
  EXPECT_EQ(csum_of(head(tcp, 37)).l4_csum, 0);
  const auto q = csum_of(head(tcp, 38));
  EXPECT_EQ(q.l4_csum, q.l4 + 16);
  // The quoted total length says 28 bytes (mangled, or the segment really ended there): bytes
  // after it are not the checksum, though captured.
  Bytes short_len = tcp;
  short_len[2] = 0;
  short_len[3] = 28;
  EXPECT_EQ(csum_of(short_len).l4_csum, 0);
  EXPECT_EQ(csum_of(short_len).len, tcp.size()) << "the capture itself is still all quoted";
}

TEST(IcmpTranslate, RandomQuoteRewritesMatchFramesBuiltFromScratch) {
  std::mt19937 rng(11);
  auto rnd = [&rng] { return static_cast<std::uint32_t>(rng()); };
  for (int i = 0; i < 4000; ++i) {
    Dgram d{.proto = rnd() % 2 ? kTcp : kUdp, .src = rnd(), .dst = rnd(),
            .sport = static_cast<std::uint16_t>(rnd()), .dport = static_cast<std::uint16_t>(rnd())};
    d.options = test::pattern((rnd() % 11) * 4, static_cast<std::uint8_t>(i));
    d.udp_checksum = rnd() % 4 != 0;
    d.payload = test::pattern(rnd() % 600, static_cast<std::uint8_t>(i * 3));
    const std::size_t ihl = 20 + d.options.size();
    const std::size_t full = datagram(d).size();
    const std::size_t n = ihl + 8 + rnd() % (full - ihl - 8 + 1);
    const std::uint32_t osrc = rnd(), odst = rnd();
    Bytes f = icmp_frame(osrc, odst, 3, 3, 0, head(datagram(d), n));
    auto p = parsed(f);
    auto q = quote_of(f, p);

    Dgram want = d;
    want.src = rnd();
    want.dst = rnd();
    want.sport = static_cast<std::uint16_t>(rnd());
    want.dport = static_cast<std::uint16_t>(rnd());
    if (rnd() % 2) {
      lb::rewrite_quote_source(f.data(), p, q, net::Ipv4Addr{want.src}, want.sport);
      lb::rewrite_quote_destination(f.data(), p, q, net::Ipv4Addr{want.dst}, want.dport);
    } else {
      lb::rewrite_quote_destination(f.data(), p, q, net::Ipv4Addr{want.dst}, want.dport);
      lb::rewrite_quote_source(f.data(), p, q, net::Ipv4Addr{want.src}, want.sport);
    }
    Bytes quote = head(datagram(want), n);
    // Half a TCP checksum quoted: it cannot be updated, so it stays as the sender wrote it.
    if (d.proto == kTcp && n == ihl + 17) quote[n - 1] = datagram(d)[n - 1];
    ASSERT_EQ(f, icmp_frame(osrc, odst, 3, 3, 0, quote)) << "round " << i << "\n" << test::to_hex(f);
    ASSERT_EQ(q.key(), (conntrack::FlowKey{.src_addr = want.src, .dst_addr = want.dst, .src_port = want.sport,
                                           .dst_port = want.dport, .proto = d.proto}));
  }
}

TEST(IcmpTranslate, FragNeededFieldByField) {
  const Dgram d{.proto = kTcp, .src = kClient, .dst = kVip, .sport = kCport, .dport = kVport,
                .payload = test::pattern(1460)};
  const Bytes original = test::ethernet(kUnitMac, kPeerMac, 0x0800, datagram(d));
  ASSERT_EQ(original.size(), 14u + 1500u);
  Bytes f = original;
  const auto p = parsed(f);
  ASSERT_TRUE(lb::may_send_icmp_error(f.data(), p));
  ASSERT_TRUE(lb::dont_fragment(f.data(), p));
  const std::size_t n = lb::build_frag_needed(f.data(), f.size(), p, 1480, net::Ipv4Addr{kVip},
                                              net::MacAddr{kNewSrcMac}, net::MacAddr{kNewDstMac});
  ASSERT_EQ(n, 14u + 576u);
  f.resize(n);

  EXPECT_EQ(Bytes(f.begin(), f.begin() + 6), Bytes(kNewDstMac.begin(), kNewDstMac.end()));
  EXPECT_EQ(Bytes(f.begin() + 6, f.begin() + 12), Bytes(kNewSrcMac.begin(), kNewSrcMac.end()));
  EXPECT_EQ(be16(f, 12), 0x0800);
  EXPECT_EQ(f[14], 0x45);
  EXPECT_EQ(f[15], 0xc0) << "precedence internetwork control";
  EXPECT_EQ(be16(f, 16), 576);
  EXPECT_EQ(be16(f, 18), 0) << "id";
  EXPECT_EQ(be16(f, 20), 0) << "DF clear, no fragment";
  EXPECT_EQ(f[22], 64);
  EXPECT_EQ(f[23], 1);
  EXPECT_EQ(be32(f, 26), kVip);
  EXPECT_EQ(be32(f, 30), kClient);
  EXPECT_EQ(test::ref_checksum(f.data() + 14, 20), 0);
  EXPECT_EQ(f[34], 3);
  EXPECT_EQ(f[35], 4);
  EXPECT_EQ(be16(f, 38), 0) << "unused";
  EXPECT_EQ(be16(f, 40), 1480) << "next-hop MTU";
  EXPECT_EQ(test::ref_checksum(f.data() + 34, 576 - 20), 0);
  EXPECT_EQ(Bytes(f.begin() + 42, f.end()), Bytes(original.begin() + 14, original.begin() + 14 + 548));

  // The same frame built by the test's own builders.
  test::Ipv4Fields ip{.src = kVip, .dst = kClient, .proto = 1, .ttl = 64, .id = 0, .flags_frag = 0};
  Bytes want = test::ethernet(kNewDstMac, kNewSrcMac, 0x0800,
                              test::ipv4(ip, test::icmp_message(3, 4, 1480, head(datagram(d), 548))));
  want[15] = 0xc0;
  want[24] = 0;
  want[25] = 0;
  const std::uint16_t c = test::ref_checksum(want.data() + 14, 20);
  want[24] = static_cast<std::uint8_t>(c >> 8);
  want[25] = static_cast<std::uint8_t>(c);
  EXPECT_EQ(f, want);

  // The error's quote is itself translatable: it names the flow the client sent.
  const auto back = parsed(f);
  const auto q = quote_of(f, back);
  EXPECT_EQ(q.key(), entry(ForwardMode::kNat, kTcp).original_key());
}

TEST(IcmpTranslate, FragNeededFromVlanFrameAndSmallDatagrams) {
  // VLAN-tagged, 600 bytes of IP: untagged result, quote cut at 548.
  const Dgram d{.proto = kUdp, .src = kClient, .dst = kVip, .sport = kCport, .dport = kVport,
                .payload = test::pattern(572)};
  const Bytes dg = datagram(d);
  ASSERT_EQ(dg.size(), 600u);
  Bytes f = test::ethernet_vlan(kUnitMac, kPeerMac, 42, 0x0800, dg);
  auto p = parsed(f);
  std::size_t n = lb::build_frag_needed(f.data(), f.size(), p, 576, net::Ipv4Addr{kVip}, net::MacAddr{kNewSrcMac},
                                        net::MacAddr{kNewDstMac});
  ASSERT_EQ(n, 14u + 576u);
  f.resize(n);
  EXPECT_EQ(be16(f, 12), 0x0800);
  EXPECT_EQ(Bytes(f.begin() + 42, f.end()), head(dg, 548));
  EXPECT_EQ(test::ref_checksum(f.data() + 14, 20), 0);
  EXPECT_EQ(test::ref_checksum(f.data() + 34, n - 34), 0);

  // A 200-byte datagram in a roomy buffer is quoted whole; in its own frame, as much as fits.
  const Dgram small{.proto = kUdp, .src = kClient, .dst = kVip, .sport = kCport, .dport = kVport,
                    .payload = test::pattern(172)};
  const Bytes sdg = datagram(small);
  const Bytes sframe = test::ethernet(kUnitMac, kPeerMac, 0x0800, sdg);
  Bytes roomy = sframe;
  roomy.resize(2048, 0xee);
  p = parsed(sframe);
  n = lb::build_frag_needed(roomy.data(), roomy.size(), p, 100, net::Ipv4Addr{kVip}, net::MacAddr{kNewSrcMac},
                            net::MacAddr{kNewDstMac});
  ASSERT_EQ(n, 14u + 28u + 200u);
  EXPECT_EQ(Bytes(roomy.begin() + 42, roomy.begin() + static_cast<std::ptrdiff_t>(n)), sdg);
  EXPECT_EQ(be16(roomy, 16), 228);
  EXPECT_EQ(test::ref_checksum(roomy.data() + 34, n - 34), 0);

  Bytes tight = sframe;
  n = lb::build_frag_needed(tight.data(), tight.size(), p, 100, net::Ipv4Addr{kVip}, net::MacAddr{kNewSrcMac},
                            net::MacAddr{kNewDstMac});
  ASSERT_EQ(n, tight.size());
  EXPECT_EQ(Bytes(tight.begin() + 42, tight.end()), head(sdg, sframe.size() - 42));
  EXPECT_EQ(be16(tight, 16), n - 14);
  EXPECT_EQ(test::ref_checksum(tight.data() + 34, n - 34), 0);

  // Not even header + 8 bytes fit: nothing is built, nothing touched.
  const Dgram tiny{.proto = kUdp, .src = kClient, .dst = kVip, .sport = kCport, .dport = kVport, .payload = {}};
  Bytes t = test::ethernet(kUnitMac, kPeerMac, 0x0800, datagram(tiny));  // 60 bytes, 28 of IP
  const Bytes before = t;
  p = parsed(t);
  EXPECT_EQ(lb::build_frag_needed(t.data(), t.size(), p, 100, net::Ipv4Addr{kVip}, net::MacAddr{kNewSrcMac},
                                  net::MacAddr{kNewDstMac}),
            0u);
  EXPECT_EQ(t, before);
}

TEST(IcmpTranslate, TimeExceededThroughTheGenericBuilder) {
  const Dgram d{.proto = kUdp, .src = kClient, .dst = kVip, .sport = kCport, .dport = kVport};
  const Bytes dg = datagram(d);
  Bytes f = test::ethernet(kUnitMac, kPeerMac, 0x0800, dg);
  f.resize(512, 0);
  const auto p = parsed(f);
  const std::size_t n = lb::build_icmp_error(f.data(), f.size(), p, 11, 0, 0, net::Ipv4Addr{kVip},
                                             net::MacAddr{kNewSrcMac}, net::MacAddr{kNewDstMac});
  f.resize(n);
  test::Ipv4Fields ip{.src = kVip, .dst = kClient, .proto = 1, .ttl = 64, .id = 0, .flags_frag = 0};
  Bytes want = test::ethernet(kNewDstMac, kNewSrcMac, 0x0800, test::ipv4(ip, test::icmp_message(11, 0, 0, dg)));
  want[15] = 0xc0;
  want[24] = want[25] = 0;
  const std::uint16_t c = test::ref_checksum(want.data() + 14, 20);
  want[24] = static_cast<std::uint8_t>(c >> 8);
  want[25] = static_cast<std::uint8_t>(c);
  EXPECT_EQ(f, want);
}

TEST(IcmpTranslate, WhenAnIcmpErrorMayBeSent) {
  const Dgram d{.proto = kUdp, .src = kClient, .dst = kVip, .sport = kCport, .dport = kVport};
  auto allowed = [&](const Bytes& f) { return lb::may_send_icmp_error(f.data(), parsed(f)); };
  auto frame = [&](std::uint32_t src, std::uint32_t dst, std::uint16_t flags_frag = 0x4000) {
    Dgram x = d;
    x.src = src;
    x.dst = dst;
    x.flags_frag = flags_frag;
    return test::ethernet(kUnitMac, kPeerMac, 0x0800, datagram(x));
  };
  EXPECT_TRUE(allowed(frame(kClient, kVip)));
  EXPECT_FALSE(allowed(frame(test::ip("0.0.0.0"), kVip)));
  EXPECT_FALSE(allowed(frame(test::ip("127.0.0.1"), kVip)));
  EXPECT_FALSE(allowed(frame(test::ip("224.0.0.5"), kVip)));
  EXPECT_FALSE(allowed(frame(test::ip("240.0.0.1"), kVip)));
  EXPECT_FALSE(allowed(frame(test::ip("255.255.255.255"), kVip)));
  EXPECT_FALSE(allowed(frame(kClient, test::ip("255.255.255.255"))));
  EXPECT_FALSE(allowed(frame(kClient, test::ip("239.1.2.3"))));
  Bytes bcast = frame(kClient, kVip);
  std::fill(bcast.begin(), bcast.begin() + 6, 0xff);
  EXPECT_FALSE(allowed(bcast));
  Bytes mcast = frame(kClient, kVip);
  mcast[0] = 0x01;
  EXPECT_FALSE(allowed(mcast));

  // Fragments make parse_packet stop early; the IPv4 fields are what the check needs.
  for (const std::uint16_t ff : {std::uint16_t{0x2000}, std::uint16_t{0x2000 | 10}, std::uint16_t{10}}) {
    const Bytes frag = frame(kClient, kVip, ff);
    net::ParsedPacket p;
    ASSERT_EQ(net::parse_packet(frag.data(), static_cast<std::uint32_t>(frag.size()), p),
              net::ParseError::kIpv4Fragment);
    EXPECT_EQ(lb::may_send_icmp_error(frag.data(), p), ff == 0x2000) << ff;
    EXPECT_FALSE(lb::dont_fragment(frag.data(), p));
  }

  // Never about an ICMP error; echo requests are fine.
  EXPECT_FALSE(allowed(icmp_frame(kBackendRouter, kClient, 3, 3, 0, datagram(d))));
  EXPECT_FALSE(allowed(icmp_frame(kBackendRouter, kClient, 11, 0, 0, datagram(d))));
  EXPECT_FALSE(allowed(icmp_frame(kBackendRouter, kClient, 4, 0, 0, datagram(d))));
  test::Ipv4Fields echo_ip{.src = kClient, .dst = kVip, .proto = 1};
  EXPECT_TRUE(allowed(test::ethernet(kUnitMac, kPeerMac, 0x0800, test::ipv4(echo_ip, test::icmp_echo(8, 1, 1, {})))));
}

// Mutated and truncated ICMP errors in buffers of exactly their length (ASan sees any access
// past them). Whatever parses is rewritten, translated both ways and turned into an error
// itself; a valid ICMP checksum stays valid through every rewrite.
TEST(IcmpTranslate, RandomMutatedFramesStayInBounds) {
  std::mt19937 rng(99);
  auto rnd = [&rng] { return static_cast<std::uint32_t>(rng()); };
  int translated = 0;
  for (int i = 0; i < 5000; ++i) {
    const std::uint32_t kind = rnd() % 3;  // TCP, UDP, or any protocol
    Dgram d{.proto = kind == 0 ? kTcp : kind == 1 ? kUdp : static_cast<std::uint8_t>(rnd()), .src = rnd(),
            .dst = rnd(), .sport = static_cast<std::uint16_t>(rnd()), .dport = static_cast<std::uint16_t>(rnd())};
    d.options = test::pattern((rnd() % 4) * 4);
    d.payload = test::pattern(rnd() % 80);
    const Bytes dg = d.proto == kTcp || d.proto == kUdp
                         ? datagram(d)
                         : test::ipv4({.src = d.src, .dst = d.dst, .proto = d.proto}, d.payload);
    const std::uint8_t type = std::array<std::uint8_t, 5>{3, 11, 12, 4, 0}[rnd() % 5];
    const auto code = static_cast<std::uint8_t>(rnd() % 16);
    Bytes f = icmp_frame(rnd(), rnd(), type, code, rnd(), head(dg, rnd() % (dg.size() + 1)));
    if (rnd() % 2) f = test::ethernet_vlan(kUnitMac, kPeerMac, 5, 0x0800, Bytes(f.begin() + 14, f.end()));

    // Mutations: random bytes anywhere after the outer IP header, then maybe a truncation with the
    // outer length made to agree, then the ICMP checksum fixed up (so parsing goes deep).
    const std::size_t l3 = f[12] == 0x81 ? 18 : 14;
    for (int m = static_cast<int>(rnd() % 6); m > 0; --m)
      f[l3 + 20 + rnd() % (f.size() - l3 - 20)] = static_cast<std::uint8_t>(rnd());
    if (rnd() % 2) {
      const std::size_t keep = l3 + 20 + rnd() % (f.size() - l3 - 20 + 1);
      f.resize(keep);
      const std::size_t ip_len = keep - l3;
      f[l3 + 2] = static_cast<std::uint8_t>(ip_len >> 8);
      f[l3 + 3] = static_cast<std::uint8_t>(ip_len);
    }
    f[l3 + 10] = f[l3 + 11] = 0;
    const std::uint16_t ipc = test::ref_checksum(f.data() + l3, 20);
    f[l3 + 10] = static_cast<std::uint8_t>(ipc >> 8);
    f[l3 + 11] = static_cast<std::uint8_t>(ipc);
    const std::size_t ip_len = std::min<std::size_t>(be16(f, l3 + 2), f.size() - l3);
    const bool fix_icmp = rnd() % 4 != 0 && ip_len >= 24;
    if (fix_icmp) {
      f[l3 + 22] = f[l3 + 23] = 0;
      const std::uint16_t c = test::ref_checksum(f.data() + l3 + 20, ip_len - 20);
      f[l3 + 22] = static_cast<std::uint8_t>(c >> 8);
      f[l3 + 23] = static_cast<std::uint8_t>(c);
    }

    const std::size_t len = f.size();
    std::unique_ptr<std::uint8_t[]> buf(new std::uint8_t[len]);
    std::copy(f.begin(), f.end(), buf.get());
    net::ParsedPacket p;
    if (net::parse_packet(buf.get(), static_cast<std::uint32_t>(len), p) != net::ParseError::kNone) continue;
    const bool icmp_ok = test::ref_checksum(buf.get() + p.l4, p.ip_len - p.ihl) == 0;
    lb::IcmpQuote q;
    if (lb::parse_icmp_quote(buf.get(), static_cast<std::uint32_t>(len), p, q) == lb::QuoteError::kNone) {
      ASSERT_LE(q.l4 + 8u, p.l3 + p.ip_len);
      ASSERT_EQ(q.l3 + q.len, p.l3 + p.ip_len);
      if (q.l4_csum) {
        ASSERT_LE(q.l4_csum + 2u, p.l3 + p.ip_len);
      }
      const Bytes before(buf.get(), buf.get() + len);
      lb::rewrite_quote_source(buf.get(), p, q, net::Ipv4Addr{rnd()}, static_cast<std::uint16_t>(rnd()));
      lb::rewrite_quote_destination(buf.get(), p, q, net::Ipv4Addr{rnd()}, static_cast<std::uint16_t>(rnd()));
      // Only the quote and the ICMP checksum change.
      for (std::size_t k = 0; k < len; ++k) {
        const bool may_change = (k >= q.l3 && k < q.l3 + q.len) || k == p.l4 + 2u || k == p.l4 + 3u;
        if (!may_change) {
          ASSERT_EQ(buf[k], before[k]) << "round " << i << " byte " << k;
        }
      }
      const auto mode = rnd() % 2 ? ForwardMode::kNat : ForwardMode::kFullNat;
      ASSERT_TRUE(lb::translate_icmp_for_client(buf.get(), p, q, entry(mode, q.proto)));
      ASSERT_TRUE(lb::translate_icmp_for_backend(buf.get(), p, q, entry(mode, q.proto)));
      if (icmp_ok) {
        ASSERT_EQ(test::ref_checksum(buf.get() + p.l4, p.ip_len - p.ihl), 0) << "round " << i;
      }
      ASSERT_EQ(test::ref_checksum(buf.get() + p.l3, p.ihl), 0) << "round " << i;
      ++translated;
    }
    // An error about anything that parsed, in the same exact-size buffer.
    const std::size_t n = lb::build_frag_needed(buf.get(), len, p, 1400, net::Ipv4Addr{kVip}, net::MacAddr{kNewSrcMac},
                                                net::MacAddr{kNewDstMac});
    if (n != 0) {
      ASSERT_LE(n, len);
      ASSERT_EQ(test::ref_checksum(buf.get() + 14, 20), 0);
      ASSERT_EQ(test::ref_checksum(buf.get() + 34, n - 34), 0);
    }
  }
  EXPECT_GT(translated, 500) << "the mutations should leave plenty of frames to translate";
}
