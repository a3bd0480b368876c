// The XDP program attached to an interface and its maps, found through the kernel by id and
// name rather than by pinning: pins live in a bpffs that `ip netns exec` and containers may
// not share, while ids work from any mount namespace. Used by tandemd (steer.bpf.o, attached
// by the af_xdp PMD) and by tandem-decap (decap.bpf.o).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace tandem::xdp {

class AttachedProgram {
 public:
  // The program attached to `ifname` (native, generic or offloaded). Nothing when none is
  // attached, or when `error` is set: no such interface, or the kernel refused to answer.
  static std::optional<AttachedProgram> find(const std::string& ifname, std::string& error);

  AttachedProgram(AttachedProgram&& other) noexcept;
  AttachedProgram& operator=(AttachedProgram&& other) noexcept;
  AttachedProgram(const AttachedProgram&) = delete;
  AttachedProgram& operator=(const AttachedProgram&) = delete;
  ~AttachedProgram();

  const std::string& name() const { return name_; }  // the program's name (15 characters at most)
  std::uint32_t id() const { return id_; }
  int ifindex() const { return ifindex_; }
  const char* mode() const { return mode_; }  // "native", "generic" or "offload"
  // A file descriptor for the program's map called `name`, or -1. Owned by this object.
  int map_fd(const std::string& name) const;

  // Detaches exactly this program (the kernel refuses if another replaced it meanwhile).
  // Returns an error message, empty on success.
  std::string detach() const;

  // Detaches the program attached to `ifname` if its name is `expected_name`. Returns true when
  // one was detached; false with `error` empty when none was attached; false with `error` set
  // when a different program is attached or the kernel refused.
  static bool detach_if_named(const std::string& ifname, const std::string& expected_name, std::string& error);

 private:
  AttachedProgram() = default;
  void close_all();

  int ifindex_ = 0;
  std::uint32_t id_ = 0;
  std::uint32_t mode_flags_ = 0;  // XDP_FLAGS_*_MODE of the attachment
  const char* mode_ = "";
  int prog_fd_ = -1;
  std::string name_;
  std::map<std::string, int> maps_;
};

// Sum over CPUs of element `key` of a per-CPU array whose value is `words` 64-bit counters.
bool read_percpu_u64(int map_fd, std::uint32_t key, std::uint64_t* out, std::size_t words);

}  // namespace tandem::xdp
