#!/usr/bin/env python3
"""Failover of a 3-node logsync-node cluster on 127.0.0.1: the time from a
kill -9 of the leader to the first append a new leader acknowledges, over
--kills kills, while a client appends without pause. The killed node is
restarted on its data and caught up before the next kill. At the end, the
raft term every node reached (from raft's metadata files) gives the number
of elections: one per kill is the least there can be; more are split votes
or spurious elections.

    benchmarks/failover_bench.py --node build/examples/logsync-node [--kills 10] [-- node flags...]

Prints each failover time, their median and maximum, and the elections.
"""

import argparse
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Node:
    def __init__(self, binary, id_, root, extra):
        self.binary, self.id, self.extra = binary, id_, extra
        self.raft_port, self.client_port = free_port(), free_port()
        self.dir = os.path.join(root, f"n{id_}")
        self.proc = None

    def start(self, peers):
        args = [self.binary, "--id", str(self.id), "--address", f"127.0.0.1:{self.raft_port}",
                "--client", f"127.0.0.1:{self.client_port}", "--dir", self.dir, "--peers", peers] + self.extra
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=open(self.dir + ".stderr", "a"), text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("ready"):
            sys.exit(f"node {self.id} did not start: {line!r}")

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def term(self):
        best = (0, 0)
        for name in ("metadata1", "metadata2"):
            try:
                with open(os.path.join(self.dir, "raft", name), "rb") as f:
                    _, version, term, _ = struct.unpack("<QQQQ", f.read(32))
                best = max(best, (version, term))
            except (OSError, struct.error):
                pass
        return best[1]


def ask(port, line, timeout=5.0):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(line.encode() + b"\n")
        return s.makefile("rb").readline().decode().strip()


class Writer(threading.Thread):
    """Appends without pause through whichever node leads; notes when each
    acknowledgement arrived and from which node."""

    def __init__(self, nodes):
        super().__init__(daemon=True)
        self.nodes, self.stop = nodes, False
        self.acks = []  # (time, node id)
        self.lock = threading.Lock()

    def leader(self, not_id):
        for n in self.nodes:
            if n.proc is None or n.id == not_id:
                continue
            try:
                r = ask(n.client_port, f"LEADER 3000 {not_id}").split()
            except OSError:
                continue
            if len(r) >= 2 and r[0] == "OK" and int(r[1]) != not_id:
                return next((m for m in self.nodes if m.id == int(r[1])), None)
        return None

    def run(self):
        i, conn, via, dead = 0, None, None, 0
        while not self.stop:
            if conn is None:
                target = self.leader(dead)
                if target is None or target.proc is None:
                    continue
                try:
                    conn = socket.create_connection(("127.0.0.1", target.client_port), timeout=3)
                    reader, via = conn.makefile("rb"), target
                except OSError:
                    conn = None
                    continue
            try:
                conn.sendall(f"APPEND v{i}\n".encode())
                reply = reader.readline().decode()
            except OSError:
                reply = ""
            if reply.startswith("OK "):
                with self.lock:
                    self.acks.append((time.monotonic(), via.id))
                i += 1
                dead = 0
                continue
            conn.close()
            conn = None
            if via.proc is None:
                dead = via.id  # ask the others for a leader other than the dead one

    def first_ack_after(self, t, not_id):
        with self.lock:
            return next((a for a, n in self.acks if a > t and n != not_id), None)

    def count(self):
        with self.lock:
            return len(self.acks)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--node", required=True)
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("extra", nargs="*", help="flags for every node (after --)")
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="logsync-failover-")
    nodes = [Node(args.node, i, root, args.extra) for i in (1, 2, 3)]
    peers = ",".join(f"{n.id}=127.0.0.1:{n.raft_port}" for n in nodes)
    for n in nodes:
        n.start(peers)
    start_terms = None
    writer = Writer(nodes)
    writer.start()
    times = []
    try:
        for k in range(args.kills):
            base = writer.count()
            deadline = time.monotonic() + 60
            while writer.count() < base + 200:
                if time.monotonic() > deadline:
                    sys.exit("appends stopped")
                time.sleep(0.01)
            if start_terms is None:
                start_terms = max(n.term() for n in nodes)
            leader = writer.leader(0)
            t = time.monotonic()
            leader.kill()
            while (a := writer.first_ack_after(t, leader.id)) is None:
                if time.monotonic() > t + 60:
                    sys.exit("no new leader acknowledged an append within 60 s")
                time.sleep(0.001)
            times.append(a - t)
            print(f"kill {k + 1}: node {leader.id}, first acknowledged append after {1000 * (a - t):.0f} ms", flush=True)
            leader.start("")
            # Caught up before the next kill.
            live = writer.leader(0)
            want = int(ask(live.client_port, "NEXT").split()[1])
            ask(leader.client_port, f"NEXT {want} 30000", timeout=40)
    finally:
        writer.stop = True
        for n in nodes:
            if n.proc is not None:
                n.kill()
    end_term = max(n.term() for n in nodes)
    print(f"failover over {len(times)} kills: p50 {1000 * statistics.median(times):.0f} ms, "
          f"max {1000 * max(times):.0f} ms; elections (raft terms) {end_term - start_terms} for {len(times)} kills")


if __name__ == "__main__":
    main()
