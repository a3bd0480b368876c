// Whether a data port's link is up. A PMD that owns a NIC knows (rte_eth_link_get_nowait), but
// the AF_XDP and AF_PACKET PMDs report "up" from start to stop whatever the interface does, so
// for a vdev on a kernel interface (iface=) the kernel is asked: administratively up and
// running (carrier), as `ip link` shows LOWER_UP.
#pragma once

#include <cstdint>
#include <string>

#include "controlplane/config/config.hpp"

namespace tandem {

// The kernel's view of `ifname` in this network namespace: IFF_UP and IFF_RUNNING. False when
// the interface is missing.
bool kernel_link_up(const std::string& ifname);

bool port_link_up(const config::PortConfig& port, std::uint16_t port_id);

}  // namespace tandem
