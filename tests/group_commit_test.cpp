#define BOOST_TEST_MODULE group_commit_test
#include <boost/test/unit_test.hpp>

#include <logsync/detail/group_commit.hpp>
#include <logsync/logsync.hpp>

#include "support/log_helpers.hpp"
#include "support/syscalls.hpp"
#include "support/temp_dir.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using logsync::Config;
using logsync::Record;
using logsync::StateError;
using logsync::SyncError;
using logsync::detail::GroupCommit;
using logsync::test::LogOf;
using logsync::test::Rec;
using logsync::test::SyscallHooks;
using logsync::test::TempDir;

namespace {

// How long any wait of these tests may take before it counts as a deadlock.
constexpr std::chrono::seconds kBound{20};

bool Contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// Polls `ready` until it holds or kBound passes; returns whether it held.
template <class Ready>
bool Eventually(Ready ready) {
  const auto deadline = std::chrono::steady_clock::now() + kBound;
  while (!ready()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// The sync callable of these tests: it counts its calls, returns the
// durable offset set when the call began (as the log's reads its target
// first), can be held at its start until released, and can fail once with
// a SyncError. It also serves as the syncer's `next` (Published), counting
// those reads, and notes when the syncer's copy of `next` is destroyed,
// which is when the syncer thread has ended.
class FakeSync {
 public:
  static constexpr const char* kPath = "/fake/00000000000000000000.store";

  std::uint64_t Sync() {
    std::unique_lock lock(mu_);
    const std::uint64_t upto = durable_;
    ++calls_;
    cv_.notify_all();
    // Longer than any wait of the test, so that the test's wait fails first.
    if (!cv_.wait_for(lock, 2 * kBound, [&] { return !held_; })) held_too_long_ = true;
    if (fail_next_) {
      fail_next_ = false;
      throw SyncError(kPath, EIO, "fdatasync");
    }
    return upto;
  }

  /// What the syncer's `next` returns: the durable offset to be.
  std::uint64_t Published() {
    std::lock_guard lock(mu_);
    ++published_reads_;
    cv_.notify_all();
    return durable_;
  }

  /// A `next` for StartSyncer that reads Published() and, once the last
  /// copy of it is gone, marks the syncer gone.
  std::function<std::uint64_t()> SyncerNext() {
    std::shared_ptr<void> alive(nullptr, [this](void*) {
      std::lock_guard lock(mu_);
      syncer_gone_ = true;
      cv_.notify_all();
    });
    return [this, alive = std::move(alive)] { return Published(); };
  }

  /// The message of the SyncError a failing call throws.
  static std::string FailureReason() { return SyncError(kPath, EIO, "fdatasync").what(); }

  void SetDurable(std::uint64_t upto) { Locked([&] { durable_ = upto; }); }
  void Hold() { Locked([&] { held_ = true; }); }
  void Release() { Locked([&] { held_ = false; }); }
  void FailNext() { Locked([&] { fail_next_ = true; }); }

  std::uint64_t Calls() const { return Read(calls_); }
  std::uint64_t PublishedReads() const { return Read(published_reads_); }
  bool HeldTooLong() const { return Read(held_too_long_); }

  bool WaitForCalls(std::uint64_t n) { return WaitUntil([&] { return calls_ >= n; }); }
  bool WaitForPublishedReads(std::uint64_t n) { return WaitUntil([&] { return published_reads_ >= n; }); }
  bool WaitForSyncerGone() { return WaitUntil([&] { return syncer_gone_; }); }

 private:
  template <class F>
  void Locked(F f) {
    std::lock_guard lock(mu_);
    f();
    cv_.notify_all();
  }
  template <class T>
  T Read(const T& field) const {
    std::lock_guard lock(mu_);
    return field;
  }
  template <class P>
  bool WaitUntil(P pred) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, kBound, pred);
  }

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::uint64_t durable_ = 0, calls_ = 0, published_reads_ = 0;
  bool held_ = false, fail_next_ = false, held_too_long_ = false, syncer_gone_ = false;
};

// How a thread's call ended.
struct Outcome {
  enum Kind { kRunning, kReturned, kSyncError, kStateError, kOther } kind = kRunning;
  std::string what;
};

// Threads that each run one call and record how it ended. The test waits
// for them with a bound; a thread still running when they are destroyed
// (a deadlock) ends the process with a message rather than hang it.
class Workers {
 public:
  Workers() = default;
  Workers(const Workers&) = delete;
  Workers& operator=(const Workers&) = delete;
  ~Workers() {
    if (!WaitAll(4 * kBound)) {
      std::fputs("group_commit_test: a thread never returned (deadlock)\n", stderr);
      std::abort();
    }
    for (auto& t : threads_) t.join();
  }

