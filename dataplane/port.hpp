// One DPDK ethdev configured for tandemd: queues, MTU, promiscuous mode, start and stop.
#pragma once

#include <cstdint>
#include <string>

#include "dataplane/net/addr.hpp"

struct rte_mempool;

namespace tandem::dpdk {

struct PortSetup {
  std::string device_name;   // the ethdev name: the vdev name or PCI address
  std::uint16_t queues = 1;  // RX and TX queue pairs: one per worker
  std::uint16_t rx_descriptors = 1024;
  std::uint16_t tx_descriptors = 1024;
  std::uint32_t mtu = 1500;
  bool promiscuous = false;
};

struct PortInfo {
  std::uint16_t port_id = 0;
  net::MacAddr mac;
  std::string driver;
};

// Configures and starts the port. Returns an error message, empty on success.
std::string port_start(const PortSetup& setup, rte_mempool* pool, PortInfo& info);
void port_stop(std::uint16_t port_id);
bool port_link_up(std::uint16_t port_id);

}  // namespace tandem::dpdk
