#pragma once
/// LogReader: a log directory opened read-only, from any process, while a
/// Log in another process (or none) has it open for writing.
///
/// A LogReader takes no lock and never writes, repairs or creates anything:
/// a torn tail stays where it is (the writer's recovery cuts it), damage is
/// reported (Verify, or CorruptionError from a read), and a path that holds
/// no log is an error. It reads with pread, never through a mapping, so a
/// writer trimming, cutting or removing files cannot turn a read into a
/// signal.
///
/// What it sees: every record whose frame is complete in the files (the
/// page cache, shared by every process), which includes each record whose
/// Append has returned. Under any sync policy that is also records not yet
/// durable: a power loss may take them back, as it takes them from the
/// writer's own readers. A kill -9 of the writer loses none of them, and the
/// writer's recovery keeps them. Refresh() picks up what the writer
/// appended since, new segments included, and drops segments the writer's
/// Truncate removed; WaitFor polls it. A writer's Reset or Remove leaves a
/// reader on files that are gone: Refresh then throws StateError, and the
/// directory must be opened again.
///
/// Thread safety: one thread at a time per LogReader (open one per thread;
/// they share nothing).

#include <logsync/codec.hpp>
#include <logsync/detail/file.hpp>
#include <logsync/detail/read_only_segment.hpp>
#include <logsync/error.hpp>
#include <logsync/format.hpp>
#include <logsync/record.hpp>
#include <logsync/scan.hpp>
#include <logsync/segment.hpp>
#include <logsync/snapshot.hpp>
#include <logsync/verify.hpp>

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

namespace logsync {

/// One segment as a LogReader sees it.
struct SegmentInfo {
  std::uint64_t base = 0;              ///< first offset
  std::uint64_t records = 0;           ///< whole records found
  std::uint64_t bytes = 0;             ///< store bytes of those records, header included
  std::uint64_t store_file_bytes = 0;  ///< size of the .store file (more while allocated ahead)
  std::uint64_t index_file_bytes = 0;  ///< size of the .index file (0 if it is missing)
  /// Store ends at its last record and index holds exactly its entries:
  /// what a seal leaves. The newest segment, and a rolled one whose seal
  /// has not finished, are not sealed.
  bool sealed = false;
  std::filesystem::path store_path;
};

/// Read-only access to the log in a directory; see the file comment.
template <class R = Record, class C = DefaultCodec<R>>
class LogReader {
  static_assert(Codec<C, R>, "logsync::LogReader<R, C>: C is not a codec for R");

 public:
  /// Opens the log in `dir` read-only. Throws IoError (ENOENT) if `dir` does
  /// not exist or holds no log (neither a LOCK file nor a segment),
  /// IoError (ENOTDIR) if it is not a directory.
  explicit LogReader(std::filesystem::path dir, C codec = {}) : dir_(std::move(dir)), codec_(std::move(codec)) {
    std::error_code ec;
    const auto st = std::filesystem::status(dir_, ec);
    if (!std::filesystem::exists(st)) throw IoError(dir_, ENOENT, "open log");
    if (!std::filesystem::is_directory(st)) throw IoError(dir_, ENOTDIR, "open log");
    List();
    if (segs_.empty() && !std::filesystem::exists(dir_ / detail::kLockFileName, ec))
      throw IoError(dir_, ENOENT, "open log (no LOCK file and no segment: not a logsync log)");
  }

  const std::filesystem::path& Dir() const noexcept { return dir_; }

  /// Picks up what the writer did since the last call: new records, new
  /// segments, segments removed by its Truncate. Returns how many records
  /// became visible. Cheap when nothing changed (an fstat and a read or
  /// two). Throws StateError if the writer reset or removed the log.
  std::uint64_t Refresh() {
    const std::uint64_t before = NextOffset();
    if (segs_.empty()) {
      List();
      return NextOffset() - before;
    }
    for (;;) {
      auto& last = *segs_.back();
      last.Extend(loader_, false);
      if (last.Count() == 0) break;  // a segment rolls only once it holds records
      const std::uint64_t next = last.Base() + last.Count();
      auto seg = OpenSegment(next);
      if (!seg) break;
      seg->Extend(loader_, true);
      segs_.push_back(std::make_shared<detail::ReadOnlySegment>(std::move(*seg)));
    }
    // Truncate removes files oldest first (after rolling, if it takes the
    // newest segment too): drop what is gone from the front.
    while (segs_.size() > 1 && Gone(*segs_.front())) segs_.erase(segs_.begin());
    if (Gone(*segs_.back()))
      throw StateError("logsync: the log in " + dir_.string() +
                       " was reset or removed while a reader had it open; open it again");
    return NextOffset() - std::min(before, NextOffset());
  }

