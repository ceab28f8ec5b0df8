#!/usr/bin/env python3
"""The observed join over NFC, end to end, through libnfc's real pn532_uart
driver and a real Mosquitto.

join_* cases: srup-join-peer (the server), srup-observerd (channel nfc) on
one emulated PN532 and srup-device on another, the two chips sharing one
emulated field, so the observer's reader reads the tag the device's libnfc
emulates.

third_party_* cases: the test plays the server (srup-msg, mosquitto_pub and
mosquitto_sub, as a third party would) and runs its own emulated PN532 as a
separate program (pn532_emu.py card, driven over its control socket) that
serves a Type 4 Tag to a running srup-observerd.

  test_nfc_join.py BUILD_DIR CASE
"""
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import pn532_emu as emu  # noqa: E402
from joinbed import JoinBed, RawServer, id16, topic_id  # noqa: E402

VALID, INVALID, FAIL = 0x60, 0x6E, 0x6F
POLL_MS = 200  # the default poll period: the figures below are what a user gets


class Failed(Exception):
    pass


def check(cond, what, bed=None):
    if not cond:
        if bed:
            for p in bed.procs:
                print("---- %s output ----\n%s" % (p.name, p.text()))
        raise Failed(what)


def nfc_bed(build, **kw):
    """A JoinBed whose observer and device each have an emulated PN532, in
    one field."""
    bed = JoinBed(build, channel="nfc", **kw)
    obs_link = bed.path("observer-pn532")
    dev_link = bed.path("device-pn532")
    bed.observer_sections = {"nfc": {"device": "pn532_uart:" + obs_link, "poll_ms": POLL_MS}}
    bed.device_sections = {"nfc": {"device": "pn532_uart:" + dev_link}}
    bed.field = emu.Emulator.field(obs_link, dev_link).start()
    return bed


def close_bed(bed):
    bed.close()
    bed.field.close()


def spawn_join_print_value(bed):
    """srup-device join that prints its value instead of presenting it."""
    dev = bed.spawn("device", [bed.bin("srup-device"), "--config", bed.device_config, "join",
                               "--observer", topic_id(bed.observer_id), "--channel", "nfc",
                               "--print-value"])
    _, m = dev.wait_line(r"confirmation value: ([0-9a-f]+)", 30)
    return dev, bytes.fromhex(m.group(1))


# ---- Through the peer, the device presenting through its own PN532 --------------


def case_join_valid(build):
    bed = nfc_bed(build)
    try:
        bed.start()
        rc, out = bed.join(timeout=60)
        check(rc == 0 and "JOIN_SUCCESS" in out, "device did not join: rc=%d\n%s" % (rc, out),
              bed)
        o = bed.outcome(10)
        check(o["observer_status"] == "0x60" and o["status"] == "0x50", "peer saw %r" % o, bed)
        idx, _ = bed.observer.wait_line(r"observation device=%s outcome=valid status=0x60 "
                                        "attempts=0" % id16(bed.device_id), 5)
        activated = bed.field.wait_event("activated", timeout=1)
        check(activated, "the reader met the tag", bed)
        # The device's emulated tag enters the field when its libnfc asks
        # for target mode; the observer logs the outcome as it publishes.
        t_field = bed.field.wait_event("tag-in-field", timeout=1)[0]["t"]
        t_decided = bed.observer.lines[idx][0]
        print("device tag in the field -> observer publishes RESPONSE: %.0f ms (reader "
              "selected the tag after %.0f ms; poll_ms %d)" %
              ((t_decided - t_field) * 1000, (activated[0]["t"] - t_field) * 1000, POLL_MS))
    finally:
        close_bed(bed)


def case_join_invalid(build):
    bed = nfc_bed(build, max_attempts=3)
    try:
        bed.start()
        dev, right = spawn_join_print_value(bed)
        # Someone else's tag, with values that are not the device's: the
        # repeated one is no new attempt.
        wrong = [b"0" * 32, b"1" * 32, b"0" * 32, b"2" * 32]
        for w in wrong:
            rc, result, out = bed.present(w, channel="nfc", timeout=10)
            check(rc == 0 and result == 0x00, "present on NFC: %s" % out, bed)
        o = bed.outcome(20)
        check(o["observer_status"] == "0x6e" and o["status"] == "0x5e", "peer saw %r" % o, bed)
        check(dev.wait(20) == 1 and "JOIN_REFUSED" in dev.text(), "device not refused", bed)
        bed.observer.wait_line(r"outcome=invalid status=0x6e attempts=3", 5)
        check(right not in wrong, "the device's value was never presented", bed)
    finally:
        close_bed(bed)


