// ctl service and backend commands against a copy of the services: every command's good case,
// and every refusal leaves the services exactly as they were.
#include "controlplane/ctl/service_edit.hpp"

#include <gtest/gtest.h>

namespace {

using nlohmann::json;
using tandem::config::BackendConfig;
using tandem::config::PortConfig;
using tandem::config::ServiceConfig;
using tandem::ctl::ErrorCode;
using tandem::ctl::parse_request;
using tandem::net::Ipv4Addr;
using tandem::net::Ipv4Prefix;

Ipv4Addr ip(const char* s) { return *Ipv4Addr::parse(s); }

class ServiceEdit : public ::testing::Test {
 protected:
  ServiceEdit() {
    PortConfig p;
    p.name = "north";
    p.address = *Ipv4Prefix::parse("10.0.0.2/24");
    ports_.push_back(p);
    ServiceConfig web;
    web.name = "web";
    web.vip = ip("10.0.0.10");
    web.port = 80;
    web.maglev_size = 7;
    web.backends = {{ip("10.0.1.1"), 80, 1}, {ip("10.0.1.2"), 80, 2}};
    ServiceConfig dns;
    dns.name = "dns";
    dns.vip = ip("10.0.0.10");
    dns.protocol = tandem::config::L4Protocol::kUdp;
    dns.port = 53;
    dns.mode = tandem::conntrack::ForwardMode::kDsr;
    dns.backends = {{ip("10.0.1.3"), 53, 1}};
    services_ = {web, dns};
  }

  // Runs one request line through the real parser and the edit.
  tandem::ctl::EditOutcome run(const std::string& cmd, json args) {
    const auto parsed = parse_request(json{{"v", 1}, {"cmd", cmd}, {"args", args}}.dump());
    EXPECT_TRUE(parsed.request.has_value()) << parsed.error.message;
    if (!parsed.request) return {};
    return tandem::ctl::edit_services(*parsed.request, services_, ports_);
  }

  // The request is refused with `code` (and a message containing `text`) and nothing changed.
  void expect_refused(const std::string& cmd, json args, ErrorCode code, const std::string& text) {
    const auto before = services_;
    const auto out = run(cmd, args);
    ASSERT_TRUE(out.error.has_value()) << cmd << " " << args.dump() << " was accepted: " << out.summary;
    EXPECT_EQ(out.error->code, code) << out.error->message;
    EXPECT_NE(out.error->message.find(text), std::string::npos) << out.error->message;
    EXPECT_EQ(services_, before);
  }

  const ServiceConfig& svc(const std::string& name) {
    for (const auto& s : services_)
      if (s.name == name) return s;
    throw std::runtime_error("no service " + name);
  }

