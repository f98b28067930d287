#!/usr/bin/env python3
"""Catch-up of a follower far behind on a 3-node logsync-node cluster on
127.0.0.1, through a snapshot: a follower is killed, --megabytes of records
commit without it (snapshots every --snapshot-threshold entries, so its
entries are compacted away on the leader), then it is restarted and
catches up through the leader's snapshot. With the default
--snapshot-fetch 1 the snapshot carries metadata only and the follower
fetches the records over the leader's client port (FETCH).

    benchmarks/snapshot_bench.py --node build/examples/logsync-node [--megabytes 400] [-- node flags...]

Prints the catch-up time and rate (bytes of the leader's local log over
the time from the restart to the follower's NEXT reaching the leader's),
and the peak resident set (VmHWM) of the leader and the follower over the
catch-up: the leader's peak is reset (clear_refs) before the restart, the
follower is a fresh process.
"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import failover_bench  # noqa: E402 (the nodes, started and killed as there)


class Conn:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=600)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def ask(self, line):
        self.sock.sendall(line.encode() + b"\n")
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RuntimeError(f"connection closed after {line[:40]!r}")
            self.buf += chunk
        reply, self.buf = self.buf.split(b"\n", 1)
        return reply.decode(errors="replace")

    def fetch_size(self):
        reply = self.ask("FETCH")
        if not reply.startswith("OK "):
            raise RuntimeError(f"FETCH: {reply}")
        size = int(reply[3:])
        left = size - len(self.buf)
        self.buf = b""
        while left > 0:
            chunk = self.sock.recv(min(left, 1 << 20))
            if not chunk:
                raise RuntimeError("FETCH broke off")
            left -= len(chunk)
        return size


class Node(failover_bench.Node):
    def hwm_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        return 0

    def reset_hwm(self):
        with open(f"/proc/{self.proc.pid}/clear_refs", "w") as f:
            f.write("5")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--node", required=True)
    ap.add_argument("--megabytes", type=int, default=400)
    ap.add_argument("--record-bytes", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--snapshot-threshold", type=int, default=16)
    ap.add_argument("--dir", default=None, help="where the nodes' data go (default: a temporary directory)")
    ap.add_argument("extra", nargs="*", help="flags for every node")
    a = ap.parse_args()
    root = a.dir or tempfile.mkdtemp(prefix="logsync-snapshot-bench-")
    os.makedirs(root, exist_ok=True)
    extra = ["--snapshot-threshold", str(a.snapshot_threshold),
             "--snapshot-trailing", str(max(1, a.snapshot_threshold // 4))] + a.extra
    nodes = [Node(a.node, i, root, extra) for i in (1, 2, 3)]
    peers = ",".join(f"{n.id}=127.0.0.1:{n.raft_port}" for n in nodes)
    try:
        for n in nodes:
            n.start(peers)
        reply = Conn(nodes[0].client_port).ask("LEADER 10000")
        leader = nodes[int(reply.split()[1]) - 1]
        follower = next(n for n in nodes if n is not leader)
        follower.kill()
        writer = Conn(leader.client_port)
        prefix = "r" * (a.record_bytes - 8)
        batches = a.megabytes * 1_000_000 // (a.record_bytes * a.batch)
        t0 = time.monotonic()
        for i in range(batches):
            r = writer.ask(f"BATCH {a.batch} {prefix}")
            if not r.startswith("OK "):
                sys.exit(f"BATCH {i}: {r}")
        append_s = time.monotonic() - t0
        next_offset = int(writer.ask("NEXT").split()[1])
        size = Conn(leader.client_port).fetch_size()
        print(f"appended {next_offset} records, a local log of {size / 1e6:.0f} MB, in {append_s:.1f} s")
        leader.reset_hwm()
        leader_before = leader.hwm_kib()
        t0 = time.monotonic()
        follower.start(peers)
        c = Conn(follower.client_port)
        peak_follower = 0
        peak_leader = 0
        while True:
            got = int(c.ask("NEXT").split()[1])
            peak_follower = max(peak_follower, follower.hwm_kib())
            peak_leader = max(peak_leader, leader.hwm_kib())
            if got >= next_offset:
                break
            if time.monotonic() - t0 > 1800:
                sys.exit(f"no catch-up after 30 minutes (at {got} of {next_offset})")
            time.sleep(0.05)
        catch_s = time.monotonic() - t0
        stats = c.ask("STATS")
        print(f"caught up in {catch_s:.2f} s: {size / catch_s / 1e6:.0f} MB/s (restart included); {stats}")
        print(f"peak RSS during the catch-up: leader {peak_leader / 1024:.1f} MiB (at the reset "
              f"{leader_before / 1024:.1f} MiB), follower {peak_follower / 1024:.1f} MiB")
    finally:
        for n in nodes:
            if n.proc:
                n.kill()
        if not a.dir:
            subprocess.run(["rm", "-rf", root])


if __name__ == "__main__":
    main()
