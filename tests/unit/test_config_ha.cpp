// The configuration's [ha] table (with [[ha.group]] and [[ha.track]]) and [service.health_check]:
// typed values of good files, defaults, every error with its place (file:line:column) and key,
// and to_toml round trips (an inline HA key is never printed).
//
// Positions are found in the test's own text (line and column of a key's value, or of a table
// header), so the inputs can be edited without recounting.
#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "controlplane/config/config.hpp"
#include "controlplane/config/to_toml.hpp"

namespace tandem::config {

inline void PrintTo(const ConfigError& e, std::ostream* os) { *os << '"' << e.to_string() << '"'; }

}  // namespace tandem::config

namespace {

using tandem::config::BackendDownPolicy;
using tandem::config::Config;
using tandem::config::ConfigError;
using tandem::config::FloatingAddress;
using tandem::config::HaGroupConfig;
using tandem::config::HaTrackConfig;
using tandem::config::HealthCheckType;
using tandem::config::ParseResult;
using tandem::config::TrackKind;
using tandem::net::Ipv4Addr;
using tandem::net::Ipv4Prefix;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::Eq;
using ::testing::Field;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

ParseResult parse(std::string_view text) { return tandem::config::parse_config(text, "t.toml"); }

struct Pos {
  std::uint32_t line = 0, column = 0;
};

// Where `needle` first occurs in `text` (after `from`, if given), plus `skip` characters.
Pos find(const std::string& text, std::string_view needle, std::size_t skip = 0, std::string_view from = {}) {
  const std::size_t start = from.empty() ? 0 : text.find(from);
  EXPECT_NE(start, std::string::npos) << from;
  const std::size_t at = text.find(needle, start);
  EXPECT_NE(at, std::string::npos) << needle;
  if (at == std::string::npos) return {};
  Pos p{1, 1};
  for (std::size_t i = 0; i < at + skip; ++i) {
    if (text[i] == '\n') ++p.line, p.column = 1;
    else ++p.column;
  }
  return p;
}
// The value of the first `key = ...` at the start of a line (after `from`).
Pos value_of(const std::string& text, std::string_view key, std::string_view from = {}) {
  const std::string needle = "\n" + std::string(key) + " = ";
  return find(text, needle, needle.size(), from);
}
// The n-th (0-based) table header `h` (`[ha]`, `[[ha.track]]`) at the start of a line.
Pos header(const std::string& text, std::string_view h, int n = 0) {
  const std::string line = "\n" + std::string(h) + "\n";
  std::size_t at = std::string::npos;
  for (int i = 0; i <= n; ++i) {
    at = text.find(line, at == std::string::npos ? 0 : at + 1);
    EXPECT_NE(at, std::string::npos) << h << " #" << n;
    if (at == std::string::npos) return {};
  }
  return {static_cast<std::uint32_t>(std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(at), '\n') + 2), 1};
}

::testing::Matcher<const ConfigError&> IsError(Pos p, const std::string& key, const std::string& message) {
  return AllOf(Field("file", &ConfigError::file, Eq(std::string("t.toml"))),
               Field("line", &ConfigError::line, Eq(p.line)), Field("column", &ConfigError::column, Eq(p.column)),
               Field("key", &ConfigError::key, Eq(key)), Field("message", &ConfigError::message, HasSubstr(message)));
}

void ExpectOneError(const std::string& text, Pos p, const std::string& key, const std::string& message) {
  const ParseResult r = parse(text);
  EXPECT_FALSE(r.config.has_value());
  EXPECT_THAT(r.errors, ElementsAre(IsError(p, key, message))) << text;
}

// `text` with the line `key = ...` (the first after `from`) replaced by `key = value`, or
// removed when `value` is empty; appended to the end when there is no such line.
std::string with(std::string text, std::string_view key, const std::string& value, std::string_view from = {}) {
  const std::size_t start = from.empty() ? 0 : text.find(from);
  const std::string needle = "\n" + std::string(key) + " = ";
  const std::size_t at = text.find(needle, start);
  if (at == std::string::npos) {
    if (!value.empty()) text += std::string(key) + " = " + value + "\n";
    return text;
  }
  const std::size_t end = text.find('\n', at + 1);
  text.replace(at + 1, end - at, value.empty() ? "" : std::string(key) + " = " + value + "\n");
  return text;
}

// Two ports (north0 has a gateway) and nothing else.
const std::string kPorts = R"([unit]
id = 1
name = "a"
[[port]]
name = "north0"
device = "net_ring0"
address = "203.0.113.2/24"
gateway = "203.0.113.1"
[[port]]
name = "south0"
device = "net_ring1"
address = "10.0.2.2/24"
)";

// The keys [ha] requires.
const std::string kHa = R"([ha]
key_file = "/etc/tandem/ha.key"
sync_listen = "192.168.255.1:8693"
sync_peer = "192.168.255.2:8693"
data_port = "north0"
data_peer = "203.0.113.3"
)";

// Service "web" with one backend; `extra` goes into its [[service]] table.
std::string service(const std::string& extra = "") {
  return "[[service]]\nname = \"web\"\nvip = \"198.51.100.10\"\nport = 80\n" + extra +
         "[[service.backend]]\naddress = \"10.0.2.21\"\n";
}

