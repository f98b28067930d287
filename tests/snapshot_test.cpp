#define BOOST_TEST_MODULE snapshot_test
#include <boost/test/unit_test.hpp>

#include <logsync/logsync.hpp>

#include "support/config.hpp"
#include "support/frames.hpp"
#include "support/temp_dir.hpp"

#include <sys/stat.h>

#include <atomic>
#include <cstdio>
#include <map>
#include <string>
#include <thread>
#include <vector>

namespace logsync {
inline std::ostream& boost_test_print_type(std::ostream& os, const Record& r) {
  return os << r.offset << ":" << r.value;
}
}  // namespace logsync

using logsync::Config;
using logsync::Log;
using logsync::Record;
using logsync::test::TempDir;

namespace {

Config Small(std::uint64_t store_bytes = 1024) { return logsync::test::SmallSegments(store_bytes); }

std::string Value(std::uint64_t i) { return "record-" + std::to_string(i) + std::string(i % 29, 'v'); }

std::vector<Record> All(const Log<>& log) {
  std::vector<Record> out;
  for (const Record& r : log.Scan(log.LowestOffset())) out.push_back(r);
  return out;
}

std::vector<std::byte> Stream(const Log<>& log) {
  std::vector<std::byte> out;
  auto reader = log.Reader();
  std::array<std::byte, 777> buf;  // an odd size: reads cross frame and store boundaries
  while (std::size_t n = reader.Read(buf)) out.insert(out.end(), buf.begin(), buf.begin() + static_cast<long>(n));
  return out;
}

std::vector<std::filesystem::path> Entries(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) out.push_back(e.path());
  return out;
}

struct stat Stat(const std::filesystem::path& p) {
  struct stat st {};
  BOOST_REQUIRE(::stat(p.c_str(), &st) == 0);
  return st;
}

}  // namespace

BOOST_AUTO_TEST_CASE(snapshot_of_empty_log) {
  TempDir dir;
  Log<> log(dir / "log");
  BOOST_TEST(log.Snapshot(dir / "snap") == 0U);
  Log<> snap(dir / "snap");
  BOOST_TEST(snap.Empty());
  BOOST_TEST(snap.NextOffset() == 0U);
  BOOST_TEST(snap.Append({.value = "x"}) == 0U);
  BOOST_TEST(log.Empty());
}

BOOST_AUTO_TEST_CASE(snapshot_of_multi_segment_log) {
  TempDir dir;
  Log<> log(dir / "log", Small());
  for (std::uint64_t i = 0; i < 300; ++i) log.Append({.value = Value(i)});
  BOOST_REQUIRE(log.SegmentCount() > 3U);
  BOOST_TEST(log.Snapshot(dir / "snap") == 300U);

  // Sealed segments are shared (same inode); the active store is a copy.
  std::size_t linked = 0;
  for (const auto& p : Entries(dir / "snap")) {
    const auto original = dir / "log" / p.filename();
    if (!std::filesystem::exists(original)) continue;
    if (Stat(p).st_ino == Stat(original).st_ino) ++linked;
  }
  BOOST_TEST(linked == 2 * (log.SegmentCount() - 1));

  Log<> snap(dir / "snap", Small());
  BOOST_TEST(snap.SegmentCount() == log.SegmentCount());
  BOOST_TEST(snap.NextOffset() == 300U);
  const auto records = All(snap);
  BOOST_TEST(records == All(log));
  BOOST_TEST(snap.Verify().Ok());
}

BOOST_AUTO_TEST_CASE(original_unaffected_by_snapshot) {
  TempDir dir;
  Log<> log(dir / "log", Small());
  for (std::uint64_t i = 0; i < 200; ++i) log.Append({.value = Value(i)});
  const std::uint64_t at = log.Snapshot(dir / "snap");
  BOOST_TEST(at == 200U);

  // The files the snapshot shares, as they are now.
  std::map<std::filesystem::path, std::string> shared;
  for (const auto& p : Entries(dir / "snap"))
    if (Stat(p).st_nlink > 1) shared[p] = logsync::test::ReadFile(p);
  BOOST_REQUIRE(!shared.empty());

  for (std::uint64_t i = 200; i < 400; ++i) BOOST_TEST(log.Append({.value = Value(i)}) == i);
  {
    Log<> snap(dir / "snap", Small());
    BOOST_TEST(snap.NextOffset() == at);
    for (std::uint64_t i = 0; i < at; ++i) BOOST_TEST(snap.Read(i).value == Value(i));
    // The snapshot is a log of its own: it goes on at its next offset.
    BOOST_TEST(snap.Append({.value = "snapshot-only"}) == at);
    BOOST_TEST(snap.Read(at).value == "snapshot-only");
    snap.Truncate(at - 1);  // and removing its segments unlinks only its names
  }
  for (const auto& [p, bytes] : shared) {
    const auto original = dir / "log" / p.filename();
    BOOST_TEST(logsync::test::ReadFile(original) == bytes);
  }
  BOOST_TEST(log.NextOffset() == 400U);
  for (std::uint64_t i = 0; i < 400; ++i) BOOST_TEST(log.Read(i).value == Value(i));
  log.Close();
  Log<> reopened(dir / "log", Small());
  BOOST_TEST(reopened.NextOffset() == 400U);
  BOOST_TEST(reopened.Verify().Ok());
}

