// Real clusters of logsync-node processes on 127.0.0.1 (raft_uv storage,
// TCP): appends with many requests in flight and batches through the
// leader, kill -9 of the leader, a new leader, the killed node restarted
// on its data and catching up, a fourth node joining and a node removed.
// Every node must end with the same records at the same offsets, holding
// every append that was acknowledged. Membership changes and transfers are
// admin commands: the nodes get a secret file and the test authenticates.
// The node program's path is argv[1].
#define BOOST_TEST_MODULE raft_cluster_test
#include <boost/test/unit_test.hpp>

#include "support/cluster.hpp"
#include "support/node.hpp"

#include <logsync/raft/connection.hpp>

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace logsync::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* kSecret = kClusterSecret;

// Appends through whichever node leads, following not-leader replies and
// reconnecting after a node dies; records what was acknowledged.
class Writer {
 public:
  Writer(Cluster& c, std::mutex& mu, std::map<std::uint64_t, std::string>& acked) : c_(c), mu_(mu), acked_(acked) {}

  // Sends `request` until it is acknowledged; `values(first)` are the
  // records it appended.
  void Send(const std::string& request, const std::vector<std::string>& values) {
    for (int attempt = 0; attempt < 200; ++attempt) {
      if (!client_ || !client_->Ok()) client_ = std::make_unique<Conn>(c_.ById(c_.Leader()).client_port);
      const std::string r = client_->Ask(request);
      if (r.rfind("OK ", 0) == 0) {
        const std::uint64_t first = std::stoull(r.substr(3));
        std::lock_guard lock(mu_);
        for (std::size_t i = 0; i < values.size(); ++i) acked_[first + i] = values[i];
        return;
      }
      if (r.rfind("ERR not-leader ", 0) == 0) {
        std::istringstream in(r.substr(15));
        std::uint64_t id = 0;
        in >> id;
        client_ = std::make_unique<Conn>(c_.ById(id).client_port);
        continue;
      }
      client_.reset();  // no leader, connection lost, outcome unknown: try again
    }
    BOOST_FAIL("request never acknowledged: " << request);
  }

 private:
  Cluster& c_;
  std::mutex& mu_;
  std::map<std::uint64_t, std::string>& acked_;
  std::unique_ptr<Conn> client_;
};

// What LEADER answers once node `id` leads and its announcement has
// arrived: its client address, then its raft address.
std::string LeaderReply(Cluster& c, std::uint64_t id) {
  const Node& n = c.ById(id);
  return "OK " + std::to_string(id) + " 127.0.0.1:" + std::to_string(n.client_port) + " " + n.Address();
}

