#define BOOST_TEST_MODULE snapshot_fetch_test
#include <boost/test/unit_test.hpp>

// Metadata-only snapshots of the replicated log's state machine (LGSNAP04)
// and the fetch that brings their records: the state machine on its own
// (no engine), its snapshot and restore callbacks, and a client port on
// 127.0.0.1 that answers FETCH as a node does, or cuts the stream, or
// corrupts a frame of it.

#include <logsync/raft/fetch.hpp>
#include <logsync/raft/state_machine.hpp>

#include "support/config.hpp"
#include "support/machine.hpp"
#include "support/node.hpp"
#include "support/temp_dir.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <thread>
#include <vector>

using namespace logsync::detail;  // the state machine, its snapshots and the fetch
using namespace logsync::test;  // TempDir, the machine's snapshot and restore, BindLoopback
using logsync::Config;

namespace {

// Small segments: the stream holds many stores.
Config Small() { return SmallSegments(16 << 10); }

std::string Value(std::uint64_t i) { return "record-" + std::to_string(i) + std::string(40 + i % 61, 'v'); }

// Applies `n` record entries from raft index `first`, one record each
// (every seventh a batch of three).
void Fill(LogMachine<>& m, std::uint64_t first, std::uint64_t n) {
  for (std::uint64_t index = first; index < first + n; ++index) {
    std::vector<std::string> values{Value(index)};
    if (index % 7 == 0) values = {Value(index), Value(index) + "-b", Value(index) + "-c"};
    std::vector<std::span<const std::byte>> parts;
    for (const auto& v : values) parts.push_back(std::as_bytes(std::span(v)));
    m.Apply(index, parts);
  }
}

// The log's Reader() stream, whole.
std::string Stream(const LogMachine<>& m) {
  return m.WithLog([](const auto& log) {
    auto reader = log.Reader();
    std::string out;
    std::vector<std::byte> chunk(1 << 16);
    while (const std::size_t n = reader.Read(chunk)) out.append(reinterpret_cast<const char*>(chunk.data()), n);
    return out;
  });
}

raft_buffer Copy(std::span<const std::byte> bytes) {
  raft_buffer b{raft_malloc(bytes.size()), bytes.size()};
  std::memcpy(b.base, bytes.data(), bytes.size());
  return b;
}

LogMachine<>::Fetcher Fetch() {
  return [](const std::string& address, const std::filesystem::path& dir) {
    return FetchLog(address, dir, Small(), std::chrono::seconds(5));
  };
}

// A client port on 127.0.0.1 answering each connection's request line
// with `reply(fd)`.
class FetchServer {
 public:
  explicit FetchServer(std::function<void(int)> reply) : reply_(std::move(reply)) {
    listener_ = BindLoopback(port_, 8);
    thread_ = std::thread([this] {
      for (;;) {
        const int fd = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) return;
        std::string line;
        char ch = 0;
        while (::recv(fd, &ch, 1, 0) == 1 && ch != '\n') line += ch;
        if (line == "FETCH") {
          ++served_;
          reply_(fd);
        }
        ::close(fd);
      }
    });
  }
  FetchServer(const FetchServer&) = delete;
  FetchServer& operator=(const FetchServer&) = delete;
  ~FetchServer() {
    ::shutdown(listener_, SHUT_RDWR);
    thread_.join();
    ::close(listener_);
  }
  std::string Address() const { return "127.0.0.1:" + std::to_string(port_); }
  int Served() const { return served_.load(); }

 private:
  std::function<void(int)> reply_;
  int listener_ = -1;
  int port_ = 0;
  std::atomic<int> served_{0};
  std::thread thread_;
};

void SendAll(int fd, const std::string& s) {
  for (std::size_t at = 0; at < s.size();) {
    const ssize_t w = ::send(fd, s.data() + at, s.size() - at, MSG_NOSIGNAL);
    if (w <= 0) return;
    at += static_cast<std::size_t>(w);
  }
}

// Serves `m`'s log as a node does.
std::function<void(int)> Serving(const LogMachine<>& m) {
  return [&m](int fd) { ServeFetch(fd, m.WithLog([](const auto& log) { return log.Reader(); })); };
}

