#pragma once
/// Snapshots and restores: a log directory written from a live log
/// (Log::Snapshot, which uses detail::WriteSnapshot below) or from the byte
/// stream of Log::Reader() (ByteReader, the producer, and RestoreLog, the
/// consumer, both below).
///
/// The stream is every store's bytes, oldest first, each from its header to
/// the end of its last record:
///
///     store header (16 bytes, base B) | frame B | frame B+1 | ...
///     store header (16 bytes, base B+k) | frame B+k | ...
///
/// A store header follows a frame where the next 16 bytes carry the store
/// magic, version and flags; its base must be the offset the stream has
/// reached. Every frame must hold (offset, length, CRC). The restore writes
/// into a hidden sibling directory and renames it into place only when the
/// whole stream held, so a failure leaves nothing behind.

#include <logsync/config.hpp>
#include <logsync/detail/file.hpp>
#include <logsync/error.hpp>
#include <logsync/format.hpp>
#include <logsync/segment.hpp>

#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace logsync {

/// A source of bytes read in order: Read fills a prefix of `out` and returns
/// its length, 0 only at the end. Log::ByteReader is one.
template <class S>
concept ByteSource = requires(S& s, std::span<std::byte> out) {
  { s.Read(out) } -> std::convertible_to<std::size_t>;
};

/// Every store's raw bytes, in offset order, up to the records they held
/// when it was made (whole frames only): the stream Log::Reader() returns
/// and RestoreLog reads. It holds the segments it reads, so a Truncate or
/// a Close does not cut it short, and takes the pages it read out of the
/// resident set, so that memory stays bounded whatever the log's size.
class ByteReader {
 public:
  /// Over `segments`, oldest first, each up to its records published now.
  explicit ByteReader(std::span<const std::shared_ptr<Segment>> segments) {
    for (const auto& s : segments) parts_.emplace_back(s, s->CommittedBytes());
  }

  /// Bytes of the whole stream (what the Reads return in all).
  std::uint64_t Size() const noexcept {
    std::uint64_t n = 0;
    for (const auto& part : parts_) n += part.second;
    return n;
  }

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
      // Pages read leave the resident set: a multi-GiB stream must not
      // keep the log mapped in (the page cache keeps them as it sees fit).
      const std::uint64_t page = pos_ & ~std::uint64_t{4095};
      seg->ReleaseStore(page, pos_ + want - page);
      done += want;
      pos_ += want;
    }
    return done;
  }

 private:
  std::vector<std::pair<std::shared_ptr<const Segment>, std::uint64_t>> parts_;
  std::size_t seg_ = 0;
  std::uint64_t pos_ = 0;
};

/// A ByteSource over bytes in memory.
class SpanSource {
 public:
  explicit SpanSource(std::span<const std::byte> bytes) noexcept : bytes_(bytes) {}
  std::size_t Read(std::span<std::byte> out) noexcept {
    const std::size_t n = std::min(out.size(), bytes_.size());
    if (n > 0) std::memcpy(out.data(), bytes_.data(), n);
    bytes_ = bytes_.subspan(n);
    return n;
  }

 private:
  std::span<const std::byte> bytes_;
};

namespace detail {

// Throws StateError unless `dir` is absent or an empty directory.
inline void RequireEmptyOrAbsent(const std::filesystem::path& dir, const char* what) {
  std::error_code ec;
  const auto st = std::filesystem::status(dir, ec);
  if (!std::filesystem::exists(st)) return;
  if (!std::filesystem::is_directory(st))
    throw StateError(std::string("logsync: ") + what + " target " + dir.string() + " exists and is not a directory");
  if (!std::filesystem::is_empty(dir, ec) || ec)
    throw StateError(std::string("logsync: ") + what + " target " + dir.string() + " exists and is not empty");
}

// Copies the first `bytes` bytes of a segment's store to a new file `to`,
// fsynced.
inline void CopyStore(const Segment& seg, std::uint64_t bytes, const std::filesystem::path& to) {
  File out(to, O_RDWR | O_CREAT | O_EXCL);
  std::vector<std::byte> buf(static_cast<std::size_t>(std::min<std::uint64_t>(bytes, 1 << 20)));
  for (std::uint64_t pos = 0; pos < bytes;) {
    const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), bytes - pos));
    seg.ReadStore(std::span(buf).first(want), pos);  // below the published records: in the map
    out.WriteAt(std::span(buf).first(want), pos);
    pos += want;
  }
  out.FullSync();
}

