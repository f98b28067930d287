#define BOOST_TEST_MODULE crc32c_test
#include <boost/test/unit_test.hpp>

#include <logsync/detail/crc32c.hpp>
#include <logsync/format.hpp>

#include "support/frames.hpp"

#include <array>
#include <cstring>
#include <random>
#include <vector>

using namespace logsync;

namespace {

std::vector<std::byte> RandomBytes(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<std::byte> v(n);
  for (auto& b : v) b = static_cast<std::byte>(rng());
  return v;
}

using test::Frame;  // header then payload, with a valid header for `offset`

}  // namespace

BOOST_AUTO_TEST_CASE(check_value) {
  const char* s = "123456789";
  BOOST_TEST(detail::Crc32c(0, s, 9) == 0xE3069283U);
  BOOST_TEST(detail::Crc32cPortable(0, s, 9) == 0xE3069283U);
#if defined(__x86_64__)
  if (detail::HaveSse42()) BOOST_TEST(detail::Crc32cSse42(0, s, 9) == 0xE3069283U);
#endif
  BOOST_TEST(detail::Crc32c(0, s, 0) == 0U);
}

BOOST_AUTO_TEST_CASE(extending_at_every_split_point) {
  for (std::size_t n = 0; n <= 100; n += 7) {
    const auto buf = RandomBytes(n, static_cast<unsigned>(n));
    const std::uint32_t whole = detail::Crc32cPortable(0, buf.data(), n);
    BOOST_TEST(detail::Crc32c(0, buf.data(), n) == whole);
    for (std::size_t k = 0; k <= n; ++k) {
      BOOST_TEST(detail::Crc32cPortable(detail::Crc32cPortable(0, buf.data(), k), buf.data() + k, n - k) == whole);
#if defined(__x86_64__)
      if (detail::HaveSse42())
        BOOST_TEST(detail::Crc32cSse42(detail::Crc32cSse42(0, buf.data(), k), buf.data() + k, n - k) == whole);
#endif
    }
  }
}

BOOST_AUTO_TEST_CASE(frame_round_trip) {
  const auto f = Frame(42, "payload");
  BOOST_TEST(detail::CheckFrame(f, 42) == nullptr);
  const auto h = detail::ReadFrameHeader(f.data());
  BOOST_TEST(h.length == 7U);
  BOOST_TEST(h.offset == 42U);
  BOOST_TEST(detail::CheckFrame(Frame(0, ""), 0) == nullptr);
}

BOOST_AUTO_TEST_CASE(frame_failure_reasons) {
  const auto good = Frame(7, "some payload");
  BOOST_TEST(std::string(detail::CheckFrame(good, 8)) == "frame holds the wrong offset");
  BOOST_TEST(std::string(detail::CheckFrame(std::span(good).first(good.size() - 1), 7)) ==
             "frame length does not match");
  BOOST_TEST(std::string(detail::CheckFrame(std::span(good).first(10), 7)) == "frame header is cut short");
  for (std::size_t byte = 0; byte < good.size(); ++byte) {
    if (byte >= 4 && byte < 8) continue;  // the CRC field itself: flipping it is a mismatch too, below
    auto bad = good;
    bad[byte] ^= std::byte{0x10};
    BOOST_TEST(detail::CheckFrame(bad, 7) != nullptr, "flip at byte " << byte << " went unnoticed");
  }
  auto bad_crc = good;
  bad_crc[5] ^= std::byte{1};
  BOOST_TEST(std::string(detail::CheckFrame(bad_crc, 7)) == "checksum mismatch");
  std::vector<std::byte> zeros(kFrameHeaderBytes);
  BOOST_TEST(detail::CheckFrame(zeros, 0) != nullptr);  // a zero-filled header never holds
}