  /// Starts a thread that runs `call`; returns its number.
  std::size_t Start(std::function<void()> call) {
    slots_.push_back(std::make_unique<Outcome>());
    Outcome* slot = slots_.back().get();
    threads_.emplace_back([this, slot, call = std::move(call)] {
      Set([&] { ++arrived_; });
      Outcome result;
      try {
        call();
        result.kind = Outcome::kReturned;
      } catch (const SyncError& e) {
        result = {Outcome::kSyncError, e.what()};
      } catch (const StateError& e) {
        result = {Outcome::kStateError, e.what()};
      } catch (const std::exception& e) {
        result = {Outcome::kOther, e.what()};
      }
      Set([&] {
        *slot = result;
        ++done_;
      });
    });
    return slots_.size() - 1;
  }

  /// Waits until `n` threads are about to make their call.
  bool WaitArrived(std::size_t n) { return WaitUntil(kBound, [&] { return arrived_ >= n; }); }
  /// Waits until thread `i` has returned.
  bool WaitDone(std::size_t i) { return WaitUntil(kBound, [&] { return slots_[i]->kind != Outcome::kRunning; }); }
  /// Waits until every thread has returned.
  bool WaitAll(std::chrono::seconds bound = kBound) {
    return WaitUntil(bound, [&] { return done_ == threads_.size(); });
  }
  Outcome Result(std::size_t i) const {
    std::lock_guard lock(mu_);
    return *slots_[i];
  }

 private:
  template <class F>
  void Set(F f) {
    std::lock_guard lock(mu_);
    f();
    cv_.notify_all();
  }
  template <class P>
  bool WaitUntil(std::chrono::seconds bound, P pred) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, bound, pred);
  }

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::size_t arrived_ = 0, done_ = 0;
  std::vector<std::unique_ptr<Outcome>> slots_;  // changed by the test's thread only
  std::vector<std::thread> threads_;             // likewise
};

}  // namespace

// --- through the Log ---------------------------------------------------------

BOOST_AUTO_TEST_CASE(concurrent_appenders_share_syncs) {
  TempDir dir;
  SyscallHooks hooks;
  LogOf<logsync::sync::Always> log(dir.path());
  constexpr int kThreads = 8;
  // Hold the first sync until every appender has appended its record: all
  // of them must then be covered by at most one more sync.
  std::atomic<int> waiting_ok{1};
  hooks.before_datasync = [&](std::uint64_t n) {
    if (n != 1) return;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (log.NextOffset() < kThreads)
      if (std::chrono::steady_clock::now() > deadline) {
        waiting_ok = 0;
        return;
      } else {
        std::this_thread::yield();
      }
  };
  std::vector<std::thread> threads;
  std::vector<std::uint64_t> offsets(kThreads);
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] { offsets[t] = log.Append(Rec("t" + std::to_string(t))); });
  for (auto& th : threads) th.join();
  hooks.before_datasync = nullptr;
  BOOST_TEST(waiting_ok.load() == 1);
  BOOST_TEST(hooks.datasyncs.load() <= 2U);
  std::sort(offsets.begin(), offsets.end());
  for (int t = 0; t < kThreads; ++t) BOOST_TEST(offsets[t] == static_cast<std::uint64_t>(t));
}

