#pragma once
/// The producer table of a replicated log's state machine: per producer
/// (a client numbering its idempotent appends), its last kWindow appends
/// (sequence and the offsets it got), so that a retry of any of them is
/// answered with them instead of appending again. A pipelining client
/// (up to kWindow appends in flight) that retries from its first
/// unacknowledged append, in order, gets duplicates for those already
/// applied and never `out-of-order`.
///
/// Every node applies the same entries in the same order, so every node's
/// table is the same. Nothing in it reads a local clock: time is the entry
/// time the leader wrote into each producer entry (entry.hpp), and the
/// table's clock is the latest such time it has seen (never going back).
///
/// Bounds (ProducerLimits, identical on every node): a producer is dropped
/// once its last append is more than `expiry_ms` older than the table's
/// clock, and once `max_producers` others have appended since (least
/// recently used first).
///
///     snapshot form: the clock (u64), producer count P (u32, its top bit
///     set when the windows follow), then P times, least recently used
///     first: producer id, last sequence, first offset, record count, time
///     of the last append (5 x u64); then, if the top bit is set, P times
///     (same order): the count W (u32) of the producer's appends before its
///     last that it remembers, and W times, oldest first: sequence, first
///     offset, record count (3 x u64). A table without windows is written
///     as before them.

#include <logsync/detail/endian.hpp>
#include <logsync/raft/entry.hpp>
#include <logsync/raft/line_protocol.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <list>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

namespace logsync::detail {

/// How many producers a table keeps, and for how long.
struct ProducerLimits {
  std::size_t max_producers = 65536;
  std::uint64_t expiry_ms = 3'600'000;
};

/// How many appends of each producer the table remembers (its last and
/// the ones before it): the most a client may have in flight.
inline constexpr std::size_t kProducerWindow = kMaxAppendsInFlight;

/// One remembered append of a producer before its last.
struct ProducerAppend {
  std::uint64_t sequence = 0;
  std::uint64_t first = 0;
  std::uint64_t count = 0;
  friend bool operator==(const ProducerAppend&, const ProducerAppend&) = default;
};

/// One producer's last append (and the ones before it still remembered).
struct ProducerState {
  std::uint64_t producer = 0;
  std::uint64_t sequence = 0;  ///< the last sequence appended
  std::uint64_t first = 0;     ///< the offset of its first record
  std::uint64_t count = 0;     ///< how many records it appended
  std::uint64_t time_ms = 0;   ///< the table's clock when it did
  /// Up to kProducerWindow - 1 appends before the last, oldest first.
  std::vector<ProducerAppend> earlier;
  friend bool operator==(const ProducerState&, const ProducerState&) = default;
};

/// What an idempotent append is, against the table.
enum class Admission : std::uint8_t {
  kNew = 0,         ///< a sequence above the producer's last (or a producer not known): append
  kDuplicate = 1,   ///< a remembered sequence again: answer with its offsets
  kOutOfOrder = 2,  ///< below the producer's last sequence and not remembered: refuse
  kMismatch = 3,    ///< a remembered sequence again with another record count: refuse
};

class ProducerTable {
 public:
  static constexpr std::size_t kStateBytes = 40;

  explicit ProducerTable(ProducerLimits limits = {}) : limits_(limits) {}

  /// Advances the clock to the stamp's time (if later), expires, and says
  /// what an append of `count` records with `stamp` is; `state` is the
  /// producer's last append when it has one, its `first` and `count` those
  /// of the remembered append of that sequence (kDuplicate, kMismatch).
  Admission Check(const ProducerStamp& stamp, std::uint64_t count, ProducerState& state) {
    now_ms_ = std::max(now_ms_, stamp.time_ms);
    Expire();
    const auto it = by_id_.find(stamp.producer);
    if (it == by_id_.end()) return Admission::kNew;
    const ProducerState& s = *it->second;
    state = ProducerState{s.producer, s.sequence, s.first, s.count, s.time_ms, {}};
    if (stamp.sequence > s.sequence) return Admission::kNew;
    if (stamp.sequence < s.sequence) {
      const auto e = std::find_if(s.earlier.begin(), s.earlier.end(),
                                  [&](const ProducerAppend& a) { return a.sequence == stamp.sequence; });
      if (e == s.earlier.end()) return Admission::kOutOfOrder;
      state.first = e->first;
      state.count = e->count;
    }
    return state.count == count ? Admission::kDuplicate : Admission::kMismatch;
  }

  /// Remembers an append Check admitted, at offsets [first, first + count).
  void Remember(const ProducerStamp& stamp, std::uint64_t first, std::uint64_t count) {
    std::vector<ProducerAppend> earlier;
    if (const auto it = by_id_.find(stamp.producer); it != by_id_.end()) {
      earlier = std::move(it->second->earlier);
      earlier.push_back(ProducerAppend{it->second->sequence, it->second->first, it->second->count});
      if (earlier.size() >= kProducerWindow) earlier.erase(earlier.begin());
      lru_.erase(it->second);
      by_id_.erase(it);
    }
    lru_.push_back(ProducerState{stamp.producer, stamp.sequence, first, count, now_ms_, std::move(earlier)});
    by_id_[stamp.producer] = std::prev(lru_.end());
    Trim();
  }

