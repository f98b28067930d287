#define BOOST_TEST_MODULE tool_test
#include <boost/test/unit_test.hpp>

// The logsync command-line tool, run as a program (its path is the test's
// first argument): its output, exit statuses and errors; `tail -f` following
// a writer in another process across rolls and kill -9; nothing written by
// the read-only commands; what `recover` reports.

#include <logsync/logsync.hpp>

#include "support/config.hpp"
#include "support/frames.hpp"
#include "support/spawn.hpp"
#include "support/temp_dir.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <sstream>
#include <string>
#include <vector>

using logsync::Log;
using logsync::Record;
using logsync::test::TempDir;
namespace fs = std::filesystem;

namespace {

std::string tool;

struct ToolPath {
  ToolPath() {
    auto& suite = boost::unit_test::framework::master_test_suite();
    BOOST_REQUIRE_MESSAGE(suite.argc >= 2, "usage: tool_test -- <path to the logsync tool>");
    tool = suite.argv[1];
  }
};
BOOST_TEST_GLOBAL_FIXTURE(ToolPath);

std::string Value(std::uint64_t i) { return "record-" + std::to_string(i) + std::string(i % 23, 'z'); }

struct Result {
  int status = -1;  // exit status, or -1 if it did not exit
  std::string out, err;
};

// Reads everything from `fd` until EOF, giving up after 60 s.
std::string ReadAll(int fd) {
  std::string out;
  char buf[65536];
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 1000) == 0) {
      if (std::chrono::steady_clock::now() > deadline) break;
      continue;
    }
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

// Runs the tool with `args` to its end.
Result Run(std::vector<std::string> args) {
  TempDir errdir;
  const std::string err = (errdir / "stderr").string();
  args.insert(args.begin(), tool);
  auto [pid, fd] = logsync::test::SpawnProgram(args, err);
  BOOST_REQUIRE(pid > 0);
  Result r;
  r.out = ReadAll(fd);
  ::close(fd);
  int status = 0;
  ::waitpid(pid, &status, 0);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.err = fs::exists(err) ? logsync::test::ReadFile(err) : "";
  return r;
}

std::map<std::string, std::string> Contents(const fs::path& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out[e.path().filename().string()] = logsync::test::ReadFile(e.path());
  return out;
}

void Fill(const fs::path& dir, std::uint64_t n) {
  Log<> log(dir, logsync::test::SmallSegments(8192));
  for (std::uint64_t i = log.NextOffset(); i < n; ++i) log.Append(Record{0, Value(i)});
}

std::size_t Lines(const std::string& s) { return static_cast<std::size_t>(std::count(s.begin(), s.end(), '\n')); }

}  // namespace

BOOST_AUTO_TEST_CASE(help_usage_errors_and_a_missing_path) {
  const Result help = Run({"--help"});
  BOOST_TEST(help.status == 0);
  BOOST_TEST(help.out.find("recover DIR") != std::string::npos);
  for (const char* cmd : {"stat", "dump", "tail", "verify", "snapshot", "restore", "recover"}) {
    const Result r = Run({cmd, "--help"});
    BOOST_TEST(r.status == 0, cmd);
    BOOST_TEST(r.out.rfind(std::string("usage: logsync ") + cmd, 0) == 0u, cmd);
  }
  BOOST_TEST(Run({}).status == 2);
  const Result unknown = Run({"frobnicate"});
  BOOST_TEST(unknown.status == 2);
  BOOST_TEST(unknown.err.find("unknown command 'frobnicate'") != std::string::npos);
  TempDir dir;
  Fill(dir.path(), 10);
  const Result bad_number = Run({"dump", dir.path().string(), "--from", "12x"});
  BOOST_TEST(bad_number.status == 2);
  BOOST_TEST(Lines(bad_number.err) == 1u);
  BOOST_TEST(Run({"dump", dir.path().string(), "--format", "yaml"}).status == 2);
  BOOST_TEST(Run({"stat", dir.path().string(), "--bogus"}).status == 2);
  BOOST_TEST(Run({"stat"}).status == 2);

  for (const char* cmd : {"stat", "dump", "tail", "verify", "recover"}) {
    const fs::path missing = dir / "typo";
    const Result r = Run({cmd, missing.string()});
    BOOST_TEST(r.status == 1, cmd);
    BOOST_TEST(Lines(r.err) == 1u, cmd);
    BOOST_TEST(r.err.find("No such file or directory") != std::string::npos, cmd << ": " << r.err);
    BOOST_TEST(!fs::exists(missing), cmd << " created the path");
  }
}

