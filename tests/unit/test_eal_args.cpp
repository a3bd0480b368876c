// Tests of the EAL command line built from a configuration, and of the device helpers of a port.

#include "controlplane/config/eal_args.hpp"

#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace {

using tandem::config::Config;
using tandem::config::PortConfig;
using ::testing::ElementsAre;

PortConfig port(const std::string& name, const std::string& device) {
  PortConfig p;
  p.name = name;
  p.device = device;
  return p;
}

Config vdev_config() {
  Config c;
  c.unit.id = 1;
  c.unit.name = "a";
  c.eal.lcores = "1-2";
  c.eal.memory_mb = 256;
  c.eal.file_prefix = "tandem-a";
  c.ports.push_back(port("north", "net_af_xdp0,iface=eth1"));
  c.ports.push_back(port("south", "net_ring0"));
  return c;
}

TEST(EalArgs, VirtualPortsGiveVdevsAndNoPci) {
  const Config c = vdev_config();
  EXPECT_THAT(tandem::config::eal_arguments(c),
              ElementsAre("tandemd", "-l", "1-2", "-m", "256", "--file-prefix", "tandem-a", "--no-pci",
                          "--vdev", "net_af_xdp0,iface=eth1", "--vdev", "net_ring0"));
}

TEST(EalArgs, NoHugeAndExtraArgsInTheirPlaces) {
  Config c = vdev_config();
  c.eal.no_huge = true;
  c.eal.extra_args = {"--in-memory", "--log-level=lib.eal:debug"};
  EXPECT_THAT(tandem::config::eal_arguments(c, "/usr/bin/tandemd"),
              ElementsAre("/usr/bin/tandemd", "-l", "1-2", "-m", "256", "--file-prefix", "tandem-a",
                          "--no-huge", "--no-pci", "--vdev", "net_af_xdp0,iface=eth1", "--vdev",
                          "net_ring0", "--in-memory", "--log-level=lib.eal:debug"));
}

TEST(EalArgs, PciPortIsAllowListedAndPciIsScanned) {
  Config c = vdev_config();
  c.ports[0] = port("north", "0000:03:00.0");
  EXPECT_THAT(tandem::config::eal_arguments(c),
              ElementsAre("tandemd", "-l", "1-2", "-m", "256", "--file-prefix", "tandem-a", "-a",
                          "0000:03:00.0", "--vdev", "net_ring0"));
}

TEST(EalArgs, PciDevargsArePassedWhole) {
  Config c = vdev_config();
  c.ports = {port("north", "0000:03:00.0,rxq_pkt_pad_en=1"), port("south", "03:00.1")};
  EXPECT_THAT(tandem::config::eal_arguments(c),
              ElementsAre("tandemd", "-l", "1-2", "-m", "256", "--file-prefix", "tandem-a", "-a",
                          "0000:03:00.0,rxq_pkt_pad_en=1", "-a", "03:00.1"));
}

TEST(EalArgs, ParsedMinimalConfigGivesItsDefaults) {
  const auto r = tandem::config::parse_config(R"([unit]
id = 3
name = "edge"
[[port]]
name = "p0"
device = "net_tap0,iface=t0"
address = "10.0.0.2/24"
)",
                                              "t.toml");
  ASSERT_TRUE(r.config.has_value());
  EXPECT_THAT(tandem::config::eal_arguments(*r.config),
              ElementsAre("tandemd", "-l", "0", "-m", "512", "--file-prefix", "tandem-edge", "--no-pci",
                          "--vdev", "net_tap0,iface=t0"));
}

TEST(PortDevice, AfXdpDevargs) {
  const PortConfig p = port("p", "net_af_xdp0,iface=eth1");
  EXPECT_FALSE(p.is_pci());
  EXPECT_EQ(p.device_name(), "net_af_xdp0");
}

TEST(PortDevice, FullPciAddress) {
  const PortConfig p = port("p", "0000:03:00.0");
  EXPECT_TRUE(p.is_pci());
  EXPECT_EQ(p.device_name(), "0000:03:00.0");
}

TEST(PortDevice, ShortPciAddress) {
  const PortConfig p = port("p", "03:00.0");
  EXPECT_TRUE(p.is_pci());
  EXPECT_EQ(p.device_name(), "03:00.0");
}

TEST(PortDevice, PciAddressWithDevargs) {
  const PortConfig p = port("p", "0000:af:00.1,representor=[0-3]");
  EXPECT_TRUE(p.is_pci());
  EXPECT_EQ(p.device_name(), "0000:af:00.1");
}

TEST(PortDevice, RingWithoutDevargs) {
  const PortConfig p = port("p", "net_ring0");
  EXPECT_FALSE(p.is_pci());
  EXPECT_EQ(p.device_name(), "net_ring0");
}

TEST(PortDevice, VdevWithColonsInItsDevargsIsNotPci) {
  const PortConfig p = port("p", "net_tap0,mac=02:00:00:00:00:01");
  EXPECT_FALSE(p.is_pci());
  EXPECT_EQ(p.device_name(), "net_tap0");
}

}  // namespace

namespace {

TEST(EalArgs, SteeredAfXdpPortsGetTheSteeringProgram) {
  Config c = vdev_config();
  c.ports[0].xdp_steering = true;
  c.xdp.program = "/usr/lib/tandem/bpf/steer.bpf.o";
  EXPECT_THAT(tandem::config::eal_arguments(c),
              ElementsAre("tandemd", "-l", "1-2", "-m", "256", "--file-prefix", "tandem-a", "--no-pci", "--vdev",
                          "net_af_xdp0,iface=eth1,xdp_prog=/usr/lib/tandem/bpf/steer.bpf.o", "--vdev", "net_ring0"));
}

}  // namespace
