#pragma once
/// Log: the public face of a log directory. Appends go to the newest
/// (active) segment, which rolls to a new one when full; reads find the
/// segment that holds an offset; Truncate removes old segments; opening a
/// directory restores (and recovers) whatever is there.
///
/// Log encodes records (its codec) and checksums their payloads outside the
/// append lock, then hands the frames down: SegmentSet (segment_set.hpp)
/// places them in segments and publishes segments to readers, Segment
/// stamps offsets and frame headers (format.hpp) and writes Store and Index.
/// detail::GroupCommit (detail/group_commit.hpp) decides who syncs and
/// holds the state a failed sync leaves. The directory's files: format.hpp.
/// While a Log has the directory open it holds an flock on the directory
/// itself and on `LOCK` (detail/directory_lock.hpp).
///
/// Stats() (stats.hpp) reports counters the appenders keep under the
/// append lock (plain relaxed stores, no locked instruction), the syncs
/// GroupCommit counts and times, what the segments hold, and what the last
/// open's recovery found (returned by SegmentSet::Open).
///
/// Thread safety: any number of threads may call Append, AppendBatch, Read,
/// Scan, Reader, the offset getters, Sync and Truncate at once. Appends are
/// serialised; a record becomes readable only once its frame and index entry
/// are complete, and readers never wait for a sync. Close, Remove and Reset
/// may also be called while other threads use the log: calls that start
/// after them throw StateError, and reads already under way finish on
/// descriptors the segments keep until their last user lets go.

#include <logsync/codec.hpp>
#include <logsync/config.hpp>
#include <logsync/detail/directory_lock.hpp>
#include <logsync/detail/file.hpp>
#include <logsync/detail/group_commit.hpp>
#include <logsync/detail/tailers.hpp>
#include <logsync/error.hpp>
#include <logsync/format.hpp>
#include <logsync/record.hpp>
#include <logsync/scan.hpp>
#include <logsync/segment_set.hpp>
#include <logsync/snapshot.hpp>
#include <logsync/stats.hpp>
#include <logsync/sync.hpp>
#include <logsync/verify.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <iterator>
#include <limits>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace logsync {

/// A segmented, append-only log of records R, encoded by codec C, made
/// durable as sync policy S decides.
template <class R = Record, class C = DefaultCodec<R>, class S = sync::None>
class Log {
  static_assert(Codec<C, R>,
                "logsync::Log<R, C, S>: C is not a codec for R. It needs, static or const: "
                "std::size_t EncodedSize(const R&), void Encode(const R&, std::span<std::byte>), "
                "R Decode(std::span<const std::byte>)");
  static_assert(SyncPolicy<S>,
                "logsync::Log<R, C, S>: S is not a sync policy. It needs a constructor from "
                "const logsync::Config& and bool AfterAppend(std::uint64_t records)");

 public:
  using record_type = R;
  using codec_type = C;
  using sync_type = S;

  /// Input range over records (scan.hpp); see Scan().
  using ScanRange = logsync::ScanRange<R, C>;
  /// Input range over payload views (scan.hpp); see ScanPayloads().
  using PayloadRange = logsync::PayloadRange;
  using Payload = logsync::Payload;
  /// Byte source over every store's raw bytes (snapshot.hpp); see Reader().
  using ByteReader = logsync::ByteReader;

  /// Opens the log in `dir`, creating the directory or restoring (and
  /// recovering) the segments in it. Throws std::invalid_argument for a bad
  /// config before touching the disk.
  explicit Log(std::filesystem::path dir, Config config = {}) : Log(std::move(dir), config, C{}) {}

  /// As above, with a codec instance (for codecs that carry state).
  Log(std::filesystem::path dir, Config config, C codec)
      : dir_(std::move(dir)),
        config_(detail::Resolve(config)),
        codec_(std::move(codec)),
        sync_(config_),
        segments_(dir_, config_,
                  std::is_same_v<S, sync::None> ? SegmentSet::Prefault::kAhead : SegmentSet::Prefault::kOff),
        commit_(dir_.string(), [this] {
          // The target first: every offset below it is in the active
          // segment read next or in one rolled before it, whose seal
          // (sync) FinishSeals waits for.
          const std::uint64_t upto = segments_.NextOffset();
          const auto active = segments_.Active();
          segments_.FinishSeals();
          active->SyncStore();
          return upto;
        }) {
    Open();
  }

  Log(const Log&) = delete;
  Log& operator=(const Log&) = delete;

  /// Closes the log; errors are swallowed here, so call Close() to see them.
  ~Log() {
    try {
      Close();
    } catch (...) {
    }
  }

