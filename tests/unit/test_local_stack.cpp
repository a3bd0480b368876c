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
