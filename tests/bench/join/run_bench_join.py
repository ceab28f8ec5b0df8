#!/usr/bin/env python3
"""Runs srup-bench-join against real processes on a private broker:

  latency: peer + observer + the bench as the joining device (N joins)
  pending: observer + the bench as the C2 server (COUNT pending at once)

usage: run_bench_join.py BUILD_DIR [JOINS] [COUNT]
"""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "lib"))
from joinbed import JoinBed, id16  # noqa: E402


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    joins = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    bench = os.path.join(os.path.abspath(build), "tests", "bench", "join", "srup-bench-join")
    rc = 0
    with JoinBed(build, window_seconds=600).start() as bed:
        rc |= subprocess.run([bench, "latency", "--config", bed.device_config, "--observer",
                              id16(bed.observer_id), "--joins", str(joins)]).returncode
    with JoinBed(build, window_seconds=600, max_pending=count) as bed:
        bed.setup()
        bed.start_observer()
        rc |= subprocess.run([bench, "pending", "--broker", bed.broker_url, "--server-id",
                              id16(bed.server_id), "--server-key", bed.server_priv,
                              "--observer", id16(bed.observer_id), "--observer-key",
                              bed.observer_pub, "--state", bed.path("bench-server-state"),
                              "--sim", bed.sim_socket, "--count", str(count),
                              "--observer-pid", str(bed.observer.p.pid)]).returncode
    return rc


if __name__ == "__main__":
    sys.exit(main())