  std::vector<PortConfig> ports_;
  std::vector<ServiceConfig> services_;
};

TEST_F(ServiceEdit, AddServiceThenBackends) {
  auto out = run("service.add", {{"name", "api"}, {"vip", "10.0.0.11"}, {"port", 443}, {"protocol", "tcp"},
                                 {"mode", "fullnat"}, {"local_addresses", {"10.0.1.100"}}, {"maglev_size", 251}});
  ASSERT_FALSE(out.error) << out.error->message;
  EXPECT_EQ(out.summary, "service api added: 10.0.0.11:443/tcp fullnat");
  ASSERT_EQ(services_.size(), 3u);
  EXPECT_EQ(svc("api").maglev_size, 251u);
  EXPECT_EQ(svc("api").local_addresses, std::vector<Ipv4Addr>{ip("10.0.1.100")});

  out = run("backend.add", {{"service", "api"}, {"address", "10.0.1.5"}, {"port", 8443}, {"weight", 3}});
  ASSERT_FALSE(out.error) << out.error->message;
  EXPECT_EQ(out.summary, "backend 10.0.1.5:8443 added to api with weight 3");
  out = run("backend.add", {{"service", "api"}, {"address", "10.0.1.6"}});
  ASSERT_FALSE(out.error) << out.error->message;
  ASSERT_EQ(svc("api").backends.size(), 2u);
  EXPECT_EQ(svc("api").backends[1], (BackendConfig{ip("10.0.1.6"), 443, 1, true}));
}

TEST_F(ServiceEdit, AddServiceRefusals) {
  const json base = {{"name", "api"}, {"vip", "10.0.0.11"}, {"port", 443}, {"protocol", "tcp"}, {"mode", "nat"}};
  auto with = [&](const char* k, json v, json more = json::object()) {
    json a = base;
    a[k] = v;
    a.update(more);
    return a;
  };
  expect_refused("service.add", with("name", "web"), ErrorCode::kConflict, "used twice");
  expect_refused("service.add", with("vip", "10.0.0.10", {{"port", 80}}), ErrorCode::kConflict,
                 "service \"web\" already has 10.0.0.10:80/tcp");
  expect_refused("service.add", with("vip", "10.0.0.2"), ErrorCode::kConflict, "is an address of port \"north\"");
  expect_refused("service.add", with("vip", "224.0.0.1"), ErrorCode::kInvalidArgument, "unicast");
  expect_refused("service.add", with("vip", "0.0.0.0"), ErrorCode::kInvalidArgument, "unicast");
  expect_refused("service.add", with("maglev_size", 100), ErrorCode::kInvalidArgument, "prime");
  expect_refused("service.add", with("mode", "fullnat"), ErrorCode::kInvalidArgument, "fullnat needs local_addresses");
  expect_refused("service.add", with("local_addresses", json::array({"10.0.1.100"})), ErrorCode::kInvalidArgument,
                 "applies to fullnat services only");
  expect_refused("service.add", with("name", std::string(33, 'a')), ErrorCode::kInvalidArgument, "1 to 32");
  // The same VIP and port with another protocol is another service.
  EXPECT_FALSE(run("service.add", with("vip", "10.0.0.10", {{"port", 80}, {"protocol", "udp"}})).error);
}

TEST_F(ServiceEdit, ServiceLimit) {
  for (std::size_t i = services_.size(); i < tandem::config::kMaxServices; ++i) {
    ServiceConfig s;
    s.name = "s" + std::to_string(i);
    s.vip = Ipv4Addr{ip("10.1.0.0").value + static_cast<std::uint32_t>(i)};
    services_.push_back(s);
  }
  expect_refused("service.add", {{"name", "one-more"}, {"vip", "10.0.0.12"}, {"port", 1}, {"protocol", "tcp"}, {"mode", "nat"}},
                 ErrorCode::kConflict, "at most 256 services");
}

TEST_F(ServiceEdit, DeleteService) {
  auto out = run("service.delete", {{"name", "web"}});
  ASSERT_FALSE(out.error);
  EXPECT_EQ(out.summary, "service web deleted (10.0.0.10:80/tcp, 2 backends)");
  ASSERT_EQ(services_.size(), 1u);
  EXPECT_EQ(services_[0].name, "dns");
  expect_refused("service.delete", {{"name", "web"}}, ErrorCode::kNotFound, "no service named web");
}

TEST_F(ServiceEdit, SetService) {
  auto out = run("service.set", {{"name", "web"}, {"maglev_size", 65537}});
  ASSERT_FALSE(out.error) << out.error->message;
  EXPECT_EQ(out.summary, "service web: maglev_size 7 -> 65537");
  EXPECT_EQ(svc("web").maglev_size, 65537u);
  expect_refused("service.set", {{"name", "web"}, {"maglev_size", 65536}}, ErrorCode::kInvalidArgument, "prime");
  expect_refused("service.set", {{"name", "web"}}, ErrorCode::kInvalidArgument, "give maglev_size or local_addresses");
  expect_refused("service.set", {{"name", "web"}, {"local_addresses", {"10.0.1.100"}}}, ErrorCode::kInvalidArgument,
                 "fullnat services only");
  expect_refused("service.set", {{"name", "nope"}, {"maglev_size", 7}}, ErrorCode::kNotFound, "no service named nope");
}

TEST_F(ServiceEdit, MaglevTableMustHoldTheBackends) {
  ASSERT_FALSE(run("service.set", {{"name", "web"}, {"maglev_size", 2}}).error);
  expect_refused("backend.add", {{"service", "web"}, {"address", "10.0.1.9"}}, ErrorCode::kInvalidArgument,
                 "smaller than the number of backends with weight > 0 (3)");
  // A drained one does not count.
  EXPECT_FALSE(run("backend.add", {{"service", "web"}, {"address", "10.0.1.9"}, {"weight", 0}}).error);
  expect_refused("backend.set", {{"service", "web"}, {"address", "10.0.1.9"}, {"weight", 1}},
                 ErrorCode::kInvalidArgument, "smaller than the number");
}

TEST_F(ServiceEdit, BackendRefusals) {
  expect_refused("backend.add", {{"service", "web"}, {"address", "10.0.1.1"}}, ErrorCode::kConflict,
                 "10.0.1.1:80 is listed twice");
  expect_refused("backend.add", {{"service", "web"}, {"address", "255.255.255.255"}}, ErrorCode::kInvalidArgument,
                 "unicast");
  expect_refused("backend.add", {{"service", "dns"}, {"address", "10.0.1.9"}, {"port", 5353}},
                 ErrorCode::kInvalidArgument, "mode dsr cannot change the port");
  expect_refused("backend.add", {{"service", "nope"}, {"address", "10.0.1.9"}}, ErrorCode::kNotFound, "no service");
  expect_refused("backend.delete", {{"service", "web"}, {"address", "10.0.1.9"}}, ErrorCode::kNotFound,
                 "has no backend 10.0.1.9");
  expect_refused("backend.delete", {{"service", "web"}, {"address", "10.0.1.1"}, {"port", 81}}, ErrorCode::kNotFound,
                 "has no backend 10.0.1.1:81");
  expect_refused("backend.set", {{"service", "web"}, {"address", "10.0.1.1"}}, ErrorCode::kInvalidArgument,
                 "give weight or enabled");
}

TEST_F(ServiceEdit, SeveralBackendsAtOneAddressNeedThePort) {
  ASSERT_FALSE(run("backend.add", {{"service", "web"}, {"address", "10.0.1.1"}, {"port", 8080}}).error);
  expect_refused("backend.drain", {{"service", "web"}, {"address", "10.0.1.1"}}, ErrorCode::kInvalidArgument,
                 "2 backends at 10.0.1.1: give port");
  auto out = run("backend.drain", {{"service", "web"}, {"address", "10.0.1.1"}, {"port", 8080}});
  ASSERT_FALSE(out.error);
  EXPECT_EQ(svc("web").backends[2].weight, 0u);
  EXPECT_EQ(svc("web").backends[0].weight, 1u);
}

TEST_F(ServiceEdit, DrainSetEnableDisableDelete) {
  auto out = run("backend.drain", {{"service", "web"}, {"address", "10.0.1.2"}});
  ASSERT_FALSE(out.error);
  EXPECT_EQ(out.summary, "backend 10.0.1.2:80 of web: weight 2 -> 0");
  EXPECT_EQ(svc("web").backends[1].weight, 0u);

  out = run("backend.set", {{"service", "web"}, {"address", "10.0.1.2"}, {"weight", 5}});
  ASSERT_FALSE(out.error);
  EXPECT_EQ(out.summary, "backend 10.0.1.2:80 of web: weight 0 -> 5");

  out = run("backend.set", {{"service", "web"}, {"address", "10.0.1.2"}, {"enabled", false}});
  ASSERT_FALSE(out.error);
  EXPECT_EQ(out.summary, "backend 10.0.1.2:80 of web: disabled");
  EXPECT_FALSE(svc("web").backends[1].enabled);
  EXPECT_EQ(svc("web").backends[1].weight, 5u);  // kept for when it is enabled again

  out = run("backend.set", {{"service", "web"}, {"address", "10.0.1.2"}, {"port", 80}, {"enabled", true}, {"weight", 5}});
  ASSERT_FALSE(out.error);
  EXPECT_EQ(out.summary, "backend 10.0.1.2:80 of web: enabled");

  out = run("backend.delete", {{"service", "web"}, {"address", "10.0.1.1"}});
  ASSERT_FALSE(out.error);
  EXPECT_EQ(out.summary, "backend 10.0.1.1:80 of web deleted");
  ASSERT_EQ(svc("web").backends.size(), 1u);
  EXPECT_EQ(svc("web").backends[0].address, ip("10.0.1.2"));
}

TEST_F(ServiceEdit, OtherCommandsAreNotEdits) {
  EXPECT_FALSE(tandem::ctl::is_service_edit("status"));
  EXPECT_FALSE(tandem::ctl::is_service_edit("connections.flush"));
  EXPECT_TRUE(tandem::ctl::is_service_edit("backend.drain"));
  const auto parsed = parse_request(R"({"v":1,"cmd":"status"})");
  ASSERT_TRUE(parsed.request);
  const auto before = services_;
  const auto out = tandem::ctl::edit_services(*parsed.request, services_, ports_);
  ASSERT_TRUE(out.error);
  EXPECT_EQ(out.error->code, ErrorCode::kInternal);
  EXPECT_EQ(services_, before);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// [ctl] names resolved to ids (root/0 exist on every system; the odd names exist on none).

#include "controlplane/ctl/access.hpp"

namespace {

TEST(CtlAccess, NamesAndNumbersResolve) {
  tandem::config::CtlConfig ctl;
  ctl.socket = "/run/x.sock";
  ctl.mode = 0640;
  ctl.owner = "root";
  ctl.group = "0";
  ctl.allowed_users = {"root", "1234"};
  ctl.allowed_groups = {"root"};
  ctl.read_only_users = {"4321"};
  ctl.read_only_groups = {"77"};
  std::string error;
  const auto o = tandem::ctl::server_options(ctl, error);
  ASSERT_TRUE(o.has_value()) << error;
  EXPECT_EQ(o->path, "/run/x.sock");
  EXPECT_EQ(o->mode, 0640u);
  EXPECT_EQ(o->owner, 0u);
  EXPECT_EQ(o->group, 0u);
  EXPECT_EQ(o->allowed_uids, (std::vector<uid_t>{0, 1234}));
  EXPECT_EQ(o->allowed_gids, (std::vector<gid_t>{0}));
  EXPECT_EQ(o->read_only_uids, (std::vector<uid_t>{4321}));
  EXPECT_EQ(o->read_only_gids, (std::vector<gid_t>{77}));
}

TEST(CtlAccess, UnknownNamesAreAllReported) {
  tandem::config::CtlConfig ctl;
  ctl.owner = "no-such-user-x1";
  ctl.allowed_groups = {"root", "no-such-group-x2"};
  ctl.read_only_users = {"no-such-user-x3"};
  std::string error;
  EXPECT_FALSE(tandem::ctl::server_options(ctl, error).has_value());
  EXPECT_EQ(error, "ctl.owner: no user \"no-such-user-x1\"; ctl.allowed_groups: no group \"no-such-group-x2\"; "
                   "ctl.read_only_users: no user \"no-such-user-x3\"");
}

}  // namespace
