#!/usr/bin/env python3
"""How late a node handles a message that arrives after a quiet gap.

Paho MQTT C's receive thread waits up to 1 s for data and, when that wait
times out, sleeps 100 ms: a message arriving 1.0-1.1 s (2.1-2.2 s, ...)
after the previous packet waits for the sleep to end. This sends
OBSERVE_REQs to srup-observerd on a private broker at gaps of 0.5-2.5 s in
25 ms steps (81 gaps, in random order) and times each from its publish to
the observer's log line for it ("OBSERVE_REQ for device ... accepted").
The extra delay is that time minus the run's baseline (its 10th
percentile: decrypting, recording and committing each request).

usage: run_bench_gap.py BUILD_DIR [--reps N] [--quick]
  --reps N  times each gap is sent (default 2, about 4 minutes)
  --quick   once per gap (about 2 minutes)
"""
import argparse
import os
import random
import re
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "lib"))
from joinbed import JoinBed, RawServer, id16, topic_id  # noqa: E402
from mqtt_raw import MqttClient  # noqa: E402
import srup_wire  # noqa: E402

GAPS_MS = list(range(500, 2501, 25))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    reps = 1 if args.quick else args.reps
    order = [g for g in GAPS_MS for _ in range(reps)]
    random.Random(1).shuffle(order)
    delays = {g: [] for g in GAPS_MS}
    print("%d gaps x %d: about %.0f s" % (len(GAPS_MS), reps, sum(order) / 1000.0 + 5), flush=True)
    with JoinBed(args.build, window_seconds=3600, max_pending=len(order) + 10) as bed:
        bed.setup()
        obs = bed.start_observer()
        raw = RawServer(bed)
        with open(raw.observe_request(bed.device_id, b"\x5a" * 16, "gap-0000"), "rb") as f:
            template = f.read()
        key = srup_wire.load_key(bed.server_priv)
        pub = MqttClient("127.0.0.1", bed.broker.port, "gap-bench-server")
        topic = "SRUP/" + topic_id(bed.observer_id)
        seq = int(time.time()) << 16
        # A first message to start from a settled state.
        pending = [(None, 0x100)]
        for i, gap in enumerate(order):
            pending.append((gap, 0x101 + i))
        start = len(obs.lines)
        last = None
        for gap, device in pending:
            seq += 1
            msg = srup_wire.resign(template, key, seq, b"gap-%04x" % device,
                                   srup_wire.with_joining_device(template, device))
            if last is not None:
                while time.monotonic() < last + gap / 1000.0:
                    time.sleep(min(0.002, max(0.0, last + gap / 1000.0 - time.monotonic())))
            sent = time.monotonic()
            pub.publish(topic, msg)
            idx, _ = obs.wait_line(r"OBSERVE_REQ for device %s accepted" % id16(device), 10, start)
            got = obs.lines[idx][0]
            if gap is not None:
                delays[gap].append((got - sent) * 1000.0)
            # The gap counts from the observer's last packet: its PUBACK
            # for this request went out when it was recorded.
            last = sent
            start = idx + 1
        pub.close()
    every = sorted(d for v in delays.values() for d in v)
    base = every[len(every) // 10]
    print("baseline (10th percentile of publish -> handled): %.1f ms" % base)
    print("gap_ms  extra_p50_ms  extra_max_ms")
    worst = (0.0, None)
    for g in GAPS_MS:
        extra = [d - base for d in delays[g]]
        p50 = statistics.median(extra)
        worst = max(worst, (p50, g))
        print("%6d  %12.1f  %12.1f" % (g, p50, max(extra)))
    over = [g for g in GAPS_MS if statistics.median([d - base for d in delays[g]]) > 10.0]
    print("largest p50 extra delay: %.1f ms (gap %d ms); gaps with p50 above 10 ms: %d%s"
          % (worst[0], worst[1], len(over), (" " + str(over)) if over else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
