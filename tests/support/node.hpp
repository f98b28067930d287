#pragma once
// Tests that run logsync-node processes on 127.0.0.1 and speak its line
// protocol over TCP: the node program's path, free ports, client
// connections with a deadline on every read, starting and stopping node
// processes, admin secret files.

#include <boost/test/unit_test.hpp>

#include "spawn.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace logsync::test {

using Clock = std::chrono::steady_clock;

/// What Conn returns instead of a line when none came before the deadline.
inline constexpr const char* kTimeout = "<timeout>";
/// What Conn returns instead of a line once the node closed the connection
/// (or it could not be made, or broke).
inline constexpr const char* kClosed = "<closed>";

/// The logsync-node program: the test's first argument after `--`.
inline std::string NodeProgram() {
  auto& suite = boost::unit_test::framework::master_test_suite();
  BOOST_REQUIRE_MESSAGE(suite.argc > 1, "usage: " << suite.p_name.get() << " -- <path to logsync-node>");
  return suite.argv[1];
}

/// A TCP socket bound to a free port on 127.0.0.1 (set in `port`),
/// listening with `backlog` unless that is 0.
inline int BindLoopback(int& port, int backlog = 0) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  BOOST_REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  if (backlog > 0) BOOST_REQUIRE(::listen(fd, backlog) == 0);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  port = ntohs(a.sin_port);
  return fd;
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
inline int FreePort() {
  int port = 0;
  ::close(BindLoopback(port));
  return port;
}

/// Milliseconds left until `until`, 0 once it has passed.
inline int Remaining(Clock::time_point until) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count();
  return left > 0 ? static_cast<int>(left) : 0;
}

/// A client connection; every read has a deadline, so a node that stopped
/// answering fails the test instead of hanging it.
class Conn {
 public:
  explicit Conn(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) Close();
  }
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;
  ~Conn() { Close(); }
  /// Whether the connection was made and has not broken or been closed by
  /// the node (a read past its deadline leaves it open).
  bool Ok() const { return fd_ >= 0; }

  /// The next line, kClosed at end of stream, kTimeout past the deadline.
  std::string ReadLine(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    const auto until = Clock::now() + timeout;
    std::size_t nl;
    while ((nl = buf_.find('\n')) == std::string::npos) {
      if (fd_ < 0) return kClosed;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, Remaining(until)) != 1) return kTimeout;
      if (!Receive()) return kClosed;
    }
    std::string line = buf_.substr(0, nl);
    buf_.erase(0, nl + 1);
    return line;
  }

  /// Sends `line` and a newline; the reply line (or kClosed, kTimeout).
  std::string Ask(const std::string& line, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    return Send(line + "\n", timeout);
  }

  /// Sends `data` while reading: returns the first reply line, even one
  /// that comes before all of `data` was taken.
  std::string Send(const std::string& data, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    const auto until = Clock::now() + timeout;
    std::size_t sent = 0;
    while (buf_.find('\n') == std::string::npos) {
      if (fd_ < 0) return kClosed;
      pollfd p{fd_, static_cast<short>(POLLIN | (sent < data.size() ? POLLOUT : 0)), 0};
      if (::poll(&p, 1, Remaining(until)) != 1) return kTimeout;
      if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
        if (!Receive()) return kClosed;
      } else if (p.revents & POLLOUT) {
        const ssize_t n = ::send(fd_, data.data() + sent, data.size() - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) sent += static_cast<std::size_t>(n);
        else if (errno != EAGAIN && errno != EINTR) sent = data.size();  // reset: read what came
      }
    }
    return ReadLine(std::chrono::milliseconds(Remaining(until)));
  }

 private:
  bool Receive() {
    char chunk[65536];
    const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n <= 0) {
      Close();
      return false;
    }
    buf_.append(chunk, static_cast<std::size_t>(n));
    return true;
  }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int fd_ = -1;
  std::string buf_;
};

/// One request on a fresh connection to `port`; its reply line.
inline std::string Ask(int port, const std::string& line,
                       std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  Conn c(port);
  return c.Ask(line, timeout);
}

/// One admin request on a fresh connection authenticated with `secret`; its
/// reply line, or "AUTH -> <reply>" when the node refused the secret.
inline std::string AskAdmin(int port, const std::string& secret, const std::string& line,
                            std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  Conn c(port);
  const std::string auth = c.Ask("AUTH " + secret);
  if (auth != "OK") return "AUTH -> " + auth;
  return c.Ask(line, timeout);
}

/// Writes `secret` and a newline to `path`, a node's --admin-secret-file;
/// returns the path.
inline std::string WriteSecretFile(const std::filesystem::path& path, const std::string& secret) {
  std::ofstream(path) << secret << "\n";
  return path.string();
}

/// The whole of a text file (a node's stderr log); empty if there is none.
inline std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

/// Runs the node program with `args` (no wait for "ready"), its stderr
/// appended to `stderr_path` and, unless 0, RLIMIT_NOFILE at `nofile`;
/// returns its pid and the read end of its stdout.
inline std::pair<pid_t, int> Spawn(const std::vector<std::string>& args, const std::string& stderr_path,
                                   rlim_t nofile = 0) {
  std::vector<std::string> all{NodeProgram()};
  all.insert(all.end(), args.begin(), args.end());
  const auto started = SpawnProgram(std::move(all), stderr_path, nofile);
  BOOST_REQUIRE_MESSAGE(started.first >= 0, "cannot start " << NodeProgram());
  return started;
}

/// Waits up to 20 s for the "ready" line a started node writes on its
/// stdout (`out`, from Spawn, closed here). `who` names the node in the
/// failures, which quote its stderr log at `stderr_path`.
inline void AwaitReady(int out, const std::string& who, const std::string& stderr_path) {
  pollfd p{out, POLLIN, 0};
  std::string line;
  char ch;
  while (line.find('\n') == std::string::npos) {
    BOOST_REQUIRE_MESSAGE(::poll(&p, 1, 20000) == 1, who << " did not start: " << ReadText(stderr_path));
    BOOST_REQUIRE_MESSAGE(::read(out, &ch, 1) == 1, who << " exited at start: " << ReadText(stderr_path));
    line += ch;
  }
  ::close(out);
  BOOST_REQUIRE_MESSAGE(line.rfind("ready", 0) == 0, who << " said " << line);
}

/// Sends `sig` to a node process and reaps it; nothing for a pid <= 0.
inline void Stop(pid_t pid, int sig = SIGKILL) {
  if (pid <= 0) return;
  ::kill(pid, sig);
  ::waitpid(pid, nullptr, 0);
}

inline bool StartsWith(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

}  // namespace logsync::test
