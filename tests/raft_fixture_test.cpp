// The replicated log's state machine under canonical/raft's deterministic,
// in-memory cluster fixture: elections, leader loss, partitions and snapshot
// installs, stepped in simulated time. Every FSM is a real Log on disk.
#define BOOST_TEST_MODULE raft_fixture_test
#include <boost/test/unit_test.hpp>

#include <logsync/raft/state_machine.hpp>

extern "C" {
#include <raft/fixture.h>
}

#include "support/temp_dir.hpp"

#include <memory>
#include <string>
#include <utility>
#include <vector>

using logsync::detail::LogMachine;
using logsync::test::TempDir;

namespace {

struct ApplyRequest {
  struct raft_apply req{};
  int status = -1;
  bool done = false;
  std::uint64_t first = 0;
};

void OnApplied(struct raft_apply* req, int status, void* result) {
  auto* a = static_cast<ApplyRequest*>(req->data);
  a->status = status;
  a->done = true;
  a->first = static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(result));
}

// Values of odd lengths, so unpadded entries would shift.
std::string Value(int i) { return "v" + std::to_string(i) + std::string(static_cast<std::size_t>(i % 13), '.'); }

class Cluster {
 public:
  explicit Cluster(unsigned n, unsigned snapshot_threshold = 0) {
    BOOST_REQUIRE(raft_fixture_initialize(&f_) == 0);
    for (unsigned i = 0; i < n; ++i) {
      machines_.push_back(std::make_unique<LogMachine<>>(dir_ / ("node" + std::to_string(i)), logsync::Config{}));
      BOOST_REQUIRE(raft_fixture_grow(&f_, machines_.back()->Fsm(nullptr)) == 0);
      struct raft* r = raft_fixture_get(&f_, i);
      machines_.back()->Fsm(r);
      if (snapshot_threshold > 0) {
        raft_set_snapshot_threshold(r, snapshot_threshold);
        raft_set_snapshot_trailing(r, snapshot_threshold / 2);
      }
    }
    struct raft_configuration conf;
    BOOST_REQUIRE(raft_fixture_configuration(&f_, n, &conf) == 0);
    BOOST_REQUIRE(raft_fixture_bootstrap(&f_, &conf) == 0);
    raft_configuration_close(&conf);
    BOOST_REQUIRE(raft_fixture_start(&f_) == 0);
  }
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;
  ~Cluster() {
    raft_fixture_close(&f_);
    for (auto& m : machines_) m->Close();
  }

  raft_fixture* f() { return &f_; }
  unsigned N() const { return static_cast<unsigned>(machines_.size()); }
  LogMachine<>& Machine(unsigned i) { return *machines_[i]; }

  unsigned ElectLeader() {
    BOOST_REQUIRE(raft_fixture_step_until_has_leader(&f_, 10000));
    return raft_fixture_leader_index(&f_);
  }

  // Proposes `batches` entries of `per_batch` records on server i, all in
  // flight at once; returns the requests (owned by the cluster).
  std::vector<ApplyRequest*> Propose(unsigned i, int batches, int per_batch) {
    std::vector<ApplyRequest*> out;
    for (int b = 0; b < batches; ++b) {
      std::vector<std::string> values;
      for (int k = 0; k < per_batch; ++k) values.push_back(Value(next_value_++));
      raft_buffer buf = logsync::detail::EncodeEntry(
          values.size(), [&](std::size_t j) { return values[j].size(); },
          [&](std::size_t j, std::span<std::byte> o) { std::memcpy(o.data(), values[j].data(), o.size()); });
      BOOST_REQUIRE(buf.len % 8 == 0);
      auto& a = requests_.emplace_back(std::make_unique<ApplyRequest>());
      a->req.data = a.get();
      const int rv = raft_apply(raft_fixture_get(&f_, i), &a->req, &buf, 1, OnApplied);
      if (rv != 0) {
        raft_free(buf.base);
        a->status = rv;
        a->done = true;
      }
      out.push_back(a.get());
    }
    return out;
  }

  // Steps until every live server has applied the leader's last entry.
  void StepUntilAllApplied() {
    const unsigned leader = raft_fixture_leader_index(&f_);
    BOOST_REQUIRE(leader < N());
    const raft_index last = raft_last_index(raft_fixture_get(&f_, leader));
    for (unsigned i = 0; i < N(); ++i)
      if (raft_fixture_alive(&f_, i)) BOOST_REQUIRE(raft_fixture_step_until_applied(&f_, i, last, 20000));
  }

  // (raft index, value) of every record of server i's log, in offset order.
  std::vector<std::pair<std::uint64_t, std::string>> Records(unsigned i) {
    return machines_[i]->WithLog([](const LogMachine<>::LocalLog& log) {
      std::vector<std::pair<std::uint64_t, std::string>> out;
      for (const auto& r : log.Scan(0)) out.emplace_back(r.raft_index, r.bytes);
      return out;
    });
  }

  void CheckIdentical(std::size_t expected_records) {
    const auto first = Records(0);
    BOOST_TEST(first.size() == expected_records);
    for (unsigned i = 1; i < N(); ++i) BOOST_TEST((Records(i) == first), "server " << i << " differs");
    // Offsets are dense and raft indexes never go back.
    for (std::size_t k = 1; k < first.size(); ++k) BOOST_TEST(first[k - 1].first <= first[k].first);
  }

 private:
  TempDir dir_;
  raft_fixture f_{};
  std::vector<std::unique_ptr<LogMachine<>>> machines_;
  std::vector<std::unique_ptr<ApplyRequest>> requests_;
  int next_value_ = 0;
};

