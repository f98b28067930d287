#pragma once
/// detail::LineConnection: a TCP connection to a node's client port that
/// speaks its line protocol (one request line, one reply line), every step
/// bounded by a deadline. Plain POSIX sockets; Client (client.hpp) is
/// built on it.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <chrono>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

namespace logsync::detail {

class LineConnection {
 public:
  using Clock = std::chrono::steady_clock;
  /// The longest reply line taken (a SCAN reply is about 1 MiB at most).
  static constexpr std::size_t kMaxLine = std::size_t{64} << 20;

  LineConnection() = default;
  LineConnection(const LineConnection&) = delete;
  LineConnection& operator=(const LineConnection&) = delete;
  ~LineConnection() { Close(); }

  /// Connects to "host:port" by `until` (closing any connection first);
  /// returns "" or why it could not.
  std::string Connect(const std::string& address, Clock::time_point until) {
    Close();
    const auto colon = address.rfind(':');
    if (colon == std::string::npos || colon == 0) return "address '" + address + "' is not host:port";
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    addrinfo* found = nullptr;
    const std::string host = address.substr(0, colon), port = address.substr(colon + 1);
    if (const int rv = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &found); rv != 0)
      return "cannot resolve " + address + ": " + ::gai_strerror(rv);
    std::string why = "no address for " + address;
    for (const addrinfo* a = found; a != nullptr && fd_ < 0; a = a->ai_next) why = Try(*a, until);
    ::freeaddrinfo(found);
    return fd_ >= 0 ? std::string() : "cannot connect to " + address + ": " + why;
  }

  bool IsOpen() const noexcept { return fd_ >= 0; }

  /// Sends `request` and a newline, then reads the reply line (without its
  /// newline), both by `until`; nullopt (and the connection closed) if it
  /// broke, the node closed it or the time ran out.
  std::optional<std::string> Ask(std::string_view request, Clock::time_point until) {
    if (!Send(request, until)) return std::nullopt;
    return ReadLine(until);
  }

  /// Sends `request` and a newline by `until` without reading a reply (a
  /// request pipelined behind others); false (and the connection closed)
  /// if it broke or the time ran out.
  bool Send(std::string_view request, Clock::time_point until) {
    std::string line(request);
    line += '\n';
    if (!SendAll(line, until)) return Fail(), false;
    return true;
  }

  /// Reads the next reply line (without its newline) by `until`; as Ask.
  std::optional<std::string> Receive(Clock::time_point until) { return ReadLine(until); }

  /// Reads the next bytes after the last reply line into `out` (what was
  /// received with it first), by `until`; how many, 0 (and the connection
  /// closed) if it broke, the node closed it or the time ran out.
  std::size_t ReadSome(std::span<std::byte> out, Clock::time_point until) {
    if (!buf_.empty()) {
      const std::size_t n = std::min(out.size(), buf_.size());
      std::memcpy(out.data(), buf_.data(), n);
      buf_.erase(0, n);
      return n;
    }
    while (fd_ >= 0 && !out.empty()) {
      if (!Await(POLLIN, until)) break;
      const ssize_t n = ::recv(fd_, out.data(), out.size(), 0);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) break;
      return static_cast<std::size_t>(n);
    }
    Close();
    return 0;
  }

  void Close() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    buf_.clear();
  }

 private:
  static int Left(Clock::time_point until) {
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(until - Clock::now()).count();
    return ms > 0 ? static_cast<int>(std::min<long long>(ms, 1 << 30)) : 0;
  }

  // Waits for `events` on the socket by `until`; false on timeout or error.
  bool Await(short events, Clock::time_point until) const {
    for (;;) {
      pollfd p{fd_, events, 0};
      const int rv = ::poll(&p, 1, Left(until));
      if (rv < 0 && errno == EINTR) continue;
      return rv == 1;
    }
  }

  std::string Try(const addrinfo& a, Clock::time_point until) {
    fd_ = ::socket(a.ai_family, a.ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a.ai_protocol);
    if (fd_ < 0) return std::strerror(errno);
    if (::connect(fd_, a.ai_addr, a.ai_addrlen) != 0 && errno != EINPROGRESS) {
      const std::string why = std::strerror(errno);
      Close();
      return why;
    }
    int err = 0;
    socklen_t len = sizeof err;
    if (!Await(POLLOUT, until)) err = ETIMEDOUT;
    else if (::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err != 0) {
      Close();
      return std::strerror(err);
    }
    const int one = 1;  // requests go out at once, not after a delayed ACK
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return {};
  }

  std::nullopt_t Fail() noexcept {
    Close();
    return std::nullopt;
  }

  bool SendAll(std::string_view s, Clock::time_point until) {
    while (!s.empty()) {
      const ssize_t n = ::send(fd_, s.data(), s.size(), MSG_NOSIGNAL);
      if (n > 0) {
        s.remove_prefix(static_cast<std::size_t>(n));
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && errno == EAGAIN) {
        if (!Await(POLLOUT, until)) return false;
      } else {
        return false;
      }
    }
    return true;
  }

  std::optional<std::string> ReadLine(Clock::time_point until) {
    std::size_t scanned = 0, nl;
    while ((nl = buf_.find('\n', scanned)) == std::string::npos) {
      scanned = buf_.size();
      if (buf_.size() > kMaxLine || !Await(POLLIN, until)) return Fail();
      char chunk[65536];
      const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) return Fail();
      buf_.append(chunk, static_cast<std::size_t>(n));
    }
    std::string line = buf_.substr(0, nl);
    buf_.erase(0, nl + 1);
    return line;
  }

  int fd_ = -1;
  std::string buf_;  // received, not yet returned
};

}  // namespace logsync::detail
