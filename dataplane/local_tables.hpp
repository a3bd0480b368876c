// The addresses each data port answers for, changed at run time without stopping a worker.
//
// Classic RCU (DPDK's QSBR flavour): the control thread builds a new, immutable LocalInterface,
// publishes its pointer, waits until every worker has passed a quiescent state (the top of its
// loop), then frees the old one. Workers only load a pointer per burst: no lock, no reference
// count, no fence beyond an acquire load.
#pragma once

#include <array>
#include <atomic>
#include <memory>

#include "dataplane/counters.hpp"
#include "dataplane/local_stack.hpp"

struct rte_rcu_qsbr;

namespace tandem::dpdk {

class LocalTables {
 public:
  explicit LocalTables(unsigned workers);
  ~LocalTables();
  LocalTables(const LocalTables&) = delete;
  LocalTables& operator=(const LocalTables&) = delete;

  // Worker side.
  const LocalInterface& get(std::size_t port) const { return *ports_[port].load(std::memory_order_acquire); }
  void worker_online(unsigned worker);
  void worker_quiescent(unsigned worker);
  void worker_offline(unsigned worker);

  // Control side: the first call per port installs, later calls replace (blocking until no
  // worker can still hold the old table, i.e. at most one loop iteration of every worker).
  void publish(std::size_t port, const LocalInterface& next);

 private:
  std::array<std::atomic<const LocalInterface*>, kMaxPorts> ports_{};
  rte_rcu_qsbr* qsbr_ = nullptr;
};

}  // namespace tandem::dpdk
