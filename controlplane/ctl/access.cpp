#include "controlplane/ctl/access.hpp"

#include <grp.h>
#include <pwd.h>

#include <algorithm>
#include <cctype>
#include <vector>

namespace tandem::ctl {
namespace {

bool numeric(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
}

std::optional<uid_t> user_id(const std::string& name) {
  if (numeric(name)) return static_cast<uid_t>(std::stoul(name));
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* found = nullptr;
  if (::getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &found) != 0 || !found) return std::nullopt;
  return found->pw_uid;
}

std::optional<gid_t> group_id(const std::string& name) {
  if (numeric(name)) return static_cast<gid_t>(std::stoul(name));
  std::vector<char> buf(65536);
  group gr{};
  group* found = nullptr;
  if (::getgrnam_r(name.c_str(), &gr, buf.data(), buf.size(), &found) != 0 || !found) return std::nullopt;
  return found->gr_gid;
}

}  // namespace

std::optional<ServerOptions> server_options(const config::CtlConfig& ctl, std::string& error) {
  ServerOptions o;
  o.path = ctl.socket;
  o.mode = static_cast<mode_t>(ctl.mode);
  std::string errors;
  const auto note = [&](const std::string& key, const char* kind, const std::string& name) {
    errors += (errors.empty() ? "" : "; ") + std::string("ctl.") + key + ": no " + kind + " \"" + name + "\"";
  };
  const auto users = [&](const std::vector<std::string>& names, const std::string& key, std::vector<uid_t>& out) {
    for (const auto& n : names) {
      if (const auto id = user_id(n)) out.push_back(*id);
      else note(key, "user", n);
    }
  };
  const auto groups = [&](const std::vector<std::string>& names, const std::string& key, std::vector<gid_t>& out) {
    for (const auto& n : names) {
      if (const auto id = group_id(n)) out.push_back(*id);
      else note(key, "group", n);
    }
  };
  if (!ctl.owner.empty()) {
    if (const auto id = user_id(ctl.owner)) o.owner = *id;
    else note("owner", "user", ctl.owner);
  }
  if (!ctl.group.empty()) {
    if (const auto id = group_id(ctl.group)) o.group = *id;
    else note("group", "group", ctl.group);
  }
  users(ctl.allowed_users, "allowed_users", o.allowed_uids);
  groups(ctl.allowed_groups, "allowed_groups", o.allowed_gids);
  users(ctl.read_only_users, "read_only_users", o.read_only_uids);
  groups(ctl.read_only_groups, "read_only_groups", o.read_only_gids);
  if (!errors.empty()) {
    error = errors;
    return std::nullopt;
  }
  return o;
}

}  // namespace tandem::ctl
