#pragma once
// ReadOnlySegment: one segment's files opened read-only, by a process that
// is not the log's writer (LogReader, log_reader.hpp), and how far its whole
// records reach as far as this process can tell.
//
// Nothing here writes, maps or locks. Every byte is read with pread, so a
// writer that trims the files (a seal) or cuts a torn tail (recovery) can
// never turn a read into a signal: a read past the end is just short. A
// record counts once its frame holds (offset, length, CRC: format.hpp); a
// frame being written, torn, or the zeros a store is allocated with never
// hold. The index is a hint: an entry is used only once the frame it
// points at holds the record it names.
//
// Finding the end: the newest index entry whose frame holds is found by a
// binary search (entries are written in order, so the ones that hold are a
// prefix), then frames are checked one by one past it. The work is a few
// dozen reads plus what the index has not caught up with.

#include <logsync/detail/file.hpp>
#include <logsync/error.hpp>
#include <logsync/format.hpp>

#include <fcntl.h>

#include <algorithm>
#include <array>
#include <iterator>
#include <limits>
#include <tuple>
#include <utility>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace logsync::detail {

// Frames read with pread through a read-ahead buffer, for one reader.
class FrameLoader {
 public:
  // Checks the frame at `pos` of `file`, which should hold record `offset`.
  // If it holds: `payload` views its payload (valid until the next call)
  // and `end` is where the frame ends; returns nullptr. Otherwise returns
  // why. Buffered bytes are read afresh before giving up, since the writer
  // may have written them since they were read.
  const char* Load(const File& file, std::uint64_t pos, std::uint64_t offset, std::span<const std::byte>& payload,
                   std::uint64_t& end) {
    read_ = false;
    const char* why = TryLoad(file, pos, offset, payload, end, kReadAhead);
    if (why != nullptr && !read_) {
      // Usually the end of what the writer has written: a reader polling
      // there reads a page, not a whole read-ahead, each time.
      Forget();
      why = TryLoad(file, pos, offset, payload, end, kPollRead);
    }
    return why;
  }

  // Forgets what was read.
  void Forget() noexcept {
    file_ = nullptr;
    len_ = 0;
  }

 private:
  static constexpr std::uint64_t kReadAhead = 256 << 10;
  static constexpr std::uint64_t kPollRead = 4096;
  static constexpr std::uint64_t kMaxFileBytes = std::numeric_limits<std::int64_t>::max();

  const char* TryLoad(const File& file, std::uint64_t pos, std::uint64_t offset, std::span<const std::byte>& payload,
                      std::uint64_t& end, std::uint64_t ahead) {
    if (pos < kStoreHeaderBytes) return "frame position is inside the store header";
    if (!Ensure(file, pos, kFrameHeaderBytes, ahead)) return "frame header is cut short";
    const FrameHeader h = ReadFrameHeader(At(pos));
    if (h.offset != offset) return "frame holds the wrong offset";
    // A length of garbage must not size the buffer: the file bounds it.
    if (h.length > kReadAhead && pos + kFrameHeaderBytes + h.length > file.Size())
      return "frame runs past the end of the store";
    if (!Ensure(file, pos, kFrameHeaderBytes + h.length, kReadAhead)) return "frame runs past the end of the store";
    const std::span<const std::byte> frame(At(pos), kFrameHeaderBytes + h.length);
    if (const char* why = CheckFrame(frame, offset)) return why;
    payload = frame.subspan(kFrameHeaderBytes);
    end = pos + frame.size();
    return nullptr;
  }

  // Whether bytes [pos, pos + n) of `file` are in the buffer, reading them
  // (and up to `ahead` in all) if not.
  bool Ensure(const File& file, std::uint64_t pos, std::uint64_t n, std::uint64_t ahead) {
    if (&file == file_ && pos >= pos_ && pos + n <= pos_ + len_) return true;
    // A position of garbage (an index entry, a length) past any file.
    if (n > kMaxFileBytes || pos > kMaxFileBytes - n) return false;
    buf_.resize(static_cast<std::size_t>(std::max(n, ahead)));
    file_ = &file;
    pos_ = pos;
    len_ = file.ReadAt(buf_, pos);
    read_ = true;
    return n <= len_;
  }

  const std::byte* At(std::uint64_t pos) const noexcept { return buf_.data() + (pos - pos_); }

  const File* file_ = nullptr;
  std::vector<std::byte> buf_;
  std::uint64_t pos_ = 0, len_ = 0;  // buf_ holds bytes [pos_, pos_ + len_) of *file_
  bool read_ = false;                // whether this Load read from the file
};

class ReadOnlySegment {
 public:
  // Every kMarkEvery-th record's position is kept as it is found, so a
  // read that cannot use the index checks at most that many frames.
  static constexpr std::uint64_t kMarkEvery = 4096;

  // Opens the segment's files read-only, or returns nullopt if its store is
  // gone (removed since the directory was listed). A missing index only
  // means reads cannot use it.
  static std::optional<ReadOnlySegment> Open(std::filesystem::path store_path, std::filesystem::path index_path,
                                             std::uint64_t base) {
    ReadOnlySegment s(base);
    if (!OpenIfPresent(store_path, s.store_)) return std::nullopt;
    OpenIfPresent(std::move(index_path), s.index_);
    return s;
  }