// Every [ha] key, groups and every kind of track.
const std::string kFullHa = kPorts + R"([ha]
priority = 200
preempt = true
advert_interval_ms = 20
dead_intervals = 4
hold_down_ms = 5000
key_file = "/etc/tandem/ha.key"
sync_listen = "192.168.255.1:8693"
sync_peer = "192.168.255.2:9693"
data_port = "north0"
data_peer = "203.0.113.3"
data_udp_port = 9000
garp_count = 5
garp_interval_ms = 50
[[ha.group]]
id = 1
floating_addresses = [ { port = "south0", address = "10.0.2.1/24" } ]
[[ha.group]]
id = 63
priority = 50
floating_addresses = [ { port = "south0", address = "10.0.2.254/24" }, { port = "north0", address = "203.0.113.200/24" } ]
[[ha.track]]
link = "south0"
[[ha.track]]
gateway = "north0"
weight = 30
[[ha.track]]
service = "web"
min_healthy = 2
weight = 50
[[service]]
name = "web"
vip = "198.51.100.10"
port = 80
group = 63
[[service.backend]]
address = "10.0.2.21"
[[service.backend]]
address = "10.0.2.22"
[[service]]
name = "dns"
vip = "198.51.100.10"
port = 53
protocol = "udp"
[[service.backend]]
address = "10.0.2.23"
)";

Config parsed(const std::string& text) {
  ParseResult r = parse(text);
  EXPECT_THAT(r.errors, IsEmpty()) << text;
  return r.config.value_or(Config{});
}

// parse(to_toml(c)) == c, and writing it again gives the same text.
void ExpectRoundTrip(const Config& c) {
  const std::string text = tandem::config::to_toml(c);
  const ParseResult again = tandem::config::parse_config(text, c.source);
  ASSERT_TRUE(again.config.has_value()) << (again.errors.empty() ? "" : again.errors[0].to_string()) << "\n" << text;
  EXPECT_TRUE(*again.config == c) << text;
  EXPECT_EQ(tandem::config::to_toml(*again.config), text);
}

// ---------------------------------------------------------------------------------------------
// [ha]: good files.

TEST(ConfigHa, EveryKeyOfAFullHaTable) {
  const Config c = parsed(kFullHa);
  const auto& ha = c.ha;
  EXPECT_TRUE(ha.enabled);
  EXPECT_EQ(ha.priority, 200);
  EXPECT_TRUE(ha.preempt);
  EXPECT_EQ(ha.advert_interval_ms, 20u);
  EXPECT_EQ(ha.dead_intervals, 4u);
  EXPECT_EQ(ha.hold_down_ms, 5000u);
  EXPECT_EQ(ha.key_file, "/etc/tandem/ha.key");
  EXPECT_EQ(ha.key, "");
  EXPECT_EQ(ha.sync_listen, "192.168.255.1:8693");
  EXPECT_EQ(ha.sync_address, *Ipv4Addr::parse("192.168.255.1"));
  EXPECT_EQ(ha.sync_port, 8693);
  EXPECT_EQ(ha.sync_peer, "192.168.255.2:9693");
  EXPECT_EQ(ha.sync_peer_address, *Ipv4Addr::parse("192.168.255.2"));
  EXPECT_EQ(ha.sync_peer_port, 9693);
  EXPECT_EQ(ha.data_port, "north0");
  EXPECT_EQ(ha.data_peer, *Ipv4Addr::parse("203.0.113.3"));
  EXPECT_EQ(ha.data_udp_port, 9000);
  EXPECT_EQ(ha.garp_count, 5u);
  EXPECT_EQ(ha.garp_interval_ms, 50u);

  ASSERT_EQ(ha.groups.size(), 2u);
  EXPECT_EQ(ha.groups[0], (HaGroupConfig{.id = 1, .priority = 0,
                                          .floating_addresses = {{"south0", *Ipv4Prefix::parse("10.0.2.1/24")}}}));
  EXPECT_EQ(ha.group_priority(ha.groups[0]), 200) << "the [ha] priority";
  EXPECT_EQ(ha.groups[1], (HaGroupConfig{.id = 63, .priority = 50,
                                          .floating_addresses = {{"south0", *Ipv4Prefix::parse("10.0.2.254/24")},
                                                                 {"north0", *Ipv4Prefix::parse("203.0.113.200/24")}}}));
  EXPECT_EQ(ha.group_priority(ha.groups[1]), 50) << "its own";

  ASSERT_EQ(ha.track.size(), 3u);
  EXPECT_EQ(ha.track[0], (HaTrackConfig{.kind = TrackKind::kPortLink, .port = "south0", .min_healthy = 1, .weight = 0}));
  EXPECT_EQ(ha.track[1], (HaTrackConfig{.kind = TrackKind::kGateway, .port = "north0", .min_healthy = 1, .weight = 30}));
  EXPECT_EQ(ha.track[2], (HaTrackConfig{.kind = TrackKind::kService, .service = "web", .min_healthy = 2, .weight = 50}));

  ASSERT_EQ(c.services.size(), 2u);
  EXPECT_EQ(c.services[0].group, 63);
  EXPECT_EQ(c.services[1].group, 1) << "the default group";
}

TEST(ConfigHa, DefaultsAndTheDefaultGroup) {
  const Config c = parsed(kPorts + kHa);
  const auto& ha = c.ha;
  EXPECT_TRUE(ha.enabled);
  EXPECT_EQ(ha.priority, 100);
  EXPECT_FALSE(ha.preempt);
  EXPECT_EQ(ha.advert_interval_ms, 10u);
  EXPECT_EQ(ha.dead_intervals, 3u);
  EXPECT_EQ(ha.hold_down_ms, 1000u);
  EXPECT_EQ(ha.data_udp_port, 8694);
  EXPECT_EQ(ha.garp_count, 3u);
  EXPECT_EQ(ha.garp_interval_ms, 100u);
  EXPECT_EQ(ha.sync_port, 8693);
  EXPECT_EQ(ha.sync_peer_port, 8693);
  ASSERT_EQ(ha.groups.size(), 1u) << "one group 1 without [[ha.group]]";
  EXPECT_EQ(ha.groups[0], HaGroupConfig{});
  EXPECT_EQ(ha.groups[0].id, 1);
  EXPECT_EQ(ha.group_priority(ha.groups[0]), 100);
  EXPECT_TRUE(ha.groups[0].floating_addresses.empty());
  EXPECT_TRUE(ha.track.empty());
}

