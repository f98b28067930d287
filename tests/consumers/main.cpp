// A program that uses an installed (or vendored) logsync: appends a record
// in a temporary directory, reads it back, and prints the version.
// LOGSYNC_CONSUMER_RAFT: also the replication headers, linked with raft and
// libuv. LOGSYNC_CONSUMER_AFTER_CXX20: the build asked for a newer standard,
// which must be the one in force.
#include <logsync/logsync.hpp>
#include <logsync/version.hpp>
#ifdef LOGSYNC_CONSUMER_RAFT
#include <logsync/raft/replicated_log.hpp>
#endif

#include <filesystem>
#include <iostream>
#include <random>
#include <string>

#ifdef LOGSYNC_CONSUMER_AFTER_CXX20
static_assert(__cplusplus > 202002L, "the consumer's -std was overridden");
#endif

int main() {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() /
                       ("logsync-consumer-" + std::to_string(std::random_device{}()));
  int status = 0;
  try {
    logsync::Log<> log(dir);
    const std::uint64_t offset = log.Append({.value = "hello"});
    if (log.Read(offset).value != "hello") {
      std::cerr << "read back a different record\n";
      status = 1;
    }
    log.Remove();
  } catch (const std::exception& e) {
    std::cerr << "logsync: " << e.what() << '\n';
    status = 1;
  }
  fs::remove_all(dir);
  std::cout << "logsync " << LOGSYNC_VERSION_STRING << " (" << LOGSYNC_VERSION << "), C++ "
            << __cplusplus;
#ifdef LOGSYNC_CONSUMER_RAFT
  std::cout << ", libuv " << uv_version_string() << ", raft " << (raft_strerror(0) ? "linked" : "?");
#endif
  std::cout << '\n';
  return status;
}
