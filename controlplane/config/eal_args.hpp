// The EAL command line that a configuration stands for.
#pragma once

#include <string>
#include <vector>

#include "controlplane/config/config.hpp"

namespace tandem::config {

// argv for rte_eal_init, argv[0] included: lcores, memory, file prefix, one --vdev per virtual
// port or -a per PCI port (and --no-pci when there is none), then extra_args verbatim.
std::vector<std::string> eal_arguments(const Config& c, const std::string& program = "tandemd");

}  // namespace tandem::config
