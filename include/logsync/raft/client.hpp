#pragma once
/// logsync::raft::Client: a program's client of a cluster of logsync-node
/// processes (examples/logsync-node.cpp), over their line protocol,
/// version 2. Plain POSIX sockets; needs neither libraft nor libuv.
///
/// A client talks to one node at a time. Appends are idempotent: the
/// client has a producer id and numbers its appends, and a retry keeps the
/// number, so the cluster appends each at most once however often it is
/// retried (while it remembers the producer: NodeConfig::max_producers,
/// producer_expiry_ms). Every call is retried, with backoff, through lost
/// connections, timeouts, redirects (`not-leader`, to the client address
/// it names), `no-leader`, `busy` and `unknown-outcome`, until the call's
/// deadline; then it throws Unavailable. NotLeader never reaches the
/// caller.
///
/// Calls from several threads take turns. Append, AppendBatch and the
/// reads have one request in flight at a time; AppendEach pipelines: it
/// keeps up to ClientOptions::max_in_flight (at most 32) appends in flight
/// on the one connection, each its own idempotent append, and after any
/// failure whose outcome it cannot know sends them again from the first
/// not acknowledged, in order, with their sequences (the cluster remembers
/// each producer's last 32 appends, and answers those it made as
/// duplicates). For more in flight, run several clients, each with its own
/// producer id.

#include <logsync/error.hpp>
#include <logsync/raft/connection.hpp>
#include <logsync/raft/line_protocol.hpp>
#include <logsync/raft/node_config.hpp>
#include <logsync/record.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <iterator>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace logsync::raft {

/// The cluster did not settle a call before its deadline (no node
/// reachable, no leader, or every attempt's outcome unknown). An append
/// may or may not have been made; calling it again is not a retry (a new
/// sequence).
class Unavailable : public Error {
 public:
  using Error::Error;
};

