// The ctl socket server with real Unix sockets: ordering and ids, malformed and oversized lines,
// half-closed peers, refused peers, a client that never reads, the socket file's mode.
#include <gtest/gtest.h>

#include <grp.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>

#include "controlplane/ctl/server.hpp"

using namespace tandem::ctl;
using nlohmann::json;

namespace {

Outcome handle(const Request& r, const Peer& p) {
  if (r.cmd == "status") return Outcome::success({{"unit", "test"}, {"peer_uid", p.uid}});
  if (r.cmd == "log.level") return Outcome::success({{"level", r.args.value("level", "info")}});
  if (r.cmd == "backend.drain") return Outcome::failure(ErrorCode::kNotFound, "no service " + r.args["service"].get<std::string>());
  if (r.cmd == "connections.list") return Outcome::success({{"rows", std::string(64 * 1024, 'x')}});
  if (r.cmd == "config.reload") throw std::runtime_error("boom");
  return Outcome::success(json::object());
}

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("tandem-ctl-" + std::to_string(::getpid()) + "-" +
                                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    options_.path = (dir_ / "ctl.sock").string();
  }
  void TearDown() override {
    stop();
    std::filesystem::remove_all(dir_);
  }
  void start() {
    server_ = std::make_unique<Server>(options_, handle, [this](ServerEvent e, const Peer&, const std::string&) {
      if (e == ServerEvent::kSlowClient) slow_seen_ = true;
    });
    ASSERT_EQ(server_->open(), "");
    thread_ = std::thread([this] { server_->run(stop_); });
  }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }

  int connect_client() const {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, options_.path.c_str(), sizeof a.sun_path - 1);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << std::strerror(errno);
    timeval tv{.tv_sec = 5, .tv_usec = 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
  }
  static void send_all(int fd, const std::string& s) {
    std::size_t off = 0;
    while (off < s.size()) {
      const ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
      ASSERT_GT(n, 0) << std::strerror(errno);
      off += static_cast<std::size_t>(n);
    }
  }
  // One reply line as JSON; null at EOF or timeout.
  static json read_reply(int fd, std::string& buf) {
    for (;;) {
      if (const auto nl = buf.find('\n'); nl != std::string::npos) {
        const std::string line = buf.substr(0, nl);
        buf.erase(0, nl + 1);
        return json::parse(line);
      }
      char tmp[4096];
      const ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
      if (n <= 0) return nullptr;
      buf.append(tmp, static_cast<std::size_t>(n));
    }
  }

  // Sends `request` from a child process running as uid/gid (root's privileges dropped), then
  // half-closes and returns every reply line up to EOF. Only system calls in the child.
  std::vector<json> exchange_as(uid_t uid, gid_t gid, const std::string& request) const {
    int pipefd[2];
    EXPECT_EQ(::pipe(pipefd), 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, options_.path.c_str(), sizeof a.sun_path - 1);
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::close(pipefd[0]);
      if (::setgroups(0, nullptr) != 0 || ::setgid(gid) != 0 || ::setuid(uid) != 0) ::_exit(2);
      const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
      if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) ::_exit(3);
      timeval tv{.tv_sec = 5, .tv_usec = 0};
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      // A refused peer may be answered and disconnected before its request is out: read anyway.
      (void)!::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
      ::shutdown(fd, SHUT_WR);
      char buf[4096];
      ssize_t n;
      while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0)
        if (::write(pipefd[1], buf, static_cast<std::size_t>(n)) != n) ::_exit(5);
      ::_exit(0);
    }
    ::close(pipefd[1]);
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(pipefd[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
    ::close(pipefd[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
    std::vector<json> replies;
    std::size_t start = 0;
    for (std::size_t nl; (nl = out.find('\n', start)) != std::string::npos; start = nl + 1)
      replies.push_back(json::parse(out.substr(start, nl - start)));
    return replies;
  }

  std::filesystem::path dir_;
  ServerOptions options_;
  std::unique_ptr<Server> server_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> slow_seen_{false};
};

TEST_F(ServerTest, PipelinedRequestsAreAnsweredInOrderWithTheirIds) {
  start();
  const int fd = connect_client();
  send_all(fd, encode_request(1, "status", {}) + encode_request("two", "log.level", {{"level", "debug"}}) +
                   encode_request(3, "backend.drain", {{"service", "web"}, {"address", "10.0.0.1"}}));
  std::string buf;
  const json a = read_reply(fd, buf), b = read_reply(fd, buf), c = read_reply(fd, buf);
  EXPECT_EQ(a["id"], 1);
  EXPECT_EQ(a["result"]["unit"], "test");
  EXPECT_EQ(a["result"]["peer_uid"], ::geteuid()) << "SO_PEERCRED reaches the handler";
  EXPECT_EQ(b, (json{{"v", 1}, {"id", "two"}, {"ok", true}, {"result", {{"level", "debug"}}}}));
  EXPECT_EQ(c["id"], 3);
  EXPECT_EQ(c["error"]["code"], "not_found");
  ::close(fd);
}

TEST_F(ServerTest, MalformedAndHugeLinesAreAnsweredAndTheConnectionGoesOn) {
  start();
  const int fd = connect_client();
  send_all(fd, "this is not json\n");
  send_all(fd, std::string(200 * 1024, '{') + "\n");
  send_all(fd, R"({"v":1,"id":5,"cmd":"status"})" "\n");
  std::string buf;
  EXPECT_EQ(read_reply(fd, buf)["error"]["code"], "parse_error");
  EXPECT_EQ(read_reply(fd, buf)["error"]["code"], "line_too_long");
  const json ok = read_reply(fd, buf);
  EXPECT_EQ(ok["id"], 5);
  EXPECT_EQ(ok["ok"], true);
  // A second client is served meanwhile too.
  const int fd2 = connect_client();
  std::string buf2;
  send_all(fd2, encode_request(9, "status", {}));
  EXPECT_EQ(read_reply(fd2, buf2)["id"], 9);
  ::close(fd);
  ::close(fd2);
  stop();
  EXPECT_EQ(server_->stats().bad_requests, 2u);
}

TEST_F(ServerTest, AHalfClosedPeerGetsItsReplies) {
  start();
  const int fd = connect_client();
  send_all(fd, encode_request(1, "status", {}) + R"({"v":1,"id":2,"cmd":"status"})");  // last line unterminated
  ::shutdown(fd, SHUT_WR);
  std::string buf;
  EXPECT_EQ(read_reply(fd, buf)["id"], 1);
  EXPECT_EQ(read_reply(fd, buf)["id"], 2);
  EXPECT_TRUE(read_reply(fd, buf).is_null()) << "then the server closes";
  ::close(fd);
}

// uid/gid 65534 (nobody/nogroup) as the unprivileged peer; the socket is opened to everybody
// so that only the server's own check stands in the way.
constexpr uid_t kNobody = 65534;
constexpr gid_t kNogroup = 65534;

TEST_F(ServerTest, APeerNotAllowedIsRefusedAndCounted) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to connect as another uid";
  options_.mode = 0666;
  options_.allowed_uids = {424242};
  options_.allowed_gids = {424242};
  start();
  const auto replies = exchange_as(kNobody, kNogroup, encode_request(1, "status", {}));
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0]["error"]["code"], "forbidden");
  EXPECT_NE(replies[0]["error"]["message"].get<std::string>().find("uid 65534"), std::string::npos);
  stop();
  EXPECT_EQ(server_->stats().refused, 1u);
  EXPECT_EQ(server_->stats().requests, 0u) << "a refused peer is not listened to";
}

