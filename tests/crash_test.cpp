#define BOOST_TEST_MODULE crash_test
#include <boost/test/unit_test.hpp>

// Crashes: a simulated power loss at every system call of a workload
// (support/power_loss.hpp), and kill -9 of a process appending.

#include <logsync/logsync.hpp>

#include "support/config.hpp"
#include "support/power_loss.hpp"
#include "support/temp_dir.hpp"

#include <csignal>
#include <random>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

using logsync::Config;
using logsync::Log;
using logsync::Record;
using logsync::test::PowerLoss;
using logsync::test::TempDir;

namespace {

Config Small(std::uint64_t store_bytes, std::uint64_t index_entries = 0) {
  return logsync::test::SmallSegments(store_bytes, index_entries * logsync::kIndexEntryBytes);
}

std::string Value(std::uint64_t i) { return "record-" + std::to_string(i) + std::string(i % 29, 'x'); }

const char* KindName(PowerLoss::Kind k) {
  switch (k) {
    case PowerLoss::Kind::kDurable: return "durable";
    case PowerLoss::Kind::kTorn: return "torn";
    case PowerLoss::Kind::kShuffled: return "shuffled";
  }
  return "?";
}

// Opens every crash image and checks recovery: it opens, keeps every
// acknowledged record, holds only records that were appended, each intact
// (a clean prefix), and goes on appending; a second open agrees.
template <class S>
void ReplayImages(const std::vector<PowerLoss::Image>& images, const Config& c) {
  using L = Log<Record, logsync::DefaultCodec<Record>, S>;
  std::size_t n = 0;
  for (const auto& img : images) {
    TempDir dir;
    PowerLoss::Materialize(img, dir.path());
    const std::string what = std::string(KindName(img.kind)) + " image before call " + std::to_string(img.call) +
                             " (" + img.call_name + ")";
    std::uint64_t next = 0;
    try {
      L log(dir.path(), c);
      next = log.NextOffset();
      BOOST_TEST(next >= img.acked, what << ": lost acknowledged records");
      BOOST_TEST(next <= img.appended, what << ": holds records never appended");
      std::uint64_t o = log.LowestOffset();
      for (const Record& r : log.Scan(0)) {
        BOOST_TEST(r.offset == o, what);
        BOOST_TEST(r.value == Value(o), what << " offset " << o);
        ++o;
      }
      BOOST_TEST(o == next, what);
      BOOST_TEST(log.Verify().Ok(), what);
      BOOST_TEST(log.Append(Record{0, Value(next)}) == next, what);
    } catch (const std::exception& e) {
      BOOST_ERROR(what << ": " << e.what());
      continue;
    }
    L again(dir.path(), c);
    BOOST_TEST(again.NextOffset() == next + 1, what);
    ++n;
  }
  BOOST_TEST_MESSAGE(n << " crash images recovered");
}

}  // namespace

// Appends, batches, rolls, a reopen and a truncation under sync::Always:
// a power loss at any call keeps every acknowledged record.
BOOST_AUTO_TEST_CASE(power_loss_at_every_call_sync_always) {
  using L = Log<Record, logsync::DefaultCodec<Record>, logsync::sync::Always>;
  TempDir root;
  const auto dir = root / "log";
  std::filesystem::create_directories(dir);
  const Config c = Small(600, 64);
  std::vector<PowerLoss::Image> images;
  {
    PowerLoss pl(dir, 42);
    std::uint64_t next = 0;
    auto append = [&](L& log, std::size_t batch) {
      std::vector<Record> recs;
      for (std::size_t i = 0; i < batch; ++i) recs.push_back(Record{0, Value(next + i)});
      pl.SetProgress(next, next + batch);
      if (batch == 1)
        BOOST_REQUIRE(log.Append(recs[0]) == next);
      else
        BOOST_REQUIRE(log.AppendBatch(recs) == next);
      next += batch;
      pl.SetProgress(next, next);
      pl.CrashHere("after append " + std::to_string(next - 1));
    };
    {
      L log(dir, c);
      for (int i = 0; i < 60; ++i) append(log, i % 7 == 6 ? 4 : 1);
      BOOST_REQUIRE(log.SegmentCount() > 3U);
    }  // clean close
    {
      L log(dir, c);  // crash points inside a recovery, too
      for (int i = 0; i < 10; ++i) append(log, 1);
      log.Truncate(30);
      for (int i = 0; i < 5; ++i) append(log, i == 2 ? 3 : 1);
    }
    images = pl.Images();
    BOOST_TEST_MESSAGE(pl.Calls() << " crash points, " << images.size() << " images");
  }
  BOOST_REQUIRE(images.size() > 300U);
  ReplayImages<logsync::sync::Always>(images, c);
}

// sync::None with explicit Sync() calls: what Sync() covered survives, the
// rest is lost as a suffix.
BOOST_AUTO_TEST_CASE(power_loss_at_every_call_sync_none_with_explicit_syncs) {
  TempDir root;
  const auto dir = root / "log";
  std::filesystem::create_directories(dir);
  const Config c = Small(1000, 64);
  std::vector<PowerLoss::Image> images;
  {
    PowerLoss pl(dir, 7);
    Log<> log(dir, c);
    std::uint64_t synced = 0;
    for (std::uint64_t i = 0; i < 40; ++i) {
      pl.SetProgress(synced, i + 1);
      BOOST_REQUIRE(log.Append(Record{0, Value(i)}) == i);
      pl.CrashHere("after append " + std::to_string(i));
      if (i % 6 == 5) {
        log.Sync();
        synced = i + 1;
      }
    }
    pl.SetProgress(synced, 40);
    images = pl.Images();
  }
  BOOST_TEST_MESSAGE(images.size() << " images");
  BOOST_REQUIRE(images.size() > 150U);
  ReplayImages<logsync::sync::None>(images, c);
}