  /// Appends one record; returns its offset. Durable on return if the sync
  /// policy says so. Throws RecordTooLarge (nothing written), IoError (the
  /// log stays readable and appendable), SyncError (the log then refuses
  /// writes until reopened) or StateError.
  std::uint64_t Append(const R& record) {
    thread_local std::vector<std::byte> frame;
    const std::uint32_t length = EncodeFrame(record, frame, 0);
    const std::uint32_t crc = detail::PayloadCrc(std::span(frame).subspan(kFrameHeaderBytes));
    std::uint64_t offset, generation;
    bool sync;
    {
      std::lock_guard lock(append_mu_);
      CheckWritable(1);
      generation = commit_.Generation();
      offset = commit_.PoisonOnSyncError(
          [&] { return segments_.Append(frame, std::span(&length, 1), std::span(&crc, 1)); });
      CountAppend(1, length);
      sync = sync_.AfterAppend(1);
    }
    WakeTailers();
    ReleaseIfLarge(frame);
    if (sync) commit_.SyncThrough(offset + 1, generation);
    return offset;
  }

  /// Appends records at contiguous offsets; returns the first (NextOffset()
  /// for an empty batch). One write and at most one sync for the batch. A
  /// batch that fits in one segment is all-or-nothing; one that must span
  /// segments (larger than a segment) may, if a write fails, leave a prefix
  /// appended.
  std::uint64_t AppendBatch(std::span<const R> records) {
    if (records.empty()) return NextOffset();
    std::vector<std::byte> frames;
    std::vector<std::uint32_t> lengths(records.size()), crcs(records.size());
    for (std::size_t i = 0; i < records.size(); ++i) {
      const std::size_t at = frames.size();
      lengths[i] = EncodeFrame(records[i], frames, at);
      crcs[i] = detail::PayloadCrc(std::span(frames).subspan(at + kFrameHeaderBytes, lengths[i]));
    }
    const std::uint64_t payload_bytes = frames.size() - records.size() * kFrameHeaderBytes;
    std::uint64_t first, generation;
    bool sync;
    {
      std::lock_guard lock(append_mu_);
      CheckWritable(records.size());
      generation = commit_.Generation();
      first = commit_.PoisonOnSyncError([&] { return segments_.Append(frames, lengths, crcs); });
      CountAppend(records.size(), payload_bytes);
      sync = sync_.AfterAppend(records.size());
    }
    WakeTailers();
    if (sync) commit_.SyncThrough(first + records.size(), generation);
    return first;
  }

  /// The record at `offset`; throws OffsetOutOfRange if the log does not
  /// hold it, CorruptionError if its frame does not hold.
  R Read(std::uint64_t offset) const {
    return View(offset, [&](std::span<const std::byte> payload) {
      R r = codec_.Decode(payload);
      detail::SetOffset(r, offset);
      return r;
    });
  }

  /// Reads the record at `offset` into `into`, reusing its storage where
  /// the codec can (DecodesInto, as DefaultCodec<Record>): a loop reading
  /// into one record allocates nothing once its buffers are large enough.
  /// Throws as Read does; after a throw `into` holds what it held or a
  /// partly decoded record.
  void Read(std::uint64_t offset, R& into) const {
    View(offset, [&](std::span<const std::byte> payload) {
      if constexpr (DecodesInto<C, R>)
        codec_.DecodeInto(payload, into);
      else
        into = codec_.Decode(payload);
      detail::SetOffset(into, offset);
    });
  }

  /// Zero-copy read: calls `fn(payload)` with the checked payload of the
  /// record at `offset`, a view into the store's mapping, and returns what
  /// `fn` returns. The view is valid only until `fn` returns: the segment
  /// cannot be truncated, reset or closed away while `fn` runs (those wait
  /// for it), so `fn` must be short and must not call into this log. Copy
  /// out whatever must outlive the call. Throws as Read does.
  template <class F>
    requires std::invocable<F&, std::span<const std::byte>>
  decltype(auto) View(std::uint64_t offset, F&& fn) const {
    CheckOpen();
    if (offset >= NextOffset()) throw OffsetOutOfRange(offset);
    return segments_.View(offset, fn);
  }

  /// View of many records: calls `fn(offset, payload)` for each of
  /// `offsets`, in order, with the views valid only during each call (the
  /// rules of View apply). Faster than one View per offset for offsets
  /// scattered over the log: it starts loading the index entries and frames
  /// of up to 16 records before it checks the first. Throws
  /// OffsetOutOfRange before calling `fn` at all if any offset is not held;
  /// a CorruptionError at the first bad frame, after `fn` has seen the
  /// records before it.
  template <class F>
    requires std::invocable<F&, std::uint64_t, std::span<const std::byte>>
  void ViewBatch(std::span<const std::uint64_t> offsets, F&& fn) const {
    CheckOpen();
    segments_.ViewBatch(offsets, fn);
  }

