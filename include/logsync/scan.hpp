#pragma once
/// The lazy ranges a Log scans with: ScanRange (decoded records) and
/// PayloadRange (zero-copy payload views). Each holds the segments it reads
/// (SegmentSet::Held), so a concurrent Truncate or roll does not cut it
/// short and its views stay valid while it lives.

#include <logsync/record.hpp>
#include <logsync/segment_set.hpp>

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <optional>
#include <span>
#include <utility>

namespace logsync {

/// Input range over records, decoded by codec C: what Log::Scan returns.
template <class R, class C>
class ScanRange {
 public:
  class Iterator {
   public:
    using value_type = R;
    using difference_type = std::ptrdiff_t;
    using iterator_concept = std::input_iterator_tag;
    using iterator_category = std::input_iterator_tag;

    Iterator() = default;
    const R& operator*() const noexcept { return *current_; }
    const R* operator->() const noexcept { return &*current_; }
    Iterator& operator++() {
      ++offset_;
      Load();
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const Iterator& it, std::default_sentinel_t) noexcept { return it.done_; }

   private:
    friend class ScanRange;

    Iterator(const ScanRange* range, std::uint64_t offset) : range_(range), offset_(offset) { Load(); }

    void Load() {
      if (offset_ >= range_->end_) {
        done_ = true;
        return;
      }
      const SegmentSet::Segments& segs = range_->segments_;
      while (offset_ >= segs[seg_]->NextOffset()) ++seg_;
      current_.emplace(range_->codec_->Decode(segs[seg_]->Payload(offset_)));
      detail::SetOffset(*current_, offset_);
    }

    const ScanRange* range_ = nullptr;
    std::uint64_t offset_ = 0;
    std::size_t seg_ = 0;
    std::optional<R> current_;  // R need not be default-constructible
    bool done_ = false;
  };

  Iterator begin() const { return Iterator(this, from_); }
  std::default_sentinel_t end() const noexcept { return {}; }

 /// The records [from, end) of `segments` (held: Log::Scan makes these),
  /// decoded by `codec`, which must outlive the range.
  ScanRange(const C* codec, SegmentSet::Segments segments, std::uint64_t from, std::uint64_t end)
      : codec_(codec), segments_(std::move(segments)), from_(from), end_(end) {}

 private:
  const C* codec_;
  SegmentSet::Segments segments_;
  std::uint64_t from_, end_;
};

/// One record of a PayloadRange: its offset and its payload bytes.
struct Payload {
std::uint64_t offset;
std::span<const std::byte> bytes;
};

/// Input range over payload views: what Log::ScanPayloads returns.
class PayloadRange {
 public:
  class Iterator {
   public:
    using value_type = Payload;
    using difference_type = std::ptrdiff_t;
    using iterator_concept = std::input_iterator_tag;
    using iterator_category = std::input_iterator_tag;

    Iterator() = default;
    const Payload& operator*() const noexcept { return current_; }
    const Payload* operator->() const noexcept { return &current_; }
    Iterator& operator++() {
      ++current_.offset;
      Load();
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const Iterator& it, std::default_sentinel_t) noexcept {
      return it.current_.offset >= it.end_;
    }

   private:
    friend class PayloadRange;
    Iterator(const PayloadRange* range, std::uint64_t offset) : range_(range), end_(range->end_), current_{offset, {}} {
      Load();
    }

    void Load() {
      if (current_.offset >= range_->end_) return;
      while (current_.offset >= range_->segments_[seg_]->NextOffset()) ++seg_;
      current_.bytes = range_->segments_[seg_]->Payload(current_.offset);
    }

    const PayloadRange* range_ = nullptr;
    std::uint64_t end_ = 0;
    Payload current_{};
    std::size_t seg_ = 0;
  };

  Iterator begin() const { return Iterator(this, from_); }
  std::default_sentinel_t end() const noexcept { return {}; }

 /// The payloads [from, end) of `segments` (held: Log::ScanPayloads makes these).
  PayloadRange(SegmentSet::Segments segments, std::uint64_t from, std::uint64_t end)
      : segments_(std::move(segments)), from_(from), end_(end) {}

 private:
  SegmentSet::Segments segments_;
  std::uint64_t from_, end_;
};

}  // namespace logsync