// Asks node `at` LEADER until it names `id` with its client address (the
// announcement is an entry that must commit and reach the node), for at
// most 20 s; returns the last reply.
std::string AwaitLeaderReply(Cluster& c, std::uint64_t at, std::uint64_t id) {
  const std::string want = LeaderReply(c, id);
  std::string got;
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while ((got = Ask(c.ById(at).client_port, "LEADER 3000")) != want && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(10ms);
  return got;
}

void CheckSame(Cluster& c, const std::vector<std::uint64_t>& ids, const std::map<std::uint64_t, std::string>& acked) {
  // The reference is the leader's log, once it holds every acknowledged
  // record (a node may name a leader that just stepped down, whose log can
  // be behind: waiting for the acknowledged records covers that too).
  const std::uint64_t leader = c.Leader();
  const std::uint64_t want = acked.empty() ? 0 : acked.rbegin()->first + 1;
  const std::uint64_t next = c.Next(c.ById(leader), want);
  const auto reference = c.Records(c.ById(leader), next);
  for (std::uint64_t id : ids) {
    BOOST_TEST_CONTEXT("node " << id) {
      BOOST_TEST(c.Next(c.ById(id), next) == next);
      BOOST_TEST((c.Records(c.ById(id), next) == reference));
    }
  }
  for (const auto& [offset, value] : acked) {
    BOOST_REQUIRE(offset < next);
    BOOST_TEST(reference[offset] == "OK " + value, "acknowledged offset " << offset);
  }
}

// A node's reply to FETCH: its local log's Reader() stream, whole.
std::string FetchStream(const Node& node) {
  logsync::detail::LineConnection conn;
  const auto until = [] { return std::chrono::steady_clock::now() + 30s; };
  BOOST_REQUIRE(conn.Connect(node.ClientAddress(), until()).empty());
  const auto reply = conn.Ask("FETCH", until());
  BOOST_REQUIRE_MESSAGE(reply && reply->rfind("OK ", 0) == 0, "FETCH on node " << node.id);
  std::string out(std::stoull(reply->substr(3)), '\0');
  for (std::size_t at = 0; at < out.size();) {
    const std::size_t n = conn.ReadSome(std::as_writable_bytes(std::span(out).subspan(at)), until());
    BOOST_REQUIRE_MESSAGE(n > 0, "FETCH on node " << node.id << " broke off at " << at);
    at += n;
  }
  return out;
}

// The value of `key` in a STATS reply ("OK restored <n> <key> <value> ..."),
// or "" if it has none; "restored" is always the first.
std::string StatsValue(const std::string& stats, const std::string& key) {
  std::istringstream in(stats);
  std::string ok, k, v;
  in >> ok;
  while (in >> k >> v)
    if (k == key) return v;
  return "";
}

// The snapshots a STATS reply says the node installed.
std::uint64_t Restored(const std::string& stats) {
  BOOST_REQUIRE_MESSAGE(stats.rfind("OK restored ", 0) == 0, stats);
  return std::stoull(stats.substr(12));
}

}  // namespace

BOOST_AUTO_TEST_CASE(three_nodes_survive_leader_kill_and_membership_changes) {
  Cluster c(3);
  std::mutex mu;
  std::map<std::uint64_t, std::string> acked;
  std::atomic<int> progress{0};

  // Six writers: single appends of odd lengths and batches, all in flight.
  auto work = [&](int w, int from, int to) {
    Writer writer(c, mu, acked);
    for (int i = from; i < to; ++i) {
      if (i % 7 == 3) {
        const std::string prefix = "w" + std::to_string(w) + "b" + std::to_string(i);
        std::vector<std::string> values;
        for (int k = 0; k < 9; ++k) values.push_back(prefix + "-" + std::to_string(k));
        writer.Send("BATCH 9 " + prefix, values);
      } else {
        const std::string v = "w" + std::to_string(w) + "-" + std::to_string(i) + std::string(static_cast<std::size_t>(i % 11), 'x');
        writer.Send("APPEND " + v, {v});
      }
      ++progress;
    }
  };
  {
    std::vector<std::jthread> writers;
    for (int w = 0; w < 6; ++w) writers.emplace_back(work, w, 0, 120);
    // Kill the leader with appends in flight, once a good part is acknowledged.
    while (progress.load() < 250) std::this_thread::yield();
    const std::uint64_t old = c.Leader();
    c.Kill(c.ById(old), SIGKILL);
    const std::uint64_t fresh = c.Leader(old);
    BOOST_TEST(fresh != old);
    writers.clear();  // joins: every writer finished its appends through the new leader
    BOOST_TEST(progress.load() == 6 * 120);
    // The killed node restarts on its data and catches up.
    c.Start(c.ById(old), "");
    std::vector<std::jthread> more;
    for (int w = 0; w < 3; ++w) more.emplace_back(work, w, 1000, 1040);
  }
  CheckSame(c, {1, 2, 3}, acked);

  // A fourth node joins (spare, caught up, promoted to voter); one leaves.
  Node& fourth = c.Add();
  const std::uint64_t leader = c.Leader();
  BOOST_TEST(AskAdmin(c.ById(leader).client_port, kSecret, "JOIN 4 " + fourth.Address()) == "OK");
  const std::uint64_t gone = leader == 1 ? 2 : 1;
  BOOST_TEST(AskAdmin(c.ById(leader).client_port, kSecret, "REMOVE " + std::to_string(gone)) == "OK");
  c.removed_.insert(gone);
  {
    std::vector<std::jthread> more;
    for (int w = 0; w < 2; ++w) more.emplace_back(work, w, 2000, 2030);
  }
  std::vector<std::uint64_t> members;
  for (std::uint64_t id = 1; id <= 4; ++id)
    if (id != gone) members.push_back(id);
  CheckSame(c, members, acked);
  BOOST_TEST(acked.size() > 6U * 120U);
}