  /// The records from `from` (at least LowestOffset()) to the last one
  /// appended before this call, in offset order. The range keeps the
  /// segments it reads alive, so a concurrent Truncate does not cut it short;
  /// it uses the log's codec, so it must not outlive the Log.
  ScanRange Scan(std::uint64_t from) const {
    auto held = segments_.Hold();
    const std::uint64_t start = std::max(from, held.segments.front()->BaseOffset());
    return ScanRange(&codec_, std::move(held.segments), start, held.next_offset);
  }

  /// Zero-copy scan: the checked payloads of the records from `from` (at
  /// least LowestOffset()) to the last one appended before this call, in
  /// offset order, as {offset, bytes}: views into the stores' mappings,
  /// valid as long as the range lives (it keeps the segments it reads
  /// alive). Throws CorruptionError at the first frame that does not hold.
  PayloadRange ScanPayloads(std::uint64_t from) const {
    auto held = segments_.Hold();
    const std::uint64_t start = std::max(from, held.segments.front()->BaseOffset());
    return PayloadRange(std::move(held.segments), start, held.next_offset);
  }

  /// Checks every frame and index entry of every segment (reading all of
  /// the log) and reports what it found; for operators. Runs while appends
  /// go on and checks the records appended before the call.
  VerifyReport Verify() const {
    VerifyReport report;
    for (const auto& seg : segments_.Hold().segments) seg->Verify(report);
    return report;
  }

  /// Waits until the record at `offset` can be read (NextOffset() > offset),
  /// the log is closed, or `timeout` passes; returns whether it can. For
  /// readers tailing the log: an Append wakes them as it returns, with no
  /// cost to appends while nobody waits beyond one fence. With `spin`, the
  /// reader first polls for up to that long (yielding the CPU between
  /// polls) before it blocks: it sees a record microseconds sooner than a
  /// wake-up can deliver it, at the cost of a busy core, so spin only where
  /// readers have cores of their own.
  template <class Rep, class Period>
  bool WaitFor(std::uint64_t offset, std::chrono::duration<Rep, Period> timeout,
               std::chrono::nanoseconds spin = std::chrono::nanoseconds::zero()) const {
    tailers_.Wait([&] { return NextOffset() > offset || closed_.load(); }, timeout, spin);
    return NextOffset() > offset;
  }

  /// Offset of the oldest record held (== NextOffset() when the log is empty).
  std::uint64_t LowestOffset() const noexcept { return segments_.LowestOffset(); }
  /// Offset of the newest record; NextOffset() - 1 (0 when NextOffset() is 0).
  std::uint64_t HighestOffset() const noexcept {
    const std::uint64_t next = NextOffset();
    return next == 0 ? 0 : next - 1;
  }
  /// The offset the next Append will get.
  std::uint64_t NextOffset() const noexcept { return segments_.NextOffset(); }
  /// Whether the log holds no record.
  bool Empty() const noexcept { return NextOffset() == LowestOffset(); }

  /// Every store's raw bytes, in offset order, as they were when Reader()
  /// was called (whole frames only): the form snapshots travel in.
  ByteReader Reader() const { return ByteReader(segments_.Hold().segments); }

  /// Writes a point-in-time copy of the log into `dir`, which must be absent
  /// or empty (StateError otherwise): hard links to the sealed segments'
  /// files (they never change) and a copy of the active store's published
  /// records, fsynced. Appends may go on meanwhile; the copy holds a prefix of
  /// the log with every record whose Append returned before the call. `dir` is
  /// then a log directory a Log opens. Returns the snapshot's NextOffset().
  std::uint64_t Snapshot(const std::filesystem::path& dir) const {
    segments_.FinishSeals();  // rolled segments sealed: linked, not copied
    const auto held = segments_.Hold();
    std::vector<detail::SnapshotPart> parts;
    std::uint64_t next = 0;
    for (std::size_t i = 0; i < held.segments.size(); ++i) {
      const auto& seg = held.segments[i];
      const std::uint64_t n = seg->Count();  // read once: a consistent end
      // Linked only once sealed (synced, never to change); a rolled
      // segment whose seal is under way is copied, as the active one is.
      parts.push_back({seg, seg->CommittedBytes(n), i + 1 < held.segments.size() && seg->Sealed()});
      next = seg->BaseOffset() + n;
    }
    detail::WriteSnapshot(dir, parts);
    return next;
  }

