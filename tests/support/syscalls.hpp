#pragma once
// Test control over logsync's system-call seam (detail::Sys()): count
// syncs, fail the n-th write or sync with a chosen errno. "Writes" are
// pwrite and fallocate (appends copy into a mapping after allocating the
// file that far: the allocation is where ENOSPC and EIO surface). The other
// calls of the seam (open, close, fstat, flock, link, rename, mkdir, unlink,
// mmap)
// are counted per Call and can be failed the same way (FailCall). Install
// one SyscallHooks per test; it restores the real calls when it goes away.

#include <logsync/detail/file.hpp>

#include <array>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>

namespace logsync::test {

class SyscallHooks {
 public:
  /// The calls FailCall can fail.
  enum Call : std::size_t { kOpen, kClose, kFstat, kFlock, kLink, kRename, kMkdir, kUnlink, kMmap, kCalls };
  static constexpr std::array<const char*, kCalls> kCallNames{"open", "close", "fstat",  "flock", "link",
                                                              "rename", "mkdir", "unlink", "mmap"};

  SyscallHooks() : saved_(detail::Sys()) {
    Current() = this;
    auto& s = detail::Sys();
    s.open = [](const char* p, int f, mode_t m) -> int {
      auto* h = Current();
      return h->FailCall(kOpen) ? -1 : h->saved_.open(p, f, m);
    };
    s.close = [](int fd) -> int {  // the descriptor is closed either way, as on Linux
      auto* h = Current();
      const int rc = h->saved_.close(fd);
      return h->FailCall(kClose) ? -1 : rc;
    };
    s.fstat = [](int fd, struct stat* st) -> int {
      auto* h = Current();
      return h->FailCall(kFstat) ? -1 : h->saved_.fstat(fd, st);
    };
    s.flock = [](int fd, int op) -> int {
      auto* h = Current();
      return h->FailCall(kFlock) ? -1 : h->saved_.flock(fd, op);
    };
    s.link = [](const char* a, const char* b) -> int {
      auto* h = Current();
      return h->FailCall(kLink) ? -1 : h->saved_.link(a, b);
    };
    s.rename = [](const char* a, const char* b) -> int {
      auto* h = Current();
      return h->FailCall(kRename) ? -1 : h->saved_.rename(a, b);
    };
    s.mkdir = [](const char* p, mode_t m) -> int {
      auto* h = Current();
      return h->FailCall(kMkdir) ? -1 : h->saved_.mkdir(p, m);
    };
    s.mmap = [](void* a, size_t n, int prot, int flags, int fd, off_t o) -> void* {
      auto* h = Current();
      return h->FailCall(kMmap) ? MAP_FAILED : h->saved_.mmap(a, n, prot, flags, fd, o);
    };
    s.unlink = [](const char* p) -> int {
      auto* h = Current();
      return h->FailCall(kUnlink) ? -1 : h->saved_.unlink(p);
    };
    s.pwrite = [](int fd, const void* b, size_t n, off_t o) -> ssize_t {
      auto* h = Current();
      if (h->Fail(h->writes, h->fail_write_at, h->write_errno)) return -1;
      const ssize_t rc = h->saved_.pwrite(fd, b, n, o);
      h->Notify();
      return rc;
    };
    s.fallocate = [](int fd, off_t o, off_t n) -> int {  // a write too: it is where space runs out
      auto* h = Current();
      if (h->Fail(h->writes, h->fail_write_at, h->write_errno)) return h->write_errno.load();
      const int rc = h->saved_.fallocate(fd, o, n);
      h->Notify();
      return rc;
    };
    s.pread = [](int fd, void* b, size_t n, off_t o) -> ssize_t {
      auto* h = Current();
      const ssize_t rc = h->saved_.pread(fd, b, n, o);
      if (rc > 0) h->read_bytes += static_cast<std::uint64_t>(rc);
      return rc;
    };
    s.fdatasync = [](int fd) -> int {
      auto* h = Current();
      if (h->Fail(h->datasyncs, h->fail_sync_at, h->sync_errno)) return -1;
      if (h->before_datasync) h->before_datasync(h->datasyncs.load());
      return h->saved_.fdatasync(fd);
    };
    s.fsync = [](int fd) -> int {
      auto* h = Current();
      if (h->Fail(h->fsyncs, h->fail_fsync_at, h->sync_errno)) return -1;
      return h->saved_.fsync(fd);
    };
    s.msync = [](void* a, size_t n, int f) -> int {
      auto* h = Current();
      if (h->Fail(h->msyncs, h->fail_msync_at, h->sync_errno)) return -1;
      return h->saved_.msync(a, n, f);
    };
  }
  SyscallHooks(const SyscallHooks&) = delete;
  SyscallHooks& operator=(const SyscallHooks&) = delete;
  ~SyscallHooks() {
    detail::Sys() = saved_;
    Current() = nullptr;
  }

  // Calls made so far.
  std::atomic<std::uint64_t> writes{0}, datasyncs{0}, fsyncs{0}, msyncs{0};
  // Bytes pread returned.
  std::atomic<std::uint64_t> read_bytes{0};
  // 1-based number of the call to fail (0: never); every later call fails
  // too while `sticky` is set.
  std::atomic<std::uint64_t> fail_write_at{0}, fail_sync_at{0}, fail_fsync_at{0}, fail_msync_at{0};
  std::atomic<bool> sticky{false};
  std::atomic<int> write_errno{ENOSPC}, sync_errno{EIO};
  // Runs inside every fdatasync (with its 1-based number) before the real call.
  std::function<void(std::uint64_t)> before_datasync;

  /// Fails the `at`-th (1-based) later call of `c` with `err` (every later
  /// one too while `sticky`); at == 0 stops failing it.
  void FailCall(Call c, std::uint64_t at, int err) {
    call_errno_[c] = err;
    calls_[c] = 0;
    fail_call_at_[c] = at;
  }
  /// Calls of `c` since the last FailCall of it.
  std::uint64_t Calls(Call c) const { return calls_[c].load(); }

  /// Waits until at least `n` fdatasyncs were called (failed ones too), or
  /// `timeout` passed.
  template <class Duration>
  bool WaitForDataSyncs(std::uint64_t n, Duration timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return datasyncs.load() >= n; });
  }

  /// Waits until at least `n` pwrites completed, or `timeout` passed.
  template <class Duration>
  bool WaitForWrites(std::uint64_t n, Duration timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return completed_writes_ >= n; });
  }

 private:
  static SyscallHooks*& Current() {
    static SyscallHooks* current = nullptr;
    return current;
  }
  bool Fail(std::atomic<std::uint64_t>& calls, std::atomic<std::uint64_t>& at, std::atomic<int>& err) {
    const std::uint64_t n = ++calls;
    {
      std::lock_guard lock(mu_);
      cv_.notify_all();
    }
    const std::uint64_t a = at.load();
    if (a != 0 && (n == a || (sticky.load() && n > a))) {
      errno = err.load();
      return true;
    }
    return false;
  }
  bool FailCall(Call c) { return Fail(calls_[c], fail_call_at_[c], call_errno_[c]); }
  void Notify() {  // a write completed
    std::lock_guard lock(mu_);
    ++completed_writes_;
    cv_.notify_all();
  }

  std::array<std::atomic<std::uint64_t>, kCalls> calls_{}, fail_call_at_{};
  std::array<std::atomic<int>, kCalls> call_errno_{};
  detail::SysCalls saved_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::uint64_t completed_writes_ = 0;  // guarded by mu_
};

}  // namespace logsync::test
