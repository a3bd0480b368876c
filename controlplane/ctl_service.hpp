// tandemd's ctl socket: the server (ctl/server.hpp) on its own thread, and what each command of
// protocol v1 does to the running daemon. Changes go through the same paths as a reload (the
// RCU-published service table, rt.config under control_mutex) and are logged with the peer's
// uid, gid and pid; connection queries run inside the workers (Worker::post_conn_query).
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "controlplane/ctl/server.hpp"

namespace tandem {

struct Runtime;

class CtlService {
 public:
  // Opens the socket of rt.config.ctl; nullptr and `error` when it cannot.
  static std::unique_ptr<CtlService> open(Runtime& rt, std::string& error);
  ~CtlService();  // stops serving (once rt.stop is set) and removes the socket
  CtlService(const CtlService&) = delete;
  CtlService& operator=(const CtlService&) = delete;

  // Serves on a thread of its own until rt.stop is set.
  void start();
  const std::string& path() const;

 private:
  explicit CtlService(Runtime& rt) : rt_(rt) {}
  ctl::Outcome handle(const ctl::Request& r, const ctl::Peer& peer);

  Runtime& rt_;
  std::unique_ptr<ctl::Server> server_;
  std::thread thread_;
};

}  // namespace tandem
