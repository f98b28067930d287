#pragma once
/// SegmentSet: the ordered segments of one log directory, and how readers
/// find them.
///
/// The set owns the list of segments (oldest first; the last is the active
/// one), the lock that guards it, and a table of it published for readers
/// that take no lock: Read and View announce themselves in a slot of the
/// reader registry (detail/reader_registry.hpp), look the offset up in the
/// published table and use the segment; a writer that changes the list
/// publishes a new table and waits until no reader can hold the old one
/// before it frees the table or lets a segment go. Readers that need the
/// segments for longer (a Scan, a Reader, Verify, a snapshot) Hold() them:
/// a copy of the list, which keeps each segment's files mapped until the
/// last holder lets go.
///
/// The active store's pages can be mapped ahead of the writer by a
/// prefaulter (detail/prefaulter.hpp; Prefault::kAhead).
///
/// A roll starts the new segment and hands the full one to a sealer
/// (detail/sealer.hpp), which syncs and trims it in the background; every
/// sync of the log first waits for it (FinishSeals). After a crash, Open
/// recovers the segments whose seals were cut short (see Open).
///
/// One writer at a time (the log's append lock): Open, Close, Append,
/// Roll, CountThrough, RemovePrefix; all but Open need an open set (the
/// caller checks). Readers run alongside, any number. A closed set (before
/// Open, after Close) holds no segment; readers get StateError.

#include <logsync/config.hpp>
#include <logsync/detail/file.hpp>
#include <logsync/detail/prefaulter.hpp>
#include <logsync/detail/reader_registry.hpp>
#include <logsync/detail/sealer.hpp>
#include <logsync/error.hpp>
#include <logsync/format.hpp>
#include <logsync/segment.hpp>
#include <logsync/stats.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <iterator>
#include <memory>
#include <mutex>
#include <new>
#include <shared_mutex>
#include <span>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace logsync {

class SegmentSet {
 public:
  using SegmentPtr = std::shared_ptr<Segment>;
  using Segments = std::vector<SegmentPtr>;

  /// The segments at one moment and the log's next offset then, which the
  /// last of them reaches: what a reader holds (see the file comment).
  struct Held {
    Segments segments;
    std::uint64_t next_offset = 0;
  };

  /// The sorted base offsets of a directory's stores and of its indexes.
  struct FileBases {
    std::vector<std::uint64_t> stores, indexes;
  };

  /// Whether the active segment's pages are mapped ahead of the writer
  /// (detail/prefaulter.hpp): for logs that do not sync as they go.
  enum class Prefault { kOff, kAhead };

  /// A closed set for the log in `dir`; `config` is resolved.
  SegmentSet(std::filesystem::path dir, const Config& config, Prefault prefault = Prefault::kOff)
      : dir_(std::move(dir)), config_(config), prefault_(prefault == Prefault::kAhead), sealer_(dir_) {}
  SegmentSet(const SegmentSet&) = delete;
  SegmentSet& operator=(const SegmentSet&) = delete;

  // ---- the directory ------------------------------------------------------

