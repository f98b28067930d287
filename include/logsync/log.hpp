#pragma once
/// Log: the directory of segments. Appends go to the newest (active)
/// segment, which rolls to a new one when full; reads find the segment that
/// holds an offset; Truncate removes old segments; opening a directory
/// restores (and recovers) whatever is there.
///
/// Directory: `<base>.store` and `<base>.index` per segment (base zero-padded
/// to 20 digits) and a `LOCK` file. While a Log has the directory open it
/// holds an flock on the directory itself and on `LOCK`
/// (detail/directory_lock.hpp). Any other name is ignored and never
/// deleted; an entry with a segment file's name that is not a regular file
/// makes open refuse the directory.
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
#include <logsync/detail/reader_registry.hpp>
#include <logsync/detail/wait.hpp>
#include <logsync/error.hpp>
#include <logsync/record.hpp>
#include <logsync/segment.hpp>
#include <logsync/snapshot.hpp>
#include <logsync/store.hpp>
#include <logsync/sync.hpp>
#include <logsync/verify.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <iterator>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <shared_mutex>
#include <span>
#include <stop_token>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace logsync {

namespace detail {
template <class S>
concept PeriodicSync = requires(const S& s) {
  { s.Period() } -> std::convertible_to<std::chrono::milliseconds>;
};
}  // namespace detail

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

  using SegmentPtr = std::shared_ptr<Segment>;
  using Segments = std::vector<SegmentPtr>;
  // What Read and View use without the lock: the segments and their base
  // offsets, published after every change to segments_ (PublishTable).
  struct SegmentTable {
    std::vector<std::uint64_t> bases;
    std::vector<const Segment*> segments;
  };

 public:
  using record_type = R;
  using codec_type = C;
  using sync_type = S;

  class ScanRange;
  class ByteReader;

  /// Opens the log in `dir`, creating the directory or restoring (and
  /// recovering) the segments in it. Throws std::invalid_argument for a bad
  /// config before touching the disk.
  explicit Log(std::filesystem::path dir, Config config = {}) : Log(std::move(dir), config, C{}) {}

  /// As above, with a codec instance (for codecs that carry state).
  Log(std::filesystem::path dir, Config config, C codec)
      : dir_(std::move(dir)), config_(detail::Resolve(config)), codec_(std::move(codec)), sync_(config_) {
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
    const std::uint32_t payload_crc = detail::Crc32c(0, frame.data() + kFrameHeaderBytes, length);
    std::uint64_t offset, generation;
    bool sync;
    {
      std::lock_guard lock(append_mu_);
      CheckWritable(1);
      generation = generation_;
      Segment& seg = ActiveFor(frame.size(), 1);
      offset = seg.NextOffset();
      detail::WriteFrameHeader(frame.data(), offset, length, payload_crc);
      seg.Append(frame, std::span(&length, 1));
      next_offset_.store(offset + 1, std::memory_order_release);
      sync = sync_.AfterAppend(1);
    }
    WakeTailers();
    ReleaseIfLarge(frame);
    if (sync) SyncThrough(offset + 1, generation);
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
    std::vector<std::uint64_t> starts(records.size() + 1);
    for (std::size_t i = 0; i < records.size(); ++i) {
      starts[i] = frames.size();
      lengths[i] = EncodeFrame(records[i], frames, frames.size());
      crcs[i] = detail::Crc32c(0, frames.data() + starts[i] + kFrameHeaderBytes, lengths[i]);
    }
    starts.back() = frames.size();
    std::uint64_t first, generation;
    bool sync;
    {
      std::lock_guard lock(append_mu_);
      CheckWritable(records.size());
      generation = generation_;
      first = next_offset_.load(std::memory_order_relaxed);
      const std::span<const std::byte> all(frames);
      std::size_t i = 0;
      // The whole batch goes into a fresh segment when it does not fit the
      // active one but fits an empty one; only larger batches are split.
      Segment* seg = &ActiveFor(frames.size(), records.size(), /*split=*/true);
      while (i < records.size()) {
        std::size_t j = i;
        while (j < records.size() && seg->Fits(starts[j + 1] - starts[i], j + 1 - i)) ++j;
        if (j == i) {
          seg = &Roll();
          continue;
        }
        std::uint64_t off = seg->NextOffset();
        for (std::size_t k = i; k < j; ++k)
          detail::WriteFrameHeader(frames.data() + starts[k], off++, lengths[k], crcs[k]);
        seg->Append(all.subspan(starts[i], starts[j] - starts[i]), std::span(lengths).subspan(i, j - i));
        next_offset_.store(off, std::memory_order_release);
        i = j;
      }
      sync = sync_.AfterAppend(records.size());
    }
    WakeTailers();
    if (sync) SyncThrough(first + records.size(), generation);
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
    if (offset >= next_offset_.load(std::memory_order_acquire)) throw OffsetOutOfRange(offset);
    // No locked instruction on this path (see detail/reader_registry.hpp):
    // the reader announces itself in its own slot and uses the published
    // segment table; Truncate, rolls and Close wait for it before they free
    // a table or unmap a segment.
    {
      detail::ReaderRegistry::Guard guard(readers_);
      if (const SegmentTable* table = guard.Registered() ? table_.load(std::memory_order_acquire) : nullptr)
        return fn(Find(*table, offset).Payload(offset));
    }
    // No slot, or no table (closed, or none could be built): the shared
    // lock, taken only once this thread has left its slot, since a writer
    // holds the lock exclusively while it waits for readers in slots.
    return ViewLocked(offset, fn);
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
    {
      detail::ReaderRegistry::Guard guard(readers_);
      if (const SegmentTable* table = guard.Registered() ? table_.load(std::memory_order_acquire) : nullptr)
        return ViewBatchIn(*table, offsets, fn);
    }
    // No slot, or no table: the shared lock, out of the slot (see View).
    std::shared_lock lock(segments_mu_);
    for (const std::uint64_t o : offsets) FindLocked(o, lock);  // every range first
    for (const std::uint64_t o : offsets) fn(o, FindLocked(o, lock).Payload(o));
  }

 private:
  // ViewBatch over a published table (reader guard held).
  template <class F>
  void ViewBatchIn(const SegmentTable& table, std::span<const std::uint64_t> offsets, F& fn) const {
    for (const std::uint64_t o : offsets) Find(table, o);  // every range first
    constexpr std::size_t kAhead = 16;
    std::array<const Segment*, kAhead> segs;
    for (std::size_t i = 0; i < offsets.size(); i += kAhead) {
      const std::size_t n = std::min(kAhead, offsets.size() - i);
      for (std::size_t j = 0; j < n; ++j) {
        segs[j] = &Find(table, offsets[i + j]);
        segs[j]->PrefetchEntry(offsets[i + j]);
      }
      for (std::size_t j = 0; j < n; ++j) segs[j]->PrefetchFrame(offsets[i + j]);
      for (std::size_t j = 0; j < n; ++j) fn(offsets[i + j], segs[j]->Payload(offsets[i + j]));
    }
  }

  // The segment holding `offset` in a published table (reader guard held);
  // throws OffsetOutOfRange.
  const Segment& Find(const SegmentTable& table, std::uint64_t offset) const {
    const auto it = std::upper_bound(table.bases.begin(), table.bases.end(), offset);
    if (it == table.bases.begin()) throw OffsetOutOfRange(offset);
    const Segment& seg = *table.segments[static_cast<std::size_t>(it - table.bases.begin()) - 1];
    if (offset >= seg.NextOffset()) throw OffsetOutOfRange(offset);
    return seg;
  }

  // The same under the shared lock; StateError when the log is closed.
  const Segment& FindLocked(std::uint64_t offset, std::shared_lock<std::shared_mutex>& lock) const {
    auto it = std::upper_bound(segments_.begin(), segments_.end(), offset,
                               [](std::uint64_t o, const SegmentPtr& s) { return o < s->BaseOffset(); });
    if (it == segments_.begin()) {
      lock.unlock();
      CheckOpen();  // a Close may have raced this call
      throw OffsetOutOfRange(offset);
    }
    const Segment& seg = **std::prev(it);
    if (offset >= seg.NextOffset()) throw OffsetOutOfRange(offset);
    return seg;
  }

  // View under the shared lock: for threads without a reader slot, and
  // while no table is published (closed, or a table could not be built).
  template <class F>
  decltype(auto) ViewLocked(std::uint64_t offset, F& fn) const {
    std::shared_lock lock(segments_mu_);
    return fn(FindLocked(offset, lock).Payload(offset));
  }

 public:
  /// The records from `from` (at least LowestOffset()) to the last one
  /// appended before this call, in offset order. The range keeps the
  /// segments it reads alive, so a concurrent Truncate does not cut it short;
  /// it uses the log's codec, so it must not outlive the Log.
  ScanRange Scan(std::uint64_t from) const {
    std::shared_lock lock(segments_mu_);
    if (segments_.empty()) throw StateError("logsync: log " + dir_.string() + " is closed");
    const std::uint64_t end = next_offset_.load(std::memory_order_acquire);
    return ScanRange(this, segments_, std::max(from, segments_.front()->BaseOffset()), end);
  }

  /// Checks every frame and index entry of every segment (reading all of
  /// the log) and reports what it found; for operators. Runs while appends
  /// go on and checks the records appended before the call.
  VerifyReport Verify() const {
    Segments segs;
    {
      std::shared_lock lock(segments_mu_);
      if (segments_.empty()) throw StateError("logsync: log " + dir_.string() + " is closed");
      segs = segments_;
    }
    VerifyReport report;
    for (const auto& seg : segs) seg->Verify(report);
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
    auto ready = [&] { return next_offset_.load(std::memory_order_acquire) > offset || closed_.load(); };
    if (ready()) return next_offset_.load(std::memory_order_acquire) > offset;
    // Time is kept as double seconds: a timeout as long as duration::max()
    // must not overflow. The time spun counts against the timeout.
    using Seconds = std::chrono::duration<double>;
    const Seconds left = timeout;
    const auto start = std::chrono::steady_clock::now();
    const auto spent = [start] { return std::chrono::steady_clock::now() - start; };
    if (spin > std::chrono::nanoseconds::zero()) {
      const Seconds budget = std::min<Seconds>(spin, left);
      do {
        for (int i = 0; i < 16; ++i) {
          std::this_thread::yield();
          if (ready()) return next_offset_.load(std::memory_order_acquire) > offset;
        }
      } while (spent() < budget);
    }
    tail_waiters_.fetch_add(1, std::memory_order_seq_cst);
    {
      std::unique_lock lock(tail_mu_);
      detail::WaitUntilReady(tail_cv_, lock, left, ready, start);
    }
    tail_waiters_.fetch_sub(1, std::memory_order_relaxed);
    return next_offset_.load(std::memory_order_acquire) > offset;
  }

  /// Offset of the oldest record held (== NextOffset() when the log is empty).
  std::uint64_t LowestOffset() const noexcept { return lowest_offset_.load(std::memory_order_acquire); }
  /// Offset of the newest record; NextOffset() - 1 (0 when NextOffset() is 0).
  std::uint64_t HighestOffset() const noexcept {
    const std::uint64_t next = NextOffset();
    return next == 0 ? 0 : next - 1;
  }
  /// The offset the next Append will get.
  std::uint64_t NextOffset() const noexcept { return next_offset_.load(std::memory_order_acquire); }
  /// Whether the log holds no record.
  bool Empty() const noexcept { return NextOffset() == LowestOffset(); }

  /// Every store's raw bytes, in offset order, as they were when Reader()
  /// was called (whole frames only): the form snapshots travel in.
  ByteReader Reader() const {
    std::shared_lock lock(segments_mu_);
    if (segments_.empty()) throw StateError("logsync: log " + dir_.string() + " is closed");
    return ByteReader(segments_);
  }

  /// Writes a point-in-time copy of the log into `dir`, which must be absent
  /// or empty (StateError otherwise): hard links to the sealed segments'
  /// files (they never change) and a copy of the active store's published
  /// records, fsynced. Appends may go on meanwhile; the copy holds a prefix of
  /// the log with every record whose Append returned before the call. `dir` is
  /// then a log directory a Log opens. Returns the snapshot's NextOffset().
  std::uint64_t Snapshot(const std::filesystem::path& dir) const {
    std::vector<detail::SnapshotPart> parts;
    std::uint64_t next = 0;
    {
      std::shared_lock lock(segments_mu_);
      if (segments_.empty()) throw StateError("logsync: log " + dir_.string() + " is closed");
      for (std::size_t i = 0; i < segments_.size(); ++i) {
        const std::uint64_t n = segments_[i]->Count();  // read once: a consistent end
        parts.push_back({segments_[i], segments_[i]->CommittedBytes(n), i + 1 < segments_.size()});
        next = segments_[i]->BaseOffset() + n;
      }
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
    std::size_t k = 0;
    while (k < segments_.size() && !segments_[k]->Empty() && segments_[k]->NextOffset() - 1 <= lowest) ++k;
    if (k == 0) return;
    if (k == segments_.size()) Roll();
    // A segment is gone once its store is (an index without its store is
    // discarded on open).
    std::size_t gone_count = 0;
    std::exception_ptr failure;
    try {
      for (; gone_count < k; ++gone_count) {
        const Segment& seg = *segments_[gone_count];
        detail::RemoveFile(seg.StoreFile());
        try {
          detail::RemoveFile(seg.IndexFile());
        } catch (const Error&) {
          ++gone_count;  // its store is gone: so is the segment
          throw;
        }
      }
    } catch (const Error&) {
      failure = std::current_exception();
    }
    if (gone_count > 0) {
      Segments gone;
      std::unique_lock w(segments_mu_);
      gone.assign(segments_.begin(), segments_.begin() + static_cast<std::ptrdiff_t>(gone_count));
      segments_.erase(segments_.begin(), segments_.begin() + static_cast<std::ptrdiff_t>(gone_count));
      lowest_offset_.store(segments_.front()->BaseOffset(), std::memory_order_release);
      PublishTable();  // readers are done with `gone` when it returns
    }
    if (gone_count > 0) detail::SyncDirectory(dir_);
    if (failure) std::rethrow_exception(failure);
  }

  /// Makes every record appended so far durable (store and index).
  void Sync() {
    CheckWritable(0);
    const std::uint64_t generation = Generation();  // before the target: see SyncThrough
    SyncThrough(next_offset_.load(std::memory_order_acquire), generation, /*force=*/true);
    try {
      Active()->SyncIndex();
    } catch (const SyncError& e) {
      Poison(e.what());
      throw;
    }
  }

  /// Syncs, trims the active index and releases the directory. Later calls
  /// throw StateError; calling Close again does nothing.
  void Close() {
    {
      std::lock_guard lock(append_mu_);
      Shutdown([] {});
    }
    WakeTailers();
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
        RemoveFiles(/*lock_file=*/true);
      } else {
        Shutdown([this] { RemoveFiles(/*lock_file=*/true); });
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
    Shutdown([&] {
      RemoveFiles(/*lock_file=*/false);
      reopen = true;
    }, /*keep_lock=*/true);
    if (!reopen) CheckOpen();
    poisoned_ = false;
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
  std::size_t SegmentCount() const {
    std::shared_lock lock(segments_mu_);
    return segments_.size();
  }

  /// Input range over records; see Scan().
  class ScanRange {
   public:
    class Iterator {
     public:
      using value_type = R;
      using difference_type = std::ptrdiff_t;
      using iterator_concept = std::input_iterator_tag;
      using iterator_category = std::input_iterator_tag;

      Iterator() = default;
      const R& operator*() const noexcept { return *current_; }
      const R* operator->() const noexcept { return &*current_; }
      Iterator& operator++() {
        ++offset_;
        Load();
        return *this;
      }
      void operator++(int) { ++*this; }
      friend bool operator==(const Iterator& it, std::default_sentinel_t) noexcept { return it.done_; }

     private:
      friend class ScanRange;

      Iterator(const ScanRange* range, std::uint64_t offset) : range_(range), offset_(offset) { Load(); }

      void Load() {
        if (offset_ >= range_->end_) {
          done_ = true;
          return;
        }
        const Segments& segs = range_->segments_;
        while (offset_ >= segs[seg_]->NextOffset()) ++seg_;
        current_.emplace(range_->log_->codec_.Decode(segs[seg_]->Payload(offset_)));
        detail::SetOffset(*current_, offset_);
      }

      const ScanRange* range_ = nullptr;
      std::uint64_t offset_ = 0;
      std::size_t seg_ = 0;
      std::optional<R> current_;  // R need not be default-constructible
      bool done_ = false;
    };

    Iterator begin() const { return Iterator(this, from_); }
    std::default_sentinel_t end() const noexcept { return {}; }

   private:
    friend class Log;
    ScanRange(const Log* log, Segments segments, std::uint64_t from, std::uint64_t end)
        : log_(log), segments_(std::move(segments)), from_(from), end_(end) {}

    const Log* log_;
    Segments segments_;
    std::uint64_t from_, end_;
  };

  /// Byte source over every store's raw bytes; see Reader().
  class ByteReader {
   public:
    /// Copies the next bytes into `out`; returns how many (0 at the end).
    std::size_t Read(std::span<std::byte> out) {
      std::size_t done = 0;
      while (done < out.size() && seg_ < parts_.size()) {
        const auto& [seg, end] = parts_[seg_];
        if (pos_ >= end) {
          ++seg_;
          pos_ = 0;
          continue;
        }
        const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(out.size() - done, end - pos_));
        seg->ReadStore(out.subspan(done, want), pos_);
        done += want;
        pos_ += want;
      }
      return done;
    }

   private:
    friend class Log;
    explicit ByteReader(const Segments& segments) {
      for (const auto& s : segments) parts_.emplace_back(s, s->CommittedBytes());
    }
    std::vector<std::pair<SegmentPtr, std::uint64_t>> parts_;
    std::size_t seg_ = 0;
    std::uint64_t pos_ = 0;
  };

 private:
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

  // Wakes readers in WaitFor, if any: the fence orders the new NextOffset()
  // before the look at the waiter count, as the waiter's count comes before
  // its look at NextOffset().
  void WakeTailers() const {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (tail_waiters_.load(std::memory_order_relaxed) == 0) return;
    std::lock_guard lock(tail_mu_);
    tail_cv_.notify_all();
  }

  void CheckOpen() const {
    if (closed_.load(std::memory_order_acquire)) throw StateError("logsync: log " + dir_.string() + " is closed");
  }

  // Appends need an open, unpoisoned log with offsets left for `records`.
  void CheckWritable(std::uint64_t records) const {
    CheckOpen();
    if (poisoned_.load(std::memory_order_acquire)) {
      std::lock_guard lock(sync_mu_);
      throw StateError("logsync: log " + dir_.string() + " refuses writes after a failed sync (" + poison_reason_ +
                       "); reopen it to recover");
    }
    if (std::numeric_limits<std::uint64_t>::max() - next_offset_.load(std::memory_order_relaxed) < records)
      throw StateError("logsync: log " + dir_.string() + " has run out of offsets");
  }

  void Poison(const std::string& why) {
    std::lock_guard lock(sync_mu_);
    if (!poisoned_.exchange(true)) poison_reason_ = why;
  }

  SegmentPtr Active() const {
    std::shared_lock lock(segments_mu_);
    if (segments_.empty()) throw StateError("logsync: log " + dir_.string() + " is closed");
    return segments_.back();
  }

  // The segment to take `records` records of `bytes` in all (append lock
  // held): the active one, or a new one when they do not fit. With `split`,
  // a batch too big even for an empty segment stays in the active one.
  Segment& ActiveFor(std::uint64_t bytes, std::uint64_t records, bool split = false) {
    Segment& active = *segments_.back();
    if (active.Fits(bytes, records)) return active;
    if (split && !active.IsFull() && !FitsEmptySegment(bytes, records)) return active;
    return Roll();
  }

  bool FitsEmptySegment(std::uint64_t bytes, std::uint64_t records) const noexcept {
    return kStoreHeaderBytes + bytes <= config_.segment.max_store_bytes &&
           records <= config_.segment.max_index_bytes / kIndexEntryBytes;
  }

  // Publishes segments_ (segments_mu_ held exclusively) to the lock-free
  // readers, and frees the table it replaces once no reader can hold it:
  // on return, no reader uses a segment that is no longer in segments_.
  // Without memory for a new table, readers take the shared lock until the
  // next publish.
  void PublishTable() noexcept {
    std::unique_ptr<const SegmentTable> next;
    try {
      if (!segments_.empty()) {
        auto t = std::make_unique<SegmentTable>();
        for (const auto& seg : segments_) {
          t->bases.push_back(seg->BaseOffset());
          t->segments.push_back(seg.get());
        }
        next = std::move(t);
      }
    } catch (const std::bad_alloc&) {
      next.reset();
    }
    table_.store(next.get(), std::memory_order_release);
    std::swap(next, table_owner_);
    readers_.Synchronize();
  }

  // Seals the active segment and starts a new one at its next offset
  // (append lock held). The sealed segment is synced first, so a crash can
  // only ever lose a suffix of the newest segment.
  Segment& Roll() {
    SegmentPtr old = segments_.back();
    try {
      old->Seal();
    } catch (const SyncError& e) {
      Poison(e.what());
      throw;
    }
    SegmentPtr next;
    try {
      next = Segment::Create(dir_, old->NextOffset(), config_);
    } catch (const SyncError& e) {
      Poison(e.what());
      throw;
    }
    std::unique_lock w(segments_mu_);
    segments_.push_back(next);
    PublishTable();
    return *next;
  }

  static constexpr int kLeaderYields = 8;

  std::uint64_t Generation() const {
    std::lock_guard lock(sync_mu_);
    return generation_;
  }

  // Group commit: returns once every offset below `target` is durable. One
  // caller syncs the active store; the others wait for it and share it.
  // `generation` is the one `target` belongs to: once a Close or Reset has
  // ended it, the call throws StateError (its records may or may not have
  // become durable), and what it synced counts for no later generation.
  void SyncThrough(std::uint64_t target, std::uint64_t generation, bool force = false) {
    std::unique_lock lock(sync_mu_);
    for (;;) {
      if (generation_ != generation)
        throw StateError("logsync: log " + dir_.string() + " was closed or reset before the records were synced");
      if (synced_next_ >= target && !force) return;
      if (poisoned_) throw StateError("logsync: log " + dir_.string() + " refuses writes after a failed sync (" +
                                      poison_reason_ + "); reopen it to recover");
      if (syncing_) {
        sync_cv_.wait(lock);
        continue;
      }
      syncing_ = true;
      force = false;
      lock.unlock();
      // Appenders the last sync released may be runnable but not running
      // yet (more threads than cores): give them the CPU for a moment, so
      // that their records join this sync rather than wait out the next.
      // With nothing else runnable a yield returns at once.
      for (int i = 0; i < kLeaderYields; ++i) std::this_thread::yield();
      // Read the target before finding the active segment: every offset
      // below it is in that segment or in one sealed (synced) before it.
      const std::uint64_t upto = next_offset_.load(std::memory_order_acquire);
      try {
        Active()->SyncStore();
      } catch (const SyncError& e) {
        lock.lock();
        syncing_ = false;
        if (generation_ == generation && !poisoned_.exchange(true)) poison_reason_ = e.what();
        sync_cv_.notify_all();
        throw;
      } catch (...) {
        lock.lock();
        syncing_ = false;
        sync_cv_.notify_all();
        throw;
      }
      lock.lock();
      syncing_ = false;
      if (generation_ == generation) synced_next_ = std::max(synced_next_, upto);
      sync_cv_.notify_all();
    }
  }

  void Open() {
    detail::CreateDirSynced(detail::CleanDir(dir_));  // new directories' entries synced too
    if (!dir_lock_.Held()) dir_lock_ = detail::DirectoryLock(dir_);  // Reset keeps it
    const auto [stores, indexes] = SegmentFiles();
    // An index whose store is gone is what an interrupted removal leaves.
    for (std::uint64_t b : indexes)
      if (!std::binary_search(stores.begin(), stores.end(), b)) detail::RemoveFile(Segment::IndexPath(dir_, b));

    Segments segs;
    for (std::size_t i = 0; i < stores.size(); ++i) {
      auto seg = Segment::Open(dir_, stores[i], config_, i + 1 == stores.size());
      if (!segs.empty() && seg->BaseOffset() != segs.back()->NextOffset())
        throw CorruptionError(seg->StoreFile(), 0,
                              "segment starts at offset " + std::to_string(seg->BaseOffset()) +
                                  " but the one before it ends at " + std::to_string(segs.back()->NextOffset()));
      segs.push_back(std::move(seg));
    }
    if (segs.empty()) segs.push_back(Segment::Create(dir_, config_.segment.initial_offset, config_));
    {
      std::unique_lock w(segments_mu_);
      segments_ = std::move(segs);
      lowest_offset_.store(segments_.front()->BaseOffset(), std::memory_order_release);
      next_offset_.store(segments_.back()->NextOffset(), std::memory_order_release);
      PublishTable();
    }
    {
      std::lock_guard lock(sync_mu_);
      synced_next_ = 0;  // what a previous process left may still be in the page cache only
    }
    if constexpr (detail::PeriodicSync<S>) {
      syncer_ = std::jthread([this](std::stop_token stop) { SyncLoop(stop); });
    }
  }

  void SyncLoop(std::stop_token stop) {
    const auto period = std::chrono::milliseconds(sync_.Period());
    const std::uint64_t generation = Generation();  // Shutdown stops this thread before it ends one
    std::mutex m;
    std::condition_variable_any cv;
    while (!stop.stop_requested()) {
      {
        std::unique_lock lock(m);
        cv.wait_for(lock, stop, period, [] { return false; });
      }
      if (stop.stop_requested()) return;
      bool behind;
      {
        std::lock_guard lock(sync_mu_);
        behind = synced_next_ < next_offset_.load(std::memory_order_acquire);
      }
      if (!behind) continue;
      try {
        SyncThrough(next_offset_.load(std::memory_order_acquire), generation);
      } catch (...) {
        return;  // poisoned: appends now report it
      }
    }
  }

  // Deletes the segment files oldest first, stores before indexes, so that
  // a crash part way leaves a log that opens (a suffix), then LOCK.
  // Stops the syncer, seals the active segment (unless poisoned), runs
  // `then` while the directory is still locked, and releases the lock unless
  // asked to keep it. Append lock held. Does nothing on a closed log.
  template <class Then>
  void Shutdown(Then then, bool keep_lock = false) {
    if (syncer_.joinable()) {  // the syncer never takes append_mu_
      syncer_.request_stop();
      syncer_.join();
    }
    if (closed_.exchange(true)) return;
    {
      // Appenders waiting for a sync of this generation give up (SyncThrough).
      std::lock_guard lock(sync_mu_);
      ++generation_;
      sync_cv_.notify_all();
    }
    Segments segs;
    {
      std::unique_lock w(segments_mu_);
      segs.swap(segments_);
      PublishTable();  // readers are done with `segs` when it returns
    }
    try {
      if (!poisoned_.load() && !segs.empty()) segs.back()->Seal();
      segs.clear();
      then();
    } catch (...) {
      dir_lock_.Release();
      throw;
    }
    if (!keep_lock) dir_lock_.Release();
  }

  // The sorted base offsets of the directory's stores and of its indexes.
  struct SegmentFileBases {
    std::vector<std::uint64_t> stores, indexes;
  };

  // Lists the directory's segment files, in one pass. An entry with a
  // segment file's name that is not a regular file (a symbolic link, a
  // directory, a fifo, a device) is refused with a CorruptionError naming
  // it: skipping it could hand out offsets that were acknowledged, and
  // nothing is deleted on its account.
  SegmentFileBases SegmentFiles() const {
    namespace fs = std::filesystem;
    SegmentFileBases found;
    std::error_code ec;
    fs::directory_iterator it(dir_, ec);
    for (; !ec && it != fs::directory_iterator(); it.increment(ec)) {
      const std::string name = it->path().filename().string();
      std::vector<std::uint64_t>* bases = &found.stores;
      auto b = detail::ParseSegmentName(name, ".store");
      if (!b) {
        b = detail::ParseSegmentName(name, ".index");
        bases = &found.indexes;
      }
      if (!b) continue;
      const auto type = it->symlink_status(ec).type();
      if (ec) break;
      if (type != fs::file_type::regular)
        throw CorruptionError(it->path(), 0,
                              std::string("a segment file's name on an entry that is not a regular file (") +
                                  (type == fs::file_type::symlink     ? "a symbolic link"
                                   : type == fs::file_type::directory ? "a directory"
                                   : type == fs::file_type::fifo      ? "a fifo"
                                                                      : "not a file") +
                                  "); move it away and retry");
      bases->push_back(*b);
    }
    if (ec) throw IoError(dir_, ec.value(), "list directory");
    std::sort(found.stores.begin(), found.stores.end());
    std::sort(found.indexes.begin(), found.indexes.end());
    return found;
  }

  void RemoveFiles(bool lock_file) {
    auto [bases, indexes] = SegmentFiles();
    bases.insert(bases.end(), indexes.begin(), indexes.end());
    std::sort(bases.begin(), bases.end());
    bases.erase(std::unique(bases.begin(), bases.end()), bases.end());
    for (std::uint64_t b : bases) {
      detail::RemoveFile(Segment::StorePath(dir_, b));
      detail::RemoveFile(Segment::IndexPath(dir_, b));
    }
    if (lock_file) detail::RemoveFile(dir_ / "LOCK");
    detail::SyncDirectory(dir_);
  }

  std::filesystem::path dir_;
  Config config_;
  [[no_unique_address]] C codec_;
  S sync_;

  detail::DirectoryLock dir_lock_;
  mutable std::shared_mutex segments_mu_;  // guards segments_
  Segments segments_;
  // What Read and View use without the lock (SegmentTable, above).
  std::atomic<const SegmentTable*> table_{nullptr};
  std::unique_ptr<const SegmentTable> table_owner_;
  detail::ReaderRegistry readers_;
  std::mutex append_mu_;  // one writer at a time; segments_ changes only under it
  std::atomic<std::uint64_t> next_offset_{0}, lowest_offset_{0};
  std::atomic<bool> closed_{false}, poisoned_{false};

  mutable std::mutex sync_mu_;  // guards the group-commit state
  std::condition_variable sync_cv_;
  std::uint64_t synced_next_ = 0;
  std::uint64_t generation_ = 0;  // one per Open; changed with append_mu_ held too
  bool syncing_ = false;
  std::string poison_reason_;

  mutable std::atomic<std::uint64_t> tail_waiters_{0};  // readers in WaitFor
  mutable std::mutex tail_mu_;
  mutable std::condition_variable tail_cv_;

  std::jthread syncer_;
};

}  // namespace logsync
