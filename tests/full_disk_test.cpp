#define BOOST_TEST_MODULE full_disk_test
// A real full filesystem: a small tmpfs, and a small ext4 image on a loop
// device, mounted for the test (it needs root, or the right to mount; where
// that is refused the cases are skipped, with the reason). The log runs out of space at every 4 KiB step of free
// space over a range wider than a segment, so the end comes in every phase
// of an append and of a roll: the store's allocation ahead, the store
// header of a new segment, the new index's allocation. The process must
// never take a signal (a write through a mapping into space the filesystem
// does not have is a SIGBUS); every acknowledged record must read back; the
// same Log must go on once space is freed; an open with no space left must
// work or throw a logsync::Error.
#include <boost/test/unit_test.hpp>

#include <logsync/logsync.hpp>

#include "support/temp_dir.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace {

using logsync::Config;
using logsync::Log;
using logsync::Record;
namespace fs = std::filesystem;

constexpr std::uint64_t kMountBytes = 8ULL << 20;

// Why a tmpfs cannot be mounted here, or empty if it can.
std::string MountRefusal() {
  static const std::string why = [] {
    logsync::test::TempDir dir;
    if (::mount("tmpfs", dir.path().c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "size=64k") != 0)
      return std::string("mounting a tmpfs is not allowed here: ") + std::strerror(errno);
    ::umount2(dir.path().c_str(), MNT_DETACH);
    return std::string();
  }();
  return why;
}

// Makes and mounts a kMountBytes ext4 image (no reserved blocks) at `at`,
// with the image file in `image_dir`; returns why not, or empty.
std::string MountExt4(const fs::path& image_dir, const fs::path& at) {
  const auto image = image_dir / "ext4.img";
  const std::string make = "truncate -s " + std::to_string(kMountBytes) + " '" + image.string() +
                           "' && mkfs.ext4 -q -F -m 0 '" + image.string() + "' >/dev/null 2>&1 && mount -o loop '" +
                           image.string() + "' '" + at.string() + "' 2>/dev/null";
  if (std::system(make.c_str()) != 0) return "making and mounting an ext4 image on a loop device failed";
  return {};
}

std::string Ext4Refusal() {
  static const std::string why = [] {
    if (const std::string t = MountRefusal(); !t.empty()) return t;
    logsync::test::TempDir images, dir;
    std::string r = MountExt4(images.path(), dir.path());
    if (r.empty()) ::umount2(dir.path().c_str(), MNT_DETACH);
    return r;
  }();
  return why;
}

// Preconditions: whether a tmpfs, and an ext4 image, can be mounted.
template <std::string (*Refusal)()>
struct CanMountWith {
  boost::test_tools::assertion_result operator()(boost::unit_test::test_unit_id) const {
    const std::string why = Refusal();
    boost::test_tools::assertion_result r(why.empty());
    r.message() << why;
    return r;
  }
};
using CanMount = CanMountWith<MountRefusal>;
using CanMountExt4 = CanMountWith<Ext4Refusal>;

// A small filesystem of kMountBytes at a fresh directory (a tmpfs, or an
// ext4 image on a loop device), unmounted at the end.
class Tmpfs {
 public:
  explicit Tmpfs(bool ext4 = false) {
    if (ext4) {
      const std::string why = MountExt4(images_.path(), dir_.path());
      if (!why.empty()) throw std::runtime_error(why);
      fs::remove_all(dir_.path() / "lost+found");
      return;
    }
    const std::string opts = "size=" + std::to_string(kMountBytes);
    if (::mount("tmpfs", dir_.path().c_str(), "tmpfs", MS_NOSUID | MS_NODEV, opts.c_str()) != 0)
      throw std::runtime_error(std::string("mount tmpfs: ") + std::strerror(errno));
  }
  Tmpfs(const Tmpfs&) = delete;
  Tmpfs& operator=(const Tmpfs&) = delete;
  ~Tmpfs() { ::umount2(dir_.path().c_str(), MNT_DETACH); }

  fs::path operator/(const std::string& name) const { return dir_.path() / name; }

  std::uint64_t FreeBytes() const {
    struct statvfs st {};
    if (::statvfs(dir_.path().c_str(), &st) != 0) throw std::runtime_error("statvfs");
    return static_cast<std::uint64_t>(st.f_bavail) * st.f_frsize;
  }

