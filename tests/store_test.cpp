#define BOOST_TEST_MODULE store_test
#include <boost/test/unit_test.hpp>

#include <logsync/store.hpp>

#include "support/frames.hpp"
#include "support/syscalls.hpp"
#include "support/temp_dir.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <optional>
#include <vector>

using namespace logsync;
using test::Frame;
using test::TempDir;

namespace {

std::string ReadBack(const Store& s, std::uint64_t pos, std::size_t n) {
  std::vector<std::byte> buf(n);
  BOOST_TEST(s.ReadAt(buf, pos) == n);
  return test::AsString(buf);
}

bool NamesPath(const CorruptionError& e, const std::filesystem::path& p) { return e.path() == p; }

}  // namespace

BOOST_AUTO_TEST_CASE(append_and_read) {
  TempDir dir;
  auto s = Store::Create(dir / "a.store", 10);
  BOOST_TEST(s.Size() == kStoreHeaderBytes);
  const auto f1 = Frame(10, "first"), f2 = Frame(11, "second");
  BOOST_TEST(s.Append(f1) == kStoreHeaderBytes);
  BOOST_TEST(s.Append(f2) == kStoreHeaderBytes + f1.size());
  BOOST_TEST(s.Size() == kStoreHeaderBytes + f1.size() + f2.size());
  BOOST_TEST(ReadBack(s, kStoreHeaderBytes, f1.size()) == test::AsString(f1));
  BOOST_TEST(ReadBack(s, kStoreHeaderBytes + f1.size(), f2.size()) == test::AsString(f2));
  std::vector<std::byte> past(10);
  BOOST_TEST(s.ReadAt(past, s.Size()) == 0U);  // short only at the end
}

BOOST_AUTO_TEST_CASE(reopen_keeps_frames_and_header) {
  TempDir dir;
  const auto f = Frame(5, "x");
  {
    auto s = Store::Create(dir / "s", 5);
    s.Append(f);
    s.Sync();
  }
  const std::string bytes = test::ReadFile(dir / "s");
  BOOST_TEST(bytes.substr(0, 6) == "LGSYNC");
  BOOST_TEST(static_cast<int>(bytes[6]) == 1);
  auto s = Store::Open(dir / "s", 5, detail::Access::kReadOnly);
  BOOST_TEST(s.Size() == kStoreHeaderBytes + f.size());
  BOOST_TEST(ReadBack(s, kStoreHeaderBytes, f.size()) == test::AsString(f));
}

BOOST_AUTO_TEST_CASE(create_refuses_an_existing_file) {
  TempDir dir;
  test::WriteFile(dir / "s", "someone else's");
  BOOST_CHECK_EXCEPTION(Store::Create(dir / "s", 0), IoError, [](const IoError& e) { return e.error() == EEXIST; });
  BOOST_TEST(test::ReadFile(dir / "s") == "someone else's");
}

BOOST_AUTO_TEST_CASE(open_rejects_foreign_or_damaged_headers) {
  TempDir dir;
  { Store::Create(dir / "good", 3); }
  const std::string good = test::ReadFile(dir / "good");
  auto expect = [&](std::string bytes, const std::string& why) {
    const auto p = dir / "bad";
    test::WriteFile(p, bytes);
    BOOST_CHECK_EXCEPTION(Store::Open(p, 3, detail::Access::kReadOnly), CorruptionError, [&](const CorruptionError& e) {
      return NamesPath(e, p) && std::string(e.what()).find(why) != std::string::npos;
    });
  };
  std::string b = good;
  b[0] = 'X';
  expect(b, "magic");
  b = good;
  b[6] = 2;
  expect(b, "version");
  b = good;
  b[7] = 1;
  expect(b, "flags");
  b = good;
  b[8] = 4;
  expect(b, "base offset");
  expect(good.substr(0, 15), "cut short");
  expect("", "cut short");
  BOOST_CHECK_THROW(Store::Open(dir / "good", 4, detail::Access::kReadOnly), CorruptionError);  // name and header disagree
  BOOST_CHECK_EXCEPTION(Store::Open(dir / "missing", 0, detail::Access::kReadOnly), IoError,
                        [](const IoError& e) { return e.error() == ENOENT; });
}

BOOST_AUTO_TEST_CASE(truncate_cuts_the_file) {
  TempDir dir;
  auto s = Store::Create(dir / "s", 0);
  s.Append(Frame(0, "aaaa"));
  const auto keep = s.Size();
  s.Append(Frame(1, "bbbb"));
  s.Truncate(keep);
  BOOST_TEST(s.Size() == keep);
  BOOST_TEST(std::filesystem::file_size(dir / "s") == keep);
  BOOST_TEST(s.Append(Frame(1, "cccc")) == keep);
}

