#include "tests/unit/frames.hpp"

#include <cctype>
#include <cstdio>
#include <stdexcept>

namespace tandem::test {

Bytes hex(std::string_view text) {
  Bytes out;
  int hi = -1;
  for (char c : text) {
    if (!std::isxdigit(static_cast<unsigned char>(c))) continue;
    const int v = std::isdigit(static_cast<unsigned char>(c)) ? c - '0' : (std::tolower(c) - 'a' + 10);
    if (hi < 0) {
      hi = v;
    } else {
      out.push_back(static_cast<std::uint8_t>(hi << 4 | v));
      hi = -1;
    }
  }
  if (hi >= 0) throw std::invalid_argument("odd number of hex digits");
  return out;
}

std::string to_hex(const Bytes& b) {
  std::string s;
  char buf[4];
  for (std::size_t i = 0; i < b.size(); ++i) {
    std::snprintf(buf, sizeof buf, "%02x", b[i]);
    s += buf;
    s += (i % 16 == 15) ? '\n' : ' ';
  }
  return s;
}

std::uint16_t ref_checksum(const std::uint8_t* data, std::size_t len) {
  std::uint32_t sum = 0;
  for (std::size_t i = 0; i < len; i += 2) {
    const std::uint32_t hi = data[i];
    const std::uint32_t lo = i + 1 < len ? data[i + 1] : 0;
    sum += hi << 8 | lo;
    sum = (sum & 0xffff) + (sum >> 16);
  }
  return static_cast<std::uint16_t>(~sum & 0xffff);
}

std::uint32_t ip(std::string_view dotted) {
  unsigned a, b, c, d;
  if (std::sscanf(std::string(dotted).c_str(), "%u.%u.%u.%u", &a, &b, &c, &d) != 4)
    throw std::invalid_argument("bad address");
  return a << 24 | b << 16 | c << 8 | d;
}

namespace {
void put16(Bytes& b, std::uint16_t v) {
  b.push_back(static_cast<std::uint8_t>(v >> 8));
  b.push_back(static_cast<std::uint8_t>(v));
}
void put32(Bytes& b, std::uint32_t v) {
  put16(b, static_cast<std::uint16_t>(v >> 16));
  put16(b, static_cast<std::uint16_t>(v));
}
void put_mac(Bytes& b, const Mac& m) { b.insert(b.end(), m.begin(), m.end()); }
}  // namespace

Bytes ethernet(const Mac& dst, const Mac& src, std::uint16_t type, const Bytes& payload, bool pad_to_60) {
  Bytes f;
  put_mac(f, dst);
  put_mac(f, src);
  put16(f, type);
  f.insert(f.end(), payload.begin(), payload.end());
  if (pad_to_60 && f.size() < 60) f.resize(60, 0);
  return f;
}

Bytes arp(std::uint16_t op, const Mac& sha, std::uint32_t spa, const Mac& tha, std::uint32_t tpa) {
  Bytes a;
  put16(a, 1);
  put16(a, 0x0800);
  a.push_back(6);
  a.push_back(4);
  put16(a, op);
  put_mac(a, sha);
  put32(a, spa);
  put_mac(a, tha);
  put32(a, tpa);
  return a;
}

Bytes ipv4(const Ipv4Fields& f, const Bytes& payload) {
  Bytes h;
  const std::size_t ihl = 20 + f.options.size();
  h.push_back(static_cast<std::uint8_t>(0x40 | (ihl / 4)));
  h.push_back(0);
  put16(h, static_cast<std::uint16_t>(ihl + payload.size()));
  put16(h, f.id);
  put16(h, f.flags_frag);
  h.push_back(f.ttl);
  h.push_back(f.proto);
  put16(h, 0);
  put32(h, f.src);
  put32(h, f.dst);
  h.insert(h.end(), f.options.begin(), f.options.end());
  const std::uint16_t c = ref_checksum(h);
  h[10] = static_cast<std::uint8_t>(c >> 8);
  h[11] = static_cast<std::uint8_t>(c);
  h.insert(h.end(), payload.begin(), payload.end());
  return h;
}

Bytes icmp_echo(std::uint8_t type, std::uint16_t id, std::uint16_t seq, const Bytes& data) {
  Bytes m;
  m.push_back(type);
  m.push_back(0);
  put16(m, 0);
  put16(m, id);
  put16(m, seq);
  m.insert(m.end(), data.begin(), data.end());
  const std::uint16_t c = ref_checksum(m);
  m[2] = static_cast<std::uint8_t>(c >> 8);
  m[3] = static_cast<std::uint8_t>(c);
  return m;
}

namespace {
// Checksum of an L4 segment with the IPv4 pseudo-header (RFC 793 / RFC 768).
std::uint16_t pseudo_checksum(std::uint32_t src, std::uint32_t dst, std::uint8_t proto, const Bytes& segment) {
  Bytes b;
  put32(b, src);
  put32(b, dst);
  b.push_back(0);
  b.push_back(proto);
  put16(b, static_cast<std::uint16_t>(segment.size()));
  b.insert(b.end(), segment.begin(), segment.end());
  return ref_checksum(b);
}
}  // namespace

Bytes tcp(std::uint32_t src, std::uint32_t dst, std::uint16_t sport, std::uint16_t dport, std::uint8_t flags,
          const Bytes& payload, std::uint32_t seq, std::uint32_t ack) {
  Bytes t;
  put16(t, sport);
  put16(t, dport);
  put32(t, seq);
  put32(t, ack);
  t.push_back(5 << 4);  // data offset: 20 bytes
  t.push_back(flags);
  put16(t, 65535);      // window
  put16(t, 0);          // checksum
  put16(t, 0);          // urgent pointer
  t.insert(t.end(), payload.begin(), payload.end());
  const std::uint16_t c = pseudo_checksum(src, dst, 6, t);
  t[16] = static_cast<std::uint8_t>(c >> 8);
  t[17] = static_cast<std::uint8_t>(c);
  return t;
}

Bytes udp(std::uint32_t src, std::uint32_t dst, std::uint16_t sport, std::uint16_t dport, const Bytes& payload,
          bool with_checksum) {
  Bytes u;
  put16(u, sport);
  put16(u, dport);
  put16(u, static_cast<std::uint16_t>(8 + payload.size()));
  put16(u, 0);
  u.insert(u.end(), payload.begin(), payload.end());
  if (with_checksum) {
    std::uint16_t c = pseudo_checksum(src, dst, 17, u);
    if (c == 0) c = 0xffff;
    u[6] = static_cast<std::uint8_t>(c >> 8);
    u[7] = static_cast<std::uint8_t>(c);
  }
  return u;
}

Bytes ethernet_vlan(const Mac& dst, const Mac& src, std::uint16_t tci, std::uint16_t type, const Bytes& payload) {
  Bytes inner;
  put16(inner, tci);
  put16(inner, type);
  inner.insert(inner.end(), payload.begin(), payload.end());
  return ethernet(dst, src, 0x8100, inner);
}

Bytes pattern(std::size_t n, std::uint8_t seed) {
  Bytes b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::uint8_t>(seed + i * 7);
  return b;
}

Bytes icmp_message(std::uint8_t type, std::uint8_t code, std::uint32_t rest, const Bytes& body) {
  Bytes m;
  m.push_back(type);
  m.push_back(code);
  put16(m, 0);
  put32(m, rest);
  m.insert(m.end(), body.begin(), body.end());
  const std::uint16_t c = ref_checksum(m);
  m[2] = static_cast<std::uint8_t>(c >> 8);
  m[3] = static_cast<std::uint8_t>(c);
  return m;
}

}  // namespace tandem::test
