#pragma once
/// Index: the dense offset -> position file of one segment, `<base offset>.index`.
///
/// Entry i describes the record at offset base + i, so a lookup is one
/// multiplication. The file is memory-mapped, allocated
/// (posix_fallocate, so a full disk is an IoError when the index is
/// created or grown, never a fault on the mapping) to
/// hold Config::segment.max_index_bytes of entries while the segment is
/// writable and trimmed to its entries when the segment is sealed or
/// closed. The index is derived data: the store is the source of truth, and
/// the segment checks the index against it on open (see segment.hpp). All
/// integers are little-endian.
///
///     index file: header, then entries
///     +--------+------+--------------------------------------------------+
///     | offset | size | field                                            |
///     +--------+------+--------------------------------------------------+
///     | 0      | 6    | magic "LGSIDX"                                   |
///     | 6      | 1    | format version (1)                               |
///     | 7      | 1    | flags (0; readers reject unknown bits)           |
///     | 8      | 8    | base offset (u64), equal to the file name's      |
///     | 16     | 8    | checkpoint: store bytes P known durable (u64)    |
///     | 24     | 8    | checkpoint: records N in those bytes (u64)       |
///     | 32     | 4    | CRC32C of bytes 8-31                             |
///     | 36     | 12   | zero                                             |
///     | 48     | ...  | entries, kIndexEntryBytes each                   |
///     +--------+------+--------------------------------------------------+
///
///     index entry (kIndexEntryBytes = 16)
///     +--------+------+--------------------------------------------------+
///     | 0      | 4    | relative offset i = offset - base (u32)          |
///     | 4      | 4    | payload length of the frame (u32)                |
///     | 8      | 8    | position of the frame in the store (u64)         |
///     +--------+------+--------------------------------------------------+
///
/// A zero-filled entry never passes for a real one: entry 0 sits at
/// position 16 (after the store header) and entry i > 0 has i != 0.
///
/// The checkpoint says "the store's first P bytes, the segment's first N
/// records, had been fdatasync'd when this was written". It is written into
/// the mapping after every store sync and is never synced itself: a stale
/// checkpoint is an older claim that is still true (stores only grow), and
/// a torn one fails its CRC and counts as none. Recovery after a crash
/// verifies frames only past the checkpoint.

#include <logsync/config.hpp>
#include <logsync/detail/endian.hpp>
#include <logsync/detail/file.hpp>
#include <logsync/error.hpp>

#include <logsync/detail/crc32c.hpp>
#include <logsync/detail/mapping.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>

namespace logsync {

/// One decoded index entry.
struct IndexEntry {
  std::uint32_t relative = 0;
  std::uint32_t length = 0;    ///< payload bytes
  std::uint64_t position = 0;  ///< of the frame header in the store
  /// Bytes of the whole frame.
  std::uint64_t FrameBytes() const noexcept { return kFrameHeaderBytes + length; }
  std::uint64_t End() const noexcept { return position + FrameBytes(); }
};

/// What an index checkpoint vouches for: the first `store_bytes` of the
/// store, holding the first `records` records, were durable.
struct IndexCheckpoint {
  std::uint64_t store_bytes = kStoreHeaderBytes;
  std::uint64_t records = 0;
};

inline constexpr std::string_view kIndexMagic = "LGSIDX";
inline constexpr std::uint8_t kIndexFormatVersion = 1;

/// The mapped `.index` file. Entries below Count() are immutable and may be
/// read from any thread; one writer (the Log's append lock) writes entry
/// Count() and then publishes it with SetCount.
class Index {
 public:
  /// Opens or creates the index of the segment at `base` at `path`.
  /// Writable: the file is grown to hold at least `capacity_bytes` of
  /// entries, and a missing or foreign header is replaced by a fresh one
  /// (the entries it came with are then not trusted: EntriesOnDisk() is 0).
  /// Read-only: mapped at its current size.
  Index(std::filesystem::path path, std::uint64_t base, std::uint64_t capacity_bytes, bool writable)
      : file_(std::move(path), writable ? (O_RDWR | O_CREAT) : O_RDONLY), base_offset_(base), writable_(writable) {
    file_bytes_ = file_.Size();
    ReadHeader();
    const std::uint64_t entry_bytes = file_bytes_ > kIndexHeaderBytes ? file_bytes_ - kIndexHeaderBytes : 0;
    Map(writable ? kIndexHeaderBytes + std::max(capacity_bytes, entry_bytes) : file_bytes_);
    if (writable && !header_ok_) {
      WriteHeader();
      file_bytes_ = kIndexHeaderBytes;  // what followed a foreign header is not ours
    }
    if (!writable) file_.Close();  // the mapping is all a read-only index needs
  }