BOOST_AUTO_TEST_CASE(bad_requests_get_errors) {
  Cluster c(1);
  const int port = c.ById(c.Leader()).client_port;
  Conn client(port);
  BOOST_TEST(client.Ask("NOPE").rfind("ERR bad-request", 0) == 0U);
  BOOST_TEST(client.Ask("READ x").rfind("ERR bad-request", 0) == 0U);
  BOOST_TEST(client.Ask("READ 5") == "ERR out-of-range");
  BOOST_TEST(client.Ask("BATCH 0 p").rfind("ERR bad-request", 0) == 0U);
  BOOST_TEST(client.Ask("JOIN x") == "ERR unauthorized");
  BOOST_TEST(client.Ask(std::string("AUTH ") + kSecret) == "OK");
  BOOST_TEST(client.Ask("JOIN x").rfind("ERR bad-request", 0) == 0U);
  BOOST_TEST(client.Ask("APPEND ok") == "OK 0");
  BOOST_TEST(client.Ask("READ 0") == "OK ok");
}

BOOST_AUTO_TEST_CASE(lagging_node_catches_up_through_a_snapshot) {
  // Snapshots every 16 entries, keeping 4: a node down while 150 entries
  // commit finds the entries it lacks gone from the leader's raft log, and
  // must be sent a snapshot (metadata; the records come over FETCH).
  Cluster c(3, {"--snapshot-threshold", "16", "--snapshot-trailing", "4"});
  std::mutex mu;
  std::map<std::uint64_t, std::string> acked;
  Writer writer(c, mu, acked);
  for (int i = 0; i < 10; ++i) writer.Send("APPEND early-" + std::to_string(i), {"early-" + std::to_string(i)});
  const std::uint64_t leader = c.Leader();
  const std::uint64_t lagging = leader == 3 ? 2 : 3;
  BOOST_TEST(c.Next(c.ById(lagging), 10) == 10U);
  c.Kill(c.ById(lagging), SIGKILL);
  for (int i = 0; i < 150; ++i) {
    const std::string v = "while-down-" + std::to_string(i);
    if (i % 10 == 9)
      writer.Send("BATCH 3 " + v, {v + "-0", v + "-1", v + "-2"});
    else
      writer.Send("APPEND " + v, {v});
  }
  const std::uint64_t other_id = lagging == 2 ? 3 : 2;
  const std::uint64_t applied = c.Next(c.ById(other_id), acked.rbegin()->first + 1);
  const std::string other = Ask(c.ById(other_id).client_port, "STATS");
  BOOST_TEST(Restored(other) == 0U, other);
  // The local log's counters follow: it applied what the cluster committed.
  BOOST_TEST(std::stoull(StatsValue(other, "next")) >= applied, other);
  BOOST_TEST(std::stoull(StatsValue(other, "records")) >= 1U, other);
  BOOST_TEST(std::stoull(StatsValue(other, "segments")) >= 1U, other);
  BOOST_TEST(std::stoull(StatsValue(other, "open_files")) >= 3U, other);
  BOOST_TEST(StatsValue(other, "recovery_bytes_cut") == "0", other);
  c.Start(c.ById(lagging), "");
  CheckSame(c, {1, 2, 3}, acked);
  const std::string stats = Ask(c.ById(lagging).client_port, "STATS");
  BOOST_TEST(Restored(stats) >= 1U, stats);
  // The leader's client address reached it in the snapshot: the entry that
  // announced it was compacted away before the node came back.
  BOOST_TEST(Ask(c.ById(lagging).client_port, "LEADER") == LeaderReply(c, c.Leader()));
  // It goes on taking appends as a follower.
  writer.Send("APPEND after", {"after"});
  CheckSame(c, {1, 2, 3}, acked);
}

