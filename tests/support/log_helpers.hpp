#pragma once
// Records, configs and directory counts shared by the tests that drive a
// whole Log.

#include <logsync/logsync.hpp>

#include "support/config.hpp"

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

namespace logsync::test {

/// A Log of Records under sync policy S.
template <class S>
using LogOf = Log<Record, DefaultCodec<Record>, S>;

/// Segments of `store_bytes` of store (1 KiB unless given).
inline Config Small(std::uint64_t store_bytes = 1024, std::uint64_t index_bytes = 0) {
  return SmallSegments(store_bytes, index_bytes);
}

/// A record of value `v` (the log fills in the offset).
inline Record Rec(const std::string& v) { return Record{0, v}; }

/// A value of a length that varies with `i`.
inline std::string Value(std::uint64_t i) { return "record-" + std::to_string(i) + std::string(i % 37, 'x'); }

/// Entries of `dir` whose extension is `ext`.
inline std::size_t CountFiles(const std::filesystem::path& dir, const std::string& ext) {
  std::size_t n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.path().extension() == ext) ++n;
  return n;
}

}  // namespace logsync::test
