#define BOOST_TEST_MODULE concurrency_test
#include <boost/test/unit_test.hpp>

#include <logsync/logsync.hpp>

#include "support/config.hpp"
#include "support/temp_dir.hpp"

#include <algorithm>
#include <atomic>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <vector>

using logsync::Config;
using logsync::Log;
using logsync::Record;
using logsync::test::TempDir;

namespace {

// A value that names its writer and sequence and checks itself.
std::string Value(int writer, int seq) {
  std::string v = "w" + std::to_string(writer) + "-s" + std::to_string(seq) + "-";
  v.append(static_cast<std::size_t>((writer * 31 + seq) % 200), static_cast<char>('a' + writer));
  return v;
}

bool WellFormed(const std::string& v) {
  int writer = 0, seq = 0;
  if (std::sscanf(v.c_str(), "w%d-s%d-", &writer, &seq) != 2) return false;
  return v == Value(writer, seq);
}

Config SmallSegments() { return logsync::test::SmallSegments(8 * 1024); }  // many rolls while threads run

template <class S>
void AppendersAndReaders() {
  TempDir dir;
  Log<Record, logsync::DefaultCodec<Record>, S> log(dir.path(), SmallSegments());
  constexpr int kWriters = 4, kPerWriter = 400, kReaders = 3;
  std::atomic<int> writers_done{0}, readers_reading{0};
  std::atomic<std::uint64_t> bad_reads{0}, reads{0};
  std::vector<std::vector<std::uint64_t>> offsets(kWriters);

  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w)
    threads.emplace_back([&, w] {
      for (int s = 0; s < kPerWriter; ++s) {
        // Half way, until every reader has read: reads and appends overlap
        // however fast the appends are.
        if (s == kPerWriter / 2)
          while (readers_reading.load() < kReaders) std::this_thread::yield();
        if (s % 50 == 49) {
          std::vector<Record> batch{{0, Value(w, s)}};
          offsets[w].push_back(log.AppendBatch(batch));
        } else {
          offsets[w].push_back(log.Append(Record{0, Value(w, s)}));
        }
      }
      ++writers_done;
    });
  for (int r = 0; r < kReaders; ++r)
    threads.emplace_back([&, r] {
      std::uint64_t seen = 0, seen_here = 0;
      while (writers_done.load() < kWriters) {
        const std::uint64_t high = log.NextOffset();
        if (high == 0) {
          std::this_thread::yield();
          continue;
        }
        // Every offset below NextOffset() reads back whole.
        const std::uint64_t o = (r == 0) ? high - 1 : (seen * 7919 + r) % high;
        Record rec = log.Read(o);
        if (++seen_here == 1) ++readers_reading;
        ++reads;
        if (rec.offset != o || !WellFormed(rec.value)) ++bad_reads;
        seen = std::max(seen, o + 1);
        if (r == 2 && seen % 64 == 0) {
          for (const Record& s : log.Scan(high > 100 ? high - 100 : 0))
            if (!WellFormed(s.value)) ++bad_reads;
        }
      }
    });
  for (auto& t : threads) t.join();

  BOOST_TEST(bad_reads.load() == 0U);
  BOOST_TEST(reads.load() > 0U);
  BOOST_TEST(log.NextOffset() == static_cast<std::uint64_t>(kWriters * kPerWriter));
  // Unique offsets, each writer's in increasing order, each holding its value.
  std::set<std::uint64_t> all;
  for (int w = 0; w < kWriters; ++w) {
    BOOST_TEST(std::is_sorted(offsets[w].begin(), offsets[w].end()));
    for (int s = 0; s < kPerWriter; ++s) {
      all.insert(offsets[w][s]);
      BOOST_TEST(log.Read(offsets[w][s]).value == Value(w, s));
    }
  }
  BOOST_TEST(all.size() == static_cast<std::size_t>(kWriters * kPerWriter));
  BOOST_TEST(log.SegmentCount() > 10U);
}

}  // namespace

BOOST_AUTO_TEST_CASE(appenders_and_readers_sync_none, *boost::unit_test::timeout(120)) { AppendersAndReaders<logsync::sync::None>(); }
BOOST_AUTO_TEST_CASE(appenders_and_readers_sync_always, *boost::unit_test::timeout(120)) { AppendersAndReaders<logsync::sync::Always>(); }
BOOST_AUTO_TEST_CASE(appenders_and_readers_sync_interval, *boost::unit_test::timeout(120)) { AppendersAndReaders<logsync::sync::Interval>(); }