// sync::None with segments that roll every few records: rolled segments are
// sealed by a background thread while the appends go on, so crash points
// fall inside seals, with later segments present (their names made durable
// by a seal's directory sync). Whatever a crash cuts short, the log opens as
// a prefix holding every record a Sync() covered.
BOOST_AUTO_TEST_CASE(power_loss_at_every_call_while_rolled_segments_are_sealed_in_the_background) {
  TempDir root;
  const auto dir = root / "log";
  std::filesystem::create_directories(dir);
  const Config c = Small(160, 64);  // 3-5 records per segment
  std::vector<PowerLoss::Image> images;
  {
    PowerLoss pl(dir, 11);
    Log<> log(dir, c);
    std::uint64_t synced = 0;
    for (std::uint64_t i = 0; i < 90; ++i) {
      pl.SetProgress(synced, i + 1);
      BOOST_REQUIRE(log.Append(Record{0, Value(i)}) == i);
      pl.CrashHere("after append " + std::to_string(i));
      if (i % 30 == 29) {
        log.Sync();
        synced = i + 1;
      }
    }
    BOOST_REQUIRE(log.SegmentCount() > 15U);
    pl.SetProgress(synced, 90);
    log.Close();
    images = pl.Images();
  }
  BOOST_TEST_MESSAGE(images.size() << " images");
  BOOST_REQUIRE(images.size() > 300U);
  ReplayImages<logsync::sync::None>(images, c);
}

// --- kill -9 -------------------------------------------------------------------

namespace {

// A child process appends (single records and batches) until it is killed
// with SIGKILL, reporting each acknowledged offset through a pipe; the
// parent reopens the log and checks that every acknowledged record is
// there, intact, that nothing past them is garbage, and that appends go on.
// The moment of the kill varies (seeded): after 0 to 300 acknowledgements,
// so some kills land in the child's own recovery.
template <class S>
void KillNineRounds(int rounds, std::uint32_t seed) {
  using L = Log<Record, logsync::DefaultCodec<Record>, S>;
  TempDir dir;
  const Config c = Small(4096);
  std::mt19937 rng(seed);
  std::uint64_t acked_through = 0;  // every offset below it was acknowledged
  for (int round = 0; round < rounds; ++round) {
    int fds[2];
    BOOST_REQUIRE(::pipe(fds) == 0);
    const pid_t pid = ::fork();
    BOOST_REQUIRE(pid >= 0);
    if (pid == 0) {
      ::close(fds[0]);
      try {
        L log(dir.path(), c);
        for (std::uint64_t k = 0;; ++k) {
          const std::uint64_t next = log.NextOffset();
          std::uint64_t last;
          if (k % 5 == 4) {
            std::vector<Record> batch;
            for (std::uint64_t i = 0; i < 3; ++i) batch.push_back(Record{0, Value(next + i)});
            if (log.AppendBatch(batch) != next) ::_exit(3);
            last = next + 2;
          } else {
            if (log.Append(Record{0, Value(next)}) != next) ::_exit(3);
            last = next;
          }
          if (::write(fds[1], &last, sizeof last) != sizeof last) ::_exit(3);
        }
      } catch (...) {
        ::_exit(2);
      }
    }
    ::close(fds[1]);
    const std::uint64_t want = rng() % 301;
    std::uint64_t off = 0, seen = 0;
    while (seen < want && ::read(fds[0], &off, sizeof off) == sizeof off) ++seen;
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    BOOST_TEST((WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL), "child ended otherwise: " << status);
    while (::read(fds[0], &off, sizeof off) == sizeof off) ++seen;  // acks sent before it died
    ::close(fds[0]);
    if (seen > 0) acked_through = std::max(acked_through, off + 1);

    L log(dir.path(), c);
    BOOST_TEST(log.NextOffset() >= acked_through, "round " << round);
    std::uint64_t n = 0;
    for (const Record& r : log.Scan(0)) {
      if (r.value != Value(n)) {
        BOOST_ERROR("round " << round << ": offset " << n << " holds the wrong bytes");
        break;
      }
      ++n;
    }
    BOOST_TEST(n == log.NextOffset(), "round " << round);
  }
  L log(dir.path(), c);
  BOOST_TEST(acked_through > static_cast<std::uint64_t>(rounds));
  BOOST_TEST_MESSAGE(rounds << " kill -9 rounds, " << acked_through << " records acknowledged");
  const std::uint64_t next = log.NextOffset();
  BOOST_TEST(log.Append(Record{0, Value(next)}) == next);
}

}  // namespace

BOOST_AUTO_TEST_CASE(kill_9_loses_no_acknowledged_record_sync_always) {
  KillNineRounds<logsync::sync::Always>(100, 1);
}
BOOST_AUTO_TEST_CASE(kill_9_loses_no_acknowledged_record_sync_none) { KillNineRounds<logsync::sync::None>(30, 2); }