TEST_F(ServerTest, RootAndAnAllowedGroupAreServed) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to connect as another uid";
  options_.mode = 0666;
  options_.allowed_gids = {kNogroup};
  start();
  const auto replies = exchange_as(kNobody, kNogroup, encode_request(1, "status", {}));
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0]["result"]["peer_uid"], kNobody);
  const int fd = connect_client();  // root, not listed
  std::string buf;
  send_all(fd, encode_request(2, "status", {}));
  EXPECT_EQ(read_reply(fd, buf)["ok"], true);
  ::close(fd);
}

TEST_F(ServerTest, AReadOnlyPeerMayLookButNotChange) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to connect as another uid";
  options_.mode = 0666;
  options_.read_only_uids = {kNobody};
  start();
  const auto replies = exchange_as(kNobody, kNogroup,
                                   encode_request(1, "status", {}) +
                                       encode_request(2, "backend.drain", {{"service", "web"}, {"address", "10.0.0.1"}}) +
                                       encode_request(3, "config.reload", {}) + encode_request(4, "services.list", {}));
  ASSERT_EQ(replies.size(), 4u);
  EXPECT_EQ(replies[0]["ok"], true);
  EXPECT_EQ(replies[1]["error"]["code"], "forbidden");
  EXPECT_NE(replies[1]["error"]["message"].get<std::string>().find("read-only"), std::string::npos);
  EXPECT_EQ(replies[2]["error"]["code"], "forbidden");
  EXPECT_EQ(replies[3]["ok"], true);
  stop();
  EXPECT_EQ(server_->stats().read_only_refused, 2u);
}

