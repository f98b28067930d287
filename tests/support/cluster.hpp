#pragma once
// A cluster of logsync-node processes on 127.0.0.1 for the tests that run
// real nodes: started with an admin secret file, killed and restarted on
// their data, asked who leads, read back record by record.

#include "node.hpp"
#include "temp_dir.hpp"

#include <boost/test/unit_test.hpp>

#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace logsync::test {

/// The admin secret every Cluster's nodes are started with.
inline constexpr const char* kClusterSecret = "cluster-test-secret";

struct Node {
  Node(std::uint64_t i, int r, int c) : id(i), raft_port(r), client_port(c) {}
  std::uint64_t id;
  int raft_port, client_port;
  std::atomic<pid_t> pid{-1};  // read by writer threads while the test kills and restarts
  std::string Address() const { return "127.0.0.1:" + std::to_string(raft_port); }
  std::string ClientAddress() const { return "127.0.0.1:" + std::to_string(client_port); }
};

class Cluster {
 public:
  explicit Cluster(int n, std::vector<std::string> extra = {}) : extra_(std::move(extra)) {
    extra_.insert(extra_.end(), {"--admin-secret-file", WriteSecretFile(dir_ / "admin-secret", kClusterSecret)});
    for (int i = 1; i <= n; ++i) nodes_.emplace_back(static_cast<std::uint64_t>(i), FreePort(), FreePort());
    for (const auto& node : nodes_) peers_ += (peers_.empty() ? "" : ",") + std::to_string(node.id) + "=" + node.Address();
    for (auto& node : nodes_) Start(node, peers_);
  }
  ~Cluster() {
    for (auto& node : nodes_) Kill(node, SIGKILL);
  }

  Node& Add() {
    nodes_.emplace_back(nodes_.size() + 1, FreePort(), FreePort());
    Start(nodes_.back(), "");
    return nodes_.back();
  }

  // Starts a node on its data directory and waits for its "ready" line.
  void Start(Node& node, const std::string& peers) {
    const std::string dir = (dir_ / ("n" + std::to_string(node.id))).string();
    const std::string log = dir + ".stderr";
    std::vector<std::string> args{"--id", std::to_string(node.id), "--address", node.Address(),
                                  "--client", "127.0.0.1:" + std::to_string(node.client_port), "--dir", dir,
                                  "--election-timeout", "400"};
    if (!peers.empty()) args.insert(args.end(), {"--peers", peers});
    args.insert(args.end(), extra_.begin(), extra_.end());
    const auto [pid, out] = Spawn(args, log);
    node.pid = pid;
    AwaitReady(out, "node " + std::to_string(node.id), log);
  }

  void Kill(Node& node, int sig) { Stop(node.pid.exchange(-1), sig); }

  Node& ById(std::uint64_t id) { return nodes_[id - 1]; }
  std::size_t Size() const { return nodes_.size(); }

  // The node's local log directory (the state machine's Log).
  std::filesystem::path LocalLog(const Node& node) const { return dir_ / ("n" + std::to_string(node.id)) / "log"; }

  // The leader, as a live node other than `not_id` names it.
  std::uint64_t Leader(std::uint64_t not_id = 0) {
    for (int round = 0; round < 20; ++round)
      for (auto& node : nodes_) {
        if (node.pid <= 0 || node.id == not_id || removed_.count(node.id)) continue;
        const std::string reply = Ask(node.client_port, "LEADER 3000 " + std::to_string(not_id));
        if (std::getenv("LOGSYNC_TEST_VERBOSE")) std::fprintf(stderr, "node %llu: LEADER -> %s\n", static_cast<unsigned long long>(node.id), reply.c_str());
        std::istringstream in(reply);
        std::string ok;
        std::uint64_t id = 0;
        if (!(in >> ok >> id) || ok != "OK" || id == 0) continue;
        if (ById(id).pid > 0) return id;
        not_id = id;  // a dead node the others have not yet replaced: wait for another
      }
    BOOST_FAIL("no leader elected");
    return 0;
  }

  std::uint64_t Next(const Node& node, std::uint64_t want = 0) {
    const std::string r = Ask(node.client_port, "NEXT " + std::to_string(want) + " 30000", std::chrono::seconds(40));
    BOOST_REQUIRE_MESSAGE(r.rfind("OK ", 0) == 0, "NEXT on node " << node.id << ": " << r);
    return std::stoull(r.substr(3));
  }

  std::vector<std::string> Records(const Node& node, std::uint64_t n) {
    Conn c(node.client_port);
    std::vector<std::string> out;
    for (std::uint64_t i = 0; i < n; ++i) out.push_back(c.Ask("READ " + std::to_string(i)));
    return out;
  }

  std::set<std::uint64_t> removed_;

 private:
  std::vector<std::string> extra_;
  TempDir dir_;
  std::deque<Node> nodes_;
  std::string peers_;
};

}  // namespace logsync::test