BOOST_AUTO_TEST_CASE(failed_sync_poisons_the_log_and_is_never_retried) {
  TempDir dir;
  {
    SyscallHooks hooks;
    LogOf<logsync::sync::Always> log(dir.path());
    log.Append(Rec("durable"));
    hooks.fail_sync_at = hooks.datasyncs.load() + 1;
    BOOST_CHECK_EXCEPTION(log.Append(Rec("lost?")), logsync::SyncError,
                          [](const logsync::SyncError& e) { return e.error() == EIO; });
    const auto syncs = hooks.datasyncs.load();
    BOOST_CHECK_EXCEPTION(log.Append(Rec("refused")), logsync::StateError, [](const logsync::StateError& e) {
      return std::string(e.what()).find("failed sync") != std::string::npos;
    });
    BOOST_CHECK_THROW(log.Sync(), logsync::StateError);
    std::vector<Record> batch(3, Rec("b"));
    BOOST_CHECK_THROW(log.AppendBatch(batch), logsync::StateError);
    BOOST_TEST(hooks.datasyncs.load() == syncs);  // nothing retried the sync
    BOOST_TEST(log.NextOffset() == 2U);
    BOOST_TEST(log.Read(0).value == "durable");  // reads go on
    log.Close();
    BOOST_TEST(hooks.datasyncs.load() == syncs);  // not even Close
  }
  // Reopening recovers and appends again.
  LogOf<logsync::sync::Always> log(dir.path());
  BOOST_TEST(log.Read(0).value == "durable");
  const auto next = log.NextOffset();
  BOOST_TEST(log.Append(Rec("again")) == next);
}

BOOST_AUTO_TEST_CASE(failed_sync_in_background_is_reported_to_appenders) {
  TempDir dir;
  Config c;
  c.sync.interval = std::chrono::milliseconds(2);
  SyscallHooks hooks;
  hooks.fail_sync_at = 1;
  LogOf<logsync::sync::Interval> log(dir.path(), c);
  log.Append(Rec("r"));
  BOOST_TEST(hooks.WaitForDataSyncs(1, std::chrono::seconds(20)));
  // The syncer poisons the log right after the failed call returns; wait
  // (bounded) for appends to be refused.
  bool refused = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!refused && std::chrono::steady_clock::now() < deadline) {
    try {
      log.Append(Rec(""));
      std::this_thread::yield();
    } catch (const logsync::StateError&) {
      refused = true;
    }
  }
  BOOST_TEST(refused);
  BOOST_TEST(hooks.datasyncs.load() == 1U);  // and never retried
}

// An Append whose sync is under way when a Reset starts a new generation:
// what that sync covered says nothing about the new generation's records,
// so the first Append after the Reset is synced again (and the racing
// Append gives up with StateError instead of waiting for offsets of the old
// generation that the new one may never reach).
BOOST_AUTO_TEST_CASE(a_sync_that_spans_a_reset_counts_for_the_old_generation_only) {
  TempDir dir;
  SyscallHooks hooks;
  LogOf<logsync::sync::Always> log(dir.path());
  for (int i = 0; i < 10; ++i) log.Append(Rec("old-" + std::to_string(i)));
  std::mutex mu;
  std::condition_variable cv;
  bool in_sync = false, reset_done = false;
  hooks.before_datasync = [&](std::uint64_t) {
    std::unique_lock lock(mu);
    if (in_sync) return;  // only the first one waits
    in_sync = true;
    cv.notify_all();
    cv.wait_for(lock, std::chrono::seconds(30), [&] { return reset_done; });
  };
  std::atomic<int> outcome{0};  // 1: returned, 2: StateError, 3: something else
  std::thread appender([&] {
    try {
      log.Append(Rec("old-10"));
      outcome = 1;
    } catch (const logsync::StateError&) {
      outcome = 2;
    } catch (...) {
      outcome = 3;
    }
  });
  {
    std::unique_lock lock(mu);
    BOOST_REQUIRE(cv.wait_for(lock, std::chrono::seconds(30), [&] { return in_sync; }));
  }
  log.Reset();  // the appender's sync is held inside fdatasync meanwhile
  {
    std::lock_guard lock(mu);
    reset_done = true;
    cv.notify_all();
  }
  appender.join();
  hooks.before_datasync = nullptr;
  BOOST_TEST(outcome.load() == 2);
  const auto syncs = hooks.datasyncs.load();
  BOOST_TEST(log.Append(Rec("new-0")) == 0U);
  BOOST_TEST(hooks.datasyncs.load() == syncs + 1, "the new generation's first record was not synced");
}

// --- GroupCommit itself ------------------------------------------------------