BOOST_AUTO_TEST_CASE(stat_dump_and_verify_read_a_log_and_change_nothing) {
  TempDir dir;
  Fill(dir.path(), 1000);
  const auto before = Contents(dir.path());
  const Result stat = Run({"stat", dir.path().string()});
  BOOST_TEST(stat.status == 0);
  BOOST_TEST(stat.out.find("records    1000 (offsets 0 to 999); next offset 1000") != std::string::npos, stat.out);
  const Result json = Run({"stat", dir.path().string(), "--json"});
  BOOST_TEST(json.out.find("\"records\":1000,\"lowest_offset\":0,\"next_offset\":1000") != std::string::npos);

  const Result text = Run({"dump", dir.path().string(), "--from", "500", "--count", "3"});
  BOOST_TEST(text.status == 0);
  BOOST_TEST(text.out == "500\t" + Value(500) + "\n501\t" + Value(501) + "\n502\t" + Value(502) + "\n");
  const Result all = Run({"dump", dir.path().string(), "--format", "json"});
  BOOST_TEST(Lines(all.out) == 1000u);
  BOOST_TEST(all.out.find("{\"offset\":999,\"length\":" + std::to_string(Value(999).size()) + ",\"payload\":\"" +
                          Value(999) + "\"}") != std::string::npos);
  const Result hex = Run({"dump", dir.path().string(), "--from", "1", "--count", "1", "--format", "hex"});
  BOOST_TEST(hex.out.rfind("offset 1 length 9\n00000000  72 65 63 6f 72 64 2d 31 7a", 0) == 0u, hex.out);
  const Result tail = Run({"tail", dir.path().string(), "-n", "2"});
  BOOST_TEST(tail.out == "998\t" + Value(998) + "\n999\t" + Value(999) + "\n");

  const Result verify = Run({"verify", dir.path().string()});
  BOOST_TEST(verify.status == 0);
  BOOST_TEST(verify.out.find("ok: ") == 0u, verify.out);
  BOOST_TEST((Contents(dir.path()) == before), "a read-only command changed the log");

  // Damage: exit status 1, the file named, nothing repaired.
  const fs::path first = dir / (logsync::detail::SegmentStem(0) + ".store");
  std::string bytes = logsync::test::ReadFile(first);
  bytes[100] = static_cast<char>(bytes[100] ^ 0x40);
  logsync::test::WriteFile(first, bytes);
  const auto damaged = Contents(dir.path());
  const Result bad = Run({"verify", dir.path().string()});
  BOOST_TEST(bad.status == 1);
  BOOST_TEST(bad.out.find(first.string() + ": byte ") == 0u, bad.out);
  BOOST_TEST(bad.out.find("DAMAGED: ") != std::string::npos);
  BOOST_TEST(Run({"verify", dir.path().string(), "--quiet"}).out.empty());
  BOOST_TEST(Run({"dump", dir.path().string()}).status == 1);
  BOOST_TEST((Contents(dir.path()) == damaged), "verify changed a damaged log");
}

BOOST_AUTO_TEST_CASE(snapshot_beside_a_writer_and_restore_from_a_stream_and_a_directory) {
  TempDir dir, out;
  Log<> log(dir.path(), logsync::test::SmallSegments(8192));
  for (std::uint64_t i = 0; i < 2000; ++i) log.Append(Record{0, Value(i)});
  const Result snap = Run({"snapshot", dir.path().string(), (out / "snap").string()});
  BOOST_TEST(snap.status == 0, snap.err);
  const Result exists = Run({"snapshot", dir.path().string(), (out / "snap").string()});
  BOOST_TEST(exists.status == 1);
  BOOST_TEST(exists.err.find("not empty") != std::string::npos, exists.err);
  BOOST_TEST(Run({"snapshot", dir.path().string(), "--stream", (out / "stream").string()}).status == 0);
  BOOST_TEST(Run({"restore", (out / "stream").string(), (out / "from-stream").string()}).status == 0);
  BOOST_TEST(Run({"restore", (out / "snap").string(), (out / "from-dir").string()}).status == 0);
  for (const char* name : {"snap", "from-stream", "from-dir"}) {
    Log<> copy(out / name, logsync::test::SmallSegments(8192));
    BOOST_TEST(copy.NextOffset() == 2000u, name);
    BOOST_TEST(copy.Read(1234).value == Value(1234), name);
    BOOST_TEST(copy.Verify().Ok(), name);
  }
  // A stream that does not hold: an error, and nothing left behind.
  std::string stream = logsync::test::ReadFile(out / "stream");
  stream[stream.size() / 2] = static_cast<char>(stream[stream.size() / 2] ^ 1);
  logsync::test::WriteFile(out / "bad-stream", stream);
  const Result bad = Run({"restore", (out / "bad-stream").string(), (out / "bad").string()});
  BOOST_TEST(bad.status == 1);
  BOOST_TEST(bad.err.find("corruption") != std::string::npos, bad.err);
  BOOST_TEST(!fs::exists(out / "bad"));
}