std::size_t Succeeded(const std::vector<ApplyRequest*>& reqs, int per_batch) {
  std::size_t n = 0;
  for (auto* r : reqs)
    if (r->done && r->status == 0) n += static_cast<std::size_t>(per_batch);
  return n;
}

}  // namespace

BOOST_AUTO_TEST_CASE(entry_encoding_pads_and_rejects_garbage) {
  std::vector<std::string> values{"a", "bcd", ""};
  raft_buffer buf = logsync::detail::EncodeEntry(
      values.size(), [&](std::size_t j) { return values[j].size(); },
      [&](std::size_t j, std::span<std::byte> o) { std::memcpy(o.data(), values[j].data(), o.size()); });
  BOOST_TEST(buf.len % 8 == 0U);
  std::vector<std::span<const std::byte>> parts;
  const std::span<const std::byte> bytes(static_cast<const std::byte*>(buf.base), buf.len);
  BOOST_REQUIRE(logsync::detail::DecodeEntry(bytes, parts));
  BOOST_REQUIRE(parts.size() == 3U);
  BOOST_TEST(std::string(reinterpret_cast<const char*>(parts[1].data()), parts[1].size()) == "bcd");
  BOOST_TEST(!logsync::detail::DecodeEntry(bytes.first(buf.len - 8), parts));  // cut short
  std::vector<std::byte> shifted(bytes.begin(), bytes.end());
  shifted.insert(shifted.begin(), std::byte{0});
  shifted.resize(buf.len);
  BOOST_TEST(!logsync::detail::DecodeEntry(shifted, parts));  // what an unpadded neighbour does
  raft_free(buf.base);
}

BOOST_AUTO_TEST_CASE(three_servers_lose_and_regain_the_leader) {
  Cluster c(3);
  unsigned leader = c.ElectLeader();
  auto first = c.Propose(leader, 20, 3);
  c.StepUntilAllApplied();
  BOOST_TEST(Succeeded(first, 3) == 60U);
  // Offsets come back to the proposer in order.
  for (std::size_t k = 0; k < first.size(); ++k) BOOST_TEST(first[k]->first == 3 * k);
  c.CheckIdentical(60);

  raft_fixture_kill(c.f(), leader);
  BOOST_REQUIRE(raft_fixture_step_until_has_no_leader(c.f(), 10000));
  BOOST_REQUIRE(raft_fixture_step_until_has_leader(c.f(), 10000));
  const unsigned next = raft_fixture_leader_index(c.f());
  BOOST_TEST(next != leader);
  auto second = c.Propose(next, 10, 1);
  c.StepUntilAllApplied();
  BOOST_TEST(Succeeded(second, 1) == 10U);

  raft_fixture_revive(c.f(), leader);
  c.StepUntilAllApplied();
  c.CheckIdentical(70);
}

BOOST_AUTO_TEST_CASE(five_servers_partition_and_heal) {
  Cluster c(5);
  const unsigned old = c.ElectLeader();
  auto before = c.Propose(old, 5, 2);
  c.StepUntilAllApplied();
  BOOST_TEST(Succeeded(before, 2) == 10U);

  // Cut the leader and one follower off from the other three.
  const unsigned buddy = (old + 1) % 5;
  auto minority = [&](unsigned i) { return i == old || i == buddy; };
  for (unsigned i = 0; i < 5; ++i)
    for (unsigned j = 0; j < 5; ++j)
      if (minority(i) != minority(j)) raft_fixture_saturate(c.f(), i, j);
  // What the cut-off leader accepts cannot commit.
  auto lost = c.Propose(old, 3, 1);
  BOOST_REQUIRE(raft_fixture_step_until(
      c.f(),
      [](raft_fixture* f, void* arg) {
        const unsigned l = raft_fixture_leader_index(f);
        return l < f->n && l != *static_cast<unsigned*>(arg) && raft_state(raft_fixture_get(f, l)) == RAFT_LEADER &&
               raft_state(raft_fixture_get(f, *static_cast<unsigned*>(arg))) != RAFT_LEADER;
      },
      const_cast<unsigned*>(&old), 20000));
  const unsigned fresh = raft_fixture_leader_index(c.f());
  BOOST_TEST(!minority(fresh));
  auto during = c.Propose(fresh, 8, 2);
  BOOST_REQUIRE(raft_fixture_step_until_applied(c.f(), fresh, raft_last_index(raft_fixture_get(c.f(), fresh)), 20000));
  BOOST_TEST(Succeeded(during, 2) == 16U);

  for (unsigned i = 0; i < 5; ++i)
    for (unsigned j = 0; j < 5; ++j) raft_fixture_desaturate(c.f(), i, j);
  c.StepUntilAllApplied();
  BOOST_TEST(Succeeded(lost, 1) == 0U);
  for (auto* r : lost) BOOST_TEST(r->done);  // failed, not left hanging
  c.CheckIdentical(26);
}

BOOST_AUTO_TEST_CASE(lagging_server_catches_up_from_a_snapshot) {
  Cluster c(3, /*snapshot_threshold=*/16);
  const unsigned leader = c.ElectLeader();
  const unsigned lagging = (leader + 1) % 3;
  raft_fixture_kill(c.f(), lagging);
  auto reqs = c.Propose(leader, 60, 2);
  c.StepUntilAllApplied();
  BOOST_TEST(Succeeded(reqs, 2) == 120U);
  // The leader has snapshotted and dropped the entries the lagging server lacks.
  BOOST_TEST(raft_fixture_get(c.f(), leader)->log.offset > 0U);
  raft_fixture_revive(c.f(), lagging);
  c.StepUntilAllApplied();
  c.CheckIdentical(120);
  BOOST_TEST(c.Machine(lagging).NextOffset() == 120U);
}
