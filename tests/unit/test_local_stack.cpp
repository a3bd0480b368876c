// Frames addressed to the unit, through the same function the worker calls per packet.
#include <gtest/gtest.h>

#include <random>

#include "dataplane/local_stack.hpp"
#include "tests/unit/frames.hpp"

using namespace tandem;
using test::Bytes;
using Action = LocalResult::Action;

namespace {

const test::Mac kUs = {0x02, 0x00, 0x00, 0x00, 0x00, 0x01};
const test::Mac kClient = {0x02, 0x00, 0x00, 0x00, 0x00, 0x02};
const test::Mac kOther = {0x02, 0x00, 0x00, 0x00, 0x00, 0x03};

class LocalStackTest : public ::testing::Test {
 protected:
  LocalStackTest() : neighbours_(neigh::NeighbourConfig{.capacity = 16}) {
    itf_.mac = net::MacAddr{kUs};
    itf_.add(*net::Ipv4Prefix::parse("10.0.0.1/24"));
    itf_.add(*net::Ipv4Prefix::parse("10.0.1.1/24"));
  }

  LocalResult run(Bytes& f, std::uint64_t now = 1000) {
    return handle_local_frame(f.data(), static_cast<std::uint32_t>(f.size()), itf_, neighbours_, now, learnt_);
  }

  static Bytes echo_request(std::uint32_t src, std::uint32_t dst, const Bytes& data = test::pattern(56),
                            std::uint16_t flags_frag = 0x4000) {
    test::Ipv4Fields ip{.src = src, .dst = dst, .flags_frag = flags_frag};
    return test::ethernet(kUs, kClient, 0x0800, test::ipv4(ip, test::icmp_echo(8, 0x77, 1, data)));
  }

  LocalInterface itf_;
  neigh::NeighbourTable neighbours_;
  LearntNeighbour learnt_;
};

void expect_drop(const LocalResult& r, DropReason reason) {
  EXPECT_EQ(r.action, Action::kDrop);
  EXPECT_EQ(r.reason, reason) << "got " << to_string(r.reason) << ", want " << to_string(reason);
}

}  // namespace

TEST_F(LocalStackTest, AnswersArpRequestForEachOwnAddressAndLearnsTheSender) {
  for (const char* own : {"10.0.0.1", "10.0.1.1"}) {
    Bytes f = test::ethernet(test::kBroadcast, kClient, 0x0806,
                             test::arp(1, kClient, test::ip("10.0.0.2"), {}, test::ip(own)));
    const LocalResult r = run(f);
    ASSERT_EQ(r.action, Action::kTransmit);
    EXPECT_EQ(r.event, Handled::kArpRepliesSent);
    EXPECT_EQ(f, test::ethernet(kClient, kUs, 0x0806, test::arp(2, kUs, test::ip(own), kClient, test::ip("10.0.0.2"))))
        << test::to_hex(f);
  }
  const auto* e = neighbours_.find(net::Ipv4Addr{test::ip("10.0.0.2")});
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->state, neigh::NeighState::kReachable);
  EXPECT_EQ(e->mac, net::MacAddr{kClient});
}

TEST_F(LocalStackTest, RequestForAnotherAddressIsDroppedAndCreatesNothing) {
  Bytes f = test::ethernet(test::kBroadcast, kClient, 0x0806,
                           test::arp(1, kClient, test::ip("10.0.0.2"), {}, test::ip("10.0.0.9")));
  const Bytes before = f;
  expect_drop(run(f), DropReason::kArpNotForUs);
  EXPECT_EQ(f, before);
  EXPECT_EQ(neighbours_.size(), 0u);
}

TEST_F(LocalStackTest, RequestForAnotherAddressStillRefreshesAKnownSender) {
  neighbours_.learn(net::Ipv4Addr{test::ip("10.0.0.2")}, net::MacAddr{kOther}, 0, true);
  Bytes f = test::ethernet(test::kBroadcast, kClient, 0x0806,
                           test::arp(1, kClient, test::ip("10.0.0.2"), {}, test::ip("10.0.0.9")));
  const LocalResult r = run(f, 5000);
  expect_drop(r, DropReason::kArpNotForUs);
  EXPECT_TRUE(r.learnt);
  EXPECT_EQ(neighbours_.find(net::Ipv4Addr{test::ip("10.0.0.2")})->mac, net::MacAddr{kClient});
  EXPECT_EQ(neighbours_.stats().mac_changed, 1u);
}