  Index(Index&&) = delete;
  ~Index() = default;

  const std::filesystem::path& path() const noexcept { return file_.path(); }

  /// Whether the file had a valid header for this segment when opened.
  bool HeaderOk() const noexcept { return header_ok_; }
  /// The checkpoint the file held when opened, if its header and CRC held.
  const std::optional<IndexCheckpoint>& CheckpointOnDisk() const noexcept { return checkpoint_on_disk_; }

  /// Entries the file held when it was opened (untrusted after a crash; 0
  /// without a valid header).
  std::uint64_t EntriesOnDisk() const noexcept {
    return header_ok_ ? (file_bytes_ - kIndexHeaderBytes) / kIndexEntryBytes : 0;
  }
  /// Whether the file was a valid header and an exact number of entries
  /// when opened.
  bool WholeEntriesOnDisk() const noexcept {
    return header_ok_ && (file_bytes_ - kIndexHeaderBytes) % kIndexEntryBytes == 0;
  }

  /// Entries the mapping has room for.
  std::uint64_t Capacity() const noexcept {
    return mapped_bytes_ > kIndexHeaderBytes ? (mapped_bytes_ - kIndexHeaderBytes) / kIndexEntryBytes : 0;
  }

  /// Published entries.
  std::uint64_t Count() const noexcept { return count_.load(std::memory_order_acquire); }

  /// Starts loading entry i (< Capacity()) into the cache.
  void Prefetch(std::uint64_t i) const noexcept {
    __builtin_prefetch(base_ + kIndexHeaderBytes + i * kIndexEntryBytes);
  }

  /// Entry i, which must be below Capacity() (and below Count() unless the
  /// caller is the writer or the recovery).
  IndexEntry At(std::uint64_t i) const noexcept {
    const std::byte* p = base_ + kIndexHeaderBytes + i * kIndexEntryBytes;
    return {detail::LoadLE<std::uint32_t>(p), detail::LoadLE<std::uint32_t>(p + 4),
            detail::LoadLE<std::uint64_t>(p + 8)};
  }

  /// Published entry i; throws OffsetOutOfRange (with the relative offset)
  /// at or past Count().
  IndexEntry Read(std::uint64_t i) const {
    if (i >= Count()) throw OffsetOutOfRange(i);
    return At(i);
  }

  /// Writes entry i (writer only; i < Capacity(), not yet published).
  void Put(std::uint64_t i, const IndexEntry& e) noexcept {
    std::byte* p = base_ + kIndexHeaderBytes + i * kIndexEntryBytes;
    detail::StoreLE<std::uint32_t>(p, e.relative);
    detail::StoreLE<std::uint32_t>(p + 4, e.length);
    detail::StoreLE<std::uint64_t>(p + 8, e.position);
  }

  /// Makes entries below n visible to readers.
  void SetCount(std::uint64_t n) noexcept { count_.store(n, std::memory_order_release); }

  /// Grows the file and mapping to hold at least n entries. Only while no
  /// reader can hold a pointer into the mapping (recovery on open).
  void Reserve(std::uint64_t n) {
    if (n <= Capacity()) return;
    region_.reset();
    Map(kIndexHeaderBytes + std::max(n, 2 * Capacity()) * kIndexEntryBytes);
  }

  /// Records in the mapping's header that the store's first `store_bytes`,
  /// the segment's first `records` records, are durable. Any thread; an
  /// older claim than the one recorded is ignored. Not synced (see the
  /// file comment).
  void WriteCheckpoint(std::uint64_t records, std::uint64_t store_bytes) noexcept {
    std::lock_guard lock(checkpoint_mu_);
    if (records < checkpoint_.records || (records == checkpoint_.records && store_bytes <= checkpoint_.store_bytes))
      return;
    StoreCheckpoint({store_bytes, records});
  }

  /// Replaces the checkpoint, older or not: recovery's verdict on what the
  /// store holds durably replaces whatever claim the file came with.
  void ResetCheckpoint(std::uint64_t records, std::uint64_t store_bytes) noexcept {
    std::lock_guard lock(checkpoint_mu_);
    StoreCheckpoint({store_bytes, records});
  }

