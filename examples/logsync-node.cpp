// logsync-node: one node of a replicated log, serving a line protocol.
//
//   logsync-node --id 1 --address 127.0.0.1:9001 --client 127.0.0.1:7001
//                --peers 1=127.0.0.1:9001,2=127.0.0.1:9002,3=127.0.0.1:9003 --dir /var/lib/n1
//                [--admin-secret-file /etc/logsync/secret]
//
// --peers is the initial cluster, bootstrapped when --dir is fresh. A node
// joining an existing cluster runs without --peers (or with a list that
// does not name it) and is added with JOIN on the leader.
//
// Protocol version 2 (one request per line, one reply line each):
//   HELLO <version>             OK 2                (the node's version; it serves versions 1 and 2)
//   APPEND <text>               OK <offset>
//   BATCH <n> <prefix>          OK <first offset>   (n records "<prefix>-<i>", one raft entry)
//   PAPPEND <producer> <seq> <text>
//                               OK <offset> [duplicate]
//   PBATCH <producer> <seq> <n> <records>
//                               OK <first offset> [duplicate]
//                               (idempotent appends, version 2: <producer> a number other than 0,
//                               <seq> numbering its appends upwards, <records> n times
//                               "<length>:<bytes>" back to back; a retry of one of the producer's
//                               last 32 <seq> appends nothing and gets the original offset, with
//                               "duplicate"; see the README for how long retries are recognised)
//   READ <offset>               OK <text>
//   SCAN <from> <max>           OK <n> <records>    (version 2: up to max 1..10000 records from
//                               <from> of the local log, fewer at its end or past 1 MiB of
//                               records, "<length>:<bytes>" back to back; OK 0 at the end)
//   NEXT [<at least> <ms>]      OK <next offset>    (waits up to ms for the local log to reach it)
//   LEADER [<ms> [<not id>]]    OK <id> <client address> <raft address>
//                               (waits up to ms for a leader other than <not id>; the client
//                               address is "-" until the leader's announcement arrives)
//   AUTH <secret>               OK                  (this connection may then use JOIN, REMOVE, TRANSFER)
//   JOIN <id> <address>         OK                  (on the leader; admin)
//   REMOVE <id>                 OK                  (on the leader; admin; never the last voter)
//   TRANSFER                    OK                  (on the leader; admin)
//   STATS                       OK restored <n> <key> <value> ...
//                               (<n>: snapshots installed from the leader; then the local log's
//                               Log::Stats() as key-value pairs, in this order: appends records
//                               bytes syncs records_per_sync sync_p50_us sync_p99_us segments
//                               open_files mappings lowest next recovery_segments
//                               recovery_bytes_checked recovery_records recovery_bytes_cut
//                               recovery_segments_removed recovery_indexes_rebuilt
//                               recovery_actions; more keys may follow: read them by name)
//   FETCH                       OK <bytes>, then that many bytes of the local log's Reader()
//                               stream (for nodes restoring a snapshot: include/logsync/raft/fetch.hpp)
//   QUIT                        (closes the connection)
// Errors: "ERR <token> [<details>]", the token one of
//   not-leader <id> <client address> <raft address>
//                               this node does not lead; nothing was done (address as for LEADER)
//   no-leader                   no leader is known; nothing was done
//   out-of-range                READ of an offset the log does not hold
//   bad-request <why>           the request does not parse or is over a limit; nothing was done
//   unauthorized [<why>]        an admin command without AUTH, or admin commands disabled
//   busy <why>                  the node turned the connection away (then closes it)
//   refused <why>               a change the cluster refused (the last voter's REMOVE)
//   unknown-outcome <why>       an APPEND, BATCH, PAPPEND, PBATCH, JOIN, REMOVE or TRANSFER that
//                               failed after it was submitted: it may or may not take effect
//                               (a PAPPEND or PBATCH can be sent again as it was)
//   out-of-order <why>          a PAPPEND or PBATCH whose <seq> is below the producer's last and
//                               not among its last 32 (or one of those, for another number of
//                               records); nothing was done
//   unsupported-version <oldest> <newest>
//                               HELLO of a version this node does not serve
//   failed <why>                any other request that failed (a local I/O error)
//
// Pipelining: a client may send requests without waiting for the replies
// before them; replies leave in request order. Appends are submitted to raft
// as they are read, in arrival order, without waiting for the ones before
// them to commit; any other request waits until the replies before it were
// written. At most 64 requests of a connection are in flight (kMaxInFlight):
// then the node reads no more of it until replies were written. Once an
// append of a connection failed, the ones after it not yet submitted are not
// ("unknown-outcome append: not submitted"; nothing was done).
//
// Limits, so that no client can take the node down: at most --max-clients
// connections are served at once (one thread each, and one more to write
// the replies once it has sent an append; the next ones get
// "ERR busy too many clients" and are closed); a request line is at most
// --max-request-bytes (a longer one gets "ERR bad-request line too long" and
// the connection is closed); a BATCH or PBATCH expands to at most --max-batch-bytes;
// waits are at most 3600000 ms; a connection idle for --idle-timeout ms is
// closed. Admin commands need AUTH with the secret read from
// --admin-secret-file at start; without one they are disabled.

