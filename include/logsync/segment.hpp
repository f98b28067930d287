#pragma once
/// Segment: one Store and one Index sharing a base offset.
///
/// A segment is either active (the newest: writable, index preallocated) or
/// sealed (read-only, index trimmed, synced). Opening one re-derives how many
/// records it holds from the store:
///
///  - a sealed segment is checked cheaply (a valid index header, whole
///    entries, the last entry ends exactly at the end of the store); when
///    that fails its index is rebuilt from the store, and bytes after the
///    last whole frame are reported as CorruptionError;
///  - the active segment is clean when its index is trimmed to exactly the
///    records of its checkpoint, which end at the end of the store (what
///    Close leaves): then nothing is read. Otherwise (a crash) the index
///    entries up to the checkpoint that chain through the store are trusted,
///    every frame after them is checked (offset, length, CRC) and indexed,
///    and the first that does not hold (torn, zero-filled, garbage) ends the
///    segment; the tail after it is cut off. The work is proportional to
///    what was written after the last sync.
///
/// Recover opens a segment as Open does and returns, with it, what its
/// recovery checked and changed (stats.hpp's RecoveryStats): the caller
/// adds that up; nothing here reports to the log above.

#include <logsync/config.hpp>
#include <logsync/detail/file.hpp>
#include <logsync/error.hpp>
#include <logsync/format.hpp>
#include <logsync/index.hpp>
#include <logsync/stats.hpp>
#include <logsync/store.hpp>
#include <logsync/verify.hpp>

#include <algorithm>
#include <array>
#include <cstring>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace logsync {

/// One store + one index. Thread safety as for Store and Index: one writer,
/// any number of readers of published records.
class Segment {
 public:
  /// Whether a segment is opened as the newest one, which takes appends, or
  /// as a sealed one (see the file comment).
  enum class Role { kActive, kSealed };

  static std::filesystem::path StorePath(const std::filesystem::path& dir, std::uint64_t base) {
    return dir / (detail::SegmentStem(base) + std::string(detail::kStoreExtension));
  }
  static std::filesystem::path IndexPath(const std::filesystem::path& dir, std::uint64_t base) {
    return dir / (detail::SegmentStem(base) + std::string(detail::kIndexExtension));
  }

  /// Whether Create syncs the directory, or leaves that to its caller (a
  /// roll: the sealer syncs it after sealing the segment before).
  enum class DirSync { kNow, kDeferred };

  /// Creates a new, empty, active segment.
  static std::shared_ptr<Segment> Create(const std::filesystem::path& dir, std::uint64_t base, const Config& c,
                                         DirSync dir_sync = DirSync::kNow) {
    detail::RemoveFile(IndexPath(dir, base));  // a leftover of a crash before its store existed
    auto s = std::shared_ptr<Segment>(new Segment(dir, base, c));
    try {
      s->store_.emplace(Store::Create(StorePath(dir, base), base));
      s->index_ = std::make_unique<Index>(IndexPath(dir, base), base, c.segment.max_index_bytes,
                                          detail::Access::kReadWrite);
      s->MapStore(Role::kActive);
      if (dir_sync == DirSync::kNow) detail::SyncDirectory(dir);
    } catch (...) {
      // Leave nothing half-made behind (a later roll creates the same names).
      if (s->store_) {
        s->store_.reset();
        detail::RemoveFile(StorePath(dir, base));
        detail::RemoveFile(IndexPath(dir, base));
      }
      throw;
    }
    return s;
  }

  /// Opens an existing segment (see the file comment for what is checked).
  static std::shared_ptr<Segment> Open(const std::filesystem::path& dir, std::uint64_t base, const Config& c,
                                       Role role) {
    return Recover(dir, base, c, role).segment;
  }

  /// An opened segment and what its recovery found (see Recover).
  struct Opened {
    std::shared_ptr<Segment> segment;
    RecoveryStats recovery;
  };

