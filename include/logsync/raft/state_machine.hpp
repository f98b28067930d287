#pragma once
/// The raft state machine of a replicated log: a Log on disk that the raft
/// engine (canonical/raft, `libraft-dev`) feeds committed entries into, and
/// the wire form of those entries. The one seam between logsync and the
/// engine's FSM interface; ReplicatedLog builds a node on it.
///
///     raft entry (the buffer handed to raft_apply)
///     +--------+------+--------------------------------------------------+
///     | 0      | 4    | record count K (u32)                             |
///     | 4      | ...  | K times: payload length N (u32), N payload bytes |
///     | ...    | 0-7  | zero padding to a multiple of 8 bytes            |
///     +--------+------+--------------------------------------------------+
///
/// The padding is required by this engine version: an entry whose length
/// is not a multiple of 8 reaches followers shifted when several entries
/// travel in one message.
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
/// A leader announces its client address once it leads, so that every node
/// can redirect clients to it (the raft address is for raft only).
///
/// Each record of the local log carries the raft index of the entry it came
/// from (an 8-byte prefix before the codec's bytes), so applying is
/// idempotent: the engine replays the entries after its last snapshot on
/// every start, and entries the log already holds are skipped. The local
/// log runs without syncs, so a power loss can keep any prefix of its
/// frames, ending inside an entry: Open counts how many records of the last
/// entry it holds, and the replay of that entry appends the ones missing,
/// so the log always ends on an entry boundary of the committed raft log
/// (never skipping the rest of an entry, which would shift every later
/// offset against the other nodes).
///
///     snapshot: "LGSNAP02", raft index of the newest record (u64), next
///     offset (u64), the client addresses known (u32 count, then per node
///     its id (u64), address length N (u32) and N bytes), then the log's
///     Reader() stream. "LGSNAP01" snapshots (no addresses) are read too.

extern "C" {
#include <raft.h>
}

#include <logsync/config.hpp>
#include <logsync/detail/endian.hpp>
#include <logsync/detail/wait.hpp>
#include <logsync/error.hpp>
#include <logsync/log.hpp>
#include <logsync/snapshot.hpp>
#include <logsync/sync.hpp>

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <mutex>
#include <shared_mutex>
#include <span>
#include <string>
#include <vector>

