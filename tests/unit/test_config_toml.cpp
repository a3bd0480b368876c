// config::to_toml: the running configuration written back as a file parses to the same values.
#include "controlplane/config/to_toml.hpp"

#include <gtest/gtest.h>

#ifndef TANDEM_TEST_DATA
#error "build with -DTANDEM_TEST_DATA=\"<absolute path of tests/data>\""
#endif

namespace {

using tandem::config::Config;
using tandem::config::load_config;
using tandem::config::parse_config;
using tandem::config::to_toml;

// parse(to_toml(c)) == c, and writing it again gives the same text.
void ExpectRoundTrip(const Config& c) {
  const std::string text = to_toml(c);
  auto again = parse_config(text, c.source);
  ASSERT_TRUE(again.config.has_value()) << (again.errors.empty() ? "" : again.errors[0].to_string()) << "\n" << text;
  EXPECT_TRUE(*again.config == c) << text;
  EXPECT_EQ(to_toml(*again.config), text);
}

TEST(ConfigToToml, GoodFileRoundTrips) {
  auto r = load_config(TANDEM_TEST_DATA "/config/good.toml");
  ASSERT_TRUE(r.config.has_value());
  ExpectRoundTrip(*r.config);
}

TEST(ConfigToToml, MinimalFileRoundTripsWithEveryDefaultWritten) {
  auto r = load_config(TANDEM_TEST_DATA "/config/minimal.toml");
  ASSERT_TRUE(r.config.has_value());
  ExpectRoundTrip(*r.config);
  const std::string text = to_toml(*r.config);
  EXPECT_NE(text.find("tcp_established_ms = 900000"), std::string::npos) << text;
  EXPECT_NE(text.find("mode = 0o660"), std::string::npos) << text;
}

TEST(ConfigToToml, ServicesOfEveryModeWithDisabledBackendsRoundTrip) {
  auto r = parse_config(R"([unit]
id = 7
name = "lab-a"
[ctl]
socket = "/tmp/x.sock"
mode = 0o600
allowed_groups = ["tandem"]
[[port]]
name = "north"
device = "net_ring0"
address = "10.0.0.2/24"
secondary_addresses = ["10.0.0.3/24"]
gateway = "10.0.0.1"
[[service]]
name = "web"
vip = "10.0.0.10"
port = 80
mode = "fullnat"
maglev_size = 251
local_addresses = ["10.0.1.100", "10.0.1.101"]
[[service.backend]]
address = "10.0.1.1"
port = 8080
weight = 3
[[service.backend]]
address = "10.0.1.2"
enabled = false
[[service]]
name = "dns"
vip = "10.0.0.10"
protocol = "udp"
port = 53
mode = "dsr"
[[service.backend]]
address = "10.0.1.3"
[[service]]
name = "all"
vip = "10.0.0.11"
mode = "tunnel"
)", "inline.toml");
  ASSERT_TRUE(r.config.has_value()) << r.errors[0].to_string();
  ExpectRoundTrip(*r.config);

  // The services alone (what config sync pushes) read back as the same services, under the
  // unit's own ports, and write the same text again.
  const std::string services = tandem::config::services_toml(r.config->services);
  Config base = *r.config;
  base.services.clear();
  auto back = tandem::config::parse_services(services, "pushed", base);
  ASSERT_TRUE(back.config.has_value()) << back.errors[0].to_string() << "\n" << services;
  EXPECT_TRUE(back.config->services == r.config->services) << services;
  EXPECT_TRUE(*back.config == *r.config);
  EXPECT_EQ(tandem::config::services_toml(back.config->services), services);
  EXPECT_EQ(tandem::config::services_toml({}), "");
}

TEST(ConfigToToml, PushedServicesAreCheckedByTheFilesRules) {
  auto r = parse_config(R"([unit]
id = 7
name = "lab-a"
[[port]]
name = "north"
device = "net_ring0"
address = "10.0.0.2/24"
)", "inline.toml");
  ASSERT_TRUE(r.config.has_value()) << r.errors[0].to_string();
  const auto refused = [&](const std::string& text, const std::string& what) {
    auto p = tandem::config::parse_services(text, "pushed", *r.config);
    EXPECT_FALSE(p.config.has_value()) << what;
    return p.errors.empty() ? std::string() : p.errors[0].to_string();
  };
  EXPECT_NE(refused("[[service]]\nname = \"web\"\nvip = \"10.0.0.2\"\nport = 80\n", "a VIP that is a port address")
                .find("pushed:"), std::string::npos);
  refused("[unit]\nid = 3\n", "anything but services");
  refused("[[service]]\nname = \"web\"\n", "a service without a VIP");
  refused("[[service]\n", "not TOML");
  auto ok = tandem::config::parse_services("", "pushed", *r.config);
  ASSERT_TRUE(ok.config.has_value()) << "no services at all";
  EXPECT_TRUE(ok.config->services.empty());
}

}  // namespace
