#pragma once
// Building encoded frames and poking at files, for the layer tests.

#include <logsync/format.hpp>
#include <logsync/index.hpp>
#include <logsync/error.hpp>
#include <logsync/segment.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace logsync::test {

/// A whole frame (header and payload) of `payload` at `offset`.
inline std::vector<std::byte> EncodeFrame(std::uint64_t offset, std::span<const std::byte> payload) {
  std::vector<std::byte> f(kFrameHeaderBytes + payload.size());
  if (!payload.empty()) std::memcpy(f.data() + kFrameHeaderBytes, payload.data(), payload.size());
  detail::WriteFrameHeader(f.data(), offset, static_cast<std::uint32_t>(payload.size()), detail::PayloadCrc(payload));
  return f;
}

/// One encoded frame of `payload` at `offset`.
inline std::vector<std::byte> Frame(std::uint64_t offset, const std::string& payload) {
  return EncodeFrame(offset, std::as_bytes(std::span(payload)));
}

/// Published index entry i; OffsetOutOfRange (with i) at or past Count().
inline IndexEntry ReadEntry(const Index& index, std::uint64_t i) {
  if (i >= index.Count()) throw OffsetOutOfRange(i);
  return index.At(i);
}

/// The checked payload of a published offset of `s`, copied into `buf`.
inline std::span<const std::byte> ReadFrame(const Segment& s, std::uint64_t offset, std::vector<std::byte>& buf) {
  const auto payload = s.Payload(offset);
  buf.assign(payload.begin(), payload.end());
  return buf;
}

/// Appends whole frames (headers as Frame() makes them) to `s`: the
/// segment stamps each header again, with the same offset and CRC.
inline void AppendFrames(Segment& s, std::vector<std::byte> frames, std::span<const std::uint32_t> lengths) {
  std::vector<std::uint32_t> crcs;
  std::size_t at = 0;
  for (std::uint32_t len : lengths) {
    crcs.push_back(detail::PayloadCrc(std::span(frames).subspan(at + kFrameHeaderBytes, len)));
    at += kFrameHeaderBytes + len;
  }
  s.Append(frames, lengths, crcs);
}

inline std::string ReadFile(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

inline void WriteFile(const std::filesystem::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline void AppendToFile(const std::filesystem::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::app);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline std::string AsString(std::span<const std::byte> b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

}  // namespace logsync::test
