#include <gtest/gtest.h>

#include "dataplane/net/arp.hpp"
#include "dataplane/net/icmp.hpp"
#include "tests/unit/frames.hpp"

using namespace tandem;
using test::Bytes;

namespace {
const test::Mac kUs = {0x02, 0x00, 0x00, 0x00, 0x00, 0x01};
const test::Mac kPeer = {0x02, 0x00, 0x00, 0x00, 0x00, 0x02};
net::MacAddr mac(const test::Mac& m) { return net::MacAddr{m}; }
}  // namespace

TEST(Arp, ParsesEthernetIpv4Arp) {
  const Bytes f = test::ethernet(test::kBroadcast, kPeer, 0x0806,
                                 test::arp(1, kPeer, test::ip("10.0.0.2"), {}, test::ip("10.0.0.1")));
  const auto m = net::parse_arp(f.data(), f.size());
  ASSERT_TRUE(m);
  EXPECT_EQ(m->op, 1);
  EXPECT_EQ(m->sender_mac, mac(kPeer));
  EXPECT_EQ(m->sender_ip.to_string(), "10.0.0.2");
  EXPECT_EQ(m->target_ip.to_string(), "10.0.0.1");
  EXPECT_TRUE(m->target_mac.is_zero());
}

TEST(Arp, RejectsShortAndForeignArp) {
  Bytes f = test::ethernet(test::kBroadcast, kPeer, 0x0806,
                           test::arp(1, kPeer, test::ip("10.0.0.2"), {}, test::ip("10.0.0.1")), false);
  ASSERT_EQ(f.size(), 42u);
  EXPECT_FALSE(net::parse_arp(f.data(), 41));
  Bytes bad = f;
  bad[14 + 0] = 0x01;  // htype 0x0101
  EXPECT_FALSE(net::parse_arp(bad.data(), bad.size()));
  bad = f;
  bad[14 + 2] = 0x86;  // ptype 0x86dd (IPv6)
  bad[14 + 3] = 0xdd;
  EXPECT_FALSE(net::parse_arp(bad.data(), bad.size()));
  bad = f;
  bad[14 + 4] = 8;  // hlen
  EXPECT_FALSE(net::parse_arp(bad.data(), bad.size()));
  bad = f;
  bad[14 + 5] = 16;  // plen
  EXPECT_FALSE(net::parse_arp(bad.data(), bad.size()));
}

TEST(Arp, RequestBecomesReplyByteForByte) {
  Bytes f = test::ethernet(test::kBroadcast, kPeer, 0x0806,
                           test::arp(1, kPeer, test::ip("10.0.0.2"), {}, test::ip("10.0.0.1")));
  const auto req = net::parse_arp(f.data(), f.size());
  ASSERT_TRUE(req);
  net::arp_request_to_reply(f.data(), *req, mac(kUs));
  const Bytes expected = test::ethernet(kPeer, kUs, 0x0806,
                                        test::arp(2, kUs, test::ip("10.0.0.1"), kPeer, test::ip("10.0.0.2")));
  EXPECT_EQ(f, expected) << test::to_hex(f);
}

TEST(Arp, BuildsBroadcastRequest) {
  Bytes buf(128, 0xee);
  const std::size_t n = net::build_arp_request(buf.data(), buf.size(), mac(kUs), net::Ipv4Addr{test::ip("10.0.0.1")},
                                               net::Ipv4Addr{test::ip("10.0.0.254")});
  ASSERT_EQ(n, 60u);
  buf.resize(n);
  EXPECT_EQ(buf, test::ethernet(test::kBroadcast, kUs, 0x0806,
                                test::arp(1, kUs, test::ip("10.0.0.1"), {}, test::ip("10.0.0.254"))));
  Bytes small(59);
  EXPECT_EQ(net::build_arp_request(small.data(), small.size(), mac(kUs), {}, {}), 0u);
}

TEST(Icmp, EchoRequestBecomesReplyWithValidChecksums) {
  for (std::size_t data_len : {0u, 1u, 56u, 57u, 1472u}) {
    test::Ipv4Fields req_ip{.src = test::ip("10.0.0.2"), .dst = test::ip("10.0.0.1"), .ttl = 17};
    Bytes f = test::ethernet(kUs, kPeer, 0x0800,
                             test::ipv4(req_ip, test::icmp_echo(8, 0x4242, 9, test::pattern(data_len))));
    net::icmp_echo_request_to_reply(f.data(), 14, 20);

    test::Ipv4Fields rep_ip{.src = test::ip("10.0.0.1"), .dst = test::ip("10.0.0.2"), .ttl = 64};
    const Bytes expected = test::ethernet(kPeer, kUs, 0x0800,
                                          test::ipv4(rep_ip, test::icmp_echo(0, 0x4242, 9, test::pattern(data_len))));
    EXPECT_EQ(f, expected) << "payload " << data_len << "\n" << test::to_hex(f);
  }
}

TEST(Icmp, ReplyKeepsIpOptions) {
  const Bytes options = test::hex("01 01 01 00");  // NOP NOP NOP EOL
  test::Ipv4Fields req_ip{.src = test::ip("10.0.0.2"), .dst = test::ip("10.0.0.1"), .options = options};
  Bytes f = test::ethernet(kUs, kPeer, 0x0800, test::ipv4(req_ip, test::icmp_echo(8, 1, 2, test::pattern(20))));
  net::icmp_echo_request_to_reply(f.data(), 14, 24);
  test::Ipv4Fields rep_ip{.src = test::ip("10.0.0.1"), .dst = test::ip("10.0.0.2"), .options = options};
  EXPECT_EQ(f, test::ethernet(kPeer, kUs, 0x0800, test::ipv4(rep_ip, test::icmp_echo(0, 1, 2, test::pattern(20)))));
}
