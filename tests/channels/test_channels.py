#!/usr/bin/env python3
"""One srup-observerd listening on several channels at once
(OBSERVATION-CHANNEL.md section 2, several channels): BLE through the
BlueZ stand-in on a private system bus, NFC through libnfc's pn532_uart
driver and an emulated PN532 (a third party's card program), and sim; a
real Mosquitto; the test plays the C2 server (RawServer).

  test_channels.py BUILD_DIR CASE

Cases:
  nfc_join_while_ble_pending   a join presented over NFC while another
                               device's observation waits over BLE
  wrong_ble_wrong_nfc_right_sim  0x60 with two distinct wrong values counted
  three_wrong_over_two_channels  0x6E; the same wrong value on two channels
                               is one attempt
  bluez_lost_nfc_decides       BlueZ gone past its grace period while NFC
                               listens: decided over NFC, not failed; BLE
                               listens again once BlueZ is back
  both_lost_fail               NFC reader and BlueZ both lost: 0x6F
"""
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
for sub in ("../ble", "../nfc", "../lib"):
    sys.path.insert(0, os.path.join(HERE, sub))
from bluez_standin import FakeBluez, PrivateBus, frame, pump  # noqa: E402
import pn532_emu as emu  # noqa: E402
from joinbed import Cases, JoinBed, RawServer, check, id16  # noqa: E402
from notify_socket import NotifySocket  # noqa: E402
from obs_ops import ctl, ctl_json, responses  # noqa: E402

VALID, INVALID, FAIL = 0x60, 0x6E, 0x6F
GRACE_SECONDS = 10  # the BLE channel's default bluez_grace_seconds
POLL_MS = 200

cases = Cases()


class Bed:
    """srup-observerd with channels (a list), the BlueZ stand-in, a third
    party's PN532 card program and a raw server."""

    def __init__(self, build, channels, max_attempts=3, window_seconds=120):
        self.bus = PrivateBus()
        self.bluez = FakeBluez(self.bus.address)
        self.jb = JoinBed(build, channel=" ".join(channels), max_attempts=max_attempts,
                          window_seconds=window_seconds)
        self.notify = None
        self.card = None
        try:
            self.jb.setup()
            sections = {"metrics": {"file": self.jb.path("srup.prom")}}
            if "nfc" in channels:
                self.card_link = self.jb.path("third-party-pn532")
                self.card_control = self.jb.path("third-party-pn532.ctl")
                self.card = self.jb.spawn("pn532", [
                    sys.executable, os.path.join(HERE, "..", "nfc", "pn532_emu.py"), "card",
                    "--link", self.card_link, "--control", self.card_control, "--absent"])
                self.card.wait_line(r"^ready ", 10)
                sections["nfc"] = {"device": "pn532_uart:" + self.card_link,
                                   "poll_ms": POLL_MS}
            if "sim" in channels:
                sections["sim"] = {"socket": self.jb.sim_socket}
            self.jb.observer_sections = sections
            self.jb.write_observer_config()
            self.notify = NotifySocket(self.jb.path("notify.sock"))
            env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.bus.address,
                       NOTIFY_SOCKET=self.notify.path)
            self.obs = self.jb.spawn("observer", [self.jb.bin("srup-observerd"), "--config",
                                                  self.jb.observer_config], env=env)
            self.jb.observer = self.obs
            self.wait(lambda: self.seen(r"connected to the broker"), 30, "observer up")
            if "ble" in channels:
                self.wait(lambda: self.bluez.app is not None, 10, "RegisterApplication")
            self.raw = RawServer(self.jb).subscribe()
        except BaseException:
            self.close()
            raise

    # ---- waiting (the stand-in answers only while its main loop runs) ----
    def wait(self, cond, timeout, what):
        try:
            pump(cond, timeout, what)
        except AssertionError as e:
            check(False, str(e), self.jb)

    def pause(self, seconds):
        end = time.monotonic() + seconds
        self.wait(lambda: time.monotonic() >= end, seconds + 1, "a pause")

    def seen(self, pattern, start=0):
        rx = re.compile(pattern)
        return any(rx.search(line) for _, line in self.obs.lines[start:])

    def mark(self):
        return len(self.obs.lines)

    # ---- the server's side ----
    def observe(self, dev, value, token):
        start = self.mark()
        self.raw.publish_file(self.raw.observe_request(dev, value, token))
        self.wait(lambda: self.seen(r"OBSERVE_REQ for device %s accepted" % id16(dev), start),
                  30, "OBSERVE_REQ for %x accepted" % dev)

    def answers(self):
        return {bytes.fromhex(r["token"]).decode(): r["status"] for r in responses(self.raw)}

    def wait_answer(self, token, timeout):
        found = {}

        def arrived():
            found.update(self.answers())
            return token in found
        self.wait(arrived, timeout, "RESPONSE for " + token)
        return found[token]

    # ---- the channels ----
    def ble_write(self, dev, value):
        """A central writes a frame; returns the Result characteristic."""
        self.wait(lambda: self.bluez.adv is not None, 15, "advertising")
        err = self.bluez.write(frame(dev, value))
        check(err is None, "BLE write refused: %s" % err, self.jb)
        return self.bluez.read("0fac6e76-acf3-451f-9915-f51fe07097ba")[0]

    def card_cmd(self, obj):
        ans = emu.control_request(self.card_control, obj)
        check(ans and ans.get("ok"), "pn532 control %r: %r" % (obj, ans), self.jb)
        return ans["status"]

    def nfc_present(self, dev, value, expect):
        """A tag with (dev, value) on the reader until the daemon compared
        it ("value matches" / "does not match", over nfc); then removed."""
        start = self.mark()
        self.card_cmd({"cmd": "tags", "tags": [{"frame": emu.confirmation_frame(dev, value).hex()}]})
        self.card_cmd({"cmd": "present"})
        self.wait(lambda: self.seen(r"frame for device %s: %s \(nfc\)" % (id16(dev), expect),
                                    start), 20, "the NFC frame compared")
        self.card_cmd({"cmd": "remove"})

    def sim_present(self, dev, value):
        rc, result, out = self.jb.present(value, device_id=dev, channel="sim", timeout=10)
        check(result is not None, "sim present: %s" % out, self.jb)
        return result

    def status(self):
        return ctl_json(self.jb, "status")[1]

    def channel_states(self):
        return {c["kind"]: c["state"] for c in self.status()["channels"]}

    def audit(self):
        import json
        path = self.jb.path("observer-state", "audit.log")
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]

    def audit_of(self, dev):
        recs = []
        self.wait(lambda: recs.extend(r for r in self.audit() if r["device"] == id16(dev)) or recs,
                  10, "audit record for %x" % dev)
        return recs[-1]

    def metrics(self):
        path = self.jb.path("srup.prom")
        values = {}
        if os.path.exists(path):
            with open(path) as f:
                for line in f:
                    if not line.startswith("#") and " " in line:
                        k, v = line.rsplit(" ", 1)
                        values[k] = float(v)
        return values

    def wait_metric(self, name, value):
        self.wait(lambda: self.metrics().get(name) == value, 20, "%s = %s" % (name, value))

    def close(self):
        self.jb.close()
        if self.notify:
            self.notify.close()
        if self.bluez:
            self.bluez.close()
        self.bus.stop()


