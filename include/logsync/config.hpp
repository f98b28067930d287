#pragma once
/// Runtime configuration of a Log. Zero means "the default" everywhere.

#include <logsync/format.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

namespace logsync {

struct Config {
  struct Segment {
    /// Largest size of one .store file, header included. Default 1 GiB.
    std::uint64_t max_store_bytes = 0;
    /// Bytes of index entries per segment (kIndexEntryBytes per record; the
    /// file adds a kIndexHeaderBytes header); bounds the records per
    /// segment. Default: enough that the index never fills before the store
    /// for records of kDefaultIndexRecordBytes (64) bytes or more, and at
    /// least 16 MiB (DefaultMaxIndexBytes; 214,748,368 bytes, 13,421,773
    /// records, for 1 GiB stores). The file is allocated as entries
    /// arrive, a step ahead, not all at once.
    std::uint64_t max_index_bytes = 0;
    /// Offset of the first record of a new, empty log. Ignored when the
    /// directory already holds segments. Default 0.
    std::uint64_t initial_offset = 0;
  } segment{};

  /// Largest encoded record. Default: 64 MiB, or less if a segment is smaller.
  std::uint64_t max_record_bytes = 0;

  struct Sync {
    /// sync::EveryN: records between syncs. Default 1000.
    std::uint64_t every_n = 0;
    /// sync::Interval: longest time appended records stay unsynced. Default
    /// 100 ms; at most kMaxInterval (24 h).
    std::chrono::milliseconds interval{0};
  } sync{};
};

inline constexpr std::uint64_t kDefaultMaxStoreBytes = 1ULL << 30;
/// The smallest encoded record for which the default index holds as many
/// records as the store (see Config::segment.max_index_bytes).
inline constexpr std::uint64_t kDefaultIndexRecordBytes = 64;
/// The default Config::segment.max_index_bytes for stores of `max_store_bytes`.
constexpr std::uint64_t DefaultMaxIndexBytes(std::uint64_t max_store_bytes) noexcept {
  const std::uint64_t room = max_store_bytes > kStoreHeaderBytes ? max_store_bytes - kStoreHeaderBytes : 0;
  const std::uint64_t frame = kFrameHeaderBytes + kDefaultIndexRecordBytes;
  // At least 16 MiB (1,048,576 records): small stores of small records
  // keep rolling by their bytes. The file costs only its entries.
  return std::clamp<std::uint64_t>((room + frame - 1) / frame, 1ULL << 20, 1ULL << 32) * kIndexEntryBytes;
}
inline constexpr std::uint64_t kDefaultMaxRecordBytes = 64ULL << 20;
inline constexpr std::uint64_t kDefaultEveryN = 1000;
inline constexpr std::chrono::milliseconds kDefaultInterval{100};
inline constexpr std::chrono::milliseconds kMaxInterval = std::chrono::hours(24);

namespace detail {

[[noreturn]] inline void InvalidConfig(const char* field, const std::string& why) {
  throw std::invalid_argument(std::string("logsync: invalid Config.") + field + ": " + why);
}

/// The config with every zero replaced by its default; throws
/// std::invalid_argument naming the first field that cannot work.
inline Config Resolve(Config c) {
  auto& s = c.segment;
  if (s.max_store_bytes == 0) s.max_store_bytes = kDefaultMaxStoreBytes;
  if (s.max_index_bytes == 0) s.max_index_bytes = DefaultMaxIndexBytes(s.max_store_bytes);
  const std::uint64_t min_store = kStoreHeaderBytes + kFrameHeaderBytes + 1;
  if (s.max_store_bytes < min_store)
    InvalidConfig("segment.max_store_bytes", std::to_string(s.max_store_bytes) + " is below the minimum of " +
                                                 std::to_string(min_store) + " (headers and one byte)");
  if (s.max_store_bytes > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
    InvalidConfig("segment.max_store_bytes", "larger than a file offset can hold");
  if (s.max_index_bytes < kIndexEntryBytes)
    InvalidConfig("segment.max_index_bytes", std::to_string(s.max_index_bytes) +
                                                 " is smaller than one index entry (" +
                                                 std::to_string(kIndexEntryBytes) + " bytes)");
  // Relative offsets are 32-bit: at most 2^32 entries per segment.
  if (s.max_index_bytes / kIndexEntryBytes > (1ULL << 32))
    InvalidConfig("segment.max_index_bytes", "more than 2^32 entries per segment");
  if (s.initial_offset == std::numeric_limits<std::uint64_t>::max())
    InvalidConfig("segment.initial_offset", "leaves no room for a record");
  const std::uint64_t room = s.max_store_bytes - kStoreHeaderBytes - kFrameHeaderBytes;
  const std::uint64_t frame_limit = std::numeric_limits<std::uint32_t>::max();
  if (c.max_record_bytes == 0) {
    c.max_record_bytes = std::min({kDefaultMaxRecordBytes, room, frame_limit});
  } else if (c.max_record_bytes > frame_limit) {
    InvalidConfig("max_record_bytes", std::to_string(c.max_record_bytes) +
                                          " exceeds the frame format's limit of " + std::to_string(frame_limit));
  } else if (c.max_record_bytes > room) {
    InvalidConfig("max_record_bytes", std::to_string(c.max_record_bytes) +
                                          " does not fit one segment (max_store_bytes leaves " +
                                          std::to_string(room) + ")");
  }
  if (c.sync.every_n == 0) c.sync.every_n = kDefaultEveryN;
  if (c.sync.interval.count() < 0) InvalidConfig("sync.interval", "is negative");
  if (c.sync.interval > kMaxInterval)
    InvalidConfig("sync.interval", std::to_string(c.sync.interval.count()) + " ms is longer than the limit of " +
                                       std::to_string(kMaxInterval.count()) + " ms (24 h)");
  if (c.sync.interval.count() == 0) c.sync.interval = kDefaultInterval;
  return c;
}

}  // namespace detail
}  // namespace logsync
