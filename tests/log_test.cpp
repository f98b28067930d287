#define BOOST_TEST_MODULE log_test
#include <boost/test/unit_test.hpp>

#include <logsync/logsync.hpp>

#include "support/log_helpers.hpp"
#include "support/temp_dir.hpp"

#include <algorithm>
#include <array>
#include <csignal>
#include <sys/wait.h>
#include <unistd.h>
#include <cstring>
#include <fstream>
#include <set>
#include <span>
#include <string>
#include <vector>

using logsync::Config;
using logsync::Log;
using logsync::Record;
using logsync::test::CountFiles;
using logsync::test::Rec;
using logsync::test::Small;
using logsync::test::TempDir;
using logsync::test::Value;

BOOST_AUTO_TEST_CASE(append_and_read) {
  TempDir dir;
  Log<> log(dir.path(), Small());
  for (std::uint64_t i = 0; i < 50; ++i) BOOST_TEST(log.Append(Rec(Value(i))) == i);
  for (std::uint64_t i = 0; i < 50; ++i) {
    Record r = log.Read(i);
    BOOST_TEST(r.offset == i);
    BOOST_TEST(r.value == Value(i));
  }
  BOOST_TEST(log.LowestOffset() == 0U);
  BOOST_TEST(log.HighestOffset() == 49U);
  BOOST_TEST(log.NextOffset() == 50U);
}

BOOST_AUTO_TEST_CASE(empty_and_binary_values) {
  TempDir dir;
  Log<> log(dir.path());
  std::string bin("a\0b\0\xff", 5);
  log.Append(Rec(""));
  log.Append(Rec(bin));
  BOOST_TEST(log.Read(0).value.empty());
  BOOST_TEST(log.Read(1).value == bin);
}

BOOST_AUTO_TEST_CASE(offset_out_of_range) {
  TempDir dir;
  Log<> log(dir.path());
  BOOST_TEST(log.Empty());
  BOOST_CHECK_EXCEPTION(log.Read(0), logsync::OffsetOutOfRange,
                        [](const logsync::OffsetOutOfRange& e) { return e.offset() == 0; });
  log.Append(Rec("a"));
  BOOST_CHECK_EXCEPTION(log.Read(1), logsync::OffsetOutOfRange,
                        [](const logsync::OffsetOutOfRange& e) { return e.offset() == 1; });
  BOOST_CHECK_THROW(log.Read(~0ULL), logsync::OffsetOutOfRange);
  // It is a logsync::Error, catchable as such.
  BOOST_CHECK_THROW(log.Read(7), logsync::Error);
}

BOOST_AUTO_TEST_CASE(view_gives_the_payload_without_a_copy) {
  TempDir dir;
  Log<> log(dir.path(), Small(256));
  for (std::uint64_t i = 0; i < 40; ++i) log.Append(Rec(Value(i)));
  BOOST_TEST(log.SegmentCount() > 1U);
  for (std::uint64_t i = 0; i < 40; ++i) {
    const std::string seen = log.View(i, [](std::span<const std::byte> p) {
      return std::string(reinterpret_cast<const char*>(p.data()), p.size());
    });
    BOOST_TEST(seen == Value(i));
    BOOST_TEST(seen == log.Read(i).value);
  }
  // The view points into the store's mapping, not at a copy: two views of
  // one record see the same bytes, and a void callback is allowed.
  const std::byte* first = log.View(7, [](std::span<const std::byte> p) { return p.data(); });
  log.View(7, [&](std::span<const std::byte> p) { BOOST_TEST(p.data() == first); });
  BOOST_CHECK_EXCEPTION(log.View(40, [](std::span<const std::byte>) { return 0; }), logsync::OffsetOutOfRange,
                        [](const logsync::OffsetOutOfRange& e) { return e.offset() == 40U; });
  log.Truncate(20);
  BOOST_CHECK_THROW(log.View(3, [](std::span<const std::byte>) { return 0; }), logsync::OffsetOutOfRange);
  BOOST_TEST(log.View(39, [](std::span<const std::byte> p) { return p.size(); }) == Value(39).size());
  log.Close();
  BOOST_CHECK_THROW(log.View(39, [](std::span<const std::byte>) { return 0; }), logsync::StateError);
}