#include <logsync/raft/line_protocol.hpp>
#include <logsync/raft/pending_append.hpp>
#include <logsync/raft/replicated_log.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <functional>
#include <iostream>
#include <limits>
#include <memory>
#include <mutex>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

namespace {

using Node = logsync::ReplicatedLog<>;
using Clock = std::chrono::steady_clock;

/// The most requests one connection may have in flight (appends submitted
/// whose replies were not written yet); past it the node reads no more of
/// the connection until replies were written.
constexpr std::size_t kMaxInFlight = 64;
/// The longest wait NEXT and LEADER accept, in milliseconds.
constexpr std::uint64_t kMaxWaitMs = 3'600'000;
/// The most records one BATCH may append.
constexpr std::uint64_t kMaxBatchCount = 100'000;
using logsync::detail::kOldestProtocolVersion;
using logsync::detail::kProtocolVersion;
/// The most records one SCAN returns, and the bytes of records after
/// which it stops (past the first record).
constexpr std::uint64_t kMaxScanCount = 10'000;
constexpr std::size_t kMaxScanBytes = 1U << 20;

struct Options {
  logsync::NodeConfig node;
  std::string client;
  std::uint64_t max_clients = 64;                 ///< connections served at once
  std::uint64_t max_request_bytes = 1U << 20;     ///< longest request line
  std::uint64_t max_batch_bytes = 16U << 20;      ///< what one BATCH may expand to
  std::uint64_t idle_timeout_ms = 300'000;        ///< 0: connections never time out
  std::string admin_secret;                       ///< empty: admin commands disabled
};

constexpr const char* kUsage =
    "usage: logsync-node --id N --address HOST:PORT --client HOST:PORT --dir DIR "
    "[--peers ID=HOST:PORT,...] [--election-timeout MS (500)] [--pre-vote 0|1 (1)] [--snapshot-threshold N] "
    "[--snapshot-trailing N] [--snapshot-fetch 0|1 (1)] [--admin-secret-file PATH] [--max-clients N (64)] "
    "[--max-request-bytes N (1048576)] [--max-batch-bytes N (16777216)] "
    "[--idle-timeout MS (300000, 0: none)]\n"
    "       logsync-node --help\n";

[[noreturn]] void Usage(const std::string& why) {
  std::cerr << "logsync-node: " << why << "\n" << kUsage;
  std::exit(2);
}

std::uint64_t ParseNumber(const std::string& s, const char* what, std::uint64_t lo = 0,
                          std::uint64_t hi = std::numeric_limits<std::uint64_t>::max()) {
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size()) Usage(std::string(what) + " is not a number: " + s);
  if (v < lo || v > hi)
    Usage(std::string(what) + " must be in " + std::to_string(lo) + ".." + std::to_string(hi) + ": " + s);
  return v;
}

/// The secret in `path`, without its trailing newline; a usage error if the
/// file cannot be read, is empty, or holds more than one line.
std::string ReadSecret(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) Usage("cannot read --admin-secret-file " + path + ": " + std::strerror(errno));
  std::string secret;
  char chunk[4096];
  while (in.read(chunk, sizeof chunk) || in.gcount() > 0) {
    secret.append(chunk, static_cast<std::size_t>(in.gcount()));
    if (secret.size() > 4096) Usage("--admin-secret-file " + path + " is longer than 4096 bytes");
  }
  if (in.bad()) Usage("cannot read --admin-secret-file " + path);
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
  if (secret.empty()) Usage("--admin-secret-file " + path + " is empty");
  if (secret.find_first_of("\r\n") != std::string::npos)
    Usage("--admin-secret-file " + path + " holds more than one line");
  return secret;
}

