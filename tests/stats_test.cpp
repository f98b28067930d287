#define BOOST_TEST_MODULE stats_test
#include <boost/test/unit_test.hpp>

// Log::Stats(): the counters of appends and syncs, what the log holds of
// the system's (checked against /proc/self/fd), and what an open recovered.

#include <logsync/logsync.hpp>

#include "support/config.hpp"
#include "support/temp_dir.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

using logsync::Config;
using logsync::Log;
using logsync::LogStats;
using logsync::Record;
using logsync::test::TempDir;
namespace fs = std::filesystem;

namespace {

using AlwaysLog = Log<Record, logsync::DefaultCodec<Record>, logsync::sync::Always>;

std::uint64_t PayloadBytes(const Record& r) { return logsync::DefaultCodec<Record>{}.EncodedSize(r); }

std::string Value(std::uint64_t i) { return "value-" + std::to_string(i) + std::string(i % 13, 'v'); }

// Descriptors of this process that point at `dir` or into it.
std::uint64_t FdsInto(const fs::path& dir) {
  const std::string root = fs::canonical(dir).string();
  std::uint64_t n = 0;
  for (const auto& e : fs::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    const std::string target = fs::read_symlink(e.path(), ec).string();
    if (ec) continue;  // the iterator's own descriptor, gone by now
    if (target == root || target.rfind(root + "/", 0) == 0) ++n;
  }
  return n;
}

fs::path FirstStore(const fs::path& dir) { return dir / "00000000000000000000.store"; }

bool HasActionWith(const LogStats& s, const std::string& a, const std::string& b) {
  return std::any_of(s.recovery.actions.begin(), s.recovery.actions.end(), [&](const std::string& line) {
    return line.find(a) != std::string::npos && line.find(b) != std::string::npos;
  });
}

std::string Actions(const LogStats& s) {
  std::string out;
  for (const auto& a : s.recovery.actions) out += "\n  " + a;
  return out;
}

}  // namespace

BOOST_AUTO_TEST_CASE(appends_records_bytes_and_syncs_under_sync_always) {
  TempDir dir;
  AlwaysLog log(dir.path());
  std::uint64_t bytes = 0;
  for (std::uint64_t i = 0; i < 10; ++i) {
    const Record r{0, Value(i)};
    bytes += PayloadBytes(r);
    log.Append(r);
  }
  std::vector<Record> batch;
  for (std::uint64_t i = 10; i < 15; ++i) {
    batch.push_back({0, Value(i)});
    bytes += PayloadBytes(batch.back());
  }
  log.AppendBatch(batch);
  log.AppendBatch(std::span<const Record>());  // empty: not an append
  // A refused append counts for nothing.
  BOOST_CHECK_THROW(log.Append(Record{0, std::string(log.GetConfig().max_record_bytes + 1, 'x')}),
                    logsync::RecordTooLarge);

  LogStats s = log.Stats();
  BOOST_TEST(s.appends == 11U);
  BOOST_TEST(s.records == 15U);
  BOOST_TEST(s.bytes == bytes);
  // One thread: every durable append leads a sync of its own.
  BOOST_TEST(s.syncs == 11U);
  BOOST_TEST(s.records_per_sync == 15.0 / 11.0);
  BOOST_TEST(s.sync_p50.count() > 0);
  BOOST_TEST(s.sync_p50 <= s.sync_p99);
  BOOST_TEST(s.lowest_offset == 0U);
  BOOST_TEST(s.next_offset == 15U);

  log.Sync();
  s = log.Stats();
  BOOST_TEST(s.syncs == 12U);
  BOOST_TEST(s.appends == 11U);
}

