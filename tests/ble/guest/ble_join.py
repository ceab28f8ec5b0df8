#!/usr/bin/env python3
"""The observed join over BLE, end to end, in the guest: real bluetoothd
with two btvirt controllers, a private Mosquitto, srup-join-peer (the
server), srup-observerd (channel ble, hci0) and srup-device (hci1).

Cases: a valid join (0x60), wrong values until max_attempts (0x6E), no
device presenting (0x6F), and a central written from the spec alone
(spec_central.py, python3-dbus) presenting the device's value (0x60) and
then wrong ones, one of them a 256-byte value by prepared ("reliable")
writes (0x6E). Each checks that the observer advertised only while an
observation was pending, and the valid case measures the time from the
device's write to the observer publishing its RESPONSE.

  ble_join.py BUILD_DIR OUT_DIR
"""
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "lib"))
from joinbed import JoinBed, id16, topic_id  # noqa: E402

VALID, INVALID, FAIL = 0x60, 0x6E, 0x6F

REQUEST = re.compile(r"OBSERVE_REQ for device \S+ accepted")
OUTCOME = re.compile(r"observation device=\S+ outcome=")
ADV_ON = re.compile(r"BLE: advertising started")
ADV_OFF = re.compile(r"BLE: advertising stopped")


class Failed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failed(what)


def log(text):
    print("ble_join: " + text, flush=True)


def advertising_timeline(observer, t0):
    """Checks, over the observer's log, that the advertisement is
    registered only while an observation is pending and that each request
    brought it up; returns the timeline as text."""
    pending = 0
    advertising = False
    seen_request_adv = True
    timeline = []
    for t, line in observer.lines:
        event = None
        if REQUEST.search(line):
            pending += 1
            seen_request_adv = advertising
            event = "request (pending %d)" % pending
        elif OUTCOME.search(line):
            pending -= 1
            check(seen_request_adv, "an observation ended without the advertisement up: " + line)
            event = "outcome (pending %d)" % pending
        elif ADV_ON.search(line):
            check(pending > 0, "advertising started with nothing pending: " + line)
            advertising = True
            seen_request_adv = True
            event = "advertising started"
        elif ADV_OFF.search(line):
            check(pending == 0, "advertising stopped while %d pending" % pending)
            advertising = False
            event = "advertising stopped"
        if event:
            timeline.append("  %8.2f s  %s" % (t - t0, event))
    check(not advertising or pending > 0, "still advertising with nothing pending")
    return "\n".join(timeline)


def wait_advertising_stopped(bed, start):
    bed.observer.wait_line(ADV_OFF.pattern, 10, start)


def case_valid(bed):
    mark = len(bed.observer.lines)
    peer_mark = len(bed.peer.lines)
    rc, out = bed.join(timeout=90)
    device = bed.procs[-1]
    check(rc == 0 and "JOIN_SUCCESS" in out, "device did not join: rc=%d\n%s" % (rc, out))
    o = bed.outcome(20, peer_mark)
    check(o["observer_status"] == "0x60", "peer saw %r" % o)
    idx, _ = bed.observer.wait_line(r"observation device=%s outcome=valid status=0x60"
                                    % id16(bed.device_id), 10, mark)
    t_published = bed.observer.lines[idx][0]
    _, _ = device.wait_line(r"writing the confirmation frame", 1)
    writes = [t for t, line in device.lines if "writing the confirmation frame" in line]
    t_peer = bed.peer.lines[o["_index"]][0]
    wait_advertising_stopped(bed, idx)
    ms = (t_published - writes[-1]) * 1000
    log("case valid: device write -> observer publishes RESPONSE %.0f ms; -> server has it %.0f ms"
        % (ms, (t_peer - writes[-1]) * 1000))
    return ms


def case_invalid(bed):
    mark = len(bed.observer.lines)
    peer_mark = len(bed.peer.lines)
    dev = bed.spawn("device", [bed.bin("srup-device"), "--config", bed.device_config, "join",
                               "--observer", topic_id(bed.observer_id), "--channel", "ble",
                               "--print-value", "--timeout", "120"])
    _, m = dev.wait_line(r"confirmation value: ([0-9a-f]+)", 60)
    right = bytes.fromhex(m.group(1))
    bed.observer.wait_line(ADV_ON.pattern, 20, mark)
    wrong = [b"wrong value %d" % i for i in range(bed.max_attempts)]
    check(right not in wrong, "a wrong value happens to be the right one")
    for w in wrong:
        rc, result, out = bed.present(w, channel="ble", timeout=30)
        check(rc == 0 and result == INVALID, "present of a wrong value: %s" % out)
    o = bed.outcome(20, peer_mark)
    check(o["observer_status"] == "0x6e", "peer saw %r" % o)
    check(dev.wait(30) == 1 and "JOIN_REFUSED" in dev.text(), "device not refused:\n" + dev.text())
    idx, _ = bed.observer.wait_line(r"outcome=invalid status=0x6e attempts=%d"
                                    % bed.max_attempts, 10, mark)
    wait_advertising_stopped(bed, idx)
    log("case invalid: %d distinct wrong values over BLE -> 0x6E" % bed.max_attempts)