TEST_F(LocalStackTest, SolicitedReplyIsLearntUnsolicitedIsNot) {
  const net::Ipv4Addr gw{test::ip("10.0.0.254")};
  EXPECT_EQ(neighbours_.resolve(gw, 1000, nullptr), neigh::ResolveResult::kPending);
  Bytes reply = test::ethernet(kUs, kOther, 0x0806, test::arp(2, kOther, gw.value, kUs, test::ip("10.0.0.1")));
  const LocalResult r = run(reply, 1010);
  EXPECT_EQ(r.action, Action::kConsume);
  EXPECT_EQ(r.event, Handled::kArpRepliesLearnt);
  EXPECT_TRUE(r.learnt);
  EXPECT_EQ(learnt_.ip, gw);
  EXPECT_EQ(learnt_.mac, net::MacAddr{kOther});
  net::MacAddr m;
  EXPECT_EQ(neighbours_.resolve(gw, 1020, &m), neigh::ResolveResult::kKnown);
  EXPECT_EQ(m, net::MacAddr{kOther});

  Bytes unsolicited = test::ethernet(kUs, kClient, 0x0806,
                                     test::arp(2, kClient, test::ip("10.0.0.77"), kUs, test::ip("10.0.0.1")));
  const LocalResult u = run(unsolicited);
  expect_drop(u, DropReason::kArpUnsolicitedReply);
  EXPECT_FALSE(u.learnt);
  EXPECT_EQ(neighbours_.find(net::Ipv4Addr{test::ip("10.0.0.77")}), nullptr);
}

TEST_F(LocalStackTest, AddressProbeIsAnsweredButNotLearnt) {
  // RFC 5227 probe: sender 0.0.0.0. We defend our address; there is nobody to learn.
  Bytes f = test::ethernet(test::kBroadcast, kClient, 0x0806, test::arp(1, kClient, 0, {}, test::ip("10.0.0.1")));
  const LocalResult r = run(f);
  ASSERT_EQ(r.action, Action::kTransmit);
  EXPECT_FALSE(r.learnt);
  EXPECT_EQ(f, test::ethernet(kClient, kUs, 0x0806, test::arp(2, kUs, test::ip("10.0.0.1"), kClient, 0)));
  EXPECT_EQ(neighbours_.size(), 0u);
}

TEST_F(LocalStackTest, MalformedArpIsCountedAsSuch) {
  Bytes truncated = test::ethernet(test::kBroadcast, kClient, 0x0806,
                                   test::arp(1, kClient, test::ip("10.0.0.2"), {}, test::ip("10.0.0.1")), false);
  truncated.resize(40);
  expect_drop(run(truncated), DropReason::kArpMalformed);
  Bytes rarp = test::ethernet(test::kBroadcast, kClient, 0x0806,
                              test::arp(3, kClient, test::ip("10.0.0.2"), {}, test::ip("10.0.0.1")));
  expect_drop(run(rarp), DropReason::kArpUnhandledOp);
}

TEST_F(LocalStackTest, AnswersEchoRequestByteForByte) {
  Bytes f = echo_request(test::ip("10.0.0.2"), test::ip("10.0.1.1"), test::pattern(57));
  const LocalResult r = run(f);
  ASSERT_EQ(r.action, Action::kTransmit);
  EXPECT_EQ(r.event, Handled::kIcmpEchoRepliesSent);
  test::Ipv4Fields ip{.src = test::ip("10.0.1.1"), .dst = test::ip("10.0.0.2")};
  EXPECT_EQ(f, test::ethernet(kClient, kUs, 0x0800, test::ipv4(ip, test::icmp_echo(0, 0x77, 1, test::pattern(57)))))
      << test::to_hex(f);
}

TEST_F(LocalStackTest, EchoInAPaddedFrameKeepsThePadding) {
  Bytes f = echo_request(test::ip("10.0.0.2"), test::ip("10.0.0.1"), test::pattern(4));
  ASSERT_EQ(f.size(), 60u);  // 14 + 20 + 8 + 4 = 46, padded
  ASSERT_EQ(run(f).action, Action::kTransmit);
  test::Ipv4Fields ip{.src = test::ip("10.0.0.1"), .dst = test::ip("10.0.0.2")};
  EXPECT_EQ(f, test::ethernet(kClient, kUs, 0x0800, test::ipv4(ip, test::icmp_echo(0, 0x77, 1, test::pattern(4)))));
}