BOOST_AUTO_TEST_CASE(no_sync_under_sync_none_until_sync) {
  TempDir dir;
  Log<> log(dir.path());
  for (std::uint64_t i = 0; i < 100; ++i) log.Append({0, Value(i)});
  std::vector<Record> batch(50, Record{0, "b"});
  log.AppendBatch(batch);
  LogStats s = log.Stats();
  BOOST_TEST(s.appends == 101U);
  BOOST_TEST(s.records == 150U);
  BOOST_TEST(s.syncs == 0U);
  BOOST_TEST(s.records_per_sync == 0.0);
  BOOST_TEST(s.sync_p50.count() == 0);
  BOOST_TEST(s.sync_p99.count() == 0);

  log.Sync();
  log.Sync();
  s = log.Stats();
  BOOST_TEST(s.syncs == 2U);
  BOOST_TEST(s.records_per_sync == 75.0);
  BOOST_TEST(s.sync_p50.count() > 0);
  BOOST_TEST(s.sync_p50 <= s.sync_p99);

  log.Close();
  BOOST_CHECK_THROW(log.Stats(), logsync::StateError);
}

BOOST_AUTO_TEST_CASE(sync_percentiles_over_many_syncs) {
  TempDir dir;
  AlwaysLog log(dir.path());
  for (std::uint64_t i = 0; i < 1100; ++i) log.Append({0, "x"});  // past the ring's 1024
  const LogStats s = log.Stats();
  BOOST_TEST(s.syncs == 1100U);
  BOOST_TEST(s.sync_p50.count() > 0);
  BOOST_TEST(s.sync_p50 <= s.sync_p99);
}

BOOST_AUTO_TEST_CASE(segments_descriptors_and_mappings) {
  TempDir dir;
  const Config c = logsync::test::SmallSegments(4096);
  {
    Log<> log(dir.path(), c);
    for (std::uint64_t i = 0; i < 2000; ++i) log.Append({0, Value(i)});
    log.Sync();  // every rolled segment sealed
    const LogStats s = log.Stats();
    BOOST_TEST_REQUIRE(log.SegmentCount() > 5U);
    BOOST_TEST(s.segments == log.SegmentCount());
    // Each segment: its store's descriptor, and the active one's index; the
    // directory lock: the directory and LOCK. Each segment maps both files.
    BOOST_TEST(s.open_files == log.SegmentCount() + 1 + 2);
    BOOST_TEST(s.mappings == 2 * log.SegmentCount());
    BOOST_TEST(s.open_files == FdsInto(dir.path()));
    BOOST_TEST(s.next_offset == 2000U);

    log.Truncate(999);
    const LogStats t = log.Stats();
    BOOST_TEST(t.segments == log.SegmentCount());
    BOOST_TEST(t.segments < s.segments);
    BOOST_TEST(t.lowest_offset == log.LowestOffset());
    BOOST_TEST(t.lowest_offset > 0U);
    BOOST_TEST(t.open_files == FdsInto(dir.path()));
    BOOST_TEST(t.mappings == 2 * log.SegmentCount());
  }
  BOOST_TEST(FdsInto(dir.path()) == 0U);
  Log<> again(dir.path(), c);  // the active segment, reopened, and the sealed ones
  const LogStats s = again.Stats();
  BOOST_TEST(s.segments == again.SegmentCount());
  BOOST_TEST(s.recovery.segments == again.SegmentCount());
  BOOST_TEST(s.open_files == FdsInto(dir.path()));
  BOOST_TEST(s.open_files == again.SegmentCount() + 1 + 2);
  BOOST_TEST(s.mappings == 2 * again.SegmentCount());
}

BOOST_AUTO_TEST_CASE(clean_reopen_reports_nothing_recovered) {
  TempDir dir;
  const Config c = logsync::test::SmallSegments(4096);
  {
    Log<> log(dir.path(), c);
    for (std::uint64_t i = 0; i < 500; ++i) log.Append({0, Value(i)});
    // A new log's first open found nothing either.
    const LogStats s = log.Stats();
    BOOST_TEST(s.recovery.actions.empty(), Actions(s));
    BOOST_TEST(s.recovery.segments == 0U);
  }
  Log<> log(dir.path(), c);
  const LogStats s = log.Stats();
  BOOST_TEST(s.recovery.actions.empty(), Actions(s));
  BOOST_TEST(s.recovery.bytes_cut == 0U);
  BOOST_TEST(s.recovery.bytes_checked == 0U);
  BOOST_TEST(s.recovery.records_recovered == 0U);
  BOOST_TEST(s.recovery.indexes_rebuilt == 0U);
  BOOST_TEST(s.recovery.segments_removed == 0U);
  BOOST_TEST(s.recovery.segments == log.SegmentCount());
  BOOST_TEST(s.appends == 0U);  // counters start with the Log
}

