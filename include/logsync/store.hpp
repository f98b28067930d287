#pragma once
/// Store: the append-only file of framed records, `<base offset>.store`
/// (its layout: format.hpp).

#include <logsync/config.hpp>
#include <logsync/format.hpp>
#include <logsync/detail/file.hpp>
#include <logsync/detail/mapping.hpp>
#include <logsync/error.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

namespace logsync {

/// The `.store` file of one segment. One writer at a time (the Log's append
/// lock); reads of positions the caller learned from the index may run
/// concurrently with appends. Records are written into and read from a
/// shared memory map of the file (no system call per record; see Append and
/// Map); recovery reads with pread.
class Store {
 public:
  /// Creates a new, empty store (fails if the file exists).
  static Store Create(const std::filesystem::path& path, std::uint64_t base) {
    Store s(detail::File(path, O_RDWR | O_CREAT | O_EXCL), base, detail::Access::kReadWrite);
    const auto h = detail::StoreHeader(base);
    try {
      s.file_.WriteAt(h, 0);
    } catch (...) {
      detail::RemoveFile(path);  // this call created it: leave no headerless store behind
      throw;
    }
    s.size_ = s.allocated_ = kStoreHeaderBytes;
    return s;
  }

  /// Opens an existing store and checks its header. Its size is the file's
  /// size: what of it holds is for the segment's recovery to decide.
  static Store Open(const std::filesystem::path& path, std::uint64_t base, detail::Access access) {
    Store s(detail::File(path, access == detail::Access::kReadWrite ? O_RDWR : O_RDONLY), base, access);
    s.size_ = s.allocated_ = s.file_.Size();
    detail::StoreHeaderBytes h{};
    if (s.file_.ReadAt(h, 0) != h.size()) throw CorruptionError(path, 0, "store header is cut short");
    if (const auto fault = detail::CheckStoreHeader(h, base)) throw CorruptionError(path, fault->at, fault->why);
    return s;
  }

  std::uint64_t base() const noexcept { return base_; }
  const std::filesystem::path& path() const noexcept { return file_.path(); }

  /// Bytes of records in the file as far as the writer knows (header
  /// included); the file itself may be longer (allocated ahead).
  std::uint64_t Size() const noexcept { return size_; }

  /// Appends whole frames; returns the position of the first. The bytes are
  /// copied into the shared mapping (they are in the page cache at once, as
  /// a write() would leave them), after the file has been allocated that far
  /// (posix_fallocate, so running out of space is an IoError here and never
  /// a fault on the mapping). Without a writable mapping, one pwrite; on a
  /// failed write the file is cut back, so no partial frame stays behind.
  std::uint64_t Append(std::span<const std::byte> frames) {
    const std::uint64_t pos = size_;
    if (writable_map_ && pos + frames.size() <= mapped_bytes_) {
      if (pos + frames.size() > allocated_) Allocate(pos + frames.size());
      std::memcpy(static_cast<std::byte*>(region_->Address()) + pos, frames.data(), frames.size());
      size_ += frames.size();
      // What lies two steps behind the end leaves the resident set: the
      // written part of a store does not stay resident while it grows.
      if (size_ >= released_ + 3 * grow_) {
        region_->Release(released_, grow_);
        released_ += grow_;
      }
      return pos;
    }
    try {
      file_.WriteAt(frames, pos);
    } catch (...) {
      try {
        file_.Resize(pos);
      } catch (...) {
      }
      throw;
    }
    size_ += frames.size();
    allocated_ = std::max(allocated_, size_);
    return pos;
  }

  /// Bytes allocated ahead of the writer, to be populated off the append
  /// path (detail/prefaulter.hpp).
  struct Ahead {
    std::uint64_t from, len;
  };

  /// With `on`, each allocation reaches a step further ahead, and a step
  /// filled within kFastStep of the one before leaves its room ahead for
  /// TakeAhead (a log appending slowly gets no prefault: its populated,
  /// dirty zeros could reach the disk before its records).
  void SetPrefault(bool on) noexcept { prefault_ = on; }

  /// The room allocated ahead since the last call, if any, to populate.
  std::optional<Ahead> TakeAhead() noexcept { return std::exchange(ahead_, std::nullopt); }

  /// Populates `a` in the mapping (any thread; a hint).
  void Populate(const Ahead& a) const noexcept {
    if (writable_map_) region_->Populate(a.from, a.len);
  }