TEST(ConfigHa, NoHaTableNoHa) {
  const Config c = parsed(kPorts + service());
  EXPECT_FALSE(c.ha.enabled);
  EXPECT_TRUE(c.ha.groups.empty());
  EXPECT_EQ(c.services[0].group, 1);
}

TEST(ConfigHa, AnInlineKeyOfSixteenBytes) {
  const Config c = parsed(kPorts + with(kHa, "key_file", "") + "key = \"0123456789abcdef\"\n");
  EXPECT_EQ(c.ha.key, "0123456789abcdef");
  EXPECT_EQ(c.ha.key_file, "");
}

TEST(ConfigHa, RangeLimitsAreAccepted) {
  std::string text = kPorts + kHa;
  text = with(text, "priority", "255");
  text = with(text, "advert_interval_ms", "10000");
  text = with(text, "dead_intervals", "100");
  text = with(text, "hold_down_ms", "0");
  text = with(text, "data_udp_port", "65535");
  text = with(text, "garp_count", "0");
  text += "[[ha.group]]\nid = 63\npriority = 1\n";
  text += "[[ha.track]]\nlink = \"north0\"\nweight = 254\n";
  const Config c = parsed(text);
  EXPECT_EQ(c.ha.priority, 255);
  EXPECT_EQ(c.ha.hold_down_ms, 0u);
  EXPECT_EQ(c.ha.groups[0].id, 63);
  EXPECT_EQ(c.ha.track[0].weight, 254);
}

// ---------------------------------------------------------------------------------------------
// [ha]: errors, one at a time.

TEST(ConfigHaErrors, NoKeyAtAll) {
  const std::string text = kPorts + with(kHa, "key_file", "");
  ExpectOneError(text, header(text, "[ha]"), "ha", "needs key or key_file");
}

TEST(ConfigHaErrors, BothKeyAndKeyFile) {
  const std::string text = kPorts + kHa + "key = \"0123456789abcdef\"\n";
  ExpectOneError(text, value_of(text, "key_file"), "ha.key_file", "not both");
}

TEST(ConfigHaErrors, KeyShorterThanSixteenBytes) {
  const std::string text = kPorts + with(kHa, "key_file", "") + "key = \"0123456789abcde\"\n";
  ExpectOneError(text, value_of(text, "key"), "ha.key", "at least 16 bytes");
}

TEST(ConfigHaErrors, KeyFileThatIsNotAnAbsolutePath) {
  const std::string text = kPorts + with(kHa, "key_file", "\"ha.key\"");
  ExpectOneError(text, value_of(text, "key_file"), "ha.key_file", "absolute path");
}

TEST(ConfigHaErrors, BadSyncAddresses) {
  for (const char* bad : {"\"192.168.255.1\"", "\"192.168.255.1:0\"", "\"192.168.255.1:65536\"", "\"sync:8693\"",
                          "\"192.168.255.1:\"", "8693"}) {
    SCOPED_TRACE(bad);
    std::string text = kPorts + with(kHa, "sync_listen", bad);
    ExpectOneError(text, value_of(text, "sync_listen"), "ha.sync_listen", std::string(bad) == "8693" ? "expected a string" : "");
    text = kPorts + with(kHa, "sync_peer", bad);
    ExpectOneError(text, value_of(text, "sync_peer"), "ha.sync_peer", "");
  }
  std::string text = kPorts + with(kHa, "sync_listen", "\"192.168.255.1\"");
  EXPECT_THAT(parse(text).errors[0].message, HasSubstr("ADDRESS:PORT"));
  text = kPorts + with(kHa, "sync_listen", "\"192.168.255.1:0\"");
  EXPECT_THAT(parse(text).errors[0].message, HasSubstr("between 1 and 65535"));
}

TEST(ConfigHaErrors, RequiredKeysAreNamed) {
  for (const char* key : {"sync_listen", "sync_peer", "data_port", "data_peer"}) {
    SCOPED_TRACE(key);
    const std::string text = kPorts + with(kHa, key, "");
    ExpectOneError(text, header(text, "[ha]"), std::string("ha.") + key, "is required");
  }
}

TEST(ConfigHaErrors, DataPortThatIsNoPort) {
  const std::string text = kPorts + with(kHa, "data_port", "\"east0\"");
  ExpectOneError(text, value_of(text, "data_port"), "ha.data_port", "no [[port]] is named \"east0\"");
}

TEST(ConfigHaErrors, DataPeerOutsideTheDataPortsSubnetOrItsOwnAddress) {
  std::string text = kPorts + with(kHa, "data_peer", "\"10.0.2.3\"");
  ExpectOneError(text, value_of(text, "data_peer"), "ha.data_peer",
                 "must be inside 203.0.113.2/24, the network of data_port \"north0\"");
  text = kPorts + with(kHa, "data_peer", "\"203.0.113.2\"");
  ExpectOneError(text, value_of(text, "data_peer"), "ha.data_peer", "is this unit's own address");
  text = kPorts + with(kHa, "data_peer", "\"203.0.113\"");
  ExpectOneError(text, value_of(text, "data_peer"), "ha.data_peer", "must be an IPv4 address");
  // On the other port's network it is fine when that port is the data port.
  text = kPorts + with(with(kHa, "data_peer", "\"10.0.2.3\""), "data_port", "\"south0\"");
  EXPECT_THAT(parse(text).errors, IsEmpty());
}

