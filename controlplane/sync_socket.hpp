// What the HA and state-sync threads both need on the sync link: a bound, non-blocking UDP
// socket and the pre-shared key from the configuration.
#pragma once

#include <netinet/in.h>

#include <cstdint>
#include <string>
#include <vector>

#include "dataplane/net/addr.hpp"

namespace tandem {

sockaddr_in sockaddr_of(net::Ipv4Addr a, std::uint16_t port);

// A UDP socket bound to address:port (`what` names it in errors), non-blocking, close-on-exec,
// IP_FREEBIND (the sync link's address may appear after tandemd starts) and SO_REUSEADDR;
// `tos` (when not 0) as IP_TOS, `buffer_bytes` (when not 0) as both socket buffers. -1 and
// `error` when it cannot.
int open_udp_socket(net::Ipv4Addr address, std::uint16_t port, const std::string& what, int tos, int buffer_bytes,
                    std::string& error);

// The key: `key` itself, or the bytes of `key_file` (a final newline dropped); at least 16
// bytes. False and `error` when it cannot be read or is too short.
bool read_key(const std::string& key, const std::string& key_file, std::vector<std::uint8_t>& out, std::string& error);

}  // namespace tandem
