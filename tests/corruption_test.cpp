#define BOOST_TEST_MODULE corruption_test
#include <boost/test/unit_test.hpp>

// Damaged files at the log level: every bit of a closed log flipped in
// turn, torn tails at every byte, garbage tails, crash-shaped and foreign
// indexes, and what Log::Verify reports for each.

#include <logsync/logsync.hpp>

#include "support/config.hpp"
#include "support/frames.hpp"
#include "support/temp_dir.hpp"

#include <algorithm>
#include <map>
#include <string>
#include <vector>

using logsync::Config;
using logsync::CorruptionError;
using logsync::Log;
using logsync::Record;
using logsync::test::ReadFile;
using logsync::test::TempDir;
using logsync::test::WriteFile;

namespace {

Config Small(std::uint64_t store_bytes = 160) { return logsync::test::SmallSegments(store_bytes); }

std::string Value(std::uint64_t i) { return "v" + std::to_string(i) + std::string(i % 7, '.'); }

// A closed log of n records; returns its files by name.
std::map<std::string, std::string> BuildLog(const TempDir& dir, std::uint64_t n, const Config& c) {
  {
    Log<> log(dir.path(), c);
    for (std::uint64_t i = 0; i < n; ++i) log.Append(Record{0, Value(i)});
  }
  std::map<std::string, std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(dir.path()))
    if (e.path().extension() == ".store" || e.path().extension() == ".index")
      files[e.path().filename().string()] = ReadFile(e.path());
  return files;
}

void Restore(const TempDir& dir, const std::map<std::string, std::string>& files) {
  for (const auto& e : std::filesystem::directory_iterator(dir.path()))
    if (e.path().extension() == ".store" || e.path().extension() == ".index") std::filesystem::remove(e.path());
  for (const auto& [name, bytes] : files) WriteFile(dir / name, bytes);
}

// What a damaged log may do: refuse to open with CorruptionError, or open
// and hand back, for each offset, either the record that was stored there
// or CorruptionError; never other bytes. Returns how many reads failed (or
// -1 when the open failed); checks that Verify agrees.
int CheckNeverWrongData(const TempDir& dir, const Config& c, std::uint64_t n, const std::string& what) {
  std::optional<Log<>> log;
  try {
    log.emplace(dir.path(), c);
  } catch (const CorruptionError&) {
    return -1;
  }
  int failed = 0;
  BOOST_TEST(log->NextOffset() <= n, what);
  for (std::uint64_t o = log->LowestOffset(); o < log->NextOffset(); ++o) {
    try {
      BOOST_TEST(log->Read(o).value == Value(o), what << " offset " << o);
    } catch (const CorruptionError&) {
      ++failed;
    }
  }
  std::uint64_t scanned = 0;
  try {
    for (const Record& r : log->Scan(0)) {
      BOOST_TEST(r.value == Value(r.offset), what);
      ++scanned;
    }
  } catch (const CorruptionError&) {
    BOOST_TEST(failed > 0, what << ": Scan failed where every Read held");
  }
  const auto report = log->Verify();
  BOOST_TEST(report.Ok() == (failed == 0), what << ": Verify says " << report.Ok() << ", " << failed << " reads failed");
  BOOST_TEST(report.records + failed >= log->NextOffset() - log->LowestOffset(), what);
  // The log stays appendable.
  const std::uint64_t next = log->NextOffset();
  BOOST_TEST(log->Append(Record{0, "after"}) == next, what);
  BOOST_TEST(log->Read(next).value == "after", what);
  return failed;
}

}  // namespace

BOOST_AUTO_TEST_CASE(verify_reports_a_healthy_log) {
  TempDir dir;
  Log<> log(dir.path(), Small());
  std::uint64_t payload = 0;
  for (std::uint64_t i = 0; i < 40; ++i) {
    log.Append(Record{0, Value(i)});
    payload += Value(i).size();
  }
  BOOST_REQUIRE(log.SegmentCount() > 3U);
  const auto r = log.Verify();
  BOOST_TEST(r.Ok());
  BOOST_TEST(r.segments == log.SegmentCount());
  BOOST_TEST(r.records == 40U);
  BOOST_TEST(r.payload_bytes == payload);
}

BOOST_AUTO_TEST_CASE(verify_names_the_damaged_frame_and_index_entry) {
  TempDir dir;
  BuildLog(dir, 20, Small());
  const auto store = dir / "00000000000000000000.store";
  const auto index = dir / "00000000000000000000.index";
  std::string s = ReadFile(store);
  const auto at = s.find(Value(1));
  s[at] ^= 0x04;
  WriteFile(store, s);
  std::string x = ReadFile(index);
  x[logsync::kIndexHeaderBytes + 2 * logsync::kIndexEntryBytes + 4] ^= 0x01;  // length of entry 2
  WriteFile(index, x);
  Log<> log(dir.path(), Small());
  const auto r = log.Verify();
  BOOST_REQUIRE(r.problems.size() == 2U);
  BOOST_TEST(r.problems[0].path == store);
  BOOST_TEST(r.problems[0].position == at - logsync::kFrameHeaderBytes);
  BOOST_TEST(r.problems[0].what.find("checksum") != std::string::npos);
  BOOST_TEST(r.problems[1].path == index);
  BOOST_TEST(r.problems[1].position == logsync::kIndexHeaderBytes + 2 * logsync::kIndexEntryBytes);
  BOOST_TEST(r.records == 18U);
  BOOST_CHECK_THROW(log.Read(1), CorruptionError);
  BOOST_CHECK_THROW(log.Read(2), CorruptionError);
  BOOST_TEST(log.Read(3).value == Value(3));
}