  /// Opens an existing segment as Open does; also returns what recovery
  /// checked and changed (segments is 1; actions empty when nothing changed).
  static Opened Recover(const std::filesystem::path& dir, std::uint64_t base, const Config& c, Role role) {
    Opened o{std::shared_ptr<Segment>(new Segment(dir, base, c)), {}};
    o.recovery.segments = 1;
    if (role == Role::kActive)
      o.segment->OpenActive(o.recovery);
    else
      o.segment->OpenSealed(o.recovery);
    o.segment->MapStore(role);
    return o;
  }

  /// Whether the files of the segment at `base` are as a finished Seal
  /// leaves them: an index with this segment's header and a checkpoint
  /// vouching for all of its whole entries, the last of which ends where
  /// the checkpoint and the store end (a segment that holds no record is
  /// never sealed: rolls leave none behind). Reads the index header, its
  /// last entry and two sizes.
  static bool SealedOnDisk(const std::filesystem::path& dir, std::uint64_t base) {
    const auto store_size = std::filesystem::file_size(StorePath(dir, base));
    std::error_code ec;
    if (!std::filesystem::exists(IndexPath(dir, base), ec)) return false;
    detail::File index(IndexPath(dir, base), O_RDONLY);
    const std::uint64_t size = index.Size();
    std::array<std::byte, kIndexHeaderBytes> h{};
    if (size < kIndexHeaderBytes || index.ReadAt(h, 0) != h.size() || !detail::IndexHeaderMatches(h.data(), base))
      return false;
    const auto cp = detail::ReadIndexCheckpoint(h.data());
    const std::uint64_t entries = (size - kIndexHeaderBytes) / kIndexEntryBytes;
    if (!cp || (size - kIndexHeaderBytes) % kIndexEntryBytes != 0 || entries == 0 || cp->records != entries ||
        cp->store_bytes != store_size)
      return false;
    std::array<std::byte, kIndexEntryBytes> last{};
    if (index.ReadAt(last, detail::IndexEntryPosition(entries - 1)) != last.size()) return false;
    const IndexEntry e = detail::ReadIndexEntry(last.data());
    return e.relative == entries - 1 && e.End() == store_size;
  }

  /// Whether the index of the segment at `base` holds a checkpoint that
  /// vouches for at least one record: a sync of the segment finished.
  static bool SyncedOnDisk(const std::filesystem::path& dir, std::uint64_t base) {
    std::error_code ec;
    if (!std::filesystem::exists(IndexPath(dir, base), ec)) return false;
    detail::File index(IndexPath(dir, base), O_RDONLY);
    std::array<std::byte, kIndexHeaderBytes> h{};
    if (index.ReadAt(h, 0) != h.size() || !detail::IndexHeaderMatches(h.data(), base)) return false;
    const auto cp = detail::ReadIndexCheckpoint(h.data());
    return cp && cp->records > 0;
  }

  std::uint64_t BaseOffset() const noexcept { return base_; }
  /// One past the last published record.
  std::uint64_t NextOffset() const noexcept { return base_ + index_->Count(); }
  std::uint64_t Count() const noexcept { return index_->Count(); }
  bool Empty() const noexcept { return Count() == 0; }
  bool Sealed() const noexcept { return !index_->Writable(); }
  const std::filesystem::path& StoreFile() const noexcept { return store_->path(); }
  const std::filesystem::path& IndexFile() const noexcept { return index_->path(); }

  /// File descriptors the segment holds: its store's, and its index's
  /// while the index is writable (a sealed index keeps only its mapping).
  std::uint64_t OpenFiles() const noexcept { return 1 + (index_->Writable() ? 1 : 0); }
  /// Memory mappings the segment holds (store and index).
  std::uint64_t Mappings() const noexcept { return (store_->MappedBytes() > 0 ? 1 : 0) + (index_->Mapped() ? 1 : 0); }

