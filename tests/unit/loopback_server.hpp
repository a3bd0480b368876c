// Servers on 127.0.0.1 for the tests of code that connects out (health checks): each accepts in
// a thread of its own and hands every connection to a behaviour, one connection at a time.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "dataplane/net/addr.hpp"

namespace tandem::test {

inline constexpr net::Ipv4Addr kLoopback{0x7f000001};
// How long a test waits for what should happen within milliseconds: generous, for loaded hosts.
inline constexpr std::chrono::seconds kPatience{5};

// Whether `done()` becomes true within kPatience (checked every few milliseconds).
bool eventually(const std::function<bool()>& done);

class LoopbackServer {
 public:
  // Handles one accepted connection; returns true to keep it open (unanswered) until stop().
  using Behaviour = std::function<bool(int fd)>;

  // Listens on 127.0.0.1:port (0: an ephemeral port); throws std::system_error on failure.
  explicit LoopbackServer(Behaviour behaviour, std::uint16_t port = 0);
  ~LoopbackServer();  // stop()
  LoopbackServer(const LoopbackServer&) = delete;
  LoopbackServer& operator=(const LoopbackServer&) = delete;

  std::uint16_t port() const { return port_; }
  // The source address of every connection accepted so far.
  std::vector<net::Ipv4Addr> peers() const;
  // How many connections it holds open (behaviours that returned true).
  std::size_t held() const;
  // Closes the listening socket and every held connection; joins the thread.
  void stop();

 private:
  void run();

  Behaviour behaviour_;
  int listen_fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  mutable std::mutex mutex_;
  std::vector<net::Ipv4Addr> peers_;
  std::vector<int> held_;
  std::thread thread_;
};

// Behaviours.
bool close_at_once(int fd);
bool hold_open(int fd);
// Reads the request up to its blank line, stores it in *request if given, sends `reply`, then
// closes (or, with keep_open, holds the connection without closing).
LoopbackServer::Behaviour answer(std::string reply, std::string* request = nullptr, bool keep_open = false);

// A port of 127.0.0.1 nobody listens on (bound, then closed: a connect is refused).
std::uint16_t closed_port();
// How many descriptors this process has open.
std::size_t open_fd_count();

}  // namespace tandem::test
