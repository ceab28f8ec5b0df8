#!/usr/bin/env python3
"""Runs srup-bench-join against real processes on a private broker:

  latency: peer + observer + the bench as the joining device (N joins)
  pending: observer + the bench as the C2 server (COUNT pending at once)

usage: run_bench_join.py BUILD_DIR [JOINS] [COUNT]
       run_bench_join.py BUILD_DIR --channels [COUNT]

COUNT 0 runs the latency bench alone.

--channels runs the pending bench twice, the observer listening on one
channel (sim) and then on three at once (ble nfc sim: the BlueZ stand-in on
a private bus, advertising, and an emulated PN532 that the reader polls,
both from tests/ble and tests/nfc), and prints the RSS and CPU of each and
their ratio. It needs python3-dbus and python3-gi (/usr/bin/python3).
"""
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "lib"))
from joinbed import JoinBed, id16  # noqa: E402


def pending_argv(bench, bed, count):
    return [bench, "pending", "--broker", bed.broker_url, "--server-id", id16(bed.server_id),
            "--server-key", bed.server_priv, "--observer", id16(bed.observer_id),
            "--observer-key", bed.observer_pub, "--state", bed.path("bench-server-state"),
            "--sim", bed.sim_socket, "--count", str(count), "--observer-pid",
            str(bed.observer.p.pid)]


def pending_on(build, bench, count, channels):
    """The pending bench against an observer listening on channels; returns
    (rc, output)."""
    if channels == ["sim"]:
        with JoinBed(build, window_seconds=600, max_pending=count) as bed:
            bed.setup()
            bed.start_observer()
            out = subprocess.run(pending_argv(bench, bed, count), stdout=subprocess.PIPE,
                                 text=True)
            return out.returncode, out.stdout
    for sub in ("../../ble", "../../nfc"):
        sys.path.insert(0, os.path.join(HERE, sub))
    from bluez_standin import FakeBluez, PrivateBus, pump  # noqa: E402
    bus = PrivateBus()
    bluez = FakeBluez(bus.address)
    bed = JoinBed(build, channel=" ".join(channels), window_seconds=600, max_pending=count)
    try:
        bed.setup()
        link = bed.path("pn532")
        card = bed.spawn("pn532", [sys.executable, os.path.join(HERE, "..", "..", "nfc",
                                                                "pn532_emu.py"),
                                   "card", "--link", link, "--absent"])
        card.wait_line(r"^ready ", 10)
        bed.observer_sections = {"sim": {"socket": bed.sim_socket},
                                 "nfc": {"device": "pn532_uart:" + link}}
        bed.write_observer_config()
        bed.observer = bed.spawn("observer", [bed.bin("srup-observerd"), "--config",
                                              bed.observer_config],
                                 env=dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=bus.address))
        pump(lambda: any("connected to the broker" in line for _, line in bed.observer.lines),
             30, "observer up")
        pump(lambda: bluez.app is not None, 10, "RegisterApplication")
        # The stand-in answers only while its main loop runs: pump it
        # until the bench is done.
        proc = subprocess.Popen(pending_argv(bench, bed, count), stdout=subprocess.PIPE,
                                text=True)
        lines = []
        import threading
        reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
        reader.start()
        pump(lambda: proc.poll() is not None, 600, "the pending bench")
        reader.join(5)
        text = "".join(lines)
        listening = {name: bed.observer.count(r"%s channel listening" % name) > 0
                     for name in channels}
        text += "  channels listening during the run: %s (BLE advertised: %s)\n" % (
            ", ".join(n for n, up in listening.items() if up),
            "yes" if any(e["kind"] == "register_adv" for e in bluez.events) else "no")
        return proc.returncode, text
    finally:
        bed.close()
        bluez.close()
        bus.stop()


def rss_pending_mib(text):
    m = re.search(r"RSS ([0-9.]+) MiB idle, ([0-9.]+) MiB with", text)
    return (float(m.group(1)), float(m.group(2))) if m else (None, None)


def compare_channels(build, bench, count):
    rc = 0
    results = {}
    for channels in (["sim"], ["ble", "nfc", "sim"]):
        r, text = pending_on(build, bench, count, channels)
        rc |= r
        print("---- observer on %s ----\n%s" % (" ".join(channels), text), end="", flush=True)
        results[" ".join(channels)] = rss_pending_mib(text)
    one, three = results["sim"], results["ble nfc sim"]
    if None in one or None in three:
        print("no RSS figures to compare", file=sys.stderr)
        return 1
    print("RSS with %d pending: one channel %.1f MiB, three channels %.1f MiB: %+.1f%% "
          "(idle: %.1f -> %.1f MiB)" % (count, one[1], three[1],
                                        100.0 * (three[1] - one[1]) / one[1], one[0], three[0]))
    return rc


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    bench = os.path.join(os.path.abspath(build), "tests", "bench", "join", "srup-bench-join")
    if len(sys.argv) > 2 and sys.argv[2] == "--channels":
        count = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
        return compare_channels(build, bench, count)
    joins = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    rc = 0
    with JoinBed(build, window_seconds=600).start() as bed:
        rc |= subprocess.run([bench, "latency", "--config", bed.device_config, "--observer",
                              id16(bed.observer_id), "--joins", str(joins)]).returncode
    if count == 0:
        return rc
    with JoinBed(build, window_seconds=600, max_pending=count) as bed:
        bed.setup()
        bed.start_observer()
        rc |= subprocess.run(pending_argv(bench, bed, count)).returncode
    return rc


if __name__ == "__main__":
    sys.exit(main())