BOOST_AUTO_TEST_CASE(sync_through_skips_the_sync_when_the_target_is_durable) {
  FakeSync fake;
  GroupCommit commit("test", [&] { return fake.Sync(); });
  const auto gen = commit.Generation();
  commit.SyncThrough(0, gen);  // nothing below offset 0
  BOOST_TEST(fake.Calls() == 0U);
  fake.SetDurable(10);
  commit.SyncThrough(4, gen);
  BOOST_TEST(fake.Calls() == 1U);
  BOOST_TEST(!commit.Behind(10));
  BOOST_TEST(commit.Behind(11));
  commit.SyncThrough(10, gen);
  commit.SyncThrough(7, gen);
  BOOST_TEST(fake.Calls() == 1U);  // below 10 was durable already
  fake.SetDurable(12);
  commit.SyncThrough(11, gen);
  BOOST_TEST(fake.Calls() == 2U);
  BOOST_TEST(!commit.Behind(12));
  // A sync that reports less than an earlier one takes nothing back.
  fake.SetDurable(3);
  commit.SyncNow(0, gen);
  BOOST_TEST(fake.Calls() == 3U);
  BOOST_TEST(!commit.Behind(12));
}

BOOST_AUTO_TEST_CASE(sync_now_always_runs_a_sync) {
  FakeSync fake;
  GroupCommit commit("test", [&] { return fake.Sync(); });
  const auto gen = commit.Generation();
  fake.SetDurable(10);
  commit.SyncThrough(10, gen);
  BOOST_TEST(fake.Calls() == 1U);
  commit.SyncNow(10, gen);
  BOOST_TEST(fake.Calls() == 2U);
  commit.SyncNow(0, gen);
  BOOST_TEST(fake.Calls() == 3U);
  // Asked while a sync is under way, it does not settle for that one (it
  // may have begun before the caller's records): one more runs.
  fake.SetDurable(20);
  fake.Hold();
  Workers workers;
  const auto leader = workers.Start([&] { commit.SyncThrough(15, gen); });
  BOOST_REQUIRE(fake.WaitForCalls(4));
  const auto now = workers.Start([&] { commit.SyncNow(15, gen); });
  BOOST_REQUIRE(workers.WaitArrived(2));
  fake.Release();
  BOOST_REQUIRE(workers.WaitAll());
  BOOST_TEST(workers.Result(leader).kind == Outcome::kReturned);
  BOOST_TEST(workers.Result(now).kind == Outcome::kReturned);
  BOOST_TEST(fake.Calls() == 5U);
  BOOST_TEST(!fake.HeldTooLong());
}

BOOST_AUTO_TEST_CASE(waiters_share_one_sync) {
  constexpr std::uint64_t kThreads = 8;
  FakeSync fake;
  GroupCommit commit("test", [&] { return fake.Sync(); });
  const auto gen = commit.Generation();
  // The first sync covers offset 0 only and is held until every other
  // thread waits for a target of its own.
  fake.SetDurable(1);
  fake.Hold();
  Workers workers;
  workers.Start([&] { commit.SyncThrough(1, gen); });
  BOOST_REQUIRE(fake.WaitForCalls(1));
  for (std::uint64_t t = 2; t <= kThreads; ++t) workers.Start([&, t] { commit.SyncThrough(t, gen); });
  BOOST_REQUIRE(workers.WaitArrived(kThreads));
  fake.SetDurable(kThreads);  // what a sync begun from now on covers
  fake.Release();
  BOOST_REQUIRE(workers.WaitAll());
  for (std::size_t i = 0; i < kThreads; ++i) BOOST_TEST(workers.Result(i).kind == Outcome::kReturned, "thread " << i);
  // The held sync, and one that all seven waiters shared.
  BOOST_TEST(fake.Calls() == 2U);
  BOOST_TEST(!commit.Behind(kThreads));
  BOOST_TEST(!fake.HeldTooLong());
}

