#pragma once
/// What ReplicatedLog's asynchronous appends (SubmitBatch, SubmitIdempotent)
/// hand back: a PendingAppend, whose Get() waits for the outcome; and an
/// AppendChain, which keeps appends submitted one after another from being
/// applied past one of them that failed.

#include <logsync/error.hpp>
#include <logsync/raft/node_config.hpp>
#include <logsync/raft/state_machine.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <future>
#include <string>
#include <utility>

namespace logsync {

/// What an append did.
struct Appended {
  std::uint64_t first = 0;  ///< offset of its first record
  bool duplicate = false;   ///< a retry: the records were appended before, at `first`
};

/// Appends submitted one after another that must apply in that order: once
/// one of them failed (whatever the reason), those submitted after it that
/// have not gone to raft yet fail too without going (ReplicationError,
/// code RAFT_CANCELED: nothing was done), so that none is applied after a
/// failed one that the caller will send again. Use a new chain to go on.
class AppendChain {
 public:
  /// Whether an append of the chain failed.
  bool Broken() const noexcept { return broken_.load(std::memory_order_acquire); }
  void Break() noexcept { broken_.store(true, std::memory_order_release); }

 private:
  std::atomic<bool> broken_{false};
};

namespace detail {
/// The failure of an append of a broken AppendChain (`code`: RAFT_CANCELED).
inline std::exception_ptr SkippedAppend(int code) {
  return std::make_exception_ptr(ReplicationError("append: not submitted: an append before it failed", code));
}
}  // namespace detail

/// An append submitted to raft whose outcome may still be coming.
class PendingAppend {
 public:
  PendingAppend() = default;
  /// `producer` 0: a plain append, whose result is its first offset;
  /// otherwise an idempotent one (`sequence`), whose result is an Outcome.
  PendingAppend(std::future<std::uint64_t> result, std::uint64_t node, std::uint64_t producer,
                std::uint64_t sequence)
      : result_(std::move(result)), node_(node), producer_(producer), sequence_(sequence) {}

  /// Whether Get() would return (or throw) without waiting.
  bool Ready() const { return result_.wait_for(std::chrono::seconds(0)) == std::future_status::ready; }

  /// Waits for the outcome (once). Throws as ReplicatedLog::AppendBatch or
  /// AppendIdempotent would: NotLeader, ReplicationError (outcome unknown,
  /// or not submitted after a failure in its AppendChain),
  /// OutOfOrderSequence, StateError if the node closed.
  Appended Get() {
    std::uint64_t result = 0;
    try {
      result = result_.get();
    } catch (const std::future_error&) {
      throw StateError("logsync: replicated log node " + std::to_string(node_) + " closed during the request");
    }
    if (producer_ == 0) return Appended{result, false};
    const detail::Outcome o = detail::OutcomeOf(result);
    const std::string which = "producer " + std::to_string(producer_) + " sequence " + std::to_string(sequence_);
    switch (o.admission) {
      case detail::Admission::kNew: return Appended{o.first, false};
      case detail::Admission::kDuplicate: return Appended{o.first, true};
      case detail::Admission::kOutOfOrder:
        throw OutOfOrderSequence(which + " is below the last one, " + std::to_string(o.first) +
                                     ", and not among the ones remembered",
                                 o.first);
      case detail::Admission::kMismatch: break;
    }
    throw OutOfOrderSequence(which + " was appended before with another number of records", sequence_);
  }

 private:
  std::future<std::uint64_t> result_;
  std::uint64_t node_ = 0, producer_ = 0, sequence_ = 0;
};

}  // namespace logsync
