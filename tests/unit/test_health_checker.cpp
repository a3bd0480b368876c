// The check engine (controlplane/health/checker.*) against real servers on 127.0.0.1: every
// verdict and its error text, the exact HTTP request, many checks at once, cancellation, and
// no descriptor left open. The HTTP verdict alone (http_check.*) is tested on strings first.
#include "controlplane/health/checker.hpp"
#include "controlplane/health/http_check.hpp"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "tests/unit/loopback_server.hpp"

namespace {

using namespace std::chrono_literals;
using tandem::health::Checker;
using tandem::health::CheckRequest;
using tandem::health::CheckResult;
using tandem::health::CheckType;
using tandem::net::Ipv4Addr;
using tandem::test::LoopbackServer;
using tandem::test::answer;
using tandem::test::eventually;
using tandem::test::kLoopback;
using tandem::test::kPatience;

CheckRequest tcp_check(std::uint64_t id, std::uint16_t port, std::uint32_t timeout_ms = 2000) {
  CheckRequest r;
  r.id = id;
  r.address = kLoopback;
  r.port = port;
  r.type = CheckType::kTcp;
  r.timeout_ms = timeout_ms;
  return r;
}

CheckRequest http_check(std::uint64_t id, std::uint16_t port, std::string body = {}, std::uint32_t timeout_ms = 2000) {
  CheckRequest r = tcp_check(id, port, timeout_ms);
  r.type = CheckType::kHttp;
  r.http_path = "/health";
  r.http_body = std::move(body);
  return r;
}

// Polls until `count` results are in (or kPatience passed); keyed by id.
std::map<std::uint64_t, CheckResult> results_of(Checker& checker, std::size_t count) {
  std::map<std::uint64_t, CheckResult> out;
  const auto give_up = std::chrono::steady_clock::now() + kPatience;
  while (out.size() < count && std::chrono::steady_clock::now() < give_up)
    for (auto& r : checker.poll(100)) EXPECT_TRUE(out.emplace(r.id, std::move(r)).second) << "two results for " << r.id;
  return out;
}

CheckResult run_one(CheckRequest request) {
  Checker checker;
  const std::uint64_t id = request.id;
  EXPECT_TRUE(checker.start(std::move(request)));
  auto results = results_of(checker, 1);
  EXPECT_EQ(results.size(), 1u);
  EXPECT_EQ(checker.in_flight(), 0u);
  return results.count(id) ? results[id] : CheckResult{id, false, "no result", 0};
}

// --- the HTTP verdict, on strings ----------------------------------------------------------

TEST(HttpCheck, TheRequestIsExactlyTheDocumentedOne) {
  EXPECT_EQ(tandem::health::http_request("/health?x=1", "api.example:8080"),
            "GET /health?x=1 HTTP/1.0\r\nHost: api.example:8080\r\nUser-Agent: tandem-health\r\nConnection: close\r\n\r\n");
}

TEST(HttpCheck, PathsAndHostsThatWouldBreakTheRequestAreRefused) {
  using tandem::health::http_request_problem;
  EXPECT_EQ(http_request_problem("/", "h"), "");
  EXPECT_EQ(http_request_problem("", "h"), "invalid http path");
  EXPECT_EQ(http_request_problem("health", "h"), "invalid http path");
  EXPECT_EQ(http_request_problem("/a b", "h"), "invalid http path");
  EXPECT_EQ(http_request_problem("/a\r\nX: y", "h"), "invalid http path");
  EXPECT_EQ(http_request_problem("/", "h\r\nX: y"), "invalid http host");
}

TEST(HttpCheck, Verdicts) {
  using tandem::health::judge_http_answer;
  EXPECT_EQ(judge_http_answer("HTTP/1.1 200 OK\r\nA: b\r\n\r\nall ok", 200, "ok"), "");
  EXPECT_EQ(judge_http_answer("HTTP/1.0 204\r\n\r\n", 204, ""), "") << "no reason phrase";
  EXPECT_EQ(judge_http_answer("HTTP/1.0 200 OK\n\nok", 200, "ok"), "") << "bare LF line ends";
  EXPECT_EQ(judge_http_answer("HTTP/1.1 500 Oops\r\n\r\nok", 200, "ok"), "status 500, expected 200");
  EXPECT_EQ(judge_http_answer("HTTP/1.1 200 OK\r\n\r\nfine", 200, "ok"), "body does not contain \"ok\"");
  EXPECT_EQ(judge_http_answer("HTTP/1.1 200 OK\r\nX-Status: ok\r\n\r\n", 200, "ok"), "body does not contain \"ok\"")
      << "the headers are not the body";
  EXPECT_EQ(judge_http_answer("HTTP/1.1 200 OK\r\nServer: x\r\n", 200, ""), "answer ends inside its headers");
  EXPECT_EQ(judge_http_answer("", 200, ""), "empty answer");
  for (const char* bad : {"SSH-2.0-OpenSSH_9.2\r\n", "HTTP/1.1 2000 OK\r\n\r\n", "HTTP/1.1 20x OK\r\n\r\n",
                          "HTTP/1.1\r\n\r\n", "http/1.1 200 OK\r\n\r\n", "HTTP/1.1 200"})
    EXPECT_EQ(judge_http_answer(bad, 200, ""), "malformed status line") << bad;
}

TEST(HttpCheck, ContentLengthTellsWhenTheAnswerIsComplete) {
  using tandem::health::http_answer_length;
  EXPECT_EQ(http_answer_length("HTTP/1.1 200 OK\r\ncontent-LENGTH: 2\r\n\r\nok"), 38u + 2u);
  EXPECT_FALSE(http_answer_length("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n")) << "headers not complete";
  EXPECT_FALSE(http_answer_length("HTTP/1.1 200 OK\r\n\r\nok")) << "no length: until the server closes";
  EXPECT_FALSE(http_answer_length("HTTP/1.1 200 OK\r\nContent-Length: x2\r\n\r\nok"));
}

// --- checks against servers ----------------------------------------------------------------

TEST(Checker, TcpSucceedsWhenTheConnectionIsEstablished) {
  LoopbackServer server(tandem::test::close_at_once);
  const CheckResult r = run_one(tcp_check(7, server.port()));
  EXPECT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.error, "");
  EXPECT_EQ(r.id, 7u);
}

