// One logsync-node process (a one-node cluster on 127.0.0.1) under clients
// that try to take it down: idle connections past the descriptor limit,
// more connections than --max-clients, no memory for a thread, a BATCH that
// expands to gigabytes, a line that never ends, removal of the last voter,
// admin commands without the secret, waits of 2^63 milliseconds. Each gets
// ERR (or is turned away) and a fresh client is served afterwards. The node
// program's path is argv[1].
#define BOOST_TEST_MODULE node_hostile_test
#include <boost/test/unit_test.hpp>

#include "support/node.hpp"
#include "support/temp_dir.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

using namespace logsync::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* kSecret = "hostile-test-secret";

/// A field of /proc/<pid>/status, in kB (VmHWM, VmSize...); -1 if absent.
long StatusKb(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field + ":", 0) == 0) return std::stol(line.substr(field.size() + 1));
  return -1;
}

/// One node, the sole voter of its cluster, killed at the end.
class NodeProcess {
 public:
  explicit NodeProcess(std::vector<std::string> extra = {}, rlim_t nofile = 0) : port_(FreePort()) {
    const std::string raft = "127.0.0.1:" + std::to_string(FreePort());
    std::vector<std::string> args{"--id", "1", "--address", raft, "--client", "127.0.0.1:" + std::to_string(port_),
                                  "--dir", (dir_ / "n1").string(), "--peers", "1=" + raft,
                                  "--election-timeout", "200"};
    for (auto& e : extra) args.push_back(e == "@secret" ? SecretFile() : e);
    int out;
    std::tie(pid_, out) = Spawn(args, StderrPath(), nofile);
    AwaitReady(out, "the node", StderrPath());
    Conn c(port_);
    BOOST_REQUIRE_MESSAGE(c.Ask("LEADER 10000").rfind("OK 1 ", 0) == 0, "the node elected no leader");
  }
  NodeProcess(const NodeProcess&) = delete;
  ~NodeProcess() { Stop(pid_); }

  int Port() const { return port_; }
  pid_t Pid() const { return pid_; }
  std::string StderrPath() const { return (dir_ / "stderr").string(); }
  std::string Stderr() const { return ReadText(StderrPath()); }
  bool Alive() const { return ::kill(pid_, 0) == 0 && ::waitpid(pid_, nullptr, WNOHANG) == 0; }

  /// The file holding kSecret (and a trailing newline), written on first use.
  std::string SecretFile() const { return WriteSecretFile(dir_ / "secret", kSecret); }

  /// A connection the node serves, once the slots of connections closed
  /// before it are free (null if none within `timeout`).
  std::unique_ptr<Conn> Hold(std::chrono::milliseconds timeout = 15s) const {
    const auto until = Clock::now() + timeout;
    do {
      auto c = std::make_unique<Conn>(port_);
      const std::string reply = c->Ask("NEXT", std::chrono::milliseconds(Remaining(until)));
      if (reply.rfind("OK ", 0) == 0) return c;
      BOOST_TEST_MESSAGE("held connection: " << reply);
      if (reply == kTimeout) break;
      std::this_thread::sleep_for(10ms);  // turned away: a slot is being freed
    } while (Clock::now() < until);
    return nullptr;
  }

  /// Whether a fresh client gets its NEXT answered within `timeout`:
  /// connections turned away while the node frees slots are retried.
  bool Serves(std::chrono::milliseconds timeout = 15s) const {
    const auto until = Clock::now() + timeout;
    std::string last;
    do {
      Conn c(port_);
      last = c.Ask("NEXT", std::chrono::milliseconds(Remaining(until)));
      if (last.rfind("OK ", 0) == 0) return true;
      if (last == kTimeout) break;
      std::this_thread::sleep_for(10ms);  // turned away: a slot is being freed
    } while (Clock::now() < until);
    BOOST_TEST_MESSAGE("fresh client: " << last);
    return false;
  }

 private:
  TempDir dir_;
  int port_;
  pid_t pid_ = -1;
};

}  // namespace

BOOST_AUTO_TEST_CASE(accepts_again_after_running_out_of_file_descriptors) {
  // 64 descriptors and no connection cap below them: idle clients use up
  // the node's descriptors; the ones it cannot take are told so.
  NodeProcess node({"--max-clients", "1000"}, 64);
  std::vector<std::unique_ptr<Conn>> idle;
  for (int i = 0; i < 100; ++i) {
    idle.push_back(std::make_unique<Conn>(node.Port()));
    BOOST_REQUIRE(idle.back()->Ok());
  }
  BOOST_TEST(idle.back()->ReadLine() == "ERR busy out of file descriptors");
  BOOST_TEST(idle[20]->Ask("NEXT") == "OK 0");  // taken before the limit: served
  idle.erase(idle.begin(), idle.begin() + 30);
  BOOST_TEST(node.Serves());
  BOOST_TEST(node.Stderr().find("Too many open files") != std::string::npos, node.Stderr());
  idle.clear();
  BOOST_TEST(node.Serves());
}

