#pragma once
/// The on-disk format, version 1: every byte logsync writes is laid out
/// here, and only here. Store, Index, Segment, SegmentSet and RestoreLog
/// write, parse and check files through these functions; a format change
/// touches this header alone. All integers are little-endian.
///
/// Directory: a log is a directory holding, per segment, `<base>.store` and
/// `<base>.index`, where `<base>` is the segment's first offset zero-padded
/// to 20 digits (names sort as offsets do), plus `LOCK` (see
/// detail/directory_lock.hpp). Any other name (`notes.txt`, `12a.store`,
/// `5.store`, `1.store.bak`, directories) is ignored and never deleted; an
/// entry with a segment file's name that is not a regular file makes open
/// refuse the directory. An index whose store is gone is what an
/// interrupted removal leaves, and is deleted on open.
///
///     store file
///     +--------+------+--------------------------------------------------+
///     | offset | size | field                                            |
///     +--------+------+--------------------------------------------------+
///     | 0      | 6    | magic "LGSYNC"                                   |
///     | 6      | 1    | format version (1)                               |
///     | 7      | 1    | flags (0; a store with any bit set is refused)   |
///     | 8      | 8    | base offset (u64), equal to the file name's      |
///     | 16     | ...  | frames, back to back                             |
///     +--------+------+--------------------------------------------------+
///
///     frame
///     +--------+------+--------------------------------------------------+
///     | 0      | 4    | payload length N (u32)                           |
///     | 4      | 4    | CRC32C (Castagnoli) of the payload, continued    |
///     |        |      | over bytes 0-3 and 8-15 of this header           |
///     | 8      | 8    | absolute offset of the record (u64)              |
///     | 16     | N    | payload: the codec's bytes, verbatim             |
///     +--------+------+--------------------------------------------------+
///
///     index file: header, then entries (entry i is the record at base + i)
///     +--------+------+--------------------------------------------------+
///     | 0      | 6    | magic "LGSIDX"                                   |
///     | 6      | 1    | format version (1)                               |
///     | 7      | 1    | flags (0; an index with any bit set is foreign:  |
///     |        |      | not trusted, and rebuilt from its store)         |
///     | 8      | 8    | base offset (u64), equal to the file name's      |
///     | 16     | 8    | checkpoint: store bytes P known durable (u64)    |
///     | 24     | 8    | checkpoint: records N in those bytes (u64)       |
///     | 32     | 4    | CRC32C of bytes 8-31                             |
///     | 36     | 12   | zero                                             |
///     | 48     | ...  | entries, kIndexEntryBytes each                   |
///     +--------+------+--------------------------------------------------+
///
///     index entry
///     +--------+------+--------------------------------------------------+
///     | 0      | 4    | relative offset i = offset - base (u32)          |
///     | 4      | 4    | payload length of the frame (u32)                |
///     | 8      | 8    | position of the frame in the store (u64)         |
///     +--------+------+--------------------------------------------------+
///
/// The store is the source of truth: every frame names its own offset and
/// carries a checksum, so the index and all in-memory state can be rebuilt
/// from the store alone. A frame holds iff its offset is the one expected at
/// its place, its length fits in the file, and the CRC matches; a
/// zero-filled or torn header never holds (the CRC of a zero header is not
/// zero).
///
/// The index is derived data: an index whose header is missing, damaged,
/// foreign (flags, version, another segment's base) is rebuilt from its
/// store. A zero-filled entry never passes for a real one: entry 0 sits at
/// position 16 (after the store header) and entry i > 0 has i != 0. The
/// checkpoint says "the store's first P bytes, the segment's first N
/// records, had been fdatasync'd when this was written". It is written after
/// every store sync and never synced by itself: a stale checkpoint is an
/// older claim that is still true (stores only grow), and a torn one fails
/// its CRC and counts as none. Recovery after a crash verifies frames only
/// past the checkpoint.
///
/// Snapshots (snapshot.hpp) travel as the stores' bytes back to back, each
/// store from its header to the end of its last record.

#include <logsync/detail/crc32c.hpp>
#include <logsync/detail/endian.hpp>

#include <array>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace logsync {