BOOST_AUTO_TEST_CASE(view_batch_visits_offsets_in_order) {
  TempDir dir;
  Log<> log(dir.path(), Small(256));
  for (std::uint64_t i = 0; i < 100; ++i) log.Append(Rec(Value(i)));
  BOOST_TEST(log.SegmentCount() > 3U);
  // Scattered over every segment, with repeats, longer than one prefetch round.
  std::vector<std::uint64_t> offsets;
  for (std::uint64_t i = 0; i < 70; ++i) offsets.push_back((i * 37) % 100);
  std::vector<std::uint64_t> seen;
  log.ViewBatch(offsets, [&](std::uint64_t o, std::span<const std::byte> p) {
    seen.push_back(o);
    BOOST_TEST(std::string(reinterpret_cast<const char*>(p.data()), p.size()) == Value(o));
  });
  BOOST_TEST(seen == offsets);
  log.ViewBatch({}, [](std::uint64_t, std::span<const std::byte>) { BOOST_FAIL("called for an empty batch"); });
  // One offset out of range: nothing is visited.
  offsets.push_back(100);
  bool called = false;
  BOOST_CHECK_EXCEPTION(log.ViewBatch(offsets, [&](std::uint64_t, std::span<const std::byte>) { called = true; }),
                        logsync::OffsetOutOfRange, [](const logsync::OffsetOutOfRange& e) { return e.offset() == 100U; });
  BOOST_TEST(!called);
  log.Close();
  BOOST_CHECK_THROW(log.ViewBatch(seen, [](std::uint64_t, std::span<const std::byte>) {}), logsync::StateError);
}

BOOST_AUTO_TEST_CASE(init_with_existing_segments) {
  TempDir dir;
  {
    Log<> log(dir.path(), Small(256));
    for (int i = 0; i < 30; ++i) log.Append(Rec(Value(i)));
    BOOST_TEST(log.SegmentCount() > 3U);
    log.Close();
  }
  Log<> log(dir.path(), Small(256));
  BOOST_TEST(log.LowestOffset() == 0U);
  BOOST_TEST(log.NextOffset() == 30U);
  for (int i = 0; i < 30; ++i) BOOST_TEST(log.Read(i).value == Value(i));
  BOOST_TEST(log.Append(Rec("more")) == 30U);
  BOOST_TEST(log.Read(30).value == "more");
}

BOOST_AUTO_TEST_CASE(reopen_without_close_keeps_records) {
  TempDir dir;
  {
    Log<> log(dir.path(), Small(300));
    for (int i = 0; i < 20; ++i) log.Append(Rec(Value(i)));
    // The destructor closes; this checks that a second open of a log whose
    // active index was preallocated (not trimmed) also recovers.
  }
  {
    Log<> log(dir.path(), Small(300));
    BOOST_TEST(log.NextOffset() == 20U);
  }
}

BOOST_AUTO_TEST_CASE(second_log_on_same_directory_is_refused) {
  TempDir dir;
  Log<> log(dir.path());
  BOOST_CHECK_THROW(Log<> other(dir.path()), logsync::StateError);
  log.Close();
  Log<> again(dir.path());  // released on Close
  BOOST_TEST(again.NextOffset() == 0U);
}

BOOST_AUTO_TEST_CASE(reader_streams_every_store) {
  TempDir dir;
  Log<> log(dir.path(), Small(200));
  for (int i = 0; i < 20; ++i) log.Append(Rec(Value(i)));
  std::string expected;
  std::vector<std::filesystem::path> stores;
  for (const auto& e : std::filesystem::directory_iterator(dir.path()))
    if (e.path().extension() == ".store") stores.push_back(e.path());
  std::sort(stores.begin(), stores.end());
  for (const auto& p : stores) {
    std::ifstream in(p, std::ios::binary);
    expected.append(std::istreambuf_iterator<char>(in), {});
  }
  auto reader = log.Reader();
  std::string got;
  std::array<std::byte, 7> buf{};  // odd size: reads straddle frames and files
  while (std::size_t n = reader.Read(buf)) got.append(reinterpret_cast<const char*>(buf.data()), n);
  BOOST_TEST(got.size() == expected.size());
  BOOST_TEST((got == expected));
  // The stream holds every record's frame: its payloads appear in order.
  std::size_t pos = 0;
  for (int i = 0; i < 20; ++i) {
    pos = got.find(Value(i), pos);
    BOOST_TEST(pos != std::string::npos);
  }
}