TEST_F(LocalStackTest, BroadcastArpFromItselfAndL2Filtering) {
  Bytes runt = test::hex("ff ff ff ff ff ff 02 00 00 00 00 02 08");
  expect_drop(run(runt), DropReason::kRuntFrame);
  Bytes empty;
  expect_drop(run(empty), DropReason::kRuntFrame);
  Bytes other = echo_request(test::ip("10.0.0.2"), test::ip("10.0.0.1"));
  std::copy(kOther.begin(), kOther.end(), other.begin());
  expect_drop(run(other), DropReason::kL2NotForUs);
  Bytes mcast = echo_request(test::ip("10.0.0.2"), test::ip("10.0.0.1"));
  const Bytes mcast_mac = test::hex("33 33 00 00 00 01");
  std::copy(mcast_mac.begin(), mcast_mac.end(), mcast.begin());
  expect_drop(run(mcast), DropReason::kL2Multicast);
  Bytes ipv6 = test::ethernet(kUs, kClient, 0x86dd, test::pattern(40));
  expect_drop(run(ipv6), DropReason::kEthertypeUnsupported);
}

TEST_F(LocalStackTest, Ipv4ValidationOrder) {
  Bytes bad_csum = echo_request(test::ip("10.0.0.2"), test::ip("10.0.0.1"));
  bad_csum[14 + 10] ^= 0x01;
  expect_drop(run(bad_csum), DropReason::kIpv4BadChecksum);

  Bytes truncated = echo_request(test::ip("10.0.0.2"), test::ip("10.0.0.1"));
  truncated.resize(truncated.size() - 1);  // total length now exceeds the frame
  expect_drop(run(truncated), DropReason::kIpv4Malformed);

  Bytes short_hdr = echo_request(test::ip("10.0.0.2"), test::ip("10.0.0.1"));
  short_hdr.resize(14 + 19);
  expect_drop(run(short_hdr), DropReason::kIpv4Malformed);

  Bytes v6 = echo_request(test::ip("10.0.0.2"), test::ip("10.0.0.1"));
  v6[14] = 0x65;
  expect_drop(run(v6), DropReason::kIpv4Malformed);

  Bytes small_ihl = echo_request(test::ip("10.0.0.2"), test::ip("10.0.0.1"));
  small_ihl[14] = 0x44;
  expect_drop(run(small_ihl), DropReason::kIpv4Malformed);

  Bytes not_local = echo_request(test::ip("10.0.0.2"), test::ip("10.0.0.9"));
  expect_drop(run(not_local), DropReason::kIpv4NotLocal);

  for (const char* src : {"0.0.0.0", "255.255.255.255", "224.0.0.1", "10.0.0.1", "10.0.0.255"}) {
    Bytes f = echo_request(test::ip(src), test::ip("10.0.0.1"));
    expect_drop(run(f), DropReason::kIpv4BadSource);
  }

  Bytes first_fragment = echo_request(test::ip("10.0.0.2"), test::ip("10.0.0.1"), test::pattern(56), 0x2000);
  expect_drop(run(first_fragment), DropReason::kIpv4Fragment);
  Bytes later_fragment = echo_request(test::ip("10.0.0.2"), test::ip("10.0.0.1"), test::pattern(56), 0x0010);
  expect_drop(run(later_fragment), DropReason::kIpv4Fragment);
}

TEST_F(LocalStackTest, IcmpAndOtherProtocols) {
  Bytes bad = echo_request(test::ip("10.0.0.2"), test::ip("10.0.0.1"));
  bad.back() ^= 0xff;
  expect_drop(run(bad), DropReason::kIcmpBadChecksum);

  test::Ipv4Fields ip{.src = test::ip("10.0.0.2"), .dst = test::ip("10.0.0.1")};
  Bytes timestamp = test::ethernet(kUs, kClient, 0x0800, test::ipv4(ip, test::icmp_echo(13, 1, 1, test::pattern(12))));
  expect_drop(run(timestamp), DropReason::kIcmpUnhandled);

  Bytes short_icmp = test::ethernet(kUs, kClient, 0x0800, test::ipv4(ip, test::hex("08 00 f7 ff")));
  expect_drop(run(short_icmp), DropReason::kIcmpMalformed);

  test::Ipv4Fields tcp{.src = test::ip("10.0.0.2"), .dst = test::ip("10.0.0.1"), .proto = 6};
  Bytes syn = test::ethernet(kUs, kClient, 0x0800, test::ipv4(tcp, test::pattern(20)));
  expect_drop(run(syn), DropReason::kL4Unhandled);
}