/// Sizes of the on-disk structures.
inline constexpr std::uint64_t kStoreHeaderBytes = 16;
inline constexpr std::uint64_t kFrameHeaderBytes = 16;
inline constexpr std::uint64_t kIndexEntryBytes = 16;
inline constexpr std::uint64_t kIndexHeaderBytes = 48;

inline constexpr std::string_view kStoreMagic = "LGSYNC";
inline constexpr std::uint8_t kFormatVersion = 1;
inline constexpr std::string_view kIndexMagic = "LGSIDX";
inline constexpr std::uint8_t kIndexFormatVersion = 1;

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

namespace detail {

// ---- file names -----------------------------------------------------------

inline constexpr std::string_view kStoreExtension = ".store";
inline constexpr std::string_view kIndexExtension = ".index";
inline constexpr std::string_view kLockFileName = "LOCK";

/// `<base>` zero-padded to 20 digits, so names sort as offsets do.
inline std::string SegmentStem(std::uint64_t base) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%020llu", static_cast<unsigned long long>(base));
  return buf;
}

/// The base offset of a segment file name (20 digits, then `ext`), if it is
/// one. Only the names SegmentStem makes count: `5.store` is not ours.
inline std::optional<std::uint64_t> ParseSegmentName(const std::string& name, std::string_view ext) {
  if (name.size() <= ext.size() || name.compare(name.size() - ext.size(), ext.size(), ext) != 0) return {};
  std::string_view stem(name.data(), name.size() - ext.size());
  if (stem.size() != 20) return {};
  for (char ch : stem)
    if (ch < '0' || ch > '9') return {};
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(stem.data(), stem.data() + stem.size(), v);
  if (ec != std::errc{} || p != stem.data() + stem.size()) return {};
  return v;
}

// ---- store header ---------------------------------------------------------

using StoreHeaderBytes = std::array<std::byte, kStoreHeaderBytes>;

/// The header a store of base offset `base` starts with.
inline StoreHeaderBytes StoreHeader(std::uint64_t base) noexcept {
  StoreHeaderBytes h{};
  std::memcpy(h.data(), kStoreMagic.data(), kStoreMagic.size());
  h[6] = std::byte{kFormatVersion};
  StoreLE<std::uint64_t>(h.data() + 8, base);
  return h;
}

/// Whether `h` (16 bytes) is a store header of this format, of any base.
inline bool IsStoreHeader(std::span<const std::byte, kStoreHeaderBytes> h) noexcept {
  return std::memcmp(h.data(), kStoreMagic.data(), kStoreMagic.size()) == 0 && h[6] == std::byte{kFormatVersion} &&
         h[7] == std::byte{0};
}

/// The base offset a store header names.
inline std::uint64_t StoreHeaderBase(std::span<const std::byte, kStoreHeaderBytes> h) noexcept {
  return LoadLE<std::uint64_t>(h.data() + 8);
}

/// What is wrong with a store header: the byte it starts at, and why.
struct HeaderFault {
  std::uint64_t at;
  std::string why;
};

/// Checks the header of a store whose file name says `base`.
inline std::optional<HeaderFault> CheckStoreHeader(std::span<const std::byte, kStoreHeaderBytes> h,
                                                   std::uint64_t base) {
  if (std::memcmp(h.data(), kStoreMagic.data(), kStoreMagic.size()) != 0)
    return HeaderFault{0, "not a logsync store (bad magic)"};
  if (h[6] != std::byte{kFormatVersion})
    return HeaderFault{6, "unsupported format version " + std::to_string(static_cast<int>(h[6]))};
  if (h[7] != std::byte{0}) return HeaderFault{7, "unknown flags"};
  if (const std::uint64_t b = StoreHeaderBase(h); b != base)
    return HeaderFault{8, "header names base offset " + std::to_string(b) + ", file name " + std::to_string(base)};
  return std::nullopt;
}

// ---- frames ---------------------------------------------------------------

struct FrameHeader {
  std::uint32_t length;
  std::uint32_t crc;
  std::uint64_t offset;
};