BOOST_AUTO_TEST_CASE(reader_is_a_point_in_time_view) {
  TempDir dir;
  Log<> log(dir.path());
  log.Append(Rec("first"));
  auto reader = log.Reader();
  log.Append(Rec("second"));
  std::vector<std::byte> buf(4096);
  std::size_t total = 0;
  while (std::size_t n = reader.Read(std::span(buf).subspan(total))) total += n;
  BOOST_TEST(total == logsync::kStoreHeaderBytes + logsync::kFrameHeaderBytes + 5);
}

BOOST_AUTO_TEST_CASE(initial_offset) {
  TempDir dir;
  Config c;
  c.segment.initial_offset = 1000;
  {
    Log<> log(dir.path(), c);
    BOOST_TEST(log.LowestOffset() == 1000U);
    BOOST_TEST(log.NextOffset() == 1000U);
    BOOST_TEST(log.Append(Rec("a")) == 1000U);
    BOOST_TEST(log.Read(1000).offset == 1000U);
    BOOST_CHECK_THROW(log.Read(999), logsync::OffsetOutOfRange);
    BOOST_TEST(std::filesystem::exists(dir / "00000000000000001000.store"));
  }
  // Existing segments win over initial_offset.
  c.segment.initial_offset = 5;
  Log<> log(dir.path(), c);
  BOOST_TEST(log.LowestOffset() == 1000U);
  BOOST_TEST(log.Append(Rec("b")) == 1001U);
}

BOOST_AUTO_TEST_CASE(scan_from_the_middle_and_past_the_end) {
  TempDir dir;
  Log<> log(dir.path(), Small(300));
  for (int i = 0; i < 60; ++i) log.Append(Rec(Value(i)));
  std::uint64_t expect = 17;
  for (const Record& r : log.Scan(17)) {
    BOOST_TEST(r.offset == expect);
    BOOST_TEST(r.value == Value(expect));
    ++expect;
  }
  BOOST_TEST(expect == 60U);
  auto past = log.Scan(60);
  BOOST_TEST((past.begin() == past.end()));
  // A scan sees the records appended before it was made, not after.
  auto scan = log.Scan(58);
  log.Append(Rec("later"));
  std::size_t n = 0;
  for (const Record& r : scan) {
    (void)r;
    ++n;
  }
  BOOST_TEST(n == 2U);
}

BOOST_AUTO_TEST_CASE(scan_large_records_bigger_than_the_read_ahead) {
  TempDir dir;
  Log<> log(dir.path());
  const std::string big(700 * 1024, 'b');
  log.Append(Rec("small"));
  log.Append(Rec(big));
  log.Append(Rec("tail"));
  std::vector<std::string> got;
  for (const Record& r : log.Scan(0)) got.push_back(r.value);
  BOOST_TEST(got.size() == 3U);
  BOOST_TEST((got[1] == big));
  BOOST_TEST(got[2] == "tail");
}

BOOST_AUTO_TEST_CASE(append_batch_gets_contiguous_offsets) {
  TempDir dir;
  Log<> log(dir.path(), Small(400));
  log.Append(Rec("solo"));
  std::vector<Record> batch;
  for (int i = 0; i < 25; ++i) batch.push_back(Rec(Value(i)));
  BOOST_TEST(log.AppendBatch(batch) == 1U);
  BOOST_TEST(log.NextOffset() == 26U);
  for (int i = 0; i < 25; ++i) BOOST_TEST(log.Read(1 + i).value == Value(i));
  BOOST_TEST(log.AppendBatch(std::span<const Record>{}) == 26U);
  BOOST_TEST(log.NextOffset() == 26U);
  log.Close();
  Log<> again(dir.path(), Small(400));
  BOOST_TEST(again.NextOffset() == 26U);
  BOOST_TEST(again.Read(25).value == Value(24));
}

BOOST_AUTO_TEST_CASE(record_too_large_writes_nothing) {
  TempDir dir;
  Config c;
  c.max_record_bytes = 100;
  Log<> log(dir.path(), c);
  log.Append(Rec("ok"));
  BOOST_CHECK_EXCEPTION(log.Append(Rec(std::string(101, 'a'))), logsync::RecordTooLarge,
                        [](const logsync::RecordTooLarge& e) { return e.size() == 101 && e.limit() == 100; });
  std::vector<Record> batch{Rec("fine"), Rec(std::string(500, 'a'))};
  BOOST_CHECK_THROW(log.AppendBatch(batch), logsync::RecordTooLarge);
  BOOST_TEST(log.NextOffset() == 1U);
  BOOST_TEST(log.Append(Rec(std::string(100, 'a'))) == 1U);
  BOOST_TEST(log.Read(0).value == "ok");
  log.Close();
  BOOST_TEST(std::filesystem::file_size(dir / "00000000000000000000.store") ==
             logsync::kStoreHeaderBytes + 2 * logsync::kFrameHeaderBytes + 2 + 100);
}