  /// Whether `records` more records, `frame_bytes` in all, fit in this segment.
  bool Fits(std::uint64_t frame_bytes, std::uint64_t records) const noexcept {
    return !Sealed() && store_->Size() + frame_bytes <= config_.segment.max_store_bytes &&
           index_->Count() + records <= index_->Capacity();
  }

  /// Whether not even one more (empty) record fits.
  bool IsFull() const noexcept { return !Fits(kFrameHeaderBytes, 1); }

  /// Whether `records` records, `frame_bytes` in all, fit in an empty
  /// segment of config `c` (a batch that does not is split over segments).
  static bool FitsEmpty(const Config& c, std::uint64_t frame_bytes, std::uint64_t records) noexcept {
    return kStoreHeaderBytes + frame_bytes <= c.segment.max_store_bytes &&
           records <= c.segment.max_index_bytes / kIndexEntryBytes;
  }

  /// Appends frames whose payloads are in place (writer only; the caller
  /// checked Fits): `frames` holds, back to back, a kFrameHeaderBytes blank
  /// and the payload of each record; `lengths` and `payload_crcs` each
  /// payload's length and CRC32C. Stamps each header with the record's
  /// offset (the next ones of this segment) and its frame CRC, writes the
  /// store, then the index entries. The records become visible to readers
  /// only once the store write and every index entry are done.
  void Append(std::span<std::byte> frames, std::span<const std::uint32_t> lengths,
              std::span<const std::uint32_t> payload_crcs) {
    std::uint64_t n = index_->Count();
    std::uint64_t at = 0;
    for (std::size_t k = 0; k < lengths.size(); ++k) {
      detail::WriteFrameHeader(frames.data() + at, base_ + n + k, lengths[k], payload_crcs[k]);
      at += kFrameHeaderBytes + lengths[k];
    }
    index_->Prepare(n + lengths.size());  // a full disk fails here, before anything is written
    std::uint64_t pos = store_->Append(frames);
    for (std::uint32_t len : lengths) {
      index_->Put(n, IndexEntry{static_cast<std::uint32_t>(n), len, pos});
      pos += kFrameHeaderBytes + len;
      ++n;
    }
    index_->SetCount(n);
  }

  /// See Store::SetPrefault (writer only).
  void SetPrefault(bool on) noexcept { store_->SetPrefault(on); }
  /// The store's room allocated ahead since the last call (writer only).
  std::optional<Store::Ahead> TakeAhead() noexcept { return store_->TakeAhead(); }
  /// Populates room a TakeAhead gave (any thread; a hint).
  void PopulateAhead(const Store::Ahead& a) const noexcept { store_->Populate(a); }

  /// Index entry of a published offset (the caller checked the range),
  /// checked against its neighbour: entries chain through the store, so a
  /// damaged entry of a sealed index (whose middle is not verified at open)
  /// is reported instead of sending a read to the wrong bytes or sizing a
  /// buffer from a garbage length.
  IndexEntry Entry(std::uint64_t offset) const {
    const std::uint64_t i = offset - base_;
    const IndexEntry e = index_->At(i);
    const bool chained = i + 1 >= index_->Count() || e.End() == index_->At(i + 1).position;
    if (e.relative != i || e.position < kStoreHeaderBytes || !chained)
      throw CorruptionError(IndexFile(), detail::IndexEntryPosition(i),
                            "index entry of offset " + std::to_string(offset) + " does not chain with its neighbours");
    return e;
  }

  /// The checked frame of a published offset: its payload, a view into the
  /// store's mapping, valid while this segment is alive (the Log keeps
  /// segments alive while a Scan or Reader uses them).
  std::span<const std::byte> Payload(std::uint64_t offset) const {
    const IndexEntry e = Entry(offset);
    if (e.End() > store_->MappedBytes())
      throw CorruptionError(StoreFile(), e.position, "frame of offset " + std::to_string(offset) +
                                                         " runs past the end of the store");
    const auto frame = store_->View(e.position, e.FrameBytes());
    if (const char* why = detail::CheckFrame(frame, offset))
      throw CorruptionError(StoreFile(), e.position, std::string(why) + " (offset " + std::to_string(offset) + ")");
    return frame.subspan(kFrameHeaderBytes);
  }