TEST(ConfigHaErrors, OutOfRangeValues) {
  const struct {
    const char* key;
    const char* value;
    const char* message;
  } cases[] = {
      {"priority", "0", "between 1 and 255"},          {"priority", "256", "between 1 and 255"},
      {"advert_interval_ms", "0", "between 1 and 10000"}, {"dead_intervals", "1", "between 2 and 100"},
      {"hold_down_ms", "600001", "between 0 and 600000"}, {"data_udp_port", "0", "between 1 and 65535"},
      {"garp_count", "101", "between 0 and 100"},       {"garp_interval_ms", "0", "between 1 and 60000"},
      {"preempt", "1", "expected true or false"},
  };
  for (const auto& k : cases) {
    SCOPED_TRACE(std::string(k.key) + " = " + k.value);
    const std::string text = kPorts + kHa + k.key + " = " + k.value + "\n";
    ExpectOneError(text, value_of(text, k.key), std::string("ha.") + k.key, k.message);
  }
}

TEST(ConfigHaErrors, UnknownKeys) {
  std::string text = kPorts + kHa + "priorty = 5\n";
  ExpectOneError(text, find(text, "priorty"), "ha.priorty", "unknown key");
  text = kPorts + kHa + "[[ha.group]]\nid = 2\nvips = []\n";
  ExpectOneError(text, find(text, "vips"), "ha.group[0].vips", "unknown key");
  text = kPorts + kHa + "[[ha.track]]\nlink = \"north0\"\nweigth = 5\n";
  ExpectOneError(text, find(text, "weigth"), "ha.track[0].weigth", "unknown key");
}

TEST(ConfigHaErrors, DuplicateGroupId) {
  const std::string text = kPorts + kHa + "[[ha.group]]\nid = 4\n[[ha.group]]\nid = 5\n[[ha.group]]\nid = 4\n";
  ExpectOneError(text, value_of(text, "id", "id = 5"), "ha.group[2].id", "group 4 is defined twice");
}

TEST(ConfigHaErrors, GroupIdOutOfRange) {
  for (const char* id : {"0", "64", "-1"}) {
    SCOPED_TRACE(id);
    const std::string text = kPorts + kHa + "[[ha.group]]\nid = " + id + "\n";
    ExpectOneError(text, value_of(text, "id", "[[ha.group]]"), "ha.group[0].id", "between 1 and 63");
  }
  const std::string text = kPorts + kHa + "[[ha.group]]\npriority = 7\n";
  ExpectOneError(text, header(text, "[[ha.group]]"), "ha.group[0].id", "is required");
}

// A bad id must not also be reported as a duplicate of group 1 (the default it kept).
TEST(ConfigHaErrors, GroupIdOutOfRangeNextToGroupOne) {
  const std::string text = kPorts + kHa + "[[ha.group]]\nid = 1\n[[ha.group]]\nid = 0\n";
  ExpectOneError(text, value_of(text, "id", "id = 1\n[[ha.group]]"), "ha.group[1].id", "between 1 and 63");
}

TEST(ConfigHaErrors, FloatingAddressErrors) {
  std::string text = kPorts + kHa + "[[ha.group]]\nid = 1\nfloating_addresses = [ { port = \"east0\", address = \"10.0.2.1/24\" } ]\n";
  ExpectOneError(text, find(text, "\"east0\""), "ha.group[0].floating_addresses[0].port", "no [[port]] is named \"east0\"");
  text = kPorts + kHa + "[[ha.group]]\nid = 1\nfloating_addresses = [ { port = \"south0\", address = \"10.0.2.1\" } ]\n";
  ExpectOneError(text, find(text, "\"10.0.2.1\""), "ha.group[0].floating_addresses[0].address", "prefix length");
  text = kPorts + kHa + "[[ha.group]]\nid = 1\nfloating_addresses = [ { port = \"south0\" } ]\n";
  ExpectOneError(text, find(text, "{ port"), "ha.group[0].floating_addresses[0].address", "is required");
  text = kPorts + kHa + "[[ha.group]]\nid = 1\nfloating_addresses = [ \"10.0.2.1/24\" ]\n";
  ExpectOneError(text, find(text, "\"10.0.2.1/24\""), "ha.group[0].floating_addresses[0]", "expected a { port");
  text = kPorts + kHa + "[[ha.group]]\nid = 1\nfloating_addresses = \"10.0.2.1/24\"\n";
  ExpectOneError(text, value_of(text, "floating_addresses"), "ha.group[0].floating_addresses", "expected an array");
}

TEST(ConfigHaErrors, TrackWithNoKindOrTwoKinds) {
  std::string text = kPorts + kHa + "[[ha.track]]\nweight = 10\n";
  ExpectOneError(text, header(text, "[[ha.track]]"), "ha.track[0]", "needs exactly one of link = PORT, gateway = PORT or service = NAME");
  text = kPorts + kHa + "[[ha.track]]\nlink = \"north0\"\n[[ha.track]]\nlink = \"north0\"\ngateway = \"north0\"\n";
  ExpectOneError(text, header(text, "[[ha.track]]", 1), "ha.track[1]", "needs exactly one of");
  text = kPorts + kHa + service() + "[[ha.track]]\nservice = \"web\"\nlink = \"north0\"\n";
  ExpectOneError(text, header(text, "[[ha.track]]"), "ha.track[0]", "needs exactly one of");
}