BOOST_AUTO_TEST_CASE(failed_write_leaves_no_partial_frame) {
  TempDir dir;
  auto s = Store::Create(dir / "s", 0);
  const auto f0 = Frame(0, "zero");
  s.Append(f0);
  const std::string before = test::ReadFile(dir / "s");
  {
    test::SyscallHooks hooks;
    hooks.fail_write_at = 1;
    BOOST_CHECK_EXCEPTION(s.Append(Frame(1, "one")), IoError, [&](const IoError& e) {
      return e.error() == ENOSPC && e.path() == dir / "s";
    });
  }
  BOOST_TEST(s.Size() == before.size());
  BOOST_TEST(test::ReadFile(dir / "s") == before);
  const auto f1 = Frame(1, "one");
  BOOST_TEST(s.Append(f1) == before.size());
  BOOST_TEST(ReadBack(s, before.size(), f1.size()) == test::AsString(f1));
}

BOOST_AUTO_TEST_CASE(short_writes_are_completed) {
  TempDir dir;
  auto s = Store::Create(dir / "s", 0);
  // A pwrite that writes at most 3 bytes at a time.
  auto saved = detail::Sys();
  static detail::SysCalls real;
  real = saved;
  detail::Sys().pwrite = [](int fd, const void* b, size_t n, off_t o) -> ssize_t {
    return real.pwrite(fd, b, n < 3 ? n : 3, o);
  };
  const auto f = Frame(0, "a payload longer than three bytes");
  s.Append(f);
  detail::Sys() = saved;
  BOOST_TEST(ReadBack(s, kStoreHeaderBytes, f.size()) == test::AsString(f));
}

BOOST_AUTO_TEST_CASE(failed_sync_throws_sync_error) {
  TempDir dir;
  auto s = Store::Create(dir / "s", 0);
  test::SyscallHooks hooks;
  hooks.fail_sync_at = 1;
  BOOST_CHECK_EXCEPTION(s.Sync(), SyncError, [](const SyncError& e) { return e.error() == EIO; });
}

namespace {

// Pages of [from, from + len) of `path` in the page cache (mincore over a
// mapping of our own).
std::size_t CachedPages(const std::filesystem::path& path, std::uint64_t from, std::uint64_t len) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  BOOST_REQUIRE(fd >= 0);
  void* m = ::mmap(nullptr, from + len, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  BOOST_REQUIRE(m != MAP_FAILED);
  const std::size_t page = 4096, first = from / page, n = (from + len) / page - first;  // whole pages
  std::vector<unsigned char> in((from + len + page - 1) / page);  // one per page of the mapping
  BOOST_REQUIRE(::mincore(m, from + len, in.data()) == 0);
  ::munmap(m, from + len);
  std::size_t cached = 0;
  for (std::size_t i = first; i < first + n; ++i) cached += in[i] & 1;
  return cached;
}

}  // namespace

BOOST_AUTO_TEST_CASE(prefault_hands_out_the_room_allocated_ahead_and_populates_it) {
  TempDir dir;
  constexpr std::uint64_t kGrow = 64 << 10;
  auto s = Store::Create(dir / "p.store", 0);
  s.Map(64 << 20, kGrow);
  s.SetPrefault(true);
  const auto f = Frame(0, std::string(1000, 'p'));
  // The first step has no step before it to time: nothing ahead yet.
  s.Append(f);
  BOOST_TEST(!s.TakeAhead().has_value());
  std::optional<Store::Ahead> ahead;
  while (!ahead) {  // the next allocation, a step later, follows a fast step
    s.Append(f);
    ahead = s.TakeAhead();
  }
  BOOST_TEST(ahead->from >= s.Size());
  BOOST_TEST(ahead->len >= kGrow);  // a step further ahead than without prefault
  BOOST_TEST(!s.TakeAhead().has_value());  // handed out once
  BOOST_REQUIRE(std::filesystem::file_size(dir / "p.store") >= ahead->from + ahead->len);  // allocated
  const std::uint64_t from = (ahead->from + 4095) / 4096 * 4096, len = ahead->len - (from - ahead->from);
  BOOST_TEST(CachedPages(dir / "p.store", from, len) == 0U);  // allocated, not in memory
  s.Populate(*ahead);
  BOOST_TEST(CachedPages(dir / "p.store", from, len) == len / 4096);
  // Appends go on over the populated room, and read back.
  const std::uint64_t at = s.Append(f);
  BOOST_TEST(ReadBack(s, at, f.size()) == test::AsString(f));
}

BOOST_AUTO_TEST_CASE(without_prefault_nothing_is_handed_out) {
  TempDir dir;
  auto s = Store::Create(dir / "q.store", 0);
  s.Map(64 << 20, 64 << 10);
  const auto f = Frame(0, std::string(1000, 'q'));
  for (int i = 0; i < 1000; ++i) s.Append(f);
  BOOST_TEST(!s.TakeAhead().has_value());
  BOOST_TEST(std::filesystem::file_size(dir / "q.store") <= s.Size() + (64 << 10));  // one step ahead at most
}
