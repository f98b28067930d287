#pragma once
// The replicated log's state machine on its own (no engine): its records,
// and its snapshot and restore callbacks called as the engine calls them.

#include <logsync/raft/state_machine.hpp>

#include <boost/test/unit_test.hpp>

#include <string>
#include <vector>

namespace logsync::test {

/// The values of the machine's local log, lowest offset first.
inline std::vector<std::string> Values(const detail::LogMachine<>& m) {
  return m.WithLog([](const auto& log) {
    std::vector<std::string> out;
    for (const detail::Applied& a : log.Scan(log.LowestOffset())) out.push_back(a.bytes);
    return out;
  });
}

/// The FSM's snapshot of `m`, as one buffer the caller owns (raft_malloc).
inline raft_buffer Snapshot(detail::LogMachine<>& m) {
  raft_fsm* fsm = m.Fsm(nullptr);
  raft_buffer* bufs = nullptr;
  unsigned n = 0;
  BOOST_REQUIRE(fsm->snapshot(fsm, &bufs, &n) == 0);
  BOOST_REQUIRE(n == 1U);
  const raft_buffer b = bufs[0];
  raft_free(bufs);
  return b;
}

/// Restores `b` into `m` (which takes the buffer on success).
inline int Restore(detail::LogMachine<>& m, raft_buffer b) {
  raft_fsm* fsm = m.Fsm(nullptr);
  const int rv = fsm->restore(fsm, &b);
  if (rv != 0) raft_free(b.base);
  return rv;
}

}  // namespace logsync::test