  /// Starts loading the index entry of a published offset into the cache
  /// (a hint: nothing is checked or read).
  void PrefetchEntry(std::uint64_t offset) const noexcept { index_->Prefetch(offset - base_); }

  /// Starts loading the frame of a published offset into the cache, as its
  /// index entry says (a hint: a damaged entry is reported by Payload).
  void PrefetchFrame(std::uint64_t offset) const noexcept {
    const IndexEntry e = index_->At(offset - base_);
    if (e.End() > store_->MappedBytes() || e.position > e.End()) return;
    const auto frame = store_->View(e.position, e.FrameBytes());
    __builtin_prefetch(frame.data());
    __builtin_prefetch(frame.data() + frame.size() - 1);
  }

  /// Store bytes [pos, pos + out.size()), which must be below CommittedBytes().
  void ReadStore(std::span<std::byte> out, std::uint64_t pos) const {
    const auto v = store_->View(pos, out.size());
    std::copy(v.begin(), v.end(), out.begin());
  }

  /// Takes the store's whole pages in [pos, pos + len) out of the resident
  /// set, for a reader that streamed them (ByteReader); a hint.
  void ReleaseStore(std::uint64_t pos, std::uint64_t len) const noexcept { store_->Release(pos, len); }

  /// Store bytes covered by published records (header included).
  std::uint64_t CommittedBytes() const noexcept { return CommittedBytes(Count()); }

  /// Store bytes covered by the first `n` (<= Count()) records, header
  /// included: with n read once from Count(), a consistent end.
  std::uint64_t CommittedBytes(std::uint64_t n) const noexcept {
    return n == 0 ? kStoreHeaderBytes : index_->At(n - 1).End();
  }

  /// fdatasync of the store: every record published before the call is
  /// durable; records it in the index's checkpoint. Any thread.
  void SyncStore() const {
    SyncThenCheckpoint([this] { store_->Sync(); });
  }

  /// msync of the index's published entries.
  void SyncIndex() const { index_->Sync(); }

  /// Syncs, trims the index and makes the segment read-only. Readers may go on.
  void Seal() {
    if (Sealed()) return;
    SyncThenCheckpoint([this] { store_->Trim(); });  // cut what was allocated ahead; fsync
    index_->Trim();
  }

  /// Checks every published record: its frame (offset, length, CRC) and its
  /// index entry; a sealed store must end with its last record. Adds what
  /// it finds to `report`. Any thread, while appends go on.
  void Verify(VerifyReport& report) const {
    ++report.segments;
    const bool sealed = Sealed();
    const std::uint64_t n = Count();
    const std::uint64_t end = sealed ? store_->Size() : CommittedBytes(n);
    detail::FrameCursor cursor(*store_, kStoreHeaderBytes, end);
    detail::FrameHeader h{};
    for (std::uint64_t i = 0; i < n; ++i) {
      const std::uint64_t pos = cursor.Position();
      const IndexEntry e = index_->At(i);
      if (const char* why = cursor.Next(base_ + i, h)) {
        report.Add(StoreFile(), pos, std::string(why) + " (offset " + std::to_string(base_ + i) + ")");
        // Go on at the next record's index entry, if it points further on.
        const IndexEntry next = i + 1 < n ? index_->At(i + 1) : IndexEntry{};
        if (i + 1 < n && next.position > pos && next.position < end) {
          cursor.Seek(next.position);
          continue;
        }
        if (i + 1 < n)
          report.Add(StoreFile(), pos, "records " + std::to_string(base_ + i + 1) + " to " +
                                           std::to_string(base_ + n - 1) + " could not be reached");
        return;
      }
      if (e.relative != i || e.position != pos || e.length != h.length)
        report.Add(IndexFile(), detail::IndexEntryPosition(i),
                   "index entry of offset " + std::to_string(base_ + i) + " does not match its frame");
      else
        ++report.records, report.payload_bytes += h.length;
    }
    if (sealed && cursor.Position() != end)
      report.Add(StoreFile(), cursor.Position(), "sealed store holds bytes after its last record");
  }

