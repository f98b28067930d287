#pragma once
/// Store: the append-only file of framed records, `<base offset>.store`.
///
/// The store is the source of truth: every frame names its own offset and
/// carries a checksum, so the index and all in-memory state can be rebuilt
/// from the store alone. All integers are little-endian.
///
///     store file
///     +--------+------+--------------------------------------------------+
///     | offset | size | field                                            |
///     +--------+------+--------------------------------------------------+
///     | 0      | 6    | magic "LGSYNC"                                   |
///     | 6      | 1    | format version (1)                               |
///     | 7      | 1    | flags (0; readers reject unknown bits)           |
///     | 8      | 8    | base offset (u64), equal to the file name's      |
///     | 16     | ...  | frames, back to back                             |
///     +--------+------+--------------------------------------------------+
///
///     frame
///     +--------+------+--------------------------------------------------+
///     | 0      | 4    | payload length N (u32)                           |
///     | 4      | 4    | CRC32C of the payload, then of bytes 0-3 and     |
///     |        |      | 8-15 of this header (length and offset)          |
///     | 8      | 8    | absolute offset of the record (u64)              |
///     | 16     | N    | payload: the codec's bytes, verbatim             |
///     +--------+------+--------------------------------------------------+
///
/// A frame holds iff its offset is the one expected at its place, its
/// length fits in the file, and the CRC matches; a zero-filled or torn
/// header never holds (the CRC of a zero header is not zero).

#include <logsync/config.hpp>
#include <logsync/detail/crc32c.hpp>
#include <logsync/detail/endian.hpp>
#include <logsync/detail/file.hpp>
#include <logsync/detail/mapping.hpp>
#include <logsync/error.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

namespace logsync {

inline constexpr std::string_view kStoreMagic = "LGSYNC";
inline constexpr std::uint8_t kFormatVersion = 1;

namespace detail {

/// The CRC of a frame from the CRC of its payload and its header bytes
/// (length and offset in place). The payload's part can be computed before
/// the record's offset is known.
inline std::uint32_t FrameCrc(const std::byte* header, std::uint32_t payload_crc) noexcept {
  return Crc32c(Crc32c(payload_crc, header, 4), header + 8, 8);
}

inline std::uint32_t FrameCrc(const std::byte* header, std::span<const std::byte> payload) noexcept {
  return FrameCrc(header, Crc32c(0, payload.data(), payload.size()));
}

/// Fills the 16-byte header of a frame of `length` payload bytes whose
/// payload CRC32C is `payload_crc`.
inline void WriteFrameHeader(std::byte* header, std::uint64_t offset, std::uint32_t length,
                             std::uint32_t payload_crc) noexcept {
  StoreLE<std::uint32_t>(header, length);
  StoreLE<std::uint64_t>(header + 8, offset);
  StoreLE<std::uint32_t>(header + 4, FrameCrc(header, payload_crc));
}

/// A whole frame (header and payload) of `payload` at `offset`.
inline std::vector<std::byte> EncodeFrame(std::uint64_t offset, std::span<const std::byte> payload) {
  std::vector<std::byte> f(kFrameHeaderBytes + payload.size());
  if (!payload.empty()) std::memcpy(f.data() + kFrameHeaderBytes, payload.data(), payload.size());
  WriteFrameHeader(f.data(), offset, static_cast<std::uint32_t>(payload.size()),
                   Crc32c(0, payload.data(), payload.size()));
  return f;
}

struct FrameHeader {
  std::uint32_t length;
  std::uint32_t crc;
  std::uint64_t offset;
};

inline FrameHeader ReadFrameHeader(const std::byte* h) noexcept {
  return {LoadLE<std::uint32_t>(h), LoadLE<std::uint32_t>(h + 4), LoadLE<std::uint64_t>(h + 8)};
}

/// Why the frame at the start of `frame` (header + payload, exactly) does
/// not hold, or nullptr if it does.
inline const char* CheckFrame(std::span<const std::byte> frame, std::uint64_t expected_offset) noexcept {
  if (frame.size() < kFrameHeaderBytes) return "frame header is cut short";
  FrameHeader h = ReadFrameHeader(frame.data());
  if (h.offset != expected_offset) return "frame holds the wrong offset";
  if (h.length != frame.size() - kFrameHeaderBytes) return "frame length does not match";
  if (h.crc != FrameCrc(frame.data(), frame.subspan(kFrameHeaderBytes))) return "checksum mismatch";
  return nullptr;
}

}  // namespace detail

/// The `.store` file of one segment. One writer at a time (the Log's append
/// lock); reads of positions the caller learned from the index may run
/// concurrently with appends. Records are written into and read from a
/// shared memory map of the file (no system call per record; see Append and
/// Map); recovery reads with pread.
class Store {
 public:
  /// The header a store of base offset `base` starts with.
  static std::array<std::byte, kStoreHeaderBytes> Header(std::uint64_t base) noexcept {
    std::array<std::byte, kStoreHeaderBytes> h{};
    std::memcpy(h.data(), kStoreMagic.data(), kStoreMagic.size());
    h[6] = std::byte{kFormatVersion};
    detail::StoreLE<std::uint64_t>(h.data() + 8, base);
    return h;
  }

