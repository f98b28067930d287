#define BOOST_TEST_MODULE segment_set_test
#include <boost/test/unit_test.hpp>

#include <logsync/logsync.hpp>
#include <logsync/segment_set.hpp>

#include "support/frames.hpp"
#include "support/log_helpers.hpp"
#include "support/syscalls.hpp"
#include "support/temp_dir.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <span>
#include <string>
#include <sys/stat.h>
#include <vector>

using logsync::Config;
using logsync::Log;
using logsync::OffsetOutOfRange;
using logsync::Record;
using logsync::SegmentSet;
using logsync::StateError;
using logsync::test::CountFiles;
using logsync::test::Rec;
using logsync::test::Small;
using logsync::test::SyscallHooks;
using logsync::test::TempDir;
using logsync::test::Value;

namespace {

using Bases = std::vector<std::uint64_t>;

// A resolved config of `records` records per segment, the first at `initial`.
Config PerSegment(std::uint64_t records, std::uint64_t initial = 0) {
  Config c = logsync::test::SmallSegments(64 * 1024, records * logsync::kIndexEntryBytes);
  c.segment.initial_offset = initial;
  return logsync::detail::Resolve(c);
}

// Records as Segment::Append takes them: per record a blank frame header
// then the payload, and each payload's length and CRC.
struct Frames {
  std::vector<std::byte> bytes;
  std::vector<std::uint32_t> lengths, crcs;
};

Frames MakeFrames(const std::vector<std::string>& payloads) {
  Frames f;
  for (const std::string& p : payloads) {
    const std::size_t at = f.bytes.size();
    f.bytes.resize(at + logsync::kFrameHeaderBytes + p.size());
    if (!p.empty()) std::memcpy(f.bytes.data() + at + logsync::kFrameHeaderBytes, p.data(), p.size());
    f.lengths.push_back(static_cast<std::uint32_t>(p.size()));
    f.crcs.push_back(logsync::detail::PayloadCrc(std::as_bytes(std::span(p))));
  }
  return f;
}

// Appends `payloads` as one batch; returns what Append returns.
std::uint64_t Put(SegmentSet& set, const std::vector<std::string>& payloads) {
  Frames f = MakeFrames(payloads);
  return set.Append(f.bytes, f.lengths, f.crcs);
}

// Appends Value(o) for o in [from, from + n) as one batch.
std::uint64_t PutValues(SegmentSet& set, std::uint64_t from, std::uint64_t n) {
  std::vector<std::string> payloads;
  for (std::uint64_t o = from; o < from + n; ++o) payloads.push_back(Value(o));
  return Put(set, payloads);
}

// The payload at `offset`, through View.
std::string ViewOf(const SegmentSet& set, std::uint64_t offset) {
  auto copy = [](std::span<const std::byte> p) { return logsync::test::AsString(p); };
  return set.View(offset, copy);
}

// Whether View reads Value(o) for every o in [from, to).
bool HoldsValues(const SegmentSet& set, std::uint64_t from, std::uint64_t to) {
  for (std::uint64_t o = from; o < to; ++o)
    if (ViewOf(set, o) != Value(o)) return false;
  return true;
}

Bases BasesOf(const SegmentSet::Segments& segs) {
  Bases out;
  for (const auto& s : segs) out.push_back(s->BaseOffset());
  return out;
}

Bases CountsOf(const SegmentSet::Segments& segs) {
  Bases out;
  for (const auto& s : segs) out.push_back(s->Count());
  return out;
}

std::filesystem::path StoreOf(const TempDir& dir, std::uint64_t base) {
  return logsync::Segment::StorePath(dir.path(), base);
}

std::filesystem::path IndexOf(const TempDir& dir, std::uint64_t base) {
  return logsync::Segment::IndexPath(dir.path(), base);
}

}  // namespace

// --- through the Log ---------------------------------------------------------

BOOST_AUTO_TEST_CASE(truncate_removes_old_segments) {
  TempDir dir;
  Log<> log(dir.path(), Small(200));
  for (int i = 0; i < 40; ++i) log.Append(Rec(Value(i)));
  const std::size_t before = log.SegmentCount();
  BOOST_TEST(before > 3U);
  log.Truncate(10);
  BOOST_TEST(log.SegmentCount() < before);
  BOOST_TEST(log.LowestOffset() > 0U);
  BOOST_TEST(log.LowestOffset() <= 11U);
  BOOST_CHECK_THROW(log.Read(0), logsync::OffsetOutOfRange);
  for (std::uint64_t i = log.LowestOffset(); i < 40; ++i) BOOST_TEST(log.Read(i).value == Value(i));
  BOOST_TEST(CountFiles(dir.path(), ".store") == log.SegmentCount());
  BOOST_TEST(CountFiles(dir.path(), ".index") == log.SegmentCount());
  // Survives reopening.
  const auto lowest = log.LowestOffset();
  log.Close();
  Log<> again(dir.path(), Small(200));
  BOOST_TEST(again.LowestOffset() == lowest);
  BOOST_TEST(again.NextOffset() == 40U);
}

