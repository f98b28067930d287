#pragma once
/// Sealer: seals rolled segments off the append path.
///
/// A roll hands the full segment here and the appender goes on in the new
/// one at once; a background thread (started at the first roll, stopped by
/// Stop) seals each segment in roll order (Segment::Seal: fsync of its store,
/// trim of both files) and then syncs the directory, which makes the new
/// segment's files durable. Until then records of newer segments may reach
/// the disk before the end of the older one, so:
///  - every sync of the log first waits for the seals before it (Finish),
///    so that no durable claim is ever made about a segment while one
///    before it is still unsealed;
///  - the segment set's recovery knows that a segment whose seal a crash
///    interrupted is followed only by segments that never synced
///    (segment_set.hpp, Open).
/// A failed seal is kept and reported by every later Finish and
/// ThrowIfFailed as SyncError (the log then refuses writes until reopened);
/// the seals queued after it are not attempted.

#include <logsync/error.hpp>
#include <logsync/detail/file.hpp>
#include <logsync/segment.hpp>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <filesystem>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>

namespace logsync::detail {

class Sealer {
 public:
  explicit Sealer(std::filesystem::path dir) : dir_(std::move(dir)) {}
  Sealer(const Sealer&) = delete;
  Sealer& operator=(const Sealer&) = delete;
  ~Sealer() { Stop(); }

  /// Queues `seg` (no longer the active segment) to be sealed. Throws
  /// IoError if the thread cannot be started (nothing queued).
  void Submit(std::shared_ptr<Segment> seg) {
    std::unique_lock lock(mu_);
    if (!thread_.joinable()) {
      stopping_ = false;
      try {
        thread_ = std::thread([this] { Run(); });
      } catch (const std::system_error& e) {
        throw IoError(dir_, e.code().value(), "start the thread that seals rolled segments in");
      }
    }
    queue_.push_back(std::move(seg));
    ++submitted_;
    work_.notify_one();
  }

  /// Waits until every segment submitted before the call is sealed and the
  /// directory synced. Throws SyncError if a seal failed (now or before).
  void Finish() {
    std::unique_lock lock(mu_);
    const std::uint64_t target = submitted_;
    done_cv_.wait(lock, [&] { return finished_ >= target || failure_; });
    if (failure_) std::rethrow_exception(failure_);
  }

  /// Throws SyncError if a seal failed; one relaxed load otherwise.
  void ThrowIfFailed() const {
    if (failed_.load(std::memory_order_acquire)) {
      std::lock_guard lock(mu_);
      std::rethrow_exception(failure_);
    }
  }

  bool Failed() const noexcept { return failed_.load(std::memory_order_acquire); }

  /// Forgets a failure, once stopped (the log reopens).
  void Restart() noexcept {
    Stop();
    std::lock_guard lock(mu_);
    failure_ = nullptr;
    failed_.store(false, std::memory_order_release);
    queue_.clear();
    submitted_ = finished_ = 0;
  }

  /// Finishes what is queued (stopping at a failure) and stops the thread.
  /// Returns whether every seal succeeded. The failure, if any, stays.
  bool Stop() noexcept {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
      work_.notify_one();
    }
    if (thread_.joinable()) thread_.join();
    return !Failed();
  }

 private:
  void Run() {
    std::unique_lock lock(mu_);
    for (;;) {
      work_.wait(lock, [&] { return !queue_.empty() || stopping_; });
      if (queue_.empty() || failure_) {
        if (stopping_) return;
        if (failure_) {
          queue_.clear();  // never sealed: the next open recovers them
          continue;
        }
      }
      std::shared_ptr<Segment> seg = queue_.front();
      lock.unlock();
      std::exception_ptr failed;
      try {
        seg->Seal();
        SyncDirectory(dir_);  // the newer segments' files
      } catch (const SyncError&) {
        failed = std::current_exception();
      } catch (const IoError& e) {  // a trim: the segment is not sealed, so nothing after it syncs
        failed = std::make_exception_ptr(SyncError(e.path(), e.error(), "seal of a rolled segment"));
      } catch (...) {
        failed = std::make_exception_ptr(SyncError(seg->StoreFile(), EIO, "seal of a rolled segment"));
      }
      seg.reset();
      lock.lock();
      queue_.pop_front();
      if (failed) {
        failure_ = failed;
        failed_.store(true, std::memory_order_release);
      } else {
        ++finished_;
      }
      done_cv_.notify_all();
    }
  }

  const std::filesystem::path dir_;
  mutable std::mutex mu_;
  std::condition_variable work_, done_cv_;
  std::deque<std::shared_ptr<Segment>> queue_;
  std::uint64_t submitted_ = 0, finished_ = 0;
  std::exception_ptr failure_;
  std::atomic<bool> failed_{false};
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace logsync::detail
