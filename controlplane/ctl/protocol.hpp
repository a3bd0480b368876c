// The ctl socket's protocol, version 1 (docs/ctl-protocol.md): one JSON object per line in each
// direction. This is the codec and the validation of every command's arguments, with no socket
// and no daemon state, so that every malformed request is tested here and the server only ever
// sees requests whose arguments have the right names, types and ranges.
//
//   request   {"v": 1, "id": 7, "cmd": "backend.set", "args": {"service": "web", ...}}
//   success   {"v": 1, "id": 7, "ok": true, "result": {...}}
//   failure   {"v": 1, "id": 7, "ok": false, "error": {"code": "invalid_argument", "message": "..."}}
//
// `id` (an integer or a string) is optional and echoed; `args` is optional for commands
// without required arguments.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace tandem::ctl {

inline constexpr int kProtocolVersion = 1;
// Longest request line accepted, newline excluded. Longer lines are answered line_too_long and
// discarded up to their newline.
inline constexpr std::size_t kMaxLineBytes = 64 * 1024;

// Stable error codes: part of the protocol.
enum class ErrorCode : std::uint8_t {
  kParseError,          // the line is not JSON
  kBadRequest,          // not an object, or v/id/cmd/args missing or of the wrong type
  kUnsupportedVersion,  // v is not a version this daemon speaks
  kUnknownCommand,
  kInvalidArgument,     // an argument is missing, unknown, of the wrong type or out of range
  kNotFound,            // the service/backend named does not exist
  kConflict,            // it exists already, or the change contradicts the running state
  kForbidden,           // the peer's uid/gid may not use the socket
  kLineTooLong,
  kInternal,
  kCount
};
const char* to_string(ErrorCode c);

struct Error {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;
};

// The type an argument must have. Every check is strict: "80" is not a port, 80.0 is not an
// integer, true is not 1.
enum class ArgType : std::uint8_t {
  kString,      // non-empty, at most 128 bytes
  kName,        // a service name: letters, digits, '_', '-', '.', 1..64 bytes
  kIpv4,        // dotted quad
  kPort,        // integer 0..65535 (0: every port, where the command allows it)
  kWeight,      // integer 0..1000000 (0: drained)
  kLimit,       // integer 1..kMaxListLimit
  kProtocol,    // "tcp" | "udp"
  kMode,        // "nat" | "fullnat" | "dsr" | "tunnel"
  kLogLevel,    // "trace" | "debug" | "info" | "warn" | "error" | "critical" | "off"
  kTcpState,    // a connection state as listed: "established", "syn_sent", ...
  kBool,
  kPath,        // an absolute file path, at most 4096 bytes
  kIpv4List,    // an array of dotted quads, at most 64
  kTableSize,   // integer 1..2^24 (a Maglev table size; primality is checked where it is built)
};
const char* to_string(ArgType t);

inline constexpr std::uint32_t kMaxListLimit = 100000;

struct ArgSpec {
  std::string_view name;
  ArgType type;
  bool required = false;
  bool positional = false;  // tandemctl also takes it without its --name (`ha maintenance on`)
};

struct CommandSpec {
  std::string_view name;           // "service.add"
  std::span<const ArgSpec> args;
  bool changes_state = false;      // logged with the peer's identity; refused to read-only peers
  std::string_view summary;        // one line, for `tandemctl help` and the docs
};

// Every command of protocol version 1, in the order of docs/ctl-protocol.md.
std::span<const CommandSpec> commands();
const CommandSpec* find_command(std::string_view name);

struct Request {
  nlohmann::json id;    // null when the client sent none
  std::string cmd;
  nlohmann::json args;  // always an object (empty when absent)
  const CommandSpec* spec = nullptr;
};

// Parses and validates one request line (without its newline). On failure `error` says why and
// `id` holds the request's id when one could be read (so the reply can carry it).
struct Parsed {
  std::optional<Request> request;
  Error error;
  nlohmann::json id;
};
Parsed parse_request(std::string_view line);

// Checks `args` against `spec`: every required argument present, no unknown one, each of its
// type. Returns nothing when they are fine.
std::optional<Error> check_args(const CommandSpec& spec, const nlohmann::json& args);

// Reply lines, newline included.
std::string encode_result(const nlohmann::json& id, const nlohmann::json& result);
std::string encode_error(const nlohmann::json& id, const Error& error);

// A request line for clients (tandemctl), newline included.
std::string encode_request(const nlohmann::json& id, std::string_view cmd, const nlohmann::json& args);

}  // namespace tandem::ctl