BOOST_AUTO_TEST_CASE(a_failed_sync_poisons_and_is_never_retried) {
  FakeSync fake;
  GroupCommit commit("the-log", [&] { return fake.Sync(); });
  const auto gen = commit.Generation();
  fake.SetDurable(10);
  commit.SyncThrough(5, gen);
  // The next sync fails while another thread waits for it.
  fake.SetDurable(20);
  fake.FailNext();
  fake.Hold();
  Workers workers;
  const auto leader = workers.Start([&] { commit.SyncThrough(11, gen); });
  BOOST_REQUIRE(fake.WaitForCalls(2));
  const auto waiter = workers.Start([&] { commit.SyncThrough(12, gen); });
  BOOST_REQUIRE(workers.WaitArrived(2));
  fake.Release();
  BOOST_REQUIRE(workers.WaitAll());
  const std::string reason = FakeSync::FailureReason();
  BOOST_TEST(workers.Result(leader).kind == Outcome::kSyncError);
  BOOST_TEST(workers.Result(leader).what == reason);
  BOOST_TEST(workers.Result(waiter).kind == Outcome::kStateError);
  BOOST_TEST(Contains(workers.Result(waiter).what, reason), workers.Result(waiter).what);
  BOOST_TEST(commit.Poisoned());
  auto names_the_failure = [&](const StateError& e) {
    return Contains(e.what(), reason) && Contains(e.what(), "the-log") && Contains(e.what(), "failed sync");
  };
  BOOST_CHECK_EXCEPTION(commit.ThrowIfPoisoned(), StateError, names_the_failure);
  BOOST_CHECK_EXCEPTION(commit.SyncThrough(11, gen), StateError, names_the_failure);
  BOOST_CHECK_EXCEPTION(commit.SyncNow(1, gen), StateError, names_the_failure);
  // A later reason does not replace the first.
  commit.Poison("a later reason");
  BOOST_CHECK_EXCEPTION(commit.ThrowIfPoisoned(), StateError,
                        [&](const StateError& e) { return names_the_failure(e) && !Contains(e.what(), "later"); });
  BOOST_TEST(fake.Calls() == 2U);  // nothing called the sync again
}

BOOST_AUTO_TEST_CASE(ending_a_generation_releases_its_waiters_and_voids_its_sync) {
  FakeSync fake;
  GroupCommit commit("test", [&] { return fake.Sync(); });
  const auto old_gen = commit.Generation();
  fake.SetDurable(100);
  fake.Hold();
  Workers workers;
  const auto leader = workers.Start([&] { commit.SyncThrough(5, old_gen); });
  BOOST_REQUIRE(fake.WaitForCalls(1));
  const auto waiter = workers.Start([&] { commit.SyncThrough(6, old_gen); });
  BOOST_REQUIRE(workers.WaitArrived(2));
  commit.EndGeneration();
  const auto gen = commit.Generation();
  BOOST_TEST(gen != old_gen);
  // The waiter gives up while the sync is still held.
  BOOST_REQUIRE(workers.WaitDone(waiter));
  BOOST_TEST(workers.Result(waiter).kind == Outcome::kStateError);
  BOOST_TEST(Contains(workers.Result(waiter).what, "closed or reset"), workers.Result(waiter).what);
  commit.Restart();  // as a Reset does, with the old sync still under way
  fake.Release();
  BOOST_REQUIRE(workers.WaitAll());
  BOOST_TEST(workers.Result(leader).kind == Outcome::kStateError);  // its records may or may not be durable
  // What the old generation's sync achieved counts for the new one not at all.
  BOOST_TEST(commit.Behind(1));
  commit.SyncThrough(5, gen);
  BOOST_TEST(fake.Calls() == 2U);
  BOOST_TEST(!commit.Behind(100));
  // A caller of the ended generation is refused without a sync.
  BOOST_CHECK_THROW(commit.SyncThrough(101, old_gen), StateError);
  BOOST_CHECK_THROW(commit.SyncNow(1, old_gen), StateError);
  BOOST_TEST(fake.Calls() == 2U);
  BOOST_TEST(!fake.HeldTooLong());
}

BOOST_AUTO_TEST_CASE(restart_clears_the_poison_and_what_was_synced) {
  FakeSync fake;
  GroupCommit commit("test", [&] { return fake.Sync(); });
  const auto gen = commit.Generation();
  fake.SetDurable(10);
  commit.SyncThrough(10, gen);
  BOOST_TEST(!commit.Behind(10));
  fake.FailNext();
  BOOST_CHECK_THROW(commit.SyncNow(10, gen), SyncError);
  BOOST_TEST(commit.Poisoned());
  BOOST_TEST(fake.Calls() == 2U);
  commit.Restart();
  BOOST_TEST(!commit.Poisoned());
  BOOST_CHECK_NO_THROW(commit.ThrowIfPoisoned());
  BOOST_TEST(commit.Behind(1));  // nothing is known durable in a new start
  commit.SyncThrough(10, gen);
  BOOST_TEST(fake.Calls() == 3U);
  BOOST_TEST(!commit.Behind(10));
  // A poison after the restart reports its own reason, not the cleared one.
  commit.Poison("the second reason");
  BOOST_CHECK_EXCEPTION(commit.ThrowIfPoisoned(), StateError, [](const StateError& e) {
    return Contains(e.what(), "the second reason") && !Contains(e.what(), FakeSync::FailureReason());
  });
}