BOOST_AUTO_TEST_CASE(recover_reports_what_it_cut_and_refuses_a_log_in_use) {
  TempDir dir;
  Fill(dir.path(), 300);
  fs::path newest;
  for (const auto& e : fs::directory_iterator(dir.path()))
    if (e.path().extension() == ".store" && e.path() > newest) newest = e.path();
  logsync::test::AppendToFile(newest, std::string(100, '\x33'));
  const Result r = Run({"recover", dir.path().string(), "--segment-bytes", "8192"});
  BOOST_TEST(r.status == 0, r.err);
  BOOST_TEST(r.out.find(newest.filename().string()) != std::string::npos, r.out);
  BOOST_TEST(r.out.find("cut 100 bytes") != std::string::npos, r.out);
  const Result again = Run({"recover", dir.path().string(), "--segment-bytes", "8192"});
  BOOST_TEST(again.out.find("cut 0 bytes") != std::string::npos, again.out);
  Log<> log(dir.path(), logsync::test::SmallSegments(8192));
  BOOST_TEST(log.NextOffset() == 300u);
  const Result busy = Run({"recover", dir.path().string()});
  BOOST_TEST(busy.status == 1);
  BOOST_TEST(busy.err.find("already open") != std::string::npos, busy.err);
}

// `tail -f` follows a writer process that appends into small segments and
// is killed with SIGKILL and restarted, round after round: every record
// reaches the tool's output once, in order, with its bytes (-n large: from
// the oldest, whenever the tool starts).
BOOST_AUTO_TEST_CASE(tail_follows_a_writer_in_another_process_across_rolls_and_kill_9) {
  TempDir dir;
  const auto config = logsync::test::SmallSegments(8192);
  { Log<> log(dir.path(), config); }
  auto [tail, fd] = logsync::test::SpawnProgram({tool, "tail", dir.path().string(), "-f", "-n", "1000000000"});
  BOOST_REQUIRE(tail > 0);
  std::string pending;
  std::uint64_t seen = 0;
  bool in_order = true;
  // Reads the tool's lines until `target` records came (or 60 s pass).
  auto read_until = [&](std::uint64_t target) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    char buf[65536];
    while (seen < target && std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 200) <= 0) continue;
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n <= 0) break;
      pending.append(buf, static_cast<std::size_t>(n));
      for (std::size_t nl; (nl = pending.find('\n')) != std::string::npos; pending.erase(0, nl + 1)) {
        const std::string line = pending.substr(0, nl);
        if (line != std::to_string(seen) + "\t" + Value(seen) && in_order) {
          BOOST_TEST_MESSAGE("record " << seen << ": tail -f printed '" << line << "'");
          in_order = false;
        }
        ++seen;
      }
    }
  };
  for (int round = 0; round < 8; ++round) {
    const pid_t writer = ::fork();
    BOOST_REQUIRE(writer >= 0);
    if (writer == 0) {
      try {
        Log<> log(dir.path(), config);
        for (std::uint64_t k = 0;; ++k) {
          log.Append(Record{0, Value(log.NextOffset())});
          if (k % 16 == 15) ::usleep(300);
        }
      } catch (...) {
        ::_exit(2);
      }
    }
    read_until(seen + 300 + 100 * static_cast<std::uint64_t>(round));
    ::kill(writer, SIGKILL);
    int status = 0;
    ::waitpid(writer, &status, 0);
    BOOST_TEST((WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL), "writer ended otherwise: " << status);
  }
  std::uint64_t next;
  {
    Log<> log(dir.path(), config);
    next = log.NextOffset();
  }
  read_until(next);
  ::kill(tail, SIGTERM);
  ::waitpid(tail, nullptr, 0);
  ::close(fd);
  BOOST_TEST(in_order, "tail -f printed a record out of order or with the wrong bytes");
  BOOST_TEST(seen == next, "tail -f printed " << seen << " records of " << next);
  BOOST_TEST(logsync::LogReader<>(dir.path()).Segments().size() > 5u);
}
