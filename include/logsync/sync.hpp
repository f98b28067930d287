#pragma once
/// Sync policies: when appended records are made durable.
///
/// A sync policy S is constructible from the Log's Config and has
///
///     bool AfterAppend(std::uint64_t records);
///
/// which the log calls, one appender at a time, after every Append (records
/// == 1) and AppendBatch (records == batch size) once the records are
/// written and readable. Returning true makes that call wait until the
/// records are on stable storage (fdatasync of the store; concurrent
/// appenders share one sync). A policy may also declare
///
///     std::chrono::milliseconds Period() const;
///
/// to have the log sync, from a background thread, whatever is unsynced every
/// Period(). Sync() and Close() always sync. Whatever the policy, a sealed
/// segment is synced before the next one is created, so a crash loses at
/// most a suffix of the newest segment: what survives is a prefix of what was
/// appended, never a log with a hole.

#include <logsync/config.hpp>

#include <chrono>
#include <concepts>
#include <cstdint>

namespace logsync {

/// A sync policy (see the file comment).
template <class S>
concept SyncPolicy = std::constructible_from<S, const Config&> && requires(S& s, std::uint64_t n) {
  { s.AfterAppend(n) } -> std::convertible_to<bool>;
};

namespace detail {
/// A policy whose log syncs from a background thread every Period().
template <class S>
concept PeriodicSync = requires(const S& s) {
  { s.Period() } -> std::convertible_to<std::chrono::milliseconds>;
};
}  // namespace detail

namespace sync {

/// The operating system decides when data reaches the disk; Sync() and
/// Close() force it. A system crash or power loss may lose every record
/// appended since the last sync of the newest segment (a process crash loses
/// nothing: the data is in the page cache).
struct None {
  explicit None(const Config&) {}
  static constexpr bool AfterAppend(std::uint64_t) noexcept { return false; }
};

/// Every Append and AppendBatch is durable before it returns: the store is
/// fdatasync'd, and the directory is fsync'd after a segment file is created
/// or removed. A crash loses nothing that was acknowledged; an Append that
/// had not returned may or may not survive. Concurrent appenders share syncs.
struct Always {
  explicit Always(const Config&) {}
  static constexpr bool AfterAppend(std::uint64_t) noexcept { return true; }
};

/// Syncs once at least Config::sync.every_n records were appended since the
/// last sync; the Append that crosses the threshold waits for it. A crash may
/// lose up to every_n - 1 acknowledged records (plus a whole batch that
/// crossed nothing).
class EveryN {
 public:
  explicit EveryN(const Config& c) : n_(c.sync.every_n == 0 ? kDefaultEveryN : c.sync.every_n) {}
  bool AfterAppend(std::uint64_t records) noexcept {
    pending_ += records;
    if (pending_ < n_) return false;
    pending_ = 0;
    return true;
  }

 private:
  std::uint64_t n_, pending_ = 0;
};

/// A background thread syncs every Config::sync.interval while records are
/// unsynced; appends never wait. A crash may lose the records acknowledged
/// in the last interval (plus the time one sync takes).
class Interval {
 public:
  explicit Interval(const Config& c) : period_(c.sync.interval.count() == 0 ? kDefaultInterval : c.sync.interval) {}
  static constexpr bool AfterAppend(std::uint64_t) noexcept { return false; }
  std::chrono::milliseconds Period() const noexcept { return period_; }

 private:
  std::chrono::milliseconds period_;
};

}  // namespace sync
}  // namespace logsync