Options ParseArgs(int argc, char** argv) {
  constexpr std::uint64_t kUnsigned = std::numeric_limits<unsigned>::max();
  Options o;
  o.node.fetch_snapshots = true;  // snapshots of metadata; the records are fetched with FETCH
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::cout << kUsage;
      std::exit(0);
    }
    if (i + 1 >= argc) Usage("missing value for " + flag);
    const std::string value = argv[++i];
    if (flag == "--id") o.node.id = ParseNumber(value, "--id", 1);
    else if (flag == "--address") o.node.address = value;
    else if (flag == "--client") o.client = value;
    else if (flag == "--dir") o.node.dir = value;
    else if (flag == "--snapshot-threshold")
      o.node.snapshot_threshold = static_cast<unsigned>(ParseNumber(value, "--snapshot-threshold", 1, kUnsigned));
    else if (flag == "--snapshot-trailing")
      o.node.snapshot_trailing = static_cast<unsigned>(ParseNumber(value, "--snapshot-trailing", 0, kUnsigned));
    else if (flag == "--election-timeout")
      o.node.election_timeout_ms = static_cast<unsigned>(ParseNumber(value, "--election-timeout", 1, kMaxWaitMs));
    else if (flag == "--pre-vote") o.node.pre_vote = ParseNumber(value, "--pre-vote", 0, 1) == 1;
    else if (flag == "--snapshot-fetch") o.node.fetch_snapshots = ParseNumber(value, "--snapshot-fetch", 0, 1) == 1;
    else if (flag == "--max-clients") o.max_clients = ParseNumber(value, "--max-clients", 1, 1U << 20);
    else if (flag == "--max-request-bytes")
      o.max_request_bytes = ParseNumber(value, "--max-request-bytes", 64, std::uint64_t{1} << 30);
    else if (flag == "--max-batch-bytes")
      o.max_batch_bytes = ParseNumber(value, "--max-batch-bytes", 64, std::uint64_t{1} << 32);
    else if (flag == "--idle-timeout") o.idle_timeout_ms = ParseNumber(value, "--idle-timeout", 0, kMaxWaitMs * 24);
    else if (flag == "--admin-secret-file") o.admin_secret = ReadSecret(value);
    else if (flag == "--peers") {
      try {
        o.node.bootstrap = logsync::ParsePeers(value);
      } catch (const std::exception& e) {
        Usage(e.what());
      }
    } else Usage("unknown flag " + flag);
  }
  if (o.node.id == 0 || o.node.address.empty() || o.client.empty() || o.node.dir.empty())
    Usage("--id, --address, --client and --dir are required");
  o.node.client_address = o.client;  // announced when this node leads
  return o;
}

sockaddr_in ParseHostPort(const std::string& hp) {
  const auto colon = hp.rfind(':');
  if (colon == std::string::npos) Usage("address is not host:port: " + hp);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(ParseNumber(hp.substr(colon + 1), "port", 0, 65535)));
  if (inet_pton(AF_INET, hp.substr(0, colon).c_str(), &a.sin_addr) != 1) Usage("not an IPv4 address: " + hp);
  return a;
}

/// Compares a secret in time that depends on the secret's length only.
bool SameSecret(std::string_view given, std::string_view secret) {
  volatile unsigned char diff = given.size() == secret.size() ? 0 : 1;
  for (std::size_t i = 0; i < secret.size(); ++i) {
    const unsigned char g = i < given.size() ? static_cast<unsigned char>(given[i]) : 0;
    diff = diff | static_cast<unsigned char>(g ^ static_cast<unsigned char>(secret[i]));
  }
  return diff == 0;
}

/// Bytes a BATCH of n records "<prefix>-<i>" makes the node hold: the
/// values and a Record each. No overflow for n <= kMaxBatchCount.
std::uint64_t BatchBytes(std::uint64_t n, std::uint64_t prefix) {
  std::uint64_t digits = 0;
  for (std::uint64_t lo = 0, hi = 10, d = 1; lo < n; lo = hi, hi *= 10, ++d) digits += (std::min(n, hi) - lo) * d;
  return n * (prefix + 1 + sizeof(logsync::Record)) + digits;
}

/// The most requests one connection has had in flight at once (STATS).
std::atomic<std::uint64_t> g_in_flight_max{0};

