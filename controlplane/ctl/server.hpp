// The ctl socket: a Unix stream socket speaking protocol.hpp, served by one control-plane thread
// with poll(). It owns connections and framing only; what a command does is the handler's.
//
// - Access: the peer's uid/gid/pid come from SO_PEERCRED on accept. Root and the daemon's own
//   uid may do everything, as may a peer whose uid is in `allowed_uids` or gid in
//   `allowed_gids`; a peer only in `read_only_uids`/`read_only_gids` may run the commands that
//   change nothing (others are answered `forbidden`). Anybody else gets one `forbidden` reply
//   and is disconnected; counted and reported through on_event. The socket file's owner, group
//   and mode are set when it is created; a live socket of another daemon at the path is never
//   replaced.
// - Framing: one request per line; a line longer than kMaxLineBytes is answered
//   `line_too_long` and skipped up to its newline, the connection goes on. Requests of one
//   connection are answered in order.
// - Nobody blocks the daemon: sockets are non-blocking; replies wait in a per-connection buffer,
//   and a peer that lets it grow beyond `max_pending_output` (it does not read) is disconnected.
//   A peer that half-closes (shutdown(SHUT_WR)) still gets the replies to what it sent.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "controlplane/ctl/protocol.hpp"

namespace tandem::ctl {

struct Peer {
  uid_t uid = 0;
  gid_t gid = 0;
  pid_t pid = 0;
  bool read_only = false;  // may run only commands that change nothing
};

struct ServerOptions {
  std::string path;
  mode_t mode = 0660;
  std::optional<uid_t> owner;  // chown of the socket file (unset: the daemon's)
  std::optional<gid_t> group;
  std::vector<uid_t> allowed_uids;  // besides root and the daemon's own uid
  std::vector<gid_t> allowed_gids;
  std::vector<uid_t> read_only_uids;
  std::vector<gid_t> read_only_gids;
  std::size_t max_clients = 64;
  std::size_t max_pending_output = std::size_t{4} << 20;
};

// What a handler answers: a result, or an error (which changes nothing).
struct Outcome {
  bool ok = true;
  nlohmann::json result = nlohmann::json::object();
  Error error;

  static Outcome success(nlohmann::json r) { return {true, std::move(r), {}}; }
  static Outcome failure(ErrorCode c, std::string message) { return {false, {}, {c, std::move(message)}}; }
};

using Handler = std::function<Outcome(const Request&, const Peer&)>;

enum class ServerEvent : std::uint8_t {
  kAccepted,
  kRefused,        // forbidden peer
  kReadOnlyRefused,  // a read-only peer asked for a change (answered forbidden)
  kTooManyClients,
  kSlowClient,     // disconnected: its unread replies exceeded max_pending_output
  kBadRequest,     // a request that failed parsing or validation (answered with its error)
};
using EventSink = std::function<void(ServerEvent, const Peer&, const std::string& detail)>;

struct ServerStats {
  std::uint64_t accepted = 0, refused = 0, too_many_clients = 0, slow_clients = 0;
  std::uint64_t requests = 0, bad_requests = 0, read_only_refused = 0, connected = 0;
};

class Server {
 public:
  Server(ServerOptions options, Handler handler, EventSink on_event = {});
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Creates the socket (replacing a stale file at the path). Empty on success, else why.
  std::string open();
  // Waits up to `timeout_ms` for activity and serves it: accepts, reads, answers, writes.
  void poll_once(int timeout_ms);
  // poll_once until `stop` is set (checked at least every 100 ms).
  void run(const std::atomic<bool>& stop);

  const ServerStats& stats() const { return stats_; }
  const std::string& path() const { return options_.path; }

 private:
  struct Client;
  void accept_all();
  // Sets p.read_only; false when the peer may not connect at all.
  bool admit(Peer& p) const;
  void read_from(Client& c);
  void serve_line(Client& c, std::string_view line);
  void write_to(Client& c);
  void close_client(std::size_t i);

  ServerOptions options_;
  Handler handler_;
  EventSink on_event_;
  int listen_fd_ = -1;
  std::vector<std::unique_ptr<Client>> clients_;
  ServerStats stats_;
};

}  // namespace tandem::ctl
