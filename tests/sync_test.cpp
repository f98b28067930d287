#define BOOST_TEST_MODULE sync_test
#include <boost/test/unit_test.hpp>

#include <logsync/logsync.hpp>

#include "support/syscalls.hpp"
#include "support/temp_dir.hpp"

#include <chrono>
#include <string>
#include <thread>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <vector>

using logsync::Config;
using logsync::Log;
using logsync::Record;
using logsync::test::SyscallHooks;
using logsync::test::TempDir;

namespace {

template <class S>
using LogOf = Log<Record, logsync::DefaultCodec<Record>, S>;

Record Rec(const std::string& v) { return Record{0, v}; }

}  // namespace

BOOST_AUTO_TEST_CASE(none_leaves_syncing_to_the_os_until_close) {
  TempDir dir;
  SyscallHooks hooks;
  LogOf<logsync::sync::None> log(dir.path());
  for (int i = 0; i < 100; ++i) log.Append(Rec("r"));
  std::vector<Record> batch(10, Rec("b"));
  log.AppendBatch(batch);
  BOOST_TEST(hooks.datasyncs.load() == 0U);
  const auto fsyncs = hooks.fsyncs.load();
  log.Close();
  BOOST_TEST(hooks.fsyncs.load() >= fsyncs + 2);  // the store and the index, each cut to size
  BOOST_TEST(hooks.msyncs.load() >= 1U);
}

BOOST_AUTO_TEST_CASE(always_syncs_before_every_append_returns) {
  TempDir dir;
  SyscallHooks hooks;
  LogOf<logsync::sync::Always> log(dir.path());
  for (std::uint64_t i = 1; i <= 50; ++i) {
    log.Append(Rec("r"));
    BOOST_TEST(hooks.datasyncs.load() == i);  // this append's own sync, done before it returned
  }
  std::vector<Record> batch(10, Rec("b"));
  log.AppendBatch(batch);
  BOOST_TEST(hooks.datasyncs.load() == 51U);  // one sync for the whole batch
}

BOOST_AUTO_TEST_CASE(always_syncs_the_directory_when_a_segment_is_created) {
  TempDir dir;
  Config c;
  c.segment.max_index_bytes = 2 * logsync::kIndexEntryBytes;
  SyscallHooks hooks;
  LogOf<logsync::sync::Always> log(dir.path(), c);
  const auto fsyncs = hooks.fsyncs.load();
  log.Append(Rec("a"));
  log.Append(Rec("b"));
  log.Append(Rec("c"));  // rolls: the new files' directory entries are synced
  BOOST_TEST(hooks.fsyncs.load() > fsyncs);
  BOOST_TEST(log.SegmentCount() == 2U);
}

BOOST_AUTO_TEST_CASE(every_n_syncs_once_per_n_records) {
  TempDir dir;
  Config c;
  c.sync.every_n = 10;
  SyscallHooks hooks;
  LogOf<logsync::sync::EveryN> log(dir.path(), c);
  for (int i = 0; i < 95; ++i) log.Append(Rec("r"));
  BOOST_TEST(hooks.datasyncs.load() == 9U);
  std::vector<Record> batch(5, Rec("b"));
  log.AppendBatch(batch);  // 95 + 5 crosses the tenth threshold
  BOOST_TEST(hooks.datasyncs.load() == 10U);
}

BOOST_AUTO_TEST_CASE(interval_syncs_in_the_background) {
  TempDir dir;
  Config c;
  c.sync.interval = std::chrono::milliseconds(5);
  SyscallHooks hooks;
  LogOf<logsync::sync::Interval> log(dir.path(), c);
  log.Append(Rec("r"));
  BOOST_TEST(hooks.datasyncs.load() == 0U);  // the append did not wait for a sync
  BOOST_TEST(hooks.WaitForDataSyncs(1, std::chrono::seconds(20)));
  log.Append(Rec("s"));
  BOOST_TEST(hooks.WaitForDataSyncs(2, std::chrono::seconds(20)));
}

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