@cases.case
def nfc_join_while_ble_pending(build):
    """Device A's observation waits while BLE advertises; device B's join
    is presented over NFC and decided at once; A is then decided over BLE.
    Each outcome names its channel (log, audit, metrics)."""
    bed = Bed(build, ["ble", "nfc", "sim"])
    try:
        # --check-config checks every listed channel (BlueZ on the bus, the
        # reader's device node) and names them all.
        import subprocess
        out = subprocess.run([bed.jb.bin("srup-observerd"), "--config", bed.jb.observer_config,
                              "--check-config"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, timeout=60,
                             env=dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=bed.bus.address))
        check(out.returncode == 0 and out.stdout.rstrip().endswith(
            "configuration valid (observer %s, channels ble, nfc, sim)" % id16(bed.jb.observer_id)),
            "--check-config: %d\n%s%s" % (out.returncode, out.stdout, out.stderr), bed.jb)
        a_value, b_value = b"value-of-device-A-0123456789abcd", b"value-of-device-B-0123456789abcd"
        bed.observe(0xA1, a_value, "tok-A")
        bed.wait(lambda: bed.bluez.adv is not None, 15, "advertising for A")
        states = bed.channel_states()
        check(states == {"ble": "listening", "nfc": "listening", "sim": "listening"},
              "channel states %r" % states, bed.jb)
        check(bed.status()["channel"] == {"kind": "ble nfc sim", "state": "listening"},
              "status channel %r" % bed.status()["channel"], bed.jb)
        rc, text, _ = ctl(bed.jb, "status")
        check(re.findall(r"^  channel +(\w+) \((\w+)\)$", text, re.M) ==
              [("ble", "listening"), ("nfc", "listening"), ("sim", "listening")],
              "srup-observerctl status:\n" + text, bed.jb)
        bed.wait(lambda: bed.notify.status() == "broker connected to %s; channels ble listening, "
                 "nfc listening, sim listening; 1 pending" % bed.jb.broker_url, 10,
                 "STATUS= naming each channel")

        bed.observe(0xB2, b_value, "tok-B")
        bed.nfc_present(0xB2, b_value, "value matches")
        check(bed.wait_answer("tok-B", 20) == VALID, "B not valid", bed.jb)
        check("tok-A" not in bed.answers(), "A answered with B", bed.jb)
        check(bed.seen(r"observation device=%s outcome=valid status=0x60 attempts=0 "
                       r"duration_ms=\d+ channel=nfc" % id16(0xB2)), "log line for B", bed.jb)
        check(bed.audit_of(0xB2)["channel"] == "nfc", "audit of B", bed.jb)

        # A still pending: BLE still advertises, and decides it.
        check(bed.bluez.adv is not None, "BLE stopped advertising while A waits", bed.jb)
        check(bed.ble_write(0xA1, a_value) == VALID, "BLE Result", bed.jb)
        check(bed.wait_answer("tok-A", 20) == VALID, "A not valid", bed.jb)
        check(bed.audit_of(0xA1)["channel"] == "ble", "audit of A", bed.jb)
        bed.wait_metric('srup_observer_channel_outcomes_total{channel="nfc",outcome="valid"}', 1)
        bed.wait_metric('srup_observer_channel_outcomes_total{channel="ble",outcome="valid"}', 1)
        bed.wait_metric('srup_observer_channel_frames_total{channel="ble",result="match"}', 1)
        bed.wait_metric('srup_observer_channel_frames_total{channel="sim",result="match"}', 0)
        # None pending: every channel stops.
        bed.wait(lambda: bed.bluez.adv is None, 10, "advertising stopped")
        bed.wait(lambda: bed.channel_states() == {"ble": "idle", "nfc": "idle", "sim": "idle"},
                 10, "every channel idle")
    finally:
        bed.close()


