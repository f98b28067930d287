// single_node: the library on one machine, from start to end. Opens (or
// restores) a log in DIR, appends records one at a time and in a batch,
// reads them back by offset and in order, follows the log from another
// thread, verifies it, and closes it; with --remove it deletes it at the
// end. Run it twice on the same DIR to see a log restored.
//
//     single_node DIR [--remove]

#include <logsync/logsync.hpp>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <thread>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3 || (argc == 3 && std::strcmp(argv[2], "--remove") != 0)) {
    std::fprintf(stderr, "usage: single_node DIR [--remove]\n");
    return 2;
  }
  try {
    // Durable on return from every Append: sync::Always (group commit).
    logsync::Config config;
    config.segment.max_store_bytes = 16 << 10;  // small segments, to see them roll
    logsync::Log<logsync::Record, logsync::DefaultCodec<logsync::Record>, logsync::sync::Always> log(argv[1], config);
    const std::uint64_t start = log.NextOffset();
    std::printf("opened %s: offsets %llu to %llu held, %zu segment(s)\n", argv[1],
                static_cast<unsigned long long>(log.LowestOffset()), static_cast<unsigned long long>(start),
                log.SegmentCount());

    // A reader that follows the log as records arrive.
    std::uint64_t seen = 0;
    std::thread tail([&] {
      for (std::uint64_t o = start; o < start + 1000; ++o) {
        if (!log.WaitFor(o, std::chrono::seconds(10))) return;
        ++seen;
      }
    });

    for (int i = 0; i < 500; ++i) log.Append({.value = "event " + std::to_string(i)});
    std::vector<logsync::Record> batch;
    for (int i = 0; i < 500; ++i) batch.push_back({.value = "batched " + std::to_string(i)});
    const std::uint64_t first = log.AppendBatch(batch);  // one write, one sync
    tail.join();

    const logsync::Record r = log.Read(first);
    std::printf("appended 1000 records; offset %llu holds \"%s\"\n", static_cast<unsigned long long>(first),
                r.value.c_str());
    std::uint64_t bytes = 0;
    for (const logsync::Record& rec : log.Scan(start)) bytes += rec.value.size();
    std::printf("scanned %llu payload bytes; the tailing reader saw %llu records\n",
                static_cast<unsigned long long>(bytes), static_cast<unsigned long long>(seen));

    const logsync::VerifyReport report = log.Verify();
    std::printf("verified %llu records in %llu segment(s): %s\n", static_cast<unsigned long long>(report.records),
                static_cast<unsigned long long>(report.segments), report.Ok() ? "ok" : "PROBLEMS");
    if (!report.Ok() || seen != 1000) return 1;
    if (argc == 3) {
      log.Remove();
      std::printf("removed %s\n", argv[1]);
    } else {
      log.Close();
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "single_node: %s\n", e.what());
    return 1;
  }
  return 0;
}
