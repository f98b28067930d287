#pragma once
// Memory maps of store and index files, made from the descriptor the log
// opened and checked (never by opening the path again, which another process
// could have pointed elsewhere meanwhile), through the system-call seam.
// Failures are IoError naming the file.

#include <logsync/detail/file.hpp>
#include <logsync/error.hpp>

#include <sys/mman.h>

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

 private:
  void* address_ = nullptr;
  std::size_t bytes_;
};

/// A shared map of the first `bytes` (> 0) of `file` (address space only:
/// the file may be shorter). Throws IoError.
inline std::unique_ptr<Mapping> MapFile(const File& file, Access access, std::uint64_t bytes) {
  return std::make_unique<Mapping>(file, access, bytes);
}

}  // namespace logsync::detail