BOOST_AUTO_TEST_CASE(write_failure_leaves_log_appendable) {
  TempDir dir;
  Config c;
  c.segment.max_store_bytes = 256;  // allocated ahead by 16 bytes: every append allocates
  {
    SyscallHooks hooks;
    LogOf<logsync::sync::Always> log(dir.path(), c);
    log.Append(Rec("one"));
    hooks.fail_write_at = hooks.writes.load() + 1;
    BOOST_CHECK_EXCEPTION(log.Append(Rec("two")), logsync::IoError,
                          [](const logsync::IoError& e) { return e.error() == ENOSPC; });
    BOOST_TEST(log.NextOffset() == 1U);
    BOOST_CHECK_THROW(log.Read(1), logsync::OffsetOutOfRange);
    BOOST_TEST(log.Append(Rec("three")) == 1U);  // space came back
    BOOST_TEST(log.Read(1).value == "three");
  }
  LogOf<logsync::sync::Always> log(dir.path(), c);
  BOOST_TEST(log.NextOffset() == 2U);
  BOOST_TEST(log.Read(0).value == "one");
  BOOST_TEST(log.Read(1).value == "three");
}

BOOST_AUTO_TEST_CASE(enospc_and_eio_at_every_write_of_a_workload) {
  // Fail the k-th write for every k the workload makes (appends, batches and
  // segment creations), with ENOSPC and with EIO; the writes after it succeed
  // again (space came back). What survives a reopen is exactly what was
  // acknowledged, and the log went on appending after the failure.
  for (const int err : {ENOSPC, EIO}) {
    std::uint64_t total_writes = 0;
    for (std::uint64_t k = 1;; ++k) {
      TempDir dir;
      Config c;
      c.segment.max_store_bytes = 256;
      std::vector<std::pair<std::uint64_t, std::string>> acked;
      std::uint64_t writes = 0;
      {
        SyscallHooks hooks;
        hooks.fail_write_at = k;
        hooks.write_errno = err;
        try {
          LogOf<logsync::sync::Always> log(dir.path(), c);
          for (int i = 0; i < 12; ++i) {
            const std::string v = "value-" + std::to_string(i);
            try {
              if (i % 4 == 3) {
                std::vector<Record> batch{Rec(v + "a"), Rec(v + "b")};
                const auto first = log.AppendBatch(batch);
                acked.emplace_back(first, v + "a");
                acked.emplace_back(first + 1, v + "b");
              } else {
                acked.emplace_back(log.Append(Rec(v)), v);
              }
            } catch (const logsync::IoError& e) {
              BOOST_TEST(e.error() == err);
            }
          }
        } catch (const logsync::IoError& e) {
          BOOST_TEST(e.error() == err);  // the failure hit the log's creation
        }
        writes = hooks.writes.load();
      }
      LogOf<logsync::sync::Always> log(dir.path(), c);
      BOOST_TEST(log.NextOffset() == acked.size(), "k=" << k);
      for (std::size_t i = 0; i < acked.size(); ++i) {
        BOOST_TEST(acked[i].first == i, "k=" << k);  // no hole where the write failed
        BOOST_TEST(log.Read(acked[i].first).value == acked[i].second, "k=" << k);
      }
      if (k > writes) {
        total_writes = writes;
        break;
      }
    }
    BOOST_TEST(total_writes > 12U);
  }
}

BOOST_AUTO_TEST_CASE(a_new_log_directory_is_synced_into_its_parent) {
  TempDir dir;
  SyscallHooks hooks;
  const auto before = hooks.fsyncs.load();
  LogOf<logsync::sync::Always> log(dir / "a" / "b");
  // Both new directories' entries (in dir and in dir/a), then the segment's.
  BOOST_TEST(hooks.fsyncs.load() >= before + 3);
  log.Append(Rec("x"));
  BOOST_TEST(log.Read(0).value == "x");
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
