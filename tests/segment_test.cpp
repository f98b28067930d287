#define BOOST_TEST_MODULE segment_test
#include <boost/test/unit_test.hpp>

#include <logsync/segment.hpp>

#include "support/frames.hpp"
#include "support/syscalls.hpp"
#include "support/temp_dir.hpp"

using namespace logsync;
using test::TempDir;

namespace {

Config Resolved(std::uint64_t store_bytes = 0, std::uint64_t index_bytes = 0) {
  Config c;
  c.segment.max_store_bytes = store_bytes;
  c.segment.max_index_bytes = index_bytes;
  return detail::Resolve(c);
}

std::string Payload(std::uint64_t offset) { return "payload-" + std::to_string(offset) + std::string(offset % 13, '.'); }

void Put(Segment& s, const std::string& payload) {
  const auto f = test::Frame(s.NextOffset(), payload);
  const auto len = static_cast<std::uint32_t>(payload.size());
  BOOST_REQUIRE(s.Fits(f.size(), 1));
  test::AppendFrames(s, f, std::span(&len, 1));
}

std::string Get(const Segment& s, std::uint64_t offset) {
  std::vector<std::byte> buf;
  return test::AsString(test::ReadFrame(s, offset, buf));
}

// A segment at base 100 with n records, closed cleanly (sealed).
std::filesystem::path Build(const TempDir& dir, std::uint64_t n, const Config& c = Resolved()) {
  auto s = Segment::Create(dir.path(), 100, c);
  for (std::uint64_t i = 0; i < n; ++i) Put(*s, Payload(100 + i));
  s->Seal();
  return s->StoreFile();
}

void CheckHolds(const Segment& s, std::uint64_t n) {
  BOOST_TEST(s.Count() == n);
  BOOST_TEST(s.NextOffset() == 100 + n);
  for (std::uint64_t i = 0; i < n; ++i) BOOST_TEST(Get(s, 100 + i) == Payload(100 + i));
}

}  // namespace

BOOST_AUTO_TEST_CASE(append_read_seal) {
  TempDir dir;
  auto s = Segment::Create(dir.path(), 100, Resolved());
  BOOST_TEST(s->Empty());
  BOOST_TEST(s->BaseOffset() == 100U);
  BOOST_TEST(s->StoreFile() == dir / "00000000000000000100.store");
  BOOST_TEST(s->IndexFile() == dir / "00000000000000000100.index");
  for (int i = 0; i < 5; ++i) Put(*s, Payload(100 + i));
  CheckHolds(*s, 5);
  s->Seal();
  BOOST_TEST(s->CommittedBytes() == std::filesystem::file_size(s->StoreFile()));  // allocated ahead: cut
  BOOST_TEST(s->Sealed());
  BOOST_TEST(!s->Fits(kFrameHeaderBytes, 1));
  CheckHolds(*s, 5);  // still readable after sealing
  BOOST_TEST(std::filesystem::file_size(s->IndexFile()) == kIndexHeaderBytes + 5 * kIndexEntryBytes);
}

BOOST_AUTO_TEST_CASE(batch_append_indexes_every_frame) {
  TempDir dir;
  auto s = Segment::Create(dir.path(), 0, Resolved());
  std::vector<std::byte> frames;
  std::vector<std::uint32_t> lengths;
  for (std::uint64_t i = 0; i < 4; ++i) {
    const auto p = "batch-" + std::to_string(i);
    const auto f = test::Frame(i, p);
    frames.insert(frames.end(), f.begin(), f.end());
    lengths.push_back(static_cast<std::uint32_t>(p.size()));
  }
  test::AppendFrames(*s, frames, lengths);
  BOOST_TEST(s->Count() == 4U);
  for (std::uint64_t i = 0; i < 4; ++i) BOOST_TEST(Get(*s, i) == "batch-" + std::to_string(i));
}

BOOST_AUTO_TEST_CASE(full_by_store_bytes) {
  TempDir dir;
  const std::uint64_t frame = kFrameHeaderBytes + 10;
  auto s = Segment::Create(dir.path(), 0, Resolved(kStoreHeaderBytes + 3 * frame));
  for (int i = 0; i < 3; ++i) {
    BOOST_TEST(!s->IsFull());
    Put(*s, std::string(10, 'a'));
  }
  BOOST_TEST(!s->Fits(frame, 1));
  BOOST_TEST(s->IsFull());
}

