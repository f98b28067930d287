#pragma once
// GroupCommit: who syncs, who waits, and what is durable.
//
// Appenders that must be durable ask SyncThrough(target): one of them (the
// leader) runs the sync callable, the others wait for it and share it, so N
// concurrent appenders under sync::Always cost about one fdatasync per
// round instead of N. It also keeps the poisoned state: once a sync fails
// the page cache may have dropped the unsynced data, so every later write
// and sync is refused (with the first failure's reason) until the log is
// reopened. And it runs the background syncer of periodic policies.
//
// Generations: each Open of the log starts one; Close and Reset end it
// (EndGeneration). A waiter of an ended generation gets StateError (its
// records may or may not have become durable), and what a sync of an ended
// generation achieved counts for no later one. A sync that fails after its
// generation ended still poisons, until the next Restart: a Close must not
// sync the files again (seal them) after a failed sync, and MaySeal says
// whether it may.
//
// GroupCommit knows nothing of the log: it is given a callable that syncs
// the active segment and returns the offset below which every record is
// durable (read before the sync began).
//
// It counts the syncs it ran and keeps the durations of the recent ones
// (detail/latency_ring.hpp), recorded by the leader under its mutex.

#include <logsync/detail/latency_ring.hpp>
#include <logsync/error.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <stop_token>
#include <string>
#include <thread>
#include <utility>

namespace logsync::detail {

class GroupCommit {
 public:
  /// `sync` makes the log durable and returns the offset below which it
  /// did; `name` goes into error messages ("logsync: log <name> ...").
  GroupCommit(std::string name, std::function<std::uint64_t()> sync)
      : name_(std::move(name)), sync_(std::move(sync)) {}
  GroupCommit(const GroupCommit&) = delete;
  GroupCommit& operator=(const GroupCommit&) = delete;
  ~GroupCommit() { StopSyncer(); }

  /// The current generation. Lock-free: it changes only in EndGeneration,
  /// which the log calls with its append lock held, as it reads this.
  std::uint64_t Generation() const noexcept { return generation_.load(std::memory_order_acquire); }

  /// Starts a generation from scratch (at open): nothing synced yet (what a
  /// previous process left may still be in the page cache only), not
  /// poisoned.
  void Restart() {
    std::lock_guard lock(mu_);
    ++epoch_;  // a sync of before this that fails poisons nothing now
    synced_next_ = 0;
    poisoned_.store(false, std::memory_order_release);
    poison_reason_.clear();
  }

  /// Ends the generation: its waiters give up with StateError.
  void EndGeneration() {
    std::lock_guard lock(mu_);
    generation_.fetch_add(1, std::memory_order_acq_rel);
    cv_.notify_all();
  }

  /// Whether the files may be synced once more, by sealing them, after
  /// EndGeneration: not when a sync failed, nor while one is in flight (it
  /// may yet fail, and a sync after a failed one can report success for
  /// data the failure lost). No sync of the ended generation can start.
  bool MaySeal() const {
    std::lock_guard lock(mu_);
    return !poisoned_ && !syncing_;
  }

  /// Returns once every offset below `target` is durable (or throws: see
  /// the file comment). `generation` is the one `target` belongs to.
  void SyncThrough(std::uint64_t target, std::uint64_t generation) { Run(target, generation, false); }

  /// As SyncThrough, but runs a sync of its own (once one in flight has
  /// finished) even if `target` is already durable: what an explicit Sync()
  /// asks for.
  void SyncNow(std::uint64_t target, std::uint64_t generation) { Run(target, generation, true); }

  /// Whether records below `next` are not known durable.
  bool Behind(std::uint64_t next) const {
    std::lock_guard lock(mu_);
    return synced_next_ < next;
  }

  bool Poisoned() const noexcept { return poisoned_.load(std::memory_order_acquire); }

  /// Throws StateError, with the reason, if a sync has failed.
  void ThrowIfPoisoned() const {
    if (!Poisoned()) return;
    std::lock_guard lock(mu_);
    ThrowPoisoned();
  }

  /// Refuses writes from now on; the first reason is the one reported.
  void Poison(const std::string& why) {
    std::lock_guard lock(mu_);
    if (!poisoned_.exchange(true)) poison_reason_ = why;
  }

  /// Runs `f`; a SyncError from it poisons, and is rethrown.
  template <class F>
  decltype(auto) PoisonOnSyncError(F&& f) {
    try {
      return std::forward<F>(f)();
    } catch (const SyncError& e) {
      Poison(e.what());
      throw;
    }
  }

