// logsync::raft::Client against real logsync-node processes on 127.0.0.1:
// the idempotent protocol commands and HELLO on one node; the client's
// calls, redirects and deadline; and clients that retry every append whose
// outcome they do not know while the leader is killed with SIGKILL and
// restarted again and again: every node must end with every acknowledged
// record exactly once, at its acknowledged offset, and the same log. The
// node program's path is argv[1].
#define BOOST_TEST_MODULE client_cluster_test
#include <boost/test/unit_test.hpp>

#include <logsync/raft/client.hpp>

#include "support/cluster.hpp"
#include "support/node.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

using namespace logsync::test;
using namespace std::chrono_literals;
using logsync::raft::Client;
using logsync::raft::ClientOptions;

namespace {

std::vector<std::string> ClientAddresses(Cluster& c) {
  std::vector<std::string> out;
  for (std::uint64_t id = 1; id <= c.Size(); ++id) out.push_back(c.ById(id).ClientAddress());
  return out;
}

// Waits (polling the condition) up to `timeout` for `done()`.
template <class F>
bool Await(F done, std::chrono::milliseconds timeout) {
  const auto until = Clock::now() + timeout;
  while (!done()) {
    if (Clock::now() >= until) return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

}  // namespace

BOOST_AUTO_TEST_CASE(idempotent_commands_and_hello) {
  Cluster c(1);
  Conn n(c.ById(c.Leader()).client_port);
  BOOST_TEST(n.Ask("HELLO 2") == "OK 2");
  BOOST_TEST(n.Ask("HELLO 1") == "OK 2");
  BOOST_TEST(n.Ask("HELLO 3") == "ERR unsupported-version 1 2");
  BOOST_TEST(n.Ask("HELLO x").rfind("ERR bad-request", 0) == 0U);
  BOOST_TEST(n.Ask("PAPPEND 7 1 first") == "OK 0");
  BOOST_TEST(n.Ask("PAPPEND 7 1 first") == "OK 0 duplicate");
  BOOST_TEST(n.Ask("PAPPEND 7 0 older").rfind("ERR out-of-order ", 0) == 0U);
  BOOST_TEST(n.Ask("PBATCH 7 2 3 1:a2:bb0:") == "OK 1");
  BOOST_TEST(n.Ask("PBATCH 7 2 3 1:a2:bb0:") == "OK 1 duplicate");
  BOOST_TEST(n.Ask("PBATCH 7 2 1 1:a").rfind("ERR out-of-order ", 0) == 0U);
  BOOST_TEST(n.Ask("PBATCH 7 3 2 1:a").rfind("ERR bad-request", 0) == 0U);
  BOOST_TEST(n.Ask("PAPPEND 0 1 x").rfind("ERR bad-request", 0) == 0U);
  BOOST_TEST(n.Ask("APPEND plain") == "OK 4");
  BOOST_TEST(n.Ask("SCAN 0 10") == "OK 5 5:first1:a2:bb0:5:plain");
  BOOST_TEST(n.Ask("SCAN 3 1") == "OK 1 0:");
  BOOST_TEST(n.Ask("SCAN 5 10") == "OK 0");
  BOOST_TEST(n.Ask("SCAN 0 0").rfind("ERR bad-request", 0) == 0U);
  // The table is the cluster's, not the connection's.
  BOOST_TEST(Ask(c.ById(1).client_port, "PAPPEND 7 3 next") == "OK 5");
}

BOOST_AUTO_TEST_CASE(client_calls_follow_redirects_and_give_up_at_the_deadline) {
  Cluster c(3);
  const std::uint64_t leader = c.Leader();
  // Only followers in its list: the client follows their redirect.
  std::vector<std::string> followers;
  for (std::uint64_t id = 1; id <= 3; ++id)
    if (id != leader) followers.push_back(c.ById(id).ClientAddress());
  Client client(followers);
  BOOST_TEST(client.ProducerId() != 0U);
  BOOST_TEST(client.Append("zero") == 0U);
  const std::vector<std::string> batch{"b0", "b1", "b2"};
  BOOST_TEST(client.AppendBatch(batch) == 1U);
  BOOST_TEST(client.NextSequence() == 3U);
  BOOST_TEST(client.Read(2) == "b1");
  BOOST_CHECK_THROW(client.Read(99), logsync::OffsetOutOfRange);
  BOOST_TEST(client.WaitFor(3, 1000ms));
  BOOST_TEST(!client.WaitFor(4, 50ms));
  BOOST_TEST(client.Leader().id == leader);
  BOOST_TEST(client.Leader().client_address == c.ById(leader).ClientAddress());
  BOOST_CHECK_THROW(client.Append("two\nlines"), std::invalid_argument);
  // A lazy scan in chunks of 2 over 104 records.
  std::vector<std::string> more;
  for (int i = 0; i < 100; ++i) more.push_back("m" + std::to_string(i));
  BOOST_TEST(client.AppendBatch(more) == 4U);
  std::uint64_t expect = 0;
  for (const logsync::Record& r : client.Scan(0, 2)) {
    BOOST_TEST(r.offset == expect);
    if (r.offset >= 4) BOOST_TEST(r.value == more[r.offset - 4]);
    ++expect;
  }
  BOOST_TEST(expect == 104U);
  // The same producer id and sequence from a second client: a retry.
  ClientOptions same;
  same.producer_id = client.ProducerId();
  same.first_sequence = 3;
  Client twin(ClientAddresses(c), same);
  BOOST_TEST(twin.AppendBatch(more) == 4U);
  BOOST_TEST(twin.Duplicates() == 1U);
  // A sequence below the last that was never appended: refused.
  ClientOptions older = same;
  older.first_sequence = 0;
  BOOST_CHECK_THROW(Client(ClientAddresses(c), older).Append("late"), logsync::OutOfOrderSequence);
  // Nobody listening: Unavailable once the deadline has passed.
  ClientOptions quick;
  quick.deadline = 300ms;
  Client nowhere({"127.0.0.1:" + std::to_string(FreePort())}, quick);
  const auto start = Clock::now();
  BOOST_CHECK_THROW(nowhere.Append("x"), logsync::raft::Unavailable);
  BOOST_TEST((Clock::now() - start < 5s));
}

// Sends an idempotent `request` to the leader until a reply that is not
// about who leads (safe: it is idempotent); that reply.
std::string AskLeader(Cluster& c, const std::string& request) {
  std::string reply;
  for (int attempt = 0; attempt < 50; ++attempt) {
    reply = Ask(c.ById(c.Leader()).client_port, request);
    if (!StartsWith(reply, "ERR not-leader") && !StartsWith(reply, "ERR no-leader") &&
        !StartsWith(reply, "ERR unknown-outcome") && reply != kClosed && reply != kTimeout)
      return reply;
  }
  return reply;
}

// A retry answered by another leader than the original, and by a node
// that restarted from its snapshot (every 16 entries) and replayed the rest.
BOOST_AUTO_TEST_CASE(a_retry_is_a_duplicate_on_the_next_leader_and_after_a_restart) {
  Cluster c(3, {"--snapshot-threshold", "16", "--snapshot-trailing", "4"});
  const std::string first = AskLeader(c, "PAPPEND 99 1 first");
  BOOST_REQUIRE(StartsWith(first, "OK "));
  for (int s = 1; s <= 40; ++s)
    BOOST_REQUIRE(StartsWith(AskLeader(c, "PAPPEND 98 " + std::to_string(s) + " r" + std::to_string(s)), "OK "));
  const std::uint64_t one = c.Leader();
  c.Kill(c.ById(one), SIGKILL);
  const std::uint64_t two = c.Leader(one);
  BOOST_TEST(AskLeader(c, "PAPPEND 99 1 first") == first + " duplicate");
  c.Start(c.ById(one), "");
  BOOST_TEST(c.Next(c.ById(one), 41) == 41U);
  c.Kill(c.ById(two), SIGKILL);
  c.Leader(two);
  BOOST_TEST(AskLeader(c, "PAPPEND 99 1 first") == first + " duplicate");
  BOOST_TEST(AskLeader(c, "PAPPEND 98 40 r40") == "OK 40 duplicate");
  // The last 32 appends of a producer are remembered (in snapshots too);
  // the ones before are refused.
  BOOST_TEST(AskLeader(c, "PAPPEND 98 39 r39") == "OK 39 duplicate");
  BOOST_TEST(AskLeader(c, "PAPPEND 98 9 r9") == "OK 9 duplicate");
  BOOST_TEST(StartsWith(AskLeader(c, "PAPPEND 98 8 r8"), "ERR out-of-order "));
  BOOST_TEST(AskLeader(c, "PAPPEND 98 41 r41") == "OK 41");
  c.Start(c.ById(two), "");
  const auto reference = c.Records(c.ById(c.Leader()), 42);
  for (std::uint64_t id = 1; id <= 3; ++id) {
    BOOST_TEST(c.Next(c.ById(id), 42) == 42U, "node " << id);
    BOOST_TEST((c.Records(c.ById(id), 42) == reference), "node " << id);
  }
}

// A node that does not speak version 2 (it answers HELLO with an error):
// the client says so at once, not after its deadline.
BOOST_AUTO_TEST_CASE(a_node_of_another_protocol_version_is_refused_clearly) {
  int port = 0;
  const int listener = BindLoopback(port, 4);
  std::jthread node([listener] {
    const int fd = ::accept(listener, nullptr, nullptr);
    char buf[256];
    if (fd >= 0 && ::recv(fd, buf, sizeof buf, 0) > 0) {
      const std::string reply = "ERR unsupported-version 3 4\n";
      ::send(fd, reply.data(), reply.size(), MSG_NOSIGNAL);
    }
    if (fd >= 0) ::close(fd);
  });
  ClientOptions o;
  o.deadline = 20s;
  Client client({"127.0.0.1:" + std::to_string(port)}, o);
  const auto start = Clock::now();
  try {
    client.Append("x");
    BOOST_ERROR("the append went through");
  } catch (const logsync::raft::Unavailable& e) {
    BOOST_ERROR("Unavailable instead of a version error: " << e.what());
  } catch (const logsync::Error& e) {
    BOOST_TEST(std::string(e.what()).find("unsupported-version 3 4") != std::string::npos, e.what());
  }
  BOOST_TEST((Clock::now() - start < 10s));
  node.join();
  ::close(listener);
}

BOOST_AUTO_TEST_CASE(retrying_clients_append_exactly_once_across_leader_kills) {
  // Snapshots every 64 entries: the restarted nodes start from snapshots
  // (the producer table in them) and may be sent one by the leader.
  Cluster c(3, {"--snapshot-threshold", "64", "--snapshot-trailing", "16"});
  constexpr int kClients = 4, kKills = 6, kRoundRecords = 25;
  std::mutex mu;
  std::map<std::uint64_t, std::string> acked;  // offset -> value, every acknowledged record
  std::vector<std::atomic<std::uint64_t>> progress(kClients);
  std::vector<std::string> failures;           // the clients' Unavailable errors
  std::atomic<std::uint64_t> retries{0}, duplicates{0}, acked_twice{0};
  std::atomic<bool> stop{false};
  auto work = [&](int k) {
    auto nodes = ClientAddresses(c);
    std::rotate(nodes.begin(), nodes.begin() + k % 3, nodes.end());  // not all start at node 1
    ClientOptions o;
    o.deadline = 60s;
    o.request_timeout = 2s;
    Client client(nodes, o);
    for (int i = 0; !stop.load(); ++i) {
      std::vector<std::string> values;
      const std::string name = "c" + std::to_string(k) + "-" + std::to_string(i);
      if (i % 5 == 4)
        for (int j = 0; j < 4; ++j) values.push_back(name + "-" + std::to_string(j));
      else
        values.push_back(name);
      try {
        const std::uint64_t first = values.size() == 1 ? client.Append(values[0]) : client.AppendBatch(values);
        std::lock_guard lock(mu);
        for (std::size_t j = 0; j < values.size(); ++j) acked_twice += !acked.emplace(first + j, values[j]).second;
      } catch (const logsync::raft::Unavailable& e) {
        // Outcome unknown: such a record may be in the log, at most once.
        std::lock_guard lock(mu);
        failures.push_back("client " + std::to_string(k) + ": " + e.what());
      }
      ++progress[static_cast<std::size_t>(k)];
    }
    retries += client.Retries();
    duplicates += client.Duplicates();
  };
  // Every client made `n` more calls.
  auto advanced = [&](std::uint64_t n) {
    std::vector<std::uint64_t> base;
    for (auto& p : progress) base.push_back(p.load());
    return Await([&] {
      for (std::size_t k = 0; k < progress.size(); ++k)
        if (progress[k].load() < base[k] + n) return false;
      return true;
    }, 60s);
  };
  {
    std::vector<std::jthread> clients;
    for (int k = 0; k < kClients; ++k) clients.emplace_back(work, k);
    for (int kill = 0; kill < kKills; ++kill) {
      BOOST_REQUIRE_MESSAGE(advanced(kRoundRecords), "clients made no progress before kill " << kill);
      const std::uint64_t old = c.Leader();
      c.Kill(c.ById(old), SIGKILL);
      BOOST_REQUIRE(c.Leader(old) != old);
      c.Start(c.ById(old), "");
    }
    BOOST_REQUIRE_MESSAGE(advanced(kRoundRecords), "clients made no progress after the last kill");
    stop = true;
  }
  BOOST_TEST_MESSAGE(acked.size() << " records acknowledged, " << retries.load() << " retries, " << duplicates.load()
                                  << " answered as duplicates, " << failures.size() << " calls unavailable");
  for (const auto& f : failures) BOOST_ERROR(f);
  BOOST_TEST(acked_twice.load() == 0U);

  // Every node: the same log, every acknowledged record at its offset, and
  // no record twice (every value is unique).
  const std::uint64_t leader = c.Leader();
  const std::uint64_t next = c.Next(c.ById(leader), acked.rbegin()->first + 1);
  const auto reference = c.Records(c.ById(leader), next);
  for (std::uint64_t id = 1; id <= 3; ++id) {
    BOOST_TEST(c.Next(c.ById(id), next) == next, "node " << id);
    BOOST_TEST((c.Records(c.ById(id), next) == reference), "node " << id);
  }
  std::map<std::string, int> seen;
  for (const auto& r : reference) ++seen[r];
  std::size_t twice = 0, lost = 0;
  for (const auto& [value, n] : seen) twice += n > 1;
  for (const auto& [offset, value] : acked) lost += reference[offset] != "OK " + value;
  BOOST_TEST_MESSAGE(reference.size() << " records in the log, " << twice << " duplicated, " << lost << " lost");
  BOOST_TEST(twice == 0U);
  BOOST_TEST(lost == 0U);
  BOOST_TEST(reference.size() >= acked.size());
  std::string restored;
  for (std::uint64_t id = 1; id <= 3; ++id) {
    const std::string stats = Ask(c.ById(id).client_port, "STATS");  // "OK restored <n> <key> <value> ..."
    BOOST_REQUIRE(stats.rfind("OK restored ", 0) == 0);
    restored += " " + std::to_string(std::stoull(stats.substr(12)));
  }
  BOOST_TEST_MESSAGE("snapshots installed from the leader, per node:" << restored);
}

// The value of `key` in a STATS reply ("OK restored <n> <key> <value> ..."); -1 if absent.
long long StatsValue(const std::string& stats, const std::string& key) {
  const auto at = stats.find(" " + key + " ");
  return at == std::string::npos ? -1 : std::stoll(stats.substr(at + key.size() + 2));
}

// Requests written back to back on one connection before any reply is
// read: the appends are all submitted (the node keeps them in flight at
// once), the replies come in request order, and sending them all again
// gets each its original offset as a duplicate; a request other than an
// append waits for the replies before it.
BOOST_AUTO_TEST_CASE(a_node_keeps_pipelined_appends_in_flight_and_replies_in_order) {
  Cluster c(3);
  const std::uint64_t leader = c.Leader();
  Conn n(c.ById(leader).client_port);
  BOOST_REQUIRE(n.Ask("HELLO 2") == "OK 2");
  constexpr int kN = 16;
  std::string burst;
  for (int s = 1; s <= kN; ++s) burst += "PAPPEND 5 " + std::to_string(s) + " v" + std::to_string(s) + "\n";
  std::vector<std::string> replies{n.Send(burst + "READ 3\n")};
  for (int i = 1; i <= kN; ++i) replies.push_back(n.ReadLine());
  for (int i = 0; i < kN; ++i) BOOST_TEST(replies[static_cast<std::size_t>(i)] == "OK " + std::to_string(i));
  BOOST_TEST(replies.back() == "OK v4");
  // More than one was in flight at once: sixteen requests taken in one
  // read are submitted before the first commit (which waits for fsyncs).
  const long long most = StatsValue(Ask(c.ById(leader).client_port, "STATS"), "in_flight_max");
  BOOST_TEST_MESSAGE("the leader had at most " << most << " requests of one connection in flight");
  BOOST_TEST(most >= 2);
  BOOST_TEST(most <= 64);
  // All sent again, in order: duplicates with their offsets, never out-of-order.
  replies = {n.Send(burst)};
  for (int i = 1; i < kN; ++i) replies.push_back(n.ReadLine());
  for (int i = 0; i < kN; ++i)
    BOOST_TEST(replies[static_cast<std::size_t>(i)] == "OK " + std::to_string(i) + " duplicate");
  BOOST_TEST(n.Ask("PAPPEND 5 17 next") == "OK 16");
}

BOOST_AUTO_TEST_CASE(a_pipelining_client_keeps_max_in_flight_appends_in_flight) {
  Cluster c(3);
  ClientOptions o;
  o.max_in_flight = 16;
  Client client(ClientAddresses(c), o);
  std::vector<std::string> values;
  for (int i = 0; i < 300; ++i) values.push_back("e" + std::to_string(i));
  const auto offsets = client.AppendEach(values);
  BOOST_REQUIRE(offsets.size() == values.size());
  for (std::size_t i = 0; i < offsets.size(); ++i) BOOST_TEST(offsets[i] == i);
  BOOST_TEST(client.MostInFlight() == 16U);
  BOOST_TEST(client.NextSequence() == 301U);
  BOOST_TEST(client.Read(299) == "e299");
  const std::string stats = Ask(c.ById(c.Leader()).client_port, "STATS");
  BOOST_TEST(StatsValue(stats, "in_flight_max") >= 2);
  // Existing calls go on after it, and clamping: 100 asked, 32 at most.
  BOOST_TEST(client.Append("after") == 300U);
  o.max_in_flight = 100;
  Client wide(ClientAddresses(c), o);
  BOOST_TEST(wide.AppendEach(values).front() == 301U);
  BOOST_TEST(wide.MostInFlight() == 32U);
}

// Pipelining clients (16 in flight each) while the leader is killed with
// SIGKILL and restarted again and again: every record acknowledged once,
// at its offset, none twice and none lost, the same log on every node.
BOOST_AUTO_TEST_CASE(pipelined_appends_exactly_once_across_leader_kills) {
  Cluster c(3, {"--snapshot-threshold", "64", "--snapshot-trailing", "16"});
  constexpr int kClients = 3, kKills = 5, kChunk = 48;
  std::mutex mu;
  std::map<std::uint64_t, std::string> acked;
  std::vector<std::atomic<std::uint64_t>> progress(kClients);
  std::vector<std::string> failures;
  std::atomic<std::uint64_t> retries{0}, duplicates{0}, acked_twice{0}, most{0};
  std::atomic<bool> stop{false};
  auto work = [&](int k) {
    auto nodes = ClientAddresses(c);
    std::rotate(nodes.begin(), nodes.begin() + k % 3, nodes.end());
    ClientOptions o;
    o.deadline = 60s;
    o.request_timeout = 2s;
    o.max_in_flight = 16;
    Client client(nodes, o);
    for (int i = 0; !stop.load(); ++i) {
      std::vector<std::string> values;
      for (int j = 0; j < kChunk; ++j)
        values.push_back("q" + std::to_string(k) + "-" + std::to_string(i) + "-" + std::to_string(j));
      try {
        const auto offsets = client.AppendEach(values);
        std::lock_guard lock(mu);
        for (std::size_t j = 0; j < values.size(); ++j) acked_twice += !acked.emplace(offsets[j], values[j]).second;
      } catch (const logsync::Error& e) {  // Unavailable, or out-of-order: neither may happen here
        std::lock_guard lock(mu);
        failures.push_back("client " + std::to_string(k) + ": " + e.what());
      }
      ++progress[static_cast<std::size_t>(k)];
    }
    retries += client.Retries();
    duplicates += client.Duplicates();
    most = std::max<std::uint64_t>(most.load(), client.MostInFlight());
  };
  auto advanced = [&](std::uint64_t n) {
    std::vector<std::uint64_t> base;
    for (auto& p : progress) base.push_back(p.load());
    return Await([&] {
      for (std::size_t k = 0; k < progress.size(); ++k)
        if (progress[k].load() < base[k] + n) return false;
      return true;
    }, 90s);
  };
  {
    std::vector<std::jthread> clients;
    struct Stop {  // a failed requirement stops the clients too (before they are joined)
      std::atomic<bool>& stop;
      ~Stop() { stop = true; }
    } stopper{stop};
    for (int k = 0; k < kClients; ++k) clients.emplace_back(work, k);
    for (int kill = 0; kill < kKills; ++kill) {
      BOOST_REQUIRE_MESSAGE(advanced(2), "clients made no progress before kill " << kill);
      const std::uint64_t old = c.Leader();
      c.Kill(c.ById(old), SIGKILL);
      BOOST_REQUIRE(c.Leader(old) != old);
      c.Start(c.ById(old), "");
    }
    BOOST_REQUIRE_MESSAGE(advanced(2), "clients made no progress after the last kill");
    stop = true;
  }
  BOOST_TEST_MESSAGE(acked.size() << " records acknowledged, " << retries.load() << " retries, " << duplicates.load()
                                  << " answered as duplicates, " << failures.size() << " calls failed");
  for (const auto& f : failures) BOOST_ERROR(f);
  BOOST_TEST(acked_twice.load() == 0U);
  BOOST_TEST(most.load() == 16U);
  const std::uint64_t leader = c.Leader();
  const std::uint64_t next = c.Next(c.ById(leader), acked.rbegin()->first + 1);
  const auto reference = c.Records(c.ById(leader), next);
  for (std::uint64_t id = 1; id <= 3; ++id) {
    BOOST_TEST(c.Next(c.ById(id), next) == next, "node " << id);
    BOOST_TEST((c.Records(c.ById(id), next) == reference), "node " << id);
  }
  std::map<std::string, int> seen;
  for (const auto& r : reference) ++seen[r];
  std::size_t twice = 0, lost = 0;
  for (const auto& [value, n] : seen) twice += n > 1;
  for (const auto& [offset, value] : acked) lost += reference[offset] != "OK " + value;
  BOOST_TEST_MESSAGE(reference.size() << " records in the log, " << twice << " duplicated, " << lost << " lost");
  BOOST_TEST(twice == 0U);
  BOOST_TEST(lost == 0U);
  // Each client's records in the log in the order it sent them.
  std::size_t disordered = 0;
  std::map<int, std::pair<int, int>> last;  // client -> (call, record) of its last record so far
  for (const auto& r : reference) {
    int k = 0, i = 0, j = 0;
    if (std::sscanf(r.c_str(), "OK q%d-%d-%d", &k, &i, &j) != 3) continue;
    const auto it = last.find(k);
    disordered += it != last.end() && std::pair(i, j) < it->second;
    last[k] = {i, j};
  }
  BOOST_TEST(disordered == 0U);
}