@cases.case
def wrong_ble_wrong_nfc_right_sim(build):
    """A wrong value over BLE, another over NFC, the right one over sim:
    0x60, two distinct wrong values counted for the observation."""
    bed = Bed(build, ["ble", "nfc", "sim"])
    try:
        right = b"the-right-value-for-device-c3-32"
        bed.observe(0xC3, right, "tok-C")
        check(bed.ble_write(0xC3, b"wrong-over-ble-wrong-over-ble-32") == INVALID,
              "BLE Result after a wrong value", bed.jb)
        bed.nfc_present(0xC3, b"wrong-over-nfc-wrong-over-nfc-32", "value does not match")
        check("tok-C" not in bed.answers(), "answered before the right value", bed.jb)
        check(bed.sim_present(0xC3, right) == VALID, "sim result", bed.jb)
        check(bed.wait_answer("tok-C", 20) == VALID, "not 0x60", bed.jb)
        rec = bed.audit_of(0xC3)
        check(rec["attempts"] == 2 and rec["channel"] == "sim" and rec["outcome"] == "valid",
              "audit %r" % rec, bed.jb)
        check(bed.seen(r"observation device=%s outcome=valid status=0x60 attempts=2 "
                       r"duration_ms=\d+ channel=sim" % id16(0xC3)), "log line", bed.jb)
        bed.wait_metric('srup_observer_channel_frames_total{channel="ble",result="mismatch"}', 1)
        bed.wait_metric('srup_observer_channel_frames_total{channel="sim",result="match"}', 1)
        bed.wait_metric('srup_observer_frames_total{result="mismatch"}', 2)
    finally:
        bed.close()


@cases.case
def three_wrong_over_two_channels(build):
    """max_attempts 3: W1 over BLE, W1 again over NFC (the same value: no
    new attempt), W2 over NFC, W3 over BLE: 0x6E with three attempts."""
    bed = Bed(build, ["ble", "nfc", "sim"], max_attempts=3)
    try:
        w1, w2, w3 = (b"wrong-one-wrong-one-wrong-one-32", b"wrong-two-wrong-two-wrong-two-32",
                      b"wrong-3ee-wrong-3ee-wrong-3ee-32")
        bed.observe(0xD4, b"the-right-value-for-device-d4-32", "tok-D")
        check(bed.ble_write(0xD4, w1) == INVALID, "BLE Result W1", bed.jb)
        bed.nfc_present(0xD4, w1, "value does not match")
        bed.nfc_present(0xD4, w2, "value does not match")
        bed.pause(0.5)
        check("tok-D" not in bed.answers(), "0x6E before the third distinct value", bed.jb)
        check(bed.ble_write(0xD4, w3) == INVALID, "BLE Result W3", bed.jb)
        check(bed.wait_answer("tok-D", 20) == INVALID, "not 0x6E", bed.jb)
        rec = bed.audit_of(0xD4)
        check(rec["attempts"] == 3 and rec["outcome"] == "invalid" and rec["channel"] == "ble",
              "audit %r" % rec, bed.jb)
        bed.wait_metric('srup_observer_channel_outcomes_total{channel="ble",outcome="invalid"}',
                        1)
    finally:
        bed.close()