  /// Removes every segment whose highest offset is <= `lowest`. If that
  /// includes the active segment, the log continues in a new, empty segment
  /// at NextOffset(). Readers holding a Scan or Reader keep their view.
  /// Files go first, oldest first: if a removal fails (IoError), the log
  /// keeps, in memory as on disk, the segments from the one that failed on.
  void Truncate(std::uint64_t lowest) {
    std::lock_guard lock(append_mu_);
    CheckOpen();
    if (segments_.CountThrough(lowest) == segments_.Size())  // the active segment too
      commit_.PoisonOnSyncError([&] { segments_.Roll(); });
    segments_.RemovePrefix(lowest);
  }

  /// Makes every record appended so far durable (store and index).
  void Sync() {
    CheckWritable(0);
    const std::uint64_t generation = commit_.Generation();  // before the target: see GroupCommit
    commit_.SyncNow(NextOffset(), generation);
    commit_.PoisonOnSyncError([&] { segments_.Active()->SyncIndex(); });
  }

  /// Syncs, trims the active index and releases the directory. Later calls
  /// throw StateError; calling Close again does nothing.
  void Close() {
    {
      std::lock_guard lock(append_mu_);
      Shutdown([] {});
    }
    WakeTailers();
    segments_.ThrowIfSealFailed();  // a background seal that failed unseen
  }

  /// Closes the log and deletes its segment files and LOCK file; the
  /// directory goes too if nothing else is in it. On a closed log, deletes
  /// them all the same if no other Log has the directory open (StateError
  /// if one has); a directory that is already gone is not an error.
  void Remove() {
    {
      std::lock_guard lock(append_mu_);
      if (closed_.load()) {
        std::error_code ec;
        if (!std::filesystem::exists(std::filesystem::symlink_status(dir_, ec))) return;
        detail::DirectoryLock held(dir_);
        RemoveFiles(LockFile::kRemove);
      } else {
        Shutdown([this] { RemoveFiles(LockFile::kRemove); });
      }
    }
    WakeTailers();
    std::error_code ec;
    std::filesystem::remove(dir_, ec);  // fails, harmlessly, if other files remain
  }

  /// Removes every record and reopens empty at Config::segment.initial_offset
  /// (keeping the directory locked throughout).
  void Reset() {
    std::lock_guard lock(append_mu_);
    bool reopen = false;
    Shutdown(
        [&] {
          RemoveFiles(LockFile::kKeep);
          reopen = true;
        },
        DirLock::kKeep);
    if (!reopen) CheckOpen();
    try {
      Open();
    } catch (...) {
      dir_lock_.Release();  // closed for good: the directory is free for others (and for Remove)
      throw;
    }
    closed_ = false;
  }

  const std::filesystem::path& Dir() const noexcept { return dir_; }
  /// The configuration in effect (defaults filled in).
  const Config& GetConfig() const noexcept { return config_; }
  /// Number of segments.
  std::size_t SegmentCount() const { return segments_.Size(); }

  /// Counters since the log was constructed (appends, syncs and their
  /// latency over the last 1024), what it holds now (segments, offsets,
  /// descriptors, mappings) and what its last open or Reset recovered.
  /// O(segments), no I/O; any thread. Throws StateError on a closed log.
  LogStats Stats() const {
    CheckOpen();
    LogStats s;
    s.appends = appends_.load(std::memory_order_relaxed);
    s.records = records_.load(std::memory_order_relaxed);
    s.bytes = bytes_.load(std::memory_order_relaxed);
    const auto synced = commit_.Stats();
    s.syncs = synced.syncs;
    s.records_per_sync = s.syncs == 0 ? 0.0 : static_cast<double>(s.records) / static_cast<double>(s.syncs);
    s.sync_p50 = synced.latency.p50;
    s.sync_p99 = synced.latency.p99;
    const auto held = segments_.Resources();
    s.segments = held.segments;
    s.open_files = held.open_files + (held.segments > 0 ? detail::DirectoryLock::kFiles : 0);
    s.mappings = held.mappings;
    s.lowest_offset = LowestOffset();
    s.next_offset = NextOffset();
    {
      std::lock_guard lock(stats_mu_);
      s.recovery = recovery_;
    }
    return s;
  }

 private:
  // What Shutdown does with the directory lock, and RemoveFiles with LOCK.
  enum class DirLock { kRelease, kKeep };
  enum class LockFile { kKeep, kRemove };