// The STATS reply: restored <n> first, then the local log's counters (see
// the protocol at the top).
std::string StatsLine(const Node& node) {
  const std::uint64_t restored = node.SnapshotsRestored();
  const logsync::LogStats s = node.Stats();
  const auto us = [](std::chrono::nanoseconds d) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f", static_cast<double>(d.count()) / 1000.0);
    return std::string(buf);
  };
  char per_sync[32];
  std::snprintf(per_sync, sizeof per_sync, "%.2f", s.records_per_sync);
  std::string out = "OK restored " + std::to_string(restored);
  const auto add = [&](const char* key, const std::string& value) { out += std::string(" ") + key + " " + value; };
  const auto num = [&](const char* key, std::uint64_t value) { add(key, std::to_string(value)); };
  num("appends", s.appends);
  num("records", s.records);
  num("bytes", s.bytes);
  num("syncs", s.syncs);
  add("records_per_sync", per_sync);
  add("sync_p50_us", us(s.sync_p50));
  add("sync_p99_us", us(s.sync_p99));
  num("segments", s.segments);
  num("open_files", s.open_files);
  num("mappings", s.mappings);
  num("lowest", s.lowest_offset);
  num("next", s.next_offset);
  num("recovery_segments", s.recovery.segments);
  num("recovery_bytes_checked", s.recovery.bytes_checked);
  num("recovery_records", s.recovery.records_recovered);
  num("recovery_bytes_cut", s.recovery.bytes_cut);
  num("recovery_segments_removed", s.recovery.segments_removed);
  num("recovery_indexes_rebuilt", s.recovery.indexes_rebuilt);
  num("recovery_actions", s.recovery.actions.size() + s.recovery.more_actions);
  num("in_flight_max", g_in_flight_max.load());
  return out;
}

/// "<client address> <raft address>" of a node, "-" for a client address
/// it has not announced (yet).
std::string Addresses(const logsync::Peer& p) {
  return (p.client_address.empty() ? std::string("-") : p.client_address) + " " + p.address;
}

/// One client connection's state.
struct Session {
  bool admin = false;  ///< authenticated with the admin secret
  /// The appends in flight on the connection, applied in order (a new
  /// chain whenever none is in flight).
  std::shared_ptr<logsync::AppendChain> chain;
};

/// A reply to come: makes the reply line (waiting for an append's outcome).
using Reply = std::function<std::string()>;

// The error reply to `cmd` for the exception being handled (see the
// protocol at the top).
std::string Refusal(const std::string& cmd) {
  try {
    throw;
  } catch (const logsync::NotLeader& e) {
    if (e.leader().id == 0) return "ERR no-leader";
    return "ERR not-leader " + std::to_string(e.leader().id) + " " + Addresses(e.leader());
  } catch (const logsync::OffsetOutOfRange&) {
    return "ERR out-of-range";
  } catch (const logsync::OutOfOrderSequence& e) {
    return "ERR out-of-order " + std::string(e.what());
  } catch (const std::exception& e) {
    std::string what = e.what();
    for (char& ch : what)
      if (ch == '\n' || ch == '\r') ch = ' ';
    // A change the node refused before making it; otherwise a change
    // (append, batch, membership, transfer) that failed may still take
    // effect: the client cannot know, and must not assume either.
    const auto* repl = dynamic_cast<const logsync::ReplicationError*>(&e);
    if (repl != nullptr && repl->code() == RAFT_BADROLE) return "ERR refused " + what;
    if (cmd == "APPEND" || cmd == "BATCH" || cmd == "PAPPEND" || cmd == "PBATCH" || cmd == "JOIN" ||
        cmd == "REMOVE" || cmd == "TRANSFER")
      return "ERR unknown-outcome " + what;
    return "ERR failed " + what;
  }
}

