#pragma once
// Fixed little-endian loads and stores for the on-disk formats.

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace logsync::detail {

template <class T>
inline T ByteSwap(T v) noexcept {
  static_assert(std::is_unsigned_v<T>);
  T r = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i, v >>= 8) r = static_cast<T>((r << 8) | (v & 0xFF));
  return r;
}

template <class T>
inline T LoadLE(const std::byte* p) noexcept {
  T v;
  std::memcpy(&v, p, sizeof v);
  if constexpr (std::endian::native == std::endian::big) v = ByteSwap(v);
  return v;
}

template <class T>
inline void StoreLE(std::byte* p, T v) noexcept {
  if constexpr (std::endian::native == std::endian::big) v = ByteSwap(v);
  std::memcpy(p, &v, sizeof v);
}

}  // namespace logsync::detail