TEST(ConfigHaErrors, TrackedPortsMustExistAndAGatewayTrackNeedsAGateway) {
  std::string text = kPorts + kHa + "[[ha.track]]\nlink = \"east0\"\n";
  ExpectOneError(text, value_of(text, "link"), "ha.track[0].link", "no [[port]] is named \"east0\"");
  text = kPorts + kHa + "[[ha.track]]\ngateway = \"east0\"\n";
  ExpectOneError(text, value_of(text, "gateway", "[[ha.track]]"), "ha.track[0].gateway", "no [[port]] is named \"east0\"");
  text = kPorts + kHa + "[[ha.track]]\ngateway = \"south0\"\n";
  ExpectOneError(text, value_of(text, "gateway", "[[ha.track]]"), "ha.track[0].gateway", "port \"south0\" has no gateway to track");
}

TEST(ConfigHaErrors, MinHealthyOnlyForAServiceTrack) {
  std::string text = kPorts + kHa + "[[ha.track]]\nlink = \"north0\"\nmin_healthy = 2\n";
  ExpectOneError(text, value_of(text, "min_healthy"), "ha.track[0].min_healthy", "applies to service = NAME only");
  text = kPorts + kHa + "[[ha.track]]\ngateway = \"north0\"\nmin_healthy = 2\n";
  ExpectOneError(text, value_of(text, "min_healthy"), "ha.track[0].min_healthy", "applies to service = NAME only");
  text = kPorts + kHa + service() + "[[ha.track]]\nservice = \"web\"\nmin_healthy = 0\n";
  ExpectOneError(text, value_of(text, "min_healthy"), "ha.track[0].min_healthy", "between 1 and 4096");
  text = kPorts + kHa + "[[ha.track]]\nlink = \"north0\"\nweight = 255\n";
  ExpectOneError(text, value_of(text, "weight", "[[ha.track]]"), "ha.track[0].weight", "between 0 and 254");
}

TEST(ConfigHaErrors, TrackedServiceThatIsNoService) {
  const std::string text = kPorts + kHa + "[[ha.track]]\nservice = \"wbe\"\n" + service();
  ExpectOneError(text, header(text, "[ha]"), "ha", "[[ha.track]] service \"wbe\" is not a [[service]]");
}

TEST(ConfigHaErrors, ServiceInAGroupThatDoesNotExist) {
  const std::string text = kPorts + kHa + "[[ha.group]]\nid = 1\n[[ha.group]]\nid = 3\n" + service("group = 2\n");
  ExpectOneError(text, header(text, "[[service]]"), "service", "service \"web\": group 2 is not an [[ha.group]]");
  // The default group 1 exists only when no [[ha.group]] is given.
  const std::string only_two = kPorts + kHa + "[[ha.group]]\nid = 2\n" + service();
  ExpectOneError(only_two, header(only_two, "[[service]]"), "service", "group 1 is not an [[ha.group]]");
}

TEST(ConfigHaErrors, ServiceGroupOtherThanOneWithoutHa) {
  const std::string text = kPorts + service("group = 2\n");
  ExpectOneError(text, header(text, "[[service]]"), "service", "names group 2 but there is no [ha] table");
  EXPECT_THAT(parse(kPorts + service("group = 1\n")).errors, IsEmpty());
}

TEST(ConfigHaErrors, ServiceGroupOutOfRange) {
  for (const char* g : {"0", "64"}) {
    const std::string text = kPorts + kHa + service(std::string("group = ") + g + "\n");
    ExpectOneError(text, value_of(text, "group"), "service[0].group", "between 1 and 63");
  }
}

TEST(ConfigHaErrors, HaThatIsNotATable) {
  const std::string text = "ha = true\n" + kPorts;
  ExpectOneError(text, find(text, "true"), "ha", "expected a table");
}

// ---------------------------------------------------------------------------------------------
// [service.health_check].

const std::string kChecked = kPorts + service() + "[service.health_check]\n";

TEST(ConfigHealthCheck, WithoutTheTableThereIsNoCheck) {
  const Config c = parsed(kPorts + service());
  const auto& s = c.services[0];
  EXPECT_EQ(s.health_check, tandem::config::HealthCheckConfig{});
  EXPECT_EQ(s.health_check.type, HealthCheckType::kNone);
  EXPECT_FALSE(s.health_check.enabled());
  EXPECT_EQ(s.on_backend_down, BackendDownPolicy::kKeep);
}

TEST(ConfigHealthCheck, AnEmptyTableIsATcpCheckWithTheDefaults) {
  const Config c = parsed(kChecked);
  const auto& h = c.services[0].health_check;
  EXPECT_EQ(h.type, HealthCheckType::kTcp);
  EXPECT_TRUE(h.enabled());
  EXPECT_EQ(h.interval_ms, 2000u);
  EXPECT_EQ(h.timeout_ms, 1000u);
  EXPECT_EQ(h.rise, 2u);
  EXPECT_EQ(h.fall, 3u);
  EXPECT_EQ(h.port, 0);
  EXPECT_EQ(h.http_path, "/");
  EXPECT_EQ(h.http_host, "");
  EXPECT_EQ(h.http_status, 200u);
  EXPECT_EQ(h.http_body, "");
}

