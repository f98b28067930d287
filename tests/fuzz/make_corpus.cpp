// Writes the seed inputs of log_fuzz into the directory argv[1]: real logs
// built with logsync::Log<> under the fuzzer's config (max_store_bytes 4096,
// max_index_bytes 64 * 16), closed cleanly or copied while still open, and
// some damaged variants of them, each encoded in log_fuzz's input format
// (see log_fuzz.cpp and fuzz_input.hpp).
//
//   make_corpus DIR
//
// Build: clang++ -std=c++20 -O1 -Iinclude tests/fuzz/make_corpus.cpp -o make_corpus
// (tests/fuzz/run builds it into ${LOGSYNC_BUILD:-build-tests}/fuzz).

#include "fuzz_input.hpp"

#include <logsync/logsync.hpp>

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using logsync::Record;
using logsync::fuzz::FuzzFile;
using Files = std::vector<FuzzFile>;

constexpr std::size_t kMaxSeedBytes = 20 * 1024;

[[noreturn]] void Die(const std::string& why) {
  std::fprintf(stderr, "make_corpus: %s\n", why.c_str());
  std::exit(1);
}

logsync::Config FuzzConfig(std::uint64_t initial_offset = 0) {
  logsync::Config c;
  c.segment.max_store_bytes = 4096;
  c.segment.max_index_bytes = 64 * logsync::kIndexEntryBytes;
  c.segment.initial_offset = initial_offset;
  return c;
}

