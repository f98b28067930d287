// The sustained workloads: logs far past their first segment and past the
// last-level cache, at default settings, each next to ceilings measured in
// the same run on the same filesystem (TMPDIR) and repeated (medians; the
// ratios are per repetition, against that repetition's ceiling):
//   W1  --records (default 10,000,000) records of 100 B, sync::None:
//       write        buffered write() of the same frames, 1 MiB per call
//       mapped       memcpy into a shared mapping of a file allocated ahead
//                    in 8 MiB steps (posix_fallocate), no system call per record
//       mapped+populate  the same, each step populated (MADV_POPULATE_WRITE:
//                    mapped writable, and dirty)
//       mapped+populate-read  each step populated with MADV_POPULATE_READ
//                    (mapped, clean: a write still takes a write-protect fault)
//       Append       Log<>::Append, one call per record
//       AppendBatch  Log<>::AppendBatch of 100 records
//       LMDB         MDB_NOSYNC | MDB_NOMETASYNC, MDB_APPEND, 1,000 per
//                    transaction (when built with LMDB)
//       and the latency of every single Append (p50, p99, p99.9, max)
//  W2  --records / 10 records of 4 KiB: write, Append (MB/s), and the peak
//       resident memory of the process while the log grows (sampled every
//       5 ms from /proc/self/statm, after VmHWM was reset)
//  W3  latency of Append under sync::Always (--durable records)
// Files are removed after each workload (their dirty pages go with them).
// Prints a Markdown table and, with --json FILE, every figure.
//
//   sustained_bench [--records N] [--durable N] [--reps R] [--json FILE]

#include "bench_util.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#if LOGSYNC_HAVE_LMDB
#include <lmdb.h>
#endif

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

using namespace logsync;
using Clock = std::chrono::steady_clock;

namespace {

double Seconds(Clock::time_point since) { return std::chrono::duration<double>(Clock::now() - since).count(); }

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

// Records/s of buffered write() of `count` copies of `frame`.
double Write(const std::vector<std::byte>& frame, std::uint64_t count) {
  bench::ScratchDir dir("sustained-write");
  const int fd = bench::OpenScratchFile(dir.path() / "raw");
  bench::BufferedWriter out(fd);
  const auto t0 = Clock::now();
  for (std::uint64_t i = 0; i < count; ++i) out.Add(frame);
  out.Flush();
  const double s = Seconds(t0);
  ::close(fd);
  return static_cast<double>(count) / s;
}

// Records/s of memcpy into a shared mapping allocated ahead in 8 MiB steps.
double Mapped(const std::vector<std::byte>& frame, std::uint64_t count, int populate) {
  bench::ScratchDir dir("sustained-mapped");
  const int fd = bench::OpenScratchFile(dir.path() / "mapped");
  const std::size_t capacity = frame.size() * count + (8 << 20);
  const std::size_t step = 8 << 20;
  void* map = ::mmap(nullptr, capacity, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) throw IoError("benchmark file", errno, "mmap");
  auto* base = static_cast<std::byte*>(map);
  std::size_t used = 0, allocated = 0;
  const auto t0 = Clock::now();
  for (std::uint64_t i = 0; i < count; ++i) {
    if (used + frame.size() > allocated) {
      if (::posix_fallocate(fd, static_cast<off_t>(allocated), static_cast<off_t>(step)) != 0)
        throw IoError("benchmark file", errno, "posix_fallocate");
      if (populate) ::madvise(base + allocated, step, populate);
      allocated += step;
    }
    std::memcpy(base + used, frame.data(), frame.size());
    used += frame.size();
  }
  const double s = Seconds(t0);
  ::munmap(map, capacity);
  ::close(fd);
  return static_cast<double>(count) / s;
}

// Records/s of Log<>::Append (batch == 0) or AppendBatch(batch), default
// config; with `latency`, the time of every call in ns.
double Append(std::size_t size, std::uint64_t count, std::size_t batch, std::vector<std::uint32_t>* latency) {
  bench::ScratchDir dir("sustained-append");
  Log<> log(dir.path());
  const Record r{0, std::string(size, 'v')};
  const std::vector<Record> records(std::max<std::size_t>(batch, 1), r);
  const auto t0 = Clock::now();
  if (batch > 0) {
    for (std::uint64_t i = 0; i < count; i += batch) log.AppendBatch(records);
  } else if (latency) {
    latency->resize(count);
    for (std::uint64_t i = 0; i < count; ++i) {
      const auto a = Clock::now();
      log.Append(r);
      (*latency)[i] = static_cast<std::uint32_t>(
          std::min<std::int64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - a).count(),
                                 std::numeric_limits<std::uint32_t>::max()));
    }
  } else {
    for (std::uint64_t i = 0; i < count; ++i) log.Append(r);
  }
  const double s = Seconds(t0);
  return static_cast<double>(count) / s;
}