  /// Offset of the oldest record seen (NextOffset() when none).
  std::uint64_t LowestOffset() const noexcept { return segs_.empty() ? 0 : segs_.front()->Base(); }
  /// One past the newest record seen (as of the last Refresh).
  std::uint64_t NextOffset() const noexcept {
    return segs_.empty() ? 0 : segs_.back()->Base() + segs_.back()->Count();
  }
  bool Empty() const noexcept { return LowestOffset() == NextOffset(); }

  /// Polls Refresh until the record at `offset` is visible or `timeout`
  /// passes (every `poll`); returns whether it is.
  bool WaitFor(std::uint64_t offset, std::chrono::milliseconds timeout,
               std::chrono::milliseconds poll = std::chrono::milliseconds(10)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (NextOffset() <= offset) {
      if (Refresh() > 0) continue;
      const auto now = std::chrono::steady_clock::now();
      if (now >= deadline) break;
      std::this_thread::sleep_for(std::min<std::chrono::nanoseconds>(poll, deadline - now));
    }
    return NextOffset() > offset;
  }

  /// Calls `fn(payload)` with the checked payload of the record at
  /// `offset` (a view valid during the call) and returns what it returns.
  /// Throws OffsetOutOfRange if the reader has not seen it,
  /// CorruptionError if its frame does not hold or is missing.
  template <class F>
    requires std::invocable<F&, std::span<const std::byte>>
  decltype(auto) View(std::uint64_t offset, F&& fn) {
    const auto& seg = Find(offset);
    const std::uint64_t i = offset - seg.Base();
    const std::uint64_t pos = seg.PositionOf(loader_, i);
    std::span<const std::byte> payload;
    std::uint64_t end;
    if (const char* why = loader_.Load(seg.Store(), pos, offset, payload, end))
      throw CorruptionError(seg.Store().path(), pos, std::string(why) + " (offset " + std::to_string(offset) + ")");
    return fn(payload);
  }

  /// The record at `offset`; throws as View does.
  R Read(std::uint64_t offset) {
    return View(offset, [&](std::span<const std::byte> payload) {
      R r = codec_.Decode(payload);
      detail::SetOffset(r, offset);
      return r;
    });
  }

  /// Calls `fn(Payload{offset, bytes})` for each record from `from` (at
  /// least LowestOffset()) to NextOffset(), in order, the bytes valid during
  /// the call; stops early when `fn` returns false (if it returns bool).
  /// Returns the offset after the last record passed to `fn`. Throws
  /// CorruptionError at the first frame that does not hold, after `fn` has
  /// seen the records before it.
  template <class F>
  std::uint64_t ForEachPayload(std::uint64_t from, F&& fn) {
    std::uint64_t offset = std::max(from, LowestOffset());
    const auto segs = segs_;  // stable while fn runs, whatever it calls
    for (const auto& seg : segs) {
      const std::uint64_t seg_end = seg->Base() + seg->Count();
      if (offset >= seg_end) continue;
      if (offset < seg->Base()) throw Missing(*seg, offset);
      std::uint64_t pos = seg->PositionOf(loader_, offset - seg->Base());
      for (; offset < seg_end; ++offset) {
        std::span<const std::byte> payload;
        std::uint64_t end;
        if (const char* why = loader_.Load(seg->Store(), pos, offset, payload, end))
          throw CorruptionError(seg->Store().path(), pos, std::string(why) + " (offset " + std::to_string(offset) + ")");
        pos = end;
        if constexpr (std::same_as<std::invoke_result_t<F&, Payload>, bool>) {
          if (!fn(Payload{offset, payload})) return offset + 1;
        } else {
          fn(Payload{offset, payload});
        }
      }
    }
    return offset;
  }

  /// As ForEachPayload, with each record decoded (its offset member set).
  template <class F>
  std::uint64_t ForEach(std::uint64_t from, F&& fn) {
    return ForEachPayload(from, [&](const Payload& p) {
      R r = codec_.Decode(p.bytes);
      detail::SetOffset(r, p.offset);
      if constexpr (std::same_as<std::invoke_result_t<F&, R&>, bool>)
        return fn(r);
      else
        fn(r);
    });
  }

  /// The segments seen, oldest first.
  std::vector<SegmentInfo> Segments() const {
    std::vector<SegmentInfo> out;
    for (const auto& seg : segs_) {
      SegmentInfo info;
      info.base = seg->Base();
      info.records = seg->Count();
      info.bytes = seg->End();
      info.store_file_bytes = seg->Store().Size();
      info.index_file_bytes = seg->IndexFile().IsOpen() ? seg->IndexFile().Size() : 0;
      info.sealed = seg->IndexUsable() && info.store_file_bytes == info.bytes &&
                    info.index_file_bytes == detail::IndexEntryPosition(info.records);
      info.store_path = seg->Store().path();
      out.push_back(std::move(info));
    }
    return out;
  }