  /// Lists the directory's segment files, in one pass. An entry with a
  /// segment file's name that is not a regular file (a symbolic link, a
  /// directory, a fifo, a device) is refused with a CorruptionError naming
  /// it: skipping it could hand out offsets that were acknowledged, and
  /// nothing is deleted on its account.
  static FileBases ListFiles(const std::filesystem::path& dir) {
    namespace fs = std::filesystem;
    FileBases found;
    std::error_code ec;
    fs::directory_iterator it(dir, ec);
    for (; !ec && it != fs::directory_iterator(); it.increment(ec)) {
      const std::string name = it->path().filename().string();
      std::vector<std::uint64_t>* bases = &found.stores;
      auto b = detail::ParseSegmentName(name, detail::kStoreExtension);
      if (!b) {
        b = detail::ParseSegmentName(name, detail::kIndexExtension);
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
    if (ec) throw IoError(dir, ec.value(), "list directory");
    std::sort(found.stores.begin(), found.stores.end());
    std::sort(found.indexes.begin(), found.indexes.end());
    return found;
  }

  /// Deletes every segment file of `dir`, oldest first, each store before
  /// its index, so that a crash part way leaves a log that opens (a
  /// suffix). The directory is not synced: the caller does that.
  static void RemoveFiles(const std::filesystem::path& dir) {
    auto [bases, indexes] = ListFiles(dir);
    bases.insert(bases.end(), indexes.begin(), indexes.end());
    std::sort(bases.begin(), bases.end());
    bases.erase(std::unique(bases.begin(), bases.end()), bases.end());
    for (std::uint64_t b : bases) {
      detail::RemoveFile(Segment::StorePath(dir, b));
      detail::RemoveFile(Segment::IndexPath(dir, b));
    }
  }

  /// Opens (and recovers) the segments in the directory, or creates the
  /// first one at Config::segment.initial_offset, and publishes them. The
  /// set must be closed. Throws CorruptionError when segments do not follow
  /// on from each other.
  ///
  /// Seals finish in roll order and no sync finishes while a seal before it
  /// is pending (detail/sealer.hpp). So when a segment before the newest is
  /// not sealed on disk and no segment after it ever finished a sync, a
  /// crash cut its seal short: it and the ones after it are recovered as
  /// the active segment is (torn tails cut). If one then ends before the
  /// next begins, the segments after it go (newest first, so that a crash
  /// part way leads the next open to the same decision): they hold nothing
  /// a sync covered, and a crash loses only a suffix. Otherwise each is
  /// sealed. A segment that is not sealed while a later one synced is
  /// damage, handled as before (rebuilt, or reported, never cut).
  ///
  /// Returns what the segments' recoveries found and what Open changed.
  RecoveryStats Open() {
    sealer_.Restart();
    RecoveryStats found;
    const auto [stores, indexes] = ListFiles(dir_);
    // An index whose store is gone is what an interrupted removal leaves.
    for (std::uint64_t b : indexes)
      if (!std::binary_search(stores.begin(), stores.end(), b)) {
        detail::RemoveFile(Segment::IndexPath(dir_, b));
        detail::AddAction(found, Segment::IndexPath(dir_, b).filename().string() +
                                     ": removed at byte 0 (its store is gone: an interrupted removal)");
      }

    std::size_t recover_from = stores.empty() ? 0 : stores.size() - 1;
    for (std::size_t i = 0; i + 1 < stores.size(); ++i) {
      if (Segment::SealedOnDisk(dir_, stores[i])) continue;
      const bool synced_after = std::any_of(stores.begin() + static_cast<std::ptrdiff_t>(i) + 1, stores.end(),
                                            [&](std::uint64_t b) { return Segment::SyncedOnDisk(dir_, b); });
      if (!synced_after) {
        recover_from = i;
        break;
      }
    }
    Segments segs;
    std::size_t end = stores.size();
    for (std::size_t i = 0; i < end; ++i) {
      const auto role = i >= recover_from ? Segment::Role::kActive : Segment::Role::kSealed;
      auto [seg, recovery] = Segment::Recover(dir_, stores[i], config_, role);
      detail::AddRecovery(found, std::move(recovery));
      if (!segs.empty() && seg->BaseOffset() != segs.back()->NextOffset())
        throw CorruptionError(seg->StoreFile(), 0,
                              "segment starts at offset " + std::to_string(seg->BaseOffset()) +
                                  " but the one before it ends at " + std::to_string(segs.back()->NextOffset()));
      if (role == Segment::Role::kActive && i + 1 < end) {
        if (seg->NextOffset() == stores[i + 1]) {
          seg->Seal();
          detail::AddAction(found, seg->StoreFile().filename().string() + ": sealed at byte " +
                                       std::to_string(seg->CommittedBytes()) + " (its seal was cut short)");
        } else {
          for (std::size_t j = end - 1; j > i; --j) {
            detail::RemoveFile(Segment::StorePath(dir_, stores[j]));
            detail::RemoveFile(Segment::IndexPath(dir_, stores[j]));
            ++found.segments_removed;
            detail::AddAction(found, Segment::StorePath(dir_, stores[j]).filename().string() +
                                         ": removed with its index at byte 0 (the segment before it, cut short "
                                         "in its seal, ends at offset " +
                                         std::to_string(seg->NextOffset()) + ")");
          }
          detail::SyncDirectory(dir_);
          end = i + 1;
        }
      }
      segs.push_back(std::move(seg));
    }
    if (segs.empty()) segs.push_back(Segment::Create(dir_, config_.segment.initial_offset, config_));
    segs.back()->SetPrefault(prefault_);
    std::unique_lock w(mu_);
    segments_ = std::move(segs);
    lowest_offset_.store(segments_.front()->BaseOffset(), std::memory_order_release);
    next_offset_.store(segments_.back()->NextOffset(), std::memory_order_release);
    Publish();
    return found;
  }

  /// Closes the set: waits for the seals under way, takes its segments out
  /// and returns them (the active one last). When it returns, no lock-free
  /// reader uses any of them. `sealed`: whether every rolled segment was
  /// sealed (false after a failed seal: the active one must not be sealed
  /// then, see Open).
  Segments Close(bool* sealed = nullptr) {
    prefaulter_.Stop();
    const bool ok = sealer_.Stop();
    if (sealed) *sealed = ok;
    Segments segs;
    std::unique_lock w(mu_);
    segs.swap(segments_);
    Publish();
    return segs;
  }

  /// Waits until every segment rolled so far is sealed (and the directory
  /// synced): what must hold before a sync of the active segment counts.
  /// Throws SyncError if a seal failed. Any thread.
  void FinishSeals() const { sealer_.Finish(); }

  /// Throws SyncError if a background seal failed.
  void ThrowIfSealFailed() const { sealer_.ThrowIfFailed(); }

  // ---- readers (any thread) -----------------------------------------------

  /// Offset of the oldest record held.
  std::uint64_t LowestOffset() const noexcept { return lowest_offset_.load(std::memory_order_acquire); }
  /// One past the newest record published.
  std::uint64_t NextOffset() const noexcept { return next_offset_.load(std::memory_order_acquire); }

  /// Calls `fn(payload)` with the checked payload of the record at
  /// `offset` (a view into its store's mapping, valid during the call) and
  /// returns what `fn` returns. Throws OffsetOutOfRange, CorruptionError,
  /// or StateError on a closed set.
  template <class F>
  decltype(auto) View(std::uint64_t offset, F& fn) const {
    // No locked instruction on this path: the reader announces itself in
    // its own slot and uses the published table; writers wait for it before
    // they free a table or let a segment go.
    {
      detail::ReaderRegistry::Guard guard(readers_);
      if (const Table* table = guard.Registered() ? table_.load(std::memory_order_acquire) : nullptr)
        return fn(Find(*table, offset).Payload(offset));
    }
    // No slot, or no table (closed, or none could be built): the shared
    // lock, taken only once this thread has left its slot, since a writer
    // holds the lock exclusively while it waits for readers in slots.
    std::shared_lock lock(mu_);
    return fn(FindLocked(offset).Payload(offset));
  }

  /// Calls `fn(offset, payload)` for each of `offsets` in order, as View
  /// does for one. Throws OffsetOutOfRange before calling `fn` at all if any
  /// offset is not held; it loads the index entries and frames of up to 16
  /// records before it checks the first.
  template <class F>
  void ViewBatch(std::span<const std::uint64_t> offsets, F& fn) const {
    {
      detail::ReaderRegistry::Guard guard(readers_);
      if (const Table* table = guard.Registered() ? table_.load(std::memory_order_acquire) : nullptr)
        return ViewBatchIn(*table, offsets, fn);
    }
    std::shared_lock lock(mu_);  // no slot, or no table: see View
    for (const std::uint64_t o : offsets) FindLocked(o);  // every range first
    for (const std::uint64_t o : offsets) fn(o, FindLocked(o).Payload(o));
  }

  /// The segments now, and the next offset they reach; StateError if closed.
  Held Hold() const {
    std::shared_lock lock(mu_);
    if (segments_.empty()) throw detail::LogClosed(dir_);
    return {segments_, next_offset_.load(std::memory_order_acquire)};
  }

  /// The active segment; StateError if closed.
  SegmentPtr Active() const {
    std::shared_lock lock(mu_);
    if (segments_.empty()) throw detail::LogClosed(dir_);
    return segments_.back();
  }

  /// Number of segments (0 when closed).
  std::size_t Size() const {
    std::shared_lock lock(mu_);
    return segments_.size();
  }

  /// What the segments hold of the system's: see Resources().
  struct Usage {
    std::uint64_t segments = 0, open_files = 0, mappings = 0;
  };

  /// The segments' count, file descriptors and mappings (all 0 when
  /// closed): a pass over the list under the shared lock, no system call.
  Usage Resources() const {
    std::shared_lock lock(mu_);
    Usage u;
    u.segments = segments_.size();
    for (const auto& seg : segments_) {
      u.open_files += seg->OpenFiles();
      u.mappings += seg->Mappings();
    }
    return u;
  }

  // ---- the writer (one at a time) -----------------------------------------

  /// Appends frames whose payloads are in place (see Segment::Append for
  /// `frames`, `lengths` and `payload_crcs`) at the next offsets; returns the
  /// first. They go into the active segment, or all into a new one when they
  /// do not fit the active one but fit an empty one; only a batch larger
  /// than a segment is split over several. Throws what the segments throw;
  /// a SyncError comes from sealing or creating a segment in a roll.
  std::uint64_t Append(std::span<std::byte> frames, std::span<const std::uint32_t> lengths,
                       std::span<const std::uint32_t> payload_crcs) {
    sealer_.ThrowIfFailed();
    const std::uint64_t first = next_offset_.load(std::memory_order_relaxed);
    const std::size_t n = lengths.size();
    Segment* seg = segments_.back().get();
    bool fits = seg->Fits(frames.size(), n);
    if (!fits && (seg->IsFull() || Segment::FitsEmpty(config_, frames.size(), n))) {
      seg = &Roll();
      fits = seg->Fits(frames.size(), n);
    }
    if (fits) {  // the common case: one write
      seg->Append(frames, lengths, payload_crcs);
      next_offset_.store(seg->NextOffset(), std::memory_order_release);
      PrefaultAhead();
      return first;
    }
    std::size_t i = 0;
    std::uint64_t at = 0;
    while (i < n) {
      std::size_t j = i;
      std::uint64_t bytes = 0;
      while (j < n && seg->Fits(bytes + kFrameHeaderBytes + lengths[j], j + 1 - i)) bytes += kFrameHeaderBytes + lengths[j++];
      if (j == i) {
        seg = &Roll();
        continue;
      }
      seg->Append(frames.subspan(at, bytes), lengths.subspan(i, j - i), payload_crcs.subspan(i, j - i));
      next_offset_.store(seg->NextOffset(), std::memory_order_release);
      at += bytes;
      i = j;
    }
    PrefaultAhead();
    return first;
  }

  /// Starts a new segment at the active one's next offset and hands the
  /// full one to the sealer (see the file comment). Throws IoError if the
  /// new segment cannot be made (nothing changes then), SyncError if a
  /// seal failed before.
  Segment& Roll() {
    SegmentPtr old = segments_.back();
    SegmentPtr next = Segment::Create(dir_, old->NextOffset(), config_, Segment::DirSync::kDeferred);
    next->SetPrefault(prefault_);
    try {
      sealer_.Submit(old);  // before `next` is visible: a sync that sees it waits for this seal
    } catch (...) {
      next->RemoveFiles();  // no thread to seal with: no roll
      throw;
    }
    std::unique_lock w(mu_);
    segments_.push_back(next);
    Publish();
    return *next;
  }

  /// How many segments, oldest first, hold only offsets <= `lowest`
  /// (stopping at the first empty one): what RemovePrefix removes. When
  /// that is all of them, Roll first, so the log goes on in an empty one.
  std::size_t CountThrough(std::uint64_t lowest) const noexcept {
    std::size_t k = 0;
    while (k < segments_.size() && !segments_[k]->Empty() && segments_[k]->NextOffset() - 1 <= lowest) ++k;
    return k;
  }

  /// Removes the segments CountThrough(lowest) counts, but never the active
  /// one: their files go first, oldest first, each store before its index.
  /// If a removal fails (IoError), the set keeps, in memory as on disk, the
  /// segments from the one that failed on. Holders keep their segments.
  /// Returns how many went.
  std::size_t RemovePrefix(std::uint64_t lowest) {
    const std::size_t k = std::min(CountThrough(lowest), segments_.size() - 1);
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
      {
        std::unique_lock w(mu_);
        const auto end = segments_.begin() + static_cast<std::ptrdiff_t>(gone_count);
        gone.assign(segments_.begin(), end);
        segments_.erase(segments_.begin(), end);
        lowest_offset_.store(segments_.front()->BaseOffset(), std::memory_order_release);
        Publish();  // readers are done with `gone` when it returns
      }
      detail::SyncDirectory(dir_);
    }
    if (failure) std::rethrow_exception(failure);
    return gone_count;
  }

 private:
  // Hands what the active store allocated ahead to the prefaulter (writer).
  void PrefaultAhead() {
    if (!prefault_) return;
    if (auto ahead = segments_.back()->TakeAhead()) prefaulter_.Submit(segments_.back(), *ahead);
  }

  // What Read and View use without the lock: the segments and their base
  // offsets, published after every change to segments_.
  struct Table {
    std::vector<std::uint64_t> bases;
    std::vector<const Segment*> segments;
  };

  // The segment holding `offset` in a published table (reader guard held);
  // throws OffsetOutOfRange.
  static const Segment& Find(const Table& table, std::uint64_t offset) {
    const auto it = std::upper_bound(table.bases.begin(), table.bases.end(), offset);
    if (it == table.bases.begin()) throw OffsetOutOfRange(offset);
    const Segment& seg = *table.segments[static_cast<std::size_t>(it - table.bases.begin()) - 1];
    if (offset >= seg.NextOffset()) throw OffsetOutOfRange(offset);
    return seg;
  }

  // The same under the shared lock; StateError when the set is closed.
  const Segment& FindLocked(std::uint64_t offset) const {
    if (segments_.empty()) throw detail::LogClosed(dir_);  // a Close raced this call
    auto it = std::upper_bound(segments_.begin(), segments_.end(), offset,
                               [](std::uint64_t o, const SegmentPtr& s) { return o < s->BaseOffset(); });
    if (it == segments_.begin()) throw OffsetOutOfRange(offset);
    const Segment& seg = **std::prev(it);
    if (offset >= seg.NextOffset()) throw OffsetOutOfRange(offset);
    return seg;
  }

  // ViewBatch over a published table (reader guard held).
  template <class F>
  static void ViewBatchIn(const Table& table, std::span<const std::uint64_t> offsets, F& fn) {
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

  // Publishes segments_ (mu_ held exclusively) to the lock-free readers,
  // and frees the table it replaces once no reader can hold it: on return,
  // no reader uses a segment that is no longer in segments_. Without memory
  // for a new table, readers take the shared lock until the next publish.
  void Publish() noexcept {
    std::unique_ptr<const Table> next;
    try {
      if (!segments_.empty()) {
        auto t = std::make_unique<Table>();
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

  const std::filesystem::path dir_;
  const Config config_;
  const bool prefault_;
  mutable detail::Sealer sealer_;  // seals rolled segments; stopped by Close (Finish is a wait, not a change)
  detail::Prefaulter prefaulter_;  // stopped by Close, before the sealer

  mutable std::shared_mutex mu_;  // guards segments_; the writer changes it only under it, exclusively
  Segments segments_;
  std::atomic<const Table*> table_{nullptr};  // what readers use without mu_
  std::unique_ptr<const Table> table_owner_;
  detail::ReaderRegistry readers_;
  std::atomic<std::uint64_t> lowest_offset_{0}, next_offset_{0};
};

}  // namespace logsync