// No leftovers of a staged restore beside `dir`.
bool NothingStagedBeside(const std::filesystem::path& dir) {
  for (const auto& e : std::filesystem::directory_iterator(dir.parent_path())) {
    const std::string name = e.path().filename().string();
    if (name != dir.filename().string() && name.find(dir.filename().string()) != std::string::npos) return false;
  }
  return true;
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_metadata_snapshot_is_small_and_names_where_its_records_are) {
  TempDir a;
  LogMachine<> m(a.path(), Small());
  m.FetchFrom(1, "127.0.0.1:7001", Fetch());
  Fill(m, 1, 3000);
  const std::uint64_t next = m.NextOffset();
  BOOST_TEST(next > 3000U);
  const raft_buffer snap = Snapshot(m);
  const std::span<const std::byte> bytes(static_cast<const std::byte*>(snap.base), snap.len);
  BOOST_TEST(std::memcmp(snap.base, "LGSNAP04", 8) == 0);
  BOOST_TEST(snap.len < 256U);  // the log is a few hundred KiB
  SnapshotHead head;
  ProducerTable producers(ProducerLimits{});
  std::string why;
  BOOST_REQUIRE(ParseSnapshot(bytes, head, producers, why));
  BOOST_TEST(head.version == 4);
  BOOST_TEST(head.index == 3000U);
  BOOST_TEST(head.next == next);
  BOOST_TEST(head.lowest == 0U);
  BOOST_TEST(head.source_id == 1U);
  BOOST_TEST(head.source_address == "127.0.0.1:7001");
  BOOST_TEST(head.records.empty());
  // Cut anywhere, it does not parse.
  for (std::size_t len = 0; len < snap.len; ++len) {
    SnapshotHead h;
    ProducerTable p(ProducerLimits{});
    BOOST_TEST(!ParseSnapshot(bytes.first(len), h, p, why));
  }
  raft_free(snap.base);
}

BOOST_AUTO_TEST_CASE(a_restore_fetches_the_records_and_ends_byte_identical) {
  TempDir a, b, c;
  LogMachine<> source(a.path(), Small());
  FetchServer server(Serving(source));
  source.FetchFrom(1, server.Address(), Fetch());
  Fill(source, 1, 2000);
  const raft_buffer snap = Snapshot(source);
  const std::span<const std::byte> bytes(static_cast<const std::byte*>(snap.base), snap.len);
  const raft_buffer again = Copy(bytes);

  LogMachine<> empty(b.path(), Small());
  empty.FetchFrom(2, "127.0.0.1:7002", Fetch());
  BOOST_REQUIRE(Restore(empty, snap) == 0);
  BOOST_TEST(server.Served() == 1);
  BOOST_TEST(empty.SnapshotsRestored() == 1U);
  BOOST_TEST(Stream(empty) == Stream(source));
  BOOST_TEST(empty.LastRaftIndex() == 2000U);
  BOOST_TEST(NothingStagedBeside(b.path()));
  // The entries after the snapshot apply at the same offsets.
  Fill(source, 2001, 10);
  Fill(empty, 2001, 10);
  BOOST_TEST(Stream(empty) == Stream(source));

  // A node that holds the records already fetches nothing.
  LogMachine<> holding(c.path(), Small());
  holding.FetchFrom(3, "", Fetch());
  Fill(holding, 1, 2000);
  BOOST_REQUIRE(Restore(holding, again) == 0);
  BOOST_TEST(server.Served() == 1);
  BOOST_TEST(holding.SnapshotsRestored() == 0U);
}

