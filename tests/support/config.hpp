#pragma once
// Configs with small segments, so that tests roll, seal and truncate often.

#include <logsync/config.hpp>

#include <cstdint>

namespace logsync::test {

/// Segments of `store_bytes` of store and `index_bytes` of index entries
/// (0: the default).
inline Config SmallSegments(std::uint64_t store_bytes, std::uint64_t index_bytes = 0) {
  Config c;
  c.segment.max_store_bytes = store_bytes;
  c.segment.max_index_bytes = index_bytes;
  return c;
}

}  // namespace logsync::test
