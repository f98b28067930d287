#define BOOST_TEST_MODULE resource_limits_test
// Real resource limits (setrlimit), each in a child process of its own: the
// log runs into the limit while it appends and rolls. What it hits must be a
// logsync::IoError with the limit's errno, every acknowledged record must
// read back, and the log must go on once the resource is back; the parent
// then reopens the log and finds every acknowledged record.
#include <boost/test/unit_test.hpp>

#include <logsync/logsync.hpp>

#include "support/temp_dir.hpp"

#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>

namespace {

using logsync::Config;
using logsync::Record;
using AlwaysLog = logsync::Log<Record, logsync::DefaultCodec<Record>, logsync::sync::Always>;

std::string Value(std::uint64_t i) { return "limited-" + std::to_string(i) + std::string(i % 41, 'l'); }

// What a child found: an empty `error` if all held.
struct Outcome {
  std::uint64_t acked = 0;
  char error[512] = {};
};

// Runs `body` in a child process and returns what it reported. The child
// takes no signal: dying of one fails the test.
Outcome InChild(const std::function<void(Outcome&)>& body) {
  int fds[2];
  BOOST_REQUIRE(::pipe(fds) == 0);
  const pid_t child = ::fork();
  BOOST_REQUIRE(child >= 0);
  if (child == 0) {
    ::close(fds[0]);
    Outcome out;
    try {
      body(out);
    } catch (const std::exception& e) {
      std::snprintf(out.error, sizeof out.error, "unexpected exception: %s", e.what());
    }
    const ssize_t n = ::write(fds[1], &out, sizeof out);
    ::_exit(n == static_cast<ssize_t>(sizeof out) ? 0 : 1);
  }
  ::close(fds[1]);
  Outcome out;
  const ssize_t n = ::read(fds[0], &out, sizeof out);
  ::close(fds[0]);
  int status = 0;
  BOOST_REQUIRE(::waitpid(child, &status, 0) == child);
  BOOST_TEST_REQUIRE(!WIFSIGNALED(status), "the child died of signal " << WTERMSIG(status));
  BOOST_TEST_REQUIRE(n == static_cast<ssize_t>(sizeof out));
  return out;
}

void Fail(Outcome& out, const std::string& why) {
  if (out.error[0] == 0) std::snprintf(out.error, sizeof out.error, "%s", why.c_str());
}

// Appends until the log refuses with an IoError; anything else is a failure.
template <class L>
int AppendUntilRefused(L& log, Outcome& out) {
  for (;;) {
    try {
      if (log.Append(Record{0, Value(out.acked)}) != out.acked) Fail(out, "wrong offset");
      ++out.acked;
      if (out.acked > 100000) {
        Fail(out, "the limit was never reached");
        return 0;
      }
    } catch (const logsync::IoError& e) {
      return e.error();
    }
  }
}

template <class L>
void CheckRecords(const L& log, std::uint64_t from, Outcome& out) {
  for (std::uint64_t i = from; i < out.acked; ++i)
    if (log.Read(i).value != Value(i)) return Fail(out, "record " + std::to_string(i) + " reads back wrong");
}

std::uint64_t OpenDescriptors() {
  std::uint64_t n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (::readdir(d) != nullptr) ++n;
    ::closedir(d);
  }
  return n;
}

void ExpectReopened(const std::filesystem::path& dir, std::uint64_t acked) {
  AlwaysLog log(dir);
  BOOST_TEST(log.NextOffset() == acked);
  for (std::uint64_t i = log.LowestOffset(); i < acked; ++i)
    BOOST_TEST_REQUIRE(log.Read(i).value == Value(i));
  BOOST_TEST(log.Verify().Ok());
}

}  // namespace