  /// Starts a thread that, every `period`, syncs whatever is unsynced below
  /// `next()`, until StopSyncer or a failed sync (appends then report it).
  void StartSyncer(std::chrono::milliseconds period, std::function<std::uint64_t()> next) {
    syncer_ = std::jthread([this, period, next = std::move(next)](std::stop_token stop) {
      const std::uint64_t generation = Generation();  // StopSyncer comes before EndGeneration
      std::mutex m;
      std::condition_variable_any cv;
      while (!stop.stop_requested()) {
        {
          std::unique_lock lock(m);
          cv.wait_for(lock, stop, period, [] { return false; });
        }
        if (stop.stop_requested()) return;
        if (!Behind(next())) continue;
        try {
          SyncThrough(next(), generation);
        } catch (...) {
          return;  // poisoned: appends now report it
        }
      }
    });
  }

  /// Syncs run so far (across Restarts) and the latency of the recent ones.
  struct SyncStats {
    std::uint64_t syncs = 0;
    LatencyRing::Percentiles latency;
  };

  /// See SyncStats. Copies the ring under the lock and selects outside it.
  SyncStats Stats() const {
    LatencyRing ring;
    std::uint64_t syncs;
    {
      std::lock_guard lock(mu_);
      ring = sync_latency_;
      syncs = syncs_;
    }
    return {syncs, ring.Compute()};
  }

  /// Stops the syncer thread, if any, and waits for it.
  void StopSyncer() {
    if (!syncer_.joinable()) return;
    syncer_.request_stop();
    syncer_.join();
  }

 private:
  // Appenders the last sync released may be runnable but not running yet
  // (more threads than cores): the leader gives them the CPU for a moment,
  // so that their records join this sync rather than wait out the next.
  // With nothing else runnable a yield returns at once.
  static constexpr int kLeaderYields = 8;

  [[noreturn]] void ThrowPoisoned() const {  // mu_ held
    throw StateError("logsync: log " + name_ + " refuses writes after a failed sync (" + poison_reason_ +
                     "); reopen it to recover");
  }

  void Run(std::uint64_t target, std::uint64_t generation, bool force) {
    std::unique_lock lock(mu_);
    for (;;) {
      if (Generation() != generation)
        throw StateError("logsync: log " + name_ + " was closed or reset before the records were synced");
      if (synced_next_ >= target && !force) return;
      if (poisoned_) ThrowPoisoned();
      if (syncing_) {
        cv_.wait(lock);
        continue;
      }
      syncing_ = true;
      force = false;
      const std::uint64_t epoch = epoch_;
      lock.unlock();
      for (int i = 0; i < kLeaderYields; ++i) std::this_thread::yield();
      std::uint64_t upto;
      const auto began = std::chrono::steady_clock::now();
      try {
        upto = sync_();
      } catch (const SyncError& e) {
        lock.lock();
        syncing_ = false;
        // Even once its generation has ended (see MaySeal), until a Restart.
        if (epoch_ == epoch && !poisoned_.exchange(true)) poison_reason_ = e.what();
        cv_.notify_all();
        throw;
      } catch (...) {
        lock.lock();
        syncing_ = false;
        cv_.notify_all();
        throw;
      }
      const auto took = std::chrono::steady_clock::now() - began;
      lock.lock();
      syncing_ = false;
      ++syncs_;
      sync_latency_.Add(std::chrono::duration_cast<std::chrono::nanoseconds>(took));
      if (Generation() == generation) synced_next_ = std::max(synced_next_, upto);
      cv_.notify_all();
    }
  }

  const std::string name_;
  const std::function<std::uint64_t()> sync_;

  mutable std::mutex mu_;  // guards what follows, but for the atomics' writes elsewhere noted
  std::condition_variable cv_;
  std::uint64_t synced_next_ = 0;  // every offset below it is durable
  std::atomic<std::uint64_t> generation_{0};  // written under mu_
  std::uint64_t epoch_ = 0;  // Restarts so far
  bool syncing_ = false;  // a leader is in sync_()
  std::atomic<bool> poisoned_{false};  // written under mu_
  std::string poison_reason_;
  std::uint64_t syncs_ = 0;  // syncs that succeeded
  LatencyRing sync_latency_;  // their durations, the recent ones

  std::jthread syncer_;
};

}  // namespace logsync::detail
