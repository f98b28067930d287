#pragma once
/// The raft state machine of a replicated log: a Log on disk that the raft
/// engine (canonical/raft, `libraft-dev`) feeds committed entries into. The
/// one seam between logsync and the engine's FSM interface; ReplicatedLog
/// builds a node on it.
///
/// The entries it applies (record, producer and announce entries) are in
/// entry.hpp. A leader announces its client address once it leads, so that
/// every node can redirect clients to it (the raft address is for raft
/// only). A producer entry is an idempotent append: the producer table
/// (producers.hpp) decides whether its records are appended, or are a
/// retry of the producer's last append (answered with that append's
/// offsets) or out of order (refused); either way every node decides the
/// same, so the table and the log stay the same everywhere.
///
/// Each record of the local log carries the raft index of the entry it came
/// from (an 8-byte prefix before the codec's bytes), so applying is
/// idempotent: the engine replays the entries after its last snapshot on
/// every start, and entries the log already holds are skipped (their
/// producer entries still go through the producer table, which the replay
/// so rebuilds as it was). The local
/// log runs without syncs, so a power loss can keep any prefix of its
/// frames, ending inside an entry: Open counts how many records of the last
/// entry it holds, and the replay of that entry appends the ones missing,
/// so the log always ends on an entry boundary of the committed raft log
/// (never skipping the rest of an entry, which would shift every later
/// offset against the other nodes).
///
/// Snapshots (snapshot_format.hpp) hold the state machine's metadata and,
/// unless FetchFrom is set, the whole log ("LGSNAP03", in memory, as the
/// engine takes them). With FetchFrom they hold the metadata only
/// ("LGSNAP04"), and a node restoring one it lacks records of fetches them
/// from a peer as a checked stream (fetch.hpp) into a directory beside its
/// log, then swaps it in at once: memory stays bounded whatever the log's
/// size. Every format is read.

extern "C" {
#include <raft.h>
}

#include <logsync/config.hpp>
#include <logsync/detail/endian.hpp>
#include <logsync/detail/wait.hpp>
#include <logsync/error.hpp>
#include <logsync/log.hpp>
#include <logsync/raft/entry.hpp>
#include <logsync/raft/producers.hpp>
#include <logsync/raft/snapshot_format.hpp>
#include <logsync/snapshot.hpp>
#include <logsync/sync.hpp>

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <functional>
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

/// What applying an idempotent append did: its admission and, for a new
/// append or a duplicate, the offsets of its records.
struct Outcome {
  Admission admission = Admission::kNew;
  std::uint64_t first = 0;  ///< first offset (kNew, kDuplicate); the last sequence (kOutOfOrder)
  std::uint64_t count = 0;  ///< records (the original append's for kDuplicate, kMismatch)
};

/// An outcome as the apply callback's result pointer value (the leader's
/// apply callback gets it back; nothing to allocate or free): the
/// admission in the top 2 bits, `first` (saturated) below. A record
/// entry's result is its first offset, which has those bits clear.
inline void* OutcomeResult(const Outcome& o) noexcept {
  constexpr std::uint64_t kLow = (std::uint64_t{1} << 62) - 1;
  return reinterpret_cast<void*>(static_cast<std::uintptr_t>(
      (std::uint64_t{static_cast<std::uint8_t>(o.admission)} << 62) | std::min(o.first, kLow)));
}
inline Outcome OutcomeOf(std::uint64_t result) noexcept {
  return Outcome{static_cast<Admission>(result >> 62), result & ((std::uint64_t{1} << 62) - 1), 0};
}

/// The raft FSM over a local Log in `dir`: applies committed entries,
/// snapshots and restores the log. Engine callbacks run on the engine's
/// loop thread; reads may come from any thread.
template <class S = sync::None>
class LogMachine {
 public:
  using LocalLog = Log<Applied, AppliedCodec, S>;