/// One segment as Log::Snapshot saw it: its first `bytes` store bytes hold
/// the records the snapshot takes; `sealed` segments never change.
struct SnapshotPart {
  std::shared_ptr<const Segment> segment;
  std::uint64_t bytes;
  bool sealed;
};

/// Writes the segments of a snapshot to `dir` (absent or empty): hard links
/// to sealed segments' files (a copy of the store where a link cannot be
/// made, e.g. across file systems or after a Truncate removed the file), a
/// copy of the others' stores up to `bytes`. Indexes that are not linked
/// are left out: opening the snapshot rebuilds them from the stores. On
/// failure removes what it wrote.
inline void WriteSnapshot(const std::filesystem::path& target, const std::vector<SnapshotPart>& parts) {
  const auto dir = CleanDir(target);
  RequireEmptyOrAbsent(dir, "snapshot");
  const bool created = CreateDirSynced(dir);
  std::vector<std::filesystem::path> written;
  try {
    for (const auto& part : parts) {
      const Segment& seg = *part.segment;
      const auto store = Segment::StorePath(dir, seg.BaseOffset());
      if (part.sealed && Sys().link(seg.StoreFile().c_str(), store.c_str()) == 0) {
        written.push_back(store);
        const auto index = Segment::IndexPath(dir, seg.BaseOffset());
        if (Sys().link(seg.IndexFile().c_str(), index.c_str()) == 0) written.push_back(index);
        continue;
      }
      written.push_back(store);
      CopyStore(seg, part.bytes, store);
    }
    SyncDirectory(dir);
  } catch (...) {
    std::error_code ec;
    for (const auto& p : written) std::filesystem::remove(p, ec);
    if (created) std::filesystem::remove(dir, ec);
    throw;
  }
}

// Reads exactly what is asked from a ByteSource (less only at its end),
// through a buffer, counting the position.
template <ByteSource Src>
class ExactReader {
 public:
  explicit ExactReader(Src& src) : src_(src), buf_(1 << 20) {}

  std::size_t Read(std::span<std::byte> out) {
    std::size_t done = 0;
    while (done < out.size()) {
      if (at_ == len_) {
        at_ = 0;
        len_ = src_.Read(std::span(buf_));
        if (len_ == 0) break;
      }
      const std::size_t n = std::min(out.size() - done, len_ - at_);
      std::memcpy(out.data() + done, buf_.data() + at_, n);
      done += n;
      at_ += n;
    }
    position_ += done;
    return done;
  }

  std::uint64_t Position() const noexcept { return position_; }

 private:
  Src& src_;
  std::vector<std::byte> buf_;
  std::size_t at_ = 0, len_ = 0;
  std::uint64_t position_ = 0;
};

// A hidden directory next to the target that becomes the target on Commit,
// and is removed with everything in it otherwise.
class StagingDir {
 public:
  explicit StagingDir(const std::filesystem::path& target) : target_(CleanDir(target)) {
    RequireEmptyOrAbsent(target_, "restore");
    CreateDirSynced(target_.parent_path());
    static std::atomic<unsigned> counter{0};
    path_ = target_.parent_path() / ("." + target_.filename().string() + ".restore-" + std::to_string(::getpid()) +
                                     "-" + std::to_string(counter++));
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
    if (Sys().mkdir(path_.c_str(), 0755) != 0) throw IoError(path_, errno, "create directory");
  }
  StagingDir(const StagingDir&) = delete;
  StagingDir& operator=(const StagingDir&) = delete;
  ~StagingDir() {
    if (committed_) return;
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }

  const std::filesystem::path& path() const noexcept { return path_; }

  // Syncs the staged directory and renames it over the (absent or empty)
  // target.
  void Commit() {
    SyncDirectory(path_);
    RequireEmptyOrAbsent(target_, "restore");
    if (Sys().rename(path_.c_str(), target_.c_str()) != 0) throw IoError(target_, errno, "rename restored log to");
    committed_ = true;
    SyncDirectory(target_.parent_path());
  }