  /// Reads up to out.size() bytes at `pos`; returns how many.
  std::size_t ReadAt(std::span<std::byte> out, std::uint64_t pos) const { return file_.ReadAt(out, pos); }

  /// Maps the first `bytes` of the file (address space only: the file may
  /// be shorter, and grows into it), writable if the store was opened so
  /// and `grow` (the most the file is allocated ahead of its records) is
  /// not zero. Not while readers use View.
  void Map(std::uint64_t bytes, std::uint64_t grow = 0) {
    region_.reset();
    mapped_bytes_ = 0;
    released_ = 0;
    writable_map_ = false;
    if (bytes == 0) return;
    const bool rw = writable_ && grow > 0;
    region_ = detail::MapFile(file_, rw ? detail::Access::kReadWrite : detail::Access::kReadOnly, bytes);
    mapped_bytes_ = bytes;
    writable_map_ = rw;
    grow_ = grow;
  }

  /// Bytes View can reach.
  std::uint64_t MappedBytes() const noexcept { return mapped_bytes_; }

  /// The `len` bytes at `pos`, in the mapping. The caller knows they were
  /// written (below what the index published) and are below MappedBytes().
  std::span<const std::byte> View(std::uint64_t pos, std::uint64_t len) const noexcept {
    return {static_cast<const std::byte*>(region_->Address()) + pos, static_cast<std::size_t>(len)};
  }

  /// Takes the whole pages of [pos, pos + len) of the mapping out of the
  /// resident set (Mapping::Release): for a reader done with them.
  void Release(std::uint64_t pos, std::uint64_t len) const noexcept {
    if (region_) region_->Release(pos, len);
  }

  /// Cuts the file to its records (what Append allocated ahead goes) and
  /// fsyncs it, size included: what sealing a segment and a clean close do.
  void Trim() {
    if (allocated_ > size_) {
      file_.Resize(size_);
      allocated_ = size_;
    }
    file_.FullSync();
    if (writable_map_ && size_ > released_) {  // no more writes: none of it need stay resident
      region_->Release(released_, size_ - released_);
      released_ = size_;
    }
  }

  /// Cuts the file to `size` bytes (recovery of a torn tail).
  void Truncate(std::uint64_t size) {
    file_.Resize(size);
    size_ = size;
    allocated_ = size;
  }

  /// fdatasync: every frame appended so far is on stable storage.
  void Sync() const { file_.DataSync(); }

 private:
  Store(detail::File f, std::uint64_t base, detail::Access access)
      : file_(std::move(f)), base_(base), writable_(access == detail::Access::kReadWrite) {}

  // Allocates the file through `end`, and up to grow_ bytes beyond it (never
  // past the mapping), so that most appends need no system call. Where the
  // room ahead is not there (a nearly full disk, a file size limit), just
  // through `end`: the last bytes of a disk still take records.
  // Not populated in the mapping ahead (MADV_POPULATE_WRITE): that makes
  // every page of the step dirty, so the next sync would write the step's
  // zeros to disk before the records (measured: the first sync::Always
  // append of each step took 10-20 ms).
  void Allocate(std::uint64_t end) {
    const std::uint64_t ahead = prefault_ ? 2 * grow_ : grow_;
    const std::uint64_t before = allocated_;
    allocated_ = file_.AllocateAhead(allocated_, end, std::min(mapped_bytes_, std::max(end, allocated_ + ahead)));
    if (!prefault_) return;
    const auto now = std::chrono::steady_clock::now();
    const bool fast = now - last_step_ < kFastStep;
    last_step_ = now;
    const std::uint64_t from = std::max(before, end);
    if (fast && allocated_ > from) ahead_ = Ahead{from, allocated_ - from};
  }

  static constexpr std::chrono::seconds kFastStep{5};

  detail::File file_;
  std::uint64_t base_ = 0;
  bool writable_ = false;
  std::uint64_t size_ = 0;       // bytes of records (and header)
  std::uint64_t allocated_ = 0;  // bytes of the file
  std::unique_ptr<detail::Mapping> region_;
  std::uint64_t mapped_bytes_ = 0;
  bool writable_map_ = false;
  std::uint64_t grow_ = 0;
  std::uint64_t released_ = 0;  // bytes below it were taken out of the resident set
  bool prefault_ = false;
  std::optional<Ahead> ahead_;
  std::chrono::steady_clock::time_point last_step_{};
};

namespace detail {

/// Walks the frames of a store, from a position up to an end, checking each
/// (offset, length, CRC). Reads in chunks and checksums payloads as they
/// stream by, so a length field of garbage costs no more memory than a
/// chunk, and a long run of small frames costs one read per chunk.
class FrameCursor {
 public:
  /// The first read-ahead: later ones double, up to 1 MiB. After a crash
  /// the store is often allocated far past its last record (zeros): the
  /// scan then reads little more than the tail.
  static constexpr std::uint64_t kFirstChunk = 64 << 10;

