#pragma once
/// Fetching a node's local log over its client port, for the metadata-only
/// snapshots (snapshot_format.hpp): the records travel as a checked stream,
/// never whole in memory.
///
///     request:  FETCH
///     reply:    OK <bytes>, a newline, then that many bytes of the serving
///               node's Log::Reader() stream (snapshot.hpp), or an ERR line
///
/// FetchLog reads the stream in chunks of at most 1 MiB into RestoreLog,
/// which checks every store header and every frame's CRC as it goes and
/// writes into a staging directory renamed into place only when the whole
/// stream held: a cut transfer or a corrupted frame leaves nothing.
/// ServeFetch is the serving side; the stream holds the segments it
/// reads, so a Truncate or restore meanwhile does not cut it short.

#include <logsync/config.hpp>
#include <logsync/error.hpp>
#include <logsync/raft/connection.hpp>
#include <logsync/snapshot.hpp>

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

namespace logsync::detail {

/// The chunk a fetch moves at a time.
inline constexpr std::size_t kFetchChunkBytes = std::size_t{1} << 20;

/// Writes the reply to FETCH for the stream `reader` to the socket `fd`:
/// false if the socket failed (the peer went away).
inline bool ServeFetch(int fd, ByteReader reader) {
  const std::string head = "OK " + std::to_string(reader.Size()) + "\n";
  auto send_all = [fd](const void* p, std::size_t n) {
    const auto* b = static_cast<const char*>(p);
    while (n > 0) {
      const ssize_t w = ::send(fd, b, n, MSG_NOSIGNAL);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return false;
      b += w;
      n -= static_cast<std::size_t>(w);
    }
    return true;
  };
  if (!send_all(head.data(), head.size())) return false;
  std::vector<std::byte> chunk(kFetchChunkBytes);
  for (;;) {
    const std::size_t n = reader.Read(chunk);
    if (n == 0) return true;
    if (!send_all(chunk.data(), n)) return false;
  }
}

/// A ByteSource over the bytes of a FETCH reply: exactly `length` of them,
/// each read by `timeout`; a stream that ends or stalls sooner throws.
class FetchSource {
 public:
  FetchSource(LineConnection& conn, std::uint64_t length, std::chrono::milliseconds timeout) noexcept
      : conn_(conn), left_(length), timeout_(timeout) {}

  std::size_t Read(std::span<std::byte> out) {
    if (left_ == 0) return 0;
    out = out.first(static_cast<std::size_t>(std::min<std::uint64_t>(out.size(), left_)));
    const std::size_t n = conn_.ReadSome(out, LineConnection::Clock::now() + timeout_);
    if (n == 0) throw Error("logsync: fetch: the stream broke off " + std::to_string(left_) + " bytes before its end");
    left_ -= n;
    return n;
  }

 private:
  LineConnection& conn_;
  std::uint64_t left_;
  std::chrono::milliseconds timeout_;
};

/// Fetches the local log of the node whose client port is `address` into
/// `dir` (absent or empty): the same records at the same offsets, in the
/// same segments. Returns its next offset. Throws Error (the node cannot
/// be reached, refuses, or the stream breaks off) or CorruptionError (a
/// frame that does not hold), and then `dir` is left as it was. `timeout`
/// bounds the connection and each read.
inline std::uint64_t FetchLog(const std::string& address, const std::filesystem::path& dir, const Config& config,
                              std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  LineConnection conn;
  const auto until = [&] { return LineConnection::Clock::now() + timeout; };
  if (auto why = conn.Connect(address, until()); !why.empty()) throw Error("logsync: fetch: " + why);
  const auto reply = conn.Ask("FETCH", until());
  if (!reply) throw Error("logsync: fetch: no reply from " + address);
  std::uint64_t length = 0;
  const char* digits = reply->data() + std::min<std::size_t>(3, reply->size());
  const auto [end, ec] = std::from_chars(digits, reply->data() + reply->size(), length);
  if (reply->rfind("OK ", 0) != 0 || ec != std::errc{} || end != reply->data() + reply->size())
    throw Error("logsync: fetch: " + address + " replied '" + reply->substr(0, 200) + "'");
  FetchSource source(conn, length, timeout);
  return RestoreLog(dir, source, config);
}

}  // namespace logsync::detail
