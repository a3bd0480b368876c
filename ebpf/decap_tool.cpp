// tandem-decap: attaches Tandem's IPv4-in-IPv4 decapsulation program (decap.bpf.o) to a
// backend's interface and manages its VIPs.
//
//   tandem-decap attach IFACE [--vip A.B.C.D ...] [--mode native|generic] [--object PATH]
//   tandem-decap detach IFACE
//   tandem-decap vip add|del IFACE A.B.C.D
//   tandem-decap status IFACE
//
// The attachment is a plain netlink XDP attachment: it outlives this process. Later commands
// find the program attached to IFACE by id (bpf_xdp_query) and its maps through the program's
// map ids, so nothing is pinned and the tool works the same inside `ip netns exec` (which
// remounts /sys and hides bpffs pins). A program that is not tandem_decap is never touched.
//
// Exit status: 0 done; 1 failed (the message says why); 2 bad command line; 3 no tandem_decap
// program is attached to IFACE (detach, vip, status).
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ebpf/attached_program.hpp"
#include "ebpf/tandem_xdp.h"

#ifndef TANDEM_BPF_DIR
#define TANDEM_BPF_DIR "/usr/local/lib/tandem/bpf"
#endif

namespace {

constexpr const char* kProgName = "tandem_decap";  // SEC("xdp") function in decap.bpf.c
constexpr const char* kObjectFile = "decap.bpf.o";
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;
constexpr int kExitNotAttached = 3;

// Counter names, in the order of enum tandem_decap_verdict.
constexpr std::array<const char*, TANDEM_DECAP_VERDICT_COUNT> kVerdictNames = {
    "decapsulated", "pass_not_ipip", "pass_not_vip", "pass_malformed", "drop_error"};
static_assert(TANDEM_DECAP_DONE == 0 && TANDEM_DECAP_DROP_ERROR == 4);

struct Failure {
  int code;
  std::string message;
};

[[noreturn]] void fail(int code, std::string message) { throw Failure{code, std::move(message)}; }
[[noreturn]] void fail(std::string message) { fail(kExitFailed, std::move(message)); }

std::string errstr(int err) { return std::strerror(err < 0 ? -err : err); }

bool g_verbose = false;

int libbpf_print(enum libbpf_print_level level, const char* format, va_list args) {
  if (level == LIBBPF_DEBUG || (level == LIBBPF_INFO && !g_verbose)) return 0;
  return std::vfprintf(stderr, format, args);
}

unsigned ifindex_of(const std::string& ifname) {
  const unsigned idx = if_nametoindex(ifname.c_str());
  if (idx == 0) fail("interface " + ifname + ": " + errstr(errno));
  return idx;
}

std::uint32_t parse_vip(const std::string& text) {  // network order
  in_addr a{};
  if (inet_pton(AF_INET, text.c_str(), &a) != 1) fail(kExitUsage, "not an IPv4 address: " + text);
  return a.s_addr;
}

std::string format_ip(std::uint32_t addr_be) {
  char buf[INET_ADDRSTRLEN];
  in_addr a{};
  a.s_addr = addr_be;
  inet_ntop(AF_INET, &a, buf, sizeof buf);
  return buf;
}

// decap.bpf.o next to the executable (the build tree), then the installed one.
std::string default_object() {
  std::vector<std::filesystem::path> candidates;
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) candidates.push_back(exe.parent_path() / kObjectFile);
  candidates.push_back(std::filesystem::path(TANDEM_BPF_DIR) / kObjectFile);
  for (const auto& c : candidates)
    if (std::filesystem::exists(c, ec)) return c.string();
  std::string tried;
  for (const auto& c : candidates) tried += (tried.empty() ? "" : ", ") + c.string();
  fail(std::string(kObjectFile) + " not found (looked at " + tried + "); pass --object PATH");
}

enum class Mode { automatic, native, generic };

__u32 mode_flags(Mode m) {
  switch (m) {
    case Mode::native: return XDP_FLAGS_DRV_MODE;
    case Mode::generic: return XDP_FLAGS_SKB_MODE;
    case Mode::automatic: break;
  }
  return 0;
}

// The tandem_decap program attached to an interface, with its maps.
struct Attached {
  tandem::xdp::AttachedProgram prog;
  int vips;   // decap_vips
  int stats;  // decap_stats
};