TEST_F(ServerTest, ALiveSocketIsNotTakenOver) {
  start();
  Server second(options_, handle);
  const std::string e = second.open();
  EXPECT_NE(e.find("in use by another process"), std::string::npos) << e;
  // The first server still answers.
  const int fd = connect_client();
  std::string buf;
  send_all(fd, encode_request(1, "status", {}));
  EXPECT_EQ(read_reply(fd, buf)["ok"], true);
  ::close(fd);
}

TEST_F(ServerTest, AClientThatNeverReadsIsDroppedWhileOthersAreServed) {
  options_.max_pending_output = 256 * 1024;
  start();
  const int slow = connect_client();
  int rcvbuf = 4096;
  ::setsockopt(slow, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  std::string many;
  for (int i = 0; i < 200; ++i) many += encode_request(i, "connections.list", {});  // 64 KiB each
  send_all(slow, many);
  const auto t0 = std::chrono::steady_clock::now();
  const int fast = connect_client();
  std::string buf;
  send_all(fast, encode_request(1, "status", {}));
  EXPECT_EQ(read_reply(fast, buf)["ok"], true);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
  ::close(fast);
  // The server gives up on the slow client (it never read); only then does it read what was
  // queued for it, which ends at EOF (or a reset) short of all 200 replies.
  for (int i = 0; i < 500 && !slow_seen_; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_TRUE(slow_seen_) << "the slow client was not dropped within 5 s";
  char tmp[65536];
  ssize_t n;
  std::size_t total = 0;
  while ((n = ::recv(slow, tmp, sizeof tmp, 0)) > 0) total += static_cast<std::size_t>(n);
  EXPECT_LT(total, 200u * 64 * 1024) << "not every reply was delivered";
  ::close(slow);
  stop();
  EXPECT_EQ(server_->stats().slow_clients, 1u);
}

TEST_F(ServerTest, AHandlerExceptionIsAnInternalErrorNotACrash) {
  start();
  const int fd = connect_client();
  send_all(fd, encode_request(1, "config.reload", {}) + encode_request(2, "status", {}));
  std::string buf;
  const json r = read_reply(fd, buf);
  EXPECT_EQ(r["error"]["code"], "internal");
  EXPECT_EQ(r["error"]["message"], "boom");
  EXPECT_EQ(read_reply(fd, buf)["ok"], true);
  ::close(fd);
}

TEST_F(ServerTest, TheSocketFileGetsItsModeAndAStaleOneIsReplaced) {
  options_.mode = 0600;
  {
    Server first(options_, handle);
    ASSERT_EQ(first.open(), "");
  }
  // A file left behind by a daemon that died (simulated: bind a socket and leave it).
  const int stale = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, options_.path.c_str(), sizeof a.sun_path - 1);
  ASSERT_EQ(::bind(stale, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ::close(stale);
  start();
  struct stat st {};
  ASSERT_EQ(::stat(options_.path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  const int fd = connect_client();
  std::string buf;
  send_all(fd, encode_request(1, "status", {}));
  EXPECT_EQ(read_reply(fd, buf)["ok"], true);
  ::close(fd);
}

TEST_F(ServerTest, SomethingElseAtThePathIsNotReplaced) {
  std::FILE* f = std::fopen(options_.path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fclose(f);
  Server s(options_, handle);
  EXPECT_NE(s.open().find("not a socket"), std::string::npos);
  EXPECT_TRUE(std::filesystem::is_regular_file(options_.path));
}

}  // namespace
