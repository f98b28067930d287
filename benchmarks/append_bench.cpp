// Append throughput and durable-append latency, each next to its ceiling
// measured in the same run on the same filesystem (TMPDIR):
//   BM_RawWrite/N        buffered write() of the same framed bytes (1 MiB writes)
//   BM_MappedCopy/N      floor of an append whose bytes are in the kernel when
//                        it returns, without a system call: memcpy of the
//                        frames into a shared writable mapping of a file
//                        allocated ahead in the store's steps
//   BM_PwriteEach/N      the same floor with one pwrite() per frame
//   BM_Append/N          Log<>::Append of N-byte records, sync::None
// W1 (N = 100) appends LOGSYNC_BENCH_RECORDS records (default 1,000,000) and
// W2 (N = 4096) a tenth of that, each into a fresh file or log per repetition.
//   BM_WriteFdatasync    pwrite + fdatasync of one small frame (the durable ceiling)
//   BM_AppendAlways      Log::Append under sync::Always, 1 and 8 threads (group commit)
//   BM_AppendBatchAlways AppendBatch of 100 records under sync::Always
// items_per_second is records/s. Quick mode (what `meson test --benchmark`
// runs): --benchmark_min_time=0.05 and 200,000 records; full mode
// (benchmarks/report.py --full): --benchmark_min_time=1
// --benchmark_repetitions=3 and 1,000,000 records.

#include "bench_util.hpp"

#include <benchmark/benchmark.h>

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <memory>

using namespace logsync;

namespace {

// A scratch file and the frame of a record of state.range(0) bytes, which
// the ceilings and floors write over and over.
struct RawTarget {
  RawTarget(const benchmark::State& state, const char* name)
      : dir(name),
        fd(bench::OpenScratchFile(dir.path() / name)),
        frame(bench::Frame(0, std::string(static_cast<std::size_t>(state.range(0)), 'v'))) {}
  ~RawTarget() { ::close(fd); }
  RawTarget(const RawTarget&) = delete;
  RawTarget& operator=(const RawTarget&) = delete;

  bench::ScratchDir dir;
  int fd;
  std::vector<std::byte> frame;
};

// Records/s and the bytes of their frames.
void Report(benchmark::State& state, std::size_t frame_bytes) {
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(frame_bytes));
}

void BM_RawWrite(benchmark::State& state) {
  RawTarget t(state, "raw");
  bench::BufferedWriter out(t.fd);
  for (auto _ : state) out.Add(t.frame);
  out.Flush();
  Report(state, t.frame.size());
}

void BM_MappedCopy(benchmark::State& state) {
  RawTarget t(state, "mapped");
  const int fd = t.fd;
  const auto& frame = t.frame;
  const std::size_t capacity = kDefaultMaxStoreBytes;
  const std::size_t step = std::clamp<std::size_t>(capacity / 16, 1, 8 << 20);  // as the store allocates
  void* map = ::mmap(nullptr, capacity, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) throw IoError("benchmark file", errno, "mmap");
  auto* base = static_cast<std::byte*>(map);
  std::size_t used = 0, allocated = 0;
  for (auto _ : state) {
    if (used + frame.size() > allocated) {
      if (::posix_fallocate(fd, static_cast<off_t>(allocated), static_cast<off_t>(step)) != 0)
        state.SkipWithError("posix_fallocate failed");
      allocated += step;
    }
    std::memcpy(base + used, frame.data(), frame.size());
    used += frame.size();
  }
  ::munmap(map, capacity);
  Report(state, frame.size());
}

void BM_PwriteEach(benchmark::State& state) {
  RawTarget t(state, "pwrite");
  const int fd = t.fd;
  const auto& frame = t.frame;
  off_t pos = 0;
  for (auto _ : state) {
    if (::pwrite(fd, frame.data(), frame.size(), pos) != static_cast<ssize_t>(frame.size()))
      state.SkipWithError("pwrite failed");
    pos += static_cast<off_t>(frame.size());
  }
  Report(state, frame.size());
}

void BM_Append(benchmark::State& state) {
  const std::size_t size = static_cast<std::size_t>(state.range(0));
  bench::ScratchDir dir("append");
  Log<> log(dir.path());
  const Record r{0, std::string(size, 'v')};
  for (auto _ : state) benchmark::DoNotOptimize(log.Append(r));
  Report(state, size + kFrameHeaderBytes);
}

void BM_WriteFdatasync(benchmark::State& state) {
  bench::ScratchDir dir("fdatasync");
  const int fd = bench::OpenScratchFile(dir.path() / "raw");
  const auto frame = bench::Frame(0, std::string(100, 'v'));
  off_t pos = 0;
  for (auto _ : state) {
    if (::pwrite(fd, frame.data(), frame.size(), pos) != static_cast<ssize_t>(frame.size()) || ::fdatasync(fd) != 0)
      state.SkipWithError("write or fdatasync failed");
    pos += static_cast<off_t>(frame.size());
  }
  ::close(fd);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_WriteFdatasync)->UseRealTime();

using DurableLog = Log<Record, DefaultCodec<Record>, sync::Always>;
std::unique_ptr<bench::ScratchDir> shared_dir;
std::unique_ptr<DurableLog> shared_log;

void BM_AppendAlways(benchmark::State& state) {
  if (state.thread_index() == 0) {
    shared_dir = std::make_unique<bench::ScratchDir>("always");
    shared_log = std::make_unique<DurableLog>(shared_dir->path());
  }
  const Record r{0, std::string(100, 'v')};
  for (auto _ : state) benchmark::DoNotOptimize(shared_log->Append(r));
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) {
    shared_log.reset();
    shared_dir.reset();
  }
}
BENCHMARK(BM_AppendAlways)->Threads(1)->Threads(8)->UseRealTime();

void BM_AppendBatchAlways(benchmark::State& state) {
  bench::ScratchDir dir("batch");
  DurableLog log(dir.path());
  const std::vector<Record> batch(100, Record{0, std::string(100, 'v')});
  for (auto _ : state) benchmark::DoNotOptimize(log.AppendBatch(batch));
  state.SetItemsProcessed(state.iterations() * 100);
}
BENCHMARK(BM_AppendBatchAlways)->UseRealTime();

// W1 and W2 append a fixed number of records, as the workloads define them.
void RegisterFixedCounts() {
  std::int64_t records = 1000000;
  if (const char* n = std::getenv("LOGSYNC_BENCH_RECORDS")) records = std::max<std::int64_t>(10, std::atoll(n));
  for (const auto& [size, count] : {std::pair<std::int64_t, std::int64_t>{100, records}, {4096, records / 10}})
    for (const auto& [name, fn] : {std::pair<const char*, void (*)(benchmark::State&)>{"BM_RawWrite", BM_RawWrite},
                                   {"BM_MappedCopy", BM_MappedCopy},
                                   {"BM_PwriteEach", BM_PwriteEach},
                                   {"BM_Append", BM_Append}})
      benchmark::RegisterBenchmark(name, fn)->Arg(size)->Iterations(count)->UseRealTime();
}

}  // namespace

int main(int argc, char** argv) {
  RegisterFixedCounts();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