  /// The producer's last append, if the table holds it.
  std::optional<ProducerState> Find(std::uint64_t producer) const {
    const auto it = by_id_.find(producer);
    if (it == by_id_.end()) return std::nullopt;
    return *it->second;
  }

  std::size_t Size() const noexcept { return lru_.size(); }
  std::uint64_t NowMs() const noexcept { return now_ms_; }
  const ProducerLimits& Limits() const noexcept { return limits_; }

  /// The producers, least recently used first.
  std::vector<ProducerState> States() const { return {lru_.begin(), lru_.end()}; }

  void Clear() {
    lru_.clear();
    by_id_.clear();
    now_ms_ = 0;
  }

  /// Bytes of the snapshot form (see the file comment).
  std::size_t EncodedSize() const noexcept {
    std::size_t n = 12 + kStateBytes * lru_.size();
    if (HasWindows())
      for (const auto& s : lru_) n += 4 + kAppendBytes * s.earlier.size();
    return n;
  }

  /// Writes the snapshot form at `out` (EncodedSize() bytes).
  void Encode(std::byte* out) const noexcept {
    const bool windows = HasWindows();
    StoreLE<std::uint64_t>(out, now_ms_);
    StoreLE<std::uint32_t>(out + 8, static_cast<std::uint32_t>(lru_.size()) | (windows ? kWindowsFlag : 0));
    out += 12;
    for (const auto& s : lru_) {
      for (const std::uint64_t v : {s.producer, s.sequence, s.first, s.count, s.time_ms}) {
        StoreLE<std::uint64_t>(out, v);
        out += 8;
      }
    }
    if (!windows) return;
    for (const auto& s : lru_) {
      StoreLE<std::uint32_t>(out, static_cast<std::uint32_t>(s.earlier.size()));
      out += 4;
      for (const auto& a : s.earlier)
        for (const std::uint64_t v : {a.sequence, a.first, a.count}) {
          StoreLE<std::uint64_t>(out, v);
          out += 8;
        }
    }
  }

  /// Replaces the table with the snapshot form at the start of `bytes`;
  /// the bytes it took, or nullopt (and the table unchanged) if it does not
  /// parse.
  std::optional<std::size_t> Decode(std::span<const std::byte> bytes) {
    if (bytes.size() < 12) return std::nullopt;
    const std::uint32_t word = LoadLE<std::uint32_t>(bytes.data() + 8);
    const std::uint32_t n = word & ~kWindowsFlag;
    if ((bytes.size() - 12) / kStateBytes < n) return std::nullopt;
    ProducerTable t(limits_);
    t.now_ms_ = LoadLE<std::uint64_t>(bytes.data());
    const std::byte* p = bytes.data() + 12;
    for (std::uint32_t i = 0; i < n; ++i, p += kStateBytes) {
      ProducerState s;
      s.producer = LoadLE<std::uint64_t>(p);
      s.sequence = LoadLE<std::uint64_t>(p + 8);
      s.first = LoadLE<std::uint64_t>(p + 16);
      s.count = LoadLE<std::uint64_t>(p + 24);
      s.time_ms = LoadLE<std::uint64_t>(p + 32);
      if (s.producer == 0 || t.by_id_.count(s.producer)) return std::nullopt;
      t.lru_.push_back(s);
      t.by_id_[s.producer] = std::prev(t.lru_.end());
    }
    std::size_t at = 12 + kStateBytes * std::size_t{n};
    if (word & kWindowsFlag) {
      for (auto& s : t.lru_) {
        if (bytes.size() - at < 4) return std::nullopt;
        const std::uint32_t w = LoadLE<std::uint32_t>(bytes.data() + at);
        at += 4;
        if (w >= kProducerWindow || (bytes.size() - at) / kAppendBytes < w) return std::nullopt;
        for (std::uint32_t i = 0; i < w; ++i, at += kAppendBytes)
          s.earlier.push_back(ProducerAppend{LoadLE<std::uint64_t>(bytes.data() + at),
                                             LoadLE<std::uint64_t>(bytes.data() + at + 8),
                                             LoadLE<std::uint64_t>(bytes.data() + at + 16)});
      }
    }
    t.Trim();
    *this = std::move(t);
    return at;
  }

  ProducerTable(ProducerTable&&) = default;
  ProducerTable& operator=(ProducerTable&&) = default;

 private:
  static constexpr std::size_t kAppendBytes = 24;
  static constexpr std::uint32_t kWindowsFlag = std::uint32_t{1} << 31;

  bool HasWindows() const noexcept {
    return std::any_of(lru_.begin(), lru_.end(), [](const ProducerState& s) { return !s.earlier.empty(); });
  }

  // Drops the producers idle longer than the expiry. The list is in order
  // of last append, whose times never go back: the oldest are at its front.
  void Expire() {
    while (!lru_.empty() && now_ms_ > lru_.front().time_ms && now_ms_ - lru_.front().time_ms > limits_.expiry_ms)
      Pop();
  }
  void Trim() {
    while (lru_.size() > limits_.max_producers) Pop();
  }
  void Pop() {
    by_id_.erase(lru_.front().producer);
    lru_.pop_front();
  }

  ProducerLimits limits_;
  std::uint64_t now_ms_ = 0;
  std::list<ProducerState> lru_;  // least recently used first
  std::unordered_map<std::uint64_t, std::list<ProducerState>::iterator> by_id_;
};

}  // namespace logsync::detail
