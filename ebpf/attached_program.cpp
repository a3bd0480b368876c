#include "ebpf/attached_program.hpp"

#include <net/if.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <linux/if_link.h>

namespace tandem::xdp {
namespace {

std::string errstr(int err) { return std::strerror(err < 0 ? -err : err); }

// The ids of the maps a program uses: a first call learns how many, a second fetches them.
bool program_info(int prog_fd, bpf_prog_info& info, std::vector<__u32>& map_ids) {
  info = {};
  __u32 len = sizeof info;
  if (bpf_obj_get_info_by_fd(prog_fd, &info, &len) != 0) return false;
  const __u32 n = info.nr_map_ids;
  if (n == 0) return true;
  map_ids.resize(n);
  info = {};
  info.nr_map_ids = n;
  info.map_ids = static_cast<__u64>(reinterpret_cast<std::uintptr_t>(map_ids.data()));
  len = sizeof info;
  if (bpf_obj_get_info_by_fd(prog_fd, &info, &len) != 0) return false;
  map_ids.resize(std::min(n, info.nr_map_ids));
  return true;
}

}  // namespace

std::optional<AttachedProgram> AttachedProgram::find(const std::string& ifname, std::string& error) {
  const int ifindex = static_cast<int>(if_nametoindex(ifname.c_str()));
  if (ifindex == 0) {
    error = "interface " + ifname + ": " + errstr(errno);
    return std::nullopt;
  }
  LIBBPF_OPTS(bpf_xdp_query_opts, q);
  if (int rc = bpf_xdp_query(ifindex, 0, &q); rc != 0) {
    error = "querying XDP on " + ifname + ": " + errstr(rc);
    return std::nullopt;
  }
  struct Attachment {
    __u32 id;
    __u32 flags;
    const char* mode;
  };
  const Attachment attachments[] = {{q.drv_prog_id, XDP_FLAGS_DRV_MODE, "native"},
                                    {q.skb_prog_id, XDP_FLAGS_SKB_MODE, "generic"},
                                    {q.hw_prog_id, XDP_FLAGS_HW_MODE, "offload"}};
  const Attachment* found = nullptr;
  for (const auto& a : attachments) {
    if (a.id != 0) {
      found = &a;
      break;
    }
  }
  if (!found) return std::nullopt;

  AttachedProgram p;
  p.ifindex_ = ifindex;
  p.id_ = found->id;
  p.mode_flags_ = found->flags;
  p.mode_ = found->mode;
  p.prog_fd_ = bpf_prog_get_fd_by_id(found->id);
  bpf_prog_info info{};
  std::vector<__u32> map_ids;
  if (p.prog_fd_ < 0 || !program_info(p.prog_fd_, info, map_ids)) {
    error = "opening XDP program id " + std::to_string(found->id) + ": " + errstr(errno);
    return std::nullopt;
  }
  p.name_ = info.name;
  for (const __u32 map_id : map_ids) {
    const int fd = bpf_map_get_fd_by_id(map_id);
    if (fd < 0) continue;
    bpf_map_info map_info{};
    __u32 len = sizeof map_info;
    if (bpf_obj_get_info_by_fd(fd, &map_info, &len) != 0 || p.maps_.count(map_info.name)) {
      close(fd);
      continue;
    }
    p.maps_[map_info.name] = fd;
  }
  return p;
}

AttachedProgram::AttachedProgram(AttachedProgram&& other) noexcept { *this = std::move(other); }

AttachedProgram& AttachedProgram::operator=(AttachedProgram&& other) noexcept {
  if (this != &other) {
    close_all();
    ifindex_ = other.ifindex_;
    id_ = other.id_;
    mode_flags_ = other.mode_flags_;
    mode_ = other.mode_;
    prog_fd_ = std::exchange(other.prog_fd_, -1);
    name_ = std::move(other.name_);
    maps_ = std::move(other.maps_);
    other.maps_.clear();
  }
  return *this;
}

AttachedProgram::~AttachedProgram() { close_all(); }

void AttachedProgram::close_all() {
  for (auto& [name, fd] : maps_) close(fd);
  maps_.clear();
  if (prog_fd_ >= 0) close(prog_fd_);
  prog_fd_ = -1;
}

int AttachedProgram::map_fd(const std::string& name) const {
  const auto it = maps_.find(name);
  return it == maps_.end() ? -1 : it->second;
}

std::string AttachedProgram::detach() const {
  // Replace exactly the program we inspected, in its mode, with nothing.
  LIBBPF_OPTS(bpf_xdp_attach_opts, opts, .old_prog_fd = prog_fd_);
  if (int rc = bpf_xdp_detach(ifindex_, mode_flags_, &opts); rc != 0)
    return "detaching XDP program " + std::to_string(id_) + ": " + errstr(rc) +
           (rc == -EEXIST ? " (another program replaced it meanwhile)" : "");
  return {};
}

bool AttachedProgram::detach_if_named(const std::string& ifname, const std::string& expected_name,
                                      std::string& error) {
  error.clear();
  auto prog = find(ifname, error);
  if (!prog) return false;
  if (prog->name() != expected_name) {
    error = ifname + " has another XDP program attached (\"" + prog->name() + "\", id " +
            std::to_string(prog->id()) + "); detach it first";
    return false;
  }
  error = prog->detach();
  return error.empty();
}

bool read_percpu_u64(int map_fd, std::uint32_t key, std::uint64_t* out, std::size_t words) {
  const int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) return false;
  std::vector<std::uint64_t> values(static_cast<std::size_t>(cpus) * words);
  if (bpf_map_lookup_elem(map_fd, &key, values.data()) != 0) return false;
  for (std::size_t w = 0; w < words; ++w) out[w] = 0;
  for (int cpu = 0; cpu < cpus; ++cpu)
    for (std::size_t w = 0; w < words; ++w) out[w] += values[static_cast<std::size_t>(cpu) * words + w];
  return true;
}

}  // namespace tandem::xdp
