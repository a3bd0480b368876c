// The HTTP side of a health check, without the sockets: the request it sends and the verdict
// on the answer it got. HTTP/1.0 with "Connection: close", so the server ends the answer by
// closing; an answer with Content-Length is complete once that many body bytes are in.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tandem::health {

// At most this much of an answer is read; a body string must be found within it.
inline constexpr std::size_t kMaxHttpAnswerBytes = 64 * 1024;

// Why `path` or `host` cannot go into a request line or header (empty: they can). The config
// refuses such values; this keeps a bad one from ever reaching a backend.
std::string http_request_problem(std::string_view path, std::string_view host);

// "GET <path> HTTP/1.0\r\nHost: <host>\r\nUser-Agent: tandem-health\r\nConnection: close\r\n\r\n"
std::string http_request(std::string_view path, std::string_view host);

// The answer's full length when its headers are complete and carry a Content-Length: no need
// to wait for the server to close.
std::optional<std::size_t> http_answer_length(std::string_view answer);

// Empty when `answer` has status `expected_status` and, if `expected_body` is not empty, a body
// that contains it; otherwise the reason, e.g. "status 500, expected 200".
std::string judge_http_answer(std::string_view answer, std::uint32_t expected_status, std::string_view expected_body);

}  // namespace tandem::health
