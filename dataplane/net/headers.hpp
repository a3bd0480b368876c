// Wire layouts of the headers the fast path reads, as offsets and constants.
// Offsets rather than packed structs: frames are byte buffers, fields are read with byteorder.hpp.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tandem::net {

namespace eth {
inline constexpr std::size_t kDst = 0;
inline constexpr std::size_t kSrc = 6;
inline constexpr std::size_t kType = 12;
inline constexpr std::size_t kHeaderLen = 14;
inline constexpr std::uint16_t kTypeIpv4 = 0x0800;
inline constexpr std::uint16_t kTypeArp = 0x0806;
}  // namespace eth

// ARP for IPv4 over Ethernet (RFC 826); offsets from the start of the ARP header.
namespace arp {
inline constexpr std::size_t kHtype = 0;
inline constexpr std::size_t kPtype = 2;
inline constexpr std::size_t kHlen = 4;
inline constexpr std::size_t kPlen = 5;
inline constexpr std::size_t kOper = 6;
inline constexpr std::size_t kSha = 8;
inline constexpr std::size_t kSpa = 14;
inline constexpr std::size_t kTha = 18;
inline constexpr std::size_t kTpa = 24;
inline constexpr std::size_t kLen = 28;
inline constexpr std::uint16_t kHtypeEthernet = 1;
inline constexpr std::uint16_t kOpRequest = 1;
inline constexpr std::uint16_t kOpReply = 2;
}  // namespace arp

namespace ipv4 {
inline constexpr std::size_t kVersionIhl = 0;
inline constexpr std::size_t kTos = 1;
inline constexpr std::size_t kTotalLen = 2;
inline constexpr std::size_t kId = 4;
inline constexpr std::size_t kFragOff = 6;
inline constexpr std::size_t kTtl = 8;
inline constexpr std::size_t kProto = 9;
inline constexpr std::size_t kChecksum = 10;
inline constexpr std::size_t kSrc = 12;
inline constexpr std::size_t kDst = 16;
inline constexpr std::size_t kMinLen = 20;
inline constexpr std::uint16_t kFlagMoreFragments = 0x2000;
inline constexpr std::uint16_t kFragOffsetMask = 0x1fff;
inline constexpr std::uint8_t kProtoIcmp = 1;
inline constexpr std::uint8_t kProtoTcp = 6;
inline constexpr std::uint8_t kProtoUdp = 17;
inline constexpr std::uint8_t kDefaultTtl = 64;
}  // namespace ipv4

namespace udp {
inline constexpr std::size_t kSrcPort = 0;
inline constexpr std::size_t kDstPort = 2;
inline constexpr std::size_t kLength = 4;
inline constexpr std::size_t kChecksum = 6;
inline constexpr std::size_t kHeaderLen = 8;
}  // namespace udp

namespace icmp {
inline constexpr std::size_t kType = 0;
inline constexpr std::size_t kCode = 1;
inline constexpr std::size_t kChecksum = 2;
inline constexpr std::size_t kMinLen = 8;
inline constexpr std::uint8_t kTypeEchoReply = 0;
inline constexpr std::uint8_t kTypeEchoRequest = 8;
}  // namespace icmp

// Shortest frame a NIC puts on the wire, without FCS; shorter frames are padded to it.
inline constexpr std::size_t kMinFrameLen = 60;

}  // namespace tandem::net
