#pragma once
// Lock-free readers: how Log::Read and Log::View find a segment without a
// locked instruction, and how a writer knows when a segment or a segment
// table it unpublished can no longer be in use.
//
// A reader announces itself in a slot of its own (one cache line per
// thread, so readers on different cores share no line), reads the
// published table, uses it, and leaves: a plain store each way. A writer
// publishes a new table, then calls Synchronize(), which returns once
// every reader that could have loaded the old one has left; only then is
// the old table freed and a removed segment unmapped.
//
// The reader's store (announce) and load (table) must not be reordered, or
// the writer could miss a reader that still holds the old table. Rather
// than a full fence per read, the writer forces one on every running thread
// of the process with membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) (Linux
// 4.14+), and readers need only a compiler barrier. Where membarrier is not
// available, readers fall back to a full fence. Threads beyond kSlots (or
// whose slot could not be had) take the Log's shared lock instead.

#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace logsync::detail {

/// Whether writers can force a fence on every reader (membarrier); decided
/// once per process, before the first reader or writer needs to know.
inline bool AsymmetricFences() noexcept {
  static const bool ok = [] {
    const long cmds = ::syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    return cmds >= 0 && (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0 &&
           ::syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
  }();
  return ok;
}

/// Small per-thread numbers, unique among live threads and reused after a
/// thread exits: a thread's slot in every ReaderRegistry.
class ThreadNumbers {
 public:
  /// What Mine() returns to a thread that has no number (never a slot).
  static constexpr std::uint32_t kNone = ~0U;

  /// This thread's number (taken on first use, given back at thread exit;
  /// kNone once given back, for reads made by later thread_local destructors).
  static std::uint32_t Mine() noexcept {
    std::uint32_t& n = Number();
    if (n == kUnset) [[unlikely]] {
      thread_local Holder holder;
    }
    return n;
  }

  /// One more than the highest number handed out so far.
  static std::uint32_t HighWater() noexcept { return State().high_water.load(std::memory_order_acquire); }

 private:
  static constexpr std::uint32_t kUnset = kNone - 1;
  // Trivial thread_local: no wrapper call on each access.
  static std::uint32_t& Number() noexcept {
    thread_local std::uint32_t n = kUnset;
    return n;
  }
  struct Shared {
    std::mutex mu;
    std::vector<std::uint32_t> free;
    std::atomic<std::uint32_t> high_water{0};
  };
  // Leaked on purpose: threads may exit after static destruction began.
  static Shared& State() noexcept {
    static Shared* s = new Shared;
    return *s;
  }
  struct Holder {
    Holder() {
      Shared& s = State();
      std::lock_guard lock(s.mu);
      std::uint32_t number;
      if (!s.free.empty()) {
        number = s.free.back();
        s.free.pop_back();
      } else {
        number = s.high_water.load(std::memory_order_relaxed);
        s.high_water.store(number + 1, std::memory_order_release);
      }
      Number() = number;
    }
    ~Holder() {
      Shared& s = State();
      std::lock_guard lock(s.mu);
      s.free.push_back(Number());
      Number() = kNone;
    }
  };
};

/// The announcement slots of one Log's lock-free readers.
class ReaderRegistry {
  struct alignas(64) Slot {
    std::atomic<std::uint64_t> seq{0};  // odd while its thread reads
    std::uint32_t depth = 0;            // nesting, touched by its thread only
  };

 public:
  static constexpr std::uint32_t kSlots = 256;

  ReaderRegistry() : slots_(std::make_unique<Slot[]>(kSlots)) {}

  /// Announces this thread as a reader until destroyed. !Registered() when
  /// the thread has no slot: the caller must take its lock instead.
  class Guard {
   public:
    explicit Guard(const ReaderRegistry& r) noexcept {
      const std::uint32_t n = ThreadNumbers::Mine();
      if (n >= kSlots) return;
      slot_ = &r.slots_[n];
      if (slot_->depth++ == 0) {  // only this thread writes its slot
        slot_->seq.store(slot_->seq.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);  // odd: in
        if (AsymmetricFences())
          std::atomic_signal_fence(std::memory_order_seq_cst);
        else
          std::atomic_thread_fence(std::memory_order_seq_cst);
      }
    }
    ~Guard() {
      if (slot_ != nullptr && --slot_->depth == 0)
        slot_->seq.store(slot_->seq.load(std::memory_order_relaxed) + 1, std::memory_order_release);  // even: out
    }
    Guard(const Guard&) = delete;
    Guard& operator=(const Guard&) = delete;
    bool Registered() const noexcept { return slot_ != nullptr; }

   private:
    Slot* slot_ = nullptr;
  };

  /// Returns once every reader that was inside a Guard when this call began
  /// has left it. Call after unpublishing what readers must stop using.
  void Synchronize() const {
    if (AsymmetricFences()) {
      // Registered before any reader ran (and inherited by fork), so the
      // kernel has no reason to refuse; if it did, readers' orders would be
      // unknown, and carrying on could unmap a segment under one.
      if (::syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0) std::terminate();
    } else {
      std::atomic_thread_fence(std::memory_order_seq_cst);
    }
    const std::uint32_t n = std::min(ThreadNumbers::HighWater(), kSlots);
    for (std::uint32_t i = 0; i < n; ++i) {
      const std::uint64_t seq = slots_[i].seq.load(std::memory_order_acquire);
      if ((seq & 1) == 0) continue;
      while (slots_[i].seq.load(std::memory_order_acquire) == seq) std::this_thread::yield();
    }
  }

 private:
  std::unique_ptr<Slot[]> slots_;
};

}  // namespace logsync::detail