BOOST_AUTO_TEST_CASE(a_follower_far_behind_catches_up_through_a_streamed_fetch) {
  // Snapshots every 8 entries, keeping 2: a node down while some MB commit
  // finds its entries compacted away on the leader. The raft snapshots
  // carry metadata only; the node fetches the records from the leader's
  // client port (FETCH, a checked stream) and ends byte-identical.
  Cluster c(3, {"--snapshot-threshold", "8", "--snapshot-trailing", "2"});
  std::mutex mu;
  std::map<std::uint64_t, std::string> acked;
  Writer writer(c, mu, acked);
  writer.Send("APPEND first", {"first"});
  const std::uint64_t leader = c.Leader();
  const std::uint64_t lagging = leader == 3 ? 2 : 3;
  BOOST_TEST(c.Next(c.ById(lagging), 1) == 1U);
  c.Kill(c.ById(lagging), SIGKILL);
  const std::string prefix(400, 'p');
  for (int i = 0; i < 40; ++i) {
    const std::string p = prefix + std::to_string(i);
    std::vector<std::string> values;
    for (int k = 0; k < 500; ++k) values.push_back(p + "-" + std::to_string(k));
    writer.Send("BATCH 500 " + p, values);
  }
  // The leader's snapshots hold no records.
  const auto raft_dir = c.LocalLog(c.ById(c.Leader())).parent_path() / "raft";
  int snapshots = 0;
  for (const auto& e : std::filesystem::directory_iterator(raft_dir)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("snapshot-", 0) != 0 || name.find(".meta") != std::string::npos) continue;
    ++snapshots;
    BOOST_TEST(e.file_size() < 4096U, name);
  }
  BOOST_TEST(snapshots >= 1);

  const auto start = std::chrono::steady_clock::now();
  c.Start(c.ById(lagging), "");
  const std::uint64_t next = c.Next(c.ById(c.Leader()), acked.rbegin()->first + 1);
  BOOST_TEST(c.Next(c.ById(lagging), next) == next);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const std::string stats = Ask(c.ById(lagging).client_port, "STATS");
  BOOST_TEST(Restored(stats) >= 1U, stats);
  const std::string reference = FetchStream(c.ById(c.Leader()));
  BOOST_TEST_MESSAGE("caught up " << reference.size() << " bytes in " << seconds << " s ("
                                  << reference.size() / seconds / 1e6 << " MB/s, restart included)");
  for (std::uint64_t id : {1, 2, 3}) BOOST_TEST(FetchStream(c.ById(id)) == reference, "node " << id);
  CheckSame(c, {1, 2, 3}, acked);
  writer.Send("APPEND after", {"after"});
  CheckSame(c, {1, 2, 3}, acked);
}

BOOST_AUTO_TEST_CASE(leadership_moves_on_transfer) {
  Cluster c(3);
  std::mutex mu;
  std::map<std::uint64_t, std::string> acked;
  Writer writer(c, mu, acked);
  writer.Send("APPEND before", {"before"});
  const std::uint64_t old = c.Leader();
  BOOST_TEST(AskAdmin(c.ById(old).client_port, kSecret, "TRANSFER") == "OK");
  const std::uint64_t fresh = c.Leader(old);
  BOOST_TEST(fresh != old);
  writer.Send("APPEND after", {"after"});
  CheckSame(c, {1, 2, 3}, acked);
}