  /// msync of the header and the published entries.
  void Sync() const {
    if (!writable_) return;
    if (detail::Sys().msync(region_->Address(), kIndexHeaderBytes + Count() * kIndexEntryBytes, MS_SYNC) != 0)
      throw SyncError(path(), errno, "msync");
  }

  /// Syncs and cuts the file to its published entries. The mapping stays
  /// valid for the entries (readers may still be using them); no more writes.
  void Trim() {
    if (!writable_) return;
    Sync();
    file_.Resize(kIndexHeaderBytes + Count() * kIndexEntryBytes);
    file_.FullSync();
    writable_.store(false, std::memory_order_release);
    file_.Close();
  }

  bool Writable() const noexcept { return writable_.load(std::memory_order_acquire); }

 private:
  // Whether the file starts with this segment's header, and its checkpoint.
  void ReadHeader() {
    if (file_bytes_ < kIndexHeaderBytes) return;
    std::array<std::byte, kIndexHeaderBytes> h{};
    if (file_.ReadAt(h, 0) != h.size()) return;
    header_ok_ = std::memcmp(h.data(), kIndexMagic.data(), kIndexMagic.size()) == 0 &&
                 static_cast<std::uint8_t>(h[6]) == kIndexFormatVersion && h[7] == std::byte{0} &&
                 detail::LoadLE<std::uint64_t>(h.data() + 8) == base_offset_;
    if (!header_ok_) return;
    const std::uint32_t crc = detail::Crc32c(0, h.data() + 8, 24);
    if (crc != detail::LoadLE<std::uint32_t>(h.data() + 32)) return;
    IndexCheckpoint c{detail::LoadLE<std::uint64_t>(h.data() + 16), detail::LoadLE<std::uint64_t>(h.data() + 24)};
    if (c.store_bytes < kStoreHeaderBytes) return;
    checkpoint_on_disk_ = c;
    checkpoint_ = c;
  }

  // Writes the checkpoint into the mapping (checkpoint_mu_ held).
  void StoreCheckpoint(const IndexCheckpoint& c) noexcept {
    if (!rw_mapping_) return;
    checkpoint_ = c;
    std::array<std::byte, 24> b{};  // bytes 16-39
    detail::StoreLE<std::uint64_t>(b.data(), c.store_bytes);
    detail::StoreLE<std::uint64_t>(b.data() + 8, c.records);
    const std::uint32_t crc = detail::Crc32c(detail::Crc32c(0, base_ + 8, 8), b.data(), 16);
    detail::StoreLE<std::uint32_t>(b.data() + 16, crc);
    std::memcpy(base_ + 16, b.data(), b.size());
  }

  // A fresh header (with the empty checkpoint) in the mapping.
  void WriteHeader() noexcept {
    std::memset(base_, 0, kIndexHeaderBytes);
    std::memcpy(base_, kIndexMagic.data(), kIndexMagic.size());
    base_[6] = std::byte{kIndexFormatVersion};
    detail::StoreLE<std::uint64_t>(base_ + 8, base_offset_);
    ResetCheckpoint(0, kStoreHeaderBytes);
  }

  void Map(std::uint64_t bytes) {
    if (bytes > kIndexHeaderBytes) bytes -= (bytes - kIndexHeaderBytes) % kIndexEntryBytes;
    // Allocated, not only sized: a write through the mapping into a hole
    // that the filesystem has no space for is a SIGBUS, not an error. Holes
    // an earlier, sparse file left below its size are filled too.
    if (writable_) file_.Allocate(0, bytes);
    mapped_bytes_ = bytes;
    base_ = nullptr;
    if (bytes == 0) return;
    region_ = detail::MapFile(file_, writable_, bytes);
    base_ = static_cast<std::byte*>(region_->Address());
    rw_mapping_ = writable_;
  }

  detail::File file_;
  std::uint64_t base_offset_;
  std::atomic<bool> writable_;
  bool header_ok_ = false;
  bool rw_mapping_ = false;
  std::optional<IndexCheckpoint> checkpoint_on_disk_;
  std::mutex checkpoint_mu_;
  IndexCheckpoint checkpoint_{0, 0};  // the newest written (guarded by checkpoint_mu_)
  std::uint64_t file_bytes_ = 0;
  std::uint64_t mapped_bytes_ = 0;
  std::unique_ptr<detail::Mapping> region_;
  std::byte* base_ = nullptr;
  std::atomic<std::uint64_t> count_{0};
};

}  // namespace logsync
