// The ctl protocol's codec: every command accepts its arguments and nothing else, every kind of
// malformed request gets its error code (with the request's id when it could be read), and no
// line, however broken, crashes the parser.
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "controlplane/ctl/protocol.hpp"

using namespace tandem::ctl;
using nlohmann::json;

namespace {

// A valid value of each argument type.
json good_value(ArgType t) {
  switch (t) {
    case ArgType::kString: return "text";
    case ArgType::kName: return "web-1.a_b";
    case ArgType::kIpv4: return "10.0.0.1";
    case ArgType::kPort: return 80;
    case ArgType::kWeight: return 0;
    case ArgType::kLimit: return 20;
    case ArgType::kProtocol: return "udp";
    case ArgType::kMode: return "fullnat";
    case ArgType::kLogLevel: return "debug";
    case ArgType::kTcpState: return "established";
    case ArgType::kBool: return false;
    case ArgType::kPath: return "/etc/tandem/tandemd.toml";
    case ArgType::kIpv4List: return json::array({"10.0.1.5", "10.0.1.6"});
    case ArgType::kTableSize: return 65537;
  }
  return nullptr;
}

// Values each type must refuse.
std::vector<json> bad_values(ArgType t) {
  std::vector<json> common = {nullptr, json::object()};
  if (t != ArgType::kIpv4List) common.push_back(json::array());  // an empty list is a list
  std::vector<json> v;
  switch (t) {
    case ArgType::kString: v = {"", std::string(129, 'x'), 5}; break;
    case ArgType::kName: v = {"", "a b", "web/1", std::string(65, 'a'), 7}; break;
    case ArgType::kIpv4: v = {"10.0.0", "10.0.0.256", "10.0.0.1/24", " 10.0.0.1", 167772161}; break;
    case ArgType::kPort: v = {"80", 80.5, -1, 65536, true}; break;
    case ArgType::kWeight: v = {-1, 1000001, 1.0, "1"}; break;
    case ArgType::kLimit: v = {0, 100001, "10"}; break;
    case ArgType::kProtocol: v = {"TCP", "sctp", 6}; break;
    case ArgType::kMode: v = {"NAT", "masquerade", 0}; break;
    case ArgType::kLogLevel: v = {"verbose", "INFO", 2}; break;
    case ArgType::kTcpState: v = {"ESTABLISHED", "open", 4}; break;
    case ArgType::kBool: v = {"true", 1, 0}; break;
    case ArgType::kPath: v = {"relative/path", "", std::string("/a\0b", 4), 1}; break;
    case ArgType::kIpv4List: v = {"10.0.0.1", json::array({"10.0.0.1", "x"}), json::array({1})}; break;
    case ArgType::kTableSize: v = {0, (1 << 24) + 1, "65537", 65537.0}; break;
  }
  v.insert(v.end(), common.begin(), common.end());
  if (t == ArgType::kIpv4List) {
    json many = json::array();
    for (int i = 0; i < 65; ++i) many.push_back("10.0.0.1");
    v.push_back(many);
  }
  return v;
}

json full_args(const CommandSpec& spec, bool required_only) {
  json args = json::object();
  for (const auto& a : spec.args)
    if (a.required || !required_only) args[std::string(a.name)] = good_value(a.type);
  return args;
}

std::string line(const json& j) { return j.dump(); }

ErrorCode code_of(std::string_view l) {
  const Parsed p = parse_request(l);
  EXPECT_FALSE(p.request) << l;
  return p.error.code;
}

}  // namespace

TEST(CtlProtocol, EveryCommandTakesItsRequiredOrAllArguments) {
  ASSERT_GE(commands().size(), 18u);
  for (const auto& spec : commands()) {
    for (const bool required_only : {true, false}) {
      const json args = full_args(spec, required_only);
      const Parsed p = parse_request(encode_request(7, spec.name, args).substr(0, std::string::npos));
      ASSERT_TRUE(p.request) << spec.name << ": " << p.error.message;
      EXPECT_EQ(p.request->cmd, spec.name);
      EXPECT_EQ(p.request->spec, &spec);
      EXPECT_EQ(p.request->args, args);
      EXPECT_EQ(p.request->id, 7);
    }
  }
}