TEST(ConfigHealthCheck, EveryKeyOfAnHttpCheck) {
  const Config c = parsed(kChecked + R"(type = "http"
interval_ms = 500
timeout_ms = 499
rise = 1
fall = 100
port = 8081
http_path = "/healthz?full=1"
http_host = "web.example"
http_status = 204
http_body = "ok"
)" + "[[service]]\nname = \"other\"\nvip = \"198.51.100.11\"\non_backend_down = \"reset\"\n");
  const auto& h = c.services[0].health_check;
  EXPECT_EQ(h.type, HealthCheckType::kHttp);
  EXPECT_EQ(h.interval_ms, 500u);
  EXPECT_EQ(h.timeout_ms, 499u);
  EXPECT_EQ(h.rise, 1u);
  EXPECT_EQ(h.fall, 100u);
  EXPECT_EQ(h.port, 8081);
  EXPECT_EQ(h.http_path, "/healthz?full=1");
  EXPECT_EQ(h.http_host, "web.example");
  EXPECT_EQ(h.http_status, 204u);
  EXPECT_EQ(h.http_body, "ok");
  EXPECT_EQ(c.services[0].on_backend_down, BackendDownPolicy::kKeep);
  EXPECT_EQ(c.services[1].on_backend_down, BackendDownPolicy::kReset);
}

TEST(ConfigHealthCheck, TypeNoneTcpAndOthers) {
  EXPECT_EQ(parsed(kChecked + "type = \"none\"\n").services[0].health_check.type, HealthCheckType::kNone);
  EXPECT_EQ(parsed(kChecked + "type = \"tcp\"\n").services[0].health_check.type, HealthCheckType::kTcp);
  EXPECT_EQ(parsed(kChecked + "type = \"http\"\n").services[0].health_check.type, HealthCheckType::kHttp);
  for (const char* bad : {"\"HTTP\"", "\"icmp\"", "\"\""}) {
    const std::string text = kChecked + "type = " + bad + "\n";
    ExpectOneError(text, value_of(text, "type"), "service[0].health_check.type", "must be none, tcp or http");
  }
}

TEST(ConfigHealthCheck, TimeoutMustBeLessThanTheInterval) {
  std::string text = kChecked + "interval_ms = 1000\ntimeout_ms = 1000\n";
  ExpectOneError(text, value_of(text, "timeout_ms"), "service[0].health_check.timeout_ms", "must be less than interval_ms");
  text = kChecked + "interval_ms = 1000\ntimeout_ms = 5000\n";
  ExpectOneError(text, value_of(text, "timeout_ms"), "service[0].health_check.timeout_ms", "must be less than interval_ms");
  // The default timeout (1000) against a short interval: reported at the table.
  text = kChecked + "interval_ms = 500\n";
  ExpectOneError(text, header(text, "[service.health_check]"), "service[0].health_check.timeout_ms",
                 "must be less than interval_ms");
  // A disabled check is not checked.
  EXPECT_THAT(parse(kChecked + "type = \"none\"\ninterval_ms = 100\ntimeout_ms = 5000\n").errors, IsEmpty());
}

TEST(ConfigHealthCheck, RangeErrors) {
  const struct {
    const char* key;
    const char* value;
    const char* message;
  } cases[] = {
      {"interval_ms", "9", "between 10 and 3600000"}, {"timeout_ms", "0", "between 1 and 3600000"},
      {"rise", "0", "between 1 and 100"},             {"fall", "101", "between 1 and 100"},
      {"port", "65536", "between 0 and 65535"},
  };
  for (const auto& k : cases) {
    SCOPED_TRACE(k.key);
    const std::string text = kChecked + k.key + " = " + k.value + "\n";
    ExpectOneError(text, value_of(text, k.key, "[service.health_check]"), std::string("service[0].health_check.") + k.key,
                   k.message);
  }
  const std::string text = kChecked + "type = \"http\"\nhttp_status = 99\n";
  ExpectOneError(text, value_of(text, "http_status"), "service[0].health_check.http_status", "between 100 and 599");
}

TEST(ConfigHealthCheck, HttpKeysAreRefusedForOtherTypes) {
  for (const char* type : {"", "type = \"tcp\"\n", "type = \"none\"\n"})
    for (const char* kv : {"http_path = \"/x\"", "http_host = \"h\"", "http_status = 200", "http_body = \"ok\""}) {
      SCOPED_TRACE(std::string(type) + kv);
      const std::string text = kChecked + type + kv + "\n";
      const std::string key(kv, std::string_view(kv).find(' '));
      ExpectOneError(text, value_of(text, key), "service[0].health_check." + key, "applies to type = \"http\" only");
    }
}

TEST(ConfigHealthCheck, BadHttpPathAndHost) {
  for (const std::string& bad : std::vector<std::string>{"\"\"", "\"healthz\"", "\"/a b\"", "\"/a\\tb\"", "\"/\u00e9\"",
                                                          "\"/" + std::string(1024, 'a') + "\""}) {
    SCOPED_TRACE(bad.substr(0, 20));
    const std::string text = kChecked + "type = \"http\"\nhttp_path = " + bad + "\n";
    ExpectOneError(text, value_of(text, "http_path"), "service[0].health_check.http_path", "must start with '/'");
  }
  EXPECT_THAT(parse(kChecked + "type = \"http\"\nhttp_path = \"/" + std::string(1023, 'a') + "\"\n").errors, IsEmpty());
  const std::string text = kChecked + "type = \"http\"\nhttp_host = \"a b\"\n";
  ExpectOneError(text, value_of(text, "http_host"), "service[0].health_check.http_host", "host name");
}

