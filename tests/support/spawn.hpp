#pragma once
// Starting a program with its stdout on a pipe, without a test framework:
// the node-process tests (node.hpp) and the benchmarks both use it.

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <unistd.h>

#include <string>
#include <utility>
#include <vector>

namespace logsync::test {

/// Runs `args` (args[0] the program's path) with its stdout on a pipe, its
/// stderr appended to `stderr_path` (inherited if empty) and, unless 0,
/// RLIMIT_NOFILE at `nofile`; returns its pid and the read end of the pipe,
/// or a pid of -1 if it could not be started.
inline std::pair<pid_t, int> SpawnProgram(std::vector<std::string> args, const std::string& stderr_path = {},
                                          rlim_t nofile = 0) {
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return {-1, -1};
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(out[0]);
    ::close(out[1]);
    return {-1, -1};
  }
  if (pid == 0) {
    ::dup2(out[1], 1);
    if (!stderr_path.empty()) {
      const int err = ::open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      ::dup2(err, 2);
    }
    if (nofile != 0) {
      const rlimit lim{nofile, nofile};
      if (::setrlimit(RLIMIT_NOFILE, &lim) != 0) ::_exit(126);
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(out[1]);
  return {pid, out[0]};
}

}  // namespace logsync::test