// nullopt when no XDP program is attached; fails when one is attached that is not ours.
std::optional<Attached> find_attached(const std::string& ifname) {
  std::string error;
  auto prog = tandem::xdp::AttachedProgram::find(ifname, error);
  if (!error.empty()) fail(error);
  if (!prog) return std::nullopt;
  if (prog->name() != kProgName)
    fail(ifname + " has XDP program '" + prog->name() + "' (id " + std::to_string(prog->id()) + ", " + prog->mode() +
         ") attached, which is not " + kProgName + "; not touching it");
  const int vips = prog->map_fd("decap_vips");
  const int stats = prog->map_fd("decap_stats");
  if (vips < 0 || stats < 0)
    fail(std::string(kProgName) + " on " + ifname + " (id " + std::to_string(prog->id()) +
         ") lacks the maps decap_vips/decap_stats this tool expects (different version?)");
  return Attached{std::move(*prog), vips, stats};
}

Attached require_attached(const std::string& ifname) {
  auto a = find_attached(ifname);
  if (!a) fail(kExitNotAttached, std::string("no ") + kProgName + " program attached to " + ifname);
  return std::move(*a);
}

void add_vip(int map_fd, std::uint32_t vip) {
  const __u32 zero = 0;
  if (bpf_map_update_elem(map_fd, &vip, &zero, BPF_ANY) != 0) {
    const int err = errno;
    if (err == E2BIG)
      fail("VIP table full (" + std::to_string(TANDEM_DECAP_MAX_VIPS) + " entries); " + format_ip(vip) + " not added");
    fail("adding VIP " + format_ip(vip) + ": " + errstr(err));
  }
}