/// The CRC of a frame from the CRC of its payload and its header bytes
/// (length and offset in place). The payload's part can be computed before
/// the record's offset is known.
inline std::uint32_t FrameCrc(const std::byte* header, std::uint32_t payload_crc) noexcept {
  return Crc32c(Crc32c(payload_crc, header, 4), header + 8, 8);
}

/// The CRC32C of a payload: the part of its frame's CRC that needs no
/// offset (see FrameCrc).
inline std::uint32_t PayloadCrc(std::span<const std::byte> payload) noexcept {
  return Crc32c(0, payload.data(), payload.size());
}

inline std::uint32_t FrameCrc(const std::byte* header, std::span<const std::byte> payload) noexcept {
  return FrameCrc(header, PayloadCrc(payload));
}

/// Fills the 16-byte header of a frame of `length` payload bytes whose
/// payload CRC32C is `payload_crc`.
inline void WriteFrameHeader(std::byte* header, std::uint64_t offset, std::uint32_t length,
                             std::uint32_t payload_crc) noexcept {
  StoreLE<std::uint32_t>(header, length);
  StoreLE<std::uint64_t>(header + 8, offset);
  StoreLE<std::uint32_t>(header + 4, FrameCrc(header, payload_crc));
}

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

// ---- index header and entries ---------------------------------------------

/// Where entry i sits in an index file.
constexpr std::uint64_t IndexEntryPosition(std::uint64_t i) noexcept { return kIndexHeaderBytes + i * kIndexEntryBytes; }

/// Writes a fresh index header for base `base` (no checkpoint yet: write
/// one with WriteIndexCheckpoint) into the kIndexHeaderBytes at `h`.
inline void WriteIndexHeader(std::byte* h, std::uint64_t base) noexcept {
  std::memset(h, 0, kIndexHeaderBytes);
  std::memcpy(h, kIndexMagic.data(), kIndexMagic.size());
  h[6] = std::byte{kIndexFormatVersion};
  StoreLE<std::uint64_t>(h + 8, base);
}

/// Whether the kIndexHeaderBytes at `h` are an index header of this format
/// for base `base` (the checkpoint is not looked at).
inline bool IndexHeaderMatches(const std::byte* h, std::uint64_t base) noexcept {
  return std::memcmp(h, kIndexMagic.data(), kIndexMagic.size()) == 0 &&
         static_cast<std::uint8_t>(h[6]) == kIndexFormatVersion && h[7] == std::byte{0} &&
         LoadLE<std::uint64_t>(h + 8) == base;
}

/// The checkpoint of a matching index header, if its CRC holds and it can
/// be a store's (at least a store header).
inline std::optional<IndexCheckpoint> ReadIndexCheckpoint(const std::byte* h) noexcept {
  if (Crc32c(0, h + 8, 24) != LoadLE<std::uint32_t>(h + 32)) return std::nullopt;
  const IndexCheckpoint c{LoadLE<std::uint64_t>(h + 16), LoadLE<std::uint64_t>(h + 24)};
  if (c.store_bytes < kStoreHeaderBytes) return std::nullopt;
  return c;
}

/// Writes checkpoint `c` and its CRC into the index header at `h` (bytes
/// 16-39, in one copy), the base at bytes 8-15 already in place.
inline void WriteIndexCheckpoint(std::byte* h, const IndexCheckpoint& c) noexcept {
  std::array<std::byte, 24> b{};
  StoreLE<std::uint64_t>(b.data(), c.store_bytes);
  StoreLE<std::uint64_t>(b.data() + 8, c.records);
  StoreLE<std::uint32_t>(b.data() + 16, Crc32c(Crc32c(0, h + 8, 8), b.data(), 16));
  std::memcpy(h + 16, b.data(), b.size());
}

inline IndexEntry ReadIndexEntry(const std::byte* p) noexcept {
  return {LoadLE<std::uint32_t>(p), LoadLE<std::uint32_t>(p + 4), LoadLE<std::uint64_t>(p + 8)};
}

inline void WriteIndexEntry(std::byte* p, const IndexEntry& e) noexcept {
  StoreLE<std::uint32_t>(p, e.relative);
  StoreLE<std::uint32_t>(p + 4, e.length);
  StoreLE<std::uint64_t>(p + 8, e.position);
}

}  // namespace detail
}  // namespace logsync