  /// Grows the filler file until at most `left` bytes are free.
  void FillTo(std::uint64_t left) {
    const std::uint64_t free = FreeBytes();
    if (free <= left) return;
    const int fd = ::open((*this / "filler").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    BOOST_REQUIRE(fd >= 0);
    struct stat st {};
    ::fstat(fd, &st);
    int rc = ::posix_fallocate(fd, st.st_size, static_cast<off_t>(free - left));
    // Where the free count runs ahead of what can be allocated (ext4's
    // delayed allocation), a page at a time until the filesystem is full.
    for (off_t at = st.st_size; rc == ENOSPC && FreeBytes() > left; at += 4096) rc = ::posix_fallocate(fd, at, 4096);
    ::close(fd);
    BOOST_REQUIRE_MESSAGE(rc == 0 || rc == ENOSPC, "filling the filesystem: " << std::strerror(rc));
  }

  /// Fills every byte.
  void FillAll() {
    FillTo(0);
    // The last partial page, if any, with a second file.
    const int fd = ::open((*this / "filler-2").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) {
      ::posix_fallocate(fd, 0, 4096);
      ::close(fd);
    }
  }

  void Free() {
    std::error_code ec;
    fs::remove(*this / "filler", ec);
    fs::remove(*this / "filler-2", ec);
  }

 private:
  logsync::test::TempDir images_, dir_;  // the image outlives the mount
};

// Segments small enough that the range of free space the test walks holds
// several rolls, on both limits: the store's (64 KiB) and the index's (512
// records).
Config SmallSegments() {
  Config c;
  c.segment.max_store_bytes = 64 << 10;
  c.segment.max_index_bytes = 512 * logsync::kIndexEntryBytes;
  return c;
}

// The value of record i: its length varies (40 to 400 bytes), so records end
// at every alignment and segments roll on either limit.
std::string Value(std::uint64_t i) {
  std::string v = "r" + std::to_string(i) + ":";
  v.resize(40 + (i * 37) % 361, static_cast<char>('a' + i % 26));
  return v;
}

template <class L>
void ExpectRecords(const L& log, std::uint64_t count, const std::string& where) {
  BOOST_TEST_REQUIRE(log.NextOffset() >= count, where << ": " << log.NextOffset() << " < " << count);
  for (std::uint64_t i = 0; i < count; ++i) {
    const Record r = log.Read(i);
    if (r.value != Value(i)) {
      BOOST_ERROR(where << ": record " << i << " reads back wrong");
      return;
    }
  }
  const auto report = log.Verify();
  BOOST_TEST(report.Ok(), where << ": " << (report.Ok() ? std::string() : report.problems.front().what));
}

// Appends until the filesystem refuses; returns how many appends returned.
// Every refusal must be an IoError with ENOSPC.
template <class L>
std::uint64_t AppendUntilFull(L& log, std::uint64_t next, const std::string& where) {
  for (;;) {
    try {
      BOOST_TEST_REQUIRE(log.Append(Record{0, Value(next)}) == next);
      ++next;
    } catch (const logsync::IoError& e) {
      BOOST_TEST(e.error() == ENOSPC, where << ": " << e.what());
      return next;
    }
  }
}

// One free-space level: a log with `before` records, the filesystem filled
// to leave `left` bytes, then appends until it refuses, and the checks of
// the file comment.
template <class S>
void RunOutAt(Tmpfs& fs, std::uint64_t before, std::uint64_t left) {
  const std::string where = "left " + std::to_string(left) + " bytes";
  const auto dir = fs / "log";
  std::uint64_t acked = 0;
  {
    Log<Record, logsync::DefaultCodec<Record>, S> log(dir, SmallSegments());
    for (; acked < before; ++acked) log.Append(Record{0, Value(acked)});
    fs.FillTo(left);
    acked = AppendUntilFull(log, acked, where);
    // Still refused while the disk is full, and nothing acknowledged lost.
    for (int i = 0; i < 3; ++i) {
      try {
        if (log.Append(Record{0, Value(acked)}) == acked) ++acked;
      } catch (const logsync::IoError& e) {
        BOOST_TEST(e.error() == ENOSPC, where << ": " << e.what());
      }
    }
    ExpectRecords(log, acked, where + ", full");
    // Space comes back: the same Log goes on, through a roll or more.
    fs.Free();
    for (int i = 0; i < 600; ++i, ++acked) BOOST_TEST_REQUIRE(log.Append(Record{0, Value(acked)}) == acked);
    ExpectRecords(log, acked, where + ", after freeing");
    log.Close();
  }
  // An open with no byte free: works, or a clear error; nothing is lost.
  fs.FillAll();
  try {
    Log<Record, logsync::DefaultCodec<Record>, S> log(dir, SmallSegments());
    ExpectRecords(log, acked, where + ", reopened with no space");
    BOOST_TEST(log.NextOffset() == acked);
  } catch (const logsync::Error& e) {
    BOOST_TEST_MESSAGE(where << ": open with no space: " << e.what());
  }
  fs.Free();
  {
    Log<Record, logsync::DefaultCodec<Record>, S> log(dir, SmallSegments());
    BOOST_TEST(log.NextOffset() == acked);
    ExpectRecords(log, acked, where + ", reopened");
    log.Remove();
  }
}

// Every 4 KiB of free space over the last 2 MiB (thirty segments' worth
// of store, and the index of each), after `before` records.
template <class S>
void WalkFreeSpace(std::uint64_t before, bool ext4 = false, std::uint64_t range = 2 << 20) {
  Tmpfs fs(ext4);
  for (std::uint64_t left = 0; left <= range; left += 4096) RunOutAt<S>(fs, before, left);
}

}  // namespace