namespace logsync {

namespace detail {

/// A record of a replicated log's local Log: the codec's bytes and the raft
/// index of the entry that carried them.
struct Applied {
  std::uint64_t offset = 0;
  std::uint64_t raft_index = 0;
  std::string bytes;
};

/// Codec of Applied: the raft index (u64), then the bytes verbatim.
struct AppliedCodec {
  static std::size_t EncodedSize(const Applied& a) noexcept { return 8 + a.bytes.size(); }
  static void Encode(const Applied& a, std::span<std::byte> out) noexcept {
    StoreLE<std::uint64_t>(out.data(), a.raft_index);
    if (!a.bytes.empty()) std::memcpy(out.data() + 8, a.bytes.data(), a.bytes.size());
  }
  static Applied Decode(std::span<const std::byte> payload) {
    if (payload.size() < 8) throw Error("logsync: replicated record shorter than its raft index");
    return Applied{0, LoadLE<std::uint64_t>(payload.data()),
                   std::string(reinterpret_cast<const char*>(payload.data()) + 8, payload.size() - 8)};
  }
};

inline constexpr std::size_t kEntryAlign = 8;

/// Encodes records as one raft entry (see the file comment) in memory from
/// raft_malloc, as raft_apply requires. `size(i)` and `encode(i, out)` give
/// record i's codec bytes.
template <class Size, class Encode>
raft_buffer EncodeEntry(std::size_t count, Size size, Encode encode) {
  std::size_t len = 4;
  for (std::size_t i = 0; i < count; ++i) len += 4 + size(i);
  len = (len + kEntryAlign - 1) / kEntryAlign * kEntryAlign;
  auto* base = static_cast<std::byte*>(raft_malloc(len));
  if (base == nullptr) throw std::bad_alloc();
  std::memset(base, 0, len);
  StoreLE<std::uint32_t>(base, static_cast<std::uint32_t>(count));
  std::size_t at = 4;
  for (std::size_t i = 0; i < count; ++i) {
    const std::size_t n = size(i);
    StoreLE<std::uint32_t>(base + at, static_cast<std::uint32_t>(n));
    encode(i, std::span<std::byte>(base + at + 4, n));
    at += 4 + n;
  }
  return raft_buffer{base, len};
}

/// The records' bytes of a raft entry, or false if it does not parse.
inline bool DecodeEntry(std::span<const std::byte> entry, std::vector<std::span<const std::byte>>& out) {
  out.clear();
  if (entry.size() < 4 || entry.size() % kEntryAlign != 0) return false;
  const std::uint32_t count = LoadLE<std::uint32_t>(entry.data());
  std::size_t at = 4;
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

inline constexpr std::uint32_t kAnnounceMarker = 0xFFFFFFFFU;

/// A node's announcement of its client address.
struct Announce {
  std::uint64_t id = 0;
  std::string address;
};

/// The announce entry of `a` (see the file comment), from raft_malloc.
inline raft_buffer EncodeAnnounce(const Announce& a) {
  const std::size_t len = (16 + a.address.size() + kEntryAlign - 1) / kEntryAlign * kEntryAlign;
  auto* base = static_cast<std::byte*>(raft_malloc(len));
  if (base == nullptr) throw std::bad_alloc();
  std::memset(base, 0, len);
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

inline constexpr char kSnapshotMagicV1[8] = {'L', 'G', 'S', 'N', 'A', 'P', '0', '1'};
inline constexpr char kSnapshotMagic[8] = {'L', 'G', 'S', 'N', 'A', 'P', '0', '2'};
inline constexpr std::size_t kSnapshotHeaderBytes = 24;

/// The raft FSM over a local Log in `dir`: applies committed entries,
/// snapshots and restores the log. Engine callbacks run on the engine's
/// loop thread; reads may come from any thread.
template <class S = sync::None>
class LogMachine {
 public:
  using LocalLog = Log<Applied, AppliedCodec, S>;

  LogMachine(std::filesystem::path dir, Config config) : dir_(std::move(dir)), config_(config) {
    Open();
    fsm_.version = 1;
    fsm_.data = this;
    fsm_.apply = &LogMachine::ApplyCb;
    fsm_.snapshot = &LogMachine::SnapshotCb;
    fsm_.restore = &LogMachine::RestoreCb;
  }
  LogMachine(const LogMachine&) = delete;
  LogMachine& operator=(const LogMachine&) = delete;

  /// The FSM to hand to raft_init; `r` is the raft instance it serves (the
  /// raft index of an applied entry is its last applied index plus one).
  raft_fsm* Fsm(struct raft* r) noexcept {
    raft_ = r;
    return &fsm_;
  }

  /// How many snapshots from the leader replaced the local log (a node that
  /// fell behind the leader's trimmed raft log catches up so).
  std::uint64_t SnapshotsRestored() const noexcept { return restored_.load(std::memory_order_relaxed); }

  /// Runs f(const LocalLog&) under the read lock (a restore swaps the log).
  template <class F>
  decltype(auto) WithLog(F&& f) const {
    std::shared_lock lock(mu_);
    return f(*log_);
  }

  std::uint64_t NextOffset() const {
    std::shared_lock lock(mu_);
    return log_->NextOffset();
  }

  /// Raft index of the newest record the local log holds (0 if none).
  std::uint64_t LastRaftIndex() const {
    std::shared_lock lock(mu_);
    return last_index_;
  }

  /// Waits until the local log holds offsets below `next`; false on timeout
  /// (any length: duration::max() waits for ever).
  template <class Duration>
  bool WaitForNext(std::uint64_t next, Duration timeout) const {
    std::unique_lock lock(wait_mu_);
    return detail::WaitUntilReady(applied_cv_, lock, timeout, [&] { return NextOffset() >= next; });
  }

  /// The client address node `id` announced, or "" if none is known.
  std::string ClientAddress(std::uint64_t id) const {
    std::shared_lock lock(mu_);
    const auto it = clients_.find(id);
    return it == clients_.end() ? std::string() : it->second;
  }

  /// Apply failures (an I/O error of the local log) so far.
  std::string LastError() const {
    std::lock_guard lock(wait_mu_);
    return last_error_;
  }

  void Close() {
    std::unique_lock lock(mu_);
    if (log_) log_->Close();
  }

  /// Applies the committed entry at raft index `index`, whose records'
  /// bytes are `records` (what the engine's apply callback does); returns
  /// the offset of its first record. An entry the local log holds already
  /// is skipped; of the entry it holds only a prefix of (see the file
  /// comment), the rest is appended.
  std::uint64_t Apply(std::uint64_t index, std::span<const std::span<const std::byte>> records) {
    std::unique_lock lock(mu_);
    const std::uint64_t next = log_->NextOffset();
    if (records.empty() || index < last_index_) return next;
    const std::size_t held = index == last_index_ ? last_held_ : 0;
    if (held > records.size())
      throw Error("logsync: the local log holds " + std::to_string(held) + " records of raft entry " +
                  std::to_string(index) + ", which has " + std::to_string(records.size()));
    if (held == records.size()) return next - held;
    std::vector<Applied> batch;
    batch.reserve(records.size() - held);
    for (auto p : records.subspan(held))
      batch.push_back(Applied{0, index, std::string(reinterpret_cast<const char*>(p.data()), p.size())});
    const std::uint64_t first = log_->AppendBatch(batch) - held;
    last_index_ = index;
    last_held_ = records.size();
    return first;
  }

 private:
  void Open() {
    log_ = std::make_unique<LocalLog>(dir_, config_);
    last_index_ = 0;
    last_held_ = 0;
    if (log_->Empty()) return;
    last_index_ = RaftIndexAt(log_->HighestOffset());
    for (std::uint64_t o = log_->NextOffset(); o > log_->LowestOffset() && RaftIndexAt(o - 1) == last_index_; --o)
      ++last_held_;
  }

  // The raft index a record of the local log came from.
  std::uint64_t RaftIndexAt(std::uint64_t offset) const {
    return log_->View(offset, [](std::span<const std::byte> payload) {
      if (payload.size() < 8) throw Error("logsync: replicated record shorter than its raft index");
      return LoadLE<std::uint64_t>(payload.data());
    });
  }

  void Notify(const std::string& error = {}) {
    {
      std::lock_guard lock(wait_mu_);
      if (!error.empty()) last_error_ = error;
    }
    applied_cv_.notify_all();
  }

  static int ApplyCb(raft_fsm* fsm, const raft_buffer* buf, void** result) {
    auto* self = static_cast<LogMachine*>(fsm->data);
    const std::uint64_t index = raft_last_applied(self->raft_) + 1;
    const std::span<const std::byte> entry(static_cast<const std::byte*>(buf->base), buf->len);
    bool ok = true;
    if (auto a = DecodeAnnounce(entry, ok)) {
      {
        std::unique_lock lock(self->mu_);
        self->clients_[a->id] = std::move(a->address);
      }
      *result = nullptr;
      self->Notify();
      return 0;
    }
    std::vector<std::span<const std::byte>> parts;
    if (!ok || !DecodeEntry(std::span(static_cast<const std::byte*>(buf->base), buf->len), parts)) {
      self->Notify("malformed raft entry at index " + std::to_string(index));
      return RAFT_MALFORMED;
    }
    try {
      const std::uint64_t first = self->Apply(index, parts);
      // The first offset travels back to the leader's apply callback as the
      // result pointer's value (nothing to allocate or free).
      *result = reinterpret_cast<void*>(static_cast<std::uintptr_t>(first));
    } catch (const std::exception& e) {
      self->Notify(e.what());
      return RAFT_IOERR;
    }
    self->Notify();
    return 0;
  }

  static int SnapshotCb(raft_fsm* fsm, raft_buffer* bufs[], unsigned* n_bufs) {
    auto* self = static_cast<LogMachine*>(fsm->data);
    try {
      std::shared_lock lock(self->mu_);
      auto reader = self->log_->Reader();
      std::size_t directory = 4;
      for (const auto& [id, address] : self->clients_) directory += 12 + address.size();
      std::size_t cap = std::max<std::size_t>(1 << 20, kSnapshotHeaderBytes + directory), len = kSnapshotHeaderBytes;
      auto* base = static_cast<std::byte*>(raft_malloc(cap));
      if (base == nullptr) return RAFT_NOMEM;
      std::memcpy(base, kSnapshotMagic, 8);
      StoreLE<std::uint64_t>(base + 8, self->last_index_);
      StoreLE<std::uint64_t>(base + 16, self->log_->NextOffset());
      StoreLE<std::uint32_t>(base + len, static_cast<std::uint32_t>(self->clients_.size()));
      len += 4;
      for (const auto& [id, address] : self->clients_) {
        StoreLE<std::uint64_t>(base + len, id);
        StoreLE<std::uint32_t>(base + len + 8, static_cast<std::uint32_t>(address.size()));
        if (!address.empty()) std::memcpy(base + len + 12, address.data(), address.size());
        len += 12 + address.size();
      }
      for (;;) {
        if (len == cap) {
          auto* grown = static_cast<std::byte*>(raft_realloc(base, cap * 2));
          if (grown == nullptr) {
            raft_free(base);
            return RAFT_NOMEM;
          }
          base = grown;
          cap *= 2;
        }
        const std::size_t n = reader.Read(std::span(base + len, cap - len));
        if (n == 0) break;
        len += n;
      }
      auto* out = static_cast<raft_buffer*>(raft_malloc(sizeof(raft_buffer)));
      if (out == nullptr) {
        raft_free(base);
        return RAFT_NOMEM;
      }
      out[0] = raft_buffer{base, len};
      *bufs = out;
      *n_bufs = 1;
      return 0;
    } catch (const std::exception& e) {
      self->Notify(e.what());
      return RAFT_IOERR;
    }
  }

  // Takes ownership of buf->base on success.
  static int RestoreCb(raft_fsm* fsm, raft_buffer* buf) {
    auto* self = static_cast<LogMachine*>(fsm->data);
    const std::span<const std::byte> bytes(static_cast<const std::byte*>(buf->base), buf->len);
    const bool v2 = bytes.size() >= kSnapshotHeaderBytes && std::memcmp(bytes.data(), kSnapshotMagic, 8) == 0;
    if (!v2 && (bytes.size() < kSnapshotHeaderBytes || std::memcmp(bytes.data(), kSnapshotMagicV1, 8) != 0)) {
      self->Notify("snapshot is not a logsync snapshot");
      return RAFT_MALFORMED;
    }
    const std::uint64_t snap_index = LoadLE<std::uint64_t>(bytes.data() + 8);
    const std::uint64_t snap_next = LoadLE<std::uint64_t>(bytes.data() + 16);
    std::map<std::uint64_t, std::string> clients;
    std::size_t at = kSnapshotHeaderBytes;
    if (v2) {
      auto malformed = [&] {
        self->Notify("snapshot's client addresses do not parse");
        return RAFT_MALFORMED;
      };
      if (bytes.size() - at < 4) return malformed();
      const std::uint32_t count = LoadLE<std::uint32_t>(bytes.data() + at);
      at += 4;
      for (std::uint32_t i = 0; i < count; ++i) {
        if (bytes.size() - at < 12) return malformed();
        const std::uint64_t id = LoadLE<std::uint64_t>(bytes.data() + at);
        const std::uint32_t n = LoadLE<std::uint32_t>(bytes.data() + at + 8);
        if (bytes.size() - at - 12 < n) return malformed();
        clients[id] = std::string(reinterpret_cast<const char*>(bytes.data()) + at + 12, n);
        at += 12 + n;
      }
    }
    try {
      std::unique_lock lock(self->mu_);
      // The local log already holds every record of the snapshot (records
      // come only from committed entries, the same on every node): keep it,
      // and let the replay skip what it holds.
      if (self->last_index_ < snap_index || self->log_->NextOffset() < snap_next) {
        const auto staged = self->dir_.string() + ".restored";
        const auto old = self->dir_.string() + ".old";
        std::filesystem::remove_all(staged);
        std::filesystem::remove_all(old);
        RestoreLog(staged, bytes.subspan(at), self->config_);
        self->log_->Close();
        self->log_.reset();
        detail::Rename(self->dir_, old);
        detail::Rename(staged, self->dir_);
        std::filesystem::remove_all(old);
        self->Open();
        self->restored_.fetch_add(1, std::memory_order_relaxed);
      }
      if (v2) self->clients_ = std::move(clients);
    } catch (const std::exception& e) {
      self->Notify(std::string("restore: ") + e.what());
      return RAFT_CORRUPT;
    }
    raft_free(buf->base);
    self->Notify();
    return 0;
  }

  std::atomic<std::uint64_t> restored_{0};  // snapshots that replaced the local log

  std::filesystem::path dir_;
  Config config_;
  raft_fsm fsm_{};
  struct raft* raft_ = nullptr;
  mutable std::shared_mutex mu_;  // guards log_ (swapped by a restore), last_index_, last_held_, clients_
  std::unique_ptr<LocalLog> log_;
  std::uint64_t last_index_ = 0;  // raft index of the newest record
  std::uint64_t last_held_ = 0;   // records of that entry the log holds
  std::map<std::uint64_t, std::string> clients_;  // client addresses announced, by node id
  mutable std::mutex wait_mu_;
  mutable std::condition_variable applied_cv_;
  std::string last_error_;
};

}  // namespace detail
}  // namespace logsync
