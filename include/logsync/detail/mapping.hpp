#pragma once
// Memory maps of store and index files (Boost.Interprocess), with failures
// reported as IoError naming the file.

#include <logsync/error.hpp>

#include <boost/interprocess/file_mapping.hpp>
#include <boost/interprocess/mapped_region.hpp>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>

namespace logsync::detail {

/// A shared map of the first `bytes` of the file at `path` (address space
/// only: the file may be shorter). Throws IoError.
inline std::unique_ptr<boost::interprocess::mapped_region> MapFile(const std::filesystem::path& path, bool writable,
                                                                   std::uint64_t bytes) {
  namespace bip = boost::interprocess;
  const auto mode = writable ? bip::read_write : bip::read_only;
  try {
    bip::file_mapping mapping(path.c_str(), mode);
    return std::make_unique<bip::mapped_region>(mapping, mode, 0, static_cast<std::size_t>(bytes));
  } catch (const bip::interprocess_exception& e) {
    throw IoError(path, e.get_native_error() ? e.get_native_error() : EIO, "mmap");
  }
}

}  // namespace logsync::detail