TEST(CtlProtocol, EachMissingRequiredArgumentIsNamed) {
  for (const auto& spec : commands()) {
    for (const auto& a : spec.args) {
      if (!a.required) continue;
      json args = full_args(spec, true);
      args.erase(std::string(a.name));
      const Parsed p = parse_request(line({{"v", 1}, {"cmd", spec.name}, {"args", args}}));
      ASSERT_FALSE(p.request) << spec.name;
      EXPECT_EQ(p.error.code, ErrorCode::kInvalidArgument);
      EXPECT_NE(p.error.message.find("args." + std::string(a.name)), std::string::npos) << p.error.message;
    }
  }
}

TEST(CtlProtocol, EveryArgumentRefusesValuesOfTheWrongTypeOrRange) {
  int checked = 0;
  for (const auto& spec : commands()) {
    for (const auto& a : spec.args) {
      for (const json& bad : bad_values(a.type)) {
        json args = full_args(spec, false);
        args[std::string(a.name)] = bad;
        const Parsed p = parse_request(line({{"v", 1}, {"id", "x"}, {"cmd", spec.name}, {"args", args}}));
        ASSERT_FALSE(p.request) << spec.name << " " << a.name << " = " << bad.dump();
        EXPECT_EQ(p.error.code, ErrorCode::kInvalidArgument) << spec.name << " " << a.name << " = " << bad.dump();
        EXPECT_EQ(p.id, "x");
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 200);
}

TEST(CtlProtocol, UnknownArgumentsAreRefused) {
  const Parsed p = parse_request(R"({"v":1,"cmd":"backend.drain","args":{"service":"web","address":"10.0.0.1","force":true}})");
  ASSERT_FALSE(p.request);
  EXPECT_EQ(p.error.code, ErrorCode::kInvalidArgument);
  EXPECT_NE(p.error.message.find("args.force: unknown argument"), std::string::npos) << p.error.message;
  EXPECT_EQ(code_of(R"({"v":1,"cmd":"status","args":{"x":1}})"), ErrorCode::kInvalidArgument);
}

TEST(CtlProtocol, EnvelopeErrors) {
  EXPECT_EQ(code_of(""), ErrorCode::kParseError);
  EXPECT_EQ(code_of("{\"v\":1,"), ErrorCode::kParseError);
  EXPECT_EQ(code_of("status"), ErrorCode::kParseError);
  EXPECT_EQ(code_of("[1,2]"), ErrorCode::kBadRequest);
  EXPECT_EQ(code_of("42"), ErrorCode::kBadRequest);
  EXPECT_EQ(code_of(R"({"cmd":"status"})"), ErrorCode::kBadRequest);
  EXPECT_EQ(code_of(R"({"v":"1","cmd":"status"})"), ErrorCode::kBadRequest);
  EXPECT_EQ(code_of(R"({"v":1})"), ErrorCode::kBadRequest);
  EXPECT_EQ(code_of(R"({"v":1,"cmd":5})"), ErrorCode::kBadRequest);
  EXPECT_EQ(code_of(R"({"v":1,"cmd":"status","args":[]})"), ErrorCode::kBadRequest);
  EXPECT_EQ(code_of(R"({"v":1,"cmd":"status","extra":0})"), ErrorCode::kBadRequest);
  EXPECT_EQ(code_of(R"({"v":1,"id":1.5,"cmd":"status"})"), ErrorCode::kBadRequest);
  EXPECT_EQ(code_of(R"({"v":1,"id":{"a":1},"cmd":"status"})"), ErrorCode::kBadRequest);
  EXPECT_EQ(code_of(R"({"v":1,"cmd":"reboot"})"), ErrorCode::kUnknownCommand);
  EXPECT_EQ(code_of(std::string(kMaxLineBytes + 1, ' ')), ErrorCode::kLineTooLong);
}

TEST(CtlProtocol, TheIdIsKeptForTheErrorReplyWhenItCouldBeRead) {
  const Parsed p = parse_request(R"({"v":2,"id":"req-9","cmd":"status"})");
  ASSERT_FALSE(p.request);
  EXPECT_EQ(p.error.code, ErrorCode::kUnsupportedVersion);
  EXPECT_EQ(p.id, "req-9");
  const json reply = json::parse(encode_error(p.id, p.error));
  EXPECT_EQ(reply, (json{{"v", 1}, {"id", "req-9"}, {"ok", false},
                         {"error", {{"code", "unsupported_version"}, {"message", p.error.message}}}}));
  EXPECT_EQ(parse_request(R"({"v":1,"cmd":"nope","id":3})").id, 3);
}

TEST(CtlProtocol, RepliesAreOneLineEach) {
  const std::string ok = encode_result(json(12), json{{"text", "line\nbreak"}, {"bytes", "\xff\xfe"}});
  EXPECT_EQ(ok.back(), '\n');
  EXPECT_EQ(ok.find('\n'), ok.size() - 1) << "a newline inside a value is escaped";
  const json j = json::parse(ok);
  EXPECT_EQ(j["ok"], true);
  EXPECT_EQ(j["id"], 12);
  EXPECT_EQ(j["result"]["text"], "line\nbreak");
  const std::string no_id = encode_result(nullptr, json::object());
  EXPECT_FALSE(json::parse(no_id).contains("id"));
}

TEST(CtlProtocol, EncodedRequestsParseBack) {
  const std::string l = encode_request("a", "connections.list", {{"vip", "10.0.0.10"}, {"limit", 20}});
  ASSERT_EQ(l.back(), '\n');
  const Parsed p = parse_request(std::string_view(l).substr(0, l.size() - 1));
  ASSERT_TRUE(p.request) << p.error.message;
  EXPECT_EQ(p.request->args["limit"], 20);
  EXPECT_EQ(json::parse(encode_request(nullptr, "status", json::object())), (json{{"v", 1}, {"cmd", "status"}}));
}

TEST(CtlProtocol, EveryErrorCodeHasAStableName) {
  for (int c = 0; c < static_cast<int>(ErrorCode::kCount); ++c)
    EXPECT_STRNE(to_string(static_cast<ErrorCode>(c)), "") << c;
  EXPECT_STREQ(to_string(ErrorCode::kInvalidArgument), "invalid_argument");
}

TEST(CtlProtocol, MangledLinesNeverCrashAndAlwaysGetACode) {
  std::mt19937 rng(11);
  std::vector<std::string> seeds;
  for (const auto& spec : commands()) seeds.push_back(encode_request(rng() % 100, spec.name, full_args(spec, false)));
  int accepted = 0, refused = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string s = seeds[rng() % seeds.size()];
    s.pop_back();
    switch (rng() % 4) {
      case 0: s.resize(rng() % (s.size() + 1)); break;
      case 1: s[rng() % s.size()] = static_cast<char>(rng()); break;
      case 2: s.insert(rng() % s.size(), 1, "{}[]\",:\\0"[rng() % 9]); break;
      default: std::swap(s[rng() % s.size()], s[rng() % s.size()]); break;
    }
    const Parsed p = parse_request(s);
    if (p.request) {
      ++accepted;
      EXPECT_FALSE(check_args(*p.request->spec, p.request->args)) << s;
    } else {
      ++refused;
      EXPECT_LT(static_cast<int>(p.error.code), static_cast<int>(ErrorCode::kCount));
      EXPECT_FALSE(p.error.message.empty()) << s;
      EXPECT_TRUE(json::accept(encode_error(p.id, p.error))) << s;  // the reply is valid JSON
    }
  }
  EXPECT_GT(refused, 10000);
  EXPECT_GT(accepted, 0);
}