BOOST_AUTO_TEST_CASE(connections_over_max_clients_are_turned_away) {
  NodeProcess node({"--max-clients", "4"});
  std::vector<std::unique_ptr<Conn>> held;
  for (int i = 0; i < 4; ++i) {
    held.push_back(node.Hold());  // each has its thread now
    BOOST_REQUIRE(held.back());
  }
  for (int i = 0; i < 3; ++i) {
    Conn extra(node.Port());
    BOOST_TEST(extra.ReadLine() == "ERR busy too many clients");
    BOOST_TEST(extra.ReadLine() == kClosed);
  }
  BOOST_TEST(held.front()->Ask("NEXT") == "OK 0");
  held.clear();
  BOOST_TEST(node.Serves());
  for (int i = 0; i < 4; ++i) {  // all the slots are free again
    held.push_back(node.Hold());
    BOOST_REQUIRE(held.back());
  }
}

BOOST_AUTO_TEST_CASE(no_memory_for_a_thread_turns_one_client_away) {
  // The connection cap is what bounds the threads; this checks that a
  // thread that cannot be created (here: no address space left for its
  // stack) costs the one client its connection, not the node its life.
  NodeProcess node({"--max-clients", "1000"});
  BOOST_REQUIRE(node.Serves());
  const long vm_kb = StatusKb(node.Pid(), "VmSize");
  BOOST_REQUIRE(vm_kb > 0);
  rlimit loose{};
  BOOST_REQUIRE(::prlimit(node.Pid(), RLIMIT_AS, nullptr, &loose) == 0);
  const rlimit tight{static_cast<rlim_t>(vm_kb + 4096) * 1024, loose.rlim_max};  // 4 MiB left: no 8 MiB stack
  BOOST_REQUIRE(::prlimit(node.Pid(), RLIMIT_AS, &tight, nullptr) == 0);
  std::vector<std::unique_ptr<Conn>> held;
  int refused = 0;
  for (int i = 0; i < 8; ++i) {
    held.push_back(std::make_unique<Conn>(node.Port()));
    const std::string reply = held.back()->Ask("NEXT");
    if (reply == "ERR busy cannot start a connection thread") ++refused;
    else BOOST_TEST(reply == "OK 0");
  }
  BOOST_TEST(refused > 0);
  BOOST_TEST(node.Alive());
  BOOST_REQUIRE(::prlimit(node.Pid(), RLIMIT_AS, &loose, nullptr) == 0);
  held.clear();
  BOOST_TEST(node.Serves());
  BOOST_TEST(node.Stderr().find("cannot start a connection thread") != std::string::npos, node.Stderr());
}

BOOST_AUTO_TEST_CASE(batch_bomb_is_refused_and_memory_stays_bounded) {
  NodeProcess node;
  Conn c(node.Port());
  const std::string prefix(4000, 'p');
  BOOST_TEST(StartsWith(c.Ask("BATCH 100000 " + prefix, 60s), "ERR bad-request BATCH expands to"));
  BOOST_TEST(StartsWith(c.Ask("BATCH 5000 " + prefix), "ERR bad-request"));
  BOOST_TEST(StartsWith(c.Ask("BATCH 100001 p"), "ERR bad-request"));
  // A batch under the limit (4 MB) still goes through.
  BOOST_TEST(c.Ask("BATCH 1000 " + prefix, 30s) == "OK 0");
  BOOST_TEST(c.Ask("READ 999") == "OK " + prefix + "-999");
  BOOST_TEST(StatusKb(node.Pid(), "VmHWM") < 512 * 1024);
  BOOST_TEST(node.Serves());
}

BOOST_AUTO_TEST_CASE(endless_line_is_cut_off) {
  NodeProcess node;
  {
    Conn c(node.Port());  // 8 MiB without a newline
    BOOST_TEST(StartsWith(c.Send(std::string(8U << 20, 'x')), "ERR bad-request line too long"));
    BOOST_TEST(c.ReadLine() == kClosed);
  }
  {
    Conn c(node.Port());  // a whole line, over the 1 MiB default
    BOOST_TEST(StartsWith(c.Ask("APPEND " + std::string(2U << 20, 'y')), "ERR bad-request line too long"));
    BOOST_TEST(c.ReadLine() == kClosed);
  }
  {
    Conn c(node.Port());  // just under it
    BOOST_TEST(c.Ask("APPEND " + std::string((1U << 20) - 8, 'z'), 30s) == "OK 0");
  }
  BOOST_TEST(StatusKb(node.Pid(), "VmHWM") < 512 * 1024);
  BOOST_TEST(node.Serves());
}