// Each segment keeps its store's descriptor: with few descriptors, a roll
// fails with EMFILE. Truncating old segments gives descriptors back, and the
// same Log goes on.
BOOST_AUTO_TEST_CASE(out_of_file_descriptors) {
  logsync::test::TempDir dir;
  const Outcome out = InChild([&](Outcome& o) {
    const rlim_t limit = OpenDescriptors() + 16;
    const rlimit rl{limit, limit};
    if (::setrlimit(RLIMIT_NOFILE, &rl) != 0) return Fail(o, "setrlimit");
    Config c;
    c.segment.max_store_bytes = 512;
    AlwaysLog log(dir.path(), c);
    const int err = AppendUntilRefused(log, o);
    if (err != EMFILE) return Fail(o, std::string("refused with ") + std::strerror(err) + ", not EMFILE");
    CheckRecords(log, 0, o);
    if (AppendUntilRefused(log, o) != EMFILE) Fail(o, "a second try was not refused with EMFILE");
    log.Truncate(o.acked / 2);
    for (int i = 0; i < 20; ++i, ++o.acked)
      if (log.Append(Record{0, Value(o.acked)}) != o.acked) return Fail(o, "wrong offset after Truncate");
    CheckRecords(log, log.LowestOffset(), o);
    log.Close();
  });
  BOOST_TEST(out.error[0] == 0, out.error);
  BOOST_TEST(out.acked > 20U);
  ExpectReopened(dir.path(), out.acked);
}

// A file size limit (with SIGXFSZ ignored, as a service that sets the limit
// does: otherwise the kernel's signal ends the process): growing the store
// past it fails with EFBIG; the log stays readable and closes cleanly.
BOOST_AUTO_TEST_CASE(file_size_limit) {
  logsync::test::TempDir dir;
  const Outcome out = InChild([&](Outcome& o) {
    ::signal(SIGXFSZ, SIG_IGN);
    const rlimit rl{256 << 10, 256 << 10};
    if (::setrlimit(RLIMIT_FSIZE, &rl) != 0) return Fail(o, "setrlimit");
    Config c;
    c.segment.max_store_bytes = 4 << 20;
    c.segment.max_index_bytes = 128 << 10;  // 8192 records: the store passes the limit first
    AlwaysLog log(dir.path(), c);
    const int err = AppendUntilRefused(log, o);
    if (err != EFBIG) return Fail(o, std::string("refused with ") + std::strerror(err) + ", not EFBIG");
    CheckRecords(log, 0, o);
    log.Close();
  });
  BOOST_TEST(out.error[0] == 0, out.error);
  BOOST_TEST(out.acked > 100U);
  ExpectReopened(dir.path(), out.acked);
}

// Address space limited (RLIMIT_AS): mapping a new segment fails with
// ENOMEM, an IoError, and the log goes on once it fits again.
BOOST_AUTO_TEST_CASE(address_space_limit) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  BOOST_TEST_MESSAGE("skipped: sanitizers reserve the address space RLIMIT_AS would cap");
  return;
#else
  logsync::test::TempDir dir;
  const Outcome out = InChild([&](Outcome& o) {
    Config c;
    c.segment.max_store_bytes = 1ULL << 30;  // each segment maps 1 GiB of address space
    c.segment.max_index_bytes = 4096;        // and rolls every 256 records
    AlwaysLog log(dir.path(), c);
    rlimit old{};
    ::getrlimit(RLIMIT_AS, &old);
    // Room for what the process maps now and a few hundred MiB more: not
    // for another 1 GiB segment.
    std::uint64_t vm_kb = 0;
    if (FILE* f = std::fopen("/proc/self/status", "r")) {
      char line[256];
      while (std::fgets(line, sizeof line, f))
        if (std::sscanf(line, "VmSize: %lu kB", &vm_kb) == 1) break;
      std::fclose(f);
    }
    const rlimit rl{(vm_kb << 10) + (512ULL << 20), old.rlim_max};
    if (vm_kb == 0 || ::setrlimit(RLIMIT_AS, &rl) != 0) return Fail(o, "setrlimit");
    const int err = AppendUntilRefused(log, o);
    if (err != ENOMEM) return Fail(o, std::string("refused with ") + std::strerror(err) + ", not ENOMEM");
    CheckRecords(log, 0, o);
    ::setrlimit(RLIMIT_AS, &old);
    for (int i = 0; i < 300; ++i, ++o.acked)
      if (log.Append(Record{0, Value(o.acked)}) != o.acked) return Fail(o, "wrong offset after the limit");
    CheckRecords(log, 0, o);
    log.Close();
  });
  BOOST_TEST(out.error[0] == 0, out.error);
  ExpectReopened(dir.path(), out.acked);
#endif
}