// Random and mutated frames: nothing reads out of bounds (run under ASan), every verdict is
// one of the documented ones, and whatever is transmitted is a well-formed reply.
TEST_F(LocalStackTest, SurvivesRandomAndMutatedFrames) {
  std::mt19937 rng(1234);
  const Bytes seeds[] = {
      echo_request(test::ip("10.0.0.2"), test::ip("10.0.0.1")),
      test::ethernet(test::kBroadcast, kClient, 0x0806, test::arp(1, kClient, test::ip("10.0.0.2"), {}, test::ip("10.0.0.1"))),
  };
  for (int round = 0; round < 50000; ++round) {
    Bytes f;
    if (round % 2 == 0) {
      f.resize(rng() % 120);
      for (auto& b : f) b = static_cast<std::uint8_t>(rng());
      if (f.size() >= 14 && rng() % 2) std::copy(kUs.begin(), kUs.end(), f.begin());
      if (f.size() >= 14) f[12] = 0x08, f[13] = (rng() % 2) ? 0x00 : 0x06;
    } else {
      f = seeds[rng() % 2];
      for (int flips = 1 + rng() % 4; flips > 0; --flips) f[rng() % f.size()] ^= static_cast<std::uint8_t>(1u << (rng() % 8));
      if (rng() % 4 == 0) f.resize(rng() % (f.size() + 1));
    }
    // Exact-size heap copy so ASan sees any read past the frame.
    auto* buf = new std::uint8_t[f.size()];
    std::copy(f.begin(), f.end(), buf);
    const LocalResult r = handle_local_frame(buf, static_cast<std::uint32_t>(f.size()), itf_, neighbours_, round, learnt_);
    if (r.action == Action::kDrop) {
      ASSERT_LT(static_cast<std::size_t>(r.reason), kDropReasonCount);
    } else {
      ASSERT_LT(static_cast<std::size_t>(r.event), kHandledCount);
    }
    if (r.action == Action::kTransmit && r.event == Handled::kIcmpEchoRepliesSent) {
      const std::size_t ihl = (buf[14] & 0x0f) * 4u;
      const std::size_t total = static_cast<std::size_t>(buf[16] << 8 | buf[17]);
      ASSERT_EQ(test::ref_checksum(buf + 14, ihl), 0);
      const std::uint16_t icmp_sum = test::ref_checksum(buf + 14 + ihl, total - ihl);
      ASSERT_TRUE(icmp_sum == 0 || icmp_sum == 0xffff);
    }
    delete[] buf;
  }
  EXPECT_LE(neighbours_.size(), neighbours_.capacity());
}

// --- floating addresses and HA adverts ---------------------------------------------------------

namespace {

constexpr std::uint16_t kHaPort = 8694;
const std::uint32_t kFloating = test::ip("10.0.0.100");

Bytes udp_frame(std::uint32_t src, std::uint32_t dst, std::uint16_t sport, std::uint16_t dport, const Bytes& payload,
                const Bytes& options = {}) {
  test::Ipv4Fields ip{.src = src, .dst = dst, .proto = 17, .ttl = 255, .options = options};
  return test::ethernet(kUs, kClient, 0x0800, test::ipv4(ip, test::udp(src, dst, sport, dport, payload)));
}

}  // namespace