  /// Deletes both files (store first: an index without its store is
  /// discarded on open). Open descriptors and mappings stay valid until the
  /// last holder of the segment lets go.
  void RemoveFiles() const {
    detail::RemoveFile(StoreFile());
    detail::RemoveFile(IndexFile());
  }

 private:
  Segment(std::filesystem::path dir, std::uint64_t base, const Config& c)
      : dir_(std::move(dir)), base_(base), config_(c) {}

  // Runs `sync` (which makes the store durable) and records in the index's
  // checkpoint the records published before it began.
  template <class F>
  void SyncThenCheckpoint(F sync) const {
    const std::uint64_t n = Count();
    const std::uint64_t bytes = CommittedBytes(n);
    sync();
    index_->WriteCheckpoint(n, bytes);
  }

  // Maps the store: an active one writable, as far as it may grow, with the
  // file allocated ahead of the records by up to a sixteenth of a segment
  // (at most 8 MiB); a sealed one read-only.
  void MapStore(Role role) {
    const std::uint64_t max = config_.segment.max_store_bytes;
    if (role == Role::kActive)
      store_->Map(std::max(max, store_->Size()), std::clamp<std::uint64_t>(max / 16, 1, 8ULL << 20));
    else
      store_->Map(store_->Size());
  }

  // The newest segment: see the file comment. Adds what it checks and
  // changes to `rec`.
  void OpenActive(RecoveryStats& rec) {
    const auto store_path = StorePath(dir_, base_);
    {
      // A header that never reached the disk whole (its store was never
      // synced, so nothing in it was acknowledged as durable) is written
      // again; the frames after it are then checked like any others.
      detail::File probe(store_path, O_RDWR);
      if (TornHeader(probe)) {
        probe.WriteAt(detail::StoreHeader(base_), 0);
        detail::AddAction(rec, Name(store_path) + ": header rewritten at byte 0 (torn before the store's first sync)");
      }
    }
    if (!store_) store_.emplace(Store::Open(store_path, base_, detail::Access::kReadWrite));
    index_ = std::make_unique<Index>(IndexPath(dir_, base_), base_, config_.segment.max_index_bytes,
                                     detail::Access::kReadWrite);
    const std::uint64_t size = store_->Size();
    std::uint64_t n = 0, end = kStoreHeaderBytes;
    const auto cp = index_->CheckpointOnDisk();
    const bool vouched = cp && cp->store_bytes <= size;  // a checkpoint that can be true
    if (vouched) {
      const std::uint64_t k = cp->records;
      // Clean: trimmed to the checkpoint's entries, which chain to the end
      // of the store (a pass over the mapped entries; no store read).
      const bool clean = index_->WholeEntriesOnDisk() && index_->EntriesOnDisk() == k && cp->store_bytes == size &&
                         TrustedEntries(k) == k && CommittedBytes(k) == size;
      if (clean) {
        index_->SetCount(k);
        return;
      }
      // After a crash: the entries the checkpoint vouches for, as far as
      // they chain through the store (index pages need not have reached the
      // disk), if they agree with the checkpoint. When the chain stops
      // short of it, the last trusted entry's frame is checked too: nothing
      // after it confirms its length.
      n = TrustedEntries(k);
      end = CommittedBytes(n);
      if (end > cp->store_bytes || (n == k && end != cp->store_bytes) || (n > 0 && n < k && !FrameHolds(n - 1))) {
        n = 0;
        end = kStoreHeaderBytes;
      }
    }
    const std::uint64_t trusted = n, from = end;
    Tail tail;
    end = ScanTail(n, end, &tail);
    // A frame a sync covered that does not hold is damage, not a torn
    // tail: cutting it off would drop durable records after it.
    if (vouched && end < cp->store_bytes)
      throw CorruptionError(StoreFile(), end,
                            "frame of offset " + std::to_string(NextOffset()) +
                                " does not hold, but a sync covered it (the index checkpoint says the store was "
                                "durable through byte " +
                                std::to_string(cp->store_bytes) + "); the store is left as it is");
    rec.bytes_checked += end - from;
    rec.records_recovered += Count() - trusted;
    if (Count() > trusted)
      detail::AddAction(rec, Name(StoreFile()) + ": " + std::to_string(Count() - trusted) +
                                 " records at bytes " + std::to_string(from) + " to " + std::to_string(end) +
                                 " checked and kept (past the last checkpoint)");
    if (end < size) {
      // The zeros the store was allocated with past its records are no
      // loss; the bytes before the last one that is not zero are.
      const std::uint64_t cut = tail.non_zero_end - end;
      store_->Truncate(end);
      rec.bytes_cut += cut;
      if (cut > 0)
        detail::AddAction(rec, Name(StoreFile()) + ": cut " + std::to_string(cut) + " bytes at byte " +
                                   std::to_string(end) + " (" + (tail.why ? tail.why : "not a whole frame") + ")");
    }
    // The checkpoint now says what recovery found durable, and nothing more.
    const std::uint64_t at = vouched ? RecordsEndingAt(cp->store_bytes) : kNoRecordCount;
    if (at != kNoRecordCount)
      index_->ResetCheckpoint(at, cp->store_bytes);
    else
      index_->ResetCheckpoint(0, kStoreHeaderBytes);
  }

