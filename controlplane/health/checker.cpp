#include "controlplane/health/checker.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <system_error>

#include "controlplane/health/http_check.hpp"

namespace tandem::health {

namespace {

constexpr std::size_t kReadChunk = 16 * 1024;
constexpr int kMaxEventsPerWait = 64;

enum class Phase : std::uint8_t { kConnecting, kSending, kReceiving };

std::string connect_error(int err) {
  switch (err) {
    case ECONNREFUSED: return "connection refused";
    case ECONNRESET: return "connection reset";
    case ETIMEDOUT: return "connect timed out";
    case EHOSTUNREACH: return "host unreachable";
    case ENETUNREACH: return "network unreachable";
    default: return std::string("connect: ") + std::strerror(err);
  }
}

sockaddr_in socket_address(net::Ipv4Addr a, std::uint16_t port) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(a.value);
  sa.sin_port = htons(port);
  return sa;
}

std::uint32_t elapsed_ms(std::chrono::steady_clock::time_point from, std::chrono::steady_clock::time_point to) {
  return static_cast<std::uint32_t>(std::chrono::duration_cast<std::chrono::milliseconds>(to - from).count());
}

}  // namespace

const char* to_string(CheckType t) { return t == CheckType::kTcp ? "tcp" : "http"; }

struct Checker::Check {
  CheckRequest request;
  int fd = -1;
  Phase phase = Phase::kConnecting;
  Clock::time_point started;
  Clock::time_point deadline;
  std::string out;  // the HTTP request
  std::size_t sent = 0;
  std::string in;   // the answer so far
};

Checker::Checker() {
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) throw std::system_error(errno, std::generic_category(), "epoll_create1");
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) {
    const int err = errno;
    ::close(epoll_fd_);
    throw std::system_error(err, std::generic_category(), "eventfd");
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr;  // checks carry their Check*; the wake descriptor none
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev) != 0) {
    const int err = errno;
    ::close(wake_fd_);
    ::close(epoll_fd_);
    throw std::system_error(err, std::generic_category(), "epoll_ctl");
  }
}

Checker::~Checker() {
  for (auto& [id, c] : checks_) ::close(c->fd);
  ::close(wake_fd_);
  ::close(epoll_fd_);
}

void Checker::wake() {
  const std::uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof one);
}

void Checker::fail_now(const CheckRequest& request, Clock::time_point started, std::string error) {
  done_.push_back({request.id, false, std::move(error), elapsed_ms(started, Clock::now())});
}

bool Checker::start(CheckRequest request) {
  if (checks_.contains(request.id)) return false;
  const auto started = Clock::now();
  if (request.port == 0) {
    fail_now(request, started, "no port to check");
    return true;
  }
  if (request.type == CheckType::kHttp) {
    if (request.http_host.empty()) {
      request.http_host = request.address.to_string();
      if (request.port != 80) request.http_host += ":" + std::to_string(request.port);
    }
    if (auto problem = http_request_problem(request.http_path, request.http_host); !problem.empty()) {
      fail_now(request, started, std::move(problem));
      return true;
    }
  }
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    fail_now(request, started, std::string("socket: ") + std::strerror(errno));
    return true;
  }
  if (request.source) {
    // The port is picked at connect(), per destination: checks from one source to many
    // backends do not each hold an ephemeral port of their own.
    const int on = 1;
    ::setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &on, sizeof on);
    const sockaddr_in src = socket_address(*request.source, 0);
    if (::bind(fd, reinterpret_cast<const sockaddr*>(&src), sizeof src) != 0) {
      const int err = errno;
      ::close(fd);
      fail_now(request, started, "bind " + request.source->to_string() + ": " + std::strerror(err));
      return true;
    }
  }
  const sockaddr_in dst = socket_address(request.address, request.port);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&dst), sizeof dst) != 0 && errno != EINPROGRESS) {
    const int err = errno;
    ::close(fd);
    fail_now(request, started, connect_error(err));
    return true;
  }
  auto c = std::make_unique<Check>();
  c->fd = fd;
  c->started = started;
  c->deadline = started + std::chrono::milliseconds(request.timeout_ms);
  if (request.type == CheckType::kHttp) c->out = http_request(request.http_path, request.http_host);
  c->request = std::move(request);
  epoll_event ev{};
  ev.events = EPOLLOUT;  // writable: the connect ended, one way or the other
  ev.data.ptr = c.get();
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    const int err = errno;
    ::close(fd);
    fail_now(c->request, started, std::string("epoll_ctl: ") + std::strerror(err));
    return true;
  }
  const std::uint64_t id = c->request.id;
  checks_.emplace(id, std::move(c));
  return true;
}

