#pragma once
/// LogStats and RecoveryStats: what Log::Stats() reports, counters of the
/// log since it was opened and what its last open found and recovered.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace logsync {

/// What the last open of the log found and did to recover it.
struct RecoveryStats {
  std::uint64_t segments = 0;          ///< segments opened
  std::uint64_t bytes_checked = 0;     ///< store bytes read and checked frame by frame (past checkpoints, rebuilds)
  std::uint64_t records_recovered = 0; ///< records found by that check (not vouched for by a checkpoint)
  std::uint64_t bytes_cut = 0;         ///< store bytes past the last whole record that were dropped (torn or garbage; zeros the store was allocated with do not count)
  std::uint64_t segments_removed = 0;  ///< later segments removed after an interrupted seal
  std::uint64_t indexes_rebuilt = 0;
  std::vector<std::string> actions;    ///< one line per thing recovery changed, naming file, byte position and why, e.g. "00000000000000000000.store: cut 100 bytes at byte 4096 (checksum mismatch)"; empty after a clean open
  std::uint64_t more_actions = 0;      ///< actions beyond kMaxActions, counted but not listed

  /// The most lines `actions` holds.
  static constexpr std::size_t kMaxActions = 1000;
};

/// Counters of a Log since it was opened; see Log::Stats().
struct LogStats {
  std::uint64_t appends = 0;           ///< Append and AppendBatch calls that succeeded
  std::uint64_t records = 0;           ///< records they appended
  std::uint64_t bytes = 0;             ///< payload bytes they appended
  std::uint64_t syncs = 0;             ///< store syncs (group commit leaders, background syncer, Sync())
  double records_per_sync = 0;         ///< records / syncs (0 with no sync)
  std::chrono::nanoseconds sync_p50{0}, sync_p99{0};  ///< sync latency over recent syncs
  std::uint64_t segments = 0;
  std::uint64_t lowest_offset = 0, next_offset = 0;
  std::uint64_t open_files = 0;        ///< file descriptors the log holds (segments, directory lock)
  std::uint64_t mappings = 0;          ///< memory mappings the log holds
  RecoveryStats recovery;              ///< what the last open (or Reset) found and cut
};

namespace detail {

/// Adds one line to `into.actions` (or counts it past kMaxActions).
inline void AddAction(RecoveryStats& into, std::string line) {
  if (into.actions.size() < RecoveryStats::kMaxActions)
    into.actions.push_back(std::move(line));
  else
    ++into.more_actions;
}

/// Adds what `from` found to `into`.
inline void AddRecovery(RecoveryStats& into, RecoveryStats&& from) {
  into.segments += from.segments;
  into.bytes_checked += from.bytes_checked;
  into.records_recovered += from.records_recovered;
  into.bytes_cut += from.bytes_cut;
  into.segments_removed += from.segments_removed;
  into.indexes_rebuilt += from.indexes_rebuilt;
  into.more_actions += from.more_actions;
  for (auto& line : from.actions) AddAction(into, std::move(line));
}

}  // namespace detail
}  // namespace logsync