TEST(ConfigHealthCheck, AnAllPortsServiceNeedsACheckPort) {
  const std::string all_ports = kPorts + "[[service]]\nname = \"all\"\nvip = \"198.51.100.12\"\n"
                                         "[[service.backend]]\naddress = \"10.0.2.21\"\n[service.health_check]\n";
  ExpectOneError(all_ports, header(all_ports, "[service.health_check]"), "service[0].health_check.port", "is required");
  ExpectOneError(all_ports + "port = 0\n", value_of(all_ports + "port = 0\n", "port", "[service.health_check]"),
                 "service[0].health_check.port", "is required");
  const Config c = parsed(all_ports + "port = 22\n");
  EXPECT_EQ(c.services[0].health_check.port, 22);
  EXPECT_THAT(parse(all_ports + "type = \"none\"\n").errors, IsEmpty()) << "nothing to check";
  // A service with a port: its backends' ports are checked.
  EXPECT_EQ(parsed(kChecked).services[0].health_check.port, 0);
}

TEST(ConfigHealthCheck, OnBackendDown) {
  EXPECT_EQ(parsed(kPorts + service("on_backend_down = \"keep\"\n")).services[0].on_backend_down, BackendDownPolicy::kKeep);
  EXPECT_EQ(parsed(kPorts + service("on_backend_down = \"reset\"\n")).services[0].on_backend_down, BackendDownPolicy::kReset);
  for (const char* bad : {"\"flush\"", "\"Reset\"", "true"}) {
    const std::string text = kPorts + service(std::string("on_backend_down = ") + bad + "\n");
    ExpectOneError(text, value_of(text, "on_backend_down"), "service[0].on_backend_down",
                   std::string(bad) == "true" ? "expected a string" : "must be keep or reset");
  }
}

TEST(ConfigHealthCheck, UnknownKeyAndNotATable) {
  std::string text = kChecked + "intervl_ms = 5\n";
  ExpectOneError(text, find(text, "intervl_ms"), "service[0].health_check.intervl_ms", "unknown key");
  text = kPorts + service("health_check = \"tcp\"\n");
  ExpectOneError(text, value_of(text, "health_check"), "service[0].health_check", "expected a table");
}

// ---------------------------------------------------------------------------------------------
// to_toml.

TEST(ConfigHaToToml, AFullHaConfigWithAKeyFileRoundTrips) {
  const Config c = parsed(kFullHa);
  ASSERT_TRUE(c.ha.enabled);
  ExpectRoundTrip(c);
  const std::string text = tandem::config::to_toml(c);
  EXPECT_NE(text.find("key_file = '/etc/tandem/ha.key'"), std::string::npos) << text;
}

TEST(ConfigHaToToml, TheDefaultGroupRoundTrips) {
  ExpectRoundTrip(parsed(kPorts + kHa + service()));
}

TEST(ConfigHaToToml, AnInlineKeyIsNeverPrinted) {
  const std::string secret = "s3cret-Key-of-at-least-16-bytes";
  const Config c = parsed(kPorts + with(kHa, "key_file", "") + "key = \"" + secret + "\"\n");
  ASSERT_EQ(c.ha.key, secret);
  const std::string text = tandem::config::to_toml(c);
  EXPECT_EQ(text.find(secret), std::string::npos) << text;
  EXPECT_EQ(text.find("key ="), std::string::npos) << text;
  // Written back without it, the file does not load (rather than loading with no key).
  const ParseResult again = tandem::config::parse_config(text, "shown.toml");
  EXPECT_FALSE(again.config.has_value());
  ASSERT_FALSE(again.errors.empty());
  EXPECT_EQ(again.errors[0].key, "ha");
  EXPECT_THAT(again.errors[0].message, HasSubstr("needs key or key_file"));
}

TEST(ConfigHaToToml, HealthChecksRoundTrip) {
  ExpectRoundTrip(parsed(kChecked + "type = \"http\"\ninterval_ms = 500\ntimeout_ms = 100\nrise = 4\nfall = 5\n"
                                    "port = 8081\nhttp_path = \"/h\"\nhttp_host = \"x\"\nhttp_status = 204\nhttp_body = \"ok\"\n"));
  ExpectRoundTrip(parsed(kChecked + "type = \"tcp\"\ninterval_ms = 1500\nport = 22\n"));
  ExpectRoundTrip(parsed(kPorts + service("on_backend_down = \"reset\"\n")));
}

