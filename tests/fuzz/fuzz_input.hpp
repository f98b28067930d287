#pragma once
// The input format of tests/fuzz/log_fuzz.cpp, shared with make_corpus.cpp
// (which encodes real log directories in it). See log_fuzz.cpp for the
// format's description.

#include <logsync/config.hpp>
#include <logsync/detail/crc32c.hpp>
#include <logsync/detail/endian.hpp>
#include <logsync/index.hpp>
#include <logsync/store.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <span>
#include <string>
#include <vector>

namespace logsync::fuzz {

inline constexpr std::size_t kMaxFiles = 8;
inline constexpr std::size_t kMaxContent = 0xffff;

// Bits of the kind byte.
inline constexpr std::uint8_t kKindIndex = 0x01;   // odd: .index, even: .store
inline constexpr std::uint8_t kKindHeader = 0x02;  // prefix a valid header for the base
inline constexpr unsigned kBaseModeShift = 2;      // bits 2-3: how the base is given
inline constexpr std::uint8_t kBaseModeMask = 0x03;

enum BaseMode : std::uint8_t {
  kBaseTimes4 = 0,    // base = k * 4
  kBaseByte = 1,      // base = k
  kBaseExplicit = 2,  // base = the u64 (little-endian) in the 8 bytes after k
  kBaseFromTop = 3,   // base = 2^64 - 1 - k (the end of the offset space)
};

struct FuzzFile {
  bool index = false;
  std::uint64_t base = 0;
  std::vector<std::byte> bytes;  // the file's contents

  std::string Name() const {
    char buf[48];
    std::snprintf(buf, sizeof buf, "%020llu.%s", static_cast<unsigned long long>(base), index ? "index" : "store");
    return buf;
  }
};

// A valid index header for `base` whose checkpoint is the 16 bytes at
// `checkpoint` (store bytes, records; zero-padded if shorter), with its CRC.
inline std::array<std::byte, kIndexHeaderBytes> IndexHeader(std::uint64_t base,
                                                            std::span<const std::byte> checkpoint) {
  std::array<std::byte, kIndexHeaderBytes> h{};
  std::memcpy(h.data(), kIndexMagic.data(), kIndexMagic.size());
  h[6] = std::byte{kIndexFormatVersion};
  detail::StoreLE<std::uint64_t>(h.data() + 8, base);
  std::memcpy(h.data() + 16, checkpoint.data(), std::min<std::size_t>(16, checkpoint.size()));
  detail::StoreLE<std::uint32_t>(h.data() + 32, detail::Crc32c(0, h.data() + 8, 24));
  return h;
}

// Decodes an input into at most kMaxFiles files (see log_fuzz.cpp). Stops
// at the first file whose kind, k, base or length bytes are cut short.
inline std::vector<FuzzFile> DecodeInput(const std::uint8_t* data, std::size_t size) {
  std::vector<FuzzFile> files;
  std::size_t at = 0;
  auto left = [&] { return size - at; };
  while (files.size() < kMaxFiles && left() >= 2) {
    const std::uint8_t kind = data[at], k = data[at + 1];
    at += 2;
    FuzzFile f;
    f.index = (kind & kKindIndex) != 0;
    switch ((kind >> kBaseModeShift) & kBaseModeMask) {
      case kBaseTimes4:
        f.base = std::uint64_t{k} * 4;
        break;
      case kBaseByte:
        f.base = k;
        break;
      case kBaseExplicit:
        if (left() < 8) return files;
        f.base = detail::LoadLE<std::uint64_t>(reinterpret_cast<const std::byte*>(data + at));
        at += 8;
        break;
      default:
        f.base = std::numeric_limits<std::uint64_t>::max() - k;
        break;
    }
    if (left() < 2) return files;
    const std::size_t want = data[at] | (std::size_t{data[at + 1]} << 8);
    at += 2;
    const std::size_t len = std::min(want, left());
    const auto* content = reinterpret_cast<const std::byte*>(data + at);
    at += len;
    if (kind & kKindHeader) {
      if (f.index) {
        const std::size_t cp = std::min<std::size_t>(16, len);
        const auto h = IndexHeader(f.base, std::span(content, cp));
        f.bytes.assign(h.begin(), h.end());
        f.bytes.insert(f.bytes.end(), content + cp, content + len);
      } else {
        const auto h = detail::StoreHeader(f.base);
        f.bytes.assign(h.begin(), h.end());
        f.bytes.insert(f.bytes.end(), content, content + len);
      }
    } else {
      f.bytes.assign(content, content + len);
    }
    files.push_back(std::move(f));
  }
  return files;
}

// Appends the encoding of one file to `out`, in the most compact form that
// decodes to exactly `bytes` (header flag when the file starts with a valid
// header for `base`, unless `allow_header` is false; the shortest base
// mode). Returns false if the file is too large for the format.
inline bool EncodeFile(std::vector<std::uint8_t>& out, bool index, std::uint64_t base,
                       std::span<const std::byte> bytes, bool allow_header = true) {
  std::vector<std::byte> content;
  bool header = false;
  if (index) {
    if (allow_header && bytes.size() >= kIndexHeaderBytes) {
      const auto h = IndexHeader(base, bytes.subspan(16, 16));
      if (std::equal(h.begin(), h.end(), bytes.begin())) {
        header = true;
        content.assign(bytes.begin() + 16, bytes.begin() + 32);
        content.insert(content.end(), bytes.begin() + kIndexHeaderBytes, bytes.end());
      }
    }
  } else if (allow_header && bytes.size() >= kStoreHeaderBytes) {
    const auto h = detail::StoreHeader(base);
    if (std::equal(h.begin(), h.end(), bytes.begin())) {
      header = true;
      content.assign(bytes.begin() + kStoreHeaderBytes, bytes.end());
    }
  }
  if (!header) content.assign(bytes.begin(), bytes.end());
  if (content.size() > kMaxContent) return false;

  std::uint8_t mode, k = 0;
  constexpr std::uint64_t top = std::numeric_limits<std::uint64_t>::max();
  if (base % 4 == 0 && base / 4 <= 0xff) {
    mode = kBaseTimes4, k = static_cast<std::uint8_t>(base / 4);
  } else if (base <= 0xff) {
    mode = kBaseByte, k = static_cast<std::uint8_t>(base);
  } else if (top - base <= 0xff) {
    mode = kBaseFromTop, k = static_cast<std::uint8_t>(top - base);
  } else {
    mode = kBaseExplicit;
  }
  out.push_back(static_cast<std::uint8_t>((index ? kKindIndex : 0) | (header ? kKindHeader : 0) |
                                          (mode << kBaseModeShift)));
  out.push_back(k);
  if (mode == kBaseExplicit)
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::uint8_t>(base >> (8 * i)));
  out.push_back(static_cast<std::uint8_t>(content.size() & 0xff));
  out.push_back(static_cast<std::uint8_t>(content.size() >> 8));
  for (std::byte b : content) out.push_back(static_cast<std::uint8_t>(b));
  return true;
}

}  // namespace logsync::fuzz
