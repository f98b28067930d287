#pragma once
/// Errors thrown by logsync. Everything a caller must handle derives from
/// logsync::Error; an invalid Config throws std::invalid_argument instead,
/// before anything is written.

#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <system_error>

namespace logsync {

/// Base of every logsync runtime error.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A Read of an offset the log does not hold (below LowestOffset() or at or
/// past NextOffset()).
class OffsetOutOfRange : public Error {
 public:
  explicit OffsetOutOfRange(std::uint64_t offset)
      : Error("logsync: offset " + std::to_string(offset) + " is out of range"), offset_(offset) {}
  /// The offset that was asked for.
  std::uint64_t offset() const noexcept { return offset_; }

 private:
  std::uint64_t offset_;
};

/// Stored bytes that do not hold: a checksum, a frame header or a file header
/// that does not match. Names the file and the byte position.
class CorruptionError : public Error {
 public:
  CorruptionError(std::filesystem::path path, std::uint64_t position, const std::string& what)
      : Error("logsync: corruption in " + path.string() + " at byte " + std::to_string(position) +
              ": " + what),
        path_(std::move(path)),
        position_(position) {}
  const std::filesystem::path& path() const noexcept { return path_; }
  std::uint64_t position() const noexcept { return position_; }

 private:
  std::filesystem::path path_;
  std::uint64_t position_;
};

/// A failed system call on a file of the log: carries errno and the path.
class IoError : public Error {
 public:
  IoError(std::filesystem::path path, int error, const std::string& operation)
      : Error("logsync: " + operation + " " + path.string() + ": " +
              std::generic_category().message(error)),
        path_(std::move(path)),
        error_(error) {}
  const std::filesystem::path& path() const noexcept { return path_; }
  /// The errno value the system call reported.
  int error() const noexcept { return error_; }
  std::error_code code() const noexcept { return {error_, std::generic_category()}; }

 private:
  std::filesystem::path path_;
  int error_;
};

/// A failed fsync, fdatasync or msync. The data it was to make durable must
/// be taken as lost; the Log refuses further writes until it is reopened
/// (a retried sync can report success after the kernel dropped the pages).
class SyncError : public IoError {
 public:
  using IoError::IoError;
};

/// A record whose encoding is larger than Config::max_record_bytes (or than
/// the frame format can hold). Nothing was written.
class RecordTooLarge : public Error {
 public:
  RecordTooLarge(std::uint64_t size, std::uint64_t limit)
      : Error("logsync: record of " + std::to_string(size) + " bytes exceeds max_record_bytes " +
              std::to_string(limit)),
        size_(size),
        limit_(limit) {}
  std::uint64_t size() const noexcept { return size_; }
  std::uint64_t limit() const noexcept { return limit_; }

 private:
  std::uint64_t size_, limit_;
};

/// The log refuses the operation in its current state: closed, or poisoned
/// by a failed sync (reopen it to recover), or out of offsets.
class StateError : public Error {
 public:
  using Error::Error;
};

namespace detail {
/// The StateError of a call on the closed log in `dir`.
inline StateError LogClosed(const std::filesystem::path& dir) {
  return StateError("logsync: log " + dir.string() + " is closed");
}
}  // namespace detail

}  // namespace logsync