  /// Checks every record seen, frame and index entry, without changing
  /// anything. Problems: frames that do not hold, index entries that do not
  /// match their frame (in the newest segment, entries the writer has not
  /// written yet are not problems; nor is a missing index, which the
  /// writer builds on open), an index of another segment, a segment that ends
  /// before the next begins, bytes after the last record of a segment
  /// before the newest. Bytes after the newest record that are not zero (a
  /// write under way, or a torn one a crash left: the writer's recovery
  /// cuts them) are counted in `tail_bytes`, not as problems.
  VerifyReport Verify() {
    VerifyReport report;
    detail::FrameLoader loader;
    for (std::size_t k = 0; k < segs_.size(); ++k) {
      const auto& seg = *segs_[k];
      const bool newest = k + 1 == segs_.size();
      ++report.segments;
      if (!seg.HeaderHolds()) {
        if (!newest || seg.Store().Size() >= kStoreHeaderBytes)
          report.Add(seg.Store().path(), 0, "store header does not hold");
        continue;
      }
      // A missing index is what a restore leaves (the writer builds it on
      // open); one that is there must be this segment's.
      if (seg.IndexFile().IsOpen() && !seg.IndexUsable())
        report.Add(seg.IndexFile().path(), 0, "index header is not this segment's (the writer rebuilds it on open)");
      std::uint64_t pos = kStoreHeaderBytes;
      bool index_behind = false;
      for (std::uint64_t i = 0; i < seg.Count(); ++i) {
        std::span<const std::byte> payload;
        std::uint64_t end;
        if (const char* why = loader.Load(seg.Store(), pos, seg.Base() + i, payload, end)) {
          report.Add(seg.Store().path(), pos, std::string(why) + " (offset " + std::to_string(seg.Base() + i) + ")");
          // Go on at the next record's index entry, if it points further on.
          const auto next = seg.Entry(i + 1);
          if (i + 1 < seg.Count() && next && next->position > pos) {
            pos = next->position;
            continue;
          }
          if (i + 1 < seg.Count())
            report.Add(seg.Store().path(), pos, "records " + std::to_string(seg.Base() + i + 1) + " to " +
                                                    std::to_string(seg.Base() + seg.Count() - 1) +
                                                    " could not be reached");
          break;
        }
        if (seg.IndexUsable() && !index_behind) {
          const auto e = seg.Entry(i);
          if (!e && newest)
            index_behind = true;  // the writer writes an entry after its frame
          else if (!e || e->position != pos || e->length != payload.size())
            report.Add(seg.IndexFile().path(), detail::IndexEntryPosition(i),
                       "index entry of offset " + std::to_string(seg.Base() + i) + " does not match its frame");
        }
        ++report.records;
        report.payload_bytes += payload.size();
        pos = end;
      }
      if (newest) {
        report.tail_bytes = TailBytes(loader, seg);
      } else {
        const std::uint64_t after = NonZeroBytesAfter(seg.Store(), seg.End());
        if (after > 0) report.Add(seg.Store().path(), seg.End(), std::to_string(after) + " bytes after its last record");
        const std::uint64_t next_base = segs_[k + 1]->Base();
        if (seg.Base() + seg.Count() != next_base)
          report.Add(seg.Store().path(), seg.End(),
                     "segment ends at offset " + std::to_string(seg.Base() + seg.Count()) +
                         " but the next one begins at " + std::to_string(next_base));
      }
    }
    return report;
  }

  /// The stores' bytes seen now, oldest first, each from its header to the
  /// end of its last record: the stream RestoreLog reads (snapshot.hpp),
  /// so `RestoreLog(to, reader.Bytes())` copies the log as this reader sees
  /// it. The stream keeps the files open; it does not follow Refresh.
  class ByteStream {
   public:
    std::size_t Read(std::span<std::byte> out) {
      std::size_t done = 0;
      while (done < out.size() && k_ < segs_.size()) {
        const auto& seg = *segs_[k_];
        if (pos_ >= seg.End()) {
          ++k_;
          pos_ = 0;
          continue;
        }
        const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(out.size() - done, seg.End() - pos_));
        const std::size_t got = seg.Store().ReadAt(out.subspan(done, want), pos_);
        if (got != want) throw CorruptionError(seg.Store().path(), pos_ + got, "store ends before its last record");
        done += got;
        pos_ += got;
      }
      return done;
    }
    /// Bytes of the whole stream.
    std::uint64_t Size() const noexcept {
      std::uint64_t n = 0;
      for (const auto& s : segs_) n += s->End();
      return n;
    }

