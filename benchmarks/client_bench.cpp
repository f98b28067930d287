// Committed appends per second through logsync::raft::Client on 3
// logsync-node processes on 127.0.0.1: one append at a time, one client
// pipelining (AppendEach, 16 in flight on one connection), 16 clients at
// once (16 in flight), and batches of 100; next to the single-node
// Log<> durable (sync::Always) append rate measured in the same run. 100-
// byte records. Each figure is the median of --runs runs of --seconds.
//
//   client_bench <path to logsync-node> [--runs N (5)] [--seconds S (2)]

#include <logsync/logsync.hpp>
#include <logsync/raft/client.hpp>

#include "bench_util.hpp"
#include "../tests/support/spawn.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <iostream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
const std::string kValue(100, 'v');

// Three node processes, killed when it goes.
class Nodes {
 public:
  Nodes(const std::string& program, const std::filesystem::path& dir) {
    std::vector<int> raft, client;
    std::string peers;
    for (int id = 1; id <= 3; ++id) {
      raft.push_back(logsync::bench::FreePort());
      client.push_back(logsync::bench::FreePort());
      peers += (id > 1 ? "," : "") + std::to_string(id) + "=127.0.0.1:" + std::to_string(raft.back());
    }
    for (int id = 1; id <= 3; ++id) {
      addresses_.push_back("127.0.0.1:" + std::to_string(client[id - 1]));
      Start(program, {"--id", std::to_string(id), "--address", "127.0.0.1:" + std::to_string(raft[id - 1]),
                      "--client", addresses_.back(), "--peers", peers, "--dir", (dir / std::to_string(id)).string()});
    }
  }
  ~Nodes() {
    for (const pid_t pid : pids_) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
  const std::vector<std::string>& Addresses() const { return addresses_; }

 private:
  // Runs the node and waits for its "ready" line.
  void Start(const std::string& program, std::vector<std::string> args) {
    args.insert(args.begin(), program);
    const auto [pid, out] = logsync::test::SpawnProgram(args);
    if (pid < 0) throw std::runtime_error("cannot start " + program);
    pids_.push_back(pid);
    pollfd p{out, POLLIN, 0};
    char ch = 0;
    while (ch != '\n')
      if (::poll(&p, 1, 20000) != 1 || ::read(out, &ch, 1) != 1)
        throw std::runtime_error("node " + args[2] + " did not start");
    ::close(out);
  }

  std::vector<pid_t> pids_;
  std::vector<std::string> addresses_;
};

// Records per second of `threads` threads running `one()` (which returns
// the records it appended) for `seconds`.
double Rate(int threads, double seconds, const std::function<std::function<std::size_t()>()>& make) {
  std::atomic<std::uint64_t> records{0};
  std::vector<std::function<std::size_t()>> ones;
  for (int t = 0; t < threads; ++t) ones.push_back(make());
  const auto start = Clock::now();
  const auto until = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  {
    std::vector<std::jthread> workers;
    for (auto& one : ones)
      workers.emplace_back([&] {
        while (Clock::now() < until) records += one();
      });
  }
  return static_cast<double>(records.load()) / std::chrono::duration<double>(Clock::now() - start).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: client_bench <path to logsync-node> [--runs N] [--seconds S]\n";
    return 2;
  }
  int runs = 5;
  double seconds = 2;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--runs") runs = std::max(1, std::stoi(argv[i + 1]));
    else if (flag == "--seconds") seconds = std::stod(argv[i + 1]);
  }
  ::signal(SIGPIPE, SIG_IGN);
  logsync::bench::ScratchDir dir("client");
  Nodes nodes(argv[1], dir.path() / "cluster");
  logsync::raft::Client(nodes.Addresses()).Leader();  // waits for the election

  std::vector<std::unique_ptr<logsync::raft::Client>> clients;
  auto client = [&] {
    clients.push_back(std::make_unique<logsync::raft::Client>(nodes.Addresses()));
    return clients.back().get();
  };
  const std::vector<std::string> batch(100, kValue);
  const std::vector<std::string> each(256, kValue);  // one AppendEach call: 256 appends, 16 in flight
  struct Row {
    const char* name;
    std::function<double()> run;
    std::vector<double> rates;
  };
  std::vector<Row> rows{
      {"single node, sync::Always",
       [&] {
         const auto path = dir.path() / "single";
         std::filesystem::remove_all(path);
         logsync::Log<logsync::Record, logsync::DefaultCodec<logsync::Record>, logsync::sync::Always> log(path);
         return Rate(1, seconds, [&] { return [&log]() -> std::size_t { log.Append({.value = kValue}); return 1; }; });
       }, {}},
      {"3 nodes, Client, one at a time",
       [&] { return Rate(1, seconds, [&] { return [c = client()]() -> std::size_t { c->Append(kValue); return 1; }; }); },
       {}},
      {"3 nodes, one Client, AppendEach (16 in flight)",
       [&] {
         return Rate(1, seconds, [&] {
           return [&, c = client()]() -> std::size_t { return c->AppendEach(each).size(); };
         });
       }, {}},
      {"3 nodes, 16 Clients at once (16 in flight)",
       [&] { return Rate(16, seconds, [&] { return [c = client()]() -> std::size_t { c->Append(kValue); return 1; }; }); },
       {}},
      {"3 nodes, Client, batches of 100",
       [&] {
         return Rate(1, seconds, [&] { return [&, c = client()]() -> std::size_t { c->AppendBatch(batch); return 100; }; });
       }, {}},
  };
  for (int r = 0; r < runs; ++r)
    for (auto& row : rows) {
      row.rates.push_back(row.run());
      clients.clear();
    }
  const double base = Median(rows[0].rates);
  std::printf("| | records/s (median of %d runs of %.1f s) | min | max | vs single-node durable append |\n", runs, seconds);
  std::printf("|---|---|---|---|---|\n");
  for (const auto& row : rows) {
    const auto [lo, hi] = std::minmax_element(row.rates.begin(), row.rates.end());
    std::printf("| %s | %.0f | %.0f | %.0f | %.2f |\n", row.name, Median(row.rates), *lo, *hi, Median(row.rates) / base);
  }
}
