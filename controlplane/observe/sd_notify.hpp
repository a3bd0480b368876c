// The systemd readiness protocol (sd_notify), without linking libsystemd: one datagram to the
// AF_UNIX socket named by $NOTIFY_SOCKET. Used by systemd (Type=notify) and the test lab.
#pragma once

#include <string>

namespace tandem::observe {

// Sends `state` (e.g. "READY=1\nSTATUS=...") if $NOTIFY_SOCKET is set. Returns false only when
// the socket is set and the send failed.
bool sd_notify(const std::string& state);

}  // namespace tandem::observe