BOOST_AUTO_TEST_CASE(garbage_after_the_last_record_is_cut_and_reported) {
  TempDir dir;
  std::uint64_t end = 0;
  {
    Log<> log(dir.path());
    for (std::uint64_t i = 0; i < 20; ++i) log.Append({0, Value(i)});
  }
  end = fs::file_size(FirstStore(dir.path()));  // a clean close trims the store to its records
  {
    std::ofstream out(FirstStore(dir.path()), std::ios::binary | std::ios::app);
    out << std::string(100, '\xab');
  }
  Log<> log(dir.path());
  const LogStats s = log.Stats();
  BOOST_TEST(s.recovery.bytes_cut == 100U);
  BOOST_TEST(s.recovery.records_recovered == 0U);
  BOOST_TEST(HasActionWith(s, "00000000000000000000.store: cut 100 bytes at byte " + std::to_string(end), "("),
             Actions(s));
  BOOST_TEST(s.recovery.actions.size() == 1U, Actions(s));
  BOOST_TEST(log.NextOffset() == 20U);
  BOOST_TEST(fs::file_size(FirstStore(dir.path())) >= end);
}

BOOST_AUTO_TEST_CASE(zeros_after_the_garbage_are_not_counted_as_cut) {
  TempDir dir;
  {
    Log<> log(dir.path());
    for (std::uint64_t i = 0; i < 20; ++i) log.Append({0, Value(i)});
  }
  {
    std::ofstream out(FirstStore(dir.path()), std::ios::binary | std::ios::app);
    out << std::string(37, '\x01') << std::string(200000, '\0');  // past one read-back chunk
  }
  {
    Log<> log(dir.path());
    const LogStats s = log.Stats();
    BOOST_TEST(s.recovery.bytes_cut == 37U);
    BOOST_TEST(HasActionWith(s, "cut 37 bytes", ".store"), Actions(s));
  }
  // Zeros alone (what allocation ahead leaves) are no loss.
  {
    std::ofstream out(FirstStore(dir.path()), std::ios::binary | std::ios::app);
    out << std::string(5000, '\0');
  }
  Log<> log(dir.path());
  const LogStats s = log.Stats();
  BOOST_TEST(s.recovery.bytes_cut == 0U);
  BOOST_TEST(!HasActionWith(s, "cut", ".store"), Actions(s));
}