BOOST_AUTO_TEST_CASE(record_as_large_as_a_segment_allows) {
  TempDir dir;
  Config c = Small(1024);
  Log<> log(dir.path(), c);
  const std::size_t max = 1024 - logsync::kStoreHeaderBytes - logsync::kFrameHeaderBytes;
  BOOST_TEST(log.GetConfig().max_record_bytes == max);
  log.Append(Rec("a"));
  log.Append(Rec(std::string(max, 'm')));  // gets a segment of its own
  log.Append(Rec("b"));
  BOOST_TEST(log.SegmentCount() == 3U);
  BOOST_TEST(log.Read(1).value.size() == max);
  for (const auto& e : std::filesystem::directory_iterator(dir.path()))
    if (e.path().extension() == ".store") BOOST_TEST(std::filesystem::file_size(e.path()) <= 1024U);
}

// --- custom record types ---------------------------------------------------

namespace {

struct Point {
  std::int64_t offset;  // filled in by the log
  double x, y;
};

struct Event {
  std::string name;
  std::vector<int> values;
  friend bool operator==(const Event&, const Event&) = default;
};

// A user codec: length-prefixed name, then the ints. Stateful: counts calls.
struct EventCodec {
  std::shared_ptr<std::atomic<int>> decodes = std::make_shared<std::atomic<int>>(0);
  std::size_t EncodedSize(const Event& e) const { return 4 + e.name.size() + 4 * e.values.size(); }
  void Encode(const Event& e, std::span<std::byte> out) const {
    const auto n = static_cast<std::uint32_t>(e.name.size());
    std::memcpy(out.data(), &n, 4);
    std::memcpy(out.data() + 4, e.name.data(), n);
    if (!e.values.empty()) std::memcpy(out.data() + 4 + n, e.values.data(), 4 * e.values.size());
  }
  Event Decode(std::span<const std::byte> in) const {
    ++*decodes;
    std::uint32_t n;
    std::memcpy(&n, in.data(), 4);
    Event e;
    e.name.assign(reinterpret_cast<const char*>(in.data()) + 4, n);
    e.values.resize((in.size() - 4 - n) / 4);
    if (!e.values.empty()) std::memcpy(e.values.data(), in.data() + 4 + n, 4 * e.values.size());
    return e;
  }
};

static_assert(logsync::Codec<EventCodec, Event>);
static_assert(logsync::Codec<logsync::TrivialCodec<Point>, Point>);
static_assert(!logsync::Codec<EventCodec, Point>);
static_assert(std::ranges::input_range<Log<>::ScanRange>);
static_assert(std::ranges::input_range<Log<Point, logsync::TrivialCodec<Point>>::ScanRange>);

}  // namespace

BOOST_AUTO_TEST_CASE(trivial_codec_records_get_their_offset) {
  TempDir dir;
  Log<Point, logsync::TrivialCodec<Point>> log(dir.path(), Small(300));
  for (int i = 0; i < 40; ++i) log.Append(Point{-1, i * 1.5, -i * 2.0});
  for (int i = 0; i < 40; ++i) {
    Point p = log.Read(i);
    BOOST_TEST(p.offset == i);
    BOOST_TEST(p.x == i * 1.5);
    BOOST_TEST(p.y == -i * 2.0);
  }
  int n = 0;
  for (const Point& p : log.Scan(0)) BOOST_TEST(p.offset == n++);
  BOOST_TEST(n == 40);
}

namespace {
struct NoDefault {
  explicit NoDefault(int v) : value(v) {}
  int value;
};
struct NoDefaultCodec {
  static std::size_t EncodedSize(const NoDefault&) { return sizeof(int); }
  static void Encode(const NoDefault& r, std::span<std::byte> out) { std::memcpy(out.data(), &r.value, sizeof(int)); }
  static NoDefault Decode(std::span<const std::byte> in) {
    int v;
    std::memcpy(&v, in.data(), sizeof v);
    return NoDefault(v);
  }
};
}  // namespace