bool Checker::cancel(std::uint64_t id) {
  const auto it = checks_.find(id);
  if (it == checks_.end()) return false;
  ::close(it->second->fd);  // closing also takes it out of the epoll set
  checks_.erase(it);
  return true;
}

void Checker::finish(Check& c, std::string error) {
  const std::uint64_t id = c.request.id;
  const bool ok = error.empty();
  done_.push_back({id, ok, std::move(error), elapsed_ms(c.started, Clock::now())});
  ::close(c.fd);
  checks_.erase(id);  // `c` is gone from here on
}

void Checker::on_connected(Check& c) {
  if (c.request.type == CheckType::kTcp) {
    finish(c, {});
    return;
  }
  c.phase = Phase::kSending;
  send_request(c);
}

void Checker::send_request(Check& c) {
  while (c.sent < c.out.size()) {
    const ssize_t n = ::send(c.fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;  // EPOLLOUT again
      // The server closed (or reset) before taking the request: it did not answer.
      if (errno == EPIPE || errno == ECONNRESET) finish(c, "connection closed without an answer");
      else finish(c, std::string("send: ") + std::strerror(errno));
      return;
    }
    c.sent += static_cast<std::size_t>(n);
  }
  c.phase = Phase::kReceiving;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = &c;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c.fd, &ev) != 0) finish(c, std::string("epoll_ctl: ") + std::strerror(errno));
}

void Checker::receive_answer(Check& c) {
  char buf[kReadChunk];
  for (;;) {
    const std::size_t room = kMaxHttpAnswerBytes - c.in.size();
    const ssize_t n = ::recv(c.fd, buf, std::min(room, sizeof buf), 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;  // EPOLLIN again
    if (n < 0 && errno != ECONNRESET) {
      finish(c, std::string("recv: ") + std::strerror(errno));
      return;
    }
    if (n <= 0) {  // closed or reset: what came is the whole answer
      finish(c, c.in.empty() ? "connection closed without an answer"
                             : judge_http_answer(c.in, c.request.http_status, c.request.http_body));
      return;
    }
    c.in.append(buf, static_cast<std::size_t>(n));
    const auto length = http_answer_length(c.in);
    if (length && c.in.size() >= *length) {
      finish(c, judge_http_answer(std::string_view(c.in).substr(0, *length), c.request.http_status, c.request.http_body));
      return;
    }
    if (c.in.size() >= kMaxHttpAnswerBytes) {
      finish(c, judge_http_answer(c.in, c.request.http_status, c.request.http_body));
      return;
    }
  }
}

void Checker::on_ready(Check& c) {
  switch (c.phase) {
    case Phase::kConnecting: {
      int err = 0;
      socklen_t len = sizeof err;
      if (::getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
      if (err != 0) finish(c, connect_error(err));
      else on_connected(c);
      return;
    }
    case Phase::kSending: send_request(c); return;
    case Phase::kReceiving: receive_answer(c); return;
  }
}

void Checker::expire(Clock::time_point now) {
  std::vector<Check*> late;
  for (auto& [id, c] : checks_)
    if (c->deadline <= now) late.push_back(c.get());
  for (Check* c : late) {
    const char* waiting = c->phase == Phase::kConnecting ? " while connecting" : " waiting for the answer";
    finish(*c, "timeout after " + std::to_string(c->request.timeout_ms) + " ms" + waiting);
  }
}

std::vector<CheckResult> Checker::poll(int timeout_ms) {
  int wait_ms = done_.empty() ? timeout_ms : 0;
  const auto now = Clock::now();
  if (wait_ms != 0 && !checks_.empty()) {
    auto nearest = Clock::time_point::max();
    for (const auto& [id, c] : checks_) nearest = std::min(nearest, c->deadline);
    // Rounded up: waking a little after a deadline is fine, waking just before it would spin.
    const auto until = std::chrono::ceil<std::chrono::milliseconds>(std::max(nearest - now, Clock::duration::zero()));
    const int until_ms = static_cast<int>(std::min<std::int64_t>(until.count(), 1 << 30));
    wait_ms = wait_ms < 0 ? until_ms : std::min(wait_ms, until_ms);
  }
  std::array<epoll_event, kMaxEventsPerWait> events;
  const int n = ::epoll_wait(epoll_fd_, events.data(), kMaxEventsPerWait, wait_ms);
  for (int i = 0; i < n; ++i) {
    if (events[i].data.ptr == nullptr) {
      std::uint64_t count = 0;
      (void)!::read(wake_fd_, &count, sizeof count);
      continue;
    }
    // Each descriptor appears once per wait and finish() erases only its own check, so the
    // other pointers of this batch stay valid.
    on_ready(*static_cast<Check*>(events[i].data.ptr));
  }
  expire(Clock::now());
  std::vector<CheckResult> out;
  out.swap(done_);
  return out;
}

}  // namespace tandem::health
