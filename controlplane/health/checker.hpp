// Health checks in flight: a non-blocking engine over epoll, with no thread of its own. start()
// opens a socket and begins connecting; poll() waits for the sockets (and the checks'
// deadlines) and hands back the checks that are done. Only poll() blocks, and only up to its
// timeout; every socket is closed when its check ends, is cancelled, or the Checker goes.
//
//   tcp:  the connection is established (SO_ERROR 0 after a non-blocking connect) within the
//         timeout; it is then closed at once.
//   http: connect, send http_request(path, host) (http_check.hpp), read the answer until the
//         server closes, its Content-Length is in, or kMaxHttpAnswerBytes; then
//         judge_http_answer() decides.
//
// Results carry a short error saying what failed: "connection refused", "timeout after 500 ms
// while connecting", "status 500, expected 200", "body does not contain \"ok\"", ... (the full
// list is in docs/health-checks.md).
//
// Not thread-safe, except wake(), which any thread may call to make a poll() return early.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "dataplane/net/addr.hpp"

namespace tandem::health {

enum class CheckType : std::uint8_t { kTcp, kHttp };
const char* to_string(CheckType t);

struct CheckRequest {
  std::uint64_t id = 0;  // the caller's; unique among the checks in flight
  net::Ipv4Addr address;
  std::uint16_t port = 0;
  CheckType type = CheckType::kTcp;
  std::uint32_t timeout_ms = 1000;
  std::string http_path = "/";
  std::string http_host;  // empty: the address, with ":port" unless the port is 80
  std::uint32_t http_status = 200;
  std::string http_body;  // empty: any body
  std::optional<net::Ipv4Addr> source;  // bind to it before connecting; unset: the kernel picks
};

struct CheckResult {
  std::uint64_t id = 0;
  bool ok = false;
  std::string error;  // why it failed; empty when ok
  std::uint32_t duration_ms = 0;  // from start() to the verdict
};

class Checker {
 public:
  // Throws std::system_error when the epoll or eventfd descriptor cannot be created.
  Checker();
  ~Checker();
  Checker(const Checker&) = delete;
  Checker& operator=(const Checker&) = delete;

  // Starts a check; its result comes from a later poll() (a check that fails at once, e.g. an
  // unusable source address, too). False, and nothing started, when `id` is already in flight.
  bool start(CheckRequest request);
  // Waits up to timeout_ms (-1: until something happens) for checks to end; returns at once
  // when results are already waiting. Returns the ended checks, possibly none (timeout, wake()).
  std::vector<CheckResult> poll(int timeout_ms);
  // Drops a check in flight, closing its socket; it yields no result. False if `id` is unknown.
  bool cancel(std::uint64_t id);
  // Thread-safe: makes the current or next poll() return without waiting.
  void wake();

  std::size_t in_flight() const { return checks_.size(); }

 private:
  using Clock = std::chrono::steady_clock;
  struct Check;

  void fail_now(const CheckRequest& request, Clock::time_point started, std::string error);
  void finish(Check& c, std::string error);
  void on_ready(Check& c);
  void on_connected(Check& c);
  void send_request(Check& c);
  void receive_answer(Check& c);
  void expire(Clock::time_point now);

  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  std::unordered_map<std::uint64_t, std::unique_ptr<Check>> checks_;
  std::vector<CheckResult> done_;  // ended since the last poll() returned
};

}  // namespace tandem::health
