#define BOOST_TEST_MODULE fault_injection_test
// Every call of the system-call seam that is not a write or a sync (those
// have tests of their own) fails, in turn, at each of its calls during a
// life of a log: open, appends that roll, Truncate, Snapshot, Sync, Close,
// Remove after Close. Whatever fails must surface as a logsync::Error (never
// another exception, never a crash), and a reopen with the fault gone must
// find every acknowledged record and exactly the segments the log reported
// (a failed Truncate must not have dropped in memory what is still on disk).
#include <boost/test/unit_test.hpp>

#include <logsync/logsync.hpp>

#include "support/config.hpp"
#include "support/syscalls.hpp"
#include "support/temp_dir.hpp"

#include <cerrno>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

namespace {

using logsync::Log;
using logsync::Record;
using logsync::test::SyscallHooks;
using logsync::test::TempDir;
using AlwaysLog = Log<Record, logsync::DefaultCodec<Record>, logsync::sync::Always>;

std::string Value(std::uint64_t i) { return "value-" + std::to_string(i) + std::string(i % 23, 'v'); }

// What the log said before the fault ended its life.
struct Seen {
  bool opened = false;
  std::uint64_t acked = 0;   // appends that returned
  bool sync_error = false;   // the life ended with a SyncError (an append's record may be there or not)
  std::uint64_t lowest = 0;  // LowestOffset() last seen
  bool removing = false;     // Remove() was called (it deletes oldest first)
  bool removed = false;      // Remove() returned
};

// The life of a log the faults are injected into; returns at the first
// exception, which must be a logsync::Error.
void Life(const std::filesystem::path& dir, const std::filesystem::path& snap, Seen& seen) {
  try {
    AlwaysLog log(dir, logsync::test::SmallSegments(200));
    seen.opened = true;
    for (std::uint64_t i = 0; i < 30; ++i) {
      BOOST_TEST_REQUIRE(log.Append(Record{0, Value(i)}) == i);
      seen.acked = i + 1;
    }
    seen.lowest = log.LowestOffset();
    try {
      log.Truncate(8);
    } catch (...) {
      seen.lowest = log.LowestOffset();  // what the failed Truncate left
      throw;
    }
    seen.lowest = log.LowestOffset();
    log.Snapshot(snap);
    log.Sync();
    log.Close();
    seen.removing = true;
    log.Remove();
    seen.removed = true;
  } catch (const logsync::SyncError&) {
    seen.sync_error = true;
  } catch (const logsync::Error&) {
  } catch (const std::exception& e) {
    BOOST_ERROR("not a logsync::Error: " << typeid(e).name() << ": " << e.what());
  }
}

// With the fault gone: the log holds what `seen` says.
void Check(const std::filesystem::path& dir, const Seen& seen, const std::string& where) {
  if (seen.removed || !seen.opened) return;
  try {
    AlwaysLog log(dir, logsync::test::SmallSegments(200));
    // A Remove that failed part way leaves a suffix of the log (or none).
    if (seen.removing && log.Empty()) return;
    // A SyncError (a failed fsync, or a rolled segment's seal failing in
    // the background) says only that the append's record is not known to
    // be durable: it may be there after a reopen, and must then be whole.
    const std::uint64_t limit = seen.acked + (seen.sync_error ? 1 : 0);
    BOOST_TEST((log.NextOffset() >= seen.acked && log.NextOffset() <= limit),
               where << ": next offset " << log.NextOffset() << ", acknowledged " << seen.acked);
    if (seen.removing)
      BOOST_TEST(log.LowestOffset() >= seen.lowest, where);
    else
      BOOST_TEST(log.LowestOffset() == seen.lowest, where);
    for (std::uint64_t i = log.LowestOffset(); i < log.NextOffset(); ++i)
      if (log.Read(i).value != Value(i)) {
        BOOST_ERROR(where << ": record " << i << " reads back wrong");
        break;
      }
    BOOST_TEST(log.Verify().Ok(), where);
  } catch (const std::exception& e) {
    BOOST_ERROR(where << ": reopen failed: " << e.what());
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(every_call_fails_in_turn) {
  const std::array<int, SyscallHooks::kCalls> errnos{EMFILE, EIO, EIO, ENOLCK, EXDEV, EIO, ENOSPC, EACCES, ENOMEM};
  std::uint64_t faults = 0;
  for (std::size_t c = 0; c < SyscallHooks::kCalls; ++c) {
    const auto call = static_cast<SyscallHooks::Call>(c);
    for (std::uint64_t n = 1; n < 500; ++n) {
      TempDir dir, snap_parent;
      const auto snap = snap_parent / "snap";
      Seen seen;
      bool fired;
      {
        SyscallHooks hooks;
        hooks.FailCall(call, n, errnos[c]);
        Life(dir / "log", snap, seen);
        fired = hooks.Calls(call) >= n;
      }
      if (!fired) break;  // the life makes fewer calls than n
      ++faults;
      Check(dir / "log", seen,
            std::string(SyscallHooks::kCallNames[c]) + " call " + std::to_string(n) + " failing");
    }
  }
  BOOST_TEST_MESSAGE(faults << " faults injected");
  BOOST_TEST(faults > 50U);
}

// The unlink of the second of three segments Truncate removes fails: the
// first is gone, in memory as on disk; the others stay, readable.
BOOST_AUTO_TEST_CASE(truncate_that_fails_part_way_keeps_memory_and_disk_in_step) {
  TempDir dir;
  std::uint64_t lowest = 0;
  {
    AlwaysLog log(dir.path(), logsync::test::SmallSegments(200));
    for (std::uint64_t i = 0; i < 30; ++i) log.Append(Record{0, Value(i)});
    const std::size_t segments = log.SegmentCount();
    BOOST_REQUIRE(segments >= 5U);
    {
      SyscallHooks hooks;
      hooks.FailCall(SyscallHooks::kUnlink, 2, EACCES);  // the second segment's store
      BOOST_CHECK_THROW(log.Truncate(20), logsync::IoError);
    }
    lowest = log.LowestOffset();
    BOOST_TEST(lowest > 0U);
    BOOST_TEST(log.SegmentCount() == segments - 1);
    for (std::uint64_t i = lowest; i < 30; ++i) BOOST_TEST(log.Read(i).value == Value(i));
    BOOST_CHECK_THROW(log.Read(0), logsync::OffsetOutOfRange);
  }
  AlwaysLog log(dir.path(), logsync::test::SmallSegments(200));
  BOOST_TEST(log.LowestOffset() == lowest);
  BOOST_TEST(log.NextOffset() == 30U);
}

// A Reset whose reopen fails leaves the log closed and the directory free:
// another Log may open it, and Remove deletes it.
BOOST_AUTO_TEST_CASE(a_reset_that_fails_to_reopen_frees_the_directory) {
  TempDir dir;
  const auto sub = dir / "log";
  AlwaysLog log(sub, logsync::test::SmallSegments(200));
  for (std::uint64_t i = 0; i < 10; ++i) log.Append(Record{0, Value(i)});
  {
    SyscallHooks hooks;
    hooks.sticky = true;
    hooks.fail_write_at = 1;  // the new store's header
    BOOST_CHECK_THROW(log.Reset(), logsync::IoError);
  }
  BOOST_CHECK_THROW(log.Append(Record{0, "x"}), logsync::StateError);
  {
    AlwaysLog other(sub, logsync::test::SmallSegments(200));
    BOOST_TEST(other.Empty());
  }
  log.Remove();
  BOOST_TEST(!std::filesystem::exists(sub));
}
