#pragma once
// CRC32C (Castagnoli), the checksum of every store frame.
//
// Boost.CRC computes it portably one byte at a time; on x86-64 with SSE4.2 the
// crc32 instruction does eight bytes per cycle, which keeps checksumming far
// below the cost of the copy it protects. No Debian-packaged header-only
// library offers the hardware path, so it is written here; both paths are
// checked against each other and the published check value in the tests.

#include <boost/crc.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace logsync::detail {

/// Continues a finished CRC32C `crc` over `size` more bytes (start with 0).
inline std::uint32_t Crc32cPortable(std::uint32_t crc, const void* data, std::size_t size) noexcept {
  // crc_optimal takes its initial register un-reflected: seeding it with the
  // bit-reversed complement of a finished value resumes the computation.
  std::uint32_t reg = ~crc, reflected = 0;
  for (int i = 0; i < 32; ++i, reg >>= 1) reflected = (reflected << 1) | (reg & 1U);
  boost::crc_optimal<32, 0x1EDC6F41, 0xFFFFFFFF, 0xFFFFFFFF, true, true> c(reflected);
  c.process_bytes(data, size);
  return c.checksum();
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
[[gnu::target("sse4.2")]] inline std::uint32_t Crc32cSse42(std::uint32_t crc, const void* data,
                                                           std::size_t size) noexcept {
  auto p = static_cast<const unsigned char*>(data);
  std::uint64_t c = ~crc;
  while (size >= 8) {
    std::uint64_t v;
    std::memcpy(&v, p, 8);
    c = __builtin_ia32_crc32di(c, v);
    p += 8;
    size -= 8;
  }
  auto c32 = static_cast<std::uint32_t>(c);
  while (size-- > 0) c32 = __builtin_ia32_crc32qi(c32, *p++);
  return ~c32;
}

inline bool HaveSse42() noexcept {
  static const bool have = __builtin_cpu_supports("sse4.2");
  return have;
}
#endif

/// CRC32C of `size` bytes, continuing `crc` (0 to start).
inline std::uint32_t Crc32c(std::uint32_t crc, const void* data, std::size_t size) noexcept {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  if (HaveSse42()) return Crc32cSse42(crc, data, size);
#endif
  return Crc32cPortable(crc, data, size);
}

}  // namespace logsync::detail