 private:
  std::filesystem::path target_, path_;
  bool committed_ = false;
};

}  // namespace detail

/// Writes the log directory `dir` (absent or empty) from a Log::Reader()
/// stream: the same records at the same offsets, in the same segments.
/// Returns the next offset of the restored log. Every store header and
/// frame is checked; a stream that does not hold throws CorruptionError
/// (naming the stream position) and leaves nothing behind. `config` bounds
/// the record size accepted. Open the directory with Log afterwards.
template <ByteSource Src>
std::uint64_t RestoreLog(const std::filesystem::path& dir, Src& source, const Config& config = {}) {
  const Config c = detail::Resolve(config);
  const std::filesystem::path stream = "<restore stream>";
  detail::StagingDir staging(dir);
  detail::ExactReader<Src> in(source);

  detail::StoreHeaderBytes head{};
  std::uint64_t next = 0;
  std::uint64_t store_base = 0, store_records = 0;
  detail::File out;
  std::vector<std::byte> pending, frame;
  std::uint64_t written = 0;  // bytes of the current store already written

  auto flush = [&] {
    out.WriteAt(pending, written);
    written += pending.size();
    pending.clear();
  };
  auto finish = [&] {
    if (!out.IsOpen()) return;
    flush();
    out.FullSync();
    out = detail::File();
  };
  auto start = [&](std::uint64_t base) {
    finish();
    const auto path = Segment::StorePath(staging.path(), base);
    // An empty store followed by the next one at the same base: keep one.
    detail::RemoveFile(path);
    out = detail::File(path, O_RDWR | O_CREAT | O_EXCL);
    const auto h = detail::StoreHeader(base);
    pending.assign(h.begin(), h.end());
    written = 0;
    store_base = base;
    store_records = 0;
  };
  if (std::size_t n = in.Read(head); n != head.size() || !detail::IsStoreHeader(head))
    throw CorruptionError(stream, 0, n == 0 ? "stream is empty (no store header)" : "stream does not start with a store header");
  next = detail::StoreHeaderBase(head);
  start(next);

  for (;;) {
    const std::uint64_t at = in.Position();
    const std::size_t n = in.Read(head);
    if (n == 0) break;
    if (n < head.size()) throw CorruptionError(stream, at, "stream ends inside a frame header");
    if (detail::IsStoreHeader(head)) {
      const std::uint64_t base = detail::StoreHeaderBase(head);
      if (base != next)
        throw CorruptionError(stream, at, "store starts at offset " + std::to_string(base) +
                                              " but the stream has reached offset " + std::to_string(next));
      if (store_records == 0 && store_base == base) {
        continue;  // an empty store: the next one takes its place
      }
      start(base);
      continue;
    }
    const detail::FrameHeader h = detail::ReadFrameHeader(head.data());
    if (h.offset != next)
      throw CorruptionError(stream, at, "frame holds offset " + std::to_string(h.offset) + ", expected " +
                                            std::to_string(next));
    if (h.length > c.max_record_bytes)
      throw CorruptionError(stream, at, "frame length " + std::to_string(h.length) + " exceeds max_record_bytes");
    frame.resize(kFrameHeaderBytes + h.length);
    std::memcpy(frame.data(), head.data(), head.size());
    if (in.Read(std::span(frame).subspan(kFrameHeaderBytes)) != h.length)
      throw CorruptionError(stream, at, "stream ends inside the frame of offset " + std::to_string(next));
    if (const char* why = detail::CheckFrame(frame, next))
      throw CorruptionError(stream, at, std::string(why) + " (offset " + std::to_string(next) + ")");
    pending.insert(pending.end(), frame.begin(), frame.end());
    if (pending.size() >= (1U << 20)) flush();
    ++next;
    ++store_records;
  }
  finish();
  staging.Commit();
  return next;
}

/// RestoreLog from bytes in memory.
inline std::uint64_t RestoreLog(const std::filesystem::path& dir, std::span<const std::byte> bytes,
                                const Config& config = {}) {
  SpanSource source(bytes);
  return RestoreLog(dir, source, config);
}

}  // namespace logsync
