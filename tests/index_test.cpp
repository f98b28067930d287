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
  idx.Prepare(n);
  for (std::uint64_t i = 0; i < n; ++i) idx.Put(i, Entry(i));
  idx.SetCount(n);
}

bool Same(const IndexEntry& a, const IndexEntry& b) {
  return a.relative == b.relative && a.length == b.length && a.position == b.position;
}

}  // namespace

BOOST_AUTO_TEST_CASE(write_and_read) {
  TempDir dir;
  Index idx(dir / "i", 0, 10 * kIndexEntryBytes, detail::Access::kReadWrite);
  BOOST_TEST(idx.Count() == 0U);
  BOOST_TEST(idx.Capacity() == 10U);
  Fill(idx, 4);
  BOOST_TEST(idx.Count() == 4U);
  for (std::uint64_t i = 0; i < 4; ++i) BOOST_TEST(Same(idx.At(i), Entry(i)));
  BOOST_TEST(idx.At(2).FrameBytes() == kFrameHeaderBytes + 6);
  BOOST_TEST(idx.At(2).End() == kStoreHeaderBytes + 2000 + kFrameHeaderBytes + 6);
}

BOOST_AUTO_TEST_CASE(allocated_ahead_of_its_entries_while_writable) {
  TempDir dir;
  const auto size = [&] { return std::filesystem::file_size(dir / "i"); };
  constexpr std::uint64_t kStepEntries = Index::kIndexAllocateStep / kIndexEntryBytes;
  Index idx(dir / "i", 0, 3 * kStepEntries * kIndexEntryBytes, detail::Access::kReadWrite);
  BOOST_TEST(idx.Writable());
  BOOST_TEST(idx.Capacity() == 3 * kStepEntries);
  BOOST_TEST(size() == kIndexHeaderBytes);  // the capacity is address space, not disk
  idx.Prepare(5);                           // one step ahead
  BOOST_TEST(size() == kIndexHeaderBytes + Index::kIndexAllocateStep);
  idx.Prepare(kStepEntries);  // still inside it
  BOOST_TEST(size() == kIndexHeaderBytes + Index::kIndexAllocateStep);
  idx.Prepare(3 * kStepEntries);  // never past the mapping
  BOOST_TEST(size() == kIndexHeaderBytes + 3 * kStepEntries * kIndexEntryBytes);
  Fill(idx, 3 * kStepEntries);
  BOOST_TEST(Same(idx.At(3 * kStepEntries - 1), Entry(3 * kStepEntries - 1)));
}

BOOST_AUTO_TEST_CASE(capacity_rounds_down_to_whole_entries) {
  TempDir dir;
  Index idx(dir / "i", 0, 3 * kIndexEntryBytes + 5, detail::Access::kReadWrite);
  BOOST_TEST(idx.Capacity() == 3U);
}

BOOST_AUTO_TEST_CASE(trim_then_reopen_from_existing_file) {
  TempDir dir;
  {
    Index idx(dir / "i", 0, 100 * kIndexEntryBytes, detail::Access::kReadWrite);
    Fill(idx, 7);
    idx.Trim();
    BOOST_TEST(!idx.Writable());
    BOOST_TEST(std::filesystem::file_size(dir / "i") == kIndexHeaderBytes + 7 * kIndexEntryBytes);
    // Entries stay readable after the trim (readers may still hold them).
    BOOST_TEST(Same(idx.At(6), Entry(6)));
  }
  Index idx(dir / "i", 0, 0, detail::Access::kReadOnly);
  BOOST_TEST(idx.EntriesOnDisk() == 7U);
  BOOST_TEST(idx.WholeEntriesOnDisk());
  BOOST_TEST(idx.Capacity() == 7U);
  BOOST_TEST(idx.Count() == 0U);  // counting is the segment's recovery's call
  for (std::uint64_t i = 0; i < 7; ++i) BOOST_TEST(Same(idx.At(i), Entry(i)));
}