// A fresh, empty scratch directory for one log.
class Scratch {
 public:
  Scratch() {
    static int n = 0;
    path_ = fs::temp_directory_path() / ("logsync-make-corpus-" + std::to_string(::getpid()) + "-" + std::to_string(n++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// The segment files of a log directory, in name order (LOCK is left out).
Files Snapshot(const fs::path& dir) {
  Files files;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    FuzzFile f;
    if (auto b = logsync::detail::ParseSegmentName(name, ".store")) {
      f.base = *b;
    } else if (auto b2 = logsync::detail::ParseSegmentName(name, ".index")) {
      f.base = *b2, f.index = true;
    } else {
      continue;
    }
    std::ifstream in(e.path(), std::ios::binary);
    std::vector<char> raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    f.bytes.resize(raw.size());
    std::memcpy(f.bytes.data(), raw.data(), raw.size());
    files.push_back(std::move(f));
  }
  std::sort(files.begin(), files.end(), [](const FuzzFile& a, const FuzzFile& b) { return a.Name() < b.Name(); });
  return files;
}

std::string Value(std::size_t i, std::size_t size) {
  std::string v = "record-" + std::to_string(i) + "-";
  while (v.size() < size) v += static_cast<char>('a' + (v.size() + i) % 26);
  v.resize(size);
  return v;
}

// Builds a log, appends `records` values of `value_size` bytes, closes it.
Files CleanLog(std::size_t records, std::size_t value_size, std::uint64_t initial_offset = 0) {
  Scratch s;
  {
    logsync::Log<> log(s.path(), FuzzConfig(initial_offset));
    for (std::size_t i = 0; i < records; ++i) log.Append(Record{0, Value(i, value_size)});
    log.Close();
  }
  return Snapshot(s.path());
}

// Builds a log and copies its files while it is still open, after
// `before_sync` records, a Sync (if asked), and `after_sync` more.
Files UncleanLog(std::size_t before_sync, bool sync, std::size_t after_sync, std::size_t value_size) {
  Scratch s;
  logsync::Log<> log(s.path(), FuzzConfig());
  std::size_t i = 0;
  for (; i < before_sync; ++i) log.Append(Record{0, Value(i, value_size)});
  if (sync) log.Sync();
  for (; i < before_sync + after_sync; ++i) log.Append(Record{0, Value(i, value_size)});
  return Snapshot(s.path());  // the log is still open: no seal, no trim
}

FuzzFile& Find(Files& files, std::uint64_t base, bool index) {
  for (auto& f : files)
    if (f.base == base && f.index == index) return f;
  Die("no " + std::string(index ? "index" : "store") + " at base " + std::to_string(base));
}

Files Without(Files files, const std::function<bool(const FuzzFile&)>& drop) {
  files.erase(std::remove_if(files.begin(), files.end(), drop), files.end());
  return files;
}

void WriteSeed(const fs::path& out_dir, const std::string& name, const Files& files, bool headers = true) {
  if (files.size() > logsync::fuzz::kMaxFiles) Die(name + ": more than 8 files");
  std::vector<std::uint8_t> input;
  for (const auto& f : files)
    if (!logsync::fuzz::EncodeFile(input, f.index, f.base, f.bytes, headers)) Die(name + ": " + f.Name() + " too large");
  // The encoding must decode to exactly these files.
  const Files back = logsync::fuzz::DecodeInput(input.data(), input.size());
  bool same = back.size() == files.size();
  for (std::size_t i = 0; same && i < files.size(); ++i)
    same = back[i].index == files[i].index && back[i].base == files[i].base && back[i].bytes == files[i].bytes;
  if (!same) Die(name + ": the encoding does not decode to the log's files");
  if (input.size() > kMaxSeedBytes) Die(name + ": " + std::to_string(input.size()) + " bytes, over the limit");
  std::ofstream out(out_dir / name, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(input.data()), static_cast<std::streamsize>(input.size()));
  if (!out) Die("writing " + (out_dir / name).string());
  std::printf("%-40s %2zu files %6zu bytes\n", name.c_str(), files.size(), input.size());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUTPUT_DIR\n", argv[0]);
    return 2;
  }
  const fs::path out = argv[1];
  fs::create_directories(out);
  try {
    WriteSeed(out, "00-empty-directory", {});
    const Files one = CleanLog(5, 12);
    WriteSeed(out, "01-clean-one-segment", one);
    WriteSeed(out, "02-clean-one-segment-raw-headers", one, /*headers=*/false);

    // 150 short records: segments roll on the index (64 records) at 0, 64, 128.
    const Files by_count = CleanLog(150, 6);
    WriteSeed(out, "03-clean-roll-by-record-count", by_count);
    // 10 records of 1000 bytes: segments roll on the store size at 0, 4, 8.
    WriteSeed(out, "04-clean-roll-by-store-bytes", CleanLog(10, 1000));
    // Bases that are no multiple of 4, and the end of the offset space.
    WriteSeed(out, "05-clean-initial-offset-1000", CleanLog(80, 9, 1000));
    {
      Scratch s;
      logsync::Log<> log(s.path(), FuzzConfig(std::numeric_limits<std::uint64_t>::max() - 10));
      try {
        for (std::size_t i = 0;; ++i) log.Append(Record{0, Value(i, 8)});
      } catch (const logsync::StateError&) {  // out of offsets
      }
      log.Close();
      WriteSeed(out, "06-clean-top-of-offset-space", Snapshot(s.path()));
    }
    // Records of 0, 1, ... bytes.
    {
      Scratch s;
      {
        logsync::Log<> log(s.path(), FuzzConfig());
        for (std::size_t size : {0, 1, 0, 2, 255, 256, 300, 0, 17})
          log.Append(Record{0, Value(size, size)});
        log.Close();
      }
      WriteSeed(out, "07-clean-varied-record-sizes", Snapshot(s.path()));
    }

    // Copied while open: the active index is preallocated and untrimmed.
    WriteSeed(out, "08-unclean-never-synced", UncleanLog(100, false, 0, 7));
    const Files synced = UncleanLog(70, true, 10, 7);
    WriteSeed(out, "09-unclean-tail-after-sync", synced);
    {
      Files torn = synced;
      FuzzFile& store = Find(torn, 64, false);
      store.bytes.resize(store.bytes.size() - 9);  // cut into the last frame
      WriteSeed(out, "10-unclean-torn-last-frame", torn);
    }
    WriteSeed(out, "11-unclean-active-index-missing",
              Without(synced, [](const FuzzFile& f) { return f.index && f.base == 64; }));
    WriteSeed(out, "12-unclean-one-segment", UncleanLog(20, true, 5, 30));

    // Damaged variants of the three-segment log.
    WriteSeed(out, "13-stores-only", Without(by_count, [](const FuzzFile& f) { return f.index; }));
    WriteSeed(out, "14-middle-segment-missing", Without(by_count, [](const FuzzFile& f) { return f.base == 64; }));
    {
      Files bad = by_count;
      FuzzFile& index = Find(bad, 0, true);
      // Entry 10's position (bytes 8-15 of the entry) points 1 byte further.
      index.bytes[logsync::kIndexHeaderBytes + 10 * logsync::kIndexEntryBytes + 8] ^= std::byte{1};
      WriteSeed(out, "15-sealed-index-entry-damaged", bad);
    }
    {
      Files bad = by_count;
      FuzzFile& store = Find(bad, 64, false);
      store.bytes[store.bytes.size() / 2] ^= std::byte{0x40};  // a payload or header byte mid-store
      WriteSeed(out, "16-sealed-store-byte-flipped", bad);
    }
    {
      Files bad = by_count;
      FuzzFile& store = Find(bad, 128, false);
      store.bytes.resize(store.bytes.size() - 3);  // the active store of a closed log, torn
      WriteSeed(out, "17-closed-active-store-torn", bad);
    }
  } catch (const std::exception& e) {
    Die(e.what());
  }
  return 0;
}