BOOST_AUTO_TEST_CASE(records_without_a_default_constructor) {
  TempDir dir;
  Log<NoDefault, NoDefaultCodec> log(dir.path());
  for (int i = 0; i < 5; ++i) log.Append(NoDefault(i * 10));
  BOOST_TEST(log.Read(3).value == 30);
  int expect = 0;
  for (const NoDefault& r : log.Scan(0)) {
    BOOST_TEST(r.value == expect);
    expect += 10;
  }
  BOOST_TEST(expect == 50);
}

BOOST_AUTO_TEST_CASE(default_codec_of_a_trivial_type) {
  TempDir dir;
  Log<std::uint64_t> log(dir.path());  // DefaultCodec<uint64_t> is TrivialCodec
  log.Append(42);
  log.Append(7);
  BOOST_TEST(log.Read(0) == 42U);
  BOOST_TEST(log.Read(1) == 7U);
}

BOOST_AUTO_TEST_CASE(user_codec_instance_is_used) {
  TempDir dir;
  EventCodec codec;
  auto decodes = codec.decodes;
  Log<Event, EventCodec> log(dir.path(), Config{}, codec);
  std::vector<Event> events{{"a", {1, 2, 3}}, {"", {}}, {"long name", {-5}}};
  for (const auto& e : events) log.Append(e);
  log.AppendBatch(events);
  for (std::uint64_t i = 0; i < 6; ++i) BOOST_TEST((log.Read(i) == events[i % 3]));
  BOOST_TEST(decodes->load() == 6);
}

// --- sync policies (behaviour under crash is in sync_test) -----------------

template <class S>
void RoundTripWith() {
  TempDir dir;
  Config c = Small(500);
  c.sync.every_n = 3;
  c.sync.interval = std::chrono::milliseconds(5);
  {
    Log<Record, logsync::DefaultCodec<Record>, S> log(dir.path(), c);
    for (int i = 0; i < 30; ++i) log.Append(Rec(Value(i)));
    std::vector<Record> batch(5, Rec("batch"));
    log.AppendBatch(batch);
    log.Sync();
  }
  Log<Record, logsync::DefaultCodec<Record>, S> log(dir.path(), c);
  BOOST_TEST(log.NextOffset() == 35U);
  BOOST_TEST(log.Read(29).value == Value(29));
}

BOOST_AUTO_TEST_CASE(each_sync_policy_round_trips) {
  RoundTripWith<logsync::sync::None>();
  RoundTripWith<logsync::sync::Always>();
  RoundTripWith<logsync::sync::EveryN>();
  RoundTripWith<logsync::sync::Interval>();
}

// --- the directory ----------------------------------------------------------

BOOST_AUTO_TEST_CASE(remove_deletes_the_directory_when_empty) {
  TempDir dir;
  const auto sub = dir / "log";
  Log<> log(sub, Small(200));
  for (int i = 0; i < 20; ++i) log.Append(Rec(Value(i)));
  log.Remove();
  BOOST_TEST(!std::filesystem::exists(sub));
  BOOST_CHECK_THROW(log.Append(Rec("x")), logsync::StateError);
  BOOST_CHECK_THROW(log.Read(0), logsync::StateError);
}

BOOST_AUTO_TEST_CASE(reset_starts_over_at_initial_offset) {
  TempDir dir;
  Config c = Small(200);
  c.segment.initial_offset = 50;
  Log<> log(dir.path(), c);
  for (int i = 0; i < 20; ++i) log.Append(Rec(Value(i)));
  log.Reset();
  BOOST_TEST(log.Empty());
  BOOST_TEST(log.NextOffset() == 50U);
  BOOST_TEST(log.SegmentCount() == 1U);
  BOOST_TEST(log.Append(Rec("fresh")) == 50U);
  BOOST_TEST(log.Read(50).value == "fresh");
}

BOOST_AUTO_TEST_CASE(closed_log_refuses_calls) {
  TempDir dir;
  Log<> log(dir.path());
  log.Append(Rec("a"));
  log.Close();
  log.Close();  // idempotent
  BOOST_CHECK_THROW(log.Append(Rec("b")), logsync::StateError);
  BOOST_CHECK_THROW(log.Read(0), logsync::StateError);
  BOOST_CHECK_THROW(log.Scan(0), logsync::StateError);
  BOOST_CHECK_THROW(log.Sync(), logsync::StateError);
  BOOST_CHECK_THROW(log.Truncate(0), logsync::StateError);
}

