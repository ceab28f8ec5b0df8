#!/usr/bin/env python3
"""srup-observerd on the BLE channel while bluetoothd goes away and comes
back: the BlueZ stand-in (bluez_standin.py) on a private system bus, a real
Mosquitto, the test playing the C2 server (RawServer).

The channel-level cases (BlueZ leaving and returning within the grace
period, the adapter removed and added, the grace expiring) are in
test_ble_observer.py; this one checks what the daemon makes of it: a
pending observation answered 0x6F once the grace period is over, the
control socket's channel state, and joins working again once BlueZ is back.

usage: test_ble_daemon.py BUILD_DIR
"""
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from bluez_standin import FakeBluez, PrivateBus, frame, pump  # noqa: E402
from joinbed import JoinBed, RawServer, check, id16  # noqa: E402
from obs_ops import ctl_json, responses  # noqa: E402

VALID, FAIL = 0x60, 0x6F
GRACE_SECONDS = 10  # the channel's default: bluez_grace_seconds


def line_seen(proc, pattern, start=0):
    rx = re.compile(pattern)
    return any(rx.search(line) for _, line in proc.lines[start:])


def channel_state(bed):
    return ctl_json(bed, "status")[1]["channel"]["state"]


def wait_response(raw, token, timeout):
    """Pumps the stand-in's main loop until the RESPONSE for token came."""
    found = {}

    def arrived():
        found.update((bytes.fromhex(r["token"]).decode(), r["status"]) for r in responses(raw))
        return token in found
    pump(arrived, timeout, "RESPONSE for " + token)
    return found[token]


def observe(bed, raw, dev, value, token):
    start = len(bed.observer.lines)
    raw.publish_file(raw.observe_request(dev, value, token))
    pump(lambda: line_seen(bed.observer, r"OBSERVE_REQ for device %s accepted" % id16(dev),
                           start), 30, "OBSERVE_REQ accepted")


def main():
    build = sys.argv[1]
    bus = PrivateBus()
    bluez = FakeBluez(bus.address)
    bed = JoinBed(build, channel="ble")
    try:
        bed.setup()
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=bus.address)
        bed.observer = bed.spawn("observer", [bed.bin("srup-observerd"), "--config",
                                              bed.observer_config], env=env)
        pump(lambda: line_seen(bed.observer, r"connected to the broker"), 30, "observer up")
        pump(lambda: bluez.app is not None, 10, "RegisterApplication")
        raw = RawServer(bed).subscribe()

        # BlueZ there: a join over the stand-in's central.
        observe(bed, raw, 0xB1, b"ble-value-one-16", "tok-1")
        pump(lambda: bluez.adv is not None, 10, "advertising")
        check(bluez.write(frame(0xB1, b"ble-value-one-16")) is None, "write refused", bed)
        check(wait_response(raw, "tok-1", 20) == VALID, "not valid", bed)

        # bluetoothd stops with an observation pending: after the grace
        # period the observation is answered 0x6F, and status says so.
        observe(bed, raw, 0xB2, b"ble-value-two-16", "tok-2")
        t0 = time.monotonic()
        bluez.close()
        bluez = None
        check(wait_response(raw, "tok-2", GRACE_SECONDS + 30) == FAIL, "not 0x6F", bed)
        check(time.monotonic() - t0 >= GRACE_SECONDS - 1, "failed within the grace period", bed)
        check(line_seen(bed.observer, r"ble channel unavailable"), "no log line", bed)
        check(channel_state(bed) == "unavailable", "status: %s" % channel_state(bed), bed)

        # bluetoothd is back: the daemon registers again and joins work.
        bluez = FakeBluez(bus.address)
        pump(lambda: bluez.app is not None, 20, "RegisterApplication after BlueZ returned")
        observe(bed, raw, 0xB3, b"ble-value-3-16by", "tok-3")
        pump(lambda: bluez.adv is not None, 10, "advertising after BlueZ returned")
        check(bluez.write(frame(0xB3, b"ble-value-3-16by")) is None, "write refused", bed)
        check(wait_response(raw, "tok-3", 20) == VALID, "not valid after return", bed)
        check(channel_state(bed) in ("idle", "listening"), "status after return", bed)
        check(bed.observer.p.poll() is None, "observer died", bed)
    finally:
        bed.close()
        if bluez:
            bluez.close()
        bus.stop()
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