BOOST_AUTO_TEST_CASE(truncate_everything_continues_at_next_offset) {
  TempDir dir;
  Log<> log(dir.path(), Small(200));
  for (int i = 0; i < 15; ++i) log.Append(Rec(Value(i)));
  log.Truncate(1000);
  BOOST_TEST(log.Empty());
  BOOST_TEST(log.LowestOffset() == 15U);
  BOOST_TEST(log.NextOffset() == 15U);
  BOOST_TEST(log.SegmentCount() == 1U);
  BOOST_CHECK_THROW(log.Read(14), logsync::OffsetOutOfRange);
  BOOST_TEST(log.Append(Rec("after")) == 15U);
  log.Close();
  Log<> again(dir.path(), Small(200));
  BOOST_TEST(again.LowestOffset() == 15U);
  BOOST_TEST(again.Read(15).value == "after");
}

BOOST_AUTO_TEST_CASE(truncate_keeps_open_scans_readable) {
  TempDir dir;
  Log<> log(dir.path(), Small(200));
  for (int i = 0; i < 30; ++i) log.Append(Rec(Value(i)));
  auto scan = log.Scan(0);
  log.Truncate(25);
  std::uint64_t expect = 0;
  for (const Record& r : scan) {
    BOOST_TEST(r.offset == expect);
    BOOST_TEST(r.value == Value(expect));
    ++expect;
  }
  BOOST_TEST(expect == 30U);
}

BOOST_AUTO_TEST_CASE(rolls_through_hundreds_of_segments) {
  TempDir dir;
  Config c = Small(0, 3 * logsync::kIndexEntryBytes);  // three records per segment
  {
    Log<> log(dir.path(), c);
    for (int i = 0; i < 900; ++i) log.Append(Rec(Value(i)));
    BOOST_TEST(log.SegmentCount() == 300U);
    for (int i = 0; i < 900; i += 7) BOOST_TEST(log.Read(i).value == Value(i));
  }
  Log<> log(dir.path(), c);
  BOOST_TEST(log.SegmentCount() == 300U);
  std::uint64_t n = 0;
  for (const Record& r : log.Scan(0)) {
    BOOST_TEST(r.value == Value(n));
    ++n;
  }
  BOOST_TEST(n == 900U);
  BOOST_TEST(CountFiles(dir.path(), ".store") == 300U);
}

BOOST_AUTO_TEST_CASE(append_batch_that_fits_a_segment_is_not_split) {
  TempDir dir;
  Config c = Small(0, 10 * logsync::kIndexEntryBytes);  // ten records per segment
  Log<> log(dir.path(), c);
  for (int i = 0; i < 7; ++i) log.Append(Rec("x"));
  std::vector<Record> batch(6, Rec("y"));
  BOOST_TEST(log.AppendBatch(batch) == 7U);
  // Six did not fit after seven; the batch went whole into a new segment.
  BOOST_TEST(log.SegmentCount() == 2U);
  BOOST_TEST(std::filesystem::exists(dir / "00000000000000000007.store"));
  // A batch larger than a segment spans several.
  std::vector<Record> huge(25, Rec("z"));
  BOOST_TEST(log.AppendBatch(huge) == 13U);
  BOOST_TEST(log.NextOffset() == 38U);
  for (std::uint64_t o = 13; o < 38; ++o) BOOST_TEST(log.Read(o).value == "z");
}

BOOST_AUTO_TEST_CASE(unknown_files_are_ignored_and_kept) {
  TempDir dir;
  const std::vector<std::string> foreign{"notes.txt", "abc.store", "12a.index", ".store", "1.store.bak",
                                         "123456789012345678901.store", "00000000000000000000.log",
                                         "5.store", "0000000000000000007.index", "99999999999999999999.store"};
  for (const auto& name : foreign) std::ofstream(dir / name) << "not ours";
  std::filesystem::create_directory(dir / "sub.store");  // a directory without a segment's name
  {
    Log<> log(dir.path(), Small(200));
    for (int i = 0; i < 20; ++i) log.Append(Rec(Value(i)));
    log.Truncate(10);
    log.Close();
  }
  {
    Log<> log(dir.path(), Small(200));
    BOOST_TEST(log.NextOffset() == 20U);
    log.Reset();
    BOOST_TEST(log.NextOffset() == 0U);
    log.Remove();
  }
  for (const auto& name : foreign) BOOST_TEST(std::filesystem::exists(dir / name), name);
  BOOST_TEST(std::filesystem::is_directory(dir / "sub.store"));
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    const auto name = e.path().filename().string();
    BOOST_TEST((std::find(foreign.begin(), foreign.end(), name) != foreign.end() ||
                name == "sub.store"),
               "left behind: " << name);
  }
}

