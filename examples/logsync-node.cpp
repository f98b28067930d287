// logsync-node: one node of a replicated log, serving a line protocol.
//
//   logsync-node --id 1 --address 127.0.0.1:9001 --client 127.0.0.1:7001
//                --peers 1=127.0.0.1:9001,2=127.0.0.1:9002,3=127.0.0.1:9003 --dir /var/lib/n1
//
// --peers is the initial cluster, bootstrapped when --dir is fresh. A node
// joining an existing cluster runs without --peers (or with a list that
// does not name it) and is added with JOIN on the leader.
//
// Protocol (one request per line, one reply line each):
//   APPEND <text>               OK <offset>
//   BATCH <n> <prefix>          OK <first offset>   (n records "<prefix>-<i>", one raft entry)
//   READ <offset>               OK <text>
//   NEXT [<at least> <ms>]      OK <next offset>    (waits up to ms for the local log to reach it)
//   LEADER [<ms> [<not id>]]    OK <id> <address>   (waits up to ms for a leader other than <not id>)
//   JOIN <id> <address>         OK                  (on the leader)
//   REMOVE <id>                 OK                  (on the leader)
//   TRANSFER                    OK                  (on the leader)
//   STATS                       OK restored <n>     (snapshots installed from the leader)
// Errors: ERR not-leader <id> <address> | ERR no-leader | ERR out-of-range |
// ERR bad-request <why> | ERR <message>.

#include <logsync/raft/replicated_log.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using Node = logsync::ReplicatedLog<>;

struct Options {
  logsync::NodeConfig node;
  std::string client;
};

[[noreturn]] void Usage(const std::string& why) {
  std::cerr << "logsync-node: " << why
            << "\nusage: logsync-node --id N --address HOST:PORT --client HOST:PORT --dir DIR "
               "[--peers ID=HOST:PORT,...] [--election-timeout MS] [--snapshot-threshold N] "
               "[--snapshot-trailing N]\n";
  std::exit(2);
}

std::uint64_t ParseNumber(const std::string& s, const char* what) {
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size()) Usage(std::string(what) + " is not a number: " + s);
  return v;
}

Options ParseArgs(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) Usage("missing value for " + flag);
    const std::string value = argv[++i];
    if (flag == "--id") o.node.id = ParseNumber(value, "--id");
    else if (flag == "--address") o.node.address = value;
    else if (flag == "--client") o.client = value;
    else if (flag == "--dir") o.node.dir = value;
    else if (flag == "--snapshot-threshold")
      o.node.snapshot_threshold = static_cast<unsigned>(ParseNumber(value, "--snapshot-threshold"));
    else if (flag == "--snapshot-trailing")
      o.node.snapshot_trailing = static_cast<unsigned>(ParseNumber(value, "--snapshot-trailing"));
    else if (flag == "--election-timeout")
      o.node.election_timeout_ms = static_cast<unsigned>(ParseNumber(value, "--election-timeout"));
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
  return o;
}

sockaddr_in ParseHostPort(const std::string& hp) {
  const auto colon = hp.rfind(':');
  if (colon == std::string::npos) Usage("address is not host:port: " + hp);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(ParseNumber(hp.substr(colon + 1), "port")));
  if (inet_pton(AF_INET, hp.substr(0, colon).c_str(), &a.sin_addr) != 1) Usage("not an IPv4 address: " + hp);
  return a;
}

std::string Handle(Node& node, const std::string& line) {
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
  try {
    if (cmd == "APPEND") {
      return "OK " + std::to_string(node.Append({.value = rest()}));
    }
    if (cmd == "BATCH") {
      std::uint64_t n = 0;
      if (!number(n) || n == 0 || n > 100000) return "ERR bad-request BATCH <n 1..100000> <prefix>";
      const std::string prefix = rest();
      std::vector<logsync::Record> records;
      for (std::uint64_t i = 0; i < n; ++i) records.push_back({.value = prefix + "-" + std::to_string(i)});
      return "OK " + std::to_string(node.AppendBatch(records));
    }
    if (cmd == "READ") {
      std::uint64_t off = 0;
      if (!number(off)) return "ERR bad-request READ <offset>";
      return "OK " + node.Read(off).value;
    }
    if (cmd == "NEXT") {
      std::uint64_t want = 0, ms = 0;
      if (number(want)) {
        if (!number(ms)) return "ERR bad-request NEXT [<at least> <ms>]";
        node.WaitForNext(want, std::chrono::milliseconds(ms));
      }
      return "OK " + std::to_string(node.NextOffset());
    }
    if (cmd == "LEADER") {
      std::uint64_t ms = 0, not_id = 0;
      logsync::Peer p;
      if (number(ms)) {
        number(not_id);
        p = node.WaitForLeader(std::chrono::milliseconds(ms), not_id);
      } else {
        p = node.Leader();
      }
      if (p.id == 0) return "ERR no-leader";
      return "OK " + std::to_string(p.id) + " " + p.address;
    }
    if (cmd == "JOIN") {
      std::uint64_t id = 0;
      std::string address;
      if (!number(id) || id == 0 || !(in >> address)) return "ERR bad-request JOIN <id> <address>";
      node.Join(id, address);
      return "OK";
    }
    if (cmd == "REMOVE") {
      std::uint64_t id = 0;
      if (!number(id) || id == 0) return "ERR bad-request REMOVE <id>";
      node.Leave(id);
      return "OK";
    }
    if (cmd == "STATS") return "OK restored " + std::to_string(node.SnapshotsRestored());
    if (cmd == "TRANSFER") {
      node.TransferLeadership();
      return "OK";
    }
    return "ERR bad-request unknown command '" + cmd + "'";
  } catch (const logsync::NotLeader& e) {
    if (e.leader().id == 0) return "ERR no-leader";
    return "ERR not-leader " + std::to_string(e.leader().id) + " " + e.leader().address;
  } catch (const logsync::OffsetOutOfRange&) {
    return "ERR out-of-range";
  } catch (const std::exception& e) {
    std::string what = e.what();
    for (char& ch : what)
      if (ch == '\n' || ch == '\r') ch = ' ';
    return "ERR " + what;
  }
}

void Serve(Node& node, int fd) {
  std::string buf;
  char chunk[4096];
  for (;;) {
    const ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n <= 0) break;
    buf.append(chunk, static_cast<std::size_t>(n));
    if (buf.size() > (16U << 20)) break;  // a line this long is not a client of ours
    std::size_t nl;
    while ((nl = buf.find('\n')) != std::string::npos) {
      std::string line = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line == "QUIT") {
        ::close(fd);
        return;
      }
      const std::string reply = Handle(node, line) + "\n";
      for (std::size_t done = 0; done < reply.size();) {
        const ssize_t w = ::write(fd, reply.data() + done, reply.size() - done);
        if (w <= 0) {
          ::close(fd);
          return;
        }
        done += static_cast<std::size_t>(w);
      }
    }
  }
  ::close(fd);
}

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
  try {
    node = std::make_unique<Node>(opts.node);
  } catch (const std::exception& e) {
    std::cerr << "logsync-node: " << e.what() << "\n";
    return 1;
  }
  std::thread([&] {
    for (;;) {
      const int fd = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        return;
      }
      std::thread(Serve, std::ref(*node), fd).detach();
    }
  }).detach();
  std::cout << "ready " << opts.node.id << " " << opts.node.address << " client " << opts.client << std::endl;

  int sig = 0;
  sigwait(&stop, &sig);
  node->Close();
  std::cout << "stopped " << opts.node.id << std::endl;
  std::_Exit(0);  // client threads may still be blocked on their sockets
}