BOOST_AUTO_TEST_CASE(every_free_space_level_sync_none, *boost::unit_test::precondition(CanMount())) {
  WalkFreeSpace<logsync::sync::None>(0);
  WalkFreeSpace<logsync::sync::None>(700);  // past a roll already
}

BOOST_AUTO_TEST_CASE(every_free_space_level_sync_always, *boost::unit_test::precondition(CanMount())) {
  WalkFreeSpace<logsync::sync::Always>(0);
  WalkFreeSpace<logsync::sync::Always>(700);
}

BOOST_AUTO_TEST_CASE(batches_on_a_full_disk_are_all_or_nothing, *boost::unit_test::precondition(CanMount())) {
  Tmpfs fs;
  for (std::uint64_t left = 0; left <= (128 << 10); left += 4096) {
    const std::string where = "left " + std::to_string(left) + " bytes";
    Log<> log(fs / "log", SmallSegments());
    fs.FillTo(left);
    std::uint64_t acked = 0;
    for (;;) {
      std::vector<Record> batch;
      for (std::uint64_t i = 0; i < 20; ++i) batch.push_back(Record{0, Value(acked + i)});
      try {
        BOOST_TEST_REQUIRE(log.AppendBatch(batch) == acked);
        acked += batch.size();
      } catch (const logsync::IoError& e) {
        BOOST_TEST(e.error() == ENOSPC, where << ": " << e.what());
        break;
      }
    }
    BOOST_TEST(log.NextOffset() == acked, where);
    ExpectRecords(log, acked, where);
    fs.Free();
    log.Remove();
  }
}

// The log alone fills the filesystem (no filler), with segments large
// enough that the end comes inside one.
BOOST_AUTO_TEST_CASE(the_log_fills_the_filesystem_itself, *boost::unit_test::precondition(CanMount())) {
  Tmpfs fs;
  Config c;
  c.segment.max_store_bytes = 3 << 20;
  c.segment.max_index_bytes = 64 << 10;
  std::uint64_t acked = 0;
  {
    Log<> log(fs / "log", c);
    acked = AppendUntilFull(log, 0, "alone");
    BOOST_TEST(fs.FreeBytes() < (1U << 20));
    ExpectRecords(log, acked, "alone, full");
  }
  // Closed on a full disk; reopened on it.
  try {
    Log<> log(fs / "log", c);
    ExpectRecords(log, acked, "alone, reopened full");
  } catch (const logsync::Error& e) {
    BOOST_TEST_MESSAGE("open on a full disk: " << e.what());
  }
}

// Another process fills the filesystem while the log appends.
BOOST_AUTO_TEST_CASE(another_process_fills_the_disk, *boost::unit_test::precondition(CanMount())) {
  Tmpfs fs;
  for (int round = 0; round < 8; ++round) {
    std::uint64_t acked = 0;
    {
      Log<Record, logsync::DefaultCodec<Record>, logsync::sync::Always> log(fs / "log", SmallSegments());
      const pid_t child = ::fork();
      BOOST_REQUIRE(child >= 0);
      if (child == 0) {
        const int fd = ::open((fs / "filler").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        std::vector<char> page(4096, 'f');
        while (fd >= 0 && ::write(fd, page.data(), page.size()) > 0) {
        }
        ::_exit(0);
      }
      acked = AppendUntilFull(log, 0, "racing filler");
      int status = 0;
      BOOST_REQUIRE(::waitpid(child, &status, 0) == child);
      BOOST_TEST(WIFEXITED(status));
      ExpectRecords(log, acked, "racing filler, full");
      fs.Free();
      for (int i = 0; i < 100; ++i, ++acked) BOOST_TEST_REQUIRE(log.Append(Record{0, Value(acked)}) == acked);
    }
    Log<> log(fs / "log", SmallSegments());
    BOOST_TEST(log.NextOffset() == acked);
    ExpectRecords(log, acked, "racing filler, reopened");
    log.Remove();
  }
}

// ext4, where allocation, delayed allocation and unwritten extents differ
// from tmpfs: every 4 KiB over the last 512 KiB.
BOOST_AUTO_TEST_CASE(every_free_space_level_on_ext4, *boost::unit_test::precondition(CanMountExt4())) {
  WalkFreeSpace<logsync::sync::None>(0, /*ext4=*/true, 512 << 10);
  WalkFreeSpace<logsync::sync::None>(700, /*ext4=*/true, 512 << 10);
}