BOOST_AUTO_TEST_CASE(every_bit_of_a_closed_log_flipped_in_turn) {
  TempDir dir;
  const Config c = Small();
  const std::uint64_t n = 20;
  const auto files = BuildLog(dir, n, c);
  BOOST_REQUIRE(files.size() >= 6U);  // three segments or more
  int flips = 0, refused = 0, reported = 0;
  for (const auto& [name, bytes] : files) {
    for (std::size_t pos = 0; pos < bytes.size(); ++pos) {
      auto damaged = files;
      damaged[name][pos] = static_cast<char>(damaged[name][pos] ^ (1 << (pos % 8)));
      Restore(dir, damaged);
      const std::string what = name + " byte " + std::to_string(pos);
      const int failed = CheckNeverWrongData(dir, c, n, what);
      ++flips;
      if (failed < 0) ++refused;
      if (failed > 0) ++reported;
      // A flipped bit inside a frame of a store is never silently dropped:
      // the open refuses, or a read reports it.
      const bool in_frame = name.ends_with(".store") && pos >= logsync::kStoreHeaderBytes;
      if (in_frame) BOOST_TEST(failed != 0, what << ": damage went unnoticed");
    }
  }
  BOOST_TEST_MESSAGE(flips << " flips: " << refused << " refused at open, " << reported << " reported on read");
  BOOST_TEST(refused > 0);
  BOOST_TEST(reported > 0);
}

BOOST_AUTO_TEST_CASE(torn_active_store_at_every_byte_of_its_last_frames) {
  TempDir dir;
  const Config c = Small(100);
  const auto files = BuildLog(dir, 14, c);
  const std::string active = std::prev(files.end())->first;  // the newest .store sorts last
  BOOST_REQUIRE(active.ends_with(".store"));
  const std::string& bytes = files.at(active);
  const std::uint64_t base = std::stoull(active.substr(0, 20));
  // Frame ends of the active store, to know how many whole frames a cut keeps.
  std::vector<std::size_t> ends;
  for (std::size_t pos = logsync::kStoreHeaderBytes; pos < bytes.size();) {
    const auto len = logsync::detail::LoadLE<std::uint32_t>(reinterpret_cast<const std::byte*>(bytes.data() + pos));
    pos += logsync::kFrameHeaderBytes + len;
    ends.push_back(pos);
  }
  BOOST_REQUIRE(ends.size() >= 3U);
  for (std::size_t cut = ends[ends.size() - 4 < ends.size() ? ends.size() - 4 : 0]; cut < bytes.size(); ++cut) {
    auto torn = files;
    torn[active].resize(cut);
    Restore(dir, torn);
    const auto whole = static_cast<std::uint64_t>(std::upper_bound(ends.begin(), ends.end(), cut) - ends.begin());
    Log<> log(dir.path(), c);
    BOOST_TEST(log.NextOffset() == base + whole, "cut at " << cut);
    BOOST_TEST(log.Verify().Ok(), "cut at " << cut);
    BOOST_TEST(std::filesystem::file_size(dir / active) == (whole == 0 ? logsync::kStoreHeaderBytes : ends[whole - 1]));
    BOOST_TEST(log.Append(Record{0, "next"}) == base + whole);
  }
}

BOOST_AUTO_TEST_CASE(garbage_after_the_last_frame_is_cut_off) {
  TempDir dir;
  const Config c = Small(4096);
  const auto files = BuildLog(dir, 6, c);
  const std::string store = "00000000000000000000.store";
  const std::string dup_last = files.at(store).substr(files.at(store).size() - (logsync::kFrameHeaderBytes + Value(5).size()));
  const std::vector<std::pair<std::string, std::string>> tails{
      {"zeros", std::string(100, '\0')},
      {"ones", std::string(100, '\xff')},
      {"text", "this is not a frame at all, just some trailing text"},
      {"a copy of the last frame (wrong offset)", dup_last},
      {"a frame header with a huge length", std::string("\xff\xff\xff\x7f", 4) + std::string(12, '\0')},
  };
  for (const auto& [what, tail] : tails) {
    auto damaged = files;
    damaged[store] += tail;
    // The index as a crash leaves it: still preallocated.
    damaged["00000000000000000000.index"].resize(logsync::kIndexHeaderBytes + 1000 * logsync::kIndexEntryBytes);
    Restore(dir, damaged);
    Log<> log(dir.path(), c);
    BOOST_TEST(log.NextOffset() == 6U, what);
    BOOST_TEST(log.Verify().Ok(), what);
    BOOST_TEST(std::filesystem::file_size(dir / store) == files.at(store).size(), what);
    BOOST_TEST(log.Append(Record{0, "next"}) == 6U, what);
  }
}