BOOST_AUTO_TEST_CASE(reopen_writable_keeps_entries_and_grows_to_capacity) {
  TempDir dir;
  {
    Index idx(dir / "i", 0, 5 * kIndexEntryBytes, detail::Access::kReadWrite);
    Fill(idx, 5);
    idx.Trim();
  }
  Index idx(dir / "i", 0, 50 * kIndexEntryBytes, detail::Access::kReadWrite);
  BOOST_TEST(idx.EntriesOnDisk() == 5U);
  BOOST_TEST(idx.Capacity() == 50U);
  BOOST_TEST(Same(idx.At(4), Entry(4)));
}

BOOST_AUTO_TEST_CASE(count_bounds_what_is_published) {
  TempDir dir;
  Index idx(dir / "i", 0, 8 * kIndexEntryBytes, detail::Access::kReadWrite);
  Fill(idx, 3);
  idx.Prepare(4);
  idx.Put(3, Entry(3));  // written, not yet published
  BOOST_TEST(idx.Count() == 3U);
  idx.SetCount(4);
  BOOST_TEST(idx.Count() == 4U);
}

BOOST_AUTO_TEST_CASE(zero_filled_entries_never_look_real) {
  TempDir dir;
  Index idx(dir / "i", 0, 4 * kIndexEntryBytes, detail::Access::kReadWrite);
  // A preallocated, never-written entry decodes as all zeros: relative 0 and
  // position 0, which no real entry has (entry 0 sits after the store header).
  const IndexEntry e = idx.At(2);
  BOOST_TEST(e.relative == 0U);
  BOOST_TEST(e.position == 0U);
  BOOST_TEST(e.position < kStoreHeaderBytes);
}

BOOST_AUTO_TEST_CASE(reserve_grows_the_mapping) {
  TempDir dir;
  Index idx(dir / "i", 0, 2 * kIndexEntryBytes, detail::Access::kReadWrite);
  Fill(idx, 2);
  idx.Reserve(100);
  BOOST_TEST(idx.Capacity() >= 100U);
  BOOST_TEST(std::filesystem::file_size(dir / "i") >= kIndexHeaderBytes + 100 * kIndexEntryBytes);
  BOOST_TEST(Same(idx.At(1), Entry(1)));
  idx.Put(99, Entry(99));
  BOOST_TEST(Same(idx.At(99), Entry(99)));
}

BOOST_AUTO_TEST_CASE(empty_file_opens_read_only) {
  TempDir dir;
  test::WriteFile(dir / "i", "");
  Index idx(dir / "i", 0, 0, detail::Access::kReadOnly);
  BOOST_TEST(idx.Capacity() == 0U);
  BOOST_TEST(idx.EntriesOnDisk() == 0U);
  idx.Trim();  // nothing to do on a read-only index
  idx.Sync();
}

BOOST_AUTO_TEST_CASE(partial_entry_on_disk_is_noticed) {
  TempDir dir;
  {
    Index idx(dir / "i", 0, 8 * kIndexEntryBytes, detail::Access::kReadWrite);
    Fill(idx, 2);
    idx.Trim();
  }
  test::WriteFile(dir / "i", test::ReadFile(dir / "i") + std::string(5, '\0'));
  Index idx(dir / "i", 0, 0, detail::Access::kReadOnly);
  BOOST_TEST(idx.HeaderOk());
  BOOST_TEST(idx.EntriesOnDisk() == 2U);
  BOOST_TEST(!idx.WholeEntriesOnDisk());
}

BOOST_AUTO_TEST_CASE(file_without_a_header_has_no_trusted_entries) {
  TempDir dir;
  // Zeros, and a file shorter than the header: neither is an index.
  for (std::size_t size : {std::size_t{0}, std::size_t{20}, std::size_t{kIndexHeaderBytes + 4 * kIndexEntryBytes}}) {
    test::WriteFile(dir / "i", std::string(size, '\0'));
    Index ro(dir / "i", 0, 0, detail::Access::kReadOnly);
    BOOST_TEST(!ro.HeaderOk());
    BOOST_TEST(!ro.CheckpointOnDisk().has_value());
    BOOST_TEST(ro.EntriesOnDisk() == 0U);
    BOOST_TEST(!ro.WholeEntriesOnDisk());
  }
  // Writable: a fresh header replaces it.
  {
    Index idx(dir / "i", 0, 4 * kIndexEntryBytes, detail::Access::kReadWrite);
    BOOST_TEST(!idx.HeaderOk());
    BOOST_TEST(idx.EntriesOnDisk() == 0U);
    Fill(idx, 1);
    idx.Trim();
  }
  Index ro(dir / "i", 0, 0, detail::Access::kReadOnly);
  BOOST_TEST(ro.HeaderOk());
  BOOST_TEST(ro.EntriesOnDisk() == 1U);
}