  FrameCursor(const Store& store, std::uint64_t pos, std::uint64_t end) : store_(store), pos_(pos), end_(end) {}

  std::uint64_t Position() const noexcept { return pos_; }
  void Seek(std::uint64_t pos) noexcept { pos_ = pos; }

  /// A run of this many zeros ends what NonZeroEnd counts.
  static constexpr std::uint64_t kZeroRun = 4096;

  /// One past the last byte that is not zero from Position() on, up to the
  /// first run of kZeroRun zeros or the end (Position() if there is none):
  /// where what a torn write or garbage left ends, short of the zeros a
  /// store is allocated ahead with. Reads on in the cursor's chunks, from
  /// what it holds: the work is those bytes and one run, not the zeros.
  /// (Bytes past a page of zeros, which a power loss can leave, are not
  /// counted.)
  std::uint64_t NonZeroEnd() {
    std::uint64_t last = pos_, at = pos_;
    while (at < end_) {
      if (at < buf_pos_ || at >= buf_pos_ + buf_len_) {
        Fill(at);
        if (buf_len_ == 0) break;
      }
      const std::byte* p = buf_.data() + (at - buf_pos_);
      const std::uint64_t n = buf_pos_ + buf_len_ - at;
      for (std::uint64_t i = 0; i < n; ++i) {
        if (p[i] != std::byte{0})
          last = at + i + 1;
        else if (at + i + 1 - last >= kZeroRun)
          return last;
      }
      at += n;
    }
    return last;
  }

  /// Checks the frame at Position(), which should hold record `offset`.
  /// If it holds: fills `h`, moves past it and returns nullptr. Otherwise
  /// returns why, and stays.
  const char* Next(std::uint64_t offset, FrameHeader& h) {
    if (pos_ + kFrameHeaderBytes > end_ || pos_ < kStoreHeaderBytes) return "frame header is cut short";
    if (pos_ + kFrameHeaderBytes > buf_pos_ + buf_len_) Fill(pos_);
    if (pos_ + kFrameHeaderBytes > buf_pos_ + buf_len_) return "frame header is cut short";
    std::array<std::byte, kFrameHeaderBytes> header;
    std::memcpy(header.data(), buf_.data() + (pos_ - buf_pos_), header.size());
    h = ReadFrameHeader(header.data());
    if (h.offset != offset) return "frame holds the wrong offset";
    if (h.length > end_ - pos_ - kFrameHeaderBytes) return "frame runs past the end of the store";
    std::uint32_t crc = 0;
    std::uint64_t at = pos_ + kFrameHeaderBytes, left = h.length;
    while (left > 0) {
      if (at >= buf_pos_ + buf_len_) {
        Fill(at);
        if (buf_len_ == 0) return "frame runs past the end of the store";
      }
      const std::uint64_t take = std::min(left, buf_pos_ + buf_len_ - at);
      crc = Crc32c(crc, buf_.data() + (at - buf_pos_), static_cast<std::size_t>(take));
      at += take;
      left -= take;
    }
    if (FrameCrc(header.data(), crc) != h.crc) return "checksum mismatch";
    pos_ = at;
    return nullptr;
  }

 private:
  static constexpr std::uint64_t kMaxChunk = 1 << 20;

  void Fill(std::uint64_t at) {
    buf_.resize(static_cast<std::size_t>(std::min(chunk_, end_ > at ? end_ - at : 0)));
    chunk_ = std::min(2 * chunk_, kMaxChunk);
    buf_pos_ = at;
    buf_len_ = store_.ReadAt(buf_, at);
  }

  const Store& store_;
  std::uint64_t pos_, end_;
  std::vector<std::byte> buf_;
  std::uint64_t buf_pos_ = 0, buf_len_ = 0;  // buf_ holds the store's bytes [buf_pos_, buf_pos_ + buf_len_)
  std::uint64_t chunk_ = kFirstChunk;       // the next read-ahead
};

}  // namespace detail
}  // namespace logsync
