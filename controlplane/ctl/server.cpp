#include "controlplane/ctl/server.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace tandem::ctl {

struct Server::Client {
  int fd = -1;
  Peer peer;
  std::string in;        // bytes read, not yet a complete line
  bool skipping = false;  // inside a line that was too long: drop up to its newline
  std::string out;       // replies not yet written
  std::size_t out_sent = 0;
  bool read_closed = false;  // the peer half-closed or closed
  bool doomed = false;       // close once `out` is written (forbidden peer)
  bool broken = false;       // a write failed (the peer is gone)
};

namespace {

constexpr std::size_t kReadChunk = 16 * 1024;

std::string errno_text(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

}  // namespace

Server::Server(ServerOptions options, Handler handler, EventSink on_event)
    : options_(std::move(options)), handler_(std::move(handler)), on_event_(std::move(on_event)) {
  options_.allowed_uids.push_back(0);
  options_.allowed_uids.push_back(geteuid());
}

Server::~Server() {
  for (auto& c : clients_) ::close(c->fd);
  if (listen_fd_ >= 0) {
    ::close(listen_fd_);
    ::unlink(options_.path.c_str());
  }
}

std::string Server::open() {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (options_.path.empty() || options_.path.size() >= sizeof addr.sun_path)
    return "socket path must be 1.." + std::to_string(sizeof addr.sun_path - 1) + " bytes";
  std::memcpy(addr.sun_path, options_.path.c_str(), options_.path.size() + 1);
  // A socket file left by a daemon that died is replaced; a socket somebody still listens on,
  // or anything else at the path, is not.
  struct stat st {};
  if (::lstat(options_.path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return options_.path + " exists and is not a socket";
    const int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const bool live = probe >= 0 && ::connect(probe, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
    if (probe >= 0) ::close(probe);
    if (live) return options_.path + " is in use by another process (another tandemd with the same [ctl] socket?)";
    ::unlink(options_.path.c_str());
  }
  listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) return errno_text("socket");
  // Created with no permissions, opened up only once owner and mode are set: no window in
  // which another user could connect.
  const mode_t old_umask = ::umask(0777);
  const int rc = ::bind(listen_fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  ::umask(old_umask);
  if (rc != 0) return errno_text(("bind " + options_.path).c_str());
  if ((options_.owner || options_.group) &&
      ::chown(options_.path.c_str(), options_.owner.value_or(static_cast<uid_t>(-1)),
              options_.group.value_or(static_cast<gid_t>(-1))) != 0)
    return errno_text(("chown " + options_.path).c_str());
  if (::chmod(options_.path.c_str(), options_.mode) != 0) return errno_text(("chmod " + options_.path).c_str());
  if (::listen(listen_fd_, 64) != 0) return errno_text("listen");
  return {};
}

bool Server::admit(Peer& p) const {
  const auto in = [](const auto& list, auto id) { return std::find(list.begin(), list.end(), id) != list.end(); };
  if (in(options_.allowed_uids, p.uid) || in(options_.allowed_gids, p.gid)) {
    p.read_only = false;
    return true;
  }
  p.read_only = in(options_.read_only_uids, p.uid) || in(options_.read_only_gids, p.gid);
  return p.read_only;
}

void Server::accept_all() {
  for (;;) {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;  // EAGAIN: no more; other errors: try again at the next poll
    auto c = std::make_unique<Client>();
    c->fd = fd;
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) c->peer = {cred.uid, cred.gid, cred.pid};
    if (clients_.size() >= options_.max_clients) {
      ++stats_.too_many_clients;
      if (on_event_) on_event_(ServerEvent::kTooManyClients, c->peer, std::to_string(clients_.size()) + " connected");
      const std::string reply = encode_error(nullptr, {ErrorCode::kForbidden, "too many clients"});
      (void)!::send(fd, reply.data(), reply.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      ::close(fd);
      continue;
    }
    if (!admit(c->peer)) {
      ++stats_.refused;
      if (on_event_) on_event_(ServerEvent::kRefused, c->peer, "uid/gid not allowed");
      c->out = encode_error(nullptr, {ErrorCode::kForbidden, "uid " + std::to_string(c->peer.uid) + " gid " +
                                                                 std::to_string(c->peer.gid) + " may not use this socket"});
      c->doomed = true;
    } else {
      ++stats_.accepted;
      if (on_event_) on_event_(ServerEvent::kAccepted, c->peer, {});
    }
    clients_.push_back(std::move(c));
  }
}

void Server::serve_line(Client& c, std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.find_first_not_of(" \t") == std::string_view::npos) return;  // blank lines are ignored
  ++stats_.requests;
  const Parsed p = parse_request(line);
  if (!p.request) {
    ++stats_.bad_requests;
    if (on_event_) on_event_(ServerEvent::kBadRequest, c.peer, p.error.message);
    c.out += encode_error(p.id, p.error);
    return;
  }
  if (c.peer.read_only && p.request->spec->changes_state) {
    ++stats_.read_only_refused;
    if (on_event_) on_event_(ServerEvent::kReadOnlyRefused, c.peer, p.request->cmd);
    c.out += encode_error(p.request->id, {ErrorCode::kForbidden, "uid " + std::to_string(c.peer.uid) +
                                                                     " has read-only access; " + p.request->cmd +
                                                                     " changes the running state"});
    return;
  }
  Outcome o;
  try {
    o = handler_(*p.request, c.peer);
  } catch (const std::exception& e) {  // a handler bug must not take the daemon down
    o = Outcome::failure(ErrorCode::kInternal, e.what());
  }
  c.out += o.ok ? encode_result(p.request->id, o.result) : encode_error(p.request->id, o.error);
}

void Server::read_from(Client& c) {
  char buf[kReadChunk];
  for (;;) {
    const ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
    if (n == 0) {
      c.read_closed = true;
      break;
    }
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) c.read_closed = true;
      break;
    }
    if (c.doomed) continue;  // a refused peer is not listened to
    std::string_view data(buf, static_cast<std::size_t>(n));
    while (!data.empty()) {
      const std::size_t nl = data.find('\n');
      const std::string_view part = data.substr(0, nl);
      if (c.skipping) {
        if (nl != std::string_view::npos) c.skipping = false;
      } else if (c.in.size() + part.size() > kMaxLineBytes) {
        ++stats_.requests;
        ++stats_.bad_requests;
        if (on_event_) on_event_(ServerEvent::kBadRequest, c.peer, "line too long");
        c.out += encode_error(nullptr, {ErrorCode::kLineTooLong, "request longer than " +
                                                                      std::to_string(kMaxLineBytes) + " bytes"});
        c.in.clear();
        c.skipping = nl == std::string_view::npos;
      } else if (nl == std::string_view::npos) {
        c.in.append(part);
      } else {
        c.in.append(part);
        serve_line(c, c.in);
        c.in.clear();
      }
      if (nl == std::string_view::npos) break;
      data.remove_prefix(nl + 1);
    }
    if (c.out.size() - c.out_sent > options_.max_pending_output) return;  // write_to() decides
  }
  // What a half-closed peer sent last without a newline is still a request.
  if (c.read_closed && !c.in.empty() && !c.skipping && !c.doomed) {
    serve_line(c, c.in);
    c.in.clear();
  }
}