BOOST_AUTO_TEST_CASE(snapshot_refuses_non_empty_dir) {
  TempDir dir;
  Log<> log(dir / "log");
  log.Append({.value = "a"});
  std::filesystem::create_directories(dir / "full");
  logsync::test::WriteFile(dir / "full" / "keep", "mine");
  BOOST_CHECK_THROW(log.Snapshot(dir / "full"), logsync::StateError);
  BOOST_TEST(Entries(dir / "full").size() == 1U);
  logsync::test::WriteFile(dir / "file", "mine");
  BOOST_CHECK_THROW(log.Snapshot(dir / "file"), logsync::StateError);
  // An existing empty directory is fine.
  std::filesystem::create_directories(dir / "empty");
  BOOST_TEST(log.Snapshot(dir / "empty") == 1U);
  log.Close();
  BOOST_CHECK_THROW(log.Snapshot(dir / "after-close"), logsync::StateError);
}

BOOST_AUTO_TEST_CASE(snapshot_while_two_threads_append) {
  TempDir dir;
  Log<> log(dir / "log", Small(4096));
  constexpr int kPerThread = 1500;
  std::atomic<std::uint64_t> done[2] = {0, 0};  // records each writer has had acknowledged
  auto writer = [&](int w) {
    for (int i = 0; i < kPerThread; ++i) {
      log.Append({.value = "w" + std::to_string(w) + "-" + std::to_string(i) + std::string(i % 50, 'p')});
      done[w].fetch_add(1, std::memory_order_release);
    }
  };
  std::jthread a(writer, 0), b(writer, 1);
  // Wait (on the writers' progress, not a clock) until both are under way.
  while (done[0].load(std::memory_order_acquire) < 200 || done[1].load(std::memory_order_acquire) < 200)
    std::this_thread::yield();
  const std::uint64_t acked = done[0].load() + done[1].load();
  const std::uint64_t at = log.Snapshot(dir / "snap");
  a.join();
  b.join();
  BOOST_TEST(at >= acked);  // every acknowledged append is in it
  BOOST_TEST(log.NextOffset() == 2U * kPerThread);

  Log<> snap(dir / "snap", Small(4096));
  BOOST_TEST(snap.NextOffset() == at);
  BOOST_TEST(snap.Verify().Ok());
  // A prefix of the log, record for record; each writer's records in order.
  int next_seq[2] = {0, 0};
  for (const Record& r : snap.Scan(0)) {
    BOOST_TEST(r == log.Read(r.offset));
    int w = -1, seq = -1;
    BOOST_REQUIRE(std::sscanf(r.value.c_str(), "w%d-%d", &w, &seq) == 2);
    BOOST_REQUIRE((w == 0 || w == 1));
    BOOST_TEST(seq == next_seq[w]);
    next_seq[w] = seq + 1;
  }
  BOOST_TEST(static_cast<std::uint64_t>(next_seq[0] + next_seq[1]) == at);
  BOOST_TEST(snap.Append({.value = "after"}) == at);
}