// The reply to `line`. An append that went to raft is not waited for when
// `later` is given: its reply is left there to make, and "" returned.
std::string Handle(Node& node, const Options& opts, Session& session, const std::string& line,
                   Reply* later = nullptr) {
  std::istringstream in(line);
  std::string cmd;
  in >> cmd;
  auto rest = [&] {
    std::string r;
    std::getline(in, r);
    if (!r.empty() && r[0] == ' ') r.erase(0, 1);
    return r;
  };
  auto number = [&](std::uint64_t& v) {
    std::string s;
    if (!(in >> s)) return false;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    return ec == std::errc{} && p == s.data() + s.size();
  };
  // True when nothing but blanks is left.
  auto done = [&] { return !(in >> std::ws).good() || in.peek() == std::char_traits<char>::eof(); };
  auto wait = [&](std::uint64_t& ms) { return number(ms) && ms <= kMaxWaitMs; };
  auto admin = [&]() -> const char* {
    if (opts.admin_secret.empty()) return "ERR unauthorized admin commands are disabled";
    if (!session.admin) return "ERR unauthorized";
    return nullptr;
  };
  // An append submitted: its reply, or the wait for it left in `later`.
  auto submitted = [&](logsync::PendingAppend pending) -> std::string {
    Reply reply = [p = std::make_shared<logsync::PendingAppend>(std::move(pending)), cmd]() -> std::string {
      try {
        const auto r = p->Get();
        return "OK " + std::to_string(r.first) + (r.duplicate ? " duplicate" : "");
      } catch (...) {
        return Refusal(cmd);
      }
    };
    if (later == nullptr) return reply();
    *later = std::move(reply);
    return {};
  };
  try {
    if (cmd == "APPEND") {
      const logsync::Record r{.value = rest()};
      return submitted(node.SubmitBatch(std::span(&r, 1), session.chain));
    }
    if (cmd == "BATCH") {
      std::uint64_t n = 0;
      if (!number(n) || n == 0 || n > kMaxBatchCount) return "ERR bad-request BATCH <n 1..100000> <prefix>";
      const std::string prefix = rest();
      if (const std::uint64_t bytes = BatchBytes(n, prefix.size()); bytes > opts.max_batch_bytes)
        return "ERR bad-request BATCH expands to " + std::to_string(bytes) + " bytes, over the limit of " +
               std::to_string(opts.max_batch_bytes);
      std::vector<logsync::Record> records;
      records.reserve(n);
      for (std::uint64_t i = 0; i < n; ++i) records.push_back({.value = prefix + "-" + std::to_string(i)});
      return submitted(node.SubmitBatch(records, session.chain));
    }
    if (cmd == "HELLO") {
      std::uint64_t v = 0;
      if (!number(v) || !done()) return "ERR bad-request HELLO <version>";
      if (v < kOldestProtocolVersion || v > kProtocolVersion)
        return "ERR unsupported-version " + std::to_string(kOldestProtocolVersion) + " " +
               std::to_string(kProtocolVersion);
      return "OK " + std::to_string(kProtocolVersion);
    }
    if (cmd == "PAPPEND" || cmd == "PBATCH") {
      std::uint64_t producer = 0, seq = 0, n = 1;
      const char* usage = cmd == "PAPPEND" ? "ERR bad-request PAPPEND <producer 1..> <seq> <text>"
                                           : "ERR bad-request PBATCH <producer 1..> <seq> <n 1..100000> <records>";
      if (!number(producer) || producer == 0 || !number(seq)) return usage;
      if (cmd == "PBATCH" && (!number(n) || n == 0 || n > kMaxBatchCount)) return usage;
      std::vector<logsync::Record> records;
      const std::string text = rest();
      if (cmd == "PAPPEND") {
        records.push_back({.value = text});
      } else {
        if (const std::uint64_t bytes = n * sizeof(logsync::Record) + text.size(); bytes > opts.max_batch_bytes)
          return "ERR bad-request PBATCH expands to " + std::to_string(bytes) + " bytes, over the limit of " +
                 std::to_string(opts.max_batch_bytes);
        records.reserve(n);
        auto take = [&](std::string_view v) { records.push_back({.value = std::string(v)}); };
        if (!logsync::detail::ParseFramed(text, n, take)) return usage;
      }
      return submitted(node.SubmitIdempotent(producer, seq, records, session.chain));
    }
    if (cmd == "SCAN") {
      std::uint64_t from = 0, max = 0;
      if (!number(from) || !number(max) || max == 0 || max > kMaxScanCount || !done())
        return "ERR bad-request SCAN <from> <max 1..10000>";
      const std::uint64_t next = node.NextOffset();
      const std::uint64_t end = next > from ? from + std::min(max, next - from) : from;
      std::string records;
      std::uint64_t n = 0;
      for (std::uint64_t o = from; o < end && (n == 0 || records.size() < kMaxScanBytes); ++o, ++n)
        logsync::detail::AppendFramed(records, node.Read(o).value);
      return "OK " + std::to_string(n) + (n ? " " : "") + records;
    }
    if (cmd == "READ") {
      std::uint64_t off = 0;
      if (!number(off) || !done()) return "ERR bad-request READ <offset>";
      return "OK " + node.Read(off).value;
    }
    if (cmd == "NEXT") {
      std::uint64_t want = 0, ms = 0;
      if (!done()) {
        if (!number(want) || !wait(ms) || !done()) return "ERR bad-request NEXT [<at least> <ms 0..3600000>]";
        node.WaitForNext(want, std::chrono::milliseconds(ms));
      }
      return "OK " + std::to_string(node.NextOffset());
    }
    if (cmd == "LEADER") {
      std::uint64_t ms = 0, not_id = 0;
      logsync::Peer p;
      if (!done()) {
        if (!wait(ms) || (!done() && !number(not_id)) || !done())
          return "ERR bad-request LEADER [<ms 0..3600000> [<not id>]]";
        p = node.WaitForLeader(std::chrono::milliseconds(ms), not_id);
      } else {
        p = node.Leader();
      }
      if (p.id == 0) return "ERR no-leader";
      return "OK " + std::to_string(p.id) + " " + Addresses(p);
    }
    if (cmd == "AUTH") {
      if (opts.admin_secret.empty()) return "ERR unauthorized admin commands are disabled";
      session.admin = SameSecret(rest(), opts.admin_secret);
      return session.admin ? "OK" : "ERR unauthorized";
    }
    if (cmd == "JOIN") {
      if (const char* refused = admin()) return refused;
      std::uint64_t id = 0;
      std::string address;
      if (!number(id) || id == 0 || !(in >> address) || !done()) return "ERR bad-request JOIN <id> <address>";
      node.Join(id, address);
      return "OK";
    }
    if (cmd == "REMOVE") {
      if (const char* refused = admin()) return refused;
      std::uint64_t id = 0;
      if (!number(id) || id == 0 || !done()) return "ERR bad-request REMOVE <id>";
      node.Leave(id);
      return "OK";
    }
    if (cmd == "STATS") return StatsLine(node);
    if (cmd == "TRANSFER") {
      if (const char* refused = admin()) return refused;
      node.TransferLeadership();
      return "OK";
    }
    return "ERR bad-request unknown command '" + cmd.substr(0, 64) + "'";
  } catch (...) {
    return Refusal(cmd);
  }
}

