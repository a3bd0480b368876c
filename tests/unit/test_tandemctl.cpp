// tandemctl end to end against a real ctl server (ctl/server.hpp) whose handler echoes what it
// received: the generated command tree maps options to the protocol's names and JSON types,
// results print as JSON or tables, and exit codes mean what docs/operations.md says.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>

#include "controlplane/ctl/server.hpp"

using namespace tandem::ctl;
using nlohmann::json;

namespace {

struct CtlRun {
  int status = -1;
  std::string out;
};

CtlRun run(const std::string& args) {
  const std::string cmd = std::string(TANDEMCTL) + " " + args + " 2>&1";
  CtlRun r;
  std::FILE* p = ::popen(cmd.c_str(), "r");
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

class TandemctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("tandemctl-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    ServerOptions o;
    o.path = (dir_ / "ctl.sock").string();
    server_ = std::make_unique<Server>(o, [](const Request& r, const Peer&) {
      if (r.cmd == "backend.delete") return Outcome::failure(ErrorCode::kNotFound, "no backend 10.0.0.9 in web");
      if (r.cmd == "services.list")
        return Outcome::success(
            {{"services",
              json::array({{{"name", "web"}, {"vip", "10.0.0.10"}, {"port", 80}, {"protocol", "tcp"}, {"mode", "nat"},
                            {"backends", json::array({{{"address", "10.0.1.1"}, {"port", 8080}, {"weight", 1}, {"enabled", true}},
                                                      {{"address", "10.0.1.2"}, {"port", 8080}, {"weight", 0}, {"enabled", true}},
                                                      {{"address", "10.0.1.3"}, {"port", 8080}, {"weight", 5}, {"enabled", false}}})}},
                           {{"name", "dns"}, {"vip", "10.0.0.10"}, {"port", 53}, {"protocol", "udp"}, {"mode", "dsr"}}})}});
      if (r.cmd == "counters")
        return Outcome::success({{"drops", {{"runt_frame", 0}, {"tx_full", 3}}}, {"handled", {{"lb_forwarded", 0}}},
                                 {"ports", json::array({{{"name", "north0"}, {"rx_packets", 12}}})}});
      if (r.cmd == "config.show") return Outcome::success({{"path", "/etc/t.toml"}, {"toml", "[unit]\nid = 1\n"}});
      return Outcome::success({{"cmd", r.cmd}, {"args", r.args}});
    });
    ASSERT_EQ(server_->open(), "");
    thread_ = std::thread([this] { server_->run(stop_); });
    sock_ = "--socket " + o.path + " ";
  }
  void TearDown() override {
    stop_ = true;
    thread_.join();
    server_.reset();
    std::filesystem::remove_all(dir_);
  }

  std::filesystem::path dir_;
  std::unique_ptr<Server> server_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::string sock_;
};

TEST_F(TandemctlTest, OptionsBecomeTypedArguments) {
  const CtlRun r = run(sock_ + "--json service add --name web --vip 10.0.0.10 --port 80 --protocol tcp --mode fullnat "
                    "--local-addresses 10.0.1.5,10.0.1.6 --maglev-size 251");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(json::parse(r.out), (json{{"cmd", "service.add"},
                                      {"args",
                                       {{"name", "web"},
                                        {"vip", "10.0.0.10"},
                                        {"port", 80},
                                        {"protocol", "tcp"},
                                        {"mode", "fullnat"},
                                        {"local_addresses", {"10.0.1.5", "10.0.1.6"}},
                                        {"maglev_size", 251}}}}));
  const CtlRun b = run(sock_ + "--json backend set --service web --address 10.0.1.21 --weight 0 --enabled false");
  ASSERT_EQ(b.status, 0) << b.out;
  EXPECT_EQ(json::parse(b.out)["args"],
            (json{{"service", "web"}, {"address", "10.0.1.21"}, {"weight", 0}, {"enabled", false}}));
  const CtlRun c = run(sock_ + "--json conns list --vip 10.0.0.10 --limit 20");
  ASSERT_EQ(c.status, 0) << c.out;
  EXPECT_EQ(json::parse(c.out), (json{{"cmd", "connections.list"}, {"args", {{"vip", "10.0.0.10"}, {"limit", 20}}}}));
}

TEST_F(TandemctlTest, ListsPrintAsTables) {
  const CtlRun r = run(sock_ + "services list");
  ASSERT_EQ(r.status, 0) << r.out;
  // One row per backend, in the order a person reads them, widths from the widest cell; a
  // service without backends gets one row.
  EXPECT_EQ(r.out,
            "SERVICE  VIP        PORT  PROTO  MODE  BACKEND        WEIGHT  STATE\n"
            "web      10.0.0.10  80    tcp    nat   10.0.1.1:8080  1       active\n"
            "web      10.0.0.10  80    tcp    nat   10.0.1.2:8080  0       drained\n"
            "web      10.0.0.10  80    tcp    nat   10.0.1.3:8080  5       disabled\n"
            "dns      10.0.0.10  53    udp    dsr   -              -       -\n");
}

TEST_F(TandemctlTest, CountersShowWhatMovedAndConfigShowIsTheFile) {
  const CtlRun c = run(sock_ + "counters");
  ASSERT_EQ(c.status, 0) << c.out;
  EXPECT_EQ(c.out, "drops:\n  tx_full: 3\nhandled: none\nports:\n  NAME    RX_PACKETS\n  north0  12\n");
  const CtlRun s = run(sock_ + "config show");
  ASSERT_EQ(s.status, 0) << s.out;
  EXPECT_EQ(s.out, "[unit]\nid = 1\n");
}

TEST_F(TandemctlTest, ExitCodes) {
  const CtlRun refused = run(sock_ + "backend delete --service web --address 10.0.0.9");
  EXPECT_EQ(refused.status, 1);
  EXPECT_EQ(refused.out, "tandemctl: not_found: no backend 10.0.0.9 in web\n");
  const CtlRun invalid = run(sock_ + "backend set --service web --address 10.0.0.9 --weight heavy");
  EXPECT_EQ(invalid.status, 1) << "the daemon names the bad argument";
  EXPECT_NE(invalid.out.find("invalid_argument: args.weight"), std::string::npos) << invalid.out;
  EXPECT_EQ(run(sock_ + "backend add --address 10.0.0.9").status, 2) << "--service is required";
  EXPECT_EQ(run(sock_ + "nonsense").status, 2);
  EXPECT_EQ(run("--socket /nonexistent/ctl.sock status").status, 3);
}

}  // namespace