@cases.case
def bluez_lost_nfc_decides(build):
    """bluetoothd stops with an observation pending and stays away past the
    grace period: the observation goes on over NFC (and sim) and NFC decides
    it; the control socket, STATUS= and metrics show BLE unavailable. BlueZ
    back: BLE listens again and decides the next one."""
    bed = Bed(build, ["ble", "nfc", "sim"])
    try:
        value = b"value-of-device-e5-0123456789abc"
        bed.observe(0xE5, value, "tok-E")
        bed.wait(lambda: bed.bluez.adv is not None, 15, "advertising")
        start = bed.mark()
        t0 = time.monotonic()
        bed.bluez.close()
        bed.bluez = None
        bed.wait(lambda: bed.seen(r"ble channel unavailable: .*; pending observations go on "
                                  r"over nfc, sim", start), GRACE_SECONDS + 30,
                 "BLE reported unavailable")
        check(time.monotonic() - t0 >= GRACE_SECONDS - 1, "lost within the grace period",
              bed.jb)
        bed.pause(1)
        check("tok-E" not in bed.answers(), "the observation failed with BLE", bed.jb)
        states = bed.channel_states()
        check(states == {"ble": "unavailable", "nfc": "listening", "sim": "listening"},
              "states %r" % states, bed.jb)
        bed.wait(lambda: bed.notify.status() == "broker connected to %s; channels ble unavailable, "
                 "nfc listening, sim listening; 1 pending" % bed.jb.broker_url, 10,
                 "STATUS= with BLE unavailable")
        bed.wait_metric('srup_observer_channel_unavailable{channel="ble"}', 1)

        bed.nfc_present(0xE5, value, "value matches")
        check(bed.wait_answer("tok-E", 20) == VALID, "not decided over NFC", bed.jb)
        check(bed.audit_of(0xE5)["channel"] == "nfc", "audit channel", bed.jb)

        # BlueZ is back: BLE available again, listens for the next one.
        bed.bluez = FakeBluez(bed.bus.address)
        bed.wait(lambda: bed.bluez.app is not None, 20, "RegisterApplication again")
        bed.wait(lambda: bed.seen(r"ble channel available again"), 10, "BLE available")
        bed.wait(lambda: bed.channel_states()["ble"] == "idle", 10, "BLE idle again")
        value2 = b"value-of-device-f6-0123456789abc"
        bed.observe(0xF6, value2, "tok-F")
        check(bed.ble_write(0xF6, value2) == VALID, "BLE Result after return", bed.jb)
        check(bed.wait_answer("tok-F", 20) == VALID, "not valid over BLE after return", bed.jb)
    finally:
        bed.close()


@cases.case
def both_lost_fail(build):
    """ble nfc: the NFC reader is unplugged (the observation goes on over
    BLE), then BlueZ goes past its grace period: no channel can listen, the
    observation ends 0x6F."""
    bed = Bed(build, ["ble", "nfc"], window_seconds=300)
    try:
        bed.observe(0x17, b"value-of-device-17-0123456789abc", "tok-G")
        bed.wait(lambda: bed.bluez.adv is not None, 15, "advertising")
        start = bed.mark()
        bed.card_cmd({"cmd": "unplug"})
        bed.wait(lambda: bed.seen(r"nfc channel unavailable: .*; pending observations go on "
                                  r"over ble", start), 20, "NFC reported unavailable")
        bed.pause(1)
        check("tok-G" not in bed.answers(), "failed with NFC alone lost", bed.jb)
        t0 = time.monotonic()
        bed.bluez.close()
        bed.bluez = None
        check(bed.wait_answer("tok-G", GRACE_SECONDS + 30) == FAIL, "not 0x6F", bed.jb)
        check(time.monotonic() - t0 >= GRACE_SECONDS - 1, "failed within BLE's grace", bed.jb)
        check(bed.seen(r"ble channel unavailable: .*; pending observations fail \(no channel "
                       r"can listen\)"), "log line", bed.jb)
        rec = bed.audit_of(0x17)
        check(rec["outcome"] == "radio-lost" and rec["channel"] == "ble nfc", "audit %r" % rec,
              bed.jb)
        check(bed.status()["channel"]["state"] == "unavailable", "status", bed.jb)
        check(bed.obs.p.poll() is None, "observer died", bed.jb)
    finally:
        bed.close()


if __name__ == "__main__":
    sys.exit(cases.main(sys.argv))
