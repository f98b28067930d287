// Committed appends per second of a 3-node ReplicatedLog cluster on
// loopback (three nodes in this process, each with its own loop thread and
// raft_uv storage under the system temp dir), next to the single-node
// Log<> durable (sync::Always) append rate measured in the same run: the
// ceiling a replicated append (an fsync on a majority plus round trips) is
// compared with. items_per_second is records per second.

#include <logsync/logsync.hpp>
#include <logsync/raft/replicated_log.hpp>

#include "bench_util.hpp"

#include <benchmark/benchmark.h>

#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace {

std::filesystem::path BenchDir(const std::string& name) {
  auto p = std::filesystem::temp_directory_path() / ("logsync-raft-bench-" + std::to_string(::getpid()) + "-" + name);
  std::filesystem::remove_all(p);
  return p;
}

const std::string kValue(100, 'v');

class ThreeNodes {
 public:
  ThreeNodes() : dir_(BenchDir("cluster")) {
    std::vector<logsync::Peer> peers;
    for (std::uint64_t id = 1; id <= 3; ++id) peers.push_back({id, "127.0.0.1:" + std::to_string(logsync::bench::FreePort()), {}});
    for (const auto& p : peers) {
      logsync::NodeConfig c;
      c.id = p.id;
      c.address = p.address;
      c.dir = dir_ / std::to_string(p.id);
      c.bootstrap = peers;
      c.election_timeout_ms = 500;
      nodes_.push_back(std::make_unique<logsync::ReplicatedLog<>>(c));
    }
    const auto leader = nodes_[0]->WaitForLeader(std::chrono::seconds(20));
    leader_ = nodes_[leader.id - 1].get();
  }
  ~ThreeNodes() {
    nodes_.clear();
    std::filesystem::remove_all(dir_);
  }
  logsync::ReplicatedLog<>& Leader() { return *leader_; }

 private:
  std::filesystem::path dir_;
  std::vector<std::unique_ptr<logsync::ReplicatedLog<>>> nodes_;
  logsync::ReplicatedLog<>* leader_ = nullptr;
};

ThreeNodes& Cluster() {
  static ThreeNodes cluster;
  return cluster;
}

void BM_SingleNodeDurableAppend(benchmark::State& state) {
  const auto dir = BenchDir("single");
  {
    logsync::Log<logsync::Record, logsync::DefaultCodec<logsync::Record>, logsync::sync::Always> log(dir);
    for (auto _ : state) benchmark::DoNotOptimize(log.Append({.value = kValue}));
    state.SetItemsProcessed(state.iterations());
  }
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_SingleNodeDurableAppend)->UseRealTime();

void BM_ReplicatedAppendOneAtATime(benchmark::State& state) {
  auto& leader = Cluster().Leader();
  for (auto _ : state) benchmark::DoNotOptimize(leader.Append({.value = kValue}));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ReplicatedAppendOneAtATime)->UseRealTime();

// Many appends in flight: state.range(0) client threads at once.
void BM_ReplicatedAppendInFlight(benchmark::State& state) {
  auto& leader = Cluster().Leader();
  const int threads = static_cast<int>(state.range(0));
  constexpr int kPerThread = 64;
  for (auto _ : state) {
    std::vector<std::jthread> clients;
    for (int t = 0; t < threads; ++t)
      clients.emplace_back([&] {
        for (int i = 0; i < kPerThread; ++i) leader.Append({.value = kValue});
      });
  }
  state.SetItemsProcessed(state.iterations() * threads * kPerThread);
}
BENCHMARK(BM_ReplicatedAppendInFlight)->Arg(16)->UseRealTime();

void BM_ReplicatedAppendBatch(benchmark::State& state) {
  auto& leader = Cluster().Leader();
  std::vector<logsync::Record> batch(static_cast<std::size_t>(state.range(0)), logsync::Record{.value = kValue});
  for (auto _ : state) benchmark::DoNotOptimize(leader.AppendBatch(batch));
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_ReplicatedAppendBatch)->Arg(100)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
