#pragma once
/// Prefaulter: maps the pages an active store allocated ahead of its
/// writer, on a thread of its own, so that the appender's copies into the
/// mapping take no page fault (the kernel's fault path, the zeroing of each
/// new page, was about a third of an append's time). A hint, and only for
/// logs that do not sync as they go (sync::None): populating makes the
/// pages dirty, so the next sync writes them, zeros included.
///
/// One job at a time: a job submitted while another waits replaces it (the
/// one replaced is skipped; its pages fault as usual). The thread starts
/// with the first job and stops in Stop.

#include <logsync/segment.hpp>

#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

namespace logsync::detail {

class Prefaulter {
 public:
  Prefaulter() = default;
  Prefaulter(const Prefaulter&) = delete;
  Prefaulter& operator=(const Prefaulter&) = delete;
  ~Prefaulter() { Stop(); }

  /// Populates `ahead` of `seg`'s store, soon. If no thread can be
  /// started, nothing happens (the hint is dropped).
  void Submit(std::shared_ptr<const Segment> seg, Store::Ahead ahead) noexcept {
    std::lock_guard lock(mu_);
    if (!thread_.joinable()) {
      try {
        stopping_ = false;
        thread_ = std::thread([this] { Run(); });
      } catch (...) {
        return;
      }
    }
    job_.emplace(std::move(seg), ahead);
    cv_.notify_one();
  }

  /// Drops a waiting job and stops the thread once its job is done.
  void Stop() noexcept {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
      job_.reset();
      cv_.notify_one();
    }
    if (thread_.joinable()) thread_.join();
  }

 private:
  void Run() {
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return job_ || stopping_; });
      if (stopping_) return;
      auto [seg, ahead] = std::move(*job_);
      job_.reset();
      lock.unlock();
      seg->PopulateAhead(ahead);
      seg.reset();
      lock.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<std::pair<std::shared_ptr<const Segment>, Store::Ahead>> job_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace logsync::detail