def case_join_fail(build):
    bed = nfc_bed(build, window_seconds=2)
    try:
        bed.start()
        t0 = time.monotonic()
        dev, _ = spawn_join_print_value(bed)
        o = bed.outcome(20)
        check(o["observer_status"] == "0x6f" and o["status"] == "0x5f", "peer saw %r" % o, bed)
        check(time.monotonic() - t0 >= 2, "ended before the deadline", bed)
        check(dev.wait(20) == 1 and "JOIN_FAIL" in dev.text(), "device not failed", bed)
        check(bed.field.wait_event("activated", timeout=0.1) is None,
              "nothing was in the field", bed)
    finally:
        close_bed(bed)


# ---- A third party's server and PN532 against a running srup-observerd --------


class CardProgram:
    """pn532_emu.py card as a program of its own, driven over its control
    socket (what a third party's emulator would be)."""

    def __init__(self, bed, frames, absent=True):
        self.link = bed.path("third-party-pn532")
        self.control = bed.path("third-party-pn532.ctl")
        argv = [sys.executable, os.path.join(HERE, "pn532_emu.py"), "card", "--link",
                self.link, "--control", self.control]
        for f in frames:
            argv += ["--frame", f.hex()]
        if absent:
            argv.append("--absent")
        self.proc = bed.spawn("pn532", argv)
        self.proc.wait_line(r"^ready ", 10)

    def cmd(self, name):
        ans = emu.control_request(self.control, {"cmd": name})
        if not ans or not ans.get("ok"):
            raise Failed("pn532 control %s: %r" % (name, ans))
        return ans["status"]


def third_party_bed(build, frames_for, **kw):
    """srup-observerd (channel nfc) reading a third party's emulated PN532
    that serves frames_for(device_id); the test is the server."""
    bed = JoinBed(build, channel="nfc", **kw)
    bed.setup()
    card = CardProgram(bed, frames_for(bed.device_id))
    bed.observer_sections = {"nfc": {"device": "pn532_uart:" + card.link, "poll_ms": POLL_MS}}
    bed.write_observer_config()
    bed.start_observer()
    server = RawServer(bed).subscribe()
    return bed, card, server


def observe(bed, server, value, token):
    """The server asks the observer to watch for value from the device;
    returns the subscriber's line index to read RESPONSEs from."""
    start = len(server.sub.lines)
    n = bed.observer.count(r"NFC reader .* open")
    server.publish_file(server.observe_request(bed.device_id, value, token))
    bed.observer.wait_line(r"OBSERVE_REQ for device %s accepted" % id16(bed.device_id), 10)
    # The reader is opened and polls only while an observation is pending.
    deadline = time.monotonic() + 10
    while bed.observer.count(r"NFC reader .* open") == n and time.monotonic() < deadline:
        time.sleep(0.02)
    return start


def status_of(r):
    return r.get("status")


def channel_state(bed):
    """The channel state srup-observerd reports on its control socket."""
    from obs_ops import ctl_json
    return ctl_json(bed, "status")[1]["channel"]["state"]


def case_third_party_valid(build):
    """0x60 for a valid frame. The time from tag presence (the card put in
    the field) to the RESPONSE seen on the broker is measured over several
    observations and printed."""
    value = os.urandom(32)
    bed = None
    try:
        bed, card, server = third_party_bed(
            build, lambda dev: [emu.confirmation_frame(dev, value)])
        delays = []
        for i in range(5):
            token = "third-party-%d" % i
            start = observe(bed, server, value, token)
            idle = bed.observer.count(r"nfc channel idle")
            time.sleep(0.1 * i)  # presence at various points of the poll period
            t_present = time.monotonic()
            card.cmd("present")
            r = server.response(15, start)
            t_response = server.sub.lines[r["_index"]][0]
            check(status_of(r) == VALID, "RESPONSE %r" % r, bed)
            check(bytes.fromhex(r["token"]).decode() == token, "token of %r" % r, bed)
            delays.append((t_response - t_present) * 1000)
            card.cmd("remove")
            deadline = time.monotonic() + 10
            while bed.observer.count(r"nfc channel idle") == idle and \
                    time.monotonic() < deadline:
                time.sleep(0.02)
        print("NFC tag presence -> RESPONSE on the broker (poll_ms %d), ms: %s; median %.0f, "
              "max %.0f" % (POLL_MS, " ".join("%.0f" % d for d in delays),
                            statistics.median(delays), max(delays)))
    finally:
        if bed:
            bed.close()


