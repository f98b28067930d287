#pragma once
/// What a logsync-node (examples/logsync-node.cpp) and a Client
/// (client.hpp) agree on about the node's line protocol: its version, and
/// how records travel inside one line (PBATCH, SCAN): "<length>:<bytes>"
/// back to back, the length in decimal.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace logsync::detail {

/// The protocol version a node speaks (HELLO answers it), and the oldest
/// it serves. Version 1: everything but HELLO, PAPPEND, PBATCH and SCAN.
inline constexpr std::uint64_t kProtocolVersion = 2;
inline constexpr std::uint64_t kOldestProtocolVersion = 1;

/// The most idempotent appends of one producer that may be in flight at
/// once (Client::AppendEach): the producer table remembers that many of
/// each producer's last appends (producers.hpp), so any of them sent again
/// is answered as a duplicate.
inline constexpr std::size_t kMaxAppendsInFlight = 32;

/// Appends `value` framed as "<length>:<bytes>" to `out`.
inline void AppendFramed(std::string& out, std::string_view value) {
  out += std::to_string(value.size());
  out += ':';
  out += value;
}

/// Calls take(value) for each of the `n` framed records that make up the
/// whole of `text`; false if it does not parse (some may have been taken).
template <class Take>
bool ParseFramed(std::string_view text, std::uint64_t n, Take&& take) {
  for (std::uint64_t i = 0; i < n; ++i) {
    std::size_t len = 0, digits = 0;
    for (; digits < text.size() && text[digits] >= '0' && text[digits] <= '9'; ++digits) {
      if (len > (std::size_t{1} << 48)) return false;
      len = len * 10 + static_cast<std::size_t>(text[digits] - '0');
    }
    if (digits == 0 || digits == text.size() || text[digits] != ':') return false;
    text.remove_prefix(digits + 1);
    if (text.size() < len) return false;
    take(text.substr(0, len));
    text.remove_prefix(len);
  }
  return text.empty();
}

}  // namespace logsync::detail
