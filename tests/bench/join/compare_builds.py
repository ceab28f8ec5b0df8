#!/usr/bin/env python3
"""Runs run_bench_join.py against two builds alternately (A B, B A, A B, ...)
so that both see the same background load, and prints each run's figures,
the load average after it, and the medians per build: the observed join's
p50 and p99, the observer's CPU per observation, and the RSA private
operation the bench timed in the same run (how loaded the CPU was).

usage: compare_builds.py BUILD_A BUILD_B [ROUNDS] [JOINS] [COUNT]
(COUNT 0: the latency bench alone, no CPU figure.)
"""
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
FIGURES = (("p50", r"p50 ([0-9.]+) ms"), ("p99", r"p99 ([0-9.]+) ms"),
           ("cpu_per_obs", r"observer CPU ([0-9.]+) ms per observation"),
           ("rsa_private", r"private op ([0-9.]+) ms"))


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def run_once(build, joins, count):
    out = subprocess.run([sys.executable, os.path.join(HERE, "run_bench_join.py"), build,
                          str(joins), str(count)], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True).stdout
    row = {}
    for name, pattern in FIGURES:
        m = re.search(pattern, out)
        row[name] = float(m.group(1)) if m else None
    return row


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    builds = {"A": sys.argv[1], "B": sys.argv[2]}
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 7
    joins = int(sys.argv[4]) if len(sys.argv) > 4 else 200
    count = int(sys.argv[5]) if len(sys.argv) > 5 else 1000
    print("A = %s\nB = %s\n%d rounds of %d joins and %d pending; start %s, load average %s"
          % (builds["A"], builds["B"], rounds, joins, count, time.strftime("%H:%M:%S"),
             loadavg()), flush=True)
    rows = {"A": [], "B": []}
    for r in range(rounds):
        for name in ("A", "B") if r % 2 == 0 else ("B", "A"):
            row = run_once(builds[name], joins, count)
            rows[name].append(row)
            print("round %d %s  p50 %s ms  p99 %s ms  observer CPU %s ms/obs  RSA private "
                  "op %s ms  (load average %s)" % (r, name, row["p50"], row["p99"],
                                                   row["cpu_per_obs"], row["rsa_private"],
                                                   loadavg()), flush=True)
    print("end %s, load average %s" % (time.strftime("%H:%M:%S"), loadavg()))
    rc = 0
    for name in ("A", "B"):
        done = [r for r in rows[name] if r["p50"] is not None and
                (count == 0 or r["cpu_per_obs"] is not None)]
        if not done:
            print("%s: no complete run" % name)
            rc = 1
            continue
        med = {f: statistics.median(r[f] for r in done) if count or f != "cpu_per_obs"
               else float("nan") for f, _ in FIGURES}
        print("%s: %d runs, medians: p50 %.2f ms, p99 %.2f ms, observer CPU %.3f ms per "
              "observation, RSA private op %.3f ms"
              % (name, len(done), med["p50"], med["p99"], med["cpu_per_obs"],
                 med["rsa_private"]))
    return rc


if __name__ == "__main__":
    sys.exit(main())