#if LOGSYNC_HAVE_LMDB
void Mdb(int rc, const char* what) {
  if (rc != 0) {
    std::fprintf(stderr, "LMDB %s: %s\n", what, mdb_strerror(rc));
    std::exit(1);
  }
}

// Records/s of LMDB's bulk load: 1,000 records per transaction, no syncs.
double Lmdb(std::size_t size, std::uint64_t count) {
  bench::ScratchDir dir("sustained-lmdb");
  MDB_env* env = nullptr;
  Mdb(mdb_env_create(&env), "mdb_env_create");
  Mdb(mdb_env_set_mapsize(env, 64ULL << 30), "mdb_env_set_mapsize");
  Mdb(mdb_env_open(env, dir.path().c_str(), MDB_NOSYNC | MDB_NOMETASYNC, 0644), "mdb_env_open");
  MDB_dbi dbi;
  MDB_txn* txn = nullptr;
  Mdb(mdb_txn_begin(env, nullptr, 0, &txn), "mdb_txn_begin");
  Mdb(mdb_dbi_open(txn, nullptr, MDB_INTEGERKEY, &dbi), "mdb_dbi_open");
  Mdb(mdb_txn_commit(txn), "mdb_txn_commit");
  std::string value(size, 'v');
  const auto t0 = Clock::now();
  txn = nullptr;
  for (std::uint64_t i = 0; i < count; ++i) {
    if (txn == nullptr) Mdb(mdb_txn_begin(env, nullptr, 0, &txn), "mdb_txn_begin");
    std::uint64_t key = i;
    MDB_val k{sizeof key, &key}, v{value.size(), value.data()};
    Mdb(mdb_put(txn, dbi, &k, &v, MDB_APPEND), "mdb_put");
    if ((i + 1) % 1000 == 0) {
      Mdb(mdb_txn_commit(txn), "mdb_txn_commit");
      txn = nullptr;
    }
  }
  if (txn) Mdb(mdb_txn_commit(txn), "mdb_txn_commit");
  const double s = Seconds(t0);
  mdb_env_close(env);
  return static_cast<double>(count) / s;
}
#endif

// Peak resident set (bytes) while `fn` runs, sampled every 5 ms.
template <class F>
std::uint64_t PeakRss(F fn) {
  std::atomic<bool> done{false};
  std::atomic<std::uint64_t> peak{0};
  const long page = ::sysconf(_SC_PAGESIZE);
  std::thread sampler([&] {
    while (!done.load()) {
      std::ifstream statm("/proc/self/statm");
      std::uint64_t total = 0, resident = 0;
      statm >> total >> resident;
      peak = std::max<std::uint64_t>(peak.load(), resident * static_cast<std::uint64_t>(page));
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });
  fn();
  done = true;
  sampler.join();
  return peak.load();
}

struct Percentiles {
  double p50, p99, p999, max;
};

Percentiles Of(std::vector<std::uint32_t> ns) {
  std::sort(ns.begin(), ns.end());
  auto at = [&](double q) { return ns[std::min(ns.size() - 1, static_cast<std::size_t>(q * ns.size()))] / 1000.0; };
  return {at(0.5), at(0.99), at(0.999), ns.back() / 1000.0};
}

std::uint64_t Arg(int argc, char** argv, const std::string& name, std::uint64_t def) {
  for (int i = 1; i + 1 < argc; ++i)
    if (argv[i] == name) return std::strtoull(argv[i + 1], nullptr, 10);
  return def;
}

}  // namespace

