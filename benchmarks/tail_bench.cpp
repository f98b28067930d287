// W7: one appender and two readers tailing the log (Log::WaitFor), sync::None.
// The appender appends 100-byte records, one every `gap` microseconds (the
// argument; 0: as fast as it can), and notes when each Append returned;
// each reader waits for the next offset, reads it and notes when it saw it.
// Reported: the visibility latency (seen - returned; a reader that saw the
// record before Append returned counts 0), p50 and p99 in microseconds, over
// both readers; records/s.
// LOGSYNC_BENCH_RECORDS records (default 20,000).

#include "bench_util.hpp"

#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <thread>
#include <vector>

using namespace logsync;
using Clock = std::chrono::steady_clock;

namespace {

std::uint64_t Records() {
  const char* env = std::getenv("LOGSYNC_BENCH_RECORDS");
  return env ? std::min<std::uint64_t>(std::strtoull(env, nullptr, 10), 200000) : 20000;
}

std::int64_t Now() { return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count(); }

void BM_TailLatency(benchmark::State& state) {
  const auto gap = std::chrono::microseconds(state.range(0));
  const std::uint64_t n = Records();
  std::vector<double> lat;
  double seconds = 0;
  for (auto _ : state) {
    bench::ScratchDir dir("tail");
    Log<> log(dir.path());
    std::vector<std::atomic<std::int64_t>> returned(n);
    std::vector<std::vector<std::int64_t>> seen(2, std::vector<std::int64_t>(n));
    std::vector<std::thread> readers;
    for (int r = 0; r < 2; ++r)
      readers.emplace_back([&, r] {
        for (std::uint64_t o = 0; o < n; ++o) {
          if (!log.WaitFor(o, std::chrono::seconds(60))) return;
          benchmark::DoNotOptimize(log.Read(o));
          seen[r][o] = Now();
        }
      });
    const Record rec{0, std::string(100, 'v')};
    const auto start = Clock::now();
    auto next = start;
    for (std::uint64_t o = 0; o < n; ++o) {
      while (Clock::now() < next) {
      }
      log.Append(rec);
      returned[o].store(Now(), std::memory_order_relaxed);
      next += gap;
    }
    for (auto& t : readers) t.join();
    seconds += std::chrono::duration<double>(Clock::now() - start).count();
    for (int r = 0; r < 2; ++r)
      for (std::uint64_t o = 0; o < n; ++o)
        lat.push_back(static_cast<double>(std::max<std::int64_t>(0, seen[r][o] - returned[o].load())) / 1000.0);
  }
  std::sort(lat.begin(), lat.end());
  state.counters["p50_us"] = lat[lat.size() / 2];
  state.counters["p99_us"] = lat[lat.size() * 99 / 100];
  state.counters["records_per_s"] = static_cast<double>(n * state.iterations()) / seconds;
}

}  // namespace

BENCHMARK(BM_TailLatency)->Arg(20)->Arg(0)->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_MAIN();