BOOST_AUTO_TEST_CASE(close_trims_the_index) {
  TempDir dir;
  Log<> log(dir.path());
  const auto index = dir / "00000000000000000000.index";
  for (int i = 0; i < 5; ++i) log.Append(Rec("v"));
  // allocated ahead of its entries, one step
  BOOST_TEST(std::filesystem::file_size(index) == logsync::kIndexHeaderBytes + logsync::Index::kIndexAllocateStep);
  log.Close();
  BOOST_TEST(std::filesystem::file_size(index) == logsync::kIndexHeaderBytes + 5 * logsync::kIndexEntryBytes);
}

BOOST_AUTO_TEST_CASE(invalid_config_throws_before_writing) {
  TempDir dir;
  const auto sub = dir / "never";
  auto expect_field = [&](Config c, const std::string& field) {
    try {
      Log<> log(sub, c);
      BOOST_ERROR("no exception for " + field);
    } catch (const std::invalid_argument& e) {
      BOOST_TEST(std::string(e.what()).find(field) != std::string::npos, e.what());
    }
    BOOST_TEST(!std::filesystem::exists(sub));
  };
  Config c;
  c.segment.max_index_bytes = logsync::kIndexEntryBytes - 1;
  expect_field(c, "max_index_bytes");
  c = {};
  c.segment.max_store_bytes = 20;
  expect_field(c, "max_store_bytes");
  c = {};
  c.segment.max_store_bytes = 1024;
  c.max_record_bytes = 2000;
  expect_field(c, "max_record_bytes");
  c = {};
  c.max_record_bytes = 1ULL << 33;
  expect_field(c, "max_record_bytes");
  c = {};
  c.sync.interval = std::chrono::milliseconds(-1);
  expect_field(c, "sync.interval");
  c = {};
  c.segment.initial_offset = ~0ULL;
  expect_field(c, "initial_offset");
  c = {};
  c.segment.max_index_bytes = (1ULL << 36) + logsync::kIndexEntryBytes;
  expect_field(c, "max_index_bytes");
}

BOOST_AUTO_TEST_CASE(defaults_are_filled_in) {
  TempDir dir;
  Log<> log(dir.path());
  const Config& c = log.GetConfig();
  BOOST_TEST(c.segment.max_store_bytes == logsync::kDefaultMaxStoreBytes);
  BOOST_TEST(c.segment.max_index_bytes == logsync::DefaultMaxIndexBytes(logsync::kDefaultMaxStoreBytes));
  BOOST_TEST(c.max_record_bytes == logsync::kDefaultMaxRecordBytes);
  BOOST_TEST(c.sync.every_n == logsync::kDefaultEveryN);
  BOOST_TEST(c.sync.interval.count() == logsync::kDefaultInterval.count());
}

// --- recovery basics (the crash-safety suite goes further) ------------------

BOOST_AUTO_TEST_CASE(torn_tail_of_active_segment_is_cut_off) {
  TempDir dir;
  {
    Log<> log(dir.path(), Small(4096));
    for (int i = 0; i < 10; ++i) log.Append(Rec(Value(i)));
  }
  const auto store = dir / "00000000000000000000.store";
  const auto full = std::filesystem::file_size(store);
  std::filesystem::resize_file(store, full - 3);  // tear the last frame
  {
    Log<> log(dir.path(), Small(4096));
    BOOST_TEST(log.NextOffset() == 9U);
    BOOST_TEST(log.Read(8).value == Value(8));
    BOOST_TEST(log.Append(Rec("new")) == 9U);
    BOOST_TEST(log.Read(9).value == "new");
  }
}

