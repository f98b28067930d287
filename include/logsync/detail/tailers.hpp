#pragma once
// Tailers: readers waiting for something a writer will publish (Log::WaitFor
// waits for the next record). Waking costs the writer one fence and a load
// while nobody waits.

#include <logsync/detail/wait.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

namespace logsync::detail {

class Tailers {
 public:
  /// Waits until `ready()` or `timeout` has passed; returns ready(). With
  /// `spin`, first polls for up to that long (yielding the CPU between
  /// polls; the time spun counts against the timeout) before it blocks.
  /// Time is kept as double seconds: a timeout as long as duration::max()
  /// must not overflow.
  template <class Ready>
  bool Wait(Ready ready, std::chrono::duration<double> timeout, std::chrono::nanoseconds spin) const {
    using Seconds = std::chrono::duration<double>;
    if (ready()) return true;
    const auto start = std::chrono::steady_clock::now();
    if (spin > std::chrono::nanoseconds::zero()) {
      const Seconds budget = std::min<Seconds>(spin, timeout);
      do {
        for (int i = 0; i < 16; ++i) {
          std::this_thread::yield();
          if (ready()) return true;
        }
      } while (std::chrono::steady_clock::now() - start < budget);
    }
    waiters_.fetch_add(1, std::memory_order_seq_cst);
    bool got;
    {
      std::unique_lock lock(mu_);
      got = WaitUntilReady(cv_, lock, timeout, ready, start);
    }
    waiters_.fetch_sub(1, std::memory_order_relaxed);
    return got;
  }

  /// Wakes the waiters, if any, after what their ready() looks at changed:
  /// the fence orders that change before the look at the waiter count, as a
  /// waiter's count comes before its look at ready().
  void Wake() const {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (waiters_.load(std::memory_order_relaxed) == 0) return;
    std::lock_guard lock(mu_);
    cv_.notify_all();
  }

 private:
  mutable std::atomic<std::uint64_t> waiters_{0};
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
};

}  // namespace logsync::detail