BOOST_AUTO_TEST_CASE(poison_on_sync_error_poisons_on_sync_errors_only) {
  FakeSync fake;
  GroupCommit commit("test", [&] { return fake.Sync(); });
  BOOST_TEST(commit.PoisonOnSyncError([] { return 7; }) == 7);
  bool ran = false;
  commit.PoisonOnSyncError([&] { ran = true; });
  BOOST_TEST(ran);
  BOOST_CHECK_EXCEPTION(commit.PoisonOnSyncError([]() -> int { throw logsync::IoError("/fake/store", ENOSPC, "write"); }),
                        logsync::IoError, [](const logsync::IoError& e) { return e.error() == ENOSPC; });
  BOOST_TEST(!commit.Poisoned());
  BOOST_CHECK_THROW(commit.PoisonOnSyncError([] { throw std::runtime_error("not a sync"); }), std::runtime_error);
  BOOST_TEST(!commit.Poisoned());
  BOOST_CHECK_THROW(commit.PoisonOnSyncError([] { throw StateError("not a sync either"); }), StateError);
  BOOST_TEST(!commit.Poisoned());
  BOOST_CHECK_NO_THROW(commit.ThrowIfPoisoned());
  BOOST_CHECK_EXCEPTION(commit.PoisonOnSyncError([] { throw SyncError("/fake/store", EIO, "fsync"); }), SyncError,
                        [](const SyncError& e) { return e.error() == EIO; });
  BOOST_TEST(commit.Poisoned());
  const std::string reason = SyncError("/fake/store", EIO, "fsync").what();
  BOOST_CHECK_EXCEPTION(commit.ThrowIfPoisoned(), StateError,
                        [&](const StateError& e) { return Contains(e.what(), reason); });
  BOOST_CHECK_THROW(commit.SyncThrough(1, commit.Generation()), StateError);
  BOOST_TEST(fake.Calls() == 0U);
}

BOOST_AUTO_TEST_CASE(the_syncer_syncs_in_the_background_while_behind) {
  FakeSync fake;
  GroupCommit commit("test", [&] { return fake.Sync(); });
  commit.StartSyncer(std::chrono::milliseconds(1), fake.SyncerNext());
  // Nothing published: the syncer looks, and does not sync.
  BOOST_REQUIRE(fake.WaitForPublishedReads(3));
  BOOST_TEST(fake.Calls() == 0U);
  fake.SetDurable(5);
  BOOST_REQUIRE(fake.WaitForCalls(1));
  BOOST_REQUIRE(Eventually([&] { return !commit.Behind(5); }));
  // Caught up: more looks, no more syncs.
  BOOST_REQUIRE(fake.WaitForPublishedReads(fake.PublishedReads() + 3));
  BOOST_TEST(fake.Calls() == 1U);
  fake.SetDurable(8);
  BOOST_REQUIRE(Eventually([&] { return !commit.Behind(8); }));
  BOOST_TEST(fake.Calls() == 2U);
  // StopSyncer ends the thread, and returns once it has.
  Workers workers;
  workers.Start([&] { commit.StopSyncer(); });
  BOOST_REQUIRE(workers.WaitAll());
  BOOST_TEST(workers.Result(0).kind == Outcome::kReturned);
  BOOST_TEST(fake.WaitForSyncerGone());
  commit.StopSyncer();  // again: nothing to stop
  BOOST_TEST(!commit.Poisoned());
}

BOOST_AUTO_TEST_CASE(the_syncer_stops_after_a_failed_sync) {
  FakeSync fake;
  GroupCommit commit("test", [&] { return fake.Sync(); });
  fake.FailNext();
  commit.StartSyncer(std::chrono::milliseconds(1), fake.SyncerNext());
  fake.SetDurable(5);
  // It ends by itself, with no StopSyncer.
  BOOST_REQUIRE(fake.WaitForSyncerGone());
  BOOST_TEST(fake.Calls() == 1U);
  BOOST_TEST(commit.Poisoned());
  BOOST_TEST(commit.Behind(5));
  // Appends now learn of it.
  BOOST_CHECK_EXCEPTION(commit.ThrowIfPoisoned(), StateError,
                        [](const StateError& e) { return Contains(e.what(), FakeSync::FailureReason()); });
}

