// Reads by offset and full scans over a log of 100-byte records, next to the
// ceilings measured in the same run:
//   BM_PreadRandom   pread of random frames whose positions are held in memory
//   BM_ReadRandom    Log::Read of random offsets, 1 and 2 threads
//   BM_ViewRandom    Log::View of random offsets (zero-copy; the payload is
//                    copied out to a buffer, as pread does), 1 and 2 threads
//   BM_ViewBatchRandom  Log::ViewBatch of 16 random offsets at a time (it
//                    prefetches), payloads copied out; items are records
//   BM_Memcpy        memcpy bandwidth over 64 MiB
//   BM_Scan          a full Log::Scan, bytes_per_second counts payload bytes
//   BM_ReadIntoRandom  Log::Read(offset, into) of random offsets, reusing one
//                    record (no allocation)
//   BM_ScanPayloads  a full Log::ScanPayloads (zero-copy views; every frame's
//                    checksum checked), bytes_per_second counts payload bytes
//   BM_ReaderScan    a full LogReader::ForEachPayload of the same log (pread,
//                    every frame checked), the Log open beside it
// The log has LOGSYNC_BENCH_READ_RECORDS records, else LOGSYNC_BENCH_RECORDS
// (default 200,000; warm cache); full mode reads a 10,000,000-record log,
// past the last-level cache.
// Quick mode: --benchmark_min_time=0.05; full mode: --benchmark_min_time=2.

#include "bench_util.hpp"

#include <benchmark/benchmark.h>

#include <array>
#include <cstdlib>
#include <memory>
#include <random>

using namespace logsync;

namespace {

struct Fixture {
  bench::ScratchDir dir{"read"};
  std::uint64_t records = 200000;
  std::unique_ptr<Log<>> log;
  int raw_fd = -1;
  std::vector<std::uint64_t> positions;  // of each frame in the raw file
  std::vector<std::uint32_t> sizes;

  Fixture() {
    if (const char* n = std::getenv("LOGSYNC_BENCH_RECORDS")) records = std::strtoull(n, nullptr, 10);
    if (const char* n = std::getenv("LOGSYNC_BENCH_READ_RECORDS")) records = std::strtoull(n, nullptr, 10);
    log = std::make_unique<Log<>>(dir.path() / "log");
    raw_fd = bench::OpenScratchFile(dir.path() / "raw");
    std::uint64_t pos = 0;
    for (std::uint64_t i = 0; i < records; ++i) {
      std::string v(100, static_cast<char>('a' + i % 26));
      log->Append(Record{0, v});
      const auto f = bench::Frame(i, v);
      bench::WriteAll(raw_fd, f.data(), f.size());
      positions.push_back(pos);
      sizes.push_back(static_cast<std::uint32_t>(f.size()));
      pos += f.size();
    }
  }
  ~Fixture() { ::close(raw_fd); }
};

Fixture& Data() {
  static Fixture f;
  return f;
}

void BM_PreadRandom(benchmark::State& state) {
  Fixture& f = Data();
  std::mt19937_64 rng(state.thread_index() + 1);
  std::vector<std::byte> buf(256);
  for (auto _ : state) {
    const std::uint64_t i = rng() % f.records;
    benchmark::DoNotOptimize(::pread(f.raw_fd, buf.data(), f.sizes[i], static_cast<off_t>(f.positions[i])));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_PreadRandom)->Threads(1)->Threads(2)->UseRealTime();

void BM_ReadRandom(benchmark::State& state) {
  Fixture& f = Data();
  std::mt19937_64 rng(state.thread_index() + 1);
  for (auto _ : state) benchmark::DoNotOptimize(f.log->Read(rng() % f.records));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ReadRandom)->Threads(1)->Threads(2)->UseRealTime();

void BM_ReadIntoRandom(benchmark::State& state) {
  Fixture& f = Data();
  std::mt19937_64 rng(state.thread_index() + 1);
  Record into;
  for (auto _ : state) {
    f.log->Read(rng() % f.records, into);
    benchmark::DoNotOptimize(into.value.data());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ReadIntoRandom)->Threads(1)->Threads(2)->UseRealTime();

void BM_ViewRandom(benchmark::State& state) {
  Fixture& f = Data();
  std::mt19937_64 rng(state.thread_index() + 1);
  std::array<std::byte, 256> buf;
  for (auto _ : state) {
    const std::size_t n = f.log->View(rng() % f.records, [&](std::span<const std::byte> payload) {
      std::memcpy(buf.data(), payload.data(), payload.size());
      return payload.size();
    });
    benchmark::DoNotOptimize(n);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ViewRandom)->Threads(1)->Threads(2)->UseRealTime();

void BM_ViewBatchRandom(benchmark::State& state) {
  Fixture& f = Data();
  std::mt19937_64 rng(state.thread_index() + 1);
  std::array<std::byte, 256> buf;
  std::array<std::uint64_t, 16> offsets;
  for (auto _ : state) {
    for (auto& o : offsets) o = rng() % f.records;
    f.log->ViewBatch(offsets, [&](std::uint64_t, std::span<const std::byte> payload) {
      std::memcpy(buf.data(), payload.data(), payload.size());
    });
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(offsets.size()));
}
BENCHMARK(BM_ViewBatchRandom)->Threads(1)->Threads(2)->UseRealTime();

void BM_Memcpy(benchmark::State& state) {
  std::vector<char> a(64 << 20, 'x'), b(64 << 20);
  for (auto _ : state) {
    std::memcpy(b.data(), a.data(), a.size());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(a.size()));
}
BENCHMARK(BM_Memcpy)->UseRealTime();

void BM_Scan(benchmark::State& state) {
  Fixture& f = Data();
  std::uint64_t payload = 0;
  for (auto _ : state)
    for (const Record& r : f.log->Scan(0)) payload += r.value.size();
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(f.records));
  state.SetBytesProcessed(static_cast<std::int64_t>(payload));
}
BENCHMARK(BM_Scan)->UseRealTime();

void BM_ScanPayloads(benchmark::State& state) {
  Fixture& f = Data();
  std::uint64_t payload = 0;
  for (auto _ : state)
    for (const auto& p : f.log->ScanPayloads(0)) {
      benchmark::DoNotOptimize(p.bytes.data());
      payload += p.bytes.size();
    }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(f.records));
  state.SetBytesProcessed(static_cast<std::int64_t>(payload));
}
BENCHMARK(BM_ScanPayloads)->UseRealTime();

// What a LogReader (another process's read-only view: pread, every frame
// checked) scans of the same log, its writer open beside it.
void BM_ReaderScan(benchmark::State& state) {
  Fixture& f = Data();
  LogReader<> reader(f.dir.path() / "log");
  std::uint64_t payload = 0;
  for (auto _ : state)
    reader.ForEachPayload(0, [&](const Payload& p) {
      benchmark::DoNotOptimize(p.bytes.data());
      payload += p.bytes.size();
    });
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(f.records));
  state.SetBytesProcessed(static_cast<std::int64_t>(payload));
}
BENCHMARK(BM_ReaderScan)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
