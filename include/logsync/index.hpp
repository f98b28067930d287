#pragma once
/// Index: the dense offset -> position file of one segment, `<base offset>.index`.
///
/// Entry i describes the record at offset base + i, so a lookup is one
/// multiplication. The file is memory-mapped (Boost.Interprocess), grown to
/// Config::segment.max_index_bytes while the segment is writable and trimmed
/// to its entries when the segment is sealed or closed. The index is derived
/// data: after a crash its length is not trusted, and the segment re-derives
/// it from the store (see segment.hpp). All integers are little-endian; the
/// format version is the store header's.
///
///     index entry (kIndexEntryBytes = 16)
///     +--------+------+--------------------------------------------------+
///     | offset | size | field                                            |
///     +--------+------+--------------------------------------------------+
///     | 0      | 4    | relative offset i = offset - base (u32)          |
///     | 4      | 4    | payload length of the frame (u32)                |
///     | 8      | 8    | position of the frame in the store (u64)         |
///     +--------+------+--------------------------------------------------+
///
/// A zero-filled entry never passes for a real one: entry 0 sits at
/// position 16 (after the store header) and entry i > 0 has i != 0.

#include <logsync/config.hpp>
#include <logsync/detail/endian.hpp>
#include <logsync/detail/file.hpp>
#include <logsync/error.hpp>

#include <boost/interprocess/file_mapping.hpp>
#include <boost/interprocess/mapped_region.hpp>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>

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

/// The mapped `.index` file. Entries below Count() are immutable and may be
/// read from any thread; one writer (the Log's append lock) writes entry
/// Count() and then publishes it with SetCount.
class Index {
 public:
  /// Opens or creates the index at `path`. Writable: the file is grown to at
  /// least `capacity_bytes`; read-only: mapped at its current size.
  Index(std::filesystem::path path, std::uint64_t capacity_bytes, bool writable)
      : file_(std::move(path), writable ? (O_RDWR | O_CREAT) : O_RDONLY), writable_(writable) {
    file_bytes_ = file_.Size();
    Map(writable ? std::max(capacity_bytes, file_bytes_) : file_bytes_);
    if (!writable) file_.Close();  // the mapping is all a read-only index needs
  }

  Index(Index&&) = delete;
  ~Index() = default;

  const std::filesystem::path& path() const noexcept { return file_.path(); }

  /// Entries the file held when it was opened (untrusted after a crash).
  std::uint64_t EntriesOnDisk() const noexcept { return file_bytes_ / kIndexEntryBytes; }
  /// Whether the file's length was an exact number of entries when opened.
  bool WholeEntriesOnDisk() const noexcept { return file_bytes_ % kIndexEntryBytes == 0; }

  /// Entries the mapping has room for.
  std::uint64_t Capacity() const noexcept { return mapped_bytes_ / kIndexEntryBytes; }

  /// Published entries.
  std::uint64_t Count() const noexcept { return count_.load(std::memory_order_acquire); }

  /// Entry i, which must be below Capacity() (and below Count() unless the
  /// caller is the writer or the recovery).
  IndexEntry At(std::uint64_t i) const noexcept {
    const std::byte* p = base_ + i * kIndexEntryBytes;
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
    std::byte* p = base_ + i * kIndexEntryBytes;
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
    Map(std::max(n, 2 * Capacity()) * kIndexEntryBytes);
  }

  /// msync of the published entries.
  void Sync() const {
    if (!writable_ || Count() == 0) return;
    if (detail::Sys().msync(region_->get_address(), Count() * kIndexEntryBytes, MS_SYNC) != 0)
      throw SyncError(path(), errno, "msync");
  }

  /// Syncs and cuts the file to its published entries. The mapping stays
  /// valid for the entries (readers may still be using them); no more writes.
  void Trim() {
    if (!writable_) return;
    Sync();
    file_.Resize(Count() * kIndexEntryBytes);
    file_.FullSync();
    writable_ = false;
    file_.Close();
  }

  bool Writable() const noexcept { return writable_; }

 private:
  void Map(std::uint64_t bytes) {
    bytes -= bytes % kIndexEntryBytes;
    if (writable_ && file_.Size() < bytes) file_.Resize(bytes);
    mapped_bytes_ = bytes;
    base_ = nullptr;
    if (bytes == 0) return;
    namespace bip = boost::interprocess;
    const auto mode = writable_ ? bip::read_write : bip::read_only;
    try {
      bip::file_mapping mapping(path().c_str(), mode);
      region_ = std::make_unique<bip::mapped_region>(mapping, mode, 0, bytes);
    } catch (const bip::interprocess_exception& e) {
      throw IoError(path(), e.get_native_error() ? e.get_native_error() : EIO, "mmap");
    }
    base_ = static_cast<std::byte*>(region_->get_address());
  }

  detail::File file_;
  bool writable_;
  std::uint64_t file_bytes_ = 0;
  std::uint64_t mapped_bytes_ = 0;
  std::unique_ptr<boost::interprocess::mapped_region> region_;
  std::byte* base_ = nullptr;
  std::atomic<std::uint64_t> count_{0};
};

}  // namespace logsync