TEST(Checker, ARefusedConnectionFailsBothKinds) {
  const std::uint16_t port = tandem::test::closed_port();
  for (const CheckRequest& request : {tcp_check(1, port), http_check(1, port)}) {
    const CheckResult r = run_one(request);
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.error, "connection refused") << to_string(request.type);
  }
}

TEST(Checker, HttpSendsTheDocumentedRequestAndMatchesStatusAndBody) {
  std::string request;
  LoopbackServer server(answer("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nstatus: ok\n", &request));
  const CheckResult r = run_one(http_check(1, server.port(), "ok"));
  server.stop();  // joins its thread: `request` is ours to read
  EXPECT_TRUE(r.ok) << r.error;
  EXPECT_EQ(request, "GET /health HTTP/1.0\r\nHost: 127.0.0.1:" + std::to_string(server.port()) +
                         "\r\nUser-Agent: tandem-health\r\nConnection: close\r\n\r\n");
}

TEST(Checker, HttpUsesTheConfiguredHost) {
  std::string request;
  LoopbackServer server(answer("HTTP/1.1 200 OK\r\n\r\n", &request));
  CheckRequest c = http_check(1, server.port());
  c.http_host = "www.example.org";
  c.http_path = "/";
  EXPECT_TRUE(run_one(c).ok);
  server.stop();
  EXPECT_EQ(request, "GET / HTTP/1.0\r\nHost: www.example.org\r\nUser-Agent: tandem-health\r\nConnection: close\r\n\r\n");
}

TEST(Checker, HttpAnswersThatFail) {
  struct Case {
    std::string answer;
    std::string body;  // what the check wants in the body
    std::string error;
  };
  const Case cases[] = {
      {"HTTP/1.1 500 Internal Server Error\r\n\r\nok", "ok", "status 500, expected 200"},
      {"HTTP/1.1 200 OK\r\n\r\nstatus: degraded\n", "status: ok", "body does not contain \"status: ok\""},
      {"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n", "", "malformed status line"},
      {"HTTP/1.1 200 OK\r\nServer: x\r\n", "", "answer ends inside its headers"},
  };
  for (const Case& c : cases) {
    LoopbackServer server(answer(c.answer));
    const CheckResult r = run_one(http_check(1, server.port(), c.body));
    EXPECT_FALSE(r.ok) << c.answer;
    EXPECT_EQ(r.error, c.error) << c.answer;
  }
}

