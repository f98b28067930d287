#pragma once
// The one seam between logsync and the operating system's file calls.
//
// Every system call logsync makes on a file or directory (open, close,
// fstat, read, write, allocate, resize, sync, flock, link, rename, unlink,
// mkdir, mmap, munmap) goes through detail::Sys(), a table of function
// pointers that defaults to the POSIX calls. Tests replace entries to count
// syncs or inject short writes, ENOSPC, EIO, EMFILE and failed fsyncs
// anywhere without touching the library's code paths.

#include <logsync/error.hpp>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
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
  int (*close)(int) = ::close;
  int (*fstat)(int, struct stat*) = ::fstat;
  int (*flock)(int, int) = ::flock;
  int (*link)(const char*, const char*) = ::link;
  int (*rename)(const char*, const char*) = ::rename;
  int (*mkdir)(const char*, mode_t) = ::mkdir;
  void* (*mmap)(void*, size_t, int, int, int, off_t) = ::mmap;
  int (*munmap)(void*, size_t) = ::munmap;
};

/// How a file is opened and mapped.
enum class Access { kReadOnly, kReadWrite };

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
    if (fd_ >= 0) Sys().close(fd_);  // Linux frees the descriptor even when close reports an error
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

  std::uint64_t Size() const { return static_cast<std::uint64_t>(Stat().st_size); }

  /// fstat of the open file.
  struct stat Stat() const {
    struct stat st {};
    if (Sys().fstat(fd_, &st) != 0) throw IoError(path_, errno, "stat");
    return st;
  }

  /// flock(LOCK_EX | LOCK_NB): whether the lock was taken (false: another
  /// open file holds it). Other failures throw IoError.
  bool TryLockExclusive() const {
    int rc;
    do rc = Sys().flock(fd_, LOCK_EX | LOCK_NB);
    while (rc != 0 && errno == EINTR);
    if (rc == 0) return true;
    if (errno == EWOULDBLOCK) return false;
    throw IoError(path_, errno, "flock");
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

  /// Allocates the file from `allocated` (what is allocated now) through
  /// `target`, or, where that room is not there (a nearly full disk, a file
  /// size limit), through `end` (<= target) only; returns the new end of
  /// the allocation. Throws IoError when not even `end` fits.
  std::uint64_t AllocateAhead(std::uint64_t allocated, std::uint64_t end, std::uint64_t target) const {
    try {
      Allocate(allocated, target - allocated);
      return target;
    } catch (const IoError&) {
      if (target == end) throw;
      Allocate(allocated, end - allocated);
      return end;
    }
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

/// `dir` without a trailing separator, absolute. An empty path is refused
/// (IoError, ENOENT) rather than taken as the working directory.
inline std::filesystem::path CleanDir(const std::filesystem::path& dir) {
  if (dir.empty()) throw IoError(dir, ENOENT, "open log directory (the path is empty)");
  std::error_code ec;
  auto p = std::filesystem::absolute(dir, ec).lexically_normal();
  if (ec) throw IoError(dir, ec.value(), "resolve log directory");
  if (!p.has_filename()) p = p.parent_path();
  return p;
}

/// Renames `from` to `to` (replacing it); throws IoError.
inline void Rename(const std::filesystem::path& from, const std::filesystem::path& to) {
  if (Sys().rename(from.c_str(), to.c_str()) != 0) throw IoError(to, errno, "rename " + from.string() + " to");
}

/// Swaps the directories `a` and `b` (both exist) at once, then syncs their
/// parent (one directory for both). Where the file system cannot exchange,
/// three renames: `b` becomes `a` last, after `a` took its place.
inline void ExchangeDirs(const std::filesystem::path& a, const std::filesystem::path& b) {
  if (::renameat2(AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), RENAME_EXCHANGE) != 0) {
    if (errno != EINVAL && errno != ENOSYS) throw IoError(b, errno, "exchange " + a.string() + " with");
    const std::filesystem::path old = a.string() + ".old";
    Rename(b, old);
    Rename(a, b);
    Rename(old, a);
  }
  SyncDirectory(b.parent_path());
}

/// Creates `dir` and its missing parents, syncing each new entry; returns
/// whether `dir` itself was created. A path part that is not a directory
/// (a file, a dangling symbolic link) is reported as what it is.
inline bool CreateDirSynced(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  std::vector<fs::path> missing;  // innermost first
  std::error_code ec;
  fs::path p = dir;
  for (; !p.empty(); p = p.parent_path()) {
    const auto st = fs::status(p, ec);  // follows symbolic links
    if (fs::exists(st)) {
      if (!fs::is_directory(st)) throw IoError(p, ENOTDIR, "create directory (a path part is not a directory)");
      break;
    }
    if (fs::is_symlink(fs::symlink_status(p, ec)))
      throw IoError(p, ENOENT, "create directory (a symbolic link to a missing target)");
    missing.push_back(p);
    if (p == p.parent_path()) break;
  }
  for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
    if (Sys().mkdir(it->c_str(), 0755) != 0 && errno != EEXIST) throw IoError(*it, errno, "create directory");
    SyncDirectory(it->parent_path());
  }
  return !missing.empty() && missing.front() == dir;
}

}  // namespace logsync::detail
