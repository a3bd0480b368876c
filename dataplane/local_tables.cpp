#include "dataplane/local_tables.hpp"

#include <new>

#include <rte_malloc.h>
#include <rte_rcu_qsbr.h>

namespace tandem::dpdk {

LocalTables::LocalTables(unsigned workers) {
  const std::size_t size = rte_rcu_qsbr_get_memsize(workers);
  qsbr_ = static_cast<rte_rcu_qsbr*>(rte_zmalloc("tandem_local_qsbr", size, RTE_CACHE_LINE_SIZE));
  if (!qsbr_ || rte_rcu_qsbr_init(qsbr_, workers) != 0) throw std::bad_alloc();
  for (unsigned w = 0; w < workers; ++w) rte_rcu_qsbr_thread_register(qsbr_, w);
}

LocalTables::~LocalTables() {
  for (auto& p : ports_) delete p.load();
  rte_free(qsbr_);
}

void LocalTables::worker_online(unsigned worker) { rte_rcu_qsbr_thread_online(qsbr_, worker); }
void LocalTables::worker_quiescent(unsigned worker) { rte_rcu_qsbr_quiescent(qsbr_, worker); }
void LocalTables::worker_offline(unsigned worker) { rte_rcu_qsbr_thread_offline(qsbr_, worker); }

void LocalTables::publish(std::size_t port, const LocalInterface& next) {
  const LocalInterface* old = ports_[port].exchange(new LocalInterface(next), std::memory_order_acq_rel);
  if (!old) return;
  // Returns once every online worker has reported a quiescent state after the exchange.
  rte_rcu_qsbr_synchronize(qsbr_, RTE_QSBR_THRID_INVALID);
  delete old;
}

}  // namespace tandem::dpdk
