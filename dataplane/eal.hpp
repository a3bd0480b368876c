// EAL start-up and packet-buffer pools: the first and last DPDK calls of tandemd.
#pragma once

#include <string>
#include <vector>

struct rte_mempool;

namespace tandem::dpdk {

// rte_eal_init with `args` (argv[0] included). Returns an error message, empty on success.
std::string eal_init(const std::vector<std::string>& args);
void eal_cleanup();

// A pktmbuf pool of `count` buffers on the caller's socket. Null with `error` set on failure.
rte_mempool* create_mbuf_pool(const std::string& name, unsigned count, std::string& error);

// Buffers a set of ports and workers needs: every RX and TX ring full, every worker's burst
// and per-lcore cache in flight, and headroom for frames the workers generate.
unsigned mbuf_pool_size(unsigned rx_desc_total, unsigned tx_desc_total, unsigned workers,
                        unsigned burst);

}  // namespace tandem::dpdk
