#define BOOST_TEST_MODULE log_reader_test
#include <boost/test/unit_test.hpp>

// LogReader: a log opened read-only, beside its writer. Nothing it does
// changes a byte of the directory; it follows appends, rolls, Truncate and
// kill -9 of a writer in another process; damage is reported, never cut.

#include <logsync/logsync.hpp>

#include "support/config.hpp"
#include "support/frames.hpp"
#include "support/temp_dir.hpp"

#include <algorithm>
#include <csignal>
#include <map>
#include <random>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

using logsync::Config;
using logsync::Log;
using logsync::LogReader;
using logsync::Record;
using logsync::test::TempDir;
namespace fs = std::filesystem;

namespace {

std::string Value(std::uint64_t i) { return "record-" + std::to_string(i) + std::string(i % 37, 'y'); }

Config Small() { return logsync::test::SmallSegments(4096); }

// Every file of a directory and its bytes.
std::map<std::string, std::string> Contents(const fs::path& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out[e.path().filename().string()] = logsync::test::ReadFile(e.path());
  return out;
}

void Append(Log<>& log, std::uint64_t n) {
  for (std::uint64_t i = 0; i < n; ++i) log.Append(Record{0, Value(log.NextOffset())});
}

// Reads every record the reader sees and checks it; returns how many.
std::uint64_t CheckAll(LogReader<>& reader) {
  std::uint64_t n = 0;
  reader.ForEach(reader.LowestOffset(), [&](const Record& r) {
    BOOST_TEST(r.value == Value(r.offset));
    ++n;
  });
  return n;
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_missing_path_or_a_directory_without_a_log_is_an_error_and_nothing_is_created) {
  TempDir dir;
  const fs::path missing = dir / "no-such-log";
  try {
    LogReader<> r(missing);
    BOOST_ERROR("opened a missing path");
  } catch (const logsync::IoError& e) {
    BOOST_TEST(e.error() == ENOENT);
  }
  BOOST_TEST(!fs::exists(missing));
  logsync::test::WriteFile(dir / "file", "x");
  BOOST_CHECK_EXCEPTION(LogReader<>(dir / "file"), logsync::IoError,
                        [](const logsync::IoError& e) { return e.error() == ENOTDIR; });
  fs::create_directory(dir / "empty");
  BOOST_CHECK_THROW(LogReader<>(dir / "empty"), logsync::IoError);
  BOOST_TEST(fs::is_empty(dir / "empty"));
}

BOOST_AUTO_TEST_CASE(reads_what_the_writer_appends_across_rolls_while_it_holds_the_lock) {
  TempDir dir;
  Log<> log(dir.path(), Small());
  Append(log, 500);
  LogReader<> reader(dir.path());
  BOOST_TEST(reader.NextOffset() == 500u);
  BOOST_TEST(reader.Segments().size() == log.SegmentCount());
  BOOST_TEST(CheckAll(reader) == 500u);
  BOOST_TEST(reader.Read(123).value == Value(123));
  BOOST_CHECK_THROW(reader.Read(500), logsync::OffsetOutOfRange);

  Append(log, 700);  // more segments, seals in the background
  BOOST_TEST(reader.NextOffset() == 500u);  // until Refresh
  // Records appended since the reader last looked are not a torn tail.
  BOOST_TEST(reader.Verify().tail_bytes == 0u);
  BOOST_TEST(reader.Refresh() == 700u);
  BOOST_TEST(reader.NextOffset() == 1200u);
  BOOST_TEST(CheckAll(reader) == 1200u);
  BOOST_TEST(reader.Refresh() == 0u);
  BOOST_TEST(reader.Read(1199).value == Value(1199));

  // View and payload iteration from the middle, and an early stop.
  std::uint64_t seen = 0;
  const std::uint64_t stop = reader.ForEachPayload(600, [&](const logsync::Payload& p) {
    BOOST_TEST(logsync::test::AsString(p.bytes).find(Value(p.offset)) != std::string::npos);
    return ++seen < 10;
  });
  BOOST_TEST(seen == 10u);
  BOOST_TEST(stop == 610u);
  BOOST_TEST(reader.View(7, [](std::span<const std::byte> b) { return b.size(); }) > 0u);
}

BOOST_AUTO_TEST_CASE(follows_truncate_and_reports_a_reset) {
  TempDir dir;
  Log<> log(dir.path(), Small());
  Append(log, 600);
  LogReader<> reader(dir.path());
  const std::uint64_t segs = reader.Segments().size();
  log.Truncate(300);
  Append(log, 10);
  reader.Refresh();
  BOOST_TEST(reader.Segments().size() < segs);
  BOOST_TEST(reader.LowestOffset() == log.LowestOffset());
  BOOST_TEST(reader.NextOffset() == 610u);
  BOOST_CHECK_THROW(reader.Read(0), logsync::OffsetOutOfRange);
  BOOST_TEST(CheckAll(reader) == 610u - log.LowestOffset());

  log.Truncate(log.HighestOffset());  // the active segment too: the log rolls
  Append(log, 5);
  reader.Refresh();
  BOOST_TEST(reader.LowestOffset() == 610u);
  BOOST_TEST(reader.NextOffset() == 615u);

  log.Reset();
  BOOST_CHECK_THROW(reader.Refresh(), logsync::StateError);
}

BOOST_AUTO_TEST_CASE(changes_nothing_reports_a_torn_tail_and_recovery_cuts_it_only_in_the_writer) {
  TempDir dir;
  {
    Log<> log(dir.path(), Small());
    Append(log, 300);
  }
  fs::path newest;
  for (const auto& e : fs::directory_iterator(dir.path()))
    if (e.path().extension() == ".store" && e.path() > newest) newest = e.path();
  logsync::test::AppendToFile(newest, std::string(100, '\x5a'));  // garbage after the last record
  const auto before = Contents(dir.path());
  {
    LogReader<> reader(dir.path());
    BOOST_TEST(reader.NextOffset() == 300u);
    BOOST_TEST(CheckAll(reader) == 300u);
    const auto report = reader.Verify();
    BOOST_TEST(report.Ok());
    BOOST_TEST(report.records == 300u);
    BOOST_TEST(report.tail_bytes == 100u);
    reader.Refresh();
    BOOST_TEST(reader.NextOffset() == 300u);
  }
  BOOST_TEST((Contents(dir.path()) == before), "the reader changed the directory");
  Log<> log(dir.path(), Small());  // the writer's recovery cuts it
  BOOST_TEST(log.NextOffset() == 300u);
  BOOST_TEST(LogReader<>(dir.path()).Verify().tail_bytes == 0u);
}

BOOST_AUTO_TEST_CASE(damage_in_a_sealed_segment_is_reported_and_left_alone) {
  TempDir dir;
  {
    Log<> log(dir.path(), Small());
    Append(log, 400);
  }
  fs::path oldest = dir / (logsync::detail::SegmentStem(0) + ".store");
  std::string bytes = logsync::test::ReadFile(oldest);
  bytes[200] = static_cast<char>(bytes[200] ^ 0x01);  // inside a record's frame
  logsync::test::WriteFile(oldest, bytes);
  const auto before = Contents(dir.path());
  LogReader<> reader(dir.path());
  BOOST_TEST(reader.NextOffset() == 400u);  // the index vouches for the segment's extent
  const auto report = reader.Verify();
  BOOST_REQUIRE(!report.Ok());
  BOOST_TEST(report.problems.front().path == oldest);
  BOOST_TEST(report.records < 400u);
  std::uint64_t read = 0;
  BOOST_CHECK_THROW(reader.ForEach(0, [&](const Record&) { ++read; }), logsync::CorruptionError);
  BOOST_TEST(read < 20u);
  BOOST_TEST(reader.Read(399).value == Value(399));
  BOOST_TEST((Contents(dir.path()) == before), "the reader changed the directory");
}

BOOST_AUTO_TEST_CASE(reads_work_without_an_index_and_a_foreign_index_is_reported) {
  TempDir dir;
  {
    Log<> log(dir.path(), Small());
    Append(log, 400);
  }
  fs::remove(dir / (logsync::detail::SegmentStem(0) + ".index"));
  LogReader<> reader(dir.path());
  BOOST_TEST(reader.NextOffset() == 400u);
  BOOST_TEST(reader.Read(3).value == Value(3));
  BOOST_TEST(CheckAll(reader) == 400u);
  const auto report = reader.Verify();
  BOOST_TEST(report.Ok());  // derived data: the writer builds it on open
  BOOST_TEST(report.records == 400u);
  BOOST_TEST(reader.Segments().front().index_file_bytes == 0u);
  // An index that is another segment's is a problem.
  fs::copy_file(dir / (logsync::detail::SegmentStem(reader.Segments()[1].base) + ".index"),
                dir / (logsync::detail::SegmentStem(0) + ".index"));
  const auto foreign = LogReader<>(dir.path()).Verify();
  BOOST_TEST(foreign.problems.size() == 1u);
  BOOST_TEST(foreign.records == 400u);
}

BOOST_AUTO_TEST_CASE(its_byte_stream_restores_to_the_same_log) {
  TempDir dir, copy;
  Log<> log(dir.path(), Small());
  Append(log, 900);
  LogReader<> reader(dir.path());
  auto stream = reader.Bytes();
  BOOST_TEST(logsync::RestoreLog(copy / "log", stream) == 900u);
  Log<> restored(copy / "log", Small());
  BOOST_TEST(restored.NextOffset() == 900u);
  BOOST_TEST(restored.Read(876).value == Value(876));
  BOOST_TEST(restored.Verify().Ok());
}

// A writer process appends (records and batches) into small segments until
// it is killed with SIGKILL; this process tails the log with one LogReader
// throughout, checking every record in order, across kills and the
// restarted writers' recoveries. At the end the log, reopened, holds every
// record the reader saw, with the bytes it saw.
BOOST_AUTO_TEST_CASE(tails_a_writer_in_another_process_across_rolls_and_kill_9) {
  TempDir dir;
  const Config c = logsync::test::SmallSegments(64 << 10);
  { Log<> log(dir.path(), c); }
  LogReader<> reader(dir.path());
  std::mt19937 rng(7);
  std::uint64_t seen = 0;
  const int rounds = 12;
  for (int round = 0; round < rounds; ++round) {
    const pid_t pid = ::fork();
    BOOST_REQUIRE(pid >= 0);
    if (pid == 0) {
      try {
        Log<> log(dir.path(), c);
        for (std::uint64_t k = 0;; ++k) {
          const std::uint64_t next = log.NextOffset();
          if (k % 7 == 3) {
            std::vector<Record> batch;
            for (std::uint64_t i = 0; i < 5; ++i) batch.push_back(Record{0, Value(next + i)});
            log.AppendBatch(batch);
          } else {
            log.Append(Record{0, Value(next)});
          }
          // Paced, so that the log stays small whatever the reader's speed:
          // the kill lands among appends all the same.
          if (k % 16 == 15) ::usleep(200);
        }
      } catch (...) {
        ::_exit(2);
      }
    }
    // Tail until this writer has added some hundreds of records, then kill it.
    const std::uint64_t target = seen + 200 + rng() % 800;
    while (seen < target) {
      if (!reader.WaitFor(seen, std::chrono::seconds(30))) {
        BOOST_ERROR("round " << round << ": no record " << seen << " within 30 s");
        break;
      }
      reader.ForEach(seen, [&](const Record& r) {
        if (r.offset != seen || r.value != Value(seen)) BOOST_ERROR("offset " << seen << " read wrong");
        ++seen;
      });
    }
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    BOOST_TEST((WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL), "writer ended otherwise: " << status);
  }
  reader.Refresh();
  reader.ForEach(seen, [&](const Record& r) {
    if (r.value != Value(r.offset)) BOOST_ERROR("offset " << r.offset << " read wrong");
    seen = r.offset + 1;
  });
  const auto segments = reader.Segments();
  BOOST_TEST(segments.size() > 3u);
  for (std::size_t k = 1; k < segments.size(); ++k)
    BOOST_TEST(segments[k].base == segments[k - 1].base + segments[k - 1].records);
  Log<> log(dir.path(), c);
  BOOST_TEST(log.NextOffset() >= seen, "the reader saw records recovery cut");
  std::uint64_t n = 0;
  for (const Record& r : log.Scan(0)) {
    if (r.value != Value(n)) {
      BOOST_ERROR("offset " << n << " holds the wrong bytes");
      break;
    }
    ++n;
  }
  BOOST_TEST(n == log.NextOffset());
  BOOST_TEST_MESSAGE(rounds << " writers killed, " << seen << " records tailed, " << reader.Segments().size()
                            << " segments");
}

// Hostile files: random damage (flipped bytes, garbage runs, files cut
// short or grown) to the stores and indexes of a log of several segments.
// Whatever the damage, the reader opens, reads (throwing only the errors it
// documents), verifies without throwing, and leaves every byte as it was.
BOOST_AUTO_TEST_CASE(random_damage_never_crashes_the_reader_nor_changes_a_byte) {
  std::mt19937_64 rng(11);
  for (int round = 0; round < 60; ++round) {
    TempDir dir, image;
    {
      Log<> log(dir.path(), Small());
      Append(log, 100 + rng() % 400);
      // Odd rounds: the files as a crash leaves them (a copy while open:
      // allocated ahead, unsealed, no checkpoint).
      if (round % 2 == 1)
        for (const auto& [name, bytes] : Contents(dir.path())) logsync::test::WriteFile(image / name, bytes);
    }
    const fs::path at = round % 2 == 0 ? dir.path() : image.path();
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(at))
      if (e.path().extension() == ".store" || e.path().extension() == ".index") files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (int d = 0, n = 1 + static_cast<int>(rng() % 4); d < n; ++d) {
      const fs::path& f = files[rng() % files.size()];
      std::string bytes = logsync::test::ReadFile(f);
      switch (rng() % 4) {
        case 0:  // flip bits
          for (int k = 0; k < 8 && !bytes.empty(); ++k) bytes[rng() % bytes.size()] ^= static_cast<char>(1 + rng() % 255);
          break;
        case 1:  // a run of garbage
          if (!bytes.empty()) {
            const std::size_t from = rng() % bytes.size();
            for (std::size_t k = from; k < std::min(bytes.size(), from + 1 + rng() % 300); ++k)
              bytes[k] = static_cast<char>(rng());
          }
          break;
        case 2:  // cut short
          bytes.resize(bytes.empty() ? 0 : rng() % bytes.size());
          break;
        default:  // grown with garbage
          for (std::size_t k = 0, m = 1 + rng() % 200; k < m; ++k) bytes.push_back(static_cast<char>(rng()));
      }
      logsync::test::WriteFile(f, bytes);
    }
    const auto before = Contents(at);
    try {
      LogReader<> reader(at);
      const auto report = reader.Verify();
      BOOST_TEST(report.records <= reader.NextOffset() - reader.LowestOffset());
      try {
        reader.ForEach(reader.LowestOffset(), [](const Record&) {});
      } catch (const logsync::CorruptionError&) {
      }
      for (int k = 0; k < 50 && !reader.Empty(); ++k) {
        const std::uint64_t o = reader.LowestOffset() + rng() % (reader.NextOffset() - reader.LowestOffset());
        try {
          const Record r = reader.Read(o);
          BOOST_TEST(r.value == Value(o), "round " << round << ": offset " << o << " read wrong bytes");
        } catch (const logsync::CorruptionError&) {
        }
      }
      reader.Refresh();
    } catch (const logsync::CorruptionError&) {
    }
    BOOST_TEST((Contents(at) == before), "round " << round << ": the reader changed the directory");
  }
}
