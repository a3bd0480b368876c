#include "dataplane/eal.hpp"

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mbuf_pool_ops.h>

namespace tandem::dpdk {

namespace {
constexpr unsigned kMempoolCache = 256;
}

std::string eal_init(const std::vector<std::string>& args) {
  std::vector<std::string> copy = args;  // rte_eal_init may permute argv
  std::vector<char*> argv;
  for (auto& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  if (rte_eal_init(static_cast<int>(copy.size()), argv.data()) < 0)
    return std::string("rte_eal_init failed: ") + rte_strerror(rte_errno);
  return {};
}

void eal_cleanup() { rte_eal_cleanup(); }

unsigned mbuf_pool_size(unsigned rx_desc_total, unsigned tx_desc_total, unsigned workers,
                        unsigned burst) {
  const unsigned n = rx_desc_total + tx_desc_total + workers * (kMempoolCache + 4 * burst) + 1024;
  return n < 4095 ? 4095 : n;  // 2^k - 1 is the ring-friendliest size
}

rte_mempool* create_mbuf_pool(const std::string& name, unsigned count, bool packed, std::string& error) {
  rte_mempool* pool = nullptr;
  if (!packed) {
    pool = rte_pktmbuf_pool_create(name.c_str(), count, kMempoolCache, 0, RTE_MBUF_DEFAULT_BUF_SIZE, rte_socket_id());
  } else {
    // rte_pktmbuf_pool_create with RTE_MEMPOOL_F_NO_IOVA_CONTIG: objects back to back.
    constexpr unsigned kElement = sizeof(rte_mbuf) + RTE_MBUF_DEFAULT_BUF_SIZE;
    pool = rte_mempool_create_empty(name.c_str(), count, kElement, kMempoolCache, sizeof(rte_pktmbuf_pool_private),
                                    rte_socket_id(), RTE_MEMPOOL_F_NO_IOVA_CONTIG);
    if (pool) {
      rte_pktmbuf_pool_private priv{};
      priv.mbuf_data_room_size = RTE_MBUF_DEFAULT_BUF_SIZE;
      priv.mbuf_priv_size = 0;
      if (rte_mempool_set_ops_byname(pool, rte_mbuf_best_mempool_ops(), nullptr) != 0) {
        rte_mempool_free(pool);
        pool = nullptr;
      } else {
        rte_pktmbuf_pool_init(pool, &priv);
        if (rte_mempool_populate_default(pool) < 0) {
          rte_mempool_free(pool);
          pool = nullptr;
        } else {
          rte_mempool_obj_iter(pool, rte_pktmbuf_init, nullptr);
        }
      }
    }
  }
  if (!pool) error = "cannot create mbuf pool of " + std::to_string(count) + " buffers: " + rte_strerror(rte_errno);
  return pool;
}

}  // namespace tandem::dpdk

namespace tandem::dpdk {

ControlCpuScope::ControlCpuScope() {
  static_assert(sizeof(cpu_set_t) <= sizeof(saved_));
  cpu_set_t& saved = *reinterpret_cast<cpu_set_t*>(saved_.data());
  if (pthread_getaffinity_np(pthread_self(), sizeof saved, &saved) != 0) return;
  const long n = sysconf(_SC_NPROCESSORS_ONLN);
  cpu_set_t control;
  CPU_ZERO(&control);
  for (long cpu = 0; cpu < n && cpu < CPU_SETSIZE; ++cpu) {
    bool worker = false;
    unsigned lcore = 0;
    RTE_LCORE_FOREACH(lcore) {
      const rte_cpuset_t set = rte_lcore_cpuset(lcore);
      if (CPU_ISSET(cpu, &set)) worker = true;
    }
    if (!worker) CPU_SET(cpu, &control);
  }
  if (CPU_COUNT(&control) == 0)
    for (long cpu = 0; cpu < n && cpu < CPU_SETSIZE; ++cpu) CPU_SET(cpu, &control);
  restore_ = pthread_setaffinity_np(pthread_self(), sizeof control, &control) == 0;
  for (long cpu = 0; cpu < n && cpu < CPU_SETSIZE; ++cpu) {
    if (!CPU_ISSET(cpu, &control)) continue;
    long last = cpu;
    while (last + 1 < n && CPU_ISSET(last + 1, &control)) ++last;
    if (!cpus_.empty()) cpus_ += ",";
    cpus_ += std::to_string(cpu) + (last > cpu ? "-" + std::to_string(last) : "");
    cpu = last;
  }
}

ControlCpuScope::~ControlCpuScope() {
  if (restore_)
    pthread_setaffinity_np(pthread_self(), sizeof(cpu_set_t), reinterpret_cast<const cpu_set_t*>(saved_.data()));
}

}  // namespace tandem::dpdk
