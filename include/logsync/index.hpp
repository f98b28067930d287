#pragma once
/// Index: the dense offset -> position file of one segment, `<base offset>.index`
/// (its layout and checkpoint: format.hpp).
///
/// Entry i describes the record at offset base + i, so a lookup is one
/// multiplication. While the segment is writable the file is mapped as
/// large as Config::segment.max_index_bytes of entries (address space) and
/// allocated (posix_fallocate) ahead of its entries in steps of
/// kIndexAllocateStep, before any entry is written there, so a full disk is
/// an IoError from Prepare and never a fault on the mapping; it is trimmed
/// to its entries when the segment is sealed or closed. The index is derived data: the store is the
/// source of truth, and the segment checks the index against it on open
/// (see segment.hpp).

#include <logsync/config.hpp>
#include <logsync/detail/file.hpp>
#include <logsync/detail/mapping.hpp>
#include <logsync/error.hpp>
#include <logsync/format.hpp>

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
  Index(std::filesystem::path path, std::uint64_t base, std::uint64_t capacity_bytes, detail::Access access)
      : file_(std::move(path), access == detail::Access::kReadWrite ? (O_RDWR | O_CREAT) : O_RDONLY),
        base_offset_(base),
        writable_(access == detail::Access::kReadWrite) {
    const bool writable = writable_;
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

  /// Whether the file had a valid header for this segment when opened
  /// (false: it was missing, damaged or foreign, and its entries are not
  /// trusted). For tools that inspect a log and report why an index is
  /// rebuilt; the segment's recovery needs only the queries below.
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

  /// The file is allocated ahead of its entries in steps of this many bytes.
  static constexpr std::uint64_t kIndexAllocateStep = 1 << 20;

  /// Allocates the file to hold at least n entries (n <= Capacity()), and up
  /// to kIndexAllocateStep more, so that entries below n can be written
  /// through the mapping (writer only). Throws IoError when the disk has no
  /// room even for n: nothing is written then. Where the room ahead is not
  /// there (a nearly full disk), just through n.
  void Prepare(std::uint64_t n) {
    const std::uint64_t end = detail::IndexEntryPosition(n);
    if (end <= allocated_bytes_) return;
    const std::uint64_t from = allocated_bytes_;
    allocated_bytes_ = file_.AllocateAhead(allocated_bytes_, end,
                                           std::min(mapped_bytes_, std::max(end, allocated_bytes_ + kIndexAllocateStep)));
    // Entries two steps behind leave the resident set (readers map again
    // what they read), as the store's written part does.
    if (from >= released_bytes_ + 3 * kIndexAllocateStep) {
      region_->Release(released_bytes_, kIndexAllocateStep);
      released_bytes_ += kIndexAllocateStep;
    }
  }

  /// Starts loading entry i (< Capacity()) into the cache.
  void Prefetch(std::uint64_t i) const noexcept {
    __builtin_prefetch(base_ + detail::IndexEntryPosition(i));
  }

  /// Entry i, which must be below Capacity() (and below Count() unless the
  /// caller is the writer or the recovery).
  IndexEntry At(std::uint64_t i) const noexcept { return detail::ReadIndexEntry(base_ + detail::IndexEntryPosition(i)); }

  /// Writes entry i (writer only; i < Capacity(), not yet published).
  void Put(std::uint64_t i, const IndexEntry& e) noexcept {
    detail::WriteIndexEntry(base_ + detail::IndexEntryPosition(i), e);
  }

  /// Makes entries below n visible to readers.
  void SetCount(std::uint64_t n) noexcept { count_.store(n, std::memory_order_release); }

  /// Grows the mapping (if needed) and the file to hold at least n entries.
  /// Only while no reader can hold a pointer into the mapping (recovery on
  /// open).
  void Reserve(std::uint64_t n) {
    if (n > Capacity()) {
      region_.reset();
      Map(kIndexHeaderBytes + std::max(n, 2 * Capacity()) * kIndexEntryBytes);
    }
    Prepare(n);
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
    if (detail::Sys().msync(region_->Address(), detail::IndexEntryPosition(Count()), MS_SYNC) != 0)
      throw SyncError(path(), errno, "msync");
  }

  /// Syncs and cuts the file to its published entries. The mapping stays
  /// valid for the entries (readers may still be using them); no more writes.
  void Trim() {
    if (!writable_) return;
    Sync();
    file_.Resize(detail::IndexEntryPosition(Count()));
    allocated_bytes_ = detail::IndexEntryPosition(Count());
    file_.FullSync();
    writable_.store(false, std::memory_order_release);
    file_.Close();
  }

  bool Writable() const noexcept { return writable_.load(std::memory_order_acquire); }

  /// Whether the index holds a mapping (changes only while it is opened).
  bool Mapped() const noexcept { return region_ != nullptr; }

 private:
  // Whether the file starts with this segment's header, and its checkpoint.
  void ReadHeader() {
    if (file_bytes_ < kIndexHeaderBytes) return;
    std::array<std::byte, kIndexHeaderBytes> h{};
    if (file_.ReadAt(h, 0) != h.size()) return;
    header_ok_ = detail::IndexHeaderMatches(h.data(), base_offset_);
    if (!header_ok_) return;
    checkpoint_on_disk_ = detail::ReadIndexCheckpoint(h.data());
    if (checkpoint_on_disk_) checkpoint_ = *checkpoint_on_disk_;
  }

  // Writes the checkpoint into the mapping (checkpoint_mu_ held).
  void StoreCheckpoint(const IndexCheckpoint& c) noexcept {
    if (!rw_mapping_) return;
    checkpoint_ = c;
    detail::WriteIndexCheckpoint(base_, c);
  }

  // A fresh header (with the empty checkpoint) in the mapping.
  void WriteHeader() noexcept {
    detail::WriteIndexHeader(base_, base_offset_);
    ResetCheckpoint(0, kStoreHeaderBytes);
  }

  void Map(std::uint64_t bytes) {
    if (bytes > kIndexHeaderBytes) bytes -= (bytes - kIndexHeaderBytes) % kIndexEntryBytes;
    // The header and what the file already holds are allocated, not only
    // sized: a write through the mapping into a hole that the filesystem has
    // no space for is a SIGBUS, not an error. Holes an earlier, sparse file
    // left below its size are filled too. Entries beyond: Prepare.
    if (writable_) {
      allocated_bytes_ = std::min(bytes, std::max(file_.Size(), kIndexHeaderBytes));
      file_.Allocate(0, allocated_bytes_);
    }
    mapped_bytes_ = bytes;
    released_bytes_ = 0;
    base_ = nullptr;
    if (bytes == 0) return;
    region_ = detail::MapFile(file_, writable_ ? detail::Access::kReadWrite : detail::Access::kReadOnly, bytes);
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
  std::uint64_t allocated_bytes_ = 0;  // of the file, while writable: what entries may be written below
  std::uint64_t released_bytes_ = 0;   // of the mapping, taken out of the resident set (Prepare)
  std::unique_ptr<detail::Mapping> region_;
  std::byte* base_ = nullptr;
  std::atomic<std::uint64_t> count_{0};
};

}  // namespace logsync