TEST(LocalInterface, AddFloatingKeepsTheListSortedAndDistinct) {
  LocalInterface itf;
  for (const char* a : {"10.0.0.9", "10.0.0.3", "192.168.1.1", "10.0.0.3", "1.2.3.4", "10.0.0.9"})
    EXPECT_TRUE(itf.add_floating(net::Ipv4Addr{test::ip(a)})) << a;
  ASSERT_EQ(itf.floating_count, 4u) << "duplicates are added once";
  EXPECT_EQ(itf.floating[0], test::ip("1.2.3.4"));
  EXPECT_EQ(itf.floating[1], test::ip("10.0.0.3"));
  EXPECT_EQ(itf.floating[2], test::ip("10.0.0.9"));
  EXPECT_EQ(itf.floating[3], test::ip("192.168.1.1"));
  for (const char* a : {"1.2.3.4", "10.0.0.3", "10.0.0.9", "192.168.1.1"}) {
    EXPECT_TRUE(itf.owns_floating(net::Ipv4Addr{test::ip(a)})) << a;
    EXPECT_TRUE(itf.owns(net::Ipv4Addr{test::ip(a)})) << a;
    EXPECT_FALSE(itf.owns_primary(net::Ipv4Addr{test::ip(a)})) << a;
  }
  for (const char* a : {"0.0.0.0", "1.2.3.3", "10.0.0.4", "255.255.255.255"})
    EXPECT_FALSE(itf.owns(net::Ipv4Addr{test::ip(a)})) << a;
}

TEST(LocalInterface, AddFloatingRefusesANewAddressWhenFull) {
  LocalInterface itf;
  std::mt19937 rng(9);
  std::vector<std::uint32_t> added;
  while (added.size() < kMaxFloatingAddrs) {
    const std::uint32_t a = 0x0a000000u | (rng() & 0xffffffu);
    if (std::find(added.begin(), added.end(), a) != added.end()) continue;
    ASSERT_TRUE(itf.add_floating(net::Ipv4Addr{a}));
    added.push_back(a);
  }
  ASSERT_EQ(itf.floating_count, kMaxFloatingAddrs);
  EXPECT_TRUE(std::is_sorted(itf.floating.begin(), itf.floating.end()));
  EXPECT_TRUE(std::adjacent_find(itf.floating.begin(), itf.floating.end()) == itf.floating.end());
  EXPECT_FALSE(itf.add_floating(net::Ipv4Addr{test::ip("192.0.2.1")})) << "full";
  EXPECT_FALSE(itf.add_floating(net::Ipv4Addr{0}));
  EXPECT_EQ(itf.floating_count, kMaxFloatingAddrs);
  EXPECT_TRUE(itf.add_floating(net::Ipv4Addr{added[17]})) << "already there: nothing to add";
  EXPECT_EQ(itf.floating_count, kMaxFloatingAddrs);
  for (const std::uint32_t a : added) ASSERT_TRUE(itf.owns(net::Ipv4Addr{a}));
  EXPECT_FALSE(itf.owns(net::Ipv4Addr{test::ip("192.0.2.1")}));
}

TEST_F(LocalStackTest, AnswersArpForAFloatingAddressWithThePortsMac) {
  Bytes before = test::ethernet(test::kBroadcast, kClient, 0x0806,
                                test::arp(1, kClient, test::ip("10.0.0.2"), {}, kFloating));
  Bytes f = before;
  expect_drop(run(f), DropReason::kArpNotForUs);
  EXPECT_EQ(f, before) << "not ours yet";

  ASSERT_TRUE(itf_.add_floating(net::Ipv4Addr{kFloating}));
  f = before;
  const LocalResult r = run(f);
  ASSERT_EQ(r.action, Action::kTransmit);
  EXPECT_EQ(r.event, Handled::kArpRepliesSent);
  EXPECT_EQ(f, test::ethernet(kClient, kUs, 0x0806, test::arp(2, kUs, kFloating, kClient, test::ip("10.0.0.2"))))
      << test::to_hex(f);
  ASSERT_NE(neighbours_.find(net::Ipv4Addr{test::ip("10.0.0.2")}), nullptr) << "the asker is learnt";
}

TEST_F(LocalStackTest, AnswersEchoToAFloatingAddress) {
  ASSERT_TRUE(itf_.add_floating(net::Ipv4Addr{kFloating}));
  Bytes f = echo_request(test::ip("10.0.0.2"), kFloating, test::pattern(33));
  const LocalResult r = run(f);
  ASSERT_EQ(r.action, Action::kTransmit);
  EXPECT_EQ(r.event, Handled::kIcmpEchoRepliesSent);
  test::Ipv4Fields ip{.src = kFloating, .dst = test::ip("10.0.0.2")};
  EXPECT_EQ(f, test::ethernet(kClient, kUs, 0x0800, test::ipv4(ip, test::icmp_echo(0, 0x77, 1, test::pattern(33)))))
      << test::to_hex(f);
  // A floating address is never a valid source towards the unit.
  Bytes spoofed = echo_request(kFloating, test::ip("10.0.0.1"));
  expect_drop(run(spoofed), DropReason::kIpv4BadSource);
}

