// Append throughput and durable-append latency, each next to its ceiling
// measured in the same run on the same filesystem (TMPDIR):
//   BM_RawWrite/N        buffered write() of the same framed bytes (1 MiB writes)
//   BM_Append/N          Log<>::Append of N-byte records, sync::None
//   BM_WriteFdatasync    pwrite + fdatasync of one small frame (the durable ceiling)
//   BM_AppendAlways      Log::Append under sync::Always, 1 and 8 threads (group commit)
//   BM_AppendBatchAlways AppendBatch of 100 records under sync::Always
// items_per_second is records/s. Quick mode (what `meson test --benchmark`
// runs): --benchmark_min_time=0.05; full mode: --benchmark_min_time=2
// --benchmark_repetitions=5 --benchmark_report_aggregates_only=true.

#include "bench_util.hpp"

#include <benchmark/benchmark.h>

#include <memory>

using namespace logsync;

namespace {

void BM_RawWrite(benchmark::State& state) {
  const std::size_t size = static_cast<std::size_t>(state.range(0));
  bench::ScratchDir dir("raw");
  const int fd = bench::OpenScratchFile(dir.path() / "raw");
  const auto frame = bench::Frame(0, std::string(size, 'v'));
  std::vector<std::byte> buf(1 << 20);
  std::size_t used = 0;
  for (auto _ : state) {
    if (used + frame.size() > buf.size()) {
      bench::WriteAll(fd, buf.data(), used);
      used = 0;
    }
    std::memcpy(buf.data() + used, frame.data(), frame.size());
    used += frame.size();
  }
  bench::WriteAll(fd, buf.data(), used);
  ::close(fd);
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(frame.size()));
}
BENCHMARK(BM_RawWrite)->Arg(100)->Arg(4096)->UseRealTime();

void BM_Append(benchmark::State& state) {
  const std::size_t size = static_cast<std::size_t>(state.range(0));
  bench::ScratchDir dir("append");
  Log<> log(dir.path());
  const Record r{0, std::string(size, 'v')};
  for (auto _ : state) benchmark::DoNotOptimize(log.Append(r));
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(size + kFrameHeaderBytes));
}
BENCHMARK(BM_Append)->Arg(100)->Arg(4096)->UseRealTime();

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

}  // namespace

BENCHMARK_MAIN();
