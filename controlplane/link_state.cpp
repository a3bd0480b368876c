#include "controlplane/link_state.hpp"

#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "dataplane/port.hpp"

namespace tandem {

bool kernel_link_up(const std::string& ifname) {
  if (ifname.empty() || ifname.size() >= IFNAMSIZ) return false;
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, ifname.c_str(), ifname.size() + 1);
  const bool ok = ::ioctl(fd, SIOCGIFFLAGS, &ifr) == 0;
  ::close(fd);
  return ok && (ifr.ifr_flags & IFF_UP) && (ifr.ifr_flags & IFF_RUNNING);
}

bool port_link_up(const config::PortConfig& port, std::uint16_t port_id) {
  const std::string iface = port.devarg("iface");
  if (!iface.empty()) return kernel_link_up(iface);
  return dpdk::port_link_up(port_id);
}

}  // namespace tandem