TEST_F(LocalStackTest, AnHaAdvertToThePortsAddressIsPunted) {
  itf_.ha_udp_port = kHaPort;
  for (const char* own : {"10.0.0.1", "10.0.1.1"}) {
    const Bytes payload = test::pattern(72, 7);  // the size of an advert of two groups
    Bytes f = udp_frame(test::ip("10.0.0.2"), test::ip(own), kHaPort, kHaPort, payload);
    const Bytes before = f;
    const LocalResult r = run(f);
    ASSERT_EQ(r.action, Action::kPunt) << own;
    EXPECT_EQ(r.event, Handled::kHaAdvertsReceived);
    EXPECT_EQ(f, before) << "the frame is handed over as it came";
    const PuntedPayload p = punted_payload(f.data());
    EXPECT_EQ(p.offset, 14u + 20 + 8);
    EXPECT_EQ(p.len, payload.size());
    EXPECT_EQ(Bytes(f.begin() + p.offset, f.begin() + p.offset + p.len), payload);
  }
}

TEST_F(LocalStackTest, PuntedPayloadLeavesOutOptionsAndPadding) {
  itf_.ha_udp_port = kHaPort;
  // IP options move the payload; a small datagram is padded, the padding is not payload.
  const Bytes payload = test::hex("de ad be ef 01");
  Bytes f = udp_frame(test::ip("10.0.0.2"), test::ip("10.0.0.1"), 5555, kHaPort, payload, test::hex("01 01 01 00"));
  ASSERT_EQ(f.size(), 60u);
  ASSERT_EQ(run(f).action, Action::kPunt);
  const PuntedPayload p = punted_payload(f.data());
  EXPECT_EQ(p.offset, 14u + 24 + 8);
  EXPECT_EQ(p.len, 5u);
  EXPECT_EQ(Bytes(f.begin() + p.offset, f.begin() + p.offset + p.len), payload);
}

TEST_F(LocalStackTest, AnHaAdvertToAFloatingAddressIsNotPunted) {
  itf_.ha_udp_port = kHaPort;
  ASSERT_TRUE(itf_.add_floating(net::Ipv4Addr{kFloating}));
  Bytes f = udp_frame(test::ip("10.0.0.2"), kFloating, kHaPort, kHaPort, test::pattern(72));
  expect_drop(run(f), DropReason::kL4Unhandled);
}

TEST_F(LocalStackTest, OtherUdpIsDroppedAsUnhandled) {
  itf_.ha_udp_port = kHaPort;
  Bytes other_port = udp_frame(test::ip("10.0.0.2"), test::ip("10.0.0.1"), kHaPort, kHaPort + 1, test::pattern(72));
  expect_drop(run(other_port), DropReason::kL4Unhandled);
  Bytes source_port_only = udp_frame(test::ip("10.0.0.2"), test::ip("10.0.0.1"), kHaPort, 53, test::pattern(72));
  expect_drop(run(source_port_only), DropReason::kL4Unhandled);
}

TEST_F(LocalStackTest, WithoutAnHaPortUdpIsDroppedAsBefore) {
  ASSERT_EQ(itf_.ha_udp_port, 0);
  Bytes f = udp_frame(test::ip("10.0.0.2"), test::ip("10.0.0.1"), kHaPort, kHaPort, test::pattern(72));
  expect_drop(run(f), DropReason::kL4Unhandled);
  // Port 0 is not a port to punt: a datagram to UDP port 0 is not an advert either.
  Bytes zero = udp_frame(test::ip("10.0.0.2"), test::ip("10.0.0.1"), 0, 0, test::pattern(72));
  expect_drop(run(zero), DropReason::kL4Unhandled);
  // Nor is a malformed datagram looked at.
  Bytes bad = udp_frame(test::ip("10.0.0.2"), test::ip("10.0.0.1"), kHaPort, kHaPort, test::pattern(72));
  bad[14 + 20 + 4] = 0xff;
  expect_drop(run(bad), DropReason::kL4Unhandled);
}

