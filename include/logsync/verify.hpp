#pragma once
/// VerifyReport: what Log::Verify found when it checked every frame.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace logsync {

/// The result of Log::Verify: what was checked and every problem found.
struct VerifyReport {
  /// One frame or index entry that does not hold.
  struct Problem {
    std::filesystem::path path;  ///< the .store or .index file
    std::uint64_t position = 0;  ///< byte position in it
    std::string what;
  };

  std::uint64_t segments = 0;       ///< segments checked
  std::uint64_t records = 0;        ///< records whose frame and index entry hold
  std::uint64_t payload_bytes = 0;  ///< payload bytes of those records
  std::vector<Problem> problems;    ///< at most kMaxProblems; see `more_problems`
  std::uint64_t more_problems = 0;  ///< problems found beyond kMaxProblems
  /// LogReader::Verify only: bytes after the newest record that are not
  /// zero (a write under way, or a torn one a crash left, which the
  /// writer's recovery cuts). Not a problem.
  std::uint64_t tail_bytes = 0;

  static constexpr std::size_t kMaxProblems = 1000;

  /// Whether everything checked holds.
  bool Ok() const noexcept { return problems.empty(); }

  void Add(std::filesystem::path path, std::uint64_t position, std::string what) {
    if (problems.size() < kMaxProblems)
      problems.push_back({std::move(path), position, std::move(what)});
    else
      ++more_problems;
  }
};

}  // namespace logsync
