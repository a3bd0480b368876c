// The [ctl] section as the socket server's options: user and group names resolved to ids
// through the system's databases (getpwnam/getgrnam: /etc/passwd, /etc/group, NSS), numeric
// ids taken as they are. Done when tandemd starts and by --check-config, so a misspelt name
// stops the start instead of leaving an operator locked out.
#pragma once

#include <optional>
#include <string>

#include "controlplane/config/config.hpp"
#include "controlplane/ctl/server.hpp"

namespace tandem::ctl {

// The options, or nothing with every unknown name in `error` ("ctl.allowed_users: no user \"bob\"").
std::optional<ServerOptions> server_options(const config::CtlConfig& ctl, std::string& error);

}  // namespace tandem::ctl