// A disabled check keeps the values it was given; written back, it must give them back too.
TEST(ConfigHaToToml, ADisabledHealthCheckWithSettingsRoundTrips) {
  const Config c = parsed(kChecked + "type = \"none\"\ninterval_ms = 5000\nport = 22\n");
  ASSERT_EQ(c.services[0].health_check.interval_ms, 5000u);
  ExpectRoundTrip(c);
  const ParseResult again = tandem::config::parse_config(tandem::config::to_toml(c), c.source);
  ASSERT_TRUE(again.config.has_value());
  EXPECT_EQ(again.config->services[0].health_check.interval_ms, 5000u);
  EXPECT_EQ(again.config->services[0].health_check.port, 22);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// [sync]: state replication, on by default with [ha].

TEST(ConfigSync, OnByDefaultWithHaOnTheSyncLinkNextPort) {
  const Config c = parsed(kPorts + kHa);
  const auto& s = c.sync;
  EXPECT_TRUE(s.enabled);
  EXPECT_EQ(s.listen, "192.168.255.1:8694");
  EXPECT_EQ(s.peer, "192.168.255.2:8694");
  EXPECT_EQ(s.address, *Ipv4Addr::parse("192.168.255.1"));
  EXPECT_EQ(s.port, 8694);
  EXPECT_EQ(s.peer_address, *Ipv4Addr::parse("192.168.255.2"));
  EXPECT_EQ(s.peer_port, 8694);
  EXPECT_EQ(s.key_file, "/etc/tandem/ha.key");  // [ha]'s
  EXPECT_EQ(s.refresh_ms, 10'000u);
  EXPECT_EQ(s.flush_ms, 1u);
  EXPECT_EQ(s.budget, 1400u);
  EXPECT_FALSE(parsed(kPorts).sync.enabled) << "no [ha]: no sync";
}

TEST(ConfigSync, EveryKey) {
  const Config c = parsed(kPorts + kHa + R"([sync]
enabled = true
listen = "192.168.255.1:7000"
peer = "192.168.255.9:7001"
mode = "sync"
hold_timeout_ms = 20
refresh_ms = 2000
flush_ms = 5
budget = 8000
config = "compare"
key = "another-key-of-16-bytes"
)");
  const auto& s = c.sync;
  EXPECT_EQ(s.listen, "192.168.255.1:7000");
  EXPECT_EQ(s.port, 7000);
  EXPECT_EQ(s.peer, "192.168.255.9:7001");
  EXPECT_EQ(s.peer_address, *Ipv4Addr::parse("192.168.255.9"));
  EXPECT_EQ(s.refresh_ms, 2000u);
  EXPECT_EQ(s.mode, tandem::config::SyncMode::kSync);
  EXPECT_EQ(s.hold_timeout_ms, 20u);
  EXPECT_EQ(s.flush_ms, 5u);
  EXPECT_EQ(s.budget, 8000u);
  EXPECT_EQ(s.config, tandem::config::ConfigSyncMode::kCompare);
  EXPECT_EQ(parsed(kPorts + kHa).sync.config, tandem::config::ConfigSyncMode::kPush) << "the default";
  EXPECT_EQ(s.key, "another-key-of-16-bytes");
  EXPECT_EQ(s.key_file, "");
  EXPECT_FALSE(parsed(kPorts + kHa + "[sync]\nenabled = false\n").sync.enabled);
}

TEST(ConfigSyncErrors, OneAtATime) {
  {
    const std::string text = kPorts + "[sync]\nenabled = true\n";
    ExpectOneError(text, header(text, "[sync]"), "sync", "needs an [ha] table");
  }
  {
    const std::string text = kPorts + kHa + "[sync]\nmode = \"semi\"\n";
    ExpectOneError(text, value_of(text, "mode"), "sync.mode", "must be \"async\" or \"sync\"");
  }
  {
    const std::string text = kPorts + kHa + "[sync]\nconfig = \"merge\"\n";
    ExpectOneError(text, value_of(text, "config"), "sync.config", "must be \"push\" or \"compare\"");
  }
  {
    const std::string text = kPorts + kHa + "[sync]\nhold_timeout_ms = 0\n";
    ExpectOneError(text, value_of(text, "hold_timeout_ms"), "sync.hold_timeout_ms", "1");
  }
  {
    const std::string text = kPorts + kHa + "[sync]\nrefresh_ms = 50\n";
    ExpectOneError(text, value_of(text, "refresh_ms"), "sync.refresh_ms", "100");
  }
  {
    const std::string text = kPorts + "[conntrack]\nudp_ms = 5000\n" + kHa + "[sync]\nrefresh_ms = 5000\n";
    const ParseResult r = parse(text);
    ASSERT_FALSE(r.config.has_value());
    EXPECT_THAT(r.errors, ElementsAre(Field("message", &ConfigError::message, HasSubstr("shortest idle timeout"))));
  }
  {
    const std::string text = kPorts + kHa + "[sync]\nlisten = \"192.168.255.1:8693\"\n";
    const ParseResult r = parse(text);
    ASSERT_FALSE(r.config.has_value());
    EXPECT_THAT(r.errors, ElementsAre(Field("message", &ConfigError::message, HasSubstr("a port of its own"))));
  }
  {
    const std::string text = kPorts + kHa + "[sync]\nkey = \"short\"\n";
    ExpectOneError(text, value_of(text, "key"), "sync.key", "at least 16 bytes");
  }
  {
    const std::string text = kPorts + kHa + "[sync]\nbudget = 100\n";
    ExpectOneError(text, value_of(text, "budget"), "sync.budget", "200");
  }
  {
    const std::string text = kPorts + kHa + "[sync]\nlisten = \"nowhere\"\n";
    const ParseResult r = parse(text);
    EXPECT_FALSE(r.config.has_value());
  }
  {
    const std::string text = kPorts + kHa + "[sync]\nsurprise = 1\n";
    const ParseResult r = parse(text);
    EXPECT_FALSE(r.config.has_value()) << "unknown keys are refused";
  }
}

TEST(ConfigSyncToToml, RoundTripsWithAKeyFileOfItsOwn) {
  ExpectRoundTrip(parsed(kPorts + kHa + "[sync]\nrefresh_ms = 3000\nkey_file = \"/etc/tandem/sync.key\"\n"));
  ExpectRoundTrip(parsed(kPorts + kHa + "[sync]\nenabled = false\n"));
  ExpectRoundTrip(parsed(kPorts + kHa + "[sync]\nmode = \"sync\"\nhold_timeout_ms = 3\n"));
  ExpectRoundTrip(parsed(kPorts + kHa + "[sync]\nconfig = \"compare\"\n"));
  const std::string text = tandem::config::to_toml(parsed(kPorts + kHa));
  EXPECT_THAT(text, HasSubstr("[sync]"));
  EXPECT_THAT(text, HasSubstr("listen = '192.168.255.1:8694'"));
}