def spec_central(bed, value, write_type="request"):
    argv = ["/usr/bin/python3", os.path.join(HERE, "spec_central.py"), "--adapter", "hci1",
            "--observer-id", id16(bed.observer_id), "--device", id16(bed.device_id),
            "--value-hex", value.hex(), "--write-type", write_type, "--timeout", "40"]
    p = bed.spawn("central", argv)
    rc = p.wait(60)
    p._reader.join(5)
    return rc, p.text()


def join_printing_value(bed):
    dev = bed.spawn("device", [bed.bin("srup-device"), "--config", bed.device_config, "join",
                               "--observer", topic_id(bed.observer_id), "--channel", "ble",
                               "--print-value", "--timeout", "120"])
    _, m = dev.wait_line(r"confirmation value: ([0-9a-f]+)", 60)
    return dev, bytes.fromhex(m.group(1))


def case_third_party(bed):
    mark = len(bed.observer.lines)
    peer_mark = len(bed.peer.lines)
    dev, right = join_printing_value(bed)
    bed.observer.wait_line(ADV_ON.pattern, 20, mark)
    rc, out = spec_central(bed, right)
    check(rc == 0 and "result 0x60" in out, "spec central, right value: %s" % out)
    o = bed.outcome(20, peer_mark)
    check(o["observer_status"] == "0x60", "peer saw %r" % o)
    check(dev.wait(30) == 0 and "JOIN_SUCCESS" in dev.text(), "device not joined:\n" + dev.text())

    mark = len(bed.observer.lines)
    peer_mark = len(bed.peer.lines)
    dev, right = join_printing_value(bed)
    bed.observer.wait_line(ADV_ON.pattern, 20, mark)
    wrong = [(b"not it", "request"), (b"\xa5" * 256, "reliable"), (b"nor this", "request")]
    for value, how in wrong:
        check(value != right, "a wrong value happens to be the right one")
        rc, out = spec_central(bed, value, how)
        check(rc == 0 and "result 0x6e" in out,
              "spec central, %d-byte wrong value by %s write: %s" % (len(value), how, out))
    o = bed.outcome(20, peer_mark)
    check(o["observer_status"] == "0x6e", "peer saw %r" % o)
    check(dev.wait(30) == 1 and "JOIN_REFUSED" in dev.text(), "device not refused:\n" + dev.text())
    log("case third_party: spec central: right value -> 0x60; 3 wrong (one of 256 bytes by "
        "prepared writes) -> 0x6E")


def case_fail(bed):
    # A short window: the device learns its value but never presents it.
    bed.window_seconds = 4
    bed.write_observer_config()
    bed.stop_observer()
    bed.start_observer()
    bed.observer.wait_line(r"GATT application registered", 20)
    mark = len(bed.observer.lines)
    peer_mark = len(bed.peer.lines)
    dev = bed.spawn("device", [bed.bin("srup-device"), "--config", bed.device_config, "join",
                               "--observer", topic_id(bed.observer_id), "--channel", "ble",
                               "--print-value", "--timeout", "60"])
    dev.wait_line(r"confirmation value:", 60)
    o = bed.outcome(30, peer_mark)
    check(o["observer_status"] == "0x6f", "peer saw %r" % o)
    check(dev.wait(30) == 1, "device exit status for a failed join:\n" + dev.text())
    idx, _ = bed.observer.wait_line(r"outcome=expired status=0x6f", 10, mark)
    wait_advertising_stopped(bed, idx)
    log("case fail: nothing presented within the window -> 0x6F")


def main():
    build, out = sys.argv[1], sys.argv[2]
    t0 = time.monotonic()
    bed = JoinBed(build, channel="ble", window_seconds=60, max_attempts=3,
                  observer_sections={"ble": {"adapter": "hci0"}},
                  device_sections={"ble": {"adapter": "hci1"}}, verbose=True)
    passed = failures = 0
    try:
        bed.start()
        bed.observer.wait_line(r"GATT application registered", 20)
        check(bed.observer.count(ADV_ON.pattern) == 0, "advertising before any request")
        for name, case in (("valid", case_valid), ("invalid", case_invalid),
                           ("third_party", case_third_party), ("fail", case_fail)):
            t = time.monotonic()
            try:
                case(bed)
                log("advertisement timeline (this observer run):\n"
                    + advertising_timeline(bed.observer, t0))
                log("PASS %s (%.1f s)" % (name, time.monotonic() - t))
                passed += 1
            except (Failed, TimeoutError) as e:
                failures += 1
                log("FAIL %s: %s" % (name, e))
    except Exception as e:  # noqa: BLE001 - any set-up failure is reported, not raised
        failures += 1
        log("FAIL set-up: %s: %s" % (type(e).__name__, e))
    finally:
        bed.close()
    log("%d passed, %d failed" % (passed, failures))
    log("whole join test %.1f s" % (time.monotonic() - t0))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
