#pragma once
// Memory maps of store and index files, made from the descriptor the log
// opened and checked (never by opening the path again, which another process
// could have pointed elsewhere meanwhile), through the system-call seam.
// Failures are IoError naming the file.

#include <logsync/detail/file.hpp>
#include <logsync/error.hpp>

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace logsync::detail {

/// A shared mapping of a file's first bytes; unmapped when destroyed.
class Mapping {
 public:
  Mapping(const File& file, Access access, std::uint64_t bytes) : bytes_(static_cast<std::size_t>(bytes)) {
    if (bytes > static_cast<std::uint64_t>(SIZE_MAX)) throw IoError(file.path(), ENOMEM, "mmap");
    const int prot = access == Access::kReadWrite ? PROT_READ | PROT_WRITE : PROT_READ;
    void* p = Sys().mmap(nullptr, bytes_, prot, MAP_SHARED, file.fd(), 0);
    if (p == MAP_FAILED) throw IoError(file.path(), errno, "mmap");
    address_ = p;
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping() { Sys().munmap(address_, bytes_); }

  void* Address() const noexcept { return address_; }

  /// Maps the pages of [from, from + len) writable, in one call
  /// (MADV_POPULATE_WRITE, Linux 5.14), so that writes there take no page
  /// fault; the pages become dirty. Only for bytes the file is allocated
  /// through. A hint: if it fails (an older kernel, or the file was cut
  /// meanwhile: an error, not a signal), nothing changes.
  void Populate(std::uint64_t from, std::uint64_t len) const noexcept {
    const std::uint64_t start = from & ~(kPage - 1);
    const std::uint64_t end = std::min<std::uint64_t>(from + len, bytes_);
    if (end > start)
      ::madvise(static_cast<std::byte*>(address_) + start, static_cast<std::size_t>(end - start), kPopulateWrite);
  }

  /// Takes the whole pages of [from, from + len) out of this process's
  /// resident set (MADV_DONTNEED). The file's bytes stay as they are, in
  /// the page cache (dirty ones are written back as usual); a later access
  /// maps them again. A hint: if it fails, nothing changes.
  void Release(std::uint64_t from, std::uint64_t len) const noexcept {
    const std::uint64_t start = (from + kPage - 1) & ~(kPage - 1);
    const std::uint64_t end = std::min<std::uint64_t>(from + len, bytes_) & ~(kPage - 1);
    if (end > start)
      ::madvise(static_cast<std::byte*>(address_) + start, static_cast<std::size_t>(end - start), MADV_DONTNEED);
  }

 private:
  static constexpr std::uint64_t kPage = 4096;  // madvise ranges are rounded to this (larger pages: still a hint)
#ifdef MADV_POPULATE_WRITE
  static constexpr int kPopulateWrite = MADV_POPULATE_WRITE;
#else
  static constexpr int kPopulateWrite = 23;  // its value since Linux 5.14; older kernels refuse it (EINVAL)
#endif
  void* address_ = nullptr;
  std::size_t bytes_;
};

/// A shared map of the first `bytes` (> 0) of `file` (address space only:
/// the file may be shorter). Throws IoError.
inline std::unique_ptr<Mapping> MapFile(const File& file, Access access, std::uint64_t bytes) {
  return std::make_unique<Mapping>(file, access, bytes);
}

}  // namespace logsync::detail