BOOST_AUTO_TEST_CASE(last_voter_cannot_be_removed) {
  NodeProcess node({"--admin-secret-file", "@secret"});
  Conn c(node.Port());
  BOOST_TEST(c.Ask(std::string("AUTH ") + kSecret) == "OK");
  const std::string reply = c.Ask("REMOVE 1");
  BOOST_TEST(StartsWith(reply, "ERR "));
  BOOST_TEST(reply.find("last voter") != std::string::npos, reply);
  BOOST_TEST(StartsWith(reply, "ERR refused "), reply);  // a token a client can switch on
  BOOST_TEST(StartsWith(c.Ask("LEADER 5000"), "OK 1 "));
  BOOST_TEST(c.Ask("APPEND still-leading") == "OK 0");
  BOOST_TEST(node.Serves());
}

BOOST_AUTO_TEST_CASE(admin_commands_need_the_secret) {
  NodeProcess node({"--admin-secret-file", "@secret"});
  Conn c(node.Port());
  for (const char* cmd : {"JOIN 2 127.0.0.1:1", "REMOVE 1", "TRANSFER"}) BOOST_TEST(c.Ask(cmd) == "ERR unauthorized");
  for (const char* wrong : {"", "x", "hostile-test-secreT", "hostile-test-secret ", "hostile-test-secret-and-more"})
    BOOST_TEST(c.Ask(std::string("AUTH ") + wrong) == "ERR unauthorized");
  BOOST_TEST(c.Ask("REMOVE 1") == "ERR unauthorized");
  // Authentication is per connection; a wrong AUTH takes it back.
  Conn admin(node.Port());
  BOOST_TEST(admin.Ask(std::string("AUTH ") + kSecret) == "OK");
  BOOST_TEST(admin.Ask("REMOVE 1").find("last voter") != std::string::npos);  // reached the node
  BOOST_TEST(c.Ask("TRANSFER") == "ERR unauthorized");
  BOOST_TEST(admin.Ask("AUTH nope") == "ERR unauthorized");
  BOOST_TEST(admin.Ask("TRANSFER") == "ERR unauthorized");
  BOOST_TEST(node.Serves());
}

BOOST_AUTO_TEST_CASE(admin_commands_are_disabled_without_a_secret) {
  NodeProcess node;
  Conn c(node.Port());
  for (const std::string& cmd : {std::string("AUTH ") + kSecret, std::string("JOIN 2 127.0.0.1:1"),
                                std::string("REMOVE 1"), std::string("TRANSFER")})
    BOOST_TEST(c.Ask(cmd) == "ERR unauthorized admin commands are disabled");
  BOOST_TEST(node.Serves());
}

BOOST_AUTO_TEST_CASE(admin_secret_file_must_be_readable_and_not_empty) {
  TempDir dir;
  const std::string empty = (dir / "empty").string(), blank = (dir / "blank").string();
  std::ofstream(empty).flush();
  std::ofstream(blank) << "\n";
  for (const std::string& path : {(dir / "missing").string(), empty, blank}) {
    BOOST_TEST_CONTEXT(path) {
      const int port = FreePort();
      auto [pid, out] = Spawn({"--id", "1", "--address", "127.0.0.1:" + std::to_string(FreePort()), "--client",
                               "127.0.0.1:" + std::to_string(port), "--dir", (dir / "n").string(),
                               "--admin-secret-file", path},
                              (dir / "stderr").string());
      pollfd p{out, POLLIN, 0};
      char ch;
      const bool exited = ::poll(&p, 1, 10000) == 1 && ::read(out, &ch, 1) == 0;  // stdout closed, nothing said
      ::close(out);
      if (!exited) ::kill(pid, SIGKILL);
      int status = 0;
      ::waitpid(pid, &status, 0);
      BOOST_TEST(exited);
      BOOST_TEST((WIFEXITED(status) && WEXITSTATUS(status) == 2));
    }
  }
}

BOOST_AUTO_TEST_CASE(huge_waits_are_refused_quickly) {
  NodeProcess node;
  Conn c(node.Port());
  for (const char* request :
       {"NEXT 0 99999999999999999999", "NEXT 0 9223372036854775807", "NEXT 1000 9223372036854775807",
        "NEXT 1000 18446744073709551615", "NEXT 1000 3600001", "NEXT 99999999999999999999 1", "NEXT 5",
        "NEXT 5 -1", "LEADER 99999999999999999999", "LEADER 9223372036854775807", "LEADER 9223372036854775807 2",
        "LEADER 3600001", "LEADER 10 x"}) {
    BOOST_TEST_CONTEXT(request) {
      const auto start = Clock::now();
      BOOST_TEST(StartsWith(c.Ask(request, 5s), "ERR bad-request"));
      BOOST_TEST((Clock::now() - start < 2s));
    }
  }
  BOOST_TEST(c.Ask("NEXT 0 3600000") == "OK 0");  // the longest wait, already satisfied
  BOOST_TEST(StartsWith(c.Ask("LEADER 3600000"), "OK 1 "));
  BOOST_TEST(node.Serves());
}
