#include "controlplane/health/http_check.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>

namespace tandem::health {

namespace {

// Where the headers end and the body begins; servers that end lines with a bare LF are
// accepted (a health check is no place to be stricter than the backend's own clients).
std::optional<std::size_t> body_start(std::string_view answer) {
  const std::size_t crlf = answer.find("\r\n\r\n");
  const std::size_t lf = answer.find("\n\n");
  if (crlf == std::string_view::npos && lf == std::string_view::npos) return std::nullopt;
  if (lf == std::string_view::npos || (crlf != std::string_view::npos && crlf < lf)) return crlf + 4;
  return lf + 2;
}

bool iequals(std::string_view a, std::string_view b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                    [](char x, char y) { return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y)); });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// "HTTP/1.1 200 OK": the status code, or nothing when the line is not a status line.
std::optional<std::uint32_t> status_code(std::string_view answer) {
  const std::size_t eol = answer.find('\n');
  if (eol == std::string_view::npos) return std::nullopt;
  std::string_view line = answer.substr(0, eol);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (!line.starts_with("HTTP/")) return std::nullopt;
  const std::size_t sp = line.find(' ');
  if (sp == std::string_view::npos || line.size() < sp + 4) return std::nullopt;
  const std::string_view code = line.substr(sp + 1, 3);
  if (!std::all_of(code.begin(), code.end(), [](char c) { return c >= '0' && c <= '9'; })) return std::nullopt;
  if (line.size() > sp + 4 && line[sp + 4] != ' ') return std::nullopt;
  std::uint32_t value = 0;
  std::from_chars(code.data(), code.data() + code.size(), value);
  return value;
}

bool printable_token(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c > ' ' && c != 0x7f; });
}

}  // namespace

std::string http_request_problem(std::string_view path, std::string_view host) {
  if (path.empty() || path.front() != '/' || !printable_token(path)) return "invalid http path";
  if (!printable_token(host)) return "invalid http host";
  return {};
}

std::string http_request(std::string_view path, std::string_view host) {
  std::string r;
  r.reserve(96 + path.size() + host.size());
  r.append("GET ").append(path).append(" HTTP/1.0\r\nHost: ").append(host);
  r.append("\r\nUser-Agent: tandem-health\r\nConnection: close\r\n\r\n");
  return r;
}

std::optional<std::size_t> http_answer_length(std::string_view answer) {
  const auto start = body_start(answer);
  if (!start) return std::nullopt;
  std::string_view headers = answer.substr(0, *start);
  while (!headers.empty()) {
    const std::size_t eol = headers.find('\n');
    const std::string_view line = headers.substr(0, eol);
    const std::size_t colon = line.find(':');
    if (colon != std::string_view::npos && iequals(line.substr(0, colon), "content-length")) {
      const std::string_view value = trim(line.substr(colon + 1));
      std::size_t length = 0;
      const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), length);
      if (ec != std::errc{} || end != value.data() + value.size()) return std::nullopt;
      return *start + length;
    }
    if (eol == std::string_view::npos) break;
    headers.remove_prefix(eol + 1);
  }
  return std::nullopt;
}

std::string judge_http_answer(std::string_view answer, std::uint32_t expected_status, std::string_view expected_body) {
  if (answer.empty()) return "empty answer";
  const auto status = status_code(answer);
  if (!status) return "malformed status line";
  if (*status != expected_status)
    return "status " + std::to_string(*status) + ", expected " + std::to_string(expected_status);
  const auto start = body_start(answer);
  if (!start) return "answer ends inside its headers";
  if (!expected_body.empty() && answer.substr(*start).find(expected_body) == std::string_view::npos)
    return "body does not contain \"" + std::string(expected_body) + "\"";
  return {};
}

}  // namespace tandem::health