BOOST_AUTO_TEST_CASE(full_by_index_entries) {
  TempDir dir;
  auto s = Segment::Create(dir.path(), 0, Resolved(0, 3 * kIndexEntryBytes));
  for (int i = 0; i < 3; ++i) Put(*s, "x");
  BOOST_TEST(s->IsFull());
  BOOST_TEST(!s->Fits(kFrameHeaderBytes + 1, 1));
}

BOOST_AUTO_TEST_CASE(reopen_sealed_and_active) {
  TempDir dir;
  Build(dir, 20);
  {
    auto s = Segment::Open(dir.path(), 100, Resolved(), Segment::Role::kSealed);
    BOOST_TEST(s->Sealed());
    CheckHolds(*s, 20);
  }
  auto s = Segment::Open(dir.path(), 100, Resolved(), Segment::Role::kActive);
  BOOST_TEST(!s->Sealed());
  CheckHolds(*s, 20);
  Put(*s, Payload(120));
  CheckHolds(*s, 21);
}

BOOST_AUTO_TEST_CASE(torn_tail_at_every_byte) {
  TempDir dir;
  const auto store = Build(dir, 6);
  const std::string whole = test::ReadFile(store);
  const std::uint64_t last_frame = kFrameHeaderBytes + Payload(105).size();
  const std::uint64_t good_end = whole.size() - last_frame;
  const std::uint64_t prev_frame = kFrameHeaderBytes + Payload(104).size();
  // Every cut inside the last two frames.
  for (std::uint64_t cut = good_end - prev_frame; cut < whole.size(); ++cut) {
    test::WriteFile(store, whole.substr(0, cut));
    std::filesystem::remove(dir / "00000000000000000100.index");
    auto s = Segment::Open(dir.path(), 100, Resolved(), Segment::Role::kActive);
    const std::uint64_t expect = cut < good_end ? 4 : 5;
    BOOST_TEST(s->Count() == expect, "cut at " << cut);
    CheckHolds(*s, expect);
    BOOST_TEST(std::filesystem::file_size(store) == s->CommittedBytes(), "cut at " << cut);
    Put(*s, "after");  // appends continue at the next offset
    BOOST_TEST(Get(*s, 100 + expect) == "after");
  }
}

BOOST_AUTO_TEST_CASE(torn_tail_with_a_stale_preallocated_index) {
  TempDir dir;
  const auto store = Build(dir, 6);
  const std::string whole = test::ReadFile(store);
  // As after a crash: the index still holds all six entries and is
  // preallocated, but the store lost the end of its last frame.
  std::filesystem::resize_file(dir / "00000000000000000100.index", 4096);
  test::WriteFile(store, whole.substr(0, whole.size() - 2));
  auto s = Segment::Open(dir.path(), 100, Resolved(), Segment::Role::kActive);
  CheckHolds(*s, 5);
  BOOST_TEST(std::filesystem::file_size(store) == s->CommittedBytes());
}

BOOST_AUTO_TEST_CASE(garbage_and_zero_tails_are_cut_off) {
  for (const std::string& tail : {std::string(100, '\0'), std::string("garbage after the last frame....."),
                                  std::string(7, '\xff')}) {
    TempDir dir;
    const auto store = Build(dir, 4);
    const auto size = std::filesystem::file_size(store);
    test::AppendToFile(store, tail);
    auto s = Segment::Open(dir.path(), 100, Resolved(), Segment::Role::kActive);
    CheckHolds(*s, 4);
    BOOST_TEST(std::filesystem::file_size(store) == size);
  }
}

BOOST_AUTO_TEST_CASE(missing_index_is_rebuilt) {
  for (const auto role : {Segment::Role::kActive, Segment::Role::kSealed}) {
    TempDir dir;
    Build(dir, 9);
    std::filesystem::remove(dir / "00000000000000000100.index");
    auto s = Segment::Open(dir.path(), 100, Resolved(), role);
    CheckHolds(*s, 9);
    BOOST_TEST(std::filesystem::exists(dir / "00000000000000000100.index"));
  }
}

BOOST_AUTO_TEST_CASE(zero_filled_index_tail) {
  TempDir dir;
  Build(dir, 9);
  // Preallocated and never trimmed, as a crash leaves it.
  std::filesystem::resize_file(dir / "00000000000000000100.index", 1 << 16);
  auto s = Segment::Open(dir.path(), 100, Resolved(), Segment::Role::kActive);
  CheckHolds(*s, 9);
}

