#!/usr/bin/env python3
"""Runs the benchmark programs and renders one table per workload (W1-W7),
each result next to the ceiling measured in the same run and to the peers,
as Markdown (stdout and <out>/tables.md), a CSV of every figure
(<out>/results.csv) and a PNG chart of the ratios (<out>/ratios.png, with
gnuplot if installed).

    benchmarks/report.py [--build DIR] [--out DIR] [--full]

--build: a meson build directory with the benchmarks built (default
build-rel; `meson setup build-rel -Dbuildtype=release -Dtests=false &&
ninja -C build-rel`). Quick mode: --benchmark_min_time=0.05 and 200,000
records for the read workloads; --full: --benchmark_min_time=1,
--benchmark_repetitions=3 (medians), 1,000,000 records.
"""

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile


def run(build, name, args, env, rerun=True):
    exe = os.path.join(build, "benchmarks", name)
    out = os.path.join(build, f"{name}.json")
    maxrss = 0
    if rerun:
        if not os.path.exists(exe):
            print(f"skipped {name}: not built", file=sys.stderr)
            return {}, 0
        cmd = [exe, f"--benchmark_out={out}", "--benchmark_out_format=json"] + args
        print("running", " ".join(cmd), file=sys.stderr)
        # The program's own stderr (Google Benchmark's machine header, and
        # the warning Debian's libbenchmark prints about its own build) is
        # shown only if the program fails: the tables say the rest.
        with tempfile.TemporaryFile("w+") as err:
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
            _, status, usage = os.wait4(proc.pid, 0)
            if status != 0:
                err.seek(0)
                sys.stderr.write(err.read())
        maxrss = usage.ru_maxrss  # KiB
        if status != 0:
            print(f"{name} failed ({status})", file=sys.stderr)
    if not os.path.exists(out):
        return {}, 0
    with open(out) as f:
        data = json.load(f)
    results = {}
    for b in data["benchmarks"]:
        if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
            continue
        # Names without "/iterations:N" and "/real_time": what the tables ask for.
        key = "/".join(p for p in b["run_name"].split("/") if p != "real_time" and not p.startswith("iterations:"))
        results[key] = b
    return results, maxrss


