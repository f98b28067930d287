#pragma once
/// The wire form of a replicated log's raft entries (the buffers handed to
/// raft_apply), which every node's state machine (state_machine.hpp)
/// applies.
///
///     record entry
///     +--------+------+--------------------------------------------------+
///     | 0      | 4    | record count K (u32)                             |
///     | 4      | ...  | K times: payload length N (u32), N payload bytes |
///     | ...    | 0-7  | zero padding to a multiple of 8 bytes            |
///     +--------+------+--------------------------------------------------+
///
///     producer entry (an idempotent append: records and who sent them)
///     +--------+------+--------------------------------------------------+
///     | 0      | 4    | 0xFFFFFFFE (no record entry has that many)       |
///     | 4      | 4    | record count K (u32), at least 1                 |
///     | 8      | 8    | producer id (u64, not 0)                         |
///     | 16     | 8    | sequence (u64)                                   |
///     | 24     | 8    | entry time: ms since the Unix epoch on the clock |
///     |        |      | of the leader that took the append (u64)         |
///     | 32     | ...  | K times: payload length N (u32), N payload bytes |
///     | ...    | 0-7  | zero padding to a multiple of 8 bytes            |
///     +--------+------+--------------------------------------------------+
///
///     announce entry (a node's client address; no record)
///     +--------+------+--------------------------------------------------+
///     | 0      | 4    | 0xFFFFFFFF (no record entry has that many)       |
///     | 4      | 4    | address length N (u32)                           |
///     | 8      | 8    | node id (u64)                                    |
///     | 16     | N    | the address clients reach the node at            |
///     | ...    | 0-7  | zero padding to a multiple of 8 bytes            |
///     +--------+------+--------------------------------------------------+
///
/// The padding is required by this engine version: an entry whose length
/// is not a multiple of 8 reaches followers shifted when several entries
/// travel in one message. The records of a producer entry are stored in
/// the local log exactly as those of a record entry: only the state
/// machine's producer table (producers.hpp) sees the stamp.

extern "C" {
#include <raft.h>
}

#include <logsync/detail/endian.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace logsync::detail {

inline constexpr std::size_t kEntryAlign = 8;
inline constexpr std::uint32_t kAnnounceMarker = 0xFFFFFFFFU;
inline constexpr std::uint32_t kProducerMarker = 0xFFFFFFFEU;
inline constexpr std::size_t kProducerHeaderBytes = 32;

/// Who sent an idempotent append, its number, and when the leader took it.
struct ProducerStamp {
  std::uint64_t producer = 0;  ///< not 0
  std::uint64_t sequence = 0;
  std::uint64_t time_ms = 0;   ///< the leader's clock, ms since the Unix epoch
};

/// The entry time of an entry this node submits now: ms since the Unix
/// epoch on the system clock (0 before it).
inline std::uint64_t EntryTimeNow() noexcept {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch()).count();
  return ms > 0 ? static_cast<std::uint64_t>(ms) : 0;
}

inline std::size_t PaddedEntry(std::size_t len) noexcept { return (len + kEntryAlign - 1) / kEntryAlign * kEntryAlign; }

/// Zeroed memory of `len` bytes from raft_malloc, as raft_apply requires.
inline std::byte* EntryBuffer(std::size_t len) {
  auto* base = static_cast<std::byte*>(raft_malloc(len));
  if (base == nullptr) throw std::bad_alloc();
  std::memset(base, 0, len);
  return base;
}

/// Encodes records as one raft entry (see the file comment): a record
/// entry, or a producer entry when `stamp` is given. `size(i)` and
/// `encode(i, out)` give record i's codec bytes.
template <class Size, class Encode>
raft_buffer EncodeEntry(std::size_t count, Size size, Encode encode, const ProducerStamp* stamp = nullptr) {
  const std::size_t header = stamp ? kProducerHeaderBytes : 4;
  std::size_t len = header;
  for (std::size_t i = 0; i < count; ++i) len += 4 + size(i);
  len = PaddedEntry(len);
  std::byte* base = EntryBuffer(len);
  if (stamp) {
    StoreLE<std::uint32_t>(base, kProducerMarker);
    StoreLE<std::uint32_t>(base + 4, static_cast<std::uint32_t>(count));
    StoreLE<std::uint64_t>(base + 8, stamp->producer);
    StoreLE<std::uint64_t>(base + 16, stamp->sequence);
    StoreLE<std::uint64_t>(base + 24, stamp->time_ms);
  } else {
    StoreLE<std::uint32_t>(base, static_cast<std::uint32_t>(count));
  }
  std::size_t at = header;
  for (std::size_t i = 0; i < count; ++i) {
    const std::size_t n = size(i);
    StoreLE<std::uint32_t>(base + at, static_cast<std::uint32_t>(n));
    encode(i, std::span<std::byte>(base + at + 4, n));
    at += 4 + n;
  }
  return raft_buffer{base, len};
}