BOOST_AUTO_TEST_CASE(truncate_while_reading_and_appending, *boost::unit_test::timeout(120)) {
  TempDir dir;
  Log<> log(dir.path(), SmallSegments());
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> bad{0};
  std::thread writer([&] {
    for (int s = 0; s < 3000; ++s) log.Append(Record{0, Value(0, s)});
    stop = true;
  });
  std::thread reader([&] {
    while (!stop.load()) {
      const std::uint64_t low = log.LowestOffset(), next = log.NextOffset();
      if (next <= low) continue;
      try {
        Record r = log.Read(low + (next - low) / 2);
        if (!WellFormed(r.value)) ++bad;
        // A view's bytes stay mapped until the callback returns, however
        // the truncator races it (ASan and TSan check the accesses).
        log.View(low + (next - low) / 3, [&](std::span<const std::byte> p) {
          if (!WellFormed(std::string(reinterpret_cast<const char*>(p.data()), p.size()))) ++bad;
        });
      } catch (const logsync::OffsetOutOfRange&) {
        // truncated between the two loads: allowed
      }
      std::uint64_t n = 0;
      for (const Record& r : log.Scan(log.LowestOffset())) {
        if (!WellFormed(r.value)) ++bad;
        if (++n == 50) break;
      }
    }
  });
  std::thread truncator([&] {
    while (!stop.load()) {
      const std::uint64_t next = log.NextOffset();
      if (next > 500) log.Truncate(next - 500);
      std::this_thread::yield();
    }
  });
  writer.join();
  reader.join();
  truncator.join();
  BOOST_TEST(bad.load() == 0U);
  BOOST_TEST(log.NextOffset() == 3000U);
  BOOST_TEST(log.LowestOffset() > 0U);
  for (std::uint64_t o = log.LowestOffset(); o < 3000; ++o) BOOST_TEST(log.Read(o).value == Value(0, static_cast<int>(o)));
}

BOOST_AUTO_TEST_CASE(close_while_threads_use_the_log, *boost::unit_test::timeout(120)) {
  TempDir dir;
  auto log = std::make_unique<Log<>>(dir.path(), SmallSegments());
  for (int s = 0; s < 100; ++s) log->Append(Record{0, Value(1, s)});
  std::atomic<int> started{0};
  std::atomic<std::uint64_t> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t)
    threads.emplace_back([&, t] {
      ++started;
      for (int i = 0;; ++i) {
        try {
          if (t == 0) {
            log->Append(Record{0, Value(2, i)});
          } else {
            Record r = log->Read(static_cast<std::uint64_t>(i % 100));
            if (!WellFormed(r.value)) ++bad;
          }
        } catch (const logsync::StateError&) {
          return;  // closed: the only way out
        }
      }
    });
  while (started.load() < 3) std::this_thread::yield();
  log->Close();
  for (auto& t : threads) t.join();
  BOOST_TEST(bad.load() == 0U);
  const auto next = log->NextOffset();
  log.reset();
  Log<> again(dir.path(), SmallSegments());
  BOOST_TEST(again.NextOffset() == next);
}

BOOST_AUTO_TEST_CASE(verify_while_appending_and_rolling) {
  TempDir dir;
  Log<> log(dir.path(), SmallSegments());
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (int i = 0; i < 3000; ++i) log.Append(Record{0, Value(0, i)});
    done = true;
  });
  int runs = 0;
  while (!done.load() || runs == 0) {
    const std::uint64_t before = log.NextOffset();
    const auto r = log.Verify();
    BOOST_TEST(r.Ok());
    BOOST_TEST(r.records >= before);
    ++runs;
  }
  writer.join();
  const auto r = log.Verify();
  BOOST_TEST(r.Ok());
  BOOST_TEST(r.records == 3000U);
  BOOST_TEST_MESSAGE(runs << " Verify runs during the appends");
}


