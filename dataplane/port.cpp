#include "dataplane/port.hpp"

#include <cstring>

#include <rte_errno.h>
#include <rte_ethdev.h>

namespace tandem::dpdk {
namespace {

std::string fail(const std::string& what, const std::string& dev, int rc) {
  return what + " failed on " + dev + ": " + rte_strerror(rc < 0 ? -rc : rc);
}

}  // namespace

std::string port_start(const PortSetup& s, rte_mempool* pool, PortInfo& info) {
  std::uint16_t port_id = 0;
  if (rte_eth_dev_get_port_by_name(s.device_name.c_str(), &port_id) != 0)
    return "no DPDK port named " + s.device_name + " (check the device string and EAL log)";

  rte_eth_dev_info dev_info{};
  if (int rc = rte_eth_dev_info_get(port_id, &dev_info); rc != 0) return fail("rte_eth_dev_info_get", s.device_name, rc);
  if (s.queues > dev_info.max_rx_queues || s.queues > dev_info.max_tx_queues) {
    return s.device_name + " supports " + std::to_string(dev_info.max_rx_queues) + " RX / " +
           std::to_string(dev_info.max_tx_queues) + " TX queues, " + std::to_string(s.queues) +
           " workers need one each (af_xdp: add queue_count=N to the device)";
  }

  rte_eth_conf conf{};
  if (s.queues > 1) {
    conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
    conf.rx_adv_conf.rss_conf.rss_hf = (RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP) &
                                       dev_info.flow_type_rss_offloads;
  }
  if (int rc = rte_eth_dev_configure(port_id, s.queues, s.queues, &conf); rc != 0)
    return fail("rte_eth_dev_configure", s.device_name, rc);

  std::uint16_t rx_desc = s.rx_descriptors, tx_desc = s.tx_descriptors;
  if (int rc = rte_eth_dev_adjust_nb_rx_tx_desc(port_id, &rx_desc, &tx_desc); rc != 0)
    return fail("rte_eth_dev_adjust_nb_rx_tx_desc", s.device_name, rc);

  const int socket = rte_eth_dev_socket_id(port_id);
  for (std::uint16_t q = 0; q < s.queues; ++q) {
    if (int rc = rte_eth_rx_queue_setup(port_id, q, rx_desc, socket, nullptr, pool); rc != 0)
      return fail("rte_eth_rx_queue_setup", s.device_name, rc);
    if (int rc = rte_eth_tx_queue_setup(port_id, q, tx_desc, socket, nullptr); rc != 0)
      return fail("rte_eth_tx_queue_setup", s.device_name, rc);
  }

  // Some virtual devices cannot change their MTU; keeping theirs is fine when it is the same.
  if (int rc = rte_eth_dev_set_mtu(port_id, static_cast<std::uint16_t>(s.mtu)); rc != 0 && rc != -ENOTSUP) {
    std::uint16_t current = 0;
    if (rte_eth_dev_get_mtu(port_id, &current) != 0 || current != s.mtu)
      return fail("setting MTU " + std::to_string(s.mtu), s.device_name, rc);
  }

  if (int rc = rte_eth_dev_start(port_id); rc != 0) return fail("rte_eth_dev_start", s.device_name, rc);

  if (s.promiscuous) {
    if (int rc = rte_eth_promiscuous_enable(port_id); rc != 0 && rc != -ENOTSUP)
      return fail("rte_eth_promiscuous_enable", s.device_name, rc);
  }

  rte_ether_addr mac{};
  if (int rc = rte_eth_macaddr_get(port_id, &mac); rc != 0) return fail("rte_eth_macaddr_get", s.device_name, rc);
  info.port_id = port_id;
  std::memcpy(info.mac.bytes.data(), mac.addr_bytes, 6);
  info.driver = dev_info.driver_name ? dev_info.driver_name : "";
  return {};
}

void port_stop(std::uint16_t port_id) {
  rte_eth_dev_stop(port_id);
  rte_eth_dev_close(port_id);
}

bool port_link_up(std::uint16_t port_id) {
  rte_eth_link link{};
  return rte_eth_link_get_nowait(port_id, &link) == 0 && link.link_status == RTE_ETH_LINK_UP;
}

}  // namespace tandem::dpdk