/// The `count` records' bytes that start at `at` of an entry, then padding
/// only; false if they do not parse.
inline bool DecodeRecords(std::span<const std::byte> entry, std::size_t at, std::uint32_t count,
                          std::vector<std::span<const std::byte>>& out) {
  out.clear();
  if (entry.size() < at || entry.size() % kEntryAlign != 0) return false;
  for (std::uint32_t i = 0; i < count; ++i) {
    if (entry.size() - at < 4) return false;
    const std::uint32_t n = LoadLE<std::uint32_t>(entry.data() + at);
    if (entry.size() - at - 4 < n) return false;
    out.push_back(entry.subspan(at + 4, n));
    at += 4 + n;
  }
  for (; at < entry.size(); ++at)
    if (entry[at] != std::byte{0}) return false;  // padding only
  return true;
}

/// The records' bytes of a record entry, or false if it does not parse.
inline bool DecodeEntry(std::span<const std::byte> entry, std::vector<std::span<const std::byte>>& out) {
  if (entry.size() < 4) return false;
  return DecodeRecords(entry, 4, LoadLE<std::uint32_t>(entry.data()), out);
}

/// Whether `entry` is a producer entry (by its marker).
inline bool IsProducerEntry(std::span<const std::byte> entry) noexcept {
  return entry.size() >= 4 && LoadLE<std::uint32_t>(entry.data()) == kProducerMarker;
}

/// The stamp and records' bytes of a producer entry; false if it does not
/// parse (no record, or producer 0, included).
inline bool DecodeProducerEntry(std::span<const std::byte> entry, ProducerStamp& stamp,
                                std::vector<std::span<const std::byte>>& out) {
  if (entry.size() < kProducerHeaderBytes || !IsProducerEntry(entry)) return false;
  const std::uint32_t count = LoadLE<std::uint32_t>(entry.data() + 4);
  stamp = ProducerStamp{LoadLE<std::uint64_t>(entry.data() + 8), LoadLE<std::uint64_t>(entry.data() + 16),
                        LoadLE<std::uint64_t>(entry.data() + 24)};
  return count > 0 && stamp.producer != 0 && DecodeRecords(entry, kProducerHeaderBytes, count, out);
}

/// A node's announcement of its client address.
struct Announce {
  std::uint64_t id = 0;
  std::string address;
};

/// The announce entry of `a` (see the file comment), from raft_malloc.
inline raft_buffer EncodeAnnounce(const Announce& a) {
  const std::size_t len = PaddedEntry(16 + a.address.size());
  std::byte* base = EntryBuffer(len);
  StoreLE<std::uint32_t>(base, kAnnounceMarker);
  StoreLE<std::uint32_t>(base + 4, static_cast<std::uint32_t>(a.address.size()));
  StoreLE<std::uint64_t>(base + 8, a.id);
  if (!a.address.empty()) std::memcpy(base + 16, a.address.data(), a.address.size());
  return raft_buffer{base, len};
}

/// The announcement an entry carries; nullopt for a record entry; false in
/// `ok` if it is an announce entry that does not parse.
inline std::optional<Announce> DecodeAnnounce(std::span<const std::byte> entry, bool& ok) {
  ok = true;
  if (entry.size() < 4 || LoadLE<std::uint32_t>(entry.data()) != kAnnounceMarker) return std::nullopt;
  ok = false;
  if (entry.size() < 16 || entry.size() % kEntryAlign != 0) return std::nullopt;
  const std::uint32_t n = LoadLE<std::uint32_t>(entry.data() + 4);
  if (entry.size() - 16 < n || entry.size() - 16 - n >= kEntryAlign) return std::nullopt;
  for (std::size_t at = 16 + n; at < entry.size(); ++at)
    if (entry[at] != std::byte{0}) return std::nullopt;
  ok = true;
  return Announce{LoadLE<std::uint64_t>(entry.data() + 8),
                  std::string(reinterpret_cast<const char*>(entry.data()) + 16, n)};
}

}  // namespace logsync::detail
