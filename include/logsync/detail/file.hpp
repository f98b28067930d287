#pragma once
// The one seam between logsync and the operating system's file calls.
//
// Every read, write, sync and resize of a store, index or directory goes
// through detail::Sys(), a table of function pointers that defaults to the
// POSIX calls. Tests replace entries to count syncs or inject short writes,
// ENOSPC, EIO and failed fsyncs without touching the library's code paths.

#include <logsync/error.hpp>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <utility>
#include <vector>

namespace logsync::detail {

struct SysCalls {
  int (*open)(const char*, int, mode_t) = [](const char* p, int f, mode_t m) { return ::open(p, f, m); };
  ssize_t (*pwrite)(int, const void*, size_t, off_t) = ::pwrite;
  ssize_t (*pread)(int, void*, size_t, off_t) = ::pread;
  int (*fdatasync)(int) = ::fdatasync;
  int (*fsync)(int) = ::fsync;
  int (*ftruncate)(int, off_t) = ::ftruncate;
  int (*fallocate)(int, off_t, off_t) = ::posix_fallocate;  // returns the error, not -1
  int (*msync)(void*, size_t, int) = ::msync;
  int (*unlink)(const char*) = ::unlink;
};

/// The process-wide system call table (tests swap entries; see tests/support).
inline SysCalls& Sys() noexcept {
  static SysCalls calls;
  return calls;
}

/// An owned file descriptor with the few operations the log needs; every
/// failure throws IoError with errno and path.
class File {
 public:
  File() = default;
  File(std::filesystem::path path, int flags, mode_t mode = 0644) : path_(std::move(path)) {
    do fd_ = Sys().open(path_.c_str(), flags | O_CLOEXEC, mode);
    while (fd_ < 0 && errno == EINTR);
    if (fd_ < 0) throw IoError(path_, errno, "open");
  }
  File(File&& o) noexcept : path_(std::move(o.path_)), fd_(std::exchange(o.fd_, -1)) {}
  File& operator=(File&& o) noexcept {
    if (this != &o) {
      Close();
      path_ = std::move(o.path_);
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  ~File() { Close(); }

  int fd() const noexcept { return fd_; }
  bool IsOpen() const noexcept { return fd_ >= 0; }
  const std::filesystem::path& path() const noexcept { return path_; }

  void Close() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  /// Writes all of `data` at `pos` (loops over short writes).
  void WriteAt(std::span<const std::byte> data, std::uint64_t pos) const {
    while (!data.empty()) {
      ssize_t n = Sys().pwrite(fd_, data.data(), data.size(), static_cast<off_t>(pos));
      if (n < 0) {
        if (errno == EINTR) continue;
        throw IoError(path_, errno, "write");
      }
      if (n == 0) throw IoError(path_, EIO, "write (no progress)");
      data = data.subspan(static_cast<std::size_t>(n));
      pos += static_cast<std::uint64_t>(n);
    }
  }

  /// Reads up to `out.size()` bytes at `pos`; returns how many (short only at end of file).
  std::size_t ReadAt(std::span<std::byte> out, std::uint64_t pos) const {
    std::size_t done = 0;
    while (done < out.size()) {
      ssize_t n = Sys().pread(fd_, out.data() + done, out.size() - done, static_cast<off_t>(pos + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        throw IoError(path_, errno, "read");
      }
      if (n == 0) break;
      done += static_cast<std::size_t>(n);
    }
    return done;
  }

  std::uint64_t Size() const {
    struct stat st {};
    if (::fstat(fd_, &st) != 0) throw IoError(path_, errno, "stat");
    return static_cast<std::uint64_t>(st.st_size);
  }

  void Resize(std::uint64_t size) const {
    int rc;
    do rc = Sys().ftruncate(fd_, static_cast<off_t>(size));
    while (rc != 0 && errno == EINTR);
    if (rc != 0) throw IoError(path_, errno, "truncate");
  }

  /// Allocates `len` bytes from `pos` (growing the file), so that writes
  /// there, including through a mapping, cannot run out of space.
  void Allocate(std::uint64_t pos, std::uint64_t len) const {
    int rc;
    do rc = Sys().fallocate(fd_, static_cast<off_t>(pos), static_cast<off_t>(len));
    while (rc == EINTR);
    if (rc != 0) throw IoError(path_, rc, "allocate");
  }

  /// fdatasync. Never retried after a failure: the caller must treat the
  /// file's unsynced contents as lost.
  void DataSync() const {
    if (Sys().fdatasync(fd_) != 0) throw SyncError(path_, errno, "fdatasync");
  }

  void FullSync() const {
    if (Sys().fsync(fd_) != 0) throw SyncError(path_, errno, "fsync");
  }

 private:
  std::filesystem::path path_;
  int fd_ = -1;
};

/// fsync of a directory, so that file creations, renames and removals in it
/// survive a power loss.
inline void SyncDirectory(const std::filesystem::path& dir) {
  File d(dir, O_RDONLY | O_DIRECTORY);
  d.FullSync();
}

/// Removes a file; a file that is already gone is not an error.
inline void RemoveFile(const std::filesystem::path& path) {
  if (Sys().unlink(path.c_str()) != 0 && errno != ENOENT) throw IoError(path, errno, "unlink");
}

/// `dir` without a trailing separator, absolute.
inline std::filesystem::path CleanDir(const std::filesystem::path& dir) {
  auto p = std::filesystem::absolute(dir).lexically_normal();
  if (!p.has_filename()) p = p.parent_path();
  return p;
}

/// Creates `dir` and its missing parents, syncing each new entry; returns
/// whether `dir` itself was created.
inline bool CreateDirSynced(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> created;
  std::error_code ec;
  for (auto p = dir; !p.empty() && !std::filesystem::exists(p, ec); p = p.parent_path()) created.push_back(p);
  std::filesystem::create_directories(dir, ec);
  if (ec) throw IoError(dir, ec.value(), "create directory");
  for (const auto& p : created) SyncDirectory(p.parent_path());
  return !created.empty() && created.front() == dir;
}

}  // namespace logsync::detail