  static constexpr std::uint64_t kNoRecordCount = ~0ULL;

  // How many published records end exactly at store position `pos`, or
  // kNoRecordCount if no record boundary is there.
  std::uint64_t RecordsEndingAt(std::uint64_t pos) const noexcept {
    std::uint64_t lo = 0, hi = Count();  // find the count c with CommittedBytes(c) == pos
    while (lo < hi) {
      const std::uint64_t mid = lo + (hi - lo + 1) / 2;
      if (CommittedBytes(mid) <= pos)
        lo = mid;
      else
        hi = mid - 1;
    }
    return CommittedBytes(lo) == pos ? lo : kNoRecordCount;
  }

  // Whether the frame of index entry i holds and matches the entry.
  bool FrameHolds(std::uint64_t i) const {
    const IndexEntry e = index_->At(i);
    detail::FrameCursor cursor(*store_, e.position, e.End());
    detail::FrameHeader h{};
    return cursor.Next(base_ + i, h) == nullptr && h.length == e.length;
  }

  // Whether a store's header is what a crash before its first sync leaves:
  // all zeros, or a prefix of the right header followed by zeros (a file
  // shorter than a header included). Any other bad header is not ours to
  // rewrite (Store::Open reports it).
  bool TornHeader(const detail::File& f) const {
    std::array<std::byte, kStoreHeaderBytes> got{};
    f.ReadAt(got, 0);  // a short file reads as zeros past its end
    const auto want = detail::StoreHeader(base_);
    if (got == want) return false;
    std::size_t k = 0;
    while (k < got.size() && got[k] == want[k]) ++k;
    return std::all_of(got.begin() + static_cast<std::ptrdiff_t>(k), got.end(),
                       [](std::byte b) { return b == std::byte{0}; });
  }

