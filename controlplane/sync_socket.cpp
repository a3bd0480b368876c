#include "controlplane/sync_socket.hpp"

#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace tandem {

sockaddr_in sockaddr_of(net::Ipv4Addr a, std::uint16_t port) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(a.value);
  return sa;
}

int open_udp_socket(net::Ipv4Addr address, std::uint16_t port, const std::string& what, int tos, int buffer_bytes,
                    std::string& error) {
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = std::string("socket: ") + std::strerror(errno);
    return -1;
  }
  const int one = 1;
  ::setsockopt(fd, IPPROTO_IP, IP_FREEBIND, &one, sizeof one);
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (tos != 0) ::setsockopt(fd, IPPROTO_IP, IP_TOS, &tos, sizeof tos);
  if (buffer_bytes != 0) {
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buffer_bytes, sizeof buffer_bytes);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buffer_bytes, sizeof buffer_bytes);
  }
  const sockaddr_in local = sockaddr_of(address, port);
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&local), sizeof local) != 0) {
    error = "bind " + what + ": " + std::strerror(errno);
    ::close(fd);
    return -1;
  }
  return fd;
}

bool read_key(const std::string& key, const std::string& key_file, std::vector<std::uint8_t>& out, std::string& error) {
  std::string text = key;
  if (!key_file.empty()) {
    std::ifstream in(key_file, std::ios::binary);
    std::ostringstream s;
    if (!in || !(s << in.rdbuf())) {
      error = "cannot read key_file " + key_file + ": " + std::strerror(errno);
      return false;
    }
    text = s.str();
    if (!text.empty() && text.back() == '\n') text.pop_back();
  }
  if (text.size() < 16) {
    error = (key_file.empty() ? std::string("the key") : "key_file " + key_file) + " holds " +
            std::to_string(text.size()) + " bytes; the key needs at least 16";
    return false;
  }
  out.assign(text.begin(), text.end());
  return true;
}

}  // namespace tandem
