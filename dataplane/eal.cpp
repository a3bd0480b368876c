#include "dataplane/eal.hpp"

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>

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

rte_mempool* create_mbuf_pool(const std::string& name, unsigned count, std::string& error) {
  rte_mempool* pool = rte_pktmbuf_pool_create(name.c_str(), count, kMempoolCache, 0,
                                              RTE_MBUF_DEFAULT_BUF_SIZE, rte_socket_id());
  if (!pool) error = "cannot create mbuf pool of " + std::to_string(count) + " buffers: " + rte_strerror(rte_errno);
  return pool;
}

}  // namespace tandem::dpdk
