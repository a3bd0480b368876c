// What a reload can apply live and what waits for a restart.
#include "controlplane/config/config_diff.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace {

using tandem::config::Config;
using tandem::config::diff_configs;
using tandem::net::Ipv4Prefix;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

Config two_ports() {
  auto r = tandem::config::parse_config(R"([unit]
id = 1
name = "a"
[[port]]
name = "north"
device = "net_af_xdp0,iface=eth1"
address = "10.0.0.2/24"
[[port]]
name = "south"
device = "net_af_xdp1,iface=eth2"
address = "10.0.1.2/24"
secondary_addresses = ["10.0.1.9/24"]
)", "t.toml");
  EXPECT_THAT(r.errors, IsEmpty());
  return *r.config;
}

TEST(ConfigDiff, IdenticalConfigsDifferInNothing) {
  EXPECT_TRUE(diff_configs(two_ports(), two_ports()).empty());
}

TEST(ConfigDiff, AddressChangesAreLivePerPort) {
  Config next = two_ports();
  next.ports[1].secondary_addresses.push_back(*Ipv4Prefix::parse("10.0.1.10/24"));
  auto d = diff_configs(two_ports(), next);
  EXPECT_THAT(d.ports_with_new_addresses, ElementsAre(1u));
  EXPECT_THAT(d.needs_restart, IsEmpty());

  next = two_ports();
  next.ports[0].address = *Ipv4Prefix::parse("10.0.0.3/24");
  d = diff_configs(two_ports(), next);
  EXPECT_THAT(d.ports_with_new_addresses, ElementsAre(0u));
}

TEST(ConfigDiff, BlocklistAndLogLevelAreLive) {
  Config next = two_ports();
  next.xdp.blocklist.push_back(*Ipv4Prefix::parse("192.0.2.0/24"));
  next.log.level = "debug";
  const auto d = diff_configs(two_ports(), next);
  EXPECT_TRUE(d.blocklist_changed);
  EXPECT_TRUE(d.log_level_changed);
  EXPECT_THAT(d.needs_restart, IsEmpty());
}

TEST(ConfigDiff, EverythingElseNeedsARestart) {
  Config next = two_ports();
  next.unit.id = 2;
  next.eal.memory_mb = 1024;
  next.worker.burst_size = 64;
  next.neighbour.capacity = 16;
  next.xdp.program = "/x.o";
  next.ports[1].mtu = 9000;
  next.ports[1].secondary_addresses.clear();  // live, but the port also changed otherwise
  const auto d = diff_configs(two_ports(), next);
  EXPECT_THAT(d.needs_restart, ElementsAre("unit", "eal", "worker", "neighbour", "xdp.program", "port[1] (south)"));
  EXPECT_THAT(d.ports_with_new_addresses, IsEmpty());
}

TEST(ConfigDiff, MetricsEndpointNeedsARestart) {
  Config next = two_ports();
  next.metrics.listen = "127.0.0.1:9469";
  next.metrics.address = tandem::net::Ipv4Addr{0x7f000001};
  next.metrics.port = 9469;
  EXPECT_THAT(diff_configs(two_ports(), next).needs_restart, ElementsAre("metrics"));
  Config moved = next;
  moved.metrics.listen = "127.0.0.1:9470";
  moved.metrics.port = 9470;
  EXPECT_THAT(diff_configs(next, moved).needs_restart, ElementsAre("metrics"));
  EXPECT_TRUE(diff_configs(next, next).empty());
}

TEST(ConfigDiff, AddingOrRemovingPortsNeedsARestart) {
  Config next = two_ports();
  next.ports.pop_back();
  EXPECT_THAT(diff_configs(two_ports(), next).needs_restart, ElementsAre("port (ports added or removed)"));
}

}  // namespace