  std::uint64_t Base() const noexcept { return base_; }
  std::uint64_t Count() const noexcept { return count_; }
  std::uint64_t End() const noexcept { return end_; }  // store bytes of the whole records
  const File& Store() const noexcept { return store_; }
  const File& IndexFile() const noexcept { return index_; }
  bool HeaderHolds() const noexcept { return header_ok_; }
  bool IndexUsable() const noexcept { return index_ok_; }

  // Moves the end forward to the last record this process can see:
  // through the index first when `jump` (opening), then frame by frame.
  void Extend(FrameLoader& loader, bool jump) {
    if (!header_ok_ && !CheckHeader()) return;
    if (jump) Jump(loader);
    std::tie(count_, end_) = WholeFramesFrom(loader, count_, end_, [this](std::uint64_t i, std::uint64_t pos) { Mark(i, pos); });
  }

  // Where the whole frames that follow record i - 1 (ending at `end`) end:
  // the record count and store position after the last one that holds.
  // Calls `seen(i, position)` for each.
  template <class F = void (*)(std::uint64_t, std::uint64_t)>
  std::pair<std::uint64_t, std::uint64_t> WholeFramesFrom(
      FrameLoader& loader, std::uint64_t i, std::uint64_t end,
      F seen = [](std::uint64_t, std::uint64_t) {}) const {
    std::span<const std::byte> payload;
    for (std::uint64_t next_end; loader.Load(store_, end, base_ + i, payload, next_end) == nullptr; ++i) {
      seen(i, end);
      end = next_end;
    }
    return {i, end};
  }

  // The position of record i (< Count()): through its index entry if that
  // holds, else by checking frames from the nearest mark before it.
  std::uint64_t PositionOf(FrameLoader& loader, std::uint64_t i) const {
    if (const auto e = EntryThatHolds(loader, i)) return e->position;
    auto mark = std::upper_bound(marks_.begin(), marks_.end(), i, [](std::uint64_t v, const auto& m) { return v < m.first; });
    std::uint64_t at = kStoreHeaderBytes, j = 0;
    if (mark != marks_.begin()) std::tie(j, at) = *std::prev(mark);
    std::span<const std::byte> payload;
    for (std::uint64_t next; j < i; ++j, at = next)
      if (const char* why = loader.Load(store_, at, base_ + j, payload, next))
        throw CorruptionError(store_.path(), at, std::string(why) + " (offset " + std::to_string(base_ + j) + ")");
    return at;
  }

  // Index entry i, if it is one for record i at a plausible position.
  std::optional<IndexEntry> Entry(std::uint64_t i) const {
    if (!index_ok_) return std::nullopt;
    std::array<std::byte, kIndexEntryBytes> b;
    if (index_.ReadAt(b, IndexEntryPosition(i)) != b.size()) return std::nullopt;
    const IndexEntry e = ReadIndexEntry(b.data());
    if (e.relative != i || e.position < kStoreHeaderBytes) return std::nullopt;
    return e;
  }

 private:
  explicit ReadOnlySegment(std::uint64_t base) : base_(base) {}

  static bool OpenIfPresent(std::filesystem::path path, File& into) {
    try {
      into = File(std::move(path), O_RDONLY);
      return true;
    } catch (const IoError& e) {
      if (e.error() == ENOENT) return false;
      throw;
    }
  }

  // The store header, once it is whole and names this segment (a store
  // being created has none yet); and whether the index is this segment's.
  bool CheckHeader() {
    StoreHeaderBytes h{};
    if (store_.ReadAt(h, 0) != h.size() || CheckStoreHeader(h, base_)) return false;
    header_ok_ = true;
    std::array<std::byte, kIndexHeaderBytes> ih{};
    index_ok_ = index_.IsOpen() && index_.ReadAt(ih, 0) == ih.size() && IndexHeaderMatches(ih.data(), base_);
    return true;
  }

  std::optional<IndexEntry> EntryThatHolds(FrameLoader& loader, std::uint64_t i) const {
    const auto e = Entry(i);
    std::span<const std::byte> payload;
    std::uint64_t end;
    if (!e || loader.Load(store_, e->position, base_ + i, payload, end) != nullptr || payload.size() != e->length)
      return std::nullopt;
    return e;
  }

  // Binary search for the newest index entry whose frame holds.
  void Jump(FrameLoader& loader) {
    if (!index_ok_) return;
    const std::uint64_t size = index_.Size();
    if (size < kIndexHeaderBytes) return;
    const std::uint64_t n = (size - kIndexHeaderBytes) / kIndexEntryBytes;
    if (n <= count_) return;
    std::optional<IndexEntry> found = EntryThatHolds(loader, n - 1);  // sealed: the last one holds
    std::uint64_t at = n - 1;
    if (!found) {
      std::uint64_t lo = count_, hi = n - 1;  // entries below lo are known to hold (or are counted); hi fails
      while (lo < hi) {
        const std::uint64_t mid = lo + (hi - lo) / 2;
        if (auto e = EntryThatHolds(loader, mid)) {
          found = e;
          at = mid;
          lo = mid + 1;
        } else {
          hi = mid;
        }
      }
    }
    if (!found || at < count_) return;
    count_ = at + 1;
    end_ = found->End();
  }

  void Mark(std::uint64_t i, std::uint64_t pos) {
    if (i % kMarkEvery == 0 && (marks_.empty() || marks_.back().first < i)) marks_.emplace_back(i, pos);
  }

  std::uint64_t base_;
  File store_, index_;
  bool header_ok_ = false, index_ok_ = false;
  std::uint64_t count_ = 0, end_ = kStoreHeaderBytes;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> marks_;  // (record, position), ascending
};

}  // namespace logsync::detail
