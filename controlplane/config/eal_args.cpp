#include "controlplane/config/eal_args.hpp"

#include <algorithm>

namespace tandem::config {

std::vector<std::string> eal_arguments(const Config& c, const std::string& program) {
  std::vector<std::string> a = {program, "-l", c.eal.lcores, "-m", std::to_string(c.eal.memory_mb),
                                "--file-prefix", c.eal.file_prefix};
  if (c.eal.no_huge) a.push_back("--no-huge");
  const bool any_pci = std::any_of(c.ports.begin(), c.ports.end(), [](const PortConfig& p) { return p.is_pci(); });
  // Without a PCI port, scanning the bus would only claim devices that belong to the kernel.
  if (!any_pci) a.push_back("--no-pci");
  for (const auto& p : c.ports) {
    a.push_back(p.is_pci() ? "-a" : "--vdev");
    // The af_xdp PMD loads and attaches a custom program given as xdp_prog= (it needs a map
    // named xsks_map); tandemd then finds that program's other maps on the interface.
    a.push_back(p.xdp_steering && !c.xdp.program.empty() ? p.device + ",xdp_prog=" + c.xdp.program : p.device);
  }
  a.insert(a.end(), c.eal.extra_args.begin(), c.eal.extra_args.end());
  return a;
}

}  // namespace tandem::config