BOOST_AUTO_TEST_CASE(restore_from_reader_stream) {
  TempDir dir;
  Log<> log(dir / "log", Small());
  for (std::uint64_t i = 0; i < 300; ++i) log.Append({.value = Value(i)});
  log.Truncate(40);  // the stream starts at a segment boundary past 0
  BOOST_REQUIRE(log.LowestOffset() > 0U);

  const auto bytes = Stream(log);
  BOOST_TEST(logsync::RestoreLog(dir / "from-bytes", bytes) == 300U);
  {
    Log<> restored(dir / "from-bytes", Small());
    BOOST_TEST(restored.LowestOffset() == log.LowestOffset());
    BOOST_TEST(restored.NextOffset() == 300U);
    BOOST_TEST(restored.SegmentCount() == log.SegmentCount());
    BOOST_TEST(All(restored) == All(log));
    BOOST_TEST(restored.Verify().Ok());
    BOOST_TEST(restored.Append({.value = "next"}) == 300U);
  }
  // Straight from the reader, without holding the stream in memory.
  auto reader = log.Reader();
  BOOST_TEST(logsync::RestoreLog(dir / "from-reader", reader, Small()) == 300U);
  Log<> restored(dir / "from-reader", Small());
  BOOST_TEST(All(restored) == All(log));
  // Only the restored log is there: no staging directory is left.
  for (const auto& p : Entries(dir.path())) BOOST_TEST(p.filename().string()[0] != '.');
}

BOOST_AUTO_TEST_CASE(restore_of_empty_log) {
  TempDir dir;
  Config c;
  c.segment.initial_offset = 77;
  Log<> log(dir / "log", c);
  BOOST_TEST(logsync::RestoreLog(dir / "copy", Stream(log)) == 77U);
  Log<> restored(dir / "copy");
  BOOST_TEST(restored.Empty());
  BOOST_TEST(restored.NextOffset() == 77U);
}

BOOST_AUTO_TEST_CASE(restore_from_corrupted_stream_leaves_nothing) {
  TempDir dir;
  Log<> log(dir / "log", Small());
  for (std::uint64_t i = 0; i < 120; ++i) log.Append({.value = Value(i)});
  const auto good = Stream(log);
  const std::size_t second_store = [&] {
    // Where the second store header starts (the first frame after it is offset b).
    for (std::size_t i = 16; i + 6 <= good.size(); ++i)
      if (std::memcmp(good.data() + i, "LGSYNC", 6) == 0) return i;
    return std::size_t{0};
  }();
  BOOST_REQUIRE(second_store > 0U);

  auto flipped = [&](std::size_t at) {
    auto b = good;
    b[at] ^= std::byte{0x40};
    return b;
  };
  std::vector<std::pair<std::string, std::vector<std::byte>>> cases;
  cases.emplace_back("bad magic", flipped(0));
  cases.emplace_back("bad version", flipped(6));
  cases.emplace_back("payload byte (CRC)", flipped(16 + 16 + 3));
  cases.emplace_back("frame offset", flipped(16 + 8));
  cases.emplace_back("frame length", flipped(16 + 1));
  cases.emplace_back("second store's base", flipped(second_store + 8));
  cases.emplace_back("last byte", flipped(good.size() - 1));
  cases.emplace_back("cut inside a frame", std::vector<std::byte>(good.begin(), good.end() - 5));
  cases.emplace_back("cut inside a frame header", std::vector<std::byte>(good.begin(), good.begin() + 16 + 7));
  cases.emplace_back("empty", std::vector<std::byte>{});
  {
    auto b = good;  // a frame dropped: the next one holds the wrong offset
    b.erase(b.begin() + 16, b.begin() + 16 + 16 + static_cast<long>(Value(0).size()));
    cases.emplace_back("frame missing", b);
  }
  for (const auto& [name, bytes] : cases) {
    BOOST_TEST_CONTEXT(name) {
      BOOST_CHECK_THROW(logsync::RestoreLog(dir / "target", bytes), logsync::CorruptionError);
      BOOST_TEST(!std::filesystem::exists(dir / "target"));
      BOOST_TEST(Entries(dir.path()).size() == 1U);  // only "log": no staging directory left
    }
  }
  // The good stream restores into the same place afterwards.
  BOOST_TEST(logsync::RestoreLog(dir / "target", good) == 120U);
}

BOOST_AUTO_TEST_CASE(restore_refuses_non_empty_target) {
  TempDir dir;
  Log<> log(dir / "log");
  log.Append({.value = "a"});
  const auto bytes = Stream(log);
  std::filesystem::create_directories(dir / "busy");
  logsync::test::WriteFile(dir / "busy" / "keep", "mine");
  BOOST_CHECK_THROW(logsync::RestoreLog(dir / "busy", bytes), logsync::StateError);
  BOOST_TEST(logsync::test::ReadFile(dir / "busy" / "keep") == "mine");
  std::filesystem::create_directories(dir / "empty");
  BOOST_TEST(logsync::RestoreLog(dir / "empty", bytes) == 1U);
  Log<> restored(dir / "empty");
  BOOST_TEST(restored.Read(0).value == "a");
}