  // Encodes `r` as a frame (header left blank) at `at` in `out`; returns the
  // payload length. Throws RecordTooLarge before anything is written.
  std::uint32_t EncodeFrame(const R& r, std::vector<std::byte>& out, std::size_t at) const {
    const std::size_t size = codec_.EncodedSize(r);
    if (size > config_.max_record_bytes) throw RecordTooLarge(size, config_.max_record_bytes);
    out.resize(at + kFrameHeaderBytes + size);
    codec_.Encode(r, std::span(out).subspan(at + kFrameHeaderBytes, size));
    return static_cast<std::uint32_t>(size);
  }

  // Per-thread scratch buffers keep small capacities only, so one huge
  // record does not pin its size in every thread that touched it.
  static void ReleaseIfLarge(std::vector<std::byte>& scratch) noexcept {
    if (scratch.capacity() > (1U << 20)) std::vector<std::byte>().swap(scratch);
  }

  // Counts a successful append of `records` records, `bytes` of payload
  // (append lock held: the only writer, so no locked instruction).
  void CountAppend(std::uint64_t records, std::uint64_t bytes) noexcept {
    appends_.store(appends_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    records_.store(records_.load(std::memory_order_relaxed) + records, std::memory_order_relaxed);
    bytes_.store(bytes_.load(std::memory_order_relaxed) + bytes, std::memory_order_relaxed);
  }

  // Wakes readers in WaitFor, if any.
  void WakeTailers() const { tailers_.Wake(); }

  void CheckOpen() const {
    if (closed_.load(std::memory_order_acquire)) throw detail::LogClosed(dir_);
  }

  // Appends need an open, unpoisoned log with offsets left for `records`.
  void CheckWritable(std::uint64_t records) const {
    CheckOpen();
    commit_.ThrowIfPoisoned();
    if (std::numeric_limits<std::uint64_t>::max() - NextOffset() < records)
      throw StateError("logsync: log " + dir_.string() + " has run out of offsets");
  }

  void Open() {
    detail::CreateDirSynced(detail::CleanDir(dir_));  // new directories' entries synced too
    if (!dir_lock_.Held()) dir_lock_ = detail::DirectoryLock(dir_);  // Reset keeps it
    commit_.Restart();
    RecoveryStats found = segments_.Open();
    {
      std::lock_guard lock(stats_mu_);
      recovery_ = std::move(found);
    }
    if constexpr (detail::PeriodicSync<S>) {
      commit_.StartSyncer(std::chrono::milliseconds(sync_.Period()), [this] { return segments_.NextOffset(); });
    }
  }

  // Stops the syncer, ends the sync generation, closes the segments and
  // seals the active one (see GroupCommit::MaySeal), runs `then` while the directory
  // is still locked, and releases the lock unless asked to keep it. Append
  // lock held. Does nothing on a closed log.
  template <class Then>
  void Shutdown(Then then, DirLock dir_lock = DirLock::kRelease) {
    commit_.StopSyncer();  // the syncer never takes append_mu_
    if (closed_.exchange(true)) return;
    commit_.EndGeneration();  // appenders waiting for a sync of this generation give up
    bool rolled_sealed = false;
    SegmentSet::Segments segs = segments_.Close(&rolled_sealed);  // readers are done with them on return
    try {
      // Not after a failed sync or seal, nor while a sync is in flight: the
      // next open recovers the unsealed segments instead.
      if (rolled_sealed && commit_.MaySeal() && !segs.empty()) segs.back()->Seal();
      segs.clear();
      then();
    } catch (...) {
      dir_lock_.Release();
      throw;
    }
    if (dir_lock == DirLock::kRelease) dir_lock_.Release();
  }

  // Deletes the segment files (see SegmentSet::RemoveFiles), then LOCK if
  // asked, and syncs the directory.
  void RemoveFiles(LockFile lock_file) {
    SegmentSet::RemoveFiles(dir_);
    if (lock_file == LockFile::kRemove) detail::RemoveFile(dir_ / detail::kLockFileName);
    detail::SyncDirectory(dir_);
  }

  std::filesystem::path dir_;
  Config config_;
  [[no_unique_address]] C codec_;
  S sync_;

  detail::DirectoryLock dir_lock_;
  SegmentSet segments_;
  std::mutex append_mu_;  // one writer at a time: appends, rolls, Truncate, Close, Reset
  std::atomic<bool> closed_{false};
  // Stats() counters, written under append_mu_ (see CountAppend).
  std::atomic<std::uint64_t> appends_{0}, records_{0}, bytes_{0};
  mutable std::mutex stats_mu_;  // guards recovery_
  RecoveryStats recovery_;        // what the last Open found
  detail::GroupCommit commit_;  // after segments_: its sync uses them

  detail::Tailers tailers_;  // readers in WaitFor
};

}  // namespace logsync