BOOST_AUTO_TEST_CASE(header_of_another_segment_is_foreign) {
  TempDir dir;
  {
    Index idx(dir / "i", 100, 4 * kIndexEntryBytes, detail::Access::kReadWrite);
    Fill(idx, 2);
    idx.WriteCheckpoint(2, 99);
    idx.Trim();
  }
  Index other(dir / "i", 101, 0, detail::Access::kReadOnly);
  BOOST_TEST(!other.HeaderOk());
  BOOST_TEST(!other.CheckpointOnDisk().has_value());
  BOOST_TEST(other.EntriesOnDisk() == 0U);
  Index same(dir / "i", 100, 0, detail::Access::kReadOnly);
  BOOST_TEST(same.HeaderOk());
  BOOST_TEST(same.EntriesOnDisk() == 2U);
  BOOST_REQUIRE(same.CheckpointOnDisk().has_value());
  BOOST_TEST(same.CheckpointOnDisk()->records == 2U);
  BOOST_TEST(same.CheckpointOnDisk()->store_bytes == 99U);
}

BOOST_AUTO_TEST_CASE(checkpoint_only_moves_forward_and_a_torn_one_is_none) {
  TempDir dir;
  {
    Index idx(dir / "i", 0, 4 * kIndexEntryBytes, detail::Access::kReadWrite);
    BOOST_REQUIRE(idx.CheckpointOnDisk().has_value() == false);
    idx.WriteCheckpoint(3, 300);
    idx.WriteCheckpoint(2, 200);  // older: ignored
    idx.Sync();
  }
  {
    Index idx(dir / "i", 0, 0, detail::Access::kReadOnly);
    BOOST_REQUIRE(idx.CheckpointOnDisk().has_value());
    BOOST_TEST(idx.CheckpointOnDisk()->records == 3U);
    BOOST_TEST(idx.CheckpointOnDisk()->store_bytes == 300U);
  }
  // Any byte of bytes 8-35 changed: the CRC fails and there is no checkpoint.
  const std::string good = test::ReadFile(dir / "i");
  for (std::size_t b = 16; b < 36; ++b) {
    std::string bad = good;
    bad[b] = static_cast<char>(bad[b] ^ 0x20);
    test::WriteFile(dir / "i", bad);
    Index idx(dir / "i", 0, 0, detail::Access::kReadOnly);
    BOOST_TEST(!idx.CheckpointOnDisk().has_value(), "byte " << b);
  }
}

BOOST_AUTO_TEST_CASE(missing_read_only_index_is_an_io_error) {
  TempDir dir;
  BOOST_CHECK_EXCEPTION(Index(dir / "none", 0, 0, detail::Access::kReadOnly), IoError, [](const IoError& e) { return e.error() == ENOENT; });
}

BOOST_AUTO_TEST_CASE(reading_past_the_end) {
  TempDir dir;
  Index idx(dir / "i", 0, 8 * kIndexEntryBytes, detail::Access::kReadWrite);
  BOOST_CHECK_EXCEPTION(test::ReadEntry(idx, 0), OffsetOutOfRange, [](const OffsetOutOfRange& e) { return e.offset() == 0; });
  Fill(idx, 3);
  BOOST_TEST(Same(test::ReadEntry(idx, 2), Entry(2)));
  BOOST_CHECK_EXCEPTION(test::ReadEntry(idx, 3), OffsetOutOfRange, [](const OffsetOutOfRange& e) { return e.offset() == 3; });
  BOOST_CHECK_THROW(test::ReadEntry(idx, ~0ULL), OffsetOutOfRange);
  idx.Trim();
  Index reopened(dir / "i", 0, 0, detail::Access::kReadOnly);  // nothing published until the segment's recovery says so
  BOOST_CHECK_THROW(test::ReadEntry(reopened, 0), OffsetOutOfRange);
}
