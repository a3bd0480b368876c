// DPDK telemetry commands under /tandem/, served by EAL's telemetry socket
// (/var/run/dpdk/<file_prefix>/dpdk_telemetry.v2; query it with dpdk-telemetry.py).
// Formats are documented in docs/operations.md.
#pragma once

namespace tandem {
struct Runtime;
}

namespace tandem::observe {

// Registers the commands. `runtime` must outlive the process's telemetry thread, i.e. live
// until exit: DPDK 22.11 has no way to unregister a command.
void register_telemetry(const Runtime& runtime);

}  // namespace tandem::observe
