#pragma once
/// The raft snapshots of a replicated log's state machine (LogMachine):
/// their byte form, written and parsed here.
///
///     "LGSNAP04" (metadata only): raft index of the newest record (u64),
///     next offset (u64), lowest offset (u64), the snapshotting node's id
///     (u64) and client address (u32 length N, N bytes), the client
///     addresses known (u32 count, then per node its id (u64), address
///     length N (u32) and N bytes), the producer table (producers.hpp).
///     The records stay in the logs: a node restoring it fetches them from
///     the snapshotting node, or another one (fetch.hpp).
///
///     "LGSNAP03": raft index, next offset, client addresses and producer
///     table as above (no lowest offset, no source), then the log's
///     Reader() stream. "LGSNAP02" snapshots (no producer table) and
///     "LGSNAP01" ones (no addresses either) are read too.

#include <logsync/detail/endian.hpp>
#include <logsync/raft/producers.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace logsync::detail {

inline constexpr char kSnapshotMagicV1[8] = {'L', 'G', 'S', 'N', 'A', 'P', '0', '1'};
inline constexpr char kSnapshotMagicV2[8] = {'L', 'G', 'S', 'N', 'A', 'P', '0', '2'};
inline constexpr char kSnapshotMagicV3[8] = {'L', 'G', 'S', 'N', 'A', 'P', '0', '3'};
inline constexpr char kSnapshotMagicV4[8] = {'L', 'G', 'S', 'N', 'A', 'P', '0', '4'};
inline constexpr std::size_t kSnapshotHeaderBytes = 24;

/// What a snapshot says about the state machine, the records aside.
struct SnapshotHead {
  int version = 4;              ///< 1 to 4 (the magic's digit)
  std::uint64_t index = 0;      ///< raft index of the newest record
  std::uint64_t next = 0;       ///< next offset
  std::uint64_t lowest = 0;     ///< lowest offset (version 4)
  std::uint64_t source_id = 0;  ///< the snapshotting node (version 4)
  std::string source_address;   ///< its client address (version 4)
  std::map<std::uint64_t, std::string> clients;  ///< client addresses (version 2 on)
  /// Version 1 to 3: the log's Reader() stream, inside the parsed bytes.
  std::span<const std::byte> records;
};

/// The snapshot form of `head` and `producers` (version 3 or 4), without
/// a version 3 snapshot's records, which follow it.
inline std::vector<std::byte> EncodeSnapshotHead(const SnapshotHead& head, const ProducerTable& producers) {
  std::vector<std::byte> out;
  auto put = [&](const void* p, std::size_t n) {
    const auto* b = static_cast<const std::byte*>(p);
    out.insert(out.end(), b, b + n);
  };
  auto u64 = [&](std::uint64_t v) {
    std::byte b[8];
    StoreLE<std::uint64_t>(b, v);
    put(b, 8);
  };
  auto text = [&](const std::string& s) {
    std::byte b[4];
    StoreLE<std::uint32_t>(b, static_cast<std::uint32_t>(s.size()));
    put(b, 4);
    put(s.data(), s.size());
  };
  put(head.version == 4 ? kSnapshotMagicV4 : kSnapshotMagicV3, 8);
  u64(head.index);
  u64(head.next);
  if (head.version == 4) {
    u64(head.lowest);
    u64(head.source_id);
    text(head.source_address);
  }
  std::byte count[4];
  StoreLE<std::uint32_t>(count, static_cast<std::uint32_t>(head.clients.size()));
  put(count, 4);
  for (const auto& [id, address] : head.clients) {
    u64(id);
    text(address);
  }
  const std::size_t at = out.size();
  out.resize(at + producers.EncodedSize());
  producers.Encode(out.data() + at);
  return out;
}

/// Parses a snapshot of any version into `head`, and its producer table
/// (version 3 on) into `producers`; false, with `why`, if it
/// does not parse.
inline bool ParseSnapshot(std::span<const std::byte> bytes, SnapshotHead& head, ProducerTable& producers,
                          std::string& why) {
  auto is = [&](const char* magic) {
    return bytes.size() >= kSnapshotHeaderBytes && std::memcmp(bytes.data(), magic, 8) == 0;
  };
  const char* const magics[] = {kSnapshotMagicV1, kSnapshotMagicV2, kSnapshotMagicV3, kSnapshotMagicV4};
  head.version = 0;
  for (int v = 1; v <= 4; ++v)
    if (is(magics[v - 1])) head.version = v;
  if (head.version == 0) {
    why = "snapshot is not a logsync snapshot";
    return false;
  }
  head.index = LoadLE<std::uint64_t>(bytes.data() + 8);
  head.next = LoadLE<std::uint64_t>(bytes.data() + 16);
  std::size_t at = kSnapshotHeaderBytes;
  auto u64 = [&](std::uint64_t& v) {
    if (bytes.size() - at < 8) return false;
    v = LoadLE<std::uint64_t>(bytes.data() + at);
    at += 8;
    return true;
  };
  auto text = [&](std::string& s) {
    if (bytes.size() - at < 4) return false;
    const std::uint32_t n = LoadLE<std::uint32_t>(bytes.data() + at);
    if (bytes.size() - at - 4 < n) return false;
    s.assign(reinterpret_cast<const char*>(bytes.data()) + at + 4, n);
    at += 4 + std::size_t{n};
    return true;
  };
  if (head.version == 4 && !(u64(head.lowest) && u64(head.source_id) && text(head.source_address))) {
    why = "snapshot's source does not parse";
    return false;
  }
  if (head.version >= 2) {
    std::uint64_t count = 0;
    if (bytes.size() - at < 4) {
      why = "snapshot's client addresses do not parse";
      return false;
    }
    count = LoadLE<std::uint32_t>(bytes.data() + at);
    at += 4;
    for (std::uint64_t i = 0; i < count; ++i) {
      std::uint64_t id = 0;
      std::string address;
      if (!u64(id) || !text(address)) {
        why = "snapshot's client addresses do not parse";
        return false;
      }
      head.clients[id] = std::move(address);
    }
  }
  if (head.version >= 3) {
    const auto used = producers.Decode(bytes.subspan(at));
    if (!used) {
      why = "snapshot's producer table does not parse";
      return false;
    }
    at += *used;
  }
  head.records = head.version == 4 ? std::span<const std::byte>() : bytes.subspan(at);
  return true;
}

}  // namespace logsync::detail
