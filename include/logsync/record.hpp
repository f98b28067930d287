#pragma once
/// The default record type, and how the log fills in a record's offset.

#include <concepts>
#include <cstdint>
#include <string>
#include <type_traits>

namespace logsync {

/// The default record: an opaque value and the offset the log gave it.
struct Record {
  std::uint64_t offset = 0;
  std::string value;
  friend bool operator==(const Record&, const Record&) = default;
};

namespace detail {

template <class R>
concept HasOffsetMember = requires { &R::offset; } &&
                          std::is_member_object_pointer_v<decltype(&R::offset)> &&
                          std::integral<std::remove_cvref_t<decltype(std::declval<R&>().offset)>>;

/// Sets `r.offset` when R has an integral data member named `offset`.
template <class R>
inline void SetOffset(R& r, std::uint64_t offset) noexcept {
  if constexpr (HasOffsetMember<R>)
    r.offset = static_cast<std::remove_cvref_t<decltype(r.offset)>>(offset);
}

}  // namespace detail
}  // namespace logsync
