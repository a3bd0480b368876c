#include "dataplane/rcu.hpp"

#include <new>

#include <rte_malloc.h>
#include <rte_rcu_qsbr.h>

namespace tandem::dpdk {

QsbrDomain::QsbrDomain(unsigned workers) {
  const std::size_t size = rte_rcu_qsbr_get_memsize(workers);
  qsbr_ = static_cast<rte_rcu_qsbr*>(rte_zmalloc("tandem_qsbr", size, RTE_CACHE_LINE_SIZE));
  if (!qsbr_ || rte_rcu_qsbr_init(qsbr_, workers) != 0) throw std::bad_alloc();
  for (unsigned w = 0; w < workers; ++w) rte_rcu_qsbr_thread_register(qsbr_, w);
}

QsbrDomain::~QsbrDomain() { rte_free(qsbr_); }

void QsbrDomain::online(unsigned worker) { rte_rcu_qsbr_thread_online(qsbr_, worker); }
void QsbrDomain::quiescent(unsigned worker) { rte_rcu_qsbr_quiescent(qsbr_, worker); }
void QsbrDomain::offline(unsigned worker) { rte_rcu_qsbr_thread_offline(qsbr_, worker); }
void QsbrDomain::synchronize() { rte_rcu_qsbr_synchronize(qsbr_, RTE_QSBR_THRID_INVALID); }

}  // namespace tandem::dpdk