BOOST_AUTO_TEST_CASE(index_longer_than_the_store) {
  TempDir dir;
  const auto store = Build(dir, 9);
  const std::string whole = test::ReadFile(store);
  // Cut the store after frame 5: the index names four frames that are gone.
  std::uint64_t end = kStoreHeaderBytes;
  for (int i = 0; i < 5; ++i) end += kFrameHeaderBytes + Payload(100 + i).size();
  test::WriteFile(store, whole.substr(0, end));
  auto s = Segment::Open(dir.path(), 100, Resolved(), Segment::Role::kActive);
  CheckHolds(*s, 5);
  Put(*s, "next");
  BOOST_TEST(Get(*s, 105) == "next");
}

BOOST_AUTO_TEST_CASE(index_entries_out_of_order_are_not_trusted) {
  TempDir dir;
  Build(dir, 6);
  std::string idx = test::ReadFile(dir / "00000000000000000100.index");
  std::swap_ranges(idx.begin() + kIndexHeaderBytes + 2 * kIndexEntryBytes,
                   idx.begin() + kIndexHeaderBytes + 3 * kIndexEntryBytes,
                   idx.begin() + kIndexHeaderBytes + 3 * kIndexEntryBytes);
  test::WriteFile(dir / "00000000000000000100.index", idx);
  for (const auto role : {Segment::Role::kActive, Segment::Role::kSealed}) {
    auto s = Segment::Open(dir.path(), 100, Resolved(), role);
    CheckHolds(*s, 6);  // rebuilt from the store
  }
}

BOOST_AUTO_TEST_CASE(sealed_segment_with_trailing_garbage_is_reported) {
  TempDir dir;
  const auto store = Build(dir, 4);
  const auto size = std::filesystem::file_size(store);
  test::AppendToFile(store, "not a frame at all");
  BOOST_CHECK_EXCEPTION(Segment::Open(dir.path(), 100, Resolved(), Segment::Role::kSealed), CorruptionError,
                        [&](const CorruptionError& e) { return e.path() == store && e.position() == size; });
  BOOST_TEST(std::filesystem::file_size(store) == size + 18);  // nothing cut away
}

BOOST_AUTO_TEST_CASE(flipped_payload_bit_is_reported_on_read) {
  TempDir dir;
  const auto store = Build(dir, 5);
  std::string bytes = test::ReadFile(store);
  const auto at = bytes.find(Payload(102));
  bytes[at + 2] ^= 0x04;
  test::WriteFile(store, bytes);
  auto s = Segment::Open(dir.path(), 100, Resolved(), Segment::Role::kSealed);
  BOOST_TEST(s->Count() == 5U);
  std::vector<std::byte> buf;
  BOOST_CHECK_EXCEPTION(test::ReadFrame(*s, 102, buf), CorruptionError, [&](const CorruptionError& e) {
    return e.path() == store && e.position() == at - kFrameHeaderBytes;
  });
  BOOST_TEST(Get(*s, 101) == Payload(101));
  BOOST_TEST(Get(*s, 103) == Payload(103));
}

BOOST_AUTO_TEST_CASE(flipped_bit_in_synced_frames_is_reported_not_cut) {
  // The checkpoint vouches for every frame a sync covered: after an unclean
  // shutdown they are not re-read, and a damaged one is reported on read
  // instead of cutting off the good records after it.
  TempDir dir;
  const auto store = Build(dir, 5);
  std::string bytes = test::ReadFile(store);
  const auto at = bytes.find(Payload(103)) - kFrameHeaderBytes;
  bytes[at + 9] ^= 0x01;  // inside the offset field
  test::WriteFile(store, bytes);
  std::filesystem::resize_file(dir / "00000000000000000100.index", 4096);  // unclean shutdown
  auto s = Segment::Open(dir.path(), 100, Resolved(), Segment::Role::kActive);
  BOOST_TEST(s->Count() == 5U);
  BOOST_CHECK_THROW(Get(*s, 103), CorruptionError);
  for (std::uint64_t o : {100, 101, 102, 104}) BOOST_TEST(Get(*s, o) == Payload(o));
}

BOOST_AUTO_TEST_CASE(flipped_header_bit_past_the_checkpoint_ends_the_segment) {
  TempDir dir;
  std::filesystem::path store;
  {
    // Three records synced, three more written, then a crash (no Seal).
    auto s = Segment::Create(dir.path(), 100, Resolved());
    for (std::uint64_t i = 0; i < 3; ++i) Put(*s, Payload(100 + i));
    s->SyncStore();
    for (std::uint64_t i = 3; i < 6; ++i) Put(*s, Payload(100 + i));
    store = s->StoreFile();
  }
  std::string bytes = test::ReadFile(store);
  const auto at = bytes.find(Payload(104)) - kFrameHeaderBytes;
  bytes[at + 9] ^= 0x01;
  test::WriteFile(store, bytes);
  auto s = Segment::Open(dir.path(), 100, Resolved(), Segment::Role::kActive);
  CheckHolds(*s, 4);
  BOOST_TEST(std::filesystem::file_size(store) == at);  // the rest is cut off
}

