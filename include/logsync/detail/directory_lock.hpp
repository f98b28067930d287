#pragma once
// The lock that keeps one Log per directory, across processes.
//
// The directory itself is locked (flock on a descriptor of it), so the lock
// holds however its entries change: a `LOCK` file that a cleanup script or
// an operator unlinks cannot let a second writer in. The `LOCK` file is
// locked too, for the processes of earlier versions that lock only it.

#include <logsync/detail/file.hpp>
#include <logsync/format.hpp>
#include <logsync/error.hpp>

#include <fcntl.h>

#include <filesystem>

namespace logsync::detail {

class DirectoryLock {
 public:
  DirectoryLock() = default;

  /// Locks `dir` (which must exist) or throws StateError if another open
  /// file holds the lock (another Log, in this process or another), IoError
  /// if a call fails (a `LOCK` that is a symbolic link among them).
  explicit DirectoryLock(const std::filesystem::path& dir) : dir_(dir, O_RDONLY | O_DIRECTORY) {
    if (!dir_.TryLockExclusive()) Busy(dir);
    lock_ = File(dir / kLockFileName, O_RDWR | O_CREAT | O_NOFOLLOW);
    if (!lock_.TryLockExclusive()) Busy(dir);
  }

  bool Held() const noexcept { return dir_.IsOpen(); }

  /// The file descriptors a held lock keeps: the directory's and LOCK's.
  static constexpr unsigned kFiles = 2;

  void Release() noexcept {
    lock_.Close();
    dir_.Close();
  }

 private:
  [[noreturn]] static void Busy(const std::filesystem::path& dir) {
    throw StateError("logsync: " + dir.string() + " is already open in another Log");
  }

  File dir_, lock_;
};

}  // namespace logsync::detail