TEST(Checker, HttpExpectedStatusOtherThan200) {
  LoopbackServer server(answer("HTTP/1.1 204 No Content\r\n\r\n"));
  CheckRequest c = http_check(1, server.port());
  c.http_status = 204;
  EXPECT_TRUE(run_one(c).ok);
}

TEST(Checker, HttpServerThatClosesAtOnce) {
  LoopbackServer server(tandem::test::close_at_once);
  const CheckResult r = run_one(http_check(1, server.port()));
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error, "connection closed without an answer");
}

TEST(Checker, HttpServerThatNeverAnswersTimesOut) {
  LoopbackServer server(tandem::test::hold_open);
  const CheckResult r = run_one(http_check(1, server.port(), {}, 150));
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error, "timeout after 150 ms waiting for the answer");
  EXPECT_GE(r.duration_ms, 150u);
}

TEST(Checker, HttpAnswerWithContentLengthEndsWithoutWaitingForTheClose) {
  // The server holds the connection open after answering: only Content-Length ends the check.
  LoopbackServer server(answer("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", nullptr, true));
  const CheckResult r = run_one(http_check(1, server.port(), "ok", 60'000));
  EXPECT_TRUE(r.ok) << r.error;
}

TEST(Checker, HttpReadsAtMost64KiB) {
  // 200 KiB, no length, never closed: the check judges the first 64 KiB instead of timing out.
  const std::string big = "HTTP/1.1 200 OK\r\n\r\nstart" + std::string(200 * 1024, 'x') + "end";
  LoopbackServer server(answer(big, nullptr, true));
  const CheckResult found = run_one(http_check(1, server.port(), "start", 60'000));
  EXPECT_TRUE(found.ok) << found.error;
  const CheckResult beyond = run_one(http_check(2, server.port(), "end", 60'000));
  EXPECT_EQ(beyond.error, "body does not contain \"end\"");
}

TEST(Checker, ConnectThatGetsNoAnswerTimesOut) {
  // A listener whose accept queue is full drops further SYNs: the connect hangs.
  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sa;
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  ASSERT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&sa), &len), 0);
  ASSERT_EQ(::listen(listener, 0), 0);
  const int filler = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_EQ(::connect(filler, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  // A backlog of 0 queues one connection; on a listener, tcpi_unacked is its queue's length.
  ASSERT_TRUE(eventually([&] {
    tcp_info info{};
    socklen_t info_len = sizeof info;
    return ::getsockopt(listener, IPPROTO_TCP, TCP_INFO, &info, &info_len) == 0 && info.tcpi_unacked >= 1;
  }));
  const CheckResult r = run_one(tcp_check(1, ntohs(sa.sin_port), 200));
  ::close(filler);
  ::close(listener);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error, "timeout after 200 ms while connecting");
}

TEST(Checker, BindsToTheSourceAddressWhenGivenOne) {
  LoopbackServer server(tandem::test::close_at_once);
  CheckRequest c = tcp_check(1, server.port());
  c.source = Ipv4Addr{0x7f000002};  // 127.0.0.2: every 127/8 address is local
  EXPECT_TRUE(run_one(c).ok);
  // The check ends with the handshake; the server accepts when it gets to it.
  ASSERT_TRUE(eventually([&] { return !server.peers().empty(); }));
  EXPECT_EQ(server.peers()[0].to_string(), "127.0.0.2");
}

TEST(Checker, AnUnusableSourceAddressFailsAtOnce) {
  CheckRequest c = tcp_check(1, tandem::test::closed_port());
  c.source = Ipv4Addr{0xc0000201};  // 192.0.2.1 (TEST-NET-1): not an address of this host
  const CheckResult r = run_one(c);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error, "bind 192.0.2.1: Cannot assign requested address");
}

TEST(Checker, RequestsThatCannotBeSentFailWithoutConnecting) {
  // To a closed port: had they connected, they would say "connection refused".
  CheckRequest bad_path = http_check(1, tandem::test::closed_port());
  bad_path.http_path = "/x\r\nInjected: yes";
  EXPECT_EQ(run_one(bad_path).error, "invalid http path");
  EXPECT_EQ(run_one(tcp_check(2, 0)).error, "no port to check");
}

TEST(Checker, ADuplicateIdIsRefusedAndCancelDropsACheck) {
  LoopbackServer server(tandem::test::hold_open);
  Checker checker;
  ASSERT_TRUE(checker.start(http_check(1, server.port(), {}, 300)));
  EXPECT_FALSE(checker.start(tcp_check(1, server.port())));
  ASSERT_TRUE(checker.start(http_check(2, server.port(), {}, 300)));
  EXPECT_EQ(checker.in_flight(), 2u);
  EXPECT_TRUE(checker.cancel(1));
  EXPECT_FALSE(checker.cancel(1));
  EXPECT_FALSE(checker.cancel(99));
  EXPECT_EQ(checker.in_flight(), 1u);
  const auto results = results_of(checker, 1);
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results.begin()->first, 2u);
  EXPECT_TRUE(checker.poll(400).empty()) << "the cancelled check yields nothing, even after its timeout";
}

TEST(Checker, WakeEndsAPollEarly) {
  Checker checker;
  std::thread waker([&] {
    std::this_thread::sleep_for(50ms);
    checker.wake();
  });
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(checker.poll(-1).empty());
  waker.join();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, kPatience);
}

TEST(Checker, ManyChecksAtOnce) {
  LoopbackServer ok_server(answer("HTTP/1.0 200 OK\r\n\r\nok"));
  LoopbackServer silent(tandem::test::hold_open);
  const std::uint16_t refused = tandem::test::closed_port();
  Checker checker;
  constexpr std::uint64_t kChecks = 300;
  for (std::uint64_t id = 0; id < kChecks; ++id) {
    switch (id % 3) {
      case 0: ASSERT_TRUE(checker.start(http_check(id, ok_server.port(), "ok"))); break;
      case 1: ASSERT_TRUE(checker.start(tcp_check(id, refused))); break;
      case 2: ASSERT_TRUE(checker.start(http_check(id, silent.port(), {}, 300))); break;
    }
  }
  const auto results = results_of(checker, kChecks);
  ASSERT_EQ(results.size(), kChecks);
  for (const auto& [id, r] : results) {
    switch (id % 3) {
      case 0: EXPECT_TRUE(r.ok) << id << ": " << r.error; break;
      case 1: EXPECT_EQ(r.error, "connection refused") << id; break;
      case 2: EXPECT_EQ(r.error, "timeout after 300 ms waiting for the answer") << id; break;
    }
  }
  EXPECT_EQ(checker.in_flight(), 0u);
}

TEST(Checker, NoDescriptorIsLeft) {
  const std::size_t before = tandem::test::open_fd_count();
  {
    LoopbackServer ok_server(answer("HTTP/1.0 200 OK\r\n\r\nok"));
    LoopbackServer closing(tandem::test::close_at_once);
    LoopbackServer silent(tandem::test::hold_open);
    const std::uint16_t refused = tandem::test::closed_port();
    {
      Checker checker;
      const std::size_t idle = tandem::test::open_fd_count();
      std::uint64_t id = 0;
      for (int round = 0; round < 20; ++round) {
        checker.start(http_check(id++, ok_server.port(), "ok"));
        checker.start(http_check(id++, ok_server.port(), "missing"));
        checker.start(tcp_check(id++, closing.port()));
        checker.start(http_check(id++, closing.port()));
        checker.start(tcp_check(id++, refused));
        checker.start(http_check(id++, silent.port(), {}, 100));
        CheckRequest unbindable = tcp_check(id++, refused);
        unbindable.source = Ipv4Addr{0xc0000201};
        checker.start(unbindable);
      }
      EXPECT_EQ(results_of(checker, id).size(), id);
      EXPECT_TRUE(eventually([&] { return tandem::test::open_fd_count() == idle + silent.held(); }))
          << "every check's socket closed when it ended: " << tandem::test::open_fd_count() << " open, "
          << idle << " + " << silent.held() << " expected";
      checker.start(http_check(id++, silent.port(), {}, 60'000));
      checker.start(http_check(id++, silent.port(), {}, 60'000));
      checker.start(http_check(id++, silent.port(), {}, 60'000));
      checker.cancel(id - 1);
    }  // destroyed with two checks in flight
  }
  EXPECT_TRUE(eventually([&] { return tandem::test::open_fd_count() == before; })) << tandem::test::open_fd_count() << " open, " << before << " before";
}

}  // namespace