BOOST_AUTO_TEST_CASE(recovery_reads_only_what_follows_the_checkpoint) {
  TempDir dir;
  const std::uint64_t n = 30000;
  {
    auto s = Segment::Create(dir.path(), 100, Resolved());
    for (std::uint64_t i = 0; i < n; ++i) Put(*s, Payload(100 + i));
    s->SyncStore();
    for (std::uint64_t i = n; i < n + 3; ++i) Put(*s, Payload(100 + i));
  }  // crash: no Seal (the store allocated ahead, zeros after the records)
  const auto store = dir / "00000000000000000100.store";
  {
    test::SyscallHooks hooks;
    auto s = Segment::Open(dir.path(), 100, Resolved(), Segment::Role::kActive);
    // The headers (the store's twice), then the first read-ahead chunk from
    // the checkpoint on (the three unsynced frames, then zeros): not the
    // megabyte of records before it.
    BOOST_TEST(hooks.read_bytes.load() <= 2 * kStoreHeaderBytes + kIndexHeaderBytes + detail::FrameCursor::kFirstChunk);
    BOOST_TEST(s->CommittedBytes() > 10 * detail::FrameCursor::kFirstChunk);
    CheckHolds(*s, n + 3);
  }
  // Without a checkpoint (its CRC broken) every frame is read again.
  {
    auto s = Segment::Open(dir.path(), 100, Resolved(), Segment::Role::kActive);
    for (std::uint64_t i = n + 3; i < n + 6; ++i) Put(*s, Payload(100 + i));
  }  // crash again
  const auto index = dir / "00000000000000000100.index";
  std::string idx = test::ReadFile(index);
  idx[20] = static_cast<char>(idx[20] ^ 1);
  test::WriteFile(index, idx);
  test::SyscallHooks hooks;
  auto s = Segment::Open(dir.path(), 100, Resolved(), Segment::Role::kActive);
  BOOST_TEST(hooks.read_bytes.load() >= s->CommittedBytes() - kStoreHeaderBytes);
  CheckHolds(*s, n + 6);
}

BOOST_AUTO_TEST_CASE(a_checkpoint_beyond_what_recovery_finds_is_replaced) {
  // An index whose checkpoint claims more than the store holds (not what a
  // crash leaves, but what damage can): recovery keeps what holds, and the
  // checkpoint it leaves must not make a later recovery cut off records
  // appended since.
  TempDir dir;
  std::uint64_t store_size = 0;
  {
    auto s = Segment::Create(dir.path(), 100, Resolved());
    for (std::uint64_t i = 0; i < 2; ++i) Put(*s, Payload(100 + i));
    s->SyncStore();
    store_size = s->CommittedBytes();
  }  // crash
  const auto index = dir / "00000000000000000100.index";
  std::string x = test::ReadFile(index);
  auto* p = reinterpret_cast<std::byte*>(x.data());
  detail::StoreLE<std::uint64_t>(p + 16, store_size);  // the real end...
  detail::StoreLE<std::uint64_t>(p + 24, 10);          // ...but ten records
  detail::StoreLE<std::uint32_t>(p + 32, detail::Crc32c(0, p + 8, 24));
  test::WriteFile(index, x);
  {
    auto s = Segment::Open(dir.path(), 100, Resolved(), Segment::Role::kActive);
    CheckHolds(*s, 2);
    for (std::uint64_t i = 2; i < 5; ++i) Put(*s, Payload(100 + i));
    s->SyncStore();
    store_size = s->CommittedBytes();
  }  // crash again
  {
    // The checkpoint moved on with the sync (a stale claim of ten records
    // would have kept it from ever moving).
    Index idx(index, 100, 0, detail::Access::kReadOnly);
    BOOST_REQUIRE(idx.CheckpointOnDisk().has_value());
    BOOST_TEST(idx.CheckpointOnDisk()->records == 5U);
    BOOST_TEST(idx.CheckpointOnDisk()->store_bytes == store_size);
  }
  CheckHolds(*Segment::Open(dir.path(), 100, Resolved(), Segment::Role::kActive), 5);
}