BOOST_AUTO_TEST_CASE(gap_between_segments_is_reported) {
  TempDir dir;
  {
    Log<> log(dir.path(), Small(200));
    for (int i = 0; i < 20; ++i) log.Append(Rec(Value(i)));
    BOOST_TEST(log.SegmentCount() >= 3U);
  }
  // Remove a middle segment: the log must not paper over the hole.
  std::vector<std::filesystem::path> stores;
  for (const auto& e : std::filesystem::directory_iterator(dir.path()))
    if (e.path().extension() == ".store") stores.push_back(e.path());
  std::sort(stores.begin(), stores.end());
  std::filesystem::remove(stores[1]);
  BOOST_CHECK_THROW(Log<>(dir.path(), Small(200)), logsync::CorruptionError);
  // Nothing was deleted by the failed open.
  BOOST_TEST(std::filesystem::exists(stores[0]));
  BOOST_TEST(std::filesystem::exists(stores[2]));
}

BOOST_AUTO_TEST_CASE(orphan_index_is_discarded) {
  TempDir dir;
  {
    Log<> log(dir.path(), Small(200));
    for (int i = 0; i < 3; ++i) log.Append(Rec(Value(i)));
  }
  std::ofstream(dir / "00000000000000000500.index") << std::string(64, '\0');
  Log<> log(dir.path(), Small(200));
  BOOST_TEST(!std::filesystem::exists(dir / "00000000000000000500.index"));
  BOOST_TEST(log.NextOffset() == 3U);
}

BOOST_AUTO_TEST_CASE(foreign_file_with_a_segment_name_is_reported_not_deleted) {
  TempDir dir;
  std::ofstream(dir / "00000000000000000000.store") << "this is not a logsync store at all";
  BOOST_CHECK_EXCEPTION(Log<>(dir.path()), logsync::CorruptionError, [&](const logsync::CorruptionError& e) {
    return std::string(e.what()).find("magic") != std::string::npos;
  });
  BOOST_TEST(std::filesystem::file_size(dir / "00000000000000000000.store") == 34U);
}

