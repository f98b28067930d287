#define BOOST_TEST_MODULE read_test
#include <boost/test/unit_test.hpp>

// Reads that reuse a caller's record, counted against the heap, and the
// zero-copy scan of payload views.

#include <logsync/logsync.hpp>

#include "support/config.hpp"
#include "support/temp_dir.hpp"

#include <cstdlib>
#include <new>
#include <string>
#include <vector>

namespace {
// Allocations made by this thread (the log's background threads, sealing
// rolled segments, allocate on their own).
thread_local std::uint64_t allocations = 0;
}  // namespace

// Every allocation of the program is counted, per thread.
void* operator new(std::size_t n) {
  ++allocations;
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

using logsync::Log;
using logsync::Record;
using logsync::test::TempDir;

namespace {

std::string Value(std::uint64_t i) { return "value-" + std::to_string(i) + std::string(i % 61, 'r'); }

}  // namespace

BOOST_AUTO_TEST_CASE(read_into_a_record_allocates_nothing_in_steady_state) {
  TempDir dir;
  Log<> log(dir.path(), logsync::test::SmallSegments(4096));
  for (std::uint64_t i = 0; i < 500; ++i) log.Append(Record{0, Value(i)});
  BOOST_REQUIRE(log.SegmentCount() > 3U);
  std::vector<std::string> expected;
  for (std::uint64_t i = 0; i < 500; ++i) expected.push_back(Value(i));
  Record into;
  into.value.reserve(256);  // larger than any record here
  log.Read(0, into);        // warm: the reader's slot, the table
  const std::uint64_t before = allocations;
  std::uint64_t wrong = 0;
  for (std::uint64_t k = 0; k < 5000; ++k) {
    const std::uint64_t o = (k * 7919) % 500;
    log.Read(o, into);
    if (into.offset != o || into.value != expected[o]) ++wrong;
  }
  BOOST_TEST(allocations - before == 0U);
  BOOST_TEST(wrong == 0U);
  // The plain Read allocates (its record owns a new string, too long for
  // the string's inline buffer): the counter sees it.
  const std::uint64_t mark = allocations;
  const bool same = log.Read(60).value == expected[60];
  BOOST_TEST(allocations > mark);
  BOOST_TEST(same);
  BOOST_CHECK_THROW(log.Read(500, into), logsync::OffsetOutOfRange);
}

BOOST_AUTO_TEST_CASE(read_into_decodes_through_a_codec_without_decode_into) {
  struct Point {
    std::uint64_t offset;
    std::int32_t x, y;
  };
  TempDir dir;
  Log<Point> log(dir.path());
  for (std::int32_t i = 0; i < 10; ++i) log.Append(Point{0, i, -i});
  Point p{};
  log.Read(7, p);
  BOOST_TEST(p.offset == 7U);
  BOOST_TEST(p.x == 7);
  BOOST_TEST(p.y == -7);
}

BOOST_AUTO_TEST_CASE(scan_payloads_views_every_record_in_order_and_outlives_a_truncate) {
  TempDir dir;
  Log<> log(dir.path(), logsync::test::SmallSegments(2048));
  for (std::uint64_t i = 0; i < 300; ++i) log.Append(Record{0, Value(i)});
  BOOST_REQUIRE(log.SegmentCount() > 3U);
  auto range = log.ScanPayloads(10);
  std::vector<logsync::Payload> views;
  for (const auto& p : range) views.push_back(p);
  log.Append(Record{0, "after the scan began"});  // not in the range
  log.Truncate(250);                               // the range keeps its segments
  BOOST_REQUIRE(views.size() == 290U);
  for (std::uint64_t k = 0; k < views.size(); ++k) {
    BOOST_TEST(views[k].offset == 10 + k);
    BOOST_TEST(std::string(reinterpret_cast<const char*>(views[k].bytes.data()), views[k].bytes.size()) ==
               Value(10 + k));
  }
  // From below the lowest offset: from the lowest.
  std::uint64_t first = 0, n = 0;
  for (const auto& p : log.ScanPayloads(0)) {
    if (n++ == 0) first = p.offset;
  }
  BOOST_TEST(first == log.LowestOffset());
  BOOST_TEST(n == log.NextOffset() - log.LowestOffset());
}