BOOST_AUTO_TEST_CASE(a_damaged_last_trusted_entry_does_not_cut_durable_records) {
  // Five records synced; the index page holding entries 3-4 lost (zeros),
  // and entry 2's length damaged: nothing after entry 2 confirms it, so its
  // frame is checked, and the store rescanned rather than cut at 2's end.
  TempDir dir;
  {
    auto s = Segment::Create(dir.path(), 100, Resolved());
    for (std::uint64_t i = 0; i < 5; ++i) Put(*s, Payload(100 + i));
    s->SyncStore();
  }
  const auto index = dir / "00000000000000000100.index";
  std::string x = test::ReadFile(index);
  std::fill(x.begin() + kIndexHeaderBytes + 3 * kIndexEntryBytes, x.begin() + kIndexHeaderBytes + 5 * kIndexEntryBytes,
            '\0');
  x[kIndexHeaderBytes + 2 * kIndexEntryBytes + 4] = static_cast<char>(x[kIndexHeaderBytes + 2 * kIndexEntryBytes + 4] - 3);
  test::WriteFile(index, x);
  CheckHolds(*Segment::Open(dir.path(), 100, Resolved(), Segment::Role::kActive), 5);
}

BOOST_AUTO_TEST_CASE(a_damaged_frame_a_sync_covered_is_refused_not_cut) {
  // Synced frames, index entries lost, a frame in the synced part damaged:
  // the scan stops there, but cutting the store would drop the durable
  // records after it. Open refuses and leaves the store as it is.
  TempDir dir;
  std::filesystem::path store;
  {
    auto s = Segment::Create(dir.path(), 100, Resolved());
    for (std::uint64_t i = 0; i < 5; ++i) Put(*s, Payload(100 + i));
    s->SyncStore();
    store = s->StoreFile();
  }
  const auto index = dir / "00000000000000000100.index";
  std::string x = test::ReadFile(index);
  std::fill(x.begin() + kIndexHeaderBytes, x.begin() + kIndexHeaderBytes + 5 * kIndexEntryBytes, '\0');
  test::WriteFile(index, x);
  std::string bytes = test::ReadFile(store);
  bytes[bytes.find(Payload(102))] ^= 0x10;
  test::WriteFile(store, bytes);
  BOOST_CHECK_EXCEPTION(Segment::Open(dir.path(), 100, Resolved(), Segment::Role::kActive), CorruptionError,
                        [&](const CorruptionError& e) { return e.path() == store; });
  BOOST_TEST(test::ReadFile(store) == bytes);
}

BOOST_AUTO_TEST_CASE(store_shorter_than_its_header) {
  TempDir dir;
  Build(dir, 0);
  const auto store = dir / "00000000000000000100.store";
  test::WriteFile(store, "LGSY");  // creation torn before the header was whole
  auto s = Segment::Open(dir.path(), 100, Resolved(), Segment::Role::kActive);
  BOOST_TEST(s->Empty());
  Put(*s, "first");
  BOOST_TEST(Get(*s, 100) == "first");
  // Short, but not what a torn creation leaves: not replaced.
  test::WriteFile(dir / "00000000000000000300.store", "hello");
  BOOST_CHECK_THROW(Segment::Open(dir.path(), 300, Resolved(), Segment::Role::kActive), CorruptionError);
  BOOST_TEST(test::ReadFile(dir / "00000000000000000300.store") == "hello");
  test::WriteFile(dir / "00000000000000000400.store", std::string(9, '\0'));
  BOOST_TEST(Segment::Open(dir.path(), 400, Resolved(), Segment::Role::kActive)->Empty());
  // A header that never reached the disk, frames that did: the header is
  // written again and the frames that hold are kept.
  {
    const std::string good = test::AsString(detail::StoreHeader(100));
    std::string frames;
    for (std::uint64_t o = 100; o < 103; ++o) {
      const auto f = test::Frame(o, Payload(o));
      frames.append(reinterpret_cast<const char*>(f.data()), f.size());
    }
    for (std::size_t k : {0, 3, 8}) {  // zeros, or a prefix of the header then zeros
      std::string torn = good.substr(0, k) + std::string(kStoreHeaderBytes - k, '\0') + frames;
      test::WriteFile(store, torn);
      std::filesystem::remove(dir / "00000000000000000100.index");
      CheckHolds(*Segment::Open(dir.path(), 100, Resolved(), Segment::Role::kActive), 3);
    }
  }
  // A sealed segment may not be that short.
  test::WriteFile(dir / "00000000000000000900.store", "LG");
  BOOST_CHECK_THROW(Segment::Open(dir.path(), 900, Resolved(), Segment::Role::kSealed), CorruptionError);
}

