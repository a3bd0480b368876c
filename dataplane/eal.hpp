// EAL start-up and packet-buffer pools: the first and last DPDK calls of tandemd.
#pragma once

#include <array>
#include <string>
#include <vector>

struct rte_mempool;

namespace tandem::dpdk {

// rte_eal_init with `args` (argv[0] included). Returns an error message, empty on success.
std::string eal_init(const std::vector<std::string>& args);
void eal_cleanup();

// Keeps the threads a scope creates off the workers' CPUs. A thread inherits its creator's
// affinity, and tandemd's main thread is worker 0, pinned to the main lcore's CPU: without this
// the control, ctl, HA and state-sync threads would all compete with worker 0 for its core.
// In scope, the calling thread runs on every CPU no enabled lcore uses (every CPU when the
// lcores take them all, as in a 2-core lab); its own affinity comes back at the end.
class ControlCpuScope {
 public:
  ControlCpuScope();
  ~ControlCpuScope();
  ControlCpuScope(const ControlCpuScope&) = delete;
  ControlCpuScope& operator=(const ControlCpuScope&) = delete;
  // The CPUs in use, as a list ("1", "2-7"), for the log.
  const std::string& cpus() const { return cpus_; }

 private:
  std::array<unsigned char, 128> saved_{};  // a cpu_set_t
  bool restore_ = false;
  std::string cpus_;
};

// A pktmbuf pool of `count` buffers on the caller's socket. Null with `error` set on failure.
// `packed`: objects back to back, none aligned to a page (RTE_MEMPOOL_F_NO_IOVA_CONTIG). Needed
// without hugepages: DPDK otherwise keeps each mbuf inside one 4 KiB page, one mbuf per page,
// while the AF_XDP PMD registers its UMEM as populated_size x object size from the pool's
// start, so the mbufs in the last ~40% of the pool lie outside the UMEM and the kernel silently
// refuses frames sent from them (seen: ARP requests and gratuitous ARPs never left). IOVA
// contiguity does not matter there: --no-huge runs vdevs only, in IOVA-as-VA mode.
rte_mempool* create_mbuf_pool(const std::string& name, unsigned count, bool packed, std::string& error);

// Buffers a set of ports and workers needs: every RX and TX ring full, every worker's burst
// and per-lcore cache in flight, and headroom for frames the workers generate.
unsigned mbuf_pool_size(unsigned rx_desc_total, unsigned tx_desc_total, unsigned workers,
                        unsigned burst);

}  // namespace tandem::dpdk