   private:
    friend class LogReader;
    explicit ByteStream(std::vector<std::shared_ptr<const detail::ReadOnlySegment>> segs) : segs_(std::move(segs)) {}
    std::vector<std::shared_ptr<const detail::ReadOnlySegment>> segs_;
    std::size_t k_ = 0;
    std::uint64_t pos_ = 0;
  };

  ByteStream Bytes() const {
    std::vector<std::shared_ptr<const detail::ReadOnlySegment>> segs;
    for (const auto& s : segs_)
      if (s->HeaderHolds()) segs.push_back(s);
    return ByteStream(std::move(segs));
  }

 private:
  // The segment of base `base`, read-only; nullopt if its store is gone.
  std::optional<detail::ReadOnlySegment> OpenSegment(std::uint64_t base) const {
    return detail::ReadOnlySegment::Open(Segment::StorePath(dir_, base), Segment::IndexPath(dir_, base), base);
  }

  // Opens every segment in the directory, oldest first.
  void List() {
    std::map<std::uint64_t, int> bases;
    std::error_code ec;
    for (auto it = std::filesystem::directory_iterator(dir_, ec); !ec && it != std::filesystem::directory_iterator();
         it.increment(ec))
      if (const auto base = detail::ParseSegmentName(it->path().filename().string(), detail::kStoreExtension))
        bases.emplace(*base, 0);
    if (ec) throw IoError(dir_, ec.value(), "list log directory");
    segs_.clear();
    for (const auto& [base, unused] : bases) {
      auto seg = OpenSegment(base);
      if (!seg) continue;  // removed since the listing
      seg->Extend(loader_, true);
      segs_.push_back(std::make_shared<detail::ReadOnlySegment>(std::move(*seg)));
    }
  }

  // Whether the segment's store has been unlinked.
  static bool Gone(const detail::ReadOnlySegment& seg) { return seg.Store().Stat().st_nlink == 0; }

  const detail::ReadOnlySegment& Find(std::uint64_t offset) const {
    if (offset < LowestOffset() || offset >= NextOffset()) throw OffsetOutOfRange(offset);
    auto it = std::upper_bound(segs_.begin(), segs_.end(), offset,
                               [](std::uint64_t o, const auto& s) { return o < s->Base(); });
    const auto& seg = **std::prev(it);
    if (offset >= seg.Base() + seg.Count()) throw Missing(seg, offset);
    return seg;
  }

  static CorruptionError Missing(const detail::ReadOnlySegment& seg, std::uint64_t offset) {
    return CorruptionError(seg.Store().path(), seg.End(),
                           "offset " + std::to_string(offset) + " is missing: the segment ends at offset " +
                               std::to_string(seg.Base() + seg.Count()) + " before the next one begins");
  }

  // The bytes after the newest whole record of the newest segment that are
  // not zero. A live writer appends while they are counted: whole records
  // found past the end are its new ones, not a torn tail, so the count is
  // taken again past them (a few times at most).
  static std::uint64_t TailBytes(detail::FrameLoader& loader, const detail::ReadOnlySegment& seg) {
    std::uint64_t i = seg.Count(), end = seg.End(), tail = 0;
    for (int round = 0; round < 4; ++round) {
      std::tie(i, end) = seg.WholeFramesFrom(loader, i, end);
      tail = NonZeroBytesAfter(seg.Store(), end);
      if (tail == 0 || seg.WholeFramesFrom(loader, i, end).first == i) break;
    }
    return tail;
  }

  // Bytes from `from` to the last non-zero byte of `file` (0 if all zero).
  static std::uint64_t NonZeroBytesAfter(const detail::File& file, std::uint64_t from) {
    std::vector<std::byte> buf(1 << 20);
    std::uint64_t last = from;  // one past the last non-zero byte seen
    for (std::uint64_t pos = from;;) {
      const std::size_t n = file.ReadAt(buf, pos);
      if (n == 0) break;
      for (std::size_t j = n; j > 0; --j)
        if (buf[j - 1] != std::byte{0}) {
          last = pos + j;
          break;
        }
      pos += n;
    }
    return last - from;
  }

  std::filesystem::path dir_;
  [[no_unique_address]] C codec_;
  std::vector<std::shared_ptr<detail::ReadOnlySegment>> segs_;  // oldest first
  detail::FrameLoader loader_;
};

}  // namespace logsync