BOOST_AUTO_TEST_CASE(crash_shaped_and_foreign_indexes_are_rebuilt) {
  TempDir dir;
  const Config c = Small(100);
  const auto files = BuildLog(dir, 14, c);
  std::vector<std::string> indexes;
  for (const auto& [name, bytes] : files)
    if (name.ends_with(".index")) indexes.push_back(name);
  BOOST_REQUIRE(indexes.size() >= 3U);
  using Damage = std::function<void(std::string&, const std::string& other)>;
  const std::vector<std::pair<std::string, Damage>> damages{
      {"missing", [](std::string& x, const std::string&) { x.clear(); }},
      {"zero-filled", [](std::string& x, const std::string&) { x.assign(x.size(), '\0'); }},
      {"zero-filled preallocated tail",
       [](std::string& x, const std::string&) { x.resize(x.size() + 64 * logsync::kIndexEntryBytes); }},
      {"cut mid-entry", [](std::string& x, const std::string&) { x.resize(x.size() - 5); }},
      {"shorter than its header", [](std::string& x, const std::string&) { x.resize(20); }},
      {"entries swapped",
       [](std::string& x, const std::string&) {
         const auto h = logsync::kIndexHeaderBytes, e = logsync::kIndexEntryBytes;
         if (x.size() >= h + 2 * e) std::swap_ranges(x.begin() + h, x.begin() + h + e, x.begin() + h + e);
       }},
      {"longer than the store (entries past its end)",
       [](std::string& x, const std::string&) {
         const auto h = logsync::kIndexHeaderBytes, e = logsync::kIndexEntryBytes;
         const std::string last = x.substr(x.size() - e);
         std::string more = last;
         auto* p = reinterpret_cast<std::byte*>(more.data());
         logsync::detail::StoreLE<std::uint32_t>(p, logsync::detail::LoadLE<std::uint32_t>(p) + 1);
         logsync::detail::StoreLE<std::uint64_t>(p + 8, logsync::detail::LoadLE<std::uint64_t>(p + 8) + 1000);
         if (x.size() >= h + e) x += more;
       }},
      {"another segment's index", [](std::string& x, const std::string& other) { x = other; }},
  };
  for (std::size_t k = 0; k < indexes.size(); ++k) {
    for (const auto& [what, damage] : damages) {
      auto damaged = files;
      damage(damaged[indexes[k]], files.at(indexes[(k + 1) % indexes.size()]));
      if (what == "missing") damaged.erase(indexes[k]);
      Restore(dir, damaged);
      const std::string label = indexes[k] + ": " + what;
      Log<> log(dir.path(), c);
      BOOST_TEST(log.NextOffset() == 14U, label);
      const bool sealed = k + 1 < indexes.size();
      if (sealed && what == "entries swapped") {
        // A sealed index is checked cheaply at open (its structure and last
        // entry), so damage in its middle, which no crash leaves (it was
        // synced before the next segment existed), is caught on read: the
        // two entries are reported against the index file, not misread.
        const std::uint64_t base = std::stoull(indexes[k].substr(0, 20));
        for (std::uint64_t o : {base, base + 1})
          BOOST_CHECK_EXCEPTION(log.Read(o), CorruptionError,
                                [&](const CorruptionError& e) { return e.path() == dir / indexes[k]; });
        BOOST_TEST(log.Read(base + 2).value == Value(base + 2), label);
        const auto r = log.Verify();
        BOOST_TEST(r.records == 12U, label);
        BOOST_TEST(r.problems.size() == 2U, label);
        for (const auto& p : r.problems) BOOST_TEST(p.path == dir / indexes[k], label);
        continue;
      }
      for (std::uint64_t o = 0; o < 14; ++o) BOOST_TEST(log.Read(o).value == Value(o), label << " offset " << o);
      BOOST_TEST(log.Verify().Ok(), label);
    }
  }
}

BOOST_AUTO_TEST_CASE(store_files_swapped_between_segments_are_refused) {
  TempDir dir;
  const Config c = Small(100);
  auto files = BuildLog(dir, 14, c);
  std::vector<std::string> stores;
  for (const auto& [name, bytes] : files)
    if (name.ends_with(".store")) stores.push_back(name);
  BOOST_REQUIRE(stores.size() >= 3U);
  std::swap(files[stores[0]], files[stores[1]]);
  Restore(dir, files);
  BOOST_CHECK_THROW(Log<>(dir.path(), c), CorruptionError);
  // Nothing was altered by the refusal.
  for (const auto& [name, bytes] : files) BOOST_TEST(ReadFile(dir / name) == bytes, name);
}
