#pragma once
// Shared pieces of the benchmarks: a scratch directory on the filesystem the
// log uses (TMPDIR), the frames a raw-write ceiling writes, and free ports
// for the replication benchmarks.

#include <logsync/logsync.hpp>

#include "../tests/support/frames.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

namespace logsync::bench {

class ScratchDir {
 public:
  explicit ScratchDir(const std::string& name)
      : path_(std::filesystem::temp_directory_path() / ("logsync-bench-" + name + "-" + std::to_string(::getpid()))) {
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

/// The frame logsync writes for a record of `payload` at `offset`: what the
/// raw ceilings write, byte for byte (the tests' frame builder).
using test::Frame;

inline int OpenScratchFile(const std::filesystem::path& p) {
  int fd = ::open(p.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw IoError(p, errno, "open");
  return fd;
}

inline void WriteAll(int fd, const std::byte* p, std::size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w <= 0) throw IoError("benchmark file", errno, "write");
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

/// The buffered-write() ceiling: frames collected in 1 MiB of process
/// memory, written with one write() each time it fills (and by Flush).
class BufferedWriter {
 public:
  explicit BufferedWriter(int fd) : fd_(fd), buf_(1 << 20) {}
  void Add(const std::vector<std::byte>& frame) {
    if (used_ + frame.size() > buf_.size()) Flush();
    std::memcpy(buf_.data() + used_, frame.data(), frame.size());
    used_ += frame.size();
  }
  void Flush() {
    WriteAll(fd_, buf_.data(), used_);
    used_ = 0;
  }

 private:
  int fd_;
  std::vector<std::byte> buf_;
  std::size_t used_ = 0;
};

/// A TCP port on 127.0.0.1 that was free a moment ago.
inline int FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

}  // namespace logsync::bench