bool WriteAll(int fd, std::string_view s) noexcept {
  while (!s.empty()) {
    const ssize_t w = ::send(fd, s.data(), s.size(), MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    s.remove_prefix(static_cast<std::size_t>(w));
  }
  return true;
}

/// Sends a last line and closes, reading (and dropping) what the client
/// still sends for up to a second, so that the line is not lost to a reset.
void CloseWith(int fd, const std::string& line) noexcept {
  if (WriteAll(fd, line)) WriteAll(fd, "\n");
  ::shutdown(fd, SHUT_WR);
  const auto until = Clock::now() + std::chrono::seconds(1);
  char chunk[65536];
  for (auto now = Clock::now(); now < until; now = Clock::now()) {
    pollfd p{fd, POLLIN, 0};
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - now).count();
    if (::poll(&p, 1, static_cast<int>(left) + 1) <= 0) break;
    const ssize_t n = ::recv(fd, chunk, sizeof chunk, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) break;
  }
  ::close(fd);
}

/// Turns a connection away from the accept thread with `line` (which ends
/// in a newline), without blocking or allocating.
void Reject(int fd, std::string_view line) noexcept {
  (void)::send(fd, line.data(), line.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  char chunk[4096];
  for (int i = 0; i < 16 && ::recv(fd, chunk, sizeof chunk, MSG_DONTWAIT) > 0; ++i) {
  }
  ::close(fd);
}

/// Closes a descriptor when it goes out of scope (unless taken).
struct FdGuard {
  int fd;
  ~FdGuard() {
    if (fd >= 0) ::close(fd);
  }
  int Take() { return std::exchange(fd, -1); }
};

/// The replies of one connection's requests in flight, written in request
/// order by a thread of the connection's own (started at its first
/// append) while the connection's thread reads and submits the requests
/// after them. At most kMaxInFlight at once: then the reading waits.
class Replies {
 public:
  explicit Replies(int fd) : fd_(fd) {}
  Replies(const Replies&) = delete;
  Replies& operator=(const Replies&) = delete;
  /// Writes what is queued (once the outcomes are known), then stops.
  ~Replies() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    ready_.notify_all();
    if (writer_.joinable()) writer_.join();
  }

  /// Queues a reply, waiting while kMaxInFlight are; false once a reply
  /// could not be written (the connection is gone).
  bool Push(Reply reply) {
    std::unique_lock lock(mu_);
    if (!writer_.joinable()) writer_ = std::thread([this] { Write(); });
    space_.wait(lock, [&] { return broken_ || queue_.size() < kMaxInFlight; });
    if (broken_) return false;
    queue_.push_back(std::move(reply));
    for (std::uint64_t n = queue_.size(), seen = g_in_flight_max.load(); n > seen;)
      if (g_in_flight_max.compare_exchange_weak(seen, n)) break;
    ready_.notify_one();
    return true;
  }

  /// Waits until every queued reply was written; false if one could not be.
  bool Drain() {
    std::unique_lock lock(mu_);
    space_.wait(lock, [&] { return broken_ || queue_.empty(); });
    return !broken_;
  }

  /// Whether no reply is queued (every one before was written).
  bool Idle() {
    std::lock_guard lock(mu_);
    return queue_.empty();
  }

 private:
  void Write() {
    std::unique_lock lock(mu_);
    for (;;) {
      ready_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;
      Reply reply = std::move(queue_.front());  // its slot stays taken until it is written
      const bool skip = broken_;
      lock.unlock();
      bool ok = skip;
      if (!skip) {
        try {
          ok = WriteAll(fd_, reply() + "\n");
        } catch (...) {  // no memory for the line
        }
      }
      lock.lock();
      queue_.pop_front();
      if (!ok && !broken_) {
        broken_ = true;
        ::shutdown(fd_, SHUT_RDWR);  // the reading thread stops too
      }
      space_.notify_all();
    }
  }

  const int fd_;
  std::mutex mu_;
  std::condition_variable ready_, space_;
  std::deque<Reply> queue_;
  bool broken_ = false, stop_ = false;
  std::thread writer_;
};

