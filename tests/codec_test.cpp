#define BOOST_TEST_MODULE codec_test
#include <boost/test/unit_test.hpp>

#include <logsync/codec.hpp>

#include <string>
#include <vector>

using namespace logsync;

namespace {

struct Pod {
  std::int32_t a;
  double b;
  char c[3];
};

struct WithOffset {
  std::uint32_t offset = 0;
  int v = 0;
};
struct WithStringOffset {
  std::string offset;
};
struct WithoutOffset {
  int v = 0;
};
struct WithOffsetFunction {
  std::uint64_t offset() const { return 0; }
};

struct NoDecode {
  std::size_t EncodedSize(const Pod&) const { return sizeof(Pod); }
  void Encode(const Pod&, std::span<std::byte>) const {}
};

std::string AsString(const std::vector<std::byte>& b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

template <class C, class R>
R RoundTrip(const C& codec, const R& r) {
  std::vector<std::byte> buf(codec.EncodedSize(r));
  codec.Encode(r, buf);
  return codec.Decode(buf);
}

}  // namespace

static_assert(Codec<DefaultCodec<Record>, Record>);
static_assert(Codec<TrivialCodec<Pod>, Pod>);
static_assert(Codec<DefaultCodec<Pod>, Pod>);
static_assert(!Codec<NoDecode, Pod>);
static_assert(!Codec<TrivialCodec<Pod>, Record>);
static_assert(detail::HasOffsetMember<Record>);
static_assert(detail::HasOffsetMember<WithOffset>);
static_assert(!detail::HasOffsetMember<WithStringOffset>);
static_assert(!detail::HasOffsetMember<WithoutOffset>);
static_assert(!detail::HasOffsetMember<WithOffsetFunction>);

BOOST_AUTO_TEST_CASE(default_codec_stores_the_value_verbatim) {
  DefaultCodec<Record> codec;
  const std::string binary("\0a\0b\xff\x00", 6);
  for (const std::string& v : {std::string(), std::string("hello"), binary, std::string(100000, 'z')}) {
    Record r{99, v};
    BOOST_TEST(codec.EncodedSize(r) == v.size());
    std::vector<std::byte> buf(v.size());
    codec.Encode(r, buf);
    BOOST_TEST((AsString(buf) == v));
    Record back = codec.Decode(buf);
    BOOST_TEST((back.value == v));
    BOOST_TEST(back.offset == 0U);  // the log, not the codec, fills the offset
  }
}

BOOST_AUTO_TEST_CASE(trivial_codec_round_trip) {
  Pod p{-5, 2.75, {'x', 'y', 'z'}};
  Pod back = RoundTrip(TrivialCodec<Pod>{}, p);
  BOOST_TEST(back.a == -5);
  BOOST_TEST(back.b == 2.75);
  BOOST_TEST(std::string(back.c, 3) == "xyz");
  BOOST_TEST(TrivialCodec<Pod>::EncodedSize(p) == sizeof(Pod));
}

BOOST_AUTO_TEST_CASE(trivial_codec_needs_no_default_constructor) {
  struct Pair {
    explicit Pair(int a_, int b_) : a(a_), b(b_) {}
    int a, b;
  };
  static_assert(!std::is_default_constructible_v<Pair>);
  Pair back = RoundTrip(TrivialCodec<Pair>{}, Pair(3, -4));
  BOOST_TEST(back.a == 3);
  BOOST_TEST(back.b == -4);
}

BOOST_AUTO_TEST_CASE(trivial_codec_rejects_wrong_sizes) {
  std::vector<std::byte> short_buf(sizeof(Pod) - 1), long_buf(sizeof(Pod) + 1);
  BOOST_CHECK_THROW(TrivialCodec<Pod>::Decode(short_buf), std::length_error);
  BOOST_CHECK_THROW(TrivialCodec<Pod>::Decode(long_buf), std::length_error);
  BOOST_CHECK_THROW(TrivialCodec<Pod>::Decode({}), std::length_error);
}

BOOST_AUTO_TEST_CASE(set_offset_fills_only_integral_offset_members) {
  WithOffset w;
  detail::SetOffset(w, 77);
  BOOST_TEST(w.offset == 77U);
  Record r;
  detail::SetOffset(r, 1ULL << 40);
  BOOST_TEST(r.offset == 1ULL << 40);
  WithStringOffset s{"kept"};
  detail::SetOffset(s, 5);
  BOOST_TEST(s.offset == "kept");
  WithoutOffset n{3};
  detail::SetOffset(n, 5);
  BOOST_TEST(n.v == 3);
}