void Server::write_to(Client& c) {
  while (c.out_sent < c.out.size()) {
    const ssize_t n = ::send(c.fd, c.out.data() + c.out_sent, c.out.size() - c.out_sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) c.broken = true;
    if (n <= 0) break;
    c.out_sent += static_cast<std::size_t>(n);
  }
  if (c.out_sent == c.out.size()) {
    c.out.clear();
    c.out_sent = 0;
  } else if (c.out_sent > kReadChunk) {
    c.out.erase(0, c.out_sent);
    c.out_sent = 0;
  }
}

void Server::close_client(std::size_t i) {
  ::close(clients_[i]->fd);
  clients_.erase(clients_.begin() + static_cast<std::ptrdiff_t>(i));
}

void Server::poll_once(int timeout_ms) {
  std::vector<pollfd> fds;
  fds.reserve(clients_.size() + 1);
  fds.push_back({listen_fd_, POLLIN, 0});
  for (const auto& c : clients_) {
    short events = 0;
    if (!c->read_closed) events |= POLLIN;
    if (c->out_sent < c->out.size()) events |= POLLOUT;
    fds.push_back({c->fd, events, 0});
  }
  if (::poll(fds.data(), fds.size(), timeout_ms) <= 0) return;
  const std::size_t known = clients_.size();
  for (std::size_t i = known; i-- > 0;) {
    Client& c = *clients_[i];
    const short re = fds[i + 1].revents;
    if (re & (POLLIN | POLLHUP | POLLERR)) read_from(c);
    write_to(c);
    bool close = false;
    if (c.out.size() - c.out_sent > options_.max_pending_output) {
      ++stats_.slow_clients;
      if (on_event_) on_event_(ServerEvent::kSlowClient, c.peer, std::to_string(c.out.size() - c.out_sent) + " bytes unread");
      close = true;
    }
    // Done with a peer once it stopped sending (or was refused) and has all its replies; at once
    // when the socket failed.
    if (((c.read_closed || c.doomed) && c.out_sent == c.out.size()) || c.broken || (re & POLLERR)) close = true;
    if (close) close_client(i);
  }
  if (fds[0].revents & POLLIN) accept_all();
  stats_.connected = clients_.size();
}

void Server::run(const std::atomic<bool>& stop) {
  while (!stop.load(std::memory_order_relaxed)) poll_once(100);
}

}  // namespace tandem::ctl
