// Packet capture on the data ports: rte_pdump's server side, so that `dpdk-dumpcap` (or
// dpdk-pdump), run as a DPDK secondary process with tandemd's --file-prefix, can copy the frames
// of a port's queues while tandemd forwards. Capture costs nothing until a capture is started.
#pragma once

#include <string>

namespace tandem::dpdk {

// Registers the pdump request handler with the EAL multi-process channel. Call after eal_init.
// Empty on success, else why (e.g. the EAL was started without multi-process support).
std::string pdump_init();
void pdump_uninit();

}  // namespace tandem::dpdk
