#pragma once
/// The producer table of a replicated log's state machine: per producer
/// (a client numbering its idempotent appends), the last sequence it
/// appended and the offsets that append got, so that a retry of it is
/// answered with them instead of appending again.
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
///     snapshot form: the clock (u64), producer count P (u32), then P times,
///     least recently used first: producer id, last sequence, first offset,
///     record count, time of the last append (5 x u64).

#include <logsync/detail/endian.hpp>
#include <logsync/raft/entry.hpp>

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

/// One producer's last append.
struct ProducerState {
  std::uint64_t producer = 0;
  std::uint64_t sequence = 0;  ///< the last sequence appended
  std::uint64_t first = 0;     ///< the offset of its first record
  std::uint64_t count = 0;     ///< how many records it appended
  std::uint64_t time_ms = 0;   ///< the table's clock when it did
  friend bool operator==(const ProducerState&, const ProducerState&) = default;
};

/// What an idempotent append is, against the table.
enum class Admission : std::uint8_t {
  kNew = 0,         ///< a sequence above the producer's last (or a producer not known): append
  kDuplicate = 1,   ///< the producer's last sequence again: answer with its offsets
  kOutOfOrder = 2,  ///< below the producer's last sequence: refuse
  kMismatch = 3,    ///< the last sequence again with another record count: refuse
};

class ProducerTable {
 public:
  static constexpr std::size_t kStateBytes = 40;

  explicit ProducerTable(ProducerLimits limits = {}) : limits_(limits) {}

  /// Advances the clock to the stamp's time (if later), expires, and says
  /// what an append of `count` records with `stamp` is; `state` is the
  /// producer's last append when it has one.
  Admission Check(const ProducerStamp& stamp, std::uint64_t count, ProducerState& state) {
    now_ms_ = std::max(now_ms_, stamp.time_ms);
    Expire();
    const auto it = by_id_.find(stamp.producer);
    if (it == by_id_.end()) return Admission::kNew;
    state = *it->second;
    if (stamp.sequence > state.sequence) return Admission::kNew;
    if (stamp.sequence < state.sequence) return Admission::kOutOfOrder;
    return state.count == count ? Admission::kDuplicate : Admission::kMismatch;
  }

  /// Remembers an append Check admitted, at offsets [first, first + count).
  void Remember(const ProducerStamp& stamp, std::uint64_t first, std::uint64_t count) {
    if (const auto it = by_id_.find(stamp.producer); it != by_id_.end()) {
      lru_.erase(it->second);
      by_id_.erase(it);
    }
    lru_.push_back(ProducerState{stamp.producer, stamp.sequence, first, count, now_ms_});
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
  std::size_t EncodedSize() const noexcept { return 12 + kStateBytes * lru_.size(); }

  /// Writes the snapshot form at `out` (EncodedSize() bytes).
  void Encode(std::byte* out) const noexcept {
    StoreLE<std::uint64_t>(out, now_ms_);
    StoreLE<std::uint32_t>(out + 8, static_cast<std::uint32_t>(lru_.size()));
    out += 12;
    for (const auto& s : lru_) {
      for (const std::uint64_t v : {s.producer, s.sequence, s.first, s.count, s.time_ms}) {
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
    const std::uint32_t n = LoadLE<std::uint32_t>(bytes.data() + 8);
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
    t.Trim();
    *this = std::move(t);
    return 12 + kStateBytes * std::size_t{n};
  }

  ProducerTable(ProducerTable&&) = default;
  ProducerTable& operator=(ProducerTable&&) = default;

 private:
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
