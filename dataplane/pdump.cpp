#include "dataplane/pdump.hpp"

#include <rte_errno.h>
#include <rte_pdump.h>

namespace tandem::dpdk {

std::string pdump_init() {
  if (rte_pdump_init() != 0) return std::string("rte_pdump_init: ") + rte_strerror(rte_errno);
  return {};
}

void pdump_uninit() { rte_pdump_uninit(); }

}  // namespace tandem::dpdk