BOOST_AUTO_TEST_CASE(corrupt_record_is_reported_and_others_stay_readable) {
  TempDir dir;
  {
    Log<> log(dir.path(), Small(4096));
    for (int i = 0; i < 10; ++i) log.Append(Rec("payload-" + std::to_string(i)));
  }
  const auto store = dir / "00000000000000000000.store";
  std::string bytes;
  {
    std::ifstream in(store, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  const auto at = bytes.find("payload-4");
  bytes[at + 3] ^= 0x01;
  {
    std::ofstream out(store, std::ios::binary | std::ios::trunc);
    out << bytes;
  }
  {
    // After a clean close the index is trusted: the bad frame is reported
    // when read, and the records around it stay readable.
    Log<> log(dir.path(), Small(4096));
    BOOST_TEST(log.NextOffset() == 10U);
    BOOST_CHECK_THROW(log.Read(4), logsync::CorruptionError);
    bool called = false;
    BOOST_CHECK_THROW(log.View(4, [&](std::span<const std::byte>) { called = true; }), logsync::CorruptionError);
    BOOST_TEST(!called);  // a damaged frame never reaches the callback
    // A batch visits the records before the damaged one, then throws.
    const std::vector<std::uint64_t> batch{2, 3, 4, 5};
    std::vector<std::uint64_t> visited;
    BOOST_CHECK_THROW(log.ViewBatch(batch, [&](std::uint64_t o, std::span<const std::byte>) { visited.push_back(o); }),
                      logsync::CorruptionError);
    BOOST_TEST((visited == std::vector<std::uint64_t>{2, 3}));
    BOOST_TEST(log.Read(3).value == "payload-3");
    BOOST_TEST(log.Read(5).value == "payload-5");
  }
  // After an unclean shutdown (the active index still preallocated) the
  // same: the frame was synced (the checkpoint vouches for it), so it is
  // reported, never cut off with the good records after it.
  std::filesystem::resize_file(dir / "00000000000000000000.index",
                               logsync::kIndexHeaderBytes + logsync::Index::kIndexAllocateStep);
  Log<> log(dir.path(), Small(4096));
  BOOST_TEST(log.NextOffset() == 10U);
  BOOST_CHECK_THROW(log.Read(4), logsync::CorruptionError);
  BOOST_TEST(log.Read(5).value == "payload-5");
  BOOST_TEST(log.Append(Rec("next")) == 10U);
}

BOOST_AUTO_TEST_CASE(corrupt_record_in_sealed_segment_throws_on_read) {
  TempDir dir;
  {
    Log<> log(dir.path(), Small(300));
    for (int i = 0; i < 20; ++i) log.Append(Rec("payload-" + std::to_string(i)));
    BOOST_TEST(log.SegmentCount() > 1U);
  }
  const auto store = dir / "00000000000000000000.store";
  std::string bytes;
  {
    std::ifstream in(store, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  const auto at = bytes.find("payload-2");
  BOOST_REQUIRE(at != std::string::npos);
  bytes[at + 1] ^= 0x40;
  {
    std::ofstream out(store, std::ios::binary | std::ios::trunc);
    out << bytes;
  }
  Log<> log(dir.path(), Small(300));
  BOOST_TEST(log.NextOffset() == 20U);  // a sealed segment's bad frame is not truncated away
  BOOST_CHECK_EXCEPTION(log.Read(2), logsync::CorruptionError, [&](const logsync::CorruptionError& e) {
    return e.path() == store && std::string(e.what()).find("checksum") != std::string::npos;
  });
  BOOST_TEST(log.Read(1).value == "payload-1");
  BOOST_TEST(log.Read(3).value == "payload-3");
  auto scan = log.Scan(0);
  auto it = scan.begin();
  BOOST_TEST(it->value == "payload-0");
  ++it;
  BOOST_CHECK_THROW(++it, logsync::CorruptionError);
}

BOOST_AUTO_TEST_CASE(a_file_where_the_directory_should_be) {
  TempDir dir;
  std::ofstream(dir / "file") << "x";
  BOOST_CHECK_THROW(Log<>(dir / "file"), logsync::IoError);
  BOOST_TEST(std::filesystem::is_regular_file(dir / "file"));
}

BOOST_AUTO_TEST_CASE(directory_stays_locked_across_reset_and_is_free_after_remove) {
  TempDir dir;
  Log<> log(dir.path());
  log.Append(Rec("a"));
  log.Reset();
  BOOST_CHECK_THROW(Log<> other(dir.path()), logsync::StateError);
  log.Remove();
  Log<> fresh(dir.path());
  BOOST_TEST(fresh.Empty());
  BOOST_CHECK_THROW(log.Reset(), logsync::StateError);  // a closed log stays closed
}

// --- tampered directories ---------------------------------------------------

// Unlinking LOCK while a Log holds the directory does not let a second
// process in: the directory itself is locked.
BOOST_AUTO_TEST_CASE(an_unlinked_lock_file_does_not_let_a_second_process_in) {
  TempDir dir;
  Log<Record, logsync::DefaultCodec<Record>, logsync::sync::Always> log(dir.path(), Small(200));
  for (int i = 0; i < 5; ++i) log.Append(Rec(Value(i)));
  std::filesystem::remove(dir / "LOCK");
  const pid_t child = ::fork();
  BOOST_REQUIRE(child >= 0);
  if (child == 0) {
    // 0: refused as it should be; 1: it opened (and appended); 2: another error.
    int rc = 2;
    try {
      Log<Record, logsync::DefaultCodec<Record>, logsync::sync::Always> second(dir.path(), Small(200));
      second.Append(Rec("second writer"));
      rc = 1;
    } catch (const logsync::StateError&) {
      rc = 0;
    } catch (...) {
    }
    ::_exit(rc);
  }
  int status = 0;
  BOOST_REQUIRE(::waitpid(child, &status, 0) == child);
  BOOST_REQUIRE(WIFEXITED(status));
  BOOST_TEST(WEXITSTATUS(status) == 0, "the second process " << (WEXITSTATUS(status) == 1 ? "opened the log" : "failed otherwise"));
  log.Append(Rec(Value(5)));
  log.Close();
  Log<> again(dir.path(), Small(200));
  BOOST_TEST(again.NextOffset() == 6U);
  for (int i = 0; i < 6; ++i) BOOST_TEST(again.Read(i).value == Value(i));
}

BOOST_AUTO_TEST_CASE(remove_after_close_deletes_the_files) {
  TempDir dir;
  const auto sub = dir / "log";
  Log<> log(sub, Small(200));
  for (int i = 0; i < 20; ++i) log.Append(Rec(Value(i)));
  std::ofstream(sub / "keep.txt") << "not ours";
  log.Close();
  log.Remove();
  BOOST_TEST(CountFiles(sub, ".store") == 0U);
  BOOST_TEST(CountFiles(sub, ".index") == 0U);
  BOOST_TEST(!std::filesystem::exists(sub / "LOCK"));
  BOOST_TEST(std::filesystem::exists(sub / "keep.txt"));
  std::filesystem::remove(sub / "keep.txt");
  log.Remove();  // again: the directory is empty and goes
  BOOST_TEST(!std::filesystem::exists(sub));
  log.Remove();  // and again: nothing left, not an error
}

BOOST_AUTO_TEST_CASE(remove_after_close_refuses_while_another_log_has_it) {
  TempDir dir;
  Log<> first(dir.path(), Small(200));
  first.Append(Rec("a"));
  first.Close();
  Log<> second(dir.path(), Small(200));
  BOOST_CHECK_THROW(first.Remove(), logsync::StateError);
  BOOST_TEST(second.NextOffset() == 1U);
  BOOST_TEST(second.Read(0).value == "a");
}

BOOST_AUTO_TEST_CASE(bad_paths_are_clear_logsync_errors) {
  TempDir dir;
  BOOST_CHECK_THROW(Log<>(""), logsync::IoError);
  std::filesystem::create_symlink(dir / "nowhere", dir / "dangling");
  BOOST_CHECK_EXCEPTION(Log<>(dir / "dangling"), logsync::IoError, [](const logsync::IoError& e) {
    return std::string(e.what()).find("symbolic link to a missing target") != std::string::npos;
  });
  BOOST_TEST(std::filesystem::is_symlink(dir / "dangling"));
  BOOST_TEST(!std::filesystem::exists(dir / "nowhere"));
  std::ofstream(dir / "file") << "x";
  BOOST_CHECK_EXCEPTION(Log<>(dir / "file" / "log"), logsync::IoError,
                        [](const logsync::IoError& e) { return e.error() == ENOTDIR; });
  // A symbolic link to a directory is followed.
  std::filesystem::create_directory(dir / "real");
  std::filesystem::create_directory_symlink(dir / "real", dir / "link");
  {
    Log<> log(dir / "link");
    log.Append(Rec("via link"));
  }
  BOOST_TEST(CountFiles(dir / "real", ".store") == 1U);
}

BOOST_AUTO_TEST_CASE(sync_interval_is_bounded) {
  TempDir dir;
  Config c;
  c.sync.interval = std::chrono::milliseconds::max();
  BOOST_CHECK_THROW((Log<Record, logsync::DefaultCodec<Record>, logsync::sync::Interval>(dir.path(), c)),
                    std::invalid_argument);
  c.sync.interval = logsync::kMaxInterval + std::chrono::milliseconds(1);
  BOOST_CHECK_THROW(logsync::detail::Resolve(c), std::invalid_argument);
  c.sync.interval = logsync::kMaxInterval;
  BOOST_TEST(logsync::detail::Resolve(c).sync.interval == logsync::kMaxInterval);
  BOOST_TEST(!std::filesystem::exists(dir / "LOCK"));  // refused before touching the disk
}