  // A sealed segment: see the file comment. Adds what it checks and
  // changes to `rec`.
  void OpenSealed(RecoveryStats& rec) {
    store_.emplace(Store::Open(StorePath(dir_, base_), base_, detail::Access::kReadOnly));
    const auto index_path = IndexPath(dir_, base_);
    std::error_code ec;
    const bool had_index = std::filesystem::exists(index_path, ec);
    if (had_index) {
      index_ = std::make_unique<Index>(index_path, base_, 0, detail::Access::kReadOnly);
      const std::uint64_t n = index_->EntriesOnDisk();
      if (index_->WholeEntriesOnDisk() && n > 0 && Agrees(n - 1, index_->At(n - 1)) &&
          index_->At(n - 1).End() == store_->Size()) {
        index_->SetCount(n);
        return;
      }
    }
    // The check failed: rebuild the index from the store.
    index_.reset();
    index_ = std::make_unique<Index>(index_path, base_, 0, detail::Access::kReadWrite);
    const std::uint64_t n = TrustedEntries();
    const std::uint64_t from = n == 0 ? kStoreHeaderBytes : index_->At(n - 1).End();
    const std::uint64_t end = ScanTail(n, from);
    if (end != store_->Size())
      throw CorruptionError(StoreFile(), end, "sealed segment holds bytes that are not a valid frame");
    index_->ResetCheckpoint(Count(), end);
    index_->Trim();
    ++rec.indexes_rebuilt;
    rec.bytes_checked += end - from;
    rec.records_recovered += Count() - n;
    detail::AddAction(rec, Name(index_path) + ": rebuilt from the store, " + std::to_string(Count()) +
                               " records, " + std::to_string(Count() - n) + " of them checked from byte " +
                               std::to_string(from) + " of the store (" +
                               (had_index ? "the index did not end with the store" : "the index was missing") + ")");
  }

  // Whether entry i is consistent with its place in the store.
  bool Agrees(std::uint64_t i, const IndexEntry& e) const noexcept {
    return e.relative == i && e.position >= kStoreHeaderBytes && e.End() <= store_->Size() && e.End() > e.position;
  }

  // The longest prefix (of at most `limit`) of on-disk index entries that
  // chain through the store.
  std::uint64_t TrustedEntries(std::uint64_t limit = ~0ULL) const noexcept {
    const std::uint64_t on_disk = std::min({index_->EntriesOnDisk(), index_->Capacity(), limit});
    std::uint64_t expected = kStoreHeaderBytes, i = 0;
    for (; i < on_disk; ++i) {
      IndexEntry e = index_->At(i);
      if (!Agrees(i, e) || e.position != expected) break;
      expected = e.End();
    }
    return i;
  }

  // What follows the last good frame ScanTail found.
  struct Tail {
    const char* why = nullptr;       // why the frame there does not hold
    std::uint64_t non_zero_end = 0;  // FrameCursor::NonZeroEnd from there
  };

  // Checks frames from `pos` (record n of the segment) and indexes each one
  // that holds; returns the end of the last good frame, and fills `tail`
  // if given.
  std::uint64_t ScanTail(std::uint64_t n, std::uint64_t pos, Tail* tail = nullptr) {
    detail::FrameCursor cursor(*store_, pos, store_->Size());
    detail::FrameHeader h{};
    const char* bad = nullptr;
    while (n < (1ULL << 32) && (bad = cursor.Next(base_ + n, h)) == nullptr) {
      index_->Reserve(n + 1);
      index_->Put(n, IndexEntry{static_cast<std::uint32_t>(n), h.length, pos});
      pos = cursor.Position();
      ++n;
    }
    if (tail) *tail = {bad, cursor.NonZeroEnd()};
    index_->SetCount(n);
    return pos;
  }

  // The file name of `p`, as actions name it.
  static std::string Name(const std::filesystem::path& p) { return p.filename().string(); }

  std::filesystem::path dir_;
  std::uint64_t base_;
  Config config_;
  std::optional<Store> store_;
  std::unique_ptr<Index> index_;
};

}  // namespace logsync