TEST_F(LocalStackTest, AMalformedUdpHeaderIsDropped) {
  itf_.ha_udp_port = kHaPort;
  const auto advert = [] { return udp_frame(test::ip("10.0.0.2"), test::ip("10.0.0.1"), kHaPort, kHaPort, test::pattern(72)); };
  // UDP length larger than the IP payload (80 bytes): by one, and by a lot.
  for (const std::uint16_t udp_len : {81, 0xffff}) {
    Bytes f = advert();
    f[14 + 20 + 4] = static_cast<std::uint8_t>(udp_len >> 8);
    f[14 + 20 + 5] = static_cast<std::uint8_t>(udp_len);
    expect_drop(run(f), DropReason::kL4Malformed);
  }
  // Shorter than a UDP header.
  for (const std::uint16_t udp_len : {0, 7}) {
    Bytes f = advert();
    f[14 + 20 + 4] = 0;
    f[14 + 20 + 5] = static_cast<std::uint8_t>(udp_len);
    expect_drop(run(f), DropReason::kL4Malformed);
  }
  // An IP payload too short for a UDP header.
  test::Ipv4Fields ip{.src = test::ip("10.0.0.2"), .dst = test::ip("10.0.0.1"), .proto = 17};
  Bytes stub = test::ethernet(kUs, kClient, 0x0800, test::ipv4(ip, test::hex("21 f6 21 f6 00 08 00")));
  expect_drop(run(stub), DropReason::kL4Malformed);
  // A UDP length shorter than the IP payload (trailing bytes) is fine: the payload is what it says.
  Bytes shorter = advert();
  shorter[14 + 20 + 5] = static_cast<std::uint8_t>(8 + 40);
  ASSERT_EQ(run(shorter).action, Action::kPunt);
  EXPECT_EQ(punted_payload(shorter.data()).len, 40u);
}

// Mutated adverts and random UDP frames with an HA port and floating addresses: whatever is
// punted has its payload inside the frame (run under ASan), and only adverts to the port's own
// addresses are punted.
TEST_F(LocalStackTest, PuntedPayloadIsAlwaysInsideTheFrame) {
  itf_.ha_udp_port = kHaPort;
  ASSERT_TRUE(itf_.add_floating(net::Ipv4Addr{kFloating}));
  std::mt19937 rng(8694);
  const Bytes seeds[] = {
      udp_frame(test::ip("10.0.0.2"), test::ip("10.0.0.1"), kHaPort, kHaPort, test::pattern(72)),
      udp_frame(test::ip("10.0.0.2"), test::ip("10.0.1.1"), kHaPort, kHaPort, test::pattern(3)),
      udp_frame(test::ip("10.0.0.2"), kFloating, kHaPort, kHaPort, test::pattern(40), test::hex("01 01 01 00")),
  };
  int punted = 0;
  for (int round = 0; round < 50000; ++round) {
    Bytes f = seeds[rng() % 3];
    for (int flips = rng() % 4; flips > 0; --flips) f[14 + rng() % (f.size() - 14)] ^= static_cast<std::uint8_t>(1u << (rng() % 8));
    if (rng() % 4 == 0) f.resize(rng() % (f.size() + 1));
    auto* buf = new std::uint8_t[f.size()];
    std::copy(f.begin(), f.end(), buf);
    const LocalResult r = handle_local_frame(buf, static_cast<std::uint32_t>(f.size()), itf_, neighbours_, round, learnt_);
    if (r.action == Action::kPunt) {
      ++punted;
      ASSERT_EQ(r.event, Handled::kHaAdvertsReceived);
      const PuntedPayload p = punted_payload(buf);
      ASSERT_LE(std::size_t{p.offset} + p.len, f.size()) << test::to_hex(f);
      const std::uint32_t dst = static_cast<std::uint32_t>(buf[30] << 24 | buf[31] << 16 | buf[32] << 8 | buf[33]);
      ASSERT_TRUE(itf_.owns_primary(net::Ipv4Addr{dst})) << test::to_hex(f);
      ASSERT_EQ(buf[p.offset - 6] << 8 | buf[p.offset - 5], kHaPort) << "to the HA port";
    }
    delete[] buf;
  }
  EXPECT_GT(punted, 1000);
}
