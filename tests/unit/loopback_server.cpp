#include "tests/unit/loopback_server.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <system_error>

namespace tandem::test {

namespace {

constexpr int kAcceptPollMs = 10;  // how soon stop() is noticed
constexpr int kRequestWaitMs = 5000;

sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = htons(port);
  return sa;
}

// A socket bound to 127.0.0.1:port, its bound port in *bound.
int bound_socket(std::uint16_t port, std::uint16_t* bound) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "socket");
  const int on = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);  // a restart on the same port
  sockaddr_in sa = loopback(port);
  socklen_t len = sizeof sa;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
    const int err = errno;
    ::close(fd);
    throw std::system_error(err, std::generic_category(), "bind 127.0.0.1:" + std::to_string(port));
  }
  *bound = ntohs(sa.sin_port);
  return fd;
}

}  // namespace

LoopbackServer::LoopbackServer(Behaviour behaviour, std::uint16_t port) : behaviour_(std::move(behaviour)) {
  listen_fd_ = bound_socket(port, &port_);
  if (::listen(listen_fd_, SOMAXCONN) != 0) {
    const int err = errno;
    ::close(listen_fd_);
    throw std::system_error(err, std::generic_category(), "listen");
  }
  thread_ = std::thread([this] { run(); });
}

LoopbackServer::~LoopbackServer() { stop(); }

std::vector<net::Ipv4Addr> LoopbackServer::peers() const {
  std::lock_guard lock(mutex_);
  return peers_;
}

std::size_t LoopbackServer::held() const {
  std::lock_guard lock(mutex_);
  return held_.size();
}

void LoopbackServer::stop() {
  stopping_ = true;
  if (thread_.joinable()) thread_.join();
  if (listen_fd_ >= 0) ::close(listen_fd_);
  listen_fd_ = -1;
  std::lock_guard lock(mutex_);
  for (const int fd : held_) ::close(fd);
  held_.clear();
}

void LoopbackServer::run() {
  while (!stopping_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, kAcceptPollMs) <= 0) continue;
    sockaddr_in peer{};
    socklen_t len = sizeof peer;
    const int fd = ::accept4(listen_fd_, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC);
    if (fd < 0) continue;
    {
      std::lock_guard lock(mutex_);
      peers_.push_back({ntohl(peer.sin_addr.s_addr)});
    }
    if (!behaviour_(fd)) {
      ::close(fd);
      continue;
    }
    std::lock_guard lock(mutex_);
    held_.push_back(fd);
  }
}

bool close_at_once(int) { return false; }

bool hold_open(int) { return true; }

LoopbackServer::Behaviour answer(std::string reply, std::string* request, bool keep_open) {
  return [reply = std::move(reply), request, keep_open](int fd) {
    std::string got;
    char buf[4096];
    while (got.find("\r\n\r\n") == std::string::npos) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, kRequestWaitMs) <= 0) break;
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      got.append(buf, static_cast<std::size_t>(n));
    }
    if (request) *request = got;
    for (std::size_t sent = 0; sent < reply.size();) {
      const ssize_t n = ::send(fd, reply.data() + sent, reply.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) break;
      sent += static_cast<std::size_t>(n);
    }
    return keep_open;
  };
}

bool eventually(const std::function<bool()>& done) {
  const auto give_up = std::chrono::steady_clock::now() + kPatience;
  while (!done()) {
    if (std::chrono::steady_clock::now() > give_up) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

std::uint16_t closed_port() {
  std::uint16_t port = 0;
  ::close(bound_socket(0, &port));
  return port;
}

std::size_t open_fd_count() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

}  // namespace tandem::test