bool IsAppend(std::string_view line) {
  const std::string_view cmd = line.substr(0, line.find(' '));
  return cmd == "APPEND" || cmd == "BATCH" || cmd == "PAPPEND" || cmd == "PBATCH";
}

void Serve(Node& node, const Options& opts, int fd) {
  FdGuard guard{fd};
  if (opts.idle_timeout_ms > 0) {
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(opts.idle_timeout_ms / 1000);
    tv.tv_usec = static_cast<suseconds_t>(opts.idle_timeout_ms % 1000 * 1000);
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }
  // Replies go out as they are ready: a client that pipelines requests
  // would otherwise wait out the delayed-ACK timer for every burst.
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  const std::string too_long = "ERR bad-request line too long (over " + std::to_string(opts.max_request_bytes) + " bytes)";
  Session session;
  Replies replies(fd);  // destroyed (its thread joined) before the descriptor is closed
  auto close_with = [&](const std::string& line) {
    if (replies.Drain()) CloseWith(guard.Take(), line);
  };
  std::string buf;      // input not yet handled: part of one line, never over the limit
  std::size_t scanned = 0;  // bytes of buf known to hold no newline
  std::vector<char> chunk(64 * 1024);
  for (;;) {
    const ssize_t n = ::read(fd, chunk.data(), chunk.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // closed, failed or idle too long
    buf.append(chunk.data(), static_cast<std::size_t>(n));
    std::size_t start = 0, nl;
    while ((nl = buf.find('\n', scanned)) != std::string::npos) {
      if (nl - start > opts.max_request_bytes) return close_with(too_long);
      std::string line = buf.substr(start, nl - start);
      start = scanned = nl + 1;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (IsAppend(line)) {  // submitted now, its reply queued behind the ones in flight
        if (!session.chain || replies.Idle()) session.chain = std::make_shared<logsync::AppendChain>();
        Reply later;
        std::string now = Handle(node, opts, session, line, &later);
        if (!later) later = [now = std::move(now)] { return now; };
        if (!replies.Push(std::move(later))) return;
        continue;
      }
      if (!replies.Drain()) return;  // any other request waits for the replies before it
      if (line == "QUIT") return;
      if (line == "FETCH") {  // a reply of any length, streamed in chunks
        if (!logsync::detail::ServeFetch(fd, node.LocalReader())) return;
        continue;
      }
      if (!WriteAll(fd, Handle(node, opts, session, line) + "\n")) return;
    }
    buf.erase(0, start);
    scanned = buf.size();
    if (buf.size() > opts.max_request_bytes) return close_with(too_long);
  }
}

/// Says something on stderr at most once a second, counting what it held back.
class Complaint {
 public:
  void Say(const std::string& what) {
    const auto now = Clock::now();
    if (said_ && now - last_ < std::chrono::seconds(1)) {
      ++held_;
      return;
    }
    std::cerr << "logsync-node: " << what;
    if (held_) std::cerr << " (and " << held_ << " more since the last report)";
    std::cerr << std::endl;
    said_ = true;
    last_ = now;
    held_ = 0;
  }

 private:
  bool said_ = false;
  Clock::time_point last_{};
  std::uint64_t held_ = 0;
};

/// Accepts clients for good: running out of descriptors, memory or threads
/// turns clients away (with an ERR line when there is a way to send one)
/// but never stops the loop.
class Acceptor {
 public:
  Acceptor(Node& node, const Options& opts, int listener) : node_(node), opts_(opts), listener_(listener) {}

  [[noreturn]] void Run() {
    for (;;) {
      try {
        AcceptOne();
      } catch (...) {  // no memory even to complain: wait for some to be freed
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }
  }

 private:
  void AcceptOne() {
    if (reserve_ < 0) reserve_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    const int fd = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) return Failed(errno);
    if (active_.load() >= opts_.max_clients) {
      Reject(fd, "ERR busy too many clients\n");
      complaint_.Say("turning clients away: " + std::to_string(opts_.max_clients) +
                     " connections open (--max-clients)");
      return;
    }
    active_.fetch_add(1);  // only this thread adds: the check above holds
    try {
      std::thread([this, fd] {
        try {
          Serve(node_, opts_, fd);
        } catch (...) {  // out of memory: the connection is closed, the node goes on
        }
        active_.fetch_sub(1);
      }).detach();
    } catch (const std::exception& e) {
      active_.fetch_sub(1);
      Reject(fd, "ERR busy cannot start a connection thread\n");
      complaint_.Say(std::string("cannot start a connection thread: ") + e.what());
    }
  }

  void Failed(int err) {
    if (err == EINTR || err == ECONNABORTED || err == EAGAIN || err == EPROTO) return;
    if ((err == EMFILE || err == ENFILE) && reserve_ >= 0) {
      // Free the reserve to take the waiting client and tell it why.
      ::close(reserve_);
      const int extra = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (extra >= 0) Reject(extra, "ERR busy out of file descriptors\n");
      reserve_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      complaint_.Say(std::string("accept: ") + std::strerror(err) + ", turning clients away (" +
                     std::to_string(active_.load()) + " connections open)");
      return;
    }
    complaint_.Say(std::string("accept: ") + std::strerror(err) + ", retrying");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // until descriptors or memory are freed
  }

  Node& node_;
  const Options& opts_;
  const int listener_;
  std::atomic<std::uint64_t> active_{0};  ///< connection threads running
  Complaint complaint_;
  /// A descriptor held in reserve for when accept runs out of them.
  int reserve_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
};

}  // namespace