BOOST_AUTO_TEST_CASE(torn_tail_of_a_log_never_closed_is_recovered_and_reported) {
  TempDir dir;
  TempDir copy;
  std::uint64_t bytes = 0;
  constexpr std::uint64_t kRecords = 300;
  Log<> log(dir.path());  // sync::None: nothing synced, no checkpoint vouches for anything
  for (std::uint64_t i = 0; i < kRecords; ++i) {
    const Record r{0, Value(i)};
    bytes += logsync::kFrameHeaderBytes + PayloadBytes(r);
    log.Append(r);
  }
  // What a kill leaves: the files as they are while the log is open (the
  // store allocated ahead, with zeros past the records).
  for (const auto& e : fs::directory_iterator(dir.path())) fs::copy_file(e.path(), copy / e.path().filename().string());
  const fs::path store = FirstStore(copy.path());
  const std::uint64_t end = logsync::kStoreHeaderBytes + bytes;
  BOOST_TEST_REQUIRE(fs::file_size(store) > end);
  {
    Log<> recovered(copy.path());
    const LogStats s = recovered.Stats();
    BOOST_TEST(s.recovery.records_recovered == kRecords);
    BOOST_TEST(s.recovery.bytes_checked == bytes);
    BOOST_TEST(s.recovery.bytes_cut == 0U, Actions(s));  // only the zeros allocated ahead went
    BOOST_TEST(HasActionWith(s, "00000000000000000000.store: 300 records", "checked"), Actions(s));
    BOOST_TEST(recovered.NextOffset() == kRecords);
  }
  // Torn in its last frame: the frame goes, and its bytes count as cut.
  for (const auto& e : fs::directory_iterator(dir.path()))
    fs::copy_file(e.path(), copy / e.path().filename().string(), fs::copy_options::overwrite_existing);
  const std::uint64_t last = logsync::kFrameHeaderBytes + PayloadBytes(Record{0, Value(kRecords - 1)});
  fs::resize_file(store, end - 5);
  Log<> recovered(copy.path());
  const LogStats s = recovered.Stats();
  BOOST_TEST(s.recovery.records_recovered == kRecords - 1);
  BOOST_TEST(s.recovery.bytes_cut == last - 5);
  BOOST_TEST(HasActionWith(s, "cut " + std::to_string(last - 5) + " bytes at byte " + std::to_string(end - last),
                           ".store"),
             Actions(s));
  BOOST_TEST(recovered.NextOffset() == kRecords - 1);
}

BOOST_AUTO_TEST_CASE(rebuilt_index_of_a_sealed_segment_is_reported) {
  TempDir dir;
  const Config c = logsync::test::SmallSegments(4096);
  std::uint64_t records_in_first = 0;
  {
    Log<> log(dir.path(), c);
    for (std::uint64_t i = 0; i < 500; ++i) log.Append({0, Value(i)});
    BOOST_TEST_REQUIRE(log.SegmentCount() > 3U);
  }
  {
    std::vector<fs::path> stores;
    for (const auto& e : fs::directory_iterator(dir.path()))
      if (e.path().extension() == ".store") stores.push_back(e.path());
    std::sort(stores.begin(), stores.end());
    records_in_first = std::stoull(stores[1].stem().string());  // the second's base offset
  }
  fs::remove(dir / "00000000000000000000.index");
  {
    Log<> log(dir.path(), c);
    const LogStats s = log.Stats();
    BOOST_TEST(s.recovery.indexes_rebuilt == 1U);
    BOOST_TEST(s.recovery.records_recovered == records_in_first);
    BOOST_TEST(s.recovery.bytes_checked == fs::file_size(FirstStore(dir.path())) - logsync::kStoreHeaderBytes);
    BOOST_TEST(HasActionWith(s, "00000000000000000000.index: rebuilt", "missing"), Actions(s));
    BOOST_TEST(s.recovery.actions.size() == 1U, Actions(s));
  }
  // Rebuilt and sealed: the next open finds it clean.
  Log<> log(dir.path(), c);
  const LogStats s = log.Stats();
  BOOST_TEST(s.recovery.actions.empty(), Actions(s));
  BOOST_TEST(s.recovery.indexes_rebuilt == 0U);
}

BOOST_AUTO_TEST_CASE(reset_starts_recovery_afresh_and_keeps_counters) {
  TempDir dir;
  {
    Log<> log(dir.path());
    for (std::uint64_t i = 0; i < 20; ++i) log.Append({0, Value(i)});
  }
  {
    std::ofstream out(FirstStore(dir.path()), std::ios::binary | std::ios::app);
    out << std::string(10, '\x7f');
  }
  Log<> log(dir.path());
  log.Append({0, "a"});
  BOOST_TEST(log.Stats().recovery.bytes_cut == 10U);
  log.Reset();
  const LogStats s = log.Stats();
  BOOST_TEST(s.recovery.bytes_cut == 0U);
  BOOST_TEST(s.recovery.actions.empty(), Actions(s));
  BOOST_TEST(s.appends == 1U);
  BOOST_TEST(s.next_offset == 0U);
}

