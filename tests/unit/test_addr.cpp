#include <gtest/gtest.h>

#include "dataplane/net/addr.hpp"

using tandem::net::Ipv4Addr;
using tandem::net::Ipv4Prefix;
using tandem::net::MacAddr;

TEST(Ipv4Addr, ParsesAndFormatsDottedQuads) {
  EXPECT_EQ(Ipv4Addr::parse("10.0.0.1")->value, 0x0a000001u);
  EXPECT_EQ(Ipv4Addr::parse("255.255.255.255")->value, 0xffffffffu);
  EXPECT_EQ(Ipv4Addr::parse("0.0.0.0")->value, 0u);
  EXPECT_EQ(Ipv4Addr{0xc0a80a01}.to_string(), "192.168.10.1");
}

TEST(Ipv4Addr, RejectsAnythingElse) {
  for (const char* bad : {"", "10.0.0", "10.0.0.1.", "10.0.0.256", "10.0.0.-1", "10..0.1",
                          "010.0.0.1", "10.0.0.1 ", " 10.0.0.1", "a.b.c.d", "1000.0.0.1", "10.0.0.1/24"}) {
    EXPECT_FALSE(Ipv4Addr::parse(bad)) << bad;
  }
}

TEST(Ipv4Prefix, ParsesMasksAndContains) {
  const auto p = Ipv4Prefix::parse("10.1.2.3/24");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->length, 24);
  EXPECT_EQ(p->mask(), 0xffffff00u);
  EXPECT_EQ(p->network().to_string(), "10.1.2.0");
  EXPECT_EQ(p->broadcast().to_string(), "10.1.2.255");
  EXPECT_TRUE(p->contains(*Ipv4Addr::parse("10.1.2.200")));
  EXPECT_FALSE(p->contains(*Ipv4Addr::parse("10.1.3.1")));
  EXPECT_EQ(p->to_string(), "10.1.2.3/24");
  EXPECT_EQ(Ipv4Prefix::parse("0.0.0.0/0")->mask(), 0u);
  EXPECT_EQ(Ipv4Prefix::parse("1.2.3.4/32")->mask(), 0xffffffffu);
  for (const char* bad : {"10.0.0.1", "10.0.0.1/", "10.0.0.1/33", "10.0.0.1/-1", "10.0.0.1/08", "/24"})
    EXPECT_FALSE(Ipv4Prefix::parse(bad)) << bad;
}

TEST(MacAddr, ParsesFormatsAndClassifies) {
  const auto m = MacAddr::parse("02:AB:cd:00:10:ff");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->to_string(), "02:ab:cd:00:10:ff");
  EXPECT_FALSE(m->is_multicast());
  EXPECT_TRUE(MacAddr::parse("01:00:5e:00:00:01")->is_multicast());
  EXPECT_TRUE(MacAddr::broadcast().is_broadcast());
  EXPECT_TRUE(MacAddr{}.is_zero());
  for (const char* bad : {"", "02:ab:cd:00:10", "02-ab-cd-00-10-ff", "02:ab:cd:00:10:fg", "02:ab:cd:00:10:ff:"})
    EXPECT_FALSE(MacAddr::parse(bad)) << bad;
}