BOOST_AUTO_TEST_CASE(a_cut_stream_or_a_corrupted_frame_leaves_the_log_as_it_was) {
  TempDir a, b;
  LogMachine<> source(a.path(), Small());
  Fill(source, 1, 1500);
  // The stream as announced, cut at `cut` bytes; or whole, with one byte
  // flipped at `flip`.
  std::string stream;
  std::atomic<std::size_t> cut = 0, flip = 0;
  FetchServer server([&](int fd) {
    std::string body = stream.substr(0, cut);
    if (const std::size_t at = flip; at < body.size()) body[at] = static_cast<char>(body[at] ^ 0x20);
    SendAll(fd, "OK " + std::to_string(stream.size()) + "\n" + body);
  });
  source.FetchFrom(1, server.Address(), Fetch());
  const raft_buffer snap = Snapshot(source);
  const std::span<const std::byte> bytes(static_cast<const std::byte*>(snap.base), snap.len);
  // The records of the snapshot end `held` bytes into the stream; the
  // serving node has applied more since.
  const std::string at_snapshot = Stream(source);
  const std::size_t held = at_snapshot.size();
  Fill(source, 1501, 100);
  stream = Stream(source);
  BOOST_REQUIRE(stream.size() > (64U << 10));
  BOOST_REQUIRE(stream.substr(0, held) == at_snapshot);

  LogMachine<> behind(b.path(), Small());
  behind.FetchFrom(2, "", Fetch());
  Fill(behind, 1, 10);
  const auto before = Values(behind);
  const std::string before_stream = Stream(behind);
  // Cut mid-frame, cut on a frame boundary (the store header's end; the
  // end of the snapshot's records, a log that would do but is not the
  // whole stream announced), a flipped payload byte, a flipped frame
  // header byte.
  for (const auto& [c, f] : {std::pair{stream.size() / 2, stream.size()}, std::pair{std::size_t{16}, stream.size()},
                            std::pair{held, stream.size()}, std::pair{stream.size(), stream.size() / 2 + 17},
                            std::pair{stream.size(), std::size_t{18}}}) {
    cut = c;
    flip = f;
    BOOST_TEST(Restore(behind, Copy(bytes)) != 0);
    BOOST_TEST((Values(behind) == before));
    BOOST_TEST(Stream(behind) == before_stream);
    BOOST_TEST(behind.SnapshotsRestored() == 0U);
    BOOST_TEST(NothingStagedBeside(b.path()));
    BOOST_TEST(behind.LastError().find("cannot fetch") != std::string::npos, behind.LastError());
  }
  // It still applies, and a whole stream then restores.
  Fill(behind, 11, 1);
  cut = stream.size();
  flip = stream.size();
  BOOST_REQUIRE(Restore(behind, Copy(bytes)) == 0);
  BOOST_TEST(Stream(behind) == stream);
  raft_free(snap.base);
}

BOOST_AUTO_TEST_CASE(a_restore_tries_every_node_it_knows_and_fails_when_none_has_the_records) {
  TempDir a, b, s, d;
  LogMachine<> source(a.path(), Small());
  Fill(source, 1, 500);
  LogMachine<> short_log(s.path(), Small());  // another follower, behind the snapshot
  Fill(short_log, 1, 100);
  FetchServer good(Serving(source)), behind(Serving(short_log));
  source.FetchFrom(1, "127.0.0.1:" + std::to_string(FreePort()), Fetch());  // nobody listens
  const raft_buffer snap = Snapshot(source);
  SnapshotHead head;
  ProducerTable producers(ProducerLimits{});
  std::string why;
  BOOST_REQUIRE(ParseSnapshot(std::span(static_cast<const std::byte*>(snap.base), snap.len), head, producers, why));
  raft_free(snap.base);

  // The source is down, node 2 is behind: none has the records.
  head.clients = {{2, behind.Address()}, {4, d.path().string() /* not host:port */}};
  const auto none = EncodeSnapshotHead(head, producers);
  LogMachine<> restoring(b.path(), Small());
  restoring.FetchFrom(3, "", Fetch());
  BOOST_TEST(Restore(restoring, Copy(none)) != 0);
  BOOST_TEST(behind.Served() == 1);
  BOOST_TEST(restoring.LastError().find("ends before offset") != std::string::npos, restoring.LastError());
  BOOST_TEST(restoring.NextOffset() == 0U);
  BOOST_TEST(NothingStagedBeside(b.path()));

  // Node 5 has them: the restore goes on to it.
  head.clients[5] = good.Address();
  BOOST_REQUIRE(Restore(restoring, Copy(EncodeSnapshotHead(head, producers))) == 0);
  BOOST_TEST(good.Served() == 1);
  BOOST_TEST(Stream(restoring) == Stream(source));

  // Without a way to fetch, a metadata snapshot is refused.
  TempDir e;
  LogMachine<> plain(e.path(), Small());
  BOOST_TEST(Restore(plain, Copy(none)) != 0);
  BOOST_TEST(plain.NextOffset() == 0U);
}
