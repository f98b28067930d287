// Time to open a log (W6): one full segment of 100-byte records, opened
//   BM_OpenClean        after a clean close (nothing is read but headers)
//   BM_OpenAfterCrash   as a crash leaves it (kill -9: the files as they were
//                       while the log was open), with the last T records
//                       written after the last sync (T = 0, 1000, 100000)
//   BM_OpenNoCheckpoint as after a crash, but with the index checkpoint
//                       unreadable: every frame of the segment is checked
//                       (what recovery would cost without the checkpoint)
//   BM_OpenClean2GiB    a 2 GiB log of 128 MiB segments, after a clean close
//   BM_ReadStore        the ceiling: one pread pass over the whole store
// LOGSYNC_BENCH_RECORDS records (default 1,000,000, about 116 MB). Each
// iteration opens a fresh copy of the crashed files (copied untimed); ten
// opens per benchmark. Full mode: --benchmark_repetitions=3 (medians).

#include "bench_util.hpp"

#include <benchmark/benchmark.h>

#include <cstdlib>
#include <memory>

using namespace logsync;
namespace fs = std::filesystem;

namespace {

std::uint64_t Records() {
  const char* env = std::getenv("LOGSYNC_BENCH_RECORDS");
  return env ? std::strtoull(env, nullptr, 10) : 1000000;
}

Config OneSegment(std::uint64_t records) {
  Config c;
  c.segment.max_index_bytes = (records + 1) * kIndexEntryBytes;
  return c;
}

// Builds, in dir/<name>, a log as a crash leaves it: `records` records, the
// last `unsynced` of them appended after the last sync, and the files copied
// while the log is open. clean: closed instead.
fs::path Build(const fs::path& root, const std::string& name, std::uint64_t records, std::uint64_t unsynced,
               bool clean) {
  const fs::path live = root / (name + "-live"), crashed = root / name;
  fs::remove_all(live);
  fs::remove_all(crashed);
  {
    Log<> log(live, OneSegment(records));
    const std::string value(100, 'v');
    std::vector<Record> batch(1000, Record{0, value});
    std::uint64_t n = 0;
    while (n < records - unsynced) {
      const std::uint64_t k = std::min<std::uint64_t>(batch.size(), records - unsynced - n);
      log.AppendBatch(std::span(batch).first(k));
      n += k;
    }
    log.Sync();
    while (n < records) {
      log.Append(Record{0, value});
      ++n;
    }
    if (!clean) {
      fs::create_directories(crashed);
      for (const auto& e : fs::directory_iterator(live))
        if (e.path().filename() != "LOCK") fs::copy_file(e.path(), crashed / e.path().filename());
    }
  }
  if (clean) fs::rename(live, crashed);
  fs::remove_all(live);
  return crashed;
}

void BreakCheckpoint(const fs::path& dir) {
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".index") {
      const int fd = ::open(e.path().c_str(), O_RDWR);
      const char zero[8] = {};
      if (::pwrite(fd, zero, sizeof zero, 16) != sizeof zero) std::abort();
      ::close(fd);
    }
}

void OpenCopies(benchmark::State& state, const fs::path& original, bool break_checkpoint) {
  const fs::path copy = original.string() + "-copy";
  std::uint64_t records = 0;
  for (auto _ : state) {
    state.PauseTiming();
    fs::remove_all(copy);
    fs::copy(original, copy);
    if (break_checkpoint) BreakCheckpoint(copy);
    state.ResumeTiming();
    Log<> log(copy, OneSegment(Records()));
    records = log.NextOffset();
    state.PauseTiming();
    log.Close();
    state.ResumeTiming();
  }
  fs::remove_all(copy);
  if (records != Records()) state.SkipWithError("recovery lost records");
  state.counters["records"] = static_cast<double>(records);
}

void BM_OpenClean(benchmark::State& state) {
  bench::ScratchDir dir("recovery-clean");
  OpenCopies(state, Build(dir.path(), "log", Records(), 0, true), false);
}

void BM_OpenAfterCrash(benchmark::State& state) {
  bench::ScratchDir dir("recovery-crash");
  const auto unsynced = static_cast<std::uint64_t>(state.range(0));
  OpenCopies(state, Build(dir.path(), "log", Records(), std::min(unsynced, Records()), false), false);
}

void BM_OpenNoCheckpoint(benchmark::State& state) {
  bench::ScratchDir dir("recovery-nockpt");
  OpenCopies(state, Build(dir.path(), "log", Records(), 0, false), true);
}

// W6 at size: a 2 GiB log (segments of 128 MiB, 100-byte records), opened
// after a clean close. Only the newest segment's index entries are walked;
// each sealed segment gets its constant-time check.
void BM_OpenClean2GiB(benchmark::State& state) {
  bench::ScratchDir dir("recovery-2gib");
  Config c;
  c.segment.max_store_bytes = 128ULL << 20;
  std::uint64_t records = 0;
  {
    Log<> log(dir.path() / "log", c);
    const std::string value(100, 'v');
    std::vector<Record> batch(1000, Record{0, value});
    while (log.NextOffset() * (kFrameHeaderBytes + value.size()) < (2ULL << 30)) log.AppendBatch(batch);
    records = log.NextOffset();
  }
  std::size_t segments = 0;
  for (auto _ : state) {
    Log<> log(dir.path() / "log", c);
    segments = log.SegmentCount();
    if (log.NextOffset() != records) state.SkipWithError("records lost");
    state.PauseTiming();
    log.Close();
    state.ResumeTiming();
  }
  state.counters["records"] = static_cast<double>(records);
  state.counters["segments"] = static_cast<double>(segments);
}

void BM_ReadStore(benchmark::State& state) {
  bench::ScratchDir dir("recovery-read");
  const fs::path log = Build(dir.path(), "log", Records(), 0, true);
  fs::path store;
  for (const auto& e : fs::directory_iterator(log))
    if (e.path().extension() == ".store") store = e.path();
  std::vector<std::byte> buf(1 << 20);
  std::uint64_t total = 0;
  for (auto _ : state) {
    const int fd = ::open(store.c_str(), O_RDONLY);
    ssize_t n;
    std::uint64_t pos = 0;
    while ((n = ::pread(fd, buf.data(), buf.size(), static_cast<off_t>(pos))) > 0) pos += static_cast<std::uint64_t>(n);
    ::close(fd);
    total += pos;
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(total));
}

}  // namespace

// A fixed number of opens: each needs a fresh copy of the files (untimed).
BENCHMARK(BM_OpenClean)->Iterations(10)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_OpenAfterCrash)->Arg(0)->Arg(1000)->Arg(100000)->Iterations(10)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_OpenNoCheckpoint)->Iterations(10)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_OpenClean2GiB)->Iterations(10)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_ReadStore)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_MAIN();
