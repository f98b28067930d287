#pragma once
/// The configuration of a replicated log's node and what its API names:
/// Peer (a node's id and addresses), ParsePeers, NodeConfig, and the errors
/// NotLeader and ReplicationError. ReplicatedLog (replicated_log.hpp) runs
/// a node from a NodeConfig.

#include <logsync/config.hpp>
#include <logsync/error.hpp>

#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace logsync {

/// A node of the cluster: raft id and address ("host:port"), and the
/// address its clients use, once it has announced one (see Leader()).
struct Peer {
  std::uint64_t id = 0;
  std::string address;
  std::string client_address;  ///< empty if not (yet) known
  friend bool operator==(const Peer&, const Peer&) = default;
};

/// Parses "1=127.0.0.1:9001,2=127.0.0.1:9002"; throws std::invalid_argument.
inline std::vector<Peer> ParsePeers(const std::string& text) {
  std::vector<Peer> out;
  std::size_t at = 0;
  while (at < text.size()) {
    std::size_t end = text.find(',', at);
    if (end == std::string::npos) end = text.size();
    const std::string item = text.substr(at, end - at);
    const std::size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == item.size())
      throw std::invalid_argument("logsync: peer '" + item + "' is not id=host:port");
    std::size_t used = 0;
    const std::uint64_t id = std::stoull(item.substr(0, eq), &used);
    if (used != eq || id == 0) throw std::invalid_argument("logsync: peer id in '" + item + "' is not a number > 0");
    out.push_back(Peer{id, item.substr(eq + 1), {}});
    at = end + 1;
  }
  return out;
}

/// This node is not the leader; names the leader it knows of (id 0 if none).
class NotLeader : public Error {
 public:
  explicit NotLeader(Peer leader)
      : Error("logsync: not the leader" +
              (leader.id ? "; the leader is " + std::to_string(leader.id) + " at " + leader.address : std::string())),
        leader_(std::move(leader)) {}
  const Peer& leader() const noexcept { return leader_; }

 private:
  Peer leader_;
};

/// A replication request that failed (no quorum, leadership lost before the
/// outcome was known, a refused membership change...). For a failed Append
/// the records may or may not end up committed.
class ReplicationError : public Error {
 public:
  ReplicationError(const std::string& what, int code) : Error("logsync: " + what), code_(code) {}
  /// The raft error code.
  int code() const noexcept { return code_; }

 private:
  int code_;
};

/// An idempotent append the cluster refused: its sequence is below the
/// producer's last one and not among those remembered, or repeats one of
/// them for a different number of records.
/// Nothing was appended.
class OutOfOrderSequence : public Error {
 public:
  OutOfOrderSequence(const std::string& what, std::uint64_t last)
      : Error("logsync: " + what), last_(last) {}
  /// The producer's last sequence, as far as the error knows it.
  std::uint64_t last() const noexcept { return last_; }

 private:
  std::uint64_t last_;
};

/// How a node runs.
struct NodeConfig {
  std::uint64_t id = 0;          ///< raft id, > 0, unique in the cluster
  std::string address;           ///< raft address "host:port" (IPv4) it listens on
  std::filesystem::path dir;     ///< data: <dir>/raft and <dir>/log
  /// The initial cluster, this node included: bootstrapped when <dir>/raft is
  /// fresh. Empty (or without this node) to join an existing cluster, whose
  /// leader then calls Join for this node.
  std::vector<Peer> bootstrap;
  /// The address clients reach this node at (its own protocol, if any):
  /// announced to the cluster whenever this node becomes leader, so that
  /// every node's Leader() and NotLeader name it. Empty: none.
  std::string client_address;
  Config log;                               ///< the local log's configuration
  /// A follower that hears nothing from a leader for this long (randomised
  /// up to twice as long) starts an election. 500 ms, where the engine's
  /// default is 1000: see the README's failover figures. Keep it at several
  /// heartbeats.
  unsigned election_timeout_ms = 500;
  unsigned heartbeat_timeout_ms = 100;      ///< raft default
  /// Pre-vote: a candidate first asks whether it could win, and starts a
  /// new term only if a majority says so, so that a node cut off for a
  /// while does not disrupt the cluster when it comes back, and a refused
  /// candidate does not leave the cluster split over two terms.
  bool pre_vote = true;
  /// Entries between raft snapshots. Unless fetch_snapshots, a snapshot
  /// holds the whole log in memory, so a small threshold makes snapshots
  /// quadratic in the log's size; raft keeps the entries since the last
  /// snapshot in memory.
  unsigned snapshot_threshold = 1U << 16;
  /// Snapshots of the state machine's metadata only: a node that restores
  /// one fetches the records from a peer's client_address with FETCH
  /// (raft/fetch.hpp), which every node's client port must then serve
  /// (logsync-node does). Memory stays bounded whatever the log's size.
  bool fetch_snapshots = false;
  unsigned snapshot_trailing = 1U << 13;    ///< entries kept after a snapshot
  /// Idempotent appends: the producers the state machine remembers (the
  /// least recently used is forgotten first), and how long after its last
  /// append (in entry time, the leader's clock) a producer is forgotten. A
  /// retry is recognised only while its producer is remembered. Must be the
  /// same on every node: they decide the same only with the same limits.
  std::size_t max_producers = 65536;
  std::uint64_t producer_expiry_ms = 3'600'000;
};

}  // namespace logsync