// --- sealing after a sync that fails -----------------------------------------

BOOST_AUTO_TEST_CASE(a_sync_in_flight_or_failed_after_its_generation_ended_forbids_sealing) {
  FakeSync fake;
  GroupCommit commit("test", [&] { return fake.Sync(); });
  const auto gen = commit.Generation();
  BOOST_TEST(commit.MaySeal());
  fake.SetDurable(5);
  fake.FailNext();
  fake.Hold();
  Workers workers;
  const auto leader = workers.Start([&] { commit.SyncThrough(5, gen); });
  BOOST_REQUIRE(fake.WaitForCalls(1));
  commit.EndGeneration();  // a Close, with the sync under way
  BOOST_TEST(!commit.MaySeal(), "the sync in flight may yet fail");
  fake.Release();
  BOOST_REQUIRE(workers.WaitDone(leader));
  BOOST_TEST(workers.Result(leader).kind == Outcome::kSyncError);
  BOOST_TEST(commit.Poisoned(), "a failure after the generation ended is still a failure of these files");
  BOOST_TEST(!commit.MaySeal());
  commit.Restart();  // the next open
  BOOST_TEST(!commit.Poisoned());
  BOOST_TEST(commit.MaySeal());
}

BOOST_AUTO_TEST_CASE(a_sync_that_fails_after_a_restart_poisons_nothing) {
  FakeSync fake;
  GroupCommit commit("test", [&] { return fake.Sync(); });
  const auto gen = commit.Generation();
  fake.SetDurable(5);
  fake.FailNext();
  fake.Hold();
  Workers workers;
  const auto leader = workers.Start([&] { commit.SyncThrough(5, gen); });
  BOOST_REQUIRE(fake.WaitForCalls(1));
  commit.EndGeneration();
  commit.Restart();  // a Reset reopened while the old sync was held
  fake.Release();
  BOOST_REQUIRE(workers.WaitDone(leader));
  BOOST_TEST(workers.Result(leader).kind == Outcome::kSyncError);
  BOOST_TEST(!commit.Poisoned(), "an old generation's failure poisoned the reopened log");
  BOOST_TEST(commit.MaySeal());
  commit.SyncThrough(5, commit.Generation());
  BOOST_TEST(fake.Calls() == 2U);
}

namespace {
// An fdatasync that waits until released (at most kBound), then fails.
struct HeldFailingDataSync {
  static inline std::mutex mu;
  static inline std::condition_variable cv;
  static inline bool in_sync = false, released = false;
  static int Call(int) {
    std::unique_lock lock(mu);
    in_sync = true;
    cv.notify_all();
    cv.wait_for(lock, kBound, [] { return released; });
    errno = EIO;
    return -1;
  }
  static bool WaitInSync() {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, kBound, [] { return in_sync; });
  }
  static void Release() {
    std::lock_guard lock(mu);
    released = true;
    cv.notify_all();
  }
};
}  // namespace

BOOST_AUTO_TEST_CASE(close_does_not_seal_while_a_sync_is_in_flight) {
  TempDir dir;
  SyscallHooks hooks;
  std::uint64_t fsyncs_by_close = 0;
  {
    LogOf<logsync::sync::Always> log(dir.path());
    log.Append(Rec("a"));
    const auto hooked = logsync::detail::Sys().fdatasync;
    logsync::detail::Sys().fdatasync = &HeldFailingDataSync::Call;
    Workers workers;
    const auto appender = workers.Start([&] { log.Append(Rec("b")); });
    BOOST_REQUIRE(HeldFailingDataSync::WaitInSync());
    const auto fsyncs = hooks.fsyncs.load();
    log.Close();  // the appender's fdatasync is still under way, and will fail
    fsyncs_by_close = hooks.fsyncs.load() - fsyncs;
    HeldFailingDataSync::Release();
    BOOST_REQUIRE(workers.WaitDone(appender));
    BOOST_TEST(workers.Result(appender).kind == Outcome::kSyncError);
    logsync::detail::Sys().fdatasync = hooked;
  }
  BOOST_TEST(fsyncs_by_close == 0U, "Close synced (sealed) the files while a sync that failed was in flight");
  // The unsealed segment is recovered on open; the record acknowledged before stays.
  LogOf<logsync::sync::Always> again(dir.path());
  BOOST_TEST(again.Read(0).value == "a");
  BOOST_TEST(again.Verify().Ok());
}
