#pragma once
// LatencyRing: the durations of the last kSize events (syncs), for
// percentiles. Adding is a store into a fixed array; the percentiles copy
// it and select (nth_element), so they cost the reader, not the writer.
// Not synchronised: its owner guards it (GroupCommit: its mutex).

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace logsync::detail {

class LatencyRing {
 public:
  static constexpr std::size_t kSize = 1024;

  /// Records one duration, replacing the oldest once the ring is full.
  void Add(std::chrono::nanoseconds d) noexcept {
    ring_[next_ % kSize] = d.count();
    ++next_;
  }

  /// How many durations are held (at most kSize).
  std::size_t Size() const noexcept { return next_ < kSize ? static_cast<std::size_t>(next_) : kSize; }

  /// The p50 and p99 of the durations held (zeros when none is).
  struct Percentiles {
    std::chrono::nanoseconds p50{0}, p99{0};
  };

  /// Percentiles of the durations held (nearest rank).
  Percentiles Compute() const {
    const std::size_t n = Size();
    if (n == 0) return {};
    std::array<std::int64_t, kSize> v;
    std::copy_n(ring_.begin(), n, v.begin());
    return {At(v, n, 50), At(v, n, 99)};
  }

 private:
  // The nearest-rank `pct` percentile of v[0, n) (reorders v).
  static std::chrono::nanoseconds At(std::array<std::int64_t, kSize>& v, std::size_t n, std::size_t pct) {
    const std::size_t rank = (pct * n + 99) / 100;  // 1-based, at least 1
    const auto nth = v.begin() + static_cast<std::ptrdiff_t>(rank - 1);
    std::nth_element(v.begin(), nth, v.begin() + static_cast<std::ptrdiff_t>(n));
    return std::chrono::nanoseconds(*nth);
  }

  std::array<std::int64_t, kSize> ring_{};
  std::uint64_t next_ = 0;  // durations added so far
};

}  // namespace logsync::detail