BOOST_AUTO_TEST_CASE(store_from_another_segment_is_rejected) {
  TempDir dir;
  const auto store = Build(dir, 3);
  std::filesystem::rename(store, dir / "00000000000000000200.store");  // swapped names
  BOOST_CHECK_THROW(Segment::Open(dir.path(), 200, Resolved(), Segment::Role::kActive), CorruptionError);
  BOOST_TEST(std::filesystem::exists(dir / "00000000000000000200.store"));
}

BOOST_AUTO_TEST_CASE(remove_files) {
  TempDir dir;
  auto s = Segment::Create(dir.path(), 7, Resolved());
  Put(*s, "x");
  s->RemoveFiles();
  BOOST_TEST(!std::filesystem::exists(dir / "00000000000000000007.store"));
  BOOST_TEST(!std::filesystem::exists(dir / "00000000000000000007.index"));
  BOOST_TEST(Get(*s, 7) == "x");  // descriptors and mapping outlive the names
}

BOOST_AUTO_TEST_CASE(segment_names) {
  BOOST_TEST(detail::SegmentStem(42) == "00000000000000000042");
  BOOST_TEST(detail::SegmentStem(~0ULL) == "18446744073709551615");
  BOOST_TEST(detail::ParseSegmentName("00000000000000000042.store", ".store").value() == 42U);
  BOOST_TEST(detail::ParseSegmentName("18446744073709551615.index", ".index").value() == ~0ULL);
  for (const char* bad : {"abc.store", "12a.store", ".store", "5.store", "000000000000000000042.store",
                          "0000000000000000004a.store", "00000000000000000042.store.bak",
                          "99999999999999999999.store", "00000000000000000042.index", "00000000000000000042"})
    BOOST_TEST(!detail::ParseSegmentName(bad, ".store").has_value(), bad);
}

BOOST_AUTO_TEST_CASE(recovery_checks_frames_larger_than_its_read_chunk) {
  TempDir dir;
  const std::string big(3 * 1024 * 1024 + 17, 'B');
  {
    auto s = Segment::Create(dir.path(), 100, Resolved());
    Put(*s, "small");
    Put(*s, big);
    Put(*s, "after");
    s->Seal();
  }
  std::filesystem::remove(dir / "00000000000000000100.index");
  {
    auto s = Segment::Open(dir.path(), 100, Resolved(), Segment::Role::kActive);
    BOOST_TEST(s->Count() == 3U);
    BOOST_TEST((Get(*s, 101) == big));
  }
  // A flipped byte deep inside the big payload ends the log before it.
  const auto store = dir / "00000000000000000100.store";
  std::string bytes = test::ReadFile(store);
  bytes[bytes.size() / 2] ^= 0x20;
  test::WriteFile(store, bytes);
  std::filesystem::remove(dir / "00000000000000000100.index");
  auto s = Segment::Open(dir.path(), 100, Resolved(), Segment::Role::kActive);
  BOOST_TEST(s->Count() == 1U);
  BOOST_TEST(Get(*s, 100) == "small");
}

BOOST_AUTO_TEST_CASE(damaged_middle_entry_of_a_sealed_index_is_reported) {
  TempDir dir;
  Build(dir, 6);
  const auto index = dir / "00000000000000000100.index";
  std::string idx = test::ReadFile(index);
  // A garbage length (4 GiB - 1) in entry 2; first and last entries intact,
  // so the open-time check passes.
  for (int b = 4; b < 8; ++b) idx[kIndexHeaderBytes + 2 * kIndexEntryBytes + b] = '\xff';
  test::WriteFile(index, idx);
  auto s = Segment::Open(dir.path(), 100, Resolved(), Segment::Role::kSealed);
  BOOST_TEST(s->Count() == 6U);
  std::vector<std::byte> buf;
  BOOST_CHECK_EXCEPTION(test::ReadFrame(*s, 102, buf), CorruptionError, [&](const CorruptionError& e) {
    return e.path() == index && e.position() == kIndexHeaderBytes + 2 * kIndexEntryBytes;
  });
  BOOST_TEST(buf.capacity() < 4096U);  // no buffer sized from the garbage
  BOOST_TEST(Get(*s, 101) == Payload(101));
  BOOST_TEST(Get(*s, 105) == Payload(105));
}