BOOST_AUTO_TEST_CASE(segments_after_an_interrupted_seal_are_removed_and_reported) {
  TempDir dir;
  TempDir copy;
  const Config c = logsync::test::SmallSegments(4096);
  Log<> log(dir.path(), c);  // sync::None: the active segment never syncs
  for (std::uint64_t i = 0; i < 400; ++i) log.Append({0, Value(i)});
  BOOST_TEST_REQUIRE(log.SegmentCount() >= 3U);
  std::vector<fs::path> stores;
  for (const auto& e : fs::directory_iterator(dir.path()))
    if (e.path().extension() == ".store") stores.push_back(copy / e.path().filename().string());
  std::sort(stores.begin(), stores.end());
  // The rolled segments are sealed in the background: wait for that.
  for (std::size_t i = 0; i + 1 < stores.size(); ++i) {
    const std::uint64_t base = std::stoull(stores[i].stem().string());
    for (int tries = 0; tries < 500 && !logsync::Segment::SealedOnDisk(dir.path(), base); ++tries)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    BOOST_TEST_REQUIRE(logsync::Segment::SealedOnDisk(dir.path(), base));
  }
  for (const auto& e : fs::directory_iterator(dir.path())) fs::copy_file(e.path(), copy / e.path().filename().string());
  // The segment before the newest as a crash in its seal leaves it: no
  // index, its last frame torn. It then ends before the newest begins.
  const fs::path torn = stores[stores.size() - 2], newest = stores.back();
  fs::remove(fs::path(torn).replace_extension(".index"));
  fs::resize_file(torn, fs::file_size(torn) - 3);
  Log<> recovered(copy.path(), c);
  const LogStats s = recovered.Stats();
  BOOST_TEST(s.recovery.segments_removed == 1U);
  BOOST_TEST(HasActionWith(s, newest.filename().string() + ": removed", "seal"), Actions(s));
  BOOST_TEST(HasActionWith(s, torn.filename().string() + ": cut", "bytes at byte"), Actions(s));
  BOOST_TEST(s.recovery.bytes_cut > 0U);
  BOOST_TEST(!fs::exists(newest));
  BOOST_TEST(recovered.NextOffset() == std::stoull(newest.stem().string()) - 1);
  BOOST_TEST(s.segments == recovered.SegmentCount());
}

BOOST_AUTO_TEST_CASE(counters_are_exact_under_concurrent_appends_and_stats) {
  TempDir dir;
  Log<> log(dir.path(), logsync::test::SmallSegments(64 << 10));
  constexpr int kThreads = 4, kEach = 2000;
  std::atomic<bool> done{false};
  std::uint64_t calls = 0, went_back = 0;  // checked after the join (Boost.Test asserts on one thread)
  std::thread watcher([&] {
    std::uint64_t last = 0;
    while (!done.load()) {
      const LogStats s = log.Stats();
      went_back += s.records < last || s.segments == 0;
      last = s.records;
      ++calls;
    }
  });
  std::vector<std::thread> appenders;
  for (int t = 0; t < kThreads; ++t)
    appenders.emplace_back([&] {
      for (int i = 0; i < kEach; ++i) {
        if (i % 10 == 0) {
          const std::vector<Record> batch(3, Record{0, "bb"});
          log.AppendBatch(batch);
        } else {
          log.Append({0, "a"});
        }
      }
    });
  for (auto& t : appenders) t.join();
  done = true;
  watcher.join();
  BOOST_TEST(went_back == 0U);
  BOOST_TEST(calls > 0U);
  const LogStats s = log.Stats();
  BOOST_TEST(s.appends == std::uint64_t{kThreads} * kEach);
  BOOST_TEST(s.records == std::uint64_t{kThreads} * (kEach / 10 * 3 + kEach / 10 * 9));
  BOOST_TEST(s.records == s.next_offset);
  BOOST_TEST(s.segments == log.SegmentCount());
}