BOOST_AUTO_TEST_CASE(readers_tailing_with_wait_for_see_every_record, *boost::unit_test::timeout(120)) {
  TempDir dir;
  Log<> log(dir.path(), SmallSegments());
  constexpr int kRecords = 2000;
  std::vector<std::thread> readers;
  std::atomic<int> bad{0};
  // One reader blocks at once, one polls first (spin).
  for (const auto spin : {std::chrono::microseconds(0), std::chrono::microseconds(200)})
    readers.emplace_back([&, spin] {
      for (std::uint64_t o = 0; o < kRecords; ++o) {
        if (!log.WaitFor(o, std::chrono::seconds(30), spin)) {
          ++bad;
          return;
        }
        if (log.Read(o).value != Value(0, static_cast<int>(o))) ++bad;
      }
    });
  for (int i = 0; i < kRecords; ++i) log.Append(Record{0, Value(0, i)});
  for (auto& t : readers) t.join();
  BOOST_TEST(bad.load() == 0);
  // Waiting for an offset not there yet: false after the timeout, or when
  // the log closes.
  BOOST_TEST(!log.WaitFor(kRecords, std::chrono::milliseconds(1)));
  // The spin is bounded by the timeout (an hour of it would time the test out).
  BOOST_TEST(!log.WaitFor(kRecords, std::chrono::milliseconds(1), std::chrono::hours(1)));
  // A timeout as long as a duration can hold, with a spin, does not overflow:
  // the wait ends when the record arrives.
  std::thread appender([&] { log.Append(Record{0, Value(0, kRecords)}); });
  BOOST_TEST(log.WaitFor(kRecords, std::chrono::hours::max(), std::chrono::microseconds(100)));
  appender.join();
  std::thread closer([&] { log.Close(); });
  BOOST_TEST(!log.WaitFor(kRecords + 1, std::chrono::hours::max()));
  closer.join();
}

// The lock-free read path (detail/reader_registry.hpp): a writer's
// Synchronize waits for a reader inside its guard, and only for it.
BOOST_AUTO_TEST_CASE(synchronize_waits_for_a_reader_inside_its_guard, *boost::unit_test::timeout(120)) {
  logsync::detail::ReaderRegistry registry;
  std::atomic<bool> inside{false}, started{false}, returned{false}, leave{false};
  std::thread reader([&] {
    logsync::detail::ReaderRegistry::Guard guard(registry);
    BOOST_TEST(guard.Registered());
    {
      logsync::detail::ReaderRegistry::Guard nested(registry);  // nesting keeps the reader in
    }
    inside = true;
    while (!leave.load()) std::this_thread::yield();
  });
  while (!inside.load()) std::this_thread::yield();
  std::thread writer([&] {
    started = true;
    registry.Synchronize();
    returned = true;
  });
  while (!started.load()) std::this_thread::yield();
  // A Synchronize that did not wait would return within these yields.
  bool early = false;
  for (int i = 0; i < 20000 && !early; ++i) {
    early = returned.load();
    std::this_thread::yield();
  }
  BOOST_TEST(!early);
  leave = true;
  reader.join();
  writer.join();
  BOOST_TEST(returned.load());
  registry.Synchronize();  // nobody inside: returns at once
}

// More reading threads than reader slots: the ones without a slot read
// under the shared lock, while segments roll and are truncated away.
BOOST_AUTO_TEST_CASE(more_readers_than_slots_fall_back_to_the_lock, *boost::unit_test::timeout(300)) {
  TempDir dir;
  Log<> log(dir.path(), SmallSegments());
  for (int s = 0; s < 200; ++s) log.Append(Record{0, Value(0, s)});
  constexpr int kThreads = static_cast<int>(logsync::detail::ReaderRegistry::kSlots) + 44;
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::atomic<std::uint64_t> bad{0}, reads{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&] {
      // A first read takes the thread's number; every thread stays alive
      // until all have one, so all numbers are distinct.
      log.View(0, [](std::span<const std::byte>) {});
      ++ready;
      while (!go.load()) std::this_thread::yield();
      for (int i = 0; i < 20; ++i) {
        const std::uint64_t low = log.LowestOffset(), next = log.NextOffset();
        try {
          log.View(low + (next - low) / 2, [&](std::span<const std::byte> p) {
            if (!WellFormed(std::string(reinterpret_cast<const char*>(p.data()), p.size()))) ++bad;
          });
          ++reads;
        } catch (const logsync::OffsetOutOfRange&) {
          // truncated between the loads: allowed
        }
      }
    });
  while (ready.load() < kThreads) std::this_thread::yield();
  go = true;
  for (int s = 200; s < 2000; ++s) {
    log.Append(Record{0, Value(0, s)});
    if (s % 100 == 0) log.Truncate(log.NextOffset() - 150);
  }
  for (auto& t : threads) t.join();
  BOOST_TEST(bad.load() == 0U);
  BOOST_TEST(reads.load() > 0U);
  BOOST_TEST(logsync::detail::ThreadNumbers::HighWater() > logsync::detail::ReaderRegistry::kSlots);
  // Numbers of exited threads are reused: new threads do not raise the mark.
  const auto mark = logsync::detail::ThreadNumbers::HighWater();
  std::thread([&] { BOOST_TEST(logsync::detail::ThreadNumbers::Mine() < mark); }).join();
  BOOST_TEST(logsync::detail::ThreadNumbers::HighWater() == mark);
}
