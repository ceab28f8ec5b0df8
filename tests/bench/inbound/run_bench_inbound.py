#!/usr/bin/env python3
"""What srup-observerd's receive path costs with its state on disk, for one
or more builds back to back (e.g. a base commit's build and this one):

  junk:  JUNK messages on the observer's topic that no known sender signed
         (a third each: not a SRUP message; an OBSERVE_REQ naming the
         server but signed with another key; one signed by a sender whose
         key the observer does not have), queued at the broker while the
         observer is stopped: messages per second from its first drop line
         to its last (and the time from its start).
  legit: LEGIT validly signed OBSERVE_REQs for distinct devices (window
         1 s, max_pending 1000: each is answered 0x6F, at once past 1000 or
         when its window ends), queued at the broker while the observer is
         stopped: RESPONSEs per second from its start until every one is
         answered.

usage: run_bench_inbound.py [--junk N] [--legit N] [--rounds R] BUILD_DIR...

Example (the base commit built in a worktree of its own):
  git worktree add /tmp/srup-base <commit> && cmake -S /tmp/srup-base -B /tmp/srup-base/build \\
      && cmake --build /tmp/srup-base/build -j2 --target srup-observerd srup-keygen srup-msg
  tests/bench/inbound/run_bench_inbound.py /tmp/srup-base/build build
"""
import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "integration"))
from joinbed import JoinBed, RawServer, topic_id  # noqa: E402
from mqtt_raw import MqttClient  # noqa: E402
import srup_wire  # noqa: E402
from test_load_faults import Answers, publish_all, signed_requests  # noqa: E402


def junk_messages(bed, raw, n):
    """n messages no known sender signed, in three kinds, interleaved."""
    with open(raw.observe_request(0x77, b"\x5a" * 16, "junk-t"), "rb") as f:
        template = f.read()
    # Another key: the bed's device key, which the observer does not hold
    # for the server's ID; and an unknown sender ID with that same key.
    other = srup_wire.load_key(bed.device_priv)
    unknown_sender = 0x0bad0bad0bad0bad
    head = template[:10] + unknown_sender.to_bytes(8, "little") + template[18:]
    out = []
    for i in range(n):
        raw.seq += 1
        kind = i % 3
        if kind == 0:
            out.append(b"junk %08d " % i + b"x" * 200)
        elif kind == 1:
            out.append(srup_wire.resign(template, other, raw.seq, b"j%07d" % i))
        else:
            out.append(srup_wire.resign(head, other, raw.seq, b"u%07d" % i))
    return out


def run_junk(build, n):
    """The flood waits at the broker (the observer's session is kept while
    it is stopped), so the rate is the observer's, not the publisher's."""
    with JoinBed(build, window_seconds=1) as bed:
        bed.setup()
        bed.start_observer()
        bed.stop_observer()
        raw = RawServer(bed)
        publish_all(bed, junk_messages(bed, raw, n))
        t0 = time.monotonic()
        obs = bed.start_observer(wait=False)
        deadline = t0 + 600
        drops, seen = [], 0
        while len(drops) < n and time.monotonic() < deadline:
            time.sleep(0.25)  # light polling: the bench must not take the CPU
            lines = obs.lines[seen:]
            seen += len(lines)
            drops += [t for t, line in lines if "dropped message on" in line]
        got = len(drops)
        cpu = cpu_seconds(obs.p.pid)
        # From the first drop to the last (times the lines were read): the
        # start itself not counted.
        return (got - 1) / max(drops[-1] - drops[0], 1e-3), drops[-1] - t0, got, cpu


def cpu_seconds(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return float("nan")


def run_legit(build, n):
    with JoinBed(build, window_seconds=1, max_pending=1000) as bed:
        bed.setup()
        bed.start_observer()
        raw = RawServer(bed)
        answers = Answers(bed)
        msgs, tokens = signed_requests(bed, raw, n, 0x100000, "l")
        # Queued at the broker while the observer is stopped, as the junk.
        bed.stop_observer()
        publish_all(bed, msgs)
        t0 = time.monotonic()
        obs = bed.start_observer(wait=False)
        got = answers.wait_all(tokens, 600)
        took = time.monotonic() - t0
        cpu = cpu_seconds(obs.p.pid)
        answers.close()
        return got / took, took, got, cpu


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--junk", type=int, default=3000)
    ap.add_argument("--legit", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("builds", nargs="+")
    a = ap.parse_args()
    rows = []
    for r in range(a.rounds):
        for b in a.builds:
            rate, took, got, cpu = run_junk(b, a.junk)
            rows.append((b, "junk", r, rate, took, got, a.junk, cpu))
            print("%-40s junk  round %d: %6.0f msg/s (%d of %d, %.1f s from the start; observer "
                  "CPU %.1f s)"
                  % (b, r, rate, got, a.junk, took, cpu), flush=True)
        for b in a.builds:
            rate, took, got, cpu = run_legit(b, a.legit)
            rows.append((b, "legit", r, rate, took, got, a.legit, cpu))
            print("%-40s legit round %d: %6.0f answered/s (%d of %d in %.1f s; observer CPU "
                  "%.1f s)" % (b, r, rate, got, a.legit, took, cpu), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