  LogMachine(std::filesystem::path dir, Config config, ProducerLimits limits = {})
      : dir_(std::move(dir)), config_(config), producers_(limits) {
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

  /// Where a snapshot's records come from: fetches the local log of the
  /// node whose client port is `address` into the directory `dir` (absent)
  /// and returns its next offset, or throws (fetch.hpp's FetchLog).
  using Fetcher = std::function<std::uint64_t(const std::string& address, const std::filesystem::path& dir)>;

  /// Makes snapshots carry the metadata only, naming this node (`id`, its
  /// client port `client_address`, which serves the fetch) as where the
  /// records are; a restore fetches them with `fetch`. Before raft_start.
  void FetchFrom(std::uint64_t id, std::string client_address, Fetcher fetch) {
    self_id_ = id;
    self_address_ = std::move(client_address);
    fetch_ = std::move(fetch);
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

  /// The producer table's entry for `producer` (see producers.hpp).
  std::optional<ProducerState> Producer(std::uint64_t producer) const {
    std::shared_lock lock(mu_);
    return producers_.Find(producer);
  }

  /// The producer table, least recently used first, and its clock.
  std::pair<std::vector<ProducerState>, std::uint64_t> Producers() const {
    std::shared_lock lock(mu_);
    return {producers_.States(), producers_.NowMs()};
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

  /// Applies the committed record entry at raft index `index`, whose
  /// records' bytes are `records` (what the engine's apply callback does);
  /// returns the offset of its first record. An entry the local log holds
  /// already is skipped; of the entry it holds only a prefix of (see the
  /// file comment), the rest is appended.
  std::uint64_t Apply(std::uint64_t index, std::span<const std::span<const std::byte>> records) {
    std::unique_lock lock(mu_);
    return AppendLocked(index, records);
  }

  /// Applies the committed producer entry at raft index `index`: appends
  /// its records as Apply does unless the producer table refuses them or
  /// knows them as a retry (then nothing is appended). Replayed entries
  /// the local log holds update the table as they did the first time.
  Outcome ApplyIdempotent(std::uint64_t index, const ProducerStamp& stamp,
                          std::span<const std::span<const std::byte>> records) {
    std::unique_lock lock(mu_);
    ProducerState last;
    const Admission admission = producers_.Check(stamp, records.size(), last);
    switch (admission) {
      case Admission::kNew: break;
      case Admission::kDuplicate: return Outcome{admission, last.first, last.count};
      case Admission::kOutOfOrder: return Outcome{admission, last.sequence, last.count};
      case Admission::kMismatch: return Outcome{admission, last.first, last.count};
    }
    const std::uint64_t first = AppendLocked(index, records);
    producers_.Remember(stamp, first, records.size());
    return Outcome{Admission::kNew, first, records.size()};
  }

 private:
  // Under mu_ (unique). `applied_next_` is the next offset as of the entries
  // applied (or replayed) so far: the first offset of an entry the local
  // log holds already, for the producer table.
  std::uint64_t AppendLocked(std::uint64_t index, std::span<const std::span<const std::byte>> records) {
    const std::uint64_t first = applied_next_;
    if (records.empty()) return first;
    if (index < last_index_) {
      applied_next_ += records.size();
      return first;
    }
    const std::size_t held = index == last_index_ ? last_held_ : 0;
    if (held > records.size())
      throw Error("logsync: the local log holds " + std::to_string(held) + " records of raft entry " +
                  std::to_string(index) + ", which has " + std::to_string(records.size()));
    if (held == records.size()) {
      applied_next_ = log_->NextOffset();
      return applied_next_ - held;
    }
    std::vector<Applied> batch;
    batch.reserve(records.size() - held);
    for (auto p : records.subspan(held))
      batch.push_back(Applied{0, index, std::string(reinterpret_cast<const char*>(p.data()), p.size())});
    const std::uint64_t at = log_->AppendBatch(batch) - held;
    last_index_ = index;
    last_held_ = records.size();
    applied_next_ = log_->NextOffset();
    return at;
  }

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
    ProducerStamp stamp;
    const bool producer = ok && IsProducerEntry(entry);
    if (!ok || !(producer ? DecodeProducerEntry(entry, stamp, parts) : DecodeEntry(entry, parts))) {
      self->Notify("malformed raft entry at index " + std::to_string(index));
      return RAFT_MALFORMED;
    }
    try {
      // The outcome travels back to the leader's apply callback as the
      // result pointer's value (see OutcomeResult).
      *result = OutcomeResult(producer ? self->ApplyIdempotent(index, stamp, parts)
                                       : Outcome{Admission::kNew, self->Apply(index, parts), parts.size()});
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
      SnapshotHead head{self->fetch_ ? 4 : 3, self->last_index_, self->log_->NextOffset(),
                        self->log_->LowestOffset(), self->self_id_, self->self_address_, self->clients_, {}};
      // Metadata only: the records it names must outlive a power loss here,
      // since this node's log is where others fetch them from.
      if (self->fetch_) self->log_->Sync();
      const std::vector<std::byte> meta = EncodeSnapshotHead(head, self->producers_);
      std::optional<ByteReader> reader;
      if (!self->fetch_) reader.emplace(self->log_->Reader());
      std::size_t cap = reader ? std::max<std::size_t>(1 << 20, meta.size()) : meta.size(), len = meta.size();
      auto* base = static_cast<std::byte*>(raft_malloc(cap));
      if (base == nullptr) return RAFT_NOMEM;
      std::memcpy(base, meta.data(), meta.size());
      while (reader) {
        if (len == cap) {
          auto* grown = static_cast<std::byte*>(raft_realloc(base, cap * 2));
          if (grown == nullptr) {
            raft_free(base);
            return RAFT_NOMEM;
          }
          base = grown;
          cap *= 2;
        }
        const std::size_t n = reader->Read(std::span(base + len, cap - len));
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

  // Fetches the records of a metadata snapshot into `staged` from the
  // snapshotting node, or else any other node whose client address is
  // known; throws if none had them all.
  void FetchRecords(const SnapshotHead& head, const std::filesystem::path& staged) {
    std::vector<std::string> from;
    auto add = [&](std::uint64_t id, const std::string& address) {
      if (id != self_id_ && !address.empty() && std::find(from.begin(), from.end(), address) == from.end())
        from.push_back(address);
    };
    add(head.source_id, head.source_address);
    for (const auto& [id, address] : head.clients) add(id, address);
    std::string why = from.empty() ? "no node to fetch from is known" : "";
    for (const auto& address : from) {
      try {
        if (fetch_(address, staged) >= head.next) return;
        why += address + ": its log ends before offset " + std::to_string(head.next) + "; ";
      } catch (const std::exception& e) {
        why += address + ": " + e.what() + "; ";
      }
      std::filesystem::remove_all(staged);
    }
    throw Error("cannot fetch the records of the snapshot at raft index " + std::to_string(head.index) + ": " + why);
  }

  // Takes ownership of buf->base on success.
  static int RestoreCb(raft_fsm* fsm, raft_buffer* buf) {
    auto* self = static_cast<LogMachine*>(fsm->data);
    const std::span<const std::byte> bytes(static_cast<const std::byte*>(buf->base), buf->len);
    SnapshotHead head;
    ProducerTable producers(self->producers_.Limits());  // none before LGSNAP03
    if (std::string why; !ParseSnapshot(bytes, head, producers, why)) {
      self->Notify(why);
      return RAFT_MALFORMED;
    }
    try {
      // The local log already holds every record of the snapshot (records
      // come only from committed entries, the same on every node): keep it,
      // and let the replay skip what it holds. Otherwise the records are
      // staged beside it, without the lock (applies run on this thread),
      // then swapped in at once.
      bool replace = false;
      {
        std::shared_lock lock(self->mu_);
        replace = self->last_index_ < head.index || self->log_->NextOffset() < head.next;
      }
      const std::filesystem::path staged = self->dir_.string() + ".restored";
      if (replace) {
        std::filesystem::remove_all(staged);
        if (head.version < 4) RestoreLog(staged, head.records, self->config_);
        else if (!self->fetch_) throw Error("a metadata snapshot, and no way to fetch its records");
        else self->FetchRecords(head, staged);
      }
      std::unique_lock lock(self->mu_);
      if (replace) {
        self->log_->Close();
        self->log_.reset();
        ExchangeDirs(staged, self->dir_);
        std::filesystem::remove_all(staged);  // the old log
        self->Open();
        self->restored_.fetch_add(1, std::memory_order_relaxed);
      }
      if (head.version >= 2) self->clients_ = std::move(head.clients);
      self->producers_ = std::move(producers);
      self->applied_next_ = head.next;
    } catch (const std::exception& e) {
      self->Notify(std::string("restore: ") + e.what());
      try {
        if (!self->log_) self->Open();  // the swap failed: the log as it was, or the new one
      } catch (const std::exception&) {
      }
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
  // Guards log_ (swapped by a restore), last_index_, last_held_, applied_next_, clients_, producers_.
  mutable std::shared_mutex mu_;
  std::unique_ptr<LocalLog> log_;
  std::uint64_t last_index_ = 0;  // raft index of the newest record
  std::uint64_t last_held_ = 0;   // records of that entry the log holds
  std::uint64_t applied_next_ = 0;  // next offset as of the entries applied (see AppendLocked)
  std::map<std::uint64_t, std::string> clients_;  // client addresses announced, by node id
  std::uint64_t self_id_ = 0;  // FetchFrom's
  std::string self_address_;
  Fetcher fetch_;  // empty: snapshots hold the records
  ProducerTable producers_;
  mutable std::mutex wait_mu_;
  mutable std::condition_variable applied_cv_;
  std::string last_error_;
};

}  // namespace detail
}  // namespace logsync