/// How a Client retries.
struct ClientOptions {
  std::chrono::milliseconds deadline{30'000};        ///< a call throws Unavailable after this long
  std::chrono::milliseconds request_timeout{5'000};  ///< one attempt's wait for its reply
  std::chrono::milliseconds backoff{10};             ///< first pause between attempts, doubling...
  std::chrono::milliseconds max_backoff{500};        ///< ...up to this
  /// The producer id of the appends (not shared with any other client
  /// running at the same time); 0: a random one.
  std::uint64_t producer_id = 0;
  /// The sequence of the first append. A client that reuses a producer id
  /// must start above the sequences it used before.
  std::uint64_t first_sequence = 1;
  /// The most appends AppendEach keeps in flight (1..32; clamped).
  std::size_t max_in_flight = 16;
};

class Client;

/// The records from an offset of the log of the node a client talks to,
/// fetched lazily, `chunk` records a request, up to its end when the last
/// chunk was fetched. An input range of Record (offset and value).
class ScanRange {
 public:
  class Iterator {
   public:
    using value_type = Record;
    using difference_type = std::ptrdiff_t;
    Iterator() = default;
    explicit Iterator(ScanRange* range) : range_(range) {}
    const Record& operator*() const { return range_->buf_[range_->at_]; }
    const Record* operator->() const { return &**this; }
    Iterator& operator++() {
      range_->Advance();
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const Iterator& it, std::default_sentinel_t) { return it.AtEnd(); }

   private:
    bool AtEnd() const { return !range_ || range_->Done(); }
    ScanRange* range_ = nullptr;
  };

  ScanRange(Client& client, std::uint64_t from, std::size_t chunk)
      : client_(&client), next_(from), chunk_(std::clamp<std::size_t>(chunk, 1, 10'000)) {}
  /// Fetches the first chunk (once).
  Iterator begin() {
    if (!started_) Fetch();
    started_ = true;
    return Iterator(this);
  }
  std::default_sentinel_t end() const noexcept { return {}; }

 private:
  void Fetch();
  bool Done() const noexcept { return at_ >= buf_.size(); }
  void Advance() {
    if (++at_ == buf_.size()) Fetch();  // the end once a chunk comes back empty
  }

  Client* client_;
  std::uint64_t next_;  // offset of the next chunk
  std::size_t chunk_;
  std::vector<Record> buf_;
  std::size_t at_ = 0;
  bool started_ = false;
};

/// A client of a cluster of logsync-node processes (see the file comment).
class Client {
 public:
  /// `nodes`: client addresses ("host:port", a node's --client) of some
  /// of the cluster's nodes; tried in turn until one answers.
  explicit Client(std::vector<std::string> nodes, ClientOptions options = {})
      : nodes_(std::move(nodes)), options_(options),
        producer_(options.producer_id ? options.producer_id : RandomProducer()),
        next_sequence_(options.first_sequence) {
    if (nodes_.empty()) throw std::invalid_argument("logsync: a Client needs at least one node address");
    target_ = nodes_.front();
  }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  /// Appends a record (no newline or carriage return in it) once; returns
  /// its offset, committed by a majority. Throws Unavailable past the
  /// deadline, OutOfOrderSequence if the cluster refused the sequence.
  std::uint64_t Append(std::string_view value) { return AppendBatch(std::span<const std::string_view>(&value, 1)); }

  /// Appends records at contiguous offsets as one entry, once; returns the
  /// first offset. As Append.
  template <class String>
  std::uint64_t AppendBatch(std::span<const String> values) {
    if (values.empty()) throw std::invalid_argument("logsync: AppendBatch of no record");
    std::string request;
    for (const auto& v : values) {
      const std::string_view s(v);
      if (s.find_first_of("\r\n") != std::string_view::npos)
        throw std::invalid_argument("logsync: a record sent to a node cannot hold a newline or carriage return");
      detail::AppendFramed(request, s);
    }
    std::lock_guard lock(mu_);
    const std::uint64_t sequence = next_sequence_++;
    request = "PBATCH " + std::to_string(producer_) + " " + std::to_string(sequence) + " " +
              std::to_string(values.size()) + " " + request;
    const std::string reply = Call(request, false);
    if (Starts(reply, "OK ")) {
      std::istringstream in(reply.substr(3));
      std::uint64_t first = 0;
      std::string duplicate;
      if (in >> first) {
        if (in >> duplicate && duplicate == "duplicate") ++duplicates_;
        on_leader_ = true;
        return first;
      }
    }
    if (Starts(reply, "ERR out-of-order")) throw OutOfOrderSequence(reply, 0);
    throw Error("logsync: the node refused an append: " + reply);
  }
  std::uint64_t AppendBatch(const std::vector<std::string>& values) {
    return AppendBatch(std::span<const std::string>(values));
  }

  /// Appends each record as an idempotent append of its own (as Append),
  /// in order, keeping up to ClientOptions::max_in_flight in flight on the
  /// connection; returns their offsets, in the order of `values` (rising).
  /// After a lost connection, a timeout, a redirect, `no-leader`, `busy`
  /// or `unknown-outcome` it sends again from the first append not
  /// acknowledged. Throws Unavailable when no reply came for the deadline
  /// (the appends from the first not acknowledged on may or may not have
  /// been made), OutOfOrderSequence if the cluster refused a sequence.
  template <class String>
  std::vector<std::uint64_t> AppendEach(std::span<const String> values) {
    std::vector<std::string> requests;
    requests.reserve(values.size());
    for (const auto& v : values) {
      const std::string_view s(v);
      if (s.find_first_of("\r\n") != std::string_view::npos)
        throw std::invalid_argument("logsync: a record sent to a node cannot hold a newline or carriage return");
      requests.emplace_back();
      detail::AppendFramed(requests.back(), s);
    }
    std::lock_guard lock(mu_);
    for (std::string& r : requests)
      r = "PBATCH " + std::to_string(producer_) + " " + std::to_string(next_sequence_++) + " 1 " + r;
    return Pipeline(requests);
  }
  std::vector<std::uint64_t> AppendEach(const std::vector<std::string>& values) {
    return AppendEach(std::span<const std::string>(values));
  }

  /// The record at `offset`, from the leader's log (or, with no leader
  /// known, the log of the node the client talks to). Throws
  /// OffsetOutOfRange if that log does not hold it.
  std::string Read(std::uint64_t offset) {
    std::lock_guard lock(mu_);
    const std::string reply = Call("READ " + std::to_string(offset), true);
    if (Starts(reply, "OK ")) return reply.substr(3);
    if (reply == "OK") return {};
    Refused(reply, offset);
  }

  /// The records from `from` on, fetched lazily (see ScanRange).
  ScanRange Scan(std::uint64_t from, std::size_t chunk = 1000) { return ScanRange(*this, from, chunk); }

  /// Waits up to `timeout` (at most an hour) until the leader's log (as
  /// for Read) holds `offset`; whether it does.
  bool WaitFor(std::uint64_t offset, std::chrono::milliseconds timeout) {
    const auto ms = std::clamp<std::chrono::milliseconds::rep>(timeout.count(), 0, 3'600'000);
    std::lock_guard lock(mu_);
    const std::string reply =
        Call("NEXT " + std::to_string(offset + 1) + " " + std::to_string(ms), true, std::chrono::milliseconds(ms));
    if (Starts(reply, "OK ")) return std::stoull(reply.substr(3)) > offset;
    Refused(reply, offset);
  }

  /// The leader, as the node the client talks to knows it (client_address
  /// empty until the leader has announced it). Unavailable if none is
  /// known before the deadline.
  Peer Leader() {
    std::lock_guard lock(mu_);
    const std::string reply = Call("LEADER", false);
    std::istringstream in(reply);
    std::string ok, client, raft;
    Peer p;
    if (!(in >> ok >> p.id >> client >> raft) || ok != "OK") Refused(reply, 0);
    p.address = raft;
    p.client_address = client == "-" ? std::string() : client;
    return p;
  }

  std::uint64_t ProducerId() const noexcept { return producer_; }
  /// The sequence the next append will take.
  std::uint64_t NextSequence() const {
    std::lock_guard lock(mu_);
    return next_sequence_;
  }
  /// Attempts made again so far (after a lost connection, a timeout, a
  /// redirect, no leader...).
  std::uint64_t Retries() const {
    std::lock_guard lock(mu_);
    return retries_;
  }
  /// Appends the cluster answered as retries of appends it had made.
  std::uint64_t Duplicates() const {
    std::lock_guard lock(mu_);
    return duplicates_;
  }
  /// The most requests AppendEach has had in flight at once.
  std::size_t MostInFlight() const {
    std::lock_guard lock(mu_);
    return most_in_flight_;
  }

 private:
  friend class ScanRange;
  using Clock = detail::LineConnection::Clock;

  static bool Starts(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

  static std::uint64_t RandomProducer() {
    std::random_device rd;
    std::uint64_t v = 0;
    while (v == 0)
      v = ((std::uint64_t{rd()} << 32) | rd()) ^
          (static_cast<std::uint64_t>(Clock::now().time_since_epoch().count()) * 0x9E3779B97F4A7C15ULL);
    return v;
  }

  [[noreturn]] static void Refused(const std::string& reply, std::uint64_t offset) {
    if (reply == "ERR out-of-range") throw OffsetOutOfRange(offset);
    throw Error("logsync: the node refused a request: " + reply);
  }

  // Under mu_: up to `max` records from `from` (fewer at the end).
  std::vector<Record> Chunk(std::uint64_t from, std::size_t max) {
    const std::string reply = Call("SCAN " + std::to_string(from) + " " + std::to_string(max), true);
    std::vector<Record> out;
    if (Starts(reply, "OK ")) {
      const auto space = reply.find(' ', 3);
      const std::uint64_t n = std::stoull(reply.substr(3, space - 3));
      auto take = [&](std::string_view v) { out.push_back(Record{from + out.size(), std::string(v)}); };
      if (n == 0 || (space != std::string::npos && detail::ParseFramed(std::string_view(reply).substr(space + 1), n, take)))
        return out;
    }
    Refused(reply, from);
  }

  void NextNode() {
    conn_.Close();
    on_leader_ = false;
    at_ = (at_ + 1) % nodes_.size();
    target_ = nodes_[at_];
  }

  // Whether an error reply is one to try again after: a redirect (followed
  // to the client address it names, else to the next node), `no-leader`,
  // `unknown-outcome`, or `busy` (the next node). `rest`: pause before the
  // next attempt; `redirected`: the last reply was a redirect.
  bool Retryable(const std::string& reply, bool& rest, bool& redirected) {
    if (Starts(reply, "ERR not-leader ")) {
      std::istringstream in(reply.substr(15));
      std::string id, client;
      in >> id >> client;
      conn_.Close();
      on_leader_ = false;
      if (client != "-" && client != target_) {
        target_ = client;
        rest = redirected;  // a second redirect in a row waits: the nodes may name a dead leader
        redirected = true;
      } else {
        NextNode();
      }
      return true;
    }
    redirected = false;
    if (reply == "ERR no-leader" || Starts(reply, "ERR unknown-outcome")) return true;
    if (Starts(reply, "ERR busy")) {
      NextNode();
      return true;
    }
    return false;
  }

  // Connects to target_ and says HELLO; "" or why it failed. Throws Error
  // for a node that does not speak this version.
  std::string Open(Clock::time_point until) {
    if (std::string why = conn_.Connect(target_, until); !why.empty()) return why;
    const auto hello = conn_.Ask("HELLO " + std::to_string(detail::kProtocolVersion), until);
    if (!hello) return "connection to " + target_ + " lost at HELLO";
    if (Starts(*hello, "OK ")) return {};
    conn_.Close();
    throw Error("logsync: node " + target_ + " does not speak protocol version " +
                std::to_string(detail::kProtocolVersion) +
                ": " + *hello);
  }

  // Under mu_. Sends `request` until a reply settles it (OK, or an ERR that
  // is no reason to try again), which it returns: lost connections,
  // timeouts, not-leader (to the client address named), no-leader, busy and
  // unknown-outcome are retried with backoff, the very same request (an
  // append keeps its sequence), until the deadline (plus `wait`, a wait the
  // request asks the node for). `to_leader`: first move to the leader.
  std::string Call(const std::string& request, bool to_leader, std::chrono::milliseconds wait = {}) {
    const auto until = Clock::now() + options_.deadline + wait;
    auto pause = options_.backoff;
    std::string why = "no attempt";
    bool rest = false, redirected = false;
    for (bool first = true;; first = false) {
      if (!first) ++retries_;
      if (rest) {
        std::this_thread::sleep_for(std::min<Clock::duration>(pause, std::max<Clock::duration>(until - Clock::now(), {})));
        pause = std::min(pause * 2, options_.max_backoff);
      }
      rest = true;
      if (Clock::now() >= until)
        throw Unavailable("logsync: the cluster did not answer '" + request.substr(0, request.find(' ')) + "' within " +
                          std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                             options_.deadline + wait).count()) + " ms: " + why);
      const auto attempt = std::min(until, Clock::now() + options_.request_timeout + wait);
      if (!conn_.IsOpen()) {
        if (why = Open(attempt); !why.empty()) {
          NextNode();
          continue;
        }
      }
      if (to_leader && !on_leader_) {
        const auto leader = conn_.Ask("LEADER", attempt);
        std::istringstream in(leader.value_or(""));
        std::string ok, id, client;
        if (!leader) {
          why = "connection to " + target_ + " lost";
          NextNode();
          continue;
        }
        if (in >> ok >> id >> client && ok == "OK" && client != "-" && client != target_) {
          conn_.Close();
          target_ = client;
          rest = false;
          continue;
        }
        on_leader_ = true;  // on the leader, or no better node known: read here
      }
      const auto reply = conn_.Ask(request, attempt);
      if (!reply) {
        why = "connection to " + target_ + " lost or timed out";
        NextNode();
        continue;
      }
      why = *reply;
      if (Retryable(*reply, rest, redirected)) continue;
      return *reply;
    }
  }

  // Under mu_. Sends the idempotent `requests` (PBATCH, sequences rising)
  // with up to max_in_flight in flight; their first offsets. A reply that
  // is not OK drops the connection (the replies after it belong to the
  // requests it ends) and the requests from it on are sent again, as Call
  // retries one; the deadline counts from the last reply that was OK.
  std::vector<std::uint64_t> Pipeline(const std::vector<std::string>& requests) {
    const std::size_t n = requests.size();
    const std::size_t window = std::clamp<std::size_t>(options_.max_in_flight, 1, detail::kMaxAppendsInFlight);
    std::vector<std::uint64_t> out(n);
    std::size_t acked = 0, sent = 0;
    auto until = Clock::now() + options_.deadline;
    auto pause = options_.backoff;
    std::string why = "no attempt";
    bool rest = false, redirected = false;
    while (acked < n) {
      if (rest) {
        std::this_thread::sleep_for(std::min<Clock::duration>(pause, std::max<Clock::duration>(until - Clock::now(), {})));
        pause = std::min(pause * 2, options_.max_backoff);
      }
      rest = true;
      if (Clock::now() >= until)
        throw Unavailable("logsync: the cluster did not answer 'PBATCH' within " +
                          std::to_string(options_.deadline.count()) + " ms: " + why);
      const auto attempt = std::min(until, Clock::now() + options_.request_timeout);
      if (!conn_.IsOpen()) {
        sent = acked;
        if (why = Open(attempt); !why.empty()) {
          ++retries_;
          NextNode();
          continue;
        }
      }
      bool lost = false;
      for (; sent < n && sent - acked < window; ++sent) {
        if (!conn_.Send(requests[sent], attempt)) {
          lost = true;
          break;
        }
        most_in_flight_ = std::max(most_in_flight_, sent + 1 - acked);
      }
      const auto reply = lost ? std::nullopt : conn_.Receive(attempt);
      if (!reply) {
        why = "connection to " + target_ + " lost or timed out";
        ++retries_;
        NextNode();
        continue;
      }
      why = *reply;
      if (Starts(*reply, "OK ")) {
        std::istringstream in(reply->substr(3));
        std::string duplicate;
        if (!(in >> out[acked])) throw Error("logsync: the node answered an append with: " + *reply);
        if (in >> duplicate && duplicate == "duplicate") ++duplicates_;
        ++acked;
        on_leader_ = true;
        rest = redirected = false;
        pause = options_.backoff;
        until = Clock::now() + options_.deadline;
        continue;
      }
      ++retries_;
      conn_.Close();
      sent = acked;
      if (Retryable(*reply, rest, redirected)) continue;
      if (Starts(*reply, "ERR out-of-order")) throw OutOfOrderSequence(*reply, 0);
      throw Error("logsync: the node refused an append: " + *reply);
    }
    return out;
  }

  const std::vector<std::string> nodes_;
  const ClientOptions options_;
  const std::uint64_t producer_;

  mutable std::mutex mu_;  // one call at a time; guards everything below
  std::uint64_t next_sequence_;
  detail::LineConnection conn_;
  std::string target_;      // the address conn_ is (to be) connected to
  std::size_t at_ = 0;      // nodes_[at_]: the node tried last from the list
  bool on_leader_ = false;  // conn_ is to the leader, as far as the client knows
  std::uint64_t retries_ = 0;
  std::uint64_t duplicates_ = 0;
  std::size_t most_in_flight_ = 0;
};

inline void ScanRange::Fetch() {
  std::lock_guard lock(client_->mu_);
  buf_ = client_->Chunk(next_, chunk_);
  at_ = 0;
  next_ += buf_.size();
}

}  // namespace logsync::raft