std::vector<std::uint32_t> list_vips(int map_fd) {
  std::vector<std::uint32_t> out;
  __u32 key = 0, next = 0;
  const __u32* prev = nullptr;
  while (bpf_map_get_next_key(map_fd, prev, &next) == 0) {
    out.push_back(next);
    key = next;
    prev = &key;
    if (out.size() > 2 * TANDEM_DECAP_MAX_VIPS) break;  // concurrent churn: stop rather than loop
  }
  std::sort(out.begin(), out.end(), [](std::uint32_t a, std::uint32_t b) { return ntohl(a) < ntohl(b); });
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::string join_vips(const std::vector<std::uint32_t>& vips) {
  if (vips.empty()) return "none";
  std::string s;
  for (auto v : vips) s += (s.empty() ? "" : " ") + format_ip(v);
  return s;
}

// ---- commands ------------------------------------------------------------------------------

int cmd_attach(const std::string& ifname, const std::vector<std::string>& vip_texts, Mode mode,
               std::string object_path) {
  const unsigned ifindex = ifindex_of(ifname);
  std::vector<std::uint32_t> vips;
  for (const auto& t : vip_texts) vips.push_back(parse_vip(t));
  if (auto existing = find_attached(ifname))
    fail(std::string(kProgName) + " is already attached to " + ifname + " (id " + std::to_string(existing->prog.id()) +
         ", " + existing->prog.mode() + "); use `tandem-decap vip add` to add VIPs, or detach first");
  if (object_path.empty()) object_path = default_object();

  bpf_object* obj = bpf_object__open_file(object_path.c_str(), nullptr);
  if (!obj) fail("opening " + object_path + ": " + errstr(errno));
  struct Closer {
    bpf_object* o;
    ~Closer() { bpf_object__close(o); }
  } closer{obj};
  if (int err = bpf_object__load(obj); err != 0)
    fail("loading " + object_path + ": " + errstr(err) +
         (err == -EPERM ? " (needs root, or CAP_BPF + CAP_NET_ADMIN)" : ""));
  bpf_program* prog = bpf_object__find_program_by_name(obj, kProgName);
  bpf_map* vip_map = bpf_object__find_map_by_name(obj, "decap_vips");
  if (!prog || !vip_map) fail(object_path + " is not Tandem's decap program (no " + kProgName + " / decap_vips)");
  for (auto v : vips) add_vip(bpf_map__fd(vip_map), v);  // before attaching: no window without VIPs

  const __u32 flags = XDP_FLAGS_UPDATE_IF_NOEXIST | mode_flags(mode);
  if (int err = bpf_xdp_attach(static_cast<int>(ifindex), bpf_program__fd(prog), flags, nullptr); err != 0) {
    std::string why = errstr(err);
    if (err == -EBUSY || err == -EEXIST)
      why = "another XDP program is attached to " + ifname + " (in another mode?)";
    else if (err == -EOPNOTSUPP && mode == Mode::native)
      why += " (the driver has no native XDP support; try --mode generic)";
    fail("attaching to " + ifname + ": " + why);
  }
  // The netlink attachment holds the program (and through it the maps): closing the object
  // on return leaves it running.
  const auto a = require_attached(ifname);
  std::printf("attached %s to %s: program id %u, mode %s, VIPs: %s\n", kProgName, ifname.c_str(), a.prog.id(),
              a.prog.mode(), join_vips(list_vips(a.vips)).c_str());
  return 0;
}

int cmd_detach(const std::string& ifname) {
  const auto a = require_attached(ifname);
  if (auto error = a.prog.detach(); !error.empty()) fail(ifname + ": " + error);
  std::printf("detached %s (program id %u, %s) from %s\n", kProgName, a.prog.id(), a.prog.mode(), ifname.c_str());
  return 0;
}

int cmd_vip(const std::string& action, const std::string& ifname, const std::string& vip_text) {
  const std::uint32_t vip = parse_vip(vip_text);
  const auto a = require_attached(ifname);
  if (action == "add") {
    add_vip(a.vips, vip);
    std::printf("VIP %s added on %s\n", vip_text.c_str(), ifname.c_str());
  } else {
    if (bpf_map_delete_elem(a.vips, &vip) != 0) {
      const int err = errno;
      if (err == ENOENT) fail("VIP " + vip_text + " is not configured on " + ifname);
      fail("deleting VIP " + vip_text + ": " + errstr(err));
    }
    std::printf("VIP %s deleted on %s\n", vip_text.c_str(), ifname.c_str());
  }
  return 0;
}

int cmd_status(const std::string& ifname) {
  const auto a = require_attached(ifname);
  std::printf("interface %s\nprogram %s\nprogram_id %u\nmode %s\nvips %s\n", ifname.c_str(), kProgName, a.prog.id(),
              a.prog.mode(), join_vips(list_vips(a.vips)).c_str());
  for (__u32 v = 0; v < TANDEM_DECAP_VERDICT_COUNT; ++v) {
    std::uint64_t sum = 0;
    if (!tandem::xdp::read_percpu_u64(a.stats, v, &sum, 1))
      fail("reading counter " + std::string(kVerdictNames[v]) + ": " + errstr(errno));
    std::printf("%s %llu\n", kVerdictNames[v], static_cast<unsigned long long>(sum));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tandem-decap: IPv4-in-IPv4 decapsulation (XDP) for backends of Tandem tunnel-mode services"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("tandem-decap ") + TANDEM_VERSION);
  app.add_flag("-v,--verbose", g_verbose, "show libbpf's informational messages");
  app.footer(
      "Exit status: 0 done, 1 failed, 2 bad command line, 3 no tandem_decap program attached to IFACE.");

  std::string ifname, object_path, mode_text, vip_action, vip_text;
  std::vector<std::string> vips;

  auto* attach = app.add_subcommand("attach", "load decap.bpf.o, fill its VIPs and attach it to IFACE (stays attached)");
  attach->add_option("IFACE", ifname, "network interface")->required();
  attach->add_option("--vip", vips, "VIP to decapsulate (repeatable)")->check(CLI::ValidIPV4);
  attach->add_option("--mode", mode_text, "XDP mode; default: native when the driver supports it, else generic")
      ->check(CLI::IsMember({"native", "generic"}));
  attach->add_option("--object", object_path, "BPF object (default: next to this program, then " TANDEM_BPF_DIR ")")
      ->check(CLI::ExistingFile);

  auto* detach = app.add_subcommand("detach", "detach the tandem_decap program from IFACE");
  detach->add_option("IFACE", ifname, "network interface")->required();

  auto* vip = app.add_subcommand("vip", "add or delete a VIP of the program attached to IFACE");
  vip->add_option("ACTION", vip_action, "add or del")->required()->check(CLI::IsMember({"add", "del"}));
  vip->add_option("IFACE", ifname, "network interface")->required();
  vip->add_option("VIP", vip_text, "IPv4 address")->required()->check(CLI::ValidIPV4);

  auto* status = app.add_subcommand("status", "show the attached program, its VIPs and its counters");
  status->add_option("IFACE", ifname, "network interface")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : kExitUsage;
  }
  libbpf_set_print(libbpf_print);

  try {
    if (*attach) {
      const Mode mode = mode_text == "native" ? Mode::native : mode_text == "generic" ? Mode::generic : Mode::automatic;
      return cmd_attach(ifname, vips, mode, object_path);
    }
    if (*detach) return cmd_detach(ifname);
    if (*vip) return cmd_vip(vip_action, ifname, vip_text);
    if (*status) return cmd_status(ifname);
  } catch (const Failure& f) {
    std::fprintf(stderr, "tandem-decap: %s\n", f.message.c_str());
    return f.code;
  }
  return kExitUsage;
}
