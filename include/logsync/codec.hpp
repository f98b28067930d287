#pragma once
/// Codec policies: how a record becomes the payload bytes of a frame.
///
/// A codec for record type R is any type C with, static or on an instance
/// (the Log holds one, copied from its constructor argument):
///
///     std::size_t EncodedSize(const R&) const;           // exact payload size
///     void Encode(const R&, std::span<std::byte> out) const;  // out.size() == EncodedSize
///     R Decode(std::span<const std::byte> payload) const;
///
/// The three may be called from many threads at once and must not depend on
/// the record's offset: the log stores it in the frame header and fills an
/// integral `offset` member of R after Decode.

#include <logsync/record.hpp>

#include <array>
#include <bit>
#include <concepts>
#include <cstddef>
#include <cstring>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace logsync {

/// A codec C that encodes and decodes records of type R (see the file comment).
template <class C, class R>
concept Codec = requires(const C& c, const R& r, std::span<std::byte> out, std::span<const std::byte> in) {
  { c.EncodedSize(r) } -> std::convertible_to<std::size_t>;
  c.Encode(r, out);
  { c.Decode(in) } -> std::convertible_to<R>;
};

/// A codec that can also decode into an existing record, reusing its
/// storage (optional; Log::Read(offset, into) uses it when present):
///
///     void DecodeInto(std::span<const std::byte> payload, R& into) const;
template <class C, class R>
concept DecodesInto = requires(const C& c, std::span<const std::byte> in, R& into) { c.DecodeInto(in, into); };

/// Stores a trivially copyable T as its object representation (native byte
/// order: logs written with it are portable only between machines of the
/// same endianness and ABI). Decode throws std::length_error on a payload of
/// the wrong size.
template <class T>
struct TrivialCodec {
  static_assert(std::is_trivially_copyable_v<T>,
                "logsync::TrivialCodec<T>: T must be trivially copyable; write a Codec for it instead");
  static constexpr std::size_t EncodedSize(const T&) noexcept { return sizeof(T); }
  static void Encode(const T& r, std::span<std::byte> out) noexcept { std::memcpy(out.data(), &r, sizeof(T)); }
  static T Decode(std::span<const std::byte> in) {
    if (in.size() != sizeof(T))
      throw std::length_error("logsync::TrivialCodec: payload of " + std::to_string(in.size()) +
                              " bytes, expected " + std::to_string(sizeof(T)));
    std::array<std::byte, sizeof(T)> raw;
    std::memcpy(raw.data(), in.data(), sizeof(T));
    return std::bit_cast<T>(raw);  // T need not be default-constructible
  }
};

/// The default codec. For Record, the value's bytes stored verbatim; for a
/// trivially copyable R, TrivialCodec<R>. Other types need their own codec.
template <class R>
struct DefaultCodec : TrivialCodec<R> {};

template <>
struct DefaultCodec<Record> {
  static std::size_t EncodedSize(const Record& r) noexcept { return r.value.size(); }
  static void Encode(const Record& r, std::span<std::byte> out) noexcept {
    if (!r.value.empty()) std::memcpy(out.data(), r.value.data(), r.value.size());
  }
  static Record Decode(std::span<const std::byte> in) {
    return Record{0, std::string(reinterpret_cast<const char*>(in.data()), in.size())};
  }
  /// Into `into.value`'s buffer: no allocation while its capacity suffices.
  static void DecodeInto(std::span<const std::byte> in, Record& into) {
    into.value.assign(reinterpret_cast<const char*>(in.data()), in.size());
  }
};

}  // namespace logsync
