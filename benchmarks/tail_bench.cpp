// W7: one appender and two readers tailing the log (Log::WaitFor), sync::None.
// The appender appends 100-byte records, one every `gap` microseconds (the
// first argument; 0: as fast as it can), and notes when each Append
// returned; each reader waits for the next offset, reads it and notes when
// it saw it. Reported: the visibility latency (seen - returned; a reader that
// saw the record before Append returned counts 0), p50 and p99 in
// microseconds, over both readers; records/s.
//   BM_TailLatency/gap/spin  readers block in WaitFor; with spin > 0 they
//                            first poll for up to `spin` microseconds
//   BM_WakeCeiling/gap       the same threads with no log: the appender bumps
//                            an atomic counter and notifies a condition
//                            variable the readers block on. Its latency is
//                            the machine's thread wake-up latency, the floor
//                            of any reader that blocks.
// LOGSYNC_BENCH_RECORDS records (default 20,000).

#include "bench_util.hpp"

#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
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

// Runs one appender (`append(o)`, paced by `gap`) and two readers
// (`wait(o)` then `read(o)`) over n records, and reports the latencies.
template <class Append, class Wait, class Read>
void Measure(benchmark::State& state, std::chrono::microseconds gap, Append append, Wait wait, Read read) {
  const std::uint64_t n = Records();
  std::vector<std::atomic<std::int64_t>> returned(n);
  std::vector<std::vector<std::int64_t>> seen(2, std::vector<std::int64_t>(n));
  std::vector<std::thread> readers;
  for (int r = 0; r < 2; ++r)
    readers.emplace_back([&, r] {
      for (std::uint64_t o = 0; o < n; ++o) {
        if (!wait(o)) return;
        read(o);
        seen[r][o] = Now();
      }
    });
  const auto start = Clock::now();
  auto next = start;
  for (std::uint64_t o = 0; o < n; ++o) {
    while (Clock::now() < next) {
    }
    append(o);
    returned[o].store(Now(), std::memory_order_relaxed);
    next += gap;
  }
  for (auto& t : readers) t.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  std::vector<double> lat;
  for (int r = 0; r < 2; ++r)
    for (std::uint64_t o = 0; o < n; ++o)
      lat.push_back(static_cast<double>(std::max<std::int64_t>(0, seen[r][o] - returned[o].load())) / 1000.0);
  std::sort(lat.begin(), lat.end());
  state.counters["p50_us"] = lat[lat.size() / 2];
  state.counters["p99_us"] = lat[lat.size() * 99 / 100];
  state.counters["records_per_s"] = static_cast<double>(n) / seconds;
}

void BM_TailLatency(benchmark::State& state) {
  const auto gap = std::chrono::microseconds(state.range(0));
  const auto spin = std::chrono::microseconds(state.range(1));
  for (auto _ : state) {
    bench::ScratchDir dir("tail");
    Log<> log(dir.path());
    const Record rec{0, std::string(100, 'v')};
    Measure(
        state, gap, [&](std::uint64_t) { log.Append(rec); },
        [&](std::uint64_t o) { return log.WaitFor(o, std::chrono::seconds(60), spin); },
        [&](std::uint64_t o) { benchmark::DoNotOptimize(log.Read(o)); });
  }
}

void BM_WakeCeiling(benchmark::State& state) {
  const auto gap = std::chrono::microseconds(state.range(0));
  for (auto _ : state) {
    std::atomic<std::uint64_t> next{0};
    std::mutex mu;
    std::condition_variable cv;
    Measure(
        state, gap,
        [&](std::uint64_t o) {
          next.store(o + 1, std::memory_order_release);
          std::lock_guard lock(mu);
          cv.notify_all();
        },
        [&](std::uint64_t o) {
          std::unique_lock lock(mu);
          return cv.wait_for(lock, std::chrono::seconds(60), [&] { return next.load(std::memory_order_acquire) > o; });
        },
        [](std::uint64_t) {});
  }
}

}  // namespace

BENCHMARK(BM_WakeCeiling)->Arg(20)->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_TailLatency)
    ->Args({20, 0})
    ->Args({0, 0})
    ->Args({20, 50})
    ->Args({0, 50})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_MAIN();
