#include "dataplane/eal.hpp"

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