int main(int argc, char** argv) {
  Options opts = ParseArgs(argc, argv);
  // SIGINT and SIGTERM are taken by the main thread (sigwait) to shut down.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  const sockaddr_in client = ParseHostPort(opts.client);
  ParseHostPort(opts.node.address);
  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  ::setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(listener, reinterpret_cast<const sockaddr*>(&client), sizeof client) != 0 || ::listen(listener, 128) != 0) {
    std::cerr << "logsync-node: cannot listen on " << opts.client << ": " << std::strerror(errno) << "\n";
    return 1;
  }

  std::unique_ptr<Node> node;
  std::unique_ptr<Acceptor> acceptor;
  try {
    node = std::make_unique<Node>(opts.node);
    acceptor = std::make_unique<Acceptor>(*node, opts, listener);
    std::thread([&acceptor] { acceptor->Run(); }).detach();
  } catch (const std::exception& e) {
    std::cerr << "logsync-node: " << e.what() << "\n";
    return 1;
  }
  std::cout << "ready " << opts.node.id << " " << opts.node.address << " client " << opts.client << std::endl;

  int sig = 0;
  sigwait(&stop, &sig);
  node->Close();
  std::cout << "stopped " << opts.node.id << std::endl;
  std::_Exit(0);  // client threads may still be blocked on their sockets
}