def case_third_party_invalid(build):
    """Three tags with three distinct wrong values, one per poll: 0x6E
    after max_attempts."""
    bed = None
    try:
        bed, card, server = third_party_bed(
            build, lambda dev: [emu.confirmation_frame(dev, w) for w in
                                (b"wrong-A" * 4, b"wrong-B" * 4, b"wrong-C" * 4)],
            max_attempts=3)
        start = observe(bed, server, os.urandom(32), "third-party-invalid")
        card.cmd("present")
        r = server.response(20, start)
        check(status_of(r) == INVALID, "RESPONSE %r" % r, bed)
        check(bytes.fromhex(r["token"]).decode() == "third-party-invalid", "token", bed)
        bed.observer.wait_line(r"outcome=invalid status=0x6e attempts=3", 5)
        check(card.cmd("status")["reads_complete"] >= 3, "three tags read", bed)
    finally:
        if bed:
            bed.close()


def case_third_party_nothing(build):
    """Nothing presented: 0x6F at the deadline, though the reader polled."""
    bed = None
    try:
        bed, card, server = third_party_bed(
            build, lambda dev: [emu.confirmation_frame(dev, b"x" * 16)], window_seconds=2)
        t0 = time.monotonic()
        start = observe(bed, server, os.urandom(32), "third-party-nothing")
        r = server.response(20, start)
        check(status_of(r) == FAIL, "RESPONSE %r" % r, bed)
        check(time.monotonic() - t0 >= 2, "answered before the deadline", bed)
        st = card.cmd("status")
        check(st["activations"] == 0 and st["chips"][0]["commands"] > 0,
              "the reader polled, nothing was there: %r" % st, bed)
    finally:
        if bed:
            bed.close()


def case_third_party_reader_lost(build):
    """The reader goes away during an observation: 0x6F at once (not at the
    60 s deadline); while it stays away a new observation fails at once
    too; once it is back, joins succeed again."""
    value = os.urandom(32)
    bed = None
    try:
        bed, card, server = third_party_bed(
            build, lambda dev: [emu.confirmation_frame(dev, value)], window_seconds=60)
        t0 = time.monotonic()
        start = observe(bed, server, value, "lost-1")
        card.cmd("unplug")
        r = server.response(20, start)
        check(status_of(r) == FAIL and time.monotonic() - t0 < 30,
              "RESPONSE %r after %.1f s" % (r, time.monotonic() - t0), bed)
        bed.observer.wait_line(r"nfc channel unavailable: NFC reader .* failed", 5)

        start = len(server.sub.lines)
        server.publish_file(server.observe_request(bed.device_id, value, "lost-2"))
        r = server.response(20, start)
        check(status_of(r) == FAIL and bytes.fromhex(r["token"]).decode() == "lost-2",
              "RESPONSE %r while the reader is away" % r, bed)
        bed.observer.wait_line(r"nfc channel unavailable: cannot open NFC device .*No such "
                               r"file or directory", 5)
        check(channel_state(bed) == "unavailable", "status hides the lost reader", bed)

        card.cmd("plug")
        start = observe(bed, server, value, "lost-3")
        card.cmd("present")
        r = server.response(20, start)
        check(status_of(r) == VALID and bytes.fromhex(r["token"]).decode() == "lost-3",
              "RESPONSE %r once the reader is back" % r, bed)
        check(channel_state(bed) in ("idle", "listening"), "status: reader still lost", bed)
    finally:
        if bed:
            bed.close()


def case_third_party_shutdown_while_polling(build):
    """SIGTERM while the reader thread polls: the daemon exits cleanly and
    promptly (it is not killed after close()'s grace period)."""
    bed = None
    try:
        bed, card, server = third_party_bed(
            build, lambda dev: [emu.confirmation_frame(dev, b"y" * 16)], window_seconds=60)
        observe(bed, server, os.urandom(32), "shutdown")
        time.sleep(0.5)
        check(card.cmd("status")["chips"][0]["polls"] > 0, "the reader polls", bed)
        rc = bed.stop_observer()
        check(rc == 0, "srup-observerd exit status %r" % rc, bed)
    finally:
        if bed:
            bed.close()


CASES = {k[len("case_"):]: v for k, v in globals().items() if k.startswith("case_")}


def main():
    if len(sys.argv) != 3 or sys.argv[2] not in CASES:
        sys.stderr.write("usage: %s BUILD_DIR CASE\ncases: %s\n" %
                         (sys.argv[0], " ".join(sorted(CASES))))
        return 2
    try:
        CASES[sys.argv[2]](sys.argv[1])
    except (Failed, TimeoutError, AssertionError) as e:
        print("FAIL %s: %s" % (sys.argv[2], e))
        print("0 passed, 1 failed")
        return 1
    print("1 passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