def rate(b):
    return b.get("items_per_second") if b else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build-rel")
    ap.add_argument("--out", default=None)
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--no-run", action="store_true", help="render the JSON of an earlier run")
    a = ap.parse_args()
    out = a.out or os.path.join(a.build, "report")
    os.makedirs(out, exist_ok=True)
    env = dict(os.environ)
    if a.full:
        args = ["--benchmark_min_time=1", "--benchmark_repetitions=3"]
        env["LOGSYNC_BENCH_RECORDS"] = "1000000"
        env["LOGSYNC_BENCH_READ_RECORDS"] = "10000000"  # W4, W5: past the last-level cache
    else:
        args = ["--benchmark_min_time=0.05"]
        env["LOGSYNC_BENCH_RECORDS"] = "200000"

    r, rss = {}, {}
    for name in ["append_bench", "read_bench", "recovery_bench", "tail_bench", "peer_bench", "raft_bench"]:
        got, maxrss = run(a.build, name, args if name != "tail_bench" else [], env, not a.no_run)
        r.update(got)
        rss[name] = maxrss

    def get(name):
        return r.get("/".join(p for p in name.split("/") if p != "real_time"))

    peers = ["RocksDB", "LevelDB", "LMDB", "SQLite"]
    rows = []  # (workload, what, value, unit, ratio to ceiling, ceiling name)
    md = []

    def table(title, ceiling_name, ceiling, ours, peer_suffix, unit="records/s", key=rate, floors=()):
        # floors: (label, benchmark) of designs that also hold an appended
        # record in the kernel when it returns; the first is the "vs floor" one.
        md.append(f"\n### {title}\n")
        c = key(get(ceiling)) if ceiling else None
        f0 = key(get(floors[0][1])) if floors else None
        fcol = " vs floor |" if floors else ""
        head = "| | " + unit + " | vs ceiling |" + fcol + "".join(f" vs {p} |" for p in peers)
        md.append(head)
        md.append("|---" * (3 + bool(floors) + len(peers)) + "|")
        blank = " |" * (bool(floors) + len(peers))
        if c:
            md.append(f"| ceiling: {ceiling_name} | {c:,.0f} | 1.00 |" + blank)
            rows.append((title, "ceiling " + ceiling_name, c, unit, 1.0))
        for label, name in floors:
            v = key(get(name))
            if v is not None:
                md.append(f"| floor: {label} | {v:,.0f} | " + (f"{v / c:.2f}" if c else "") + " |" + blank)
                rows.append((title, "floor " + label, v, unit, v / c if c else ""))
        for label, name in ours:
            v = key(get(name))
            if v is None:
                continue
            line = f"| logsync {label} | {v:,.0f} | " + (f"{v / c:.2f}" if c else "") + " |"
            if floors:
                line += f" {v / f0:.2f} |" if f0 else " |"
            for p in peers:
                pv = key(get(f"BM_{p}_{peer_suffix}")) if peer_suffix else None
                line += f" {v / pv:.2f} |" if pv else " |"
            md.append(line)
            rows.append((title, "logsync " + label, v, unit, v / c if c else ""))
        for p in peers:
            pv = key(get(f"BM_{p}_{peer_suffix}")) if peer_suffix else None
            if pv:
                md.append(f"| {p} | {pv:,.0f} | " + (f"{pv / c:.2f}" if c else "") + " |" + blank)
                rows.append((title, p, pv, unit, pv / c if c else ""))

    mbps = lambda b: b.get("bytes_per_second") / 1e6 if b and b.get("bytes_per_second") else None
    for title, size, peer in [("W1 append 100 B, sync::None", 100, "W1Append100"),
                              ("W2 append 4 KiB, sync::None", 4096, "W2Append4096")]:
        table(title, "buffered write() of the frames", f"BM_RawWrite/{size}",
              [("Append", f"BM_Append/{size}")], peer,
              floors=[("memcpy into a shared file mapping", f"BM_MappedCopy/{size}"),
                      ("one pwrite() per record", f"BM_PwriteEach/{size}")])
    ours_w1 = rate(get("BM_Append/100"))
    commit_each = [(p, rate(get(f"BM_{p}_W1cAppend100CommitEach"))) for p in ["LMDB", "SQLite"]]
    if ours_w1 and any(v for _, v in commit_each):
        md.append("\nW1 with a commit per record: LMDB and SQLite above commit every 1,000 records, so up to 999 "
                  "acknowledged records wait in process memory; committing each one (still without a sync) gives "
                  "the guarantee a logsync Append gives, that the record survives the process being killed.\n")
        md.append("| | records/s | logsync Append vs this |\n|---|---|---|")
        for p, v in commit_each:
            if v:
                md.append(f"| {p}, a commit per record | {v:,.0f} | {ours_w1 / v:.1f} |")
                rows.append(("W1 append 100 B, commit per record", p, v, "records/s", ""))
    table("W3 durable append, one at a time", "pwrite+fdatasync", "BM_WriteFdatasync",
          [("Append, 1 thread", "BM_AppendAlways/real_time/threads:1"),
           ("Append, 8 threads", "BM_AppendAlways/real_time/threads:8")], "W3aAppendSync")
    fd = get("BM_WriteFdatasync")
    if fd:  # the ceiling of a batch: 100 records per write+fdatasync
        r["BM_BatchCeiling"] = {"items_per_second": 100 * fd["items_per_second"]}
    table("W3 durable AppendBatch(100)", "100 records per pwrite+fdatasync", "BM_BatchCeiling",
          [("AppendBatch(100)", "BM_AppendBatchAlways")], "W3bAppendBatchSync")
    for t in [1, 2]:
        table(f"W4 random reads, {t} thread" + ("s" if t > 1 else ""), "pread at known positions",
              f"BM_PreadRandom/real_time/threads:{t}",
              [("Read", f"BM_ReadRandom/real_time/threads:{t}"),
               ("Read into a record", f"BM_ReadIntoRandom/real_time/threads:{t}"),
               ("View (zero-copy)", f"BM_ViewRandom/real_time/threads:{t}"),
               ("ViewBatch of 16", f"BM_ViewBatchRandom/real_time/threads:{t}")],
              f"W4ReadRandom/real_time/threads:{t}")
    table("W5 full scan (payload)", "memcpy", "BM_Memcpy",
          [("Scan", "BM_Scan"), ("ScanPayloads (zero-copy)", "BM_ScanPayloads"),
           ("LogReader::ForEachPayload (read-only, pread)", "BM_ReaderScan")], "W5Scan", unit="MB/s", key=mbps)

    md.append("\n### W6 open a one-segment log (ms)\n")
    md.append("| | ms |\n|---|---|")
    for label, name in [("after a clean close", "BM_OpenClean"),
                        ("after a crash, nothing unsynced", "BM_OpenAfterCrash/0"),
                        ("after a crash, 1,000 unsynced", "BM_OpenAfterCrash/1000"),
                        ("after a crash, 100,000 unsynced", "BM_OpenAfterCrash/100000"),
                        ("without a checkpoint (every frame)", "BM_OpenNoCheckpoint"),
                        ("2 GiB log (128 MiB segments), after a clean close", "BM_OpenClean2GiB"),
                        ("ceiling: one read pass over the store", "BM_ReadStore")]:
        b = get(name)
        if b:
            md.append(f"| {label} | {b['real_time']:.1f} |")
            rows.append(("W6", label, b["real_time"], "ms", ""))

    md.append("\n### W7 tailing: visibility latency (us)\n")
    md.append("| appender | readers | p50 | p99 | records/s |\n|---|---|---|---|---|")
    for label, readers, name in [
            ("one record every 20 us", "ceiling: a condition variable wake-up, no log", "BM_WakeCeiling/20"),
            ("one record every 20 us", "WaitFor (block)", "BM_TailLatency/20/0"),
            ("one record every 20 us", "WaitFor, spin 50 us", "BM_TailLatency/20/50"),
            ("unpaced", "WaitFor (block)", "BM_TailLatency/0/0"),
            ("unpaced", "WaitFor, spin 50 us", "BM_TailLatency/0/50")]:
        b = get(name)
        if b:
            md.append(f"| {label} | {readers} | {b['p50_us']:.1f} | {b['p99_us']:.1f} | {b['records_per_s']:,.0f} |")
            rows.append(("W7", f"{label}, {readers} p99", b["p99_us"], "us", ""))

    md.append("\n### Replication (3 nodes on loopback), records/s\n")
    md.append("| | records/s | vs single-node durable append |\n|---|---|---|")
    base = rate(get("BM_SingleNodeDurableAppend"))
    for label, name in [("single node, sync::Always", "BM_SingleNodeDurableAppend"),
                        ("3 nodes, one at a time", "BM_ReplicatedAppendOneAtATime"),
                        ("3 nodes, 16 in flight", "BM_ReplicatedAppendInFlight/16"),
                        ("3 nodes, batches of 100", "BM_ReplicatedAppendBatch/100")]:
        v = rate(get(name))
        if v:
            md.append(f"| {label} | {v:,.0f} | " + (f"{v / base:.2f}" if base else "") + " |")

    # The sustained workloads: a log far past its first segment (sustained_bench).
    sus_json = os.path.join(a.build, "sustained_bench.json")
    sus_exe = os.path.join(a.build, "benchmarks", "sustained_bench")
    if not a.no_run and os.path.exists(sus_exe):
        sus_args = ["--records", "10000000", "--reps", "5"] if a.full else ["--records", "1000000", "--reps", "1"]
        print("running", sus_exe, " ".join(sus_args), file=sys.stderr)
        subprocess.run([sus_exe, "--json", sus_json] + sus_args, env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)
    if os.path.exists(sus_json):
        with open(sus_json) as f:
            sus = json.load(f)
        rates = sus["rates"]
        md.append(f"\n### Sustained appends into one log at default settings: {sus['records']:,} records of "
                  f"100 B, {sus['records'] // 10:,} of 4 KiB, medians of {sus['reps']}\n")
        md.append("| | rate | vs write() | vs mapped+populate |\n|---|---|---|---|")
        pop = rates.get("W1 mapped+populate", {}).get("median")
        for name in ["W1 write", "W1 mapped", "W1 mapped+populate", "W1 mapped+populate-read", "W1 Append", "W1 AppendBatch(100)", "W1 LMDB",
                     "W2 write", "W2 Append"]:
            v = rates.get(name)
            if not v:
                continue
            w2 = name.startswith("W2")
            value = f"{v['median'] * 4112 / 1e6:,.0f} MB/s" if w2 else f"{v['median']:,.0f} records/s"
            vs_pop = "" if w2 or not pop else f"{v['median'] / pop:.2f}"
            md.append(f"| {name} | {value} | {v['vs_write']:.2f} | {vs_pop} |")
            rows.append(("sustained", name, v["median"], "records/s", v["vs_write"]))
        lat, dur = sus["append_latency_us"], sus["always_latency_us"]
        md.append("\n| latency (us) | p50 | p99 | p99.9 | max |\n|---|---|---|---|---|")
        md.append(f"| W1 Append, sync::None, across rolls | {lat['p50']:.2f} | {lat['p99']:.2f} | {lat['p99.9']:.2f} | "
                  f"{lat['max']:,.0f} |")
        md.append(f"| Append, sync::Always | {dur['p50']:.0f} | {dur['p99']:.0f} | {dur['p99.9']:.0f} | "
                  f"{dur['max']:,.0f} |")
        md.append(f"\nPeak resident memory while appending the 4 KiB log: {sus['w2_peak_rss_mib']:.0f} MiB.")

    md.append("\n### Peak resident memory (MiB) per program\n")
    md.append("| program | peak RSS |\n|---|---|")
    for name, kib in rss.items():
        if kib:
            md.append(f"| {name} | {kib / 1024:.0f} |")
    md.append("\n(File pages of the mapped stores count as resident while they are in the page cache.)")

    machine = (f"{os.cpu_count()} cores, {platform.platform()}, "
               f"filesystem of {env.get('TMPDIR', '/tmp')}: "
               + subprocess.run(["stat", "-f", "-c", "%T", env.get("TMPDIR", "/tmp")], capture_output=True,
                                text=True).stdout.strip())
    text = f"Machine: {machine}. Mode: {'full' if a.full else 'quick'}.\n" + "\n".join(md) + "\n"
    with open(os.path.join(out, "tables.md"), "w") as f:
        f.write(text)
    with open(os.path.join(out, "results.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["workload", "what", "value", "unit", "ratio_to_ceiling"])
        w.writerows(rows)
    print(text)

    def label(title, what):
        w = title.split(" ")[0] + " " + what.replace("logsync ", "")
        return w + (" (2 threads)" if title.endswith("2 threads") else "")
    ratios = [(label(t, what), v) for t, what, _, _, v in rows if what.startswith("logsync") and v != ""]
    if ratios and shutil.which("gnuplot"):
        dat = os.path.join(out, "ratios.dat")
        with open(dat, "w") as f:
            for i, (label, v) in enumerate(ratios):
                f.write(f'{i} "{label}" {v:.3f}\n')
        png = os.path.join(out, "ratios.png")
        script = f"""
set terminal png size 1000,500
set output '{png}'
set title 'logsync / ceiling measured in the same run (dashed: 1.0)' noenhanced
set style fill solid 0.6
set boxwidth 0.7
set yrange [0:*]
set grid ytics
set xtics rotate by -30 noenhanced
set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2
plot '{dat}' using 1:3:xtic(2) with boxes notitle
"""
        subprocess.run(["gnuplot"], input=script, text=True, check=False)
        print(f"chart: {png}", file=sys.stderr)


if __name__ == "__main__":
    main()
