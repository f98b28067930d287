#define BOOST_TEST_MODULE index_test
#include <boost/test/unit_test.hpp>

#include <logsync/index.hpp>

#include "support/frames.hpp"
#include "support/temp_dir.hpp"

using namespace logsync;
using test::TempDir;

namespace {

IndexEntry Entry(std::uint64_t i) {
  return {static_cast<std::uint32_t>(i), static_cast<std::uint32_t>(i * 3), kStoreHeaderBytes + i * 1000};
}

void Fill(Index& idx, std::uint64_t n) {
  for (std::uint64_t i = 0; i < n; ++i) idx.Put(i, Entry(i));
  idx.SetCount(n);
}

bool Same(const IndexEntry& a, const IndexEntry& b) {
  return a.relative == b.relative && a.length == b.length && a.position == b.position;
}

}  // namespace

BOOST_AUTO_TEST_CASE(write_and_read) {
  TempDir dir;
  Index idx(dir / "i", 10 * kIndexEntryBytes, true);
  BOOST_TEST(idx.Count() == 0U);
  BOOST_TEST(idx.Capacity() == 10U);
  Fill(idx, 4);
  BOOST_TEST(idx.Count() == 4U);
  for (std::uint64_t i = 0; i < 4; ++i) BOOST_TEST(Same(idx.At(i), Entry(i)));
  BOOST_TEST(idx.At(2).FrameBytes() == kFrameHeaderBytes + 6);
  BOOST_TEST(idx.At(2).End() == kStoreHeaderBytes + 2000 + kFrameHeaderBytes + 6);
}

BOOST_AUTO_TEST_CASE(preallocated_while_writable) {
  TempDir dir;
  Index idx(dir / "i", 64 * kIndexEntryBytes, true);
  BOOST_TEST(std::filesystem::file_size(dir / "i") == 64 * kIndexEntryBytes);
  BOOST_TEST(idx.Writable());
}

BOOST_AUTO_TEST_CASE(capacity_rounds_down_to_whole_entries) {
  TempDir dir;
  Index idx(dir / "i", 3 * kIndexEntryBytes + 5, true);
  BOOST_TEST(idx.Capacity() == 3U);
}

BOOST_AUTO_TEST_CASE(trim_then_reopen_from_existing_file) {
  TempDir dir;
  {
    Index idx(dir / "i", 100 * kIndexEntryBytes, true);
    Fill(idx, 7);
    idx.Trim();
    BOOST_TEST(!idx.Writable());
    BOOST_TEST(std::filesystem::file_size(dir / "i") == 7 * kIndexEntryBytes);
    // Entries stay readable after the trim (readers may still hold them).
    BOOST_TEST(Same(idx.At(6), Entry(6)));
  }
  Index idx(dir / "i", 0, false);
  BOOST_TEST(idx.EntriesOnDisk() == 7U);
  BOOST_TEST(idx.WholeEntriesOnDisk());
  BOOST_TEST(idx.Capacity() == 7U);
  BOOST_TEST(idx.Count() == 0U);  // counting is the segment's recovery's call
  for (std::uint64_t i = 0; i < 7; ++i) BOOST_TEST(Same(idx.At(i), Entry(i)));
}

BOOST_AUTO_TEST_CASE(reopen_writable_keeps_entries_and_grows_to_capacity) {
  TempDir dir;
  {
    Index idx(dir / "i", 5 * kIndexEntryBytes, true);
    Fill(idx, 5);
    idx.Trim();
  }
  Index idx(dir / "i", 50 * kIndexEntryBytes, true);
  BOOST_TEST(idx.EntriesOnDisk() == 5U);
  BOOST_TEST(idx.Capacity() == 50U);
  BOOST_TEST(Same(idx.At(4), Entry(4)));
}

BOOST_AUTO_TEST_CASE(count_bounds_what_is_published) {
  TempDir dir;
  Index idx(dir / "i", 8 * kIndexEntryBytes, true);
  Fill(idx, 3);
  idx.Put(3, Entry(3));  // written, not yet published
  BOOST_TEST(idx.Count() == 3U);
  idx.SetCount(4);
  BOOST_TEST(idx.Count() == 4U);
}

BOOST_AUTO_TEST_CASE(zero_filled_entries_never_look_real) {
  TempDir dir;
  Index idx(dir / "i", 4 * kIndexEntryBytes, true);
  // A preallocated, never-written entry decodes as all zeros: relative 0 and
  // position 0, which no real entry has (entry 0 sits after the store header).
  const IndexEntry e = idx.At(2);
  BOOST_TEST(e.relative == 0U);
  BOOST_TEST(e.position == 0U);
  BOOST_TEST(e.position < kStoreHeaderBytes);
}

BOOST_AUTO_TEST_CASE(reserve_grows_the_mapping) {
  TempDir dir;
  Index idx(dir / "i", 2 * kIndexEntryBytes, true);
  Fill(idx, 2);
  idx.Reserve(100);
  BOOST_TEST(idx.Capacity() >= 100U);
  BOOST_TEST(std::filesystem::file_size(dir / "i") >= 100 * kIndexEntryBytes);
  BOOST_TEST(Same(idx.At(1), Entry(1)));
  idx.Put(99, Entry(99));
  BOOST_TEST(Same(idx.At(99), Entry(99)));
}

BOOST_AUTO_TEST_CASE(empty_file_opens_read_only) {
  TempDir dir;
  test::WriteFile(dir / "i", "");
  Index idx(dir / "i", 0, false);
  BOOST_TEST(idx.Capacity() == 0U);
  BOOST_TEST(idx.EntriesOnDisk() == 0U);
  idx.Trim();  // nothing to do on a read-only index
  idx.Sync();
}

BOOST_AUTO_TEST_CASE(partial_entry_on_disk_is_noticed) {
  TempDir dir;
  test::WriteFile(dir / "i", std::string(kIndexEntryBytes * 2 + 5, '\0'));
  Index idx(dir / "i", 0, false);
  BOOST_TEST(idx.EntriesOnDisk() == 2U);
  BOOST_TEST(!idx.WholeEntriesOnDisk());
}

BOOST_AUTO_TEST_CASE(missing_read_only_index_is_an_io_error) {
  TempDir dir;
  BOOST_CHECK_EXCEPTION(Index(dir / "none", 0, false), IoError, [](const IoError& e) { return e.error() == ENOENT; });
}

BOOST_AUTO_TEST_CASE(reading_past_the_end) {
  TempDir dir;
  Index idx(dir / "i", 8 * kIndexEntryBytes, true);
  BOOST_CHECK_EXCEPTION(idx.Read(0), OffsetOutOfRange, [](const OffsetOutOfRange& e) { return e.offset() == 0; });
  Fill(idx, 3);
  BOOST_TEST(Same(idx.Read(2), Entry(2)));
  BOOST_CHECK_EXCEPTION(idx.Read(3), OffsetOutOfRange, [](const OffsetOutOfRange& e) { return e.offset() == 3; });
  BOOST_CHECK_THROW(idx.Read(~0ULL), OffsetOutOfRange);
  idx.Trim();
  Index reopened(dir / "i", 0, false);  // nothing published until the segment's recovery says so
  BOOST_CHECK_THROW(reopened.Read(0), OffsetOutOfRange);
}