// What a power loss can leave of a follower's local log (it runs without
// syncs): a prefix of its frames that ends inside a batch. The restarted
// node must complete that entry from raft, not skip the rest of it, or its
// later offsets hold other records than the other nodes'.
BOOST_AUTO_TEST_CASE(a_follower_whose_local_log_ends_inside_a_batch_converges) {
  Cluster c(3);
  std::mutex mu;
  std::map<std::uint64_t, std::string> acked;
  std::vector<std::string> batch;
  for (int k = 0; k < 9; ++k) batch.push_back("mid-" + std::to_string(k));
  {
    Writer writer(c, mu, acked);
    for (int i = 0; i < 10; ++i) writer.Send("APPEND a" + std::to_string(i), {"a" + std::to_string(i)});
    writer.Send("BATCH 9 mid", batch);
    for (int i = 0; i < 5; ++i) writer.Send("APPEND c" + std::to_string(i), {"c" + std::to_string(i)});
  }
  std::uint64_t cut = 0;  // the offset of the batch's fifth record
  for (const auto& [offset, value] : acked)
    if (value == "mid-4") cut = offset;
  BOOST_REQUIRE(cut > 0U);
  const std::uint64_t leader = c.Leader();
  const std::uint64_t follower = leader % 3 + 1;
  const std::uint64_t next = c.Next(c.ById(leader), acked.rbegin()->first + 1);
  BOOST_REQUIRE(c.Next(c.ById(follower), next) == next);
  c.Kill(c.ById(follower), SIGKILL);

  // Zero the follower's active store from the frame of `cut` on.
  std::filesystem::path store;
  for (const auto& e : std::filesystem::directory_iterator(c.LocalLog(c.ById(follower))))
    if (e.path().extension() == ".store" && (store.empty() || e.path() > store)) store = e.path();
  BOOST_REQUIRE(!store.empty());
  std::string bytes;
  {
    std::ifstream in(store, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  auto u32 = [&](std::size_t at) {
    std::uint32_t v = 0;
    std::memcpy(&v, bytes.data() + at, 4);
    return v;
  };
  auto u64 = [&](std::size_t at) {
    std::uint64_t v = 0;
    std::memcpy(&v, bytes.data() + at, 8);
    return v;
  };
  std::size_t pos = 16;  // after the store header
  while (pos + 16 <= bytes.size() && u64(pos + 8) != cut && u32(pos) != 0) pos += 16 + u32(pos);
  BOOST_REQUIRE_MESSAGE(pos + 16 <= bytes.size() && u64(pos + 8) == cut, "no frame of offset " << cut << " in " << store);
  std::fill(bytes.begin() + static_cast<std::ptrdiff_t>(pos), bytes.end(), '\0');
  {
    std::ofstream out(store, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }

  c.Start(c.ById(follower), "");
  {
    Writer writer(c, mu, acked);
    for (int i = 0; i < 5; ++i) writer.Send("APPEND d" + std::to_string(i), {"d" + std::to_string(i)});
  }
  CheckSame(c, {1, 2, 3}, acked);
}

// Redirects and LEADER name the leader's client address (announced by the
// leader through raft), then its raft address, on every node, across a
// failover and on a node that restarts.
BOOST_AUTO_TEST_CASE(redirects_name_the_leaders_client_address) {
  Cluster c(3);
  const std::uint64_t first = c.Leader();
  for (std::uint64_t id = 1; id <= 3; ++id) {
    BOOST_TEST(AwaitLeaderReply(c, id, first) == LeaderReply(c, first), "node " << id);
    if (id != first)
      BOOST_TEST(Ask(c.ById(id).client_port, "APPEND x") == "ERR not-leader " + LeaderReply(c, first).substr(3));
  }
  c.Kill(c.ById(first), SIGKILL);
  const std::uint64_t second = c.Leader(first);
  BOOST_REQUIRE(second != first);
  for (std::uint64_t id = 1; id <= 3; ++id)
    if (id != first) BOOST_TEST(AwaitLeaderReply(c, id, second) == LeaderReply(c, second), "node " << id);
  c.Start(c.ById(first), "");
  BOOST_TEST(AwaitLeaderReply(c, first, second) == LeaderReply(c, second));
  BOOST_TEST(Ask(c.ById(first).client_port, "APPEND y") == "ERR not-leader " + LeaderReply(c, second).substr(3));
}