  /// Creates a new, empty store (fails if the file exists).
  static Store Create(const std::filesystem::path& path, std::uint64_t base) {
    Store s(detail::File(path, O_RDWR | O_CREAT | O_EXCL), base, true);
    const auto h = Header(base);
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
  static Store Open(const std::filesystem::path& path, std::uint64_t base, bool writable) {
    Store s(detail::File(path, writable ? O_RDWR : O_RDONLY), base, writable);
    s.size_ = s.allocated_ = s.file_.Size();
    std::array<std::byte, kStoreHeaderBytes> h{};
    if (s.file_.ReadAt(h, 0) != h.size()) throw CorruptionError(path, 0, "store header is cut short");
    if (std::memcmp(h.data(), kStoreMagic.data(), kStoreMagic.size()) != 0)
      throw CorruptionError(path, 0, "not a logsync store (bad magic)");
    if (h[6] != std::byte{kFormatVersion})
      throw CorruptionError(path, 6, "unsupported format version " + std::to_string(static_cast<int>(h[6])));
    if (h[7] != std::byte{0}) throw CorruptionError(path, 7, "unknown flags");
    if (std::uint64_t b = detail::LoadLE<std::uint64_t>(h.data() + 8); b != base)
      throw CorruptionError(path, 8, "header names base offset " + std::to_string(b) + ", file name " +
                                         std::to_string(base));
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

  /// Reads up to out.size() bytes at `pos`; returns how many.
  std::size_t ReadAt(std::span<std::byte> out, std::uint64_t pos) const { return file_.ReadAt(out, pos); }

  /// Maps the first `bytes` of the file (address space only: the file may
  /// be shorter, and grows into it), writable if the store was opened so
  /// and `grow` (the most the file is allocated ahead of its records) is
  /// not zero. Not while readers use View.
  void Map(std::uint64_t bytes, std::uint64_t grow = 0) {
    region_.reset();
    mapped_bytes_ = 0;
    writable_map_ = false;
    if (bytes == 0) return;
    const bool rw = writable_ && grow > 0;
    region_ = detail::MapFile(file_, rw, bytes);
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

  /// Cuts the file to its records (what Append allocated ahead goes) and
  /// fsyncs it, size included: what sealing a segment and a clean close do.
  void Trim() {
    if (allocated_ > size_) {
      file_.Resize(size_);
      allocated_ = size_;
    }
    file_.FullSync();
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
  Store(detail::File f, std::uint64_t base, bool writable) : file_(std::move(f)), base_(base), writable_(writable) {}

  // Allocates the file through `end`, and up to grow_ bytes beyond it (never
  // past the mapping), so that most appends need no system call. Where the
  // room ahead is not there (a nearly full disk, a file size limit), just
  // through `end`: the last bytes of a disk still take records.
  void Allocate(std::uint64_t end) {
    const std::uint64_t target = std::min(mapped_bytes_, std::max(end, allocated_ + grow_));
    try {
      file_.Allocate(allocated_, target - allocated_);
    } catch (const IoError&) {
      if (target == end) throw;
      file_.Allocate(allocated_, end - allocated_);
      allocated_ = end;
      return;
    }
    allocated_ = target;
  }

  detail::File file_;
  std::uint64_t base_ = 0;
  bool writable_ = false;
  std::uint64_t size_ = 0;       // bytes of records (and header)
  std::uint64_t allocated_ = 0;  // bytes of the file
  std::unique_ptr<detail::Mapping> region_;
  std::uint64_t mapped_bytes_ = 0;
  bool writable_map_ = false;
  std::uint64_t grow_ = 0;
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