int main(int argc, char** argv) {
  const std::uint64_t records = Arg(argc, argv, "--records", 10'000'000);
  const std::uint64_t durable = Arg(argc, argv, "--durable", 2000);
  const int reps = static_cast<int>(Arg(argc, argv, "--reps", 5));
  std::string json;
  for (int i = 1; i + 1 < argc; ++i)
    if (std::string(argv[i]) == "--json") json = argv[i + 1];

  const auto frame100 = bench::Frame(0, std::string(100, 'v'));
  const auto frame4k = bench::Frame(0, std::string(4096, 'v'));
  const std::uint64_t big = records / 10;
  std::map<std::string, std::vector<double>> rate;  // records/s per repetition
  std::vector<Percentiles> lat;
  std::vector<double> rss;
  for (int rep = 0; rep < reps; ++rep) {
    rate["W1 write"].push_back(Write(frame100, records));
    rate["W1 mapped"].push_back(Mapped(frame100, records, 0));
    rate["W1 mapped+populate"].push_back(Mapped(frame100, records, MADV_POPULATE_WRITE));
    rate["W1 mapped+populate-read"].push_back(Mapped(frame100, records, MADV_POPULATE_READ));
    rate["W1 Append"].push_back(Append(100, records, 0, nullptr));
    rate["W1 AppendBatch(100)"].push_back(Append(100, records, 100, nullptr));
#if LOGSYNC_HAVE_LMDB
    rate["W1 LMDB"].push_back(Lmdb(100, records));
#endif
    std::vector<std::uint32_t> ns;
    Append(100, records, 0, &ns);
    lat.push_back(Of(std::move(ns)));
    rate["W2 write"].push_back(Write(frame4k, big));
    { std::ofstream("/proc/self/clear_refs") << "5"; }
    rss.push_back(static_cast<double>(PeakRss([&] { rate["W2 Append"].push_back(Append(4096, big, 0, nullptr)); })));
    std::fprintf(stderr, "repetition %d of %d done\n", rep + 1, reps);
  }
  std::vector<std::uint32_t> always_ns;
  {
    bench::ScratchDir dir("sustained-always");
    Log<Record, DefaultCodec<Record>, sync::Always> log(dir.path());
    const Record r{0, std::string(100, 'v')};
    for (std::uint64_t i = 0; i < durable; ++i) {
      const auto a = Clock::now();
      log.Append(r);
      always_ns.push_back(static_cast<std::uint32_t>(
          std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - a).count()));
    }
  }
  const Percentiles always = Of(always_ns);

  auto ratios = [&](const std::string& name, const std::string& ceiling) {
    std::vector<double> r;
    for (std::size_t i = 0; i < rate[name].size(); ++i) r.push_back(rate[name][i] / rate[ceiling][i]);
    return Median(r);
  };
  auto pick = [&](auto field) {
    std::vector<double> v;
    for (const auto& p : lat) v.push_back(p.*field);
    return Median(v);
  };
  std::printf("| workload | median | vs write() | vs mapped+populate |\n|---|---|---|---|\n");
  for (const auto& [name, v] : rate) {
    const bool w2 = name.rfind("W2", 0) == 0;
    const double scale = w2 ? 4112.0 / 1e6 : 1.0;
    std::printf("| %s | %.3g %s | %.3f | %s |\n", name.c_str(), Median(v) * scale, w2 ? "MB/s" : "records/s",
                ratios(name, w2 ? "W2 write" : "W1 write"),
                w2 ? "" : std::to_string(ratios(name, "W1 mapped+populate")).substr(0, 5).c_str());
  }
  std::printf("\nW1 Append latency (us, medians over repetitions): p50 %.3f p99 %.3f p99.9 %.3f max %.0f\n",
              pick(&Percentiles::p50), pick(&Percentiles::p99), pick(&Percentiles::p999), pick(&Percentiles::max));
  std::printf("sync::Always Append latency (us): p50 %.0f p99 %.0f p99.9 %.0f max %.0f\n", always.p50, always.p99,
              always.p999, always.max);
  std::printf("W2 peak RSS while appending %.2f GB: %.1f MiB (median)\n", big * 4112.0 / 1e9, Median(rss) / (1 << 20));
  if (!json.empty()) {
    std::ofstream out(json);
    out << "{\"records\": " << records << ", \"reps\": " << reps << ", \"rates\": {";
    bool first = true;
    for (const auto& [name, v] : rate) {
      out << (first ? "" : ", ") << "\"" << name << "\": {\"median\": " << Median(v)
          << ", \"vs_write\": " << ratios(name, name.rfind("W2", 0) == 0 ? "W2 write" : "W1 write") << "}";
      first = false;
    }
    out << "}, \"append_latency_us\": {\"p50\": " << pick(&Percentiles::p50) << ", \"p99\": " << pick(&Percentiles::p99)
        << ", \"p99.9\": " << pick(&Percentiles::p999) << ", \"max\": " << pick(&Percentiles::max) << "}"
        << ", \"always_latency_us\": {\"p50\": " << always.p50 << ", \"p99\": " << always.p99
        << ", \"p99.9\": " << always.p999 << ", \"max\": " << always.max << "}"
        << ", \"w2_peak_rss_mib\": " << Median(rss) / (1 << 20) << "}\n";
  }
  return 0;
}
