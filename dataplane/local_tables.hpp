// The addresses each data port answers for, RCU-published so they change at run time without
// stopping a worker (see rcu.hpp).
#pragma once

#include <array>
#include <memory>

#include "dataplane/counters.hpp"
#include "dataplane/local_stack.hpp"
#include "dataplane/rcu.hpp"

namespace tandem::dpdk {

class LocalTables {
 public:
  explicit LocalTables(QsbrDomain& domain) : domain_(domain) {}

  // Worker side: valid until the worker's next quiescent state.
  const LocalInterface& get(std::size_t port) const { return *ports_[port].get(); }

  // Control side: installs (first call per port) or replaces, waiting out a grace period.
  void publish(std::size_t port, const LocalInterface& next) {
    ports_[port].publish(std::make_unique<const LocalInterface>(next), domain_);
  }

 private:
  QsbrDomain& domain_;
  std::array<RcuPointer<LocalInterface>, kMaxPorts> ports_;
};

}  // namespace tandem::dpdk