namespace {

// What a non-regular entry with a segment's name is made as.
enum class Foreign { kSymlinkToFile, kDanglingSymlink, kDirectory, kFifo };

void MakeForeign(const std::filesystem::path& at, Foreign kind, const std::filesystem::path& real) {
  namespace fs = std::filesystem;
  switch (kind) {
    case Foreign::kSymlinkToFile: fs::rename(at, real); fs::create_symlink(real, at); break;
    case Foreign::kDanglingSymlink: fs::remove(at); fs::create_symlink(real / "gone", at); break;
    case Foreign::kDirectory: fs::remove(at); fs::create_directory(at); break;
    case Foreign::kFifo: fs::remove(at); BOOST_REQUIRE(::mkfifo(at.c_str(), 0644) == 0); break;
  }
}

// Names and sizes of every entry in `dir`, to show nothing changed.
std::vector<std::string> Listing(const std::filesystem::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    std::error_code ec;
    const auto type = e.symlink_status().type();
    const auto size = type == std::filesystem::file_type::regular ? std::filesystem::file_size(e.path(), ec) : 0;
    out.push_back(e.path().filename().string() + ":" + std::to_string(static_cast<int>(type)) + ":" +
                  std::to_string(size));
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

// A store (of the newest or of a sealed segment) or an index whose name is
// taken by a symbolic link, a directory or a fifo: open refuses the
// directory, naming the entry, and deletes nothing. Skipping the newest
// store would delete its index as an orphan and hand out its acknowledged
// offsets again.
BOOST_AUTO_TEST_CASE(non_regular_entries_with_segment_names_are_refused) {
  for (const Foreign kind : {Foreign::kSymlinkToFile, Foreign::kDanglingSymlink, Foreign::kDirectory, Foreign::kFifo})
    for (const char* which : {"newest store", "sealed store", "newest index", "sealed index"}) {
      TempDir dir, elsewhere;
      std::vector<std::string> names;
      {
        Log<Record, logsync::DefaultCodec<Record>, logsync::sync::Always> log(dir.path(), Small(200));
        for (int i = 0; i < 20; ++i) log.Append(Rec(Value(i)));
        BOOST_REQUIRE(log.SegmentCount() >= 3U);
        log.Close();
      }
      for (const auto& e : std::filesystem::directory_iterator(dir.path())) names.push_back(e.path().filename());
      std::sort(names.begin(), names.end());
      const std::string ext = std::string(which).find("store") != std::string::npos ? ".store" : ".index";
      std::vector<std::string> of_kind;
      for (const auto& n : names)
        if (n.size() > ext.size() && n.compare(n.size() - ext.size(), ext.size(), ext) == 0) of_kind.push_back(n);
      const std::string victim = std::string(which).find("newest") != std::string::npos ? of_kind.back() : of_kind[1];
      MakeForeign(dir / victim, kind, elsewhere / victim);
      const auto before = Listing(dir.path());
      const std::string what = std::string(which) + " as kind " + std::to_string(static_cast<int>(kind));
      BOOST_CHECK_EXCEPTION(Log<>(dir.path(), Small(200)), logsync::CorruptionError,
                            [&](const logsync::CorruptionError& e) {
                              const bool named = std::string(e.what()).find(victim) != std::string::npos;
                              BOOST_TEST(named, what << ": " << e.what());
                              return named;
                            });
      BOOST_TEST(Listing(dir.path()) == before, what);
      // Put back, the log is whole: nothing was lost or reused.
      std::filesystem::remove(dir / victim);
      if (kind == Foreign::kSymlinkToFile) std::filesystem::rename(elsewhere / victim, dir / victim);
      if (kind == Foreign::kSymlinkToFile) {
        Log<> log(dir.path(), Small(200));
        BOOST_TEST(log.NextOffset() == 20U, what);
        for (int i = 0; i < 20; ++i) BOOST_TEST(log.Read(i).value == Value(i));
      }
    }
}

// --- SegmentSet itself ------------------------------------------------------

BOOST_AUTO_TEST_CASE(open_on_an_empty_directory_creates_one_segment_at_the_initial_offset) {
  TempDir dir;
  SegmentSet set(dir.path(), PerSegment(10, 1000));
  BOOST_TEST(set.Size() == 0U);  // closed until Open
  BOOST_CHECK_THROW(set.Active(), StateError);
  set.Open();
  BOOST_TEST(set.Size() == 1U);
  BOOST_TEST(set.LowestOffset() == 1000U);
  BOOST_TEST(set.NextOffset() == 1000U);
  BOOST_TEST(set.Active()->BaseOffset() == 1000U);
  BOOST_TEST(set.Active()->Empty());
  BOOST_TEST(std::filesystem::is_regular_file(StoreOf(dir, 1000)));
  BOOST_TEST(std::filesystem::is_regular_file(IndexOf(dir, 1000)));
  const auto files = SegmentSet::ListFiles(dir.path());
  const Bases only{1000};
  BOOST_TEST(files.stores == only);
  BOOST_TEST(files.indexes == only);
  BOOST_CHECK_THROW(ViewOf(set, 1000), OffsetOutOfRange);
  set.Close();
  // The segment is there now: a set of another initial offset opens it.
  SegmentSet again(dir.path(), PerSegment(10, 5));
  again.Open();
  BOOST_TEST(again.Size() == 1U);
  BOOST_TEST(again.LowestOffset() == 1000U);
  BOOST_TEST(SegmentSet::ListFiles(dir.path()).stores == only);
}

BOOST_AUTO_TEST_CASE(append_returns_the_first_offset_and_records_read_back) {
  TempDir dir;
  SegmentSet set(dir.path(), PerSegment(100, 50));
  set.Open();
  BOOST_TEST(PutValues(set, 50, 3) == 50U);
  BOOST_TEST(set.NextOffset() == 53U);
  BOOST_TEST(PutValues(set, 53, 1) == 53U);
  BOOST_TEST(set.NextOffset() == 54U);
  BOOST_TEST(set.LowestOffset() == 50U);
  BOOST_TEST(HoldsValues(set, 50, 54));
  BOOST_CHECK_EXCEPTION(ViewOf(set, 54), OffsetOutOfRange, [](const OffsetOutOfRange& e) { return e.offset() == 54U; });
  BOOST_CHECK_THROW(ViewOf(set, 49), OffsetOutOfRange);
  // ViewBatch visits the offsets in the order asked, repeats included.
  const std::vector<std::uint64_t> offsets{53, 50, 52, 52, 51};
  std::vector<std::uint64_t> seen;
  std::vector<std::string> payloads;
  auto record = [&](std::uint64_t o, std::span<const std::byte> p) {
    seen.push_back(o);
    payloads.push_back(logsync::test::AsString(p));
  };
  set.ViewBatch(offsets, record);
  BOOST_TEST(seen == offsets);
  const std::vector<std::string> expected{Value(53), Value(50), Value(52), Value(52), Value(51)};
  BOOST_TEST(payloads == expected);
  // One offset out of range: nothing is visited.
  seen.clear();
  const std::vector<std::uint64_t> bad{50, 54};
  BOOST_CHECK_EXCEPTION(set.ViewBatch(bad, record), OffsetOutOfRange,
                        [](const OffsetOutOfRange& e) { return e.offset() == 54U; });
  BOOST_TEST(seen.empty());
  // The segment stamped the blank headers: a reopened set (which checks
  // every frame of an unsynced active segment) reads the same records.
  set.Close();
  SegmentSet again(dir.path(), PerSegment(100, 50));
  again.Open();
  BOOST_TEST(again.NextOffset() == 54U);
  BOOST_TEST(HoldsValues(again, 50, 54));
}

BOOST_AUTO_TEST_CASE(a_batch_that_fits_only_an_empty_segment_goes_whole_into_a_new_one) {
  {
    // Limited by index entries: seven of ten are taken, six more come.
    TempDir dir;
    SegmentSet set(dir.path(), PerSegment(10));
    set.Open();
    for (std::uint64_t o = 0; o < 7; ++o) PutValues(set, o, 1);
    BOOST_TEST(PutValues(set, 7, 6) == 7U);
    set.FinishSeals();
    const auto held = set.Hold();
    const Bases bases{0, 7}, counts{7, 6};
    BOOST_TEST(BasesOf(held.segments) == bases);
    BOOST_TEST(CountsOf(held.segments) == counts);
    BOOST_TEST(held.segments[0]->Sealed());
    BOOST_TEST(HoldsValues(set, 0, 13));
  }
  {
    // Limited by store bytes: 64-byte frames, three to a 256-byte store.
    TempDir dir;
    SegmentSet set(dir.path(), logsync::detail::Resolve(logsync::test::SmallSegments(256, 100 * logsync::kIndexEntryBytes)));
    set.Open();
    const std::string a(48, 'a'), b(48, 'b'), c(48, 'c'), d(48, 'd');
    BOOST_TEST(Put(set, {a, b}) == 0U);
    BOOST_TEST(Put(set, {c, d}) == 2U);
    const Bases bases{0, 2}, counts{2, 2};
    BOOST_TEST(BasesOf(set.Hold().segments) == bases);
    BOOST_TEST(CountsOf(set.Hold().segments) == counts);
    BOOST_TEST(ViewOf(set, 1) == b);
    BOOST_TEST(ViewOf(set, 2) == c);
    BOOST_TEST(ViewOf(set, 3) == d);
  }
}

BOOST_AUTO_TEST_CASE(a_batch_larger_than_a_segment_is_split) {
  TempDir dir;
  SegmentSet set(dir.path(), PerSegment(10));
  set.Open();
  BOOST_TEST(PutValues(set, 0, 3) == 0U);
  BOOST_TEST(PutValues(set, 3, 25) == 3U);
  BOOST_TEST(set.NextOffset() == 28U);
  set.FinishSeals();
  const auto held = set.Hold();
  // The active segment is filled first, then each new one.
  const Bases bases{0, 10, 20}, counts{10, 10, 8};
  BOOST_TEST(BasesOf(held.segments) == bases);
  BOOST_TEST(CountsOf(held.segments) == counts);
  BOOST_TEST(held.segments[0]->Sealed());
  BOOST_TEST(held.segments[1]->Sealed());
  BOOST_TEST(!held.segments[2]->Sealed());
  BOOST_TEST(held.next_offset == 28U);
  BOOST_TEST(HoldsValues(set, 0, 28));
}

BOOST_AUTO_TEST_CASE(roll_publishes_a_new_segment_that_readers_find) {
  TempDir dir;
  SegmentSet set(dir.path(), PerSegment(100));
  set.Open();
  PutValues(set, 0, 5);
  logsync::Segment& next = set.Roll();
  BOOST_TEST(next.BaseOffset() == 5U);
  BOOST_TEST(next.Empty());
  BOOST_TEST(set.Size() == 2U);
  BOOST_TEST(set.Active().get() == &next);
  set.FinishSeals();  // the roll left the seal to the sealer
  BOOST_TEST(set.Hold().segments.front()->Sealed());  // synced and trimmed
  BOOST_TEST(std::filesystem::is_regular_file(StoreOf(dir, 5)));
  BOOST_TEST(PutValues(set, 5, 2) == 5U);
  BOOST_TEST(next.Count() == 2U);  // the records went into the new segment
  BOOST_TEST(set.NextOffset() == 7U);
  BOOST_TEST(HoldsValues(set, 0, 7));
  // ViewBatch over both segments uses the table the roll published.
  const std::vector<std::uint64_t> offsets{6, 0, 5, 4};
  std::vector<std::string> payloads;
  auto record = [&](std::uint64_t, std::span<const std::byte> p) { payloads.push_back(logsync::test::AsString(p)); };
  set.ViewBatch(offsets, record);
  const std::vector<std::string> expected{Value(6), Value(0), Value(5), Value(4)};
  BOOST_TEST(payloads == expected);
}

BOOST_AUTO_TEST_CASE(hold_keeps_segments_readable_after_remove_prefix_removed_them) {
  TempDir dir;
  SegmentSet set(dir.path(), PerSegment(10));
  set.Open();
  PutValues(set, 0, 25);
  const auto held = set.Hold();
  const Bases bases{0, 10, 20};
  BOOST_TEST(BasesOf(held.segments) == bases);
  BOOST_TEST(held.next_offset == 25U);
  BOOST_TEST(set.RemovePrefix(19) == 2U);
  BOOST_TEST(set.LowestOffset() == 20U);
  BOOST_CHECK_THROW(ViewOf(set, 0), OffsetOutOfRange);
  BOOST_CHECK_THROW(ViewOf(set, 19), OffsetOutOfRange);
  for (std::uint64_t b : {0, 10}) {
    BOOST_TEST(!std::filesystem::exists(StoreOf(dir, b)));
    BOOST_TEST(!std::filesystem::exists(IndexOf(dir, b)));
  }
  // The holder reads every record it held, from files that are gone.
  for (std::uint64_t o = 0; o < 25; ++o)
    BOOST_TEST(logsync::test::AsString(held.segments[o / 10]->Payload(o)) == Value(o));
  PutValues(set, 25, 1);
  BOOST_TEST(held.next_offset == 25U);  // a point in time
  BOOST_TEST(set.Hold().next_offset == 26U);
}

BOOST_AUTO_TEST_CASE(close_returns_the_segments_and_then_refuses_readers) {
  TempDir dir;
  SegmentSet set(dir.path(), PerSegment(10));
  set.Open();
  PutValues(set, 0, 15);
  auto segs = set.Close();
  const Bases bases{0, 10};
  BOOST_TEST(BasesOf(segs) == bases);
  BOOST_TEST(segs.back()->NextOffset() == 15U);  // the active one last
  BOOST_TEST(set.Size() == 0U);
  BOOST_CHECK_THROW(ViewOf(set, 3), StateError);
  const std::vector<std::uint64_t> offsets{3, 12};
  auto ignore = [](std::uint64_t, std::span<const std::byte>) {};
  BOOST_CHECK_THROW(set.ViewBatch(offsets, ignore), StateError);
  BOOST_CHECK_THROW(set.Hold(), StateError);
  BOOST_CHECK_THROW(set.Active(), StateError);
  // What it returned still reads.
  BOOST_TEST(logsync::test::AsString(segs[0]->Payload(3)) == Value(3));
  BOOST_TEST(logsync::test::AsString(segs[1]->Payload(12)) == Value(12));
  BOOST_TEST(set.Close().empty());  // nothing left to return
  // Sealed and let go, the segments open again.
  segs.back()->Seal();
  segs.clear();
  set.Open();
  BOOST_TEST(set.Size() == 2U);
  BOOST_TEST(set.NextOffset() == 15U);
  BOOST_TEST(HoldsValues(set, 0, 15));
}

BOOST_AUTO_TEST_CASE(remove_prefix_never_removes_the_active_segment) {
  TempDir dir;
  SegmentSet set(dir.path(), PerSegment(10));
  set.Open();
  BOOST_TEST(set.RemovePrefix(1000) == 0U);  // the active segment alone
  BOOST_TEST(set.Size() == 1U);
  PutValues(set, 0, 30);  // three full segments, the last active
  BOOST_TEST(set.Size() == 3U);
  BOOST_TEST(set.RemovePrefix(8) == 0U);  // the first holds 9 too
  BOOST_TEST(set.Size() == 3U);
  BOOST_TEST(set.LowestOffset() == 0U);
  BOOST_TEST(set.RemovePrefix(9) == 1U);
  BOOST_TEST(set.LowestOffset() == 10U);
  BOOST_TEST(set.RemovePrefix(1000) == 1U);  // every offset is <= 1000, but the active one stays
  BOOST_TEST(set.Size() == 1U);
  BOOST_TEST(set.Active()->BaseOffset() == 20U);
  BOOST_TEST(set.LowestOffset() == 20U);
  BOOST_TEST(set.NextOffset() == 30U);
  BOOST_TEST(HoldsValues(set, 20, 30));
  BOOST_CHECK_THROW(ViewOf(set, 19), OffsetOutOfRange);
  BOOST_TEST(set.RemovePrefix(1000) == 0U);
  const auto files = SegmentSet::ListFiles(dir.path());
  const Bases only{20};
  BOOST_TEST(files.stores == only);
  BOOST_TEST(files.indexes == only);
}

BOOST_AUTO_TEST_CASE(a_failed_removal_keeps_the_segments_from_the_one_that_failed_on) {
  TempDir dir;
  SegmentSet set(dir.path(), PerSegment(10));
  set.Open();
  PutValues(set, 0, 40);  // segments 0, 10, 20, 30
  {
    set.FinishSeals();  // no seal in flight while the hooks change
    SyscallHooks hooks;
    // Unlinks go oldest first, each store before its index: the fifth is
    // segment 20's store.
    hooks.FailCall(SyscallHooks::kUnlink, 5, EACCES);
    BOOST_CHECK_EXCEPTION(set.RemovePrefix(29), logsync::IoError, [&](const logsync::IoError& e) {
      return e.error() == EACCES && e.path() == StoreOf(dir, 20);
    });
    BOOST_TEST(hooks.Calls(SyscallHooks::kUnlink) == 5U);  // it stopped at the failure
  }
  const Bases kept{20, 30};
  BOOST_TEST(BasesOf(set.Hold().segments) == kept);
  BOOST_TEST(set.LowestOffset() == 20U);
  const auto files = SegmentSet::ListFiles(dir.path());
  BOOST_TEST(files.stores == kept);
  BOOST_TEST(files.indexes == kept);
  BOOST_TEST(HoldsValues(set, 20, 40));
  BOOST_CHECK_THROW(ViewOf(set, 19), OffsetOutOfRange);
  // With unlink working again, the removal goes on where it stopped.
  BOOST_TEST(set.RemovePrefix(29) == 1U);
  set.Close();
  SegmentSet again(dir.path(), PerSegment(10));
  again.Open();
  BOOST_TEST(again.LowestOffset() == 30U);
  BOOST_TEST(again.NextOffset() == 40U);
}

BOOST_AUTO_TEST_CASE(a_failed_index_removal_counts_its_segment_gone) {
  TempDir dir;
  SegmentSet set(dir.path(), PerSegment(10));
  set.Open();
  PutValues(set, 0, 30);  // segments 0, 10, 20
  {
    set.FinishSeals();  // no seal in flight while the hooks change
    SyscallHooks hooks;
    hooks.FailCall(SyscallHooks::kUnlink, 2, EACCES);  // segment 0's index
    BOOST_CHECK_EXCEPTION(set.RemovePrefix(19), logsync::IoError, [&](const logsync::IoError& e) {
      return e.error() == EACCES && e.path() == IndexOf(dir, 0);
    });
  }
  // Its store went, so the segment did: an index without its store is
  // discarded on open.
  const Bases kept{10, 20};
  BOOST_TEST(BasesOf(set.Hold().segments) == kept);
  BOOST_TEST(set.LowestOffset() == 10U);
  BOOST_TEST(!std::filesystem::exists(StoreOf(dir, 0)));
  BOOST_TEST(std::filesystem::exists(IndexOf(dir, 0)));
  BOOST_TEST(HoldsValues(set, 10, 30));
  set.Close();
  SegmentSet again(dir.path(), PerSegment(10));
  again.Open();
  BOOST_TEST(again.LowestOffset() == 10U);
  BOOST_TEST(!std::filesystem::exists(IndexOf(dir, 0)));
}

BOOST_AUTO_TEST_CASE(list_files_returns_sorted_bases_and_ignores_other_names) {
  TempDir dir;
  Bases stores, indexes;
  // Created from the highest base down, so the directory's order is not
  // the sorted one.
  for (std::uint64_t i = 40; i-- > 0;) {
    const std::uint64_t base = i * i * 1001;
    std::ofstream(StoreOf(dir, base)) << "s";
    stores.push_back(base);
    if (i % 3 != 0) {
      std::ofstream(IndexOf(dir, base)) << "i";
      indexes.push_back(base);
    }
  }
  std::ofstream(IndexOf(dir, 7)) << "an index without its store";
  indexes.push_back(7);
  std::ofstream(StoreOf(dir, ~0ULL)) << "the highest base there is";
  stores.push_back(~0ULL);
  for (const char* name : {"notes.txt", "abc.store", "12a.index", ".store", "1.store.bak", "5.store",
                           "123456789012345678901.store", "0000000000000000007.index", "00000000000000000000.log",
                           "99999999999999999999.store", "0000000000000000000a.store", "00000000000000000003.store.tmp",
                           "LOCK"})
    std::ofstream(dir / name) << "not ours";
  std::filesystem::create_directory(dir / "sub.store");
  std::sort(stores.begin(), stores.end());
  std::sort(indexes.begin(), indexes.end());
  const auto files = SegmentSet::ListFiles(dir.path());
  BOOST_TEST(files.stores == stores);
  BOOST_TEST(files.indexes == indexes);
  BOOST_CHECK_THROW(SegmentSet::ListFiles(dir / "absent"), logsync::IoError);
}

BOOST_AUTO_TEST_CASE(list_files_refuses_a_segment_name_on_an_entry_that_is_not_a_file) {
  TempDir dir;
  std::ofstream(StoreOf(dir, 0)) << "s";
  std::filesystem::create_directory(IndexOf(dir, 0));
  BOOST_CHECK_EXCEPTION(SegmentSet::ListFiles(dir.path()), logsync::CorruptionError,
                        [&](const logsync::CorruptionError& e) {
                          return e.path() == IndexOf(dir, 0) &&
                                 std::string(e.what()).find("a directory") != std::string::npos;
                        });
  std::filesystem::remove(IndexOf(dir, 0));
  std::filesystem::create_symlink(StoreOf(dir, 0), IndexOf(dir, 0));
  BOOST_CHECK_EXCEPTION(SegmentSet::ListFiles(dir.path()), logsync::CorruptionError,
                        [&](const logsync::CorruptionError& e) {
                          return e.path() == IndexOf(dir, 0) &&
                                 std::string(e.what()).find("symbolic link") != std::string::npos;
                        });
  BOOST_TEST(std::filesystem::is_regular_file(StoreOf(dir, 0)));
}

BOOST_AUTO_TEST_CASE(remove_files_deletes_every_segment_file_and_leaves_other_files) {
  TempDir dir;
  {
    SegmentSet set(dir.path(), PerSegment(10));
    set.Open();
    PutValues(set, 0, 25);
    auto segs = set.Close();
    segs.back()->Seal();
  }
  std::ofstream(IndexOf(dir, 500)) << "an index without its store";
  const std::vector<std::string> foreign{"LOCK", "notes.txt", "5.store", "00000000000000000000.log",
                                         "1.store.bak", "00000000000000000003.store.tmp"};
  for (const auto& name : foreign) std::ofstream(dir / name) << "not ours";
  std::filesystem::create_directory(dir / "sub.store");
  const auto before = SegmentSet::ListFiles(dir.path());
  BOOST_TEST(before.stores.size() == 3U);
  BOOST_TEST(before.indexes.size() == 4U);
  SegmentSet::RemoveFiles(dir.path());
  const auto after = SegmentSet::ListFiles(dir.path());
  BOOST_TEST(after.stores.empty());
  BOOST_TEST(after.indexes.empty());
  std::vector<std::string> left;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) left.push_back(e.path().filename().string());
  std::sort(left.begin(), left.end());
  std::vector<std::string> expected = foreign;
  expected.push_back("sub.store");
  std::sort(expected.begin(), expected.end());
  BOOST_TEST(left == expected);
}

// ---- seals a crash cut short ------------------------------------------------

namespace {

std::string Slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

void Spit(const std::filesystem::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary | std::ios::trunc).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Sets the checkpoint in the header of an index file.
void SetCheckpoint(const std::filesystem::path& index, std::uint64_t records, std::uint64_t store_bytes) {
  std::string x = Slurp(index);
  logsync::detail::WriteIndexCheckpoint(reinterpret_cast<std::byte*>(x.data()), {store_bytes, records});
  Spit(index, x);
}

// A log of two segments (0-4, 5-7) whose first segment looks as a crash
// during its seal leaves it: store and index allocated ahead (zeros after
// their last record and entry), its checkpoint older than its records, and
// the second segment never synced. `torn`: the last frame of the first
// segment is cut half way too.
void InterruptedSeal(const TempDir& dir, bool torn) {
  {
    SegmentSet set(dir.path(), PerSegment(5));
    set.Open();
    PutValues(set, 0, 8);
    set.Close();
  }
  std::string store = Slurp(StoreOf(dir, 0));
  const std::size_t last_frame = logsync::kFrameHeaderBytes + Value(4).size();
  if (torn) store.resize(store.size() - last_frame / 2);
  store.append(4096, '\0');
  Spit(StoreOf(dir, 0), store);
  std::string index = Slurp(IndexOf(dir, 0));
  index.append(64 * logsync::kIndexEntryBytes, '\0');
  Spit(IndexOf(dir, 0), index);
  SetCheckpoint(IndexOf(dir, 0), 0, logsync::kStoreHeaderBytes);
  SetCheckpoint(IndexOf(dir, 5), 0, logsync::kStoreHeaderBytes);
}

}  // namespace

BOOST_AUTO_TEST_CASE(an_interrupted_seal_of_a_whole_segment_is_finished_at_open) {
  TempDir dir;
  InterruptedSeal(dir, false);
  BOOST_REQUIRE(!logsync::Segment::SealedOnDisk(dir.path(), 0));
  SegmentSet set(dir.path(), PerSegment(5));
  set.Open();
  BOOST_TEST(set.NextOffset() == 8U);
  BOOST_TEST(set.Size() == 2U);
  BOOST_TEST(HoldsValues(set, 0, 8));
  BOOST_TEST(set.Hold().segments.front()->Sealed());
  BOOST_TEST(logsync::Segment::SealedOnDisk(dir.path(), 0));  // trimmed and vouched for now
  BOOST_TEST(PutValues(set, 8, 1) == 8U);
}

BOOST_AUTO_TEST_CASE(an_interrupted_seal_of_a_torn_segment_drops_the_unsynced_segments_after_it) {
  TempDir dir;
  InterruptedSeal(dir, true);
  {
    SegmentSet set(dir.path(), PerSegment(5));
    set.Open();
    // A suffix is lost: record 4 (torn) and the segment after it, which no
    // sync covered. Nothing before it.
    BOOST_TEST(set.NextOffset() == 4U);
    BOOST_TEST(set.Size() == 1U);
    BOOST_TEST(HoldsValues(set, 0, 4));
    BOOST_TEST(!std::filesystem::exists(StoreOf(dir, 5)));
    BOOST_TEST(!std::filesystem::exists(IndexOf(dir, 5)));
    BOOST_TEST(PutValues(set, 4, 3) == 4U);  // the log goes on where it ends
    BOOST_TEST(HoldsValues(set, 0, 7));
    set.Close();
  }
  SegmentSet again(dir.path(), PerSegment(5));
  again.Open();
  BOOST_TEST(again.NextOffset() == 7U);
  BOOST_TEST(HoldsValues(again, 0, 7));
}

BOOST_AUTO_TEST_CASE(a_torn_segment_before_one_that_synced_is_damage_and_nothing_is_cut) {
  TempDir dir;
  InterruptedSeal(dir, true);
  SetCheckpoint(IndexOf(dir, 5), 3, Slurp(StoreOf(dir, 5)).size());  // the later segment synced
  std::map<std::string, std::string> before;
  for (const auto& e : std::filesystem::directory_iterator(dir.path()))
    before[e.path().filename().string()] = Slurp(e.path());
  SegmentSet set(dir.path(), PerSegment(5));
  BOOST_CHECK_THROW(set.Open(), logsync::CorruptionError);
  std::map<std::string, std::string> after;
  for (const auto& e : std::filesystem::directory_iterator(dir.path()))
    after[e.path().filename().string()] = Slurp(e.path());
  BOOST_TEST((before == after));  // reported, not repaired
}
