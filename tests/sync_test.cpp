#define BOOST_TEST_MODULE sync_test
#include <boost/test/unit_test.hpp>

#include <logsync/logsync.hpp>

#include "support/log_helpers.hpp"
#include "support/syscalls.hpp"
#include "support/temp_dir.hpp"

#include <chrono>
#include <string>
#include <utility>
#include <vector>

using logsync::Config;
using logsync::Record;
using logsync::test::LogOf;
using logsync::test::Rec;
using logsync::test::SyscallHooks;
using logsync::test::TempDir;

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
