#pragma once
/// Questions a node asks of raft's view of the cluster's membership.

extern "C" {
#include <raft.h>
}

#include <cstdint>

namespace logsync::detail {

/// Whether `id` is the only voter of `conf`. Given the latest
/// configuration, uncommitted changes included, two removals cannot both
/// pass this check.
inline bool IsLastVoter(const raft_configuration& conf, std::uint64_t id) noexcept {
  unsigned voters = 0;
  bool voter = false;
  for (unsigned i = 0; i < conf.n; ++i) {
    const raft_server& s = conf.servers[i];
    if (s.role != RAFT_VOTER) continue;
    ++voters;
    voter |= s.id == id;
  }
  return voter && voters == 1;
}

}  // namespace logsync::detail
