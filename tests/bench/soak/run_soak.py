#!/usr/bin/env python3
"""Soak: many observed joins through one srup-observerd on the sim channel,
over a real Mosquitto, with the real join peer as the C2 server.

The joining device is srup-bench-join's latency mode, run in chunks; between
chunks the observer's RSS and open file descriptors are read from /proc.
Prints: lost responses (joins whose verdict never came, and RESPONSEs the
server saw against the observer's own count), RSS and fds at start, middle
and end, join latency p50/p99 over the whole run (OBS_JOIN_REQ sent ->
verdict received). Asserts nothing.

usage: run_soak.py BUILD_DIR [JOINS] [CHUNK]      (default 10000, 1000)
"""
import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "lib"))
from joinbed import JoinBed, id16  # noqa: E402


def proc_figures(pid):
    with open("/proc/%d/status" % pid) as f:
        rss = int(re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M).group(1))
    return rss, len(os.listdir("/proc/%d/fd" % pid))


def percentile(sorted_values, p):
    i = int(p / 100.0 * (len(sorted_values) - 1) + 0.5)
    return sorted_values[min(i, len(sorted_values) - 1)]


def main():
    build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
    joins = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
    chunk = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    bench = os.path.join(build, "tests", "bench", "join", "srup-bench-join")
    samples, figures, lost = [], [], 0
    t0 = time.monotonic()
    with JoinBed(build, window_seconds=600, peer_timeout=100000).start() as bed:
        pid = bed.observer.p.pid
        figures.append(("start", 0) + proc_figures(pid))
        done = 0
        while done < joins:
            n = min(chunk, joins - done)
            path = bed.path("samples-%d.txt" % done)
            subprocess.run([bench, "latency", "--config", bed.device_config, "--observer",
                                 id16(bed.observer_id), "--joins", str(n), "--samples", path],
                                stdout=subprocess.DEVNULL)
            got = []
            if os.path.exists(path):
                with open(path) as f:
                    got = [float(x) for x in f]
            lost += n - len(got)  # a failed chunk writes no samples: all n count
            samples += got
            done += n
            if done >= joins // 2 and len(figures) == 1:
                figures.append(("middle", done) + proc_figures(pid))
            print("  %6d joins, %d lost so far, %.0f s" % (done, lost, time.monotonic() - t0),
                  flush=True)
        time.sleep(1)
        figures.append(("end", done) + proc_figures(pid))
        out = subprocess.run([bed.bin("srup-observerctl"), "--socket", bed.path("control.sock"),
                              "--json", "status"], stdout=subprocess.PIPE, text=True)
        status = json.loads(out.stdout)
        outcomes_at_server = bed.peer.count(r"^OUTCOME .*observer_status=0x60")
    counters = status["counters"]
    samples.sort()
    print("soak: %d observed joins through one srup-observerd (sim channel), %.0f s"
          % (joins, time.monotonic() - t0))
    print("  lost responses: %d (joins without a verdict); the server saw %d RESPONSEs 0x60, "
          "the observer decided %d valid and sent %d messages"
          % (lost, outcomes_at_server, counters["outcomes"]["valid"], counters["messages_sent"]))
    print("  observer RSS and open fds:")
    for name, at, rss, fds in figures:
        print("    %-6s (after %5d joins): RSS %6.1f MiB, %d fds" % (name, at, rss / 1024.0, fds))
    if samples:
        print("  join latency over %d joins: p50 %.2f ms, p99 %.2f ms, max %.2f ms"
              % (len(samples), percentile(samples, 50), percentile(samples, 99), samples[-1]))
    print("  observer dropped %d messages (%s)" % (counters["messages_dropped"], ", ".join(
        "%s %d" % kv for kv in counters["dropped_by_reason"].items() if kv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
