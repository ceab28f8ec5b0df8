#!/usr/bin/env python3
"""The observed join end to end over a real Mosquitto broker, sim channel.

Each case is one ctest test: test_observed_join.py BUILD_DIR CASE.
Real processes throughout: mosquitto, srup-join-peer (the C2 server's half),
srup-observerd, srup-device; where a case needs a server that misbehaves, the
test plays the server itself with srup-msg and mosquitto_pub (RawServer).
"""
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from joinbed import Cases, JoinBed, RawServer, check, id16, topic_id  # noqa: E402

VALID, INVALID, FAIL = 0x60, 0x6E, 0x6F
JOIN_SUCCESS, JOIN_REFUSED, JOIN_FAIL = 0x50, 0x5E, 0x5F
VECTORS = os.environ.get("SRUP_VECTORS_DIR", os.path.join(HERE, "..", "..", "..", "shared", "vectors"))

cases = Cases()
case = cases.case


def printed_value(proc):
    _, m = proc.wait_line(r"confirmation value: ([0-9a-f]+)", 30)
    return bytes.fromhex(m.group(1))


# ---- through the peer ----------------------------------------------------

@case
def valid(build):
    with JoinBed(build).start() as bed:
        rc, out = bed.join()
        check(rc == 0 and "JOIN_SUCCESS" in out, "device did not join: rc=%d\n%s" % (rc, out), bed)
        o = bed.outcome(10)
        check(o["observer_status"] == "0x60" and o["status"] == "0x50", "peer saw %r" % o, bed)
        check(o["device"] == id16(bed.device_id), "outcome for another device", bed)
        bed.observer.wait_line(r"observation device=%s outcome=valid status=0x60 attempts=0"
                               % id16(bed.device_id), 5)


@case
def invalid_after_max_attempts(build):
    with JoinBed(build, max_attempts=3).start() as bed:
        # The device asks, but an impostor presents: three distinct wrong values.
        dev = bed.spawn("device", [bed.bin("srup-device"), "--config", bed.device_config, "join",
                                   "--observer", topic_id(bed.observer_id), "--print-value"])
        right = printed_value(dev)
        wrong = [b"0" * 32, b"1" * 32, b"0" * 32, b"2" * 32]  # the repeat is no new attempt
        # The device prints its value when OBS_JOIN_RESP arrives; the
        # observer's OBSERVE_REQ may still be on its way: the first frame
        # is presented until it is compared.
        results = [bed.present_retry(wrong[0], bed.device_id)] + [bed.present(w)[1] for w in wrong[1:]]
        check(results == [INVALID] * 4, "frame results %r" % results, bed)
        o = bed.outcome(10)
        check(o["observer_status"] == "0x6e" and o["status"] == "0x5e", "peer saw %r" % o, bed)
        check(dev.wait(20) == 1 and "JOIN_REFUSED" in dev.text(), "device not refused", bed)
        # Late frames, even the right value, change nothing.
        check(bed.present(right)[1] == 0x00, "late frame compared", bed)
        bed.observer.wait_line(r"outcome=invalid status=0x6e attempts=3", 5)


@case
def wrong_then_right(build):
    with JoinBed(build).start() as bed:
        dev = bed.spawn("device", [bed.bin("srup-device"), "--config", bed.device_config, "join",
                                   "--observer", topic_id(bed.observer_id), "--print-value"])
        right = printed_value(dev)
        check(bed.present_retry(b"f" * 32, bed.device_id) == INVALID, "wrong value matched", bed)
        check(bed.present(right)[1] == VALID, "right value did not match", bed)
        o = bed.outcome(10)
        check(o["observer_status"] == "0x60" and o["status"] == "0x50", "peer saw %r" % o, bed)
        check(dev.wait(20) == 0, "device not joined", bed)
        bed.observer.wait_line(r"outcome=valid status=0x60 attempts=1", 5)


@case
def fail_at_deadline(build):
    with JoinBed(build, window_seconds=2).start() as bed:
        t0 = time.monotonic()
        dev = bed.spawn("device", [bed.bin("srup-device"), "--config", bed.device_config, "join",
                                   "--observer", topic_id(bed.observer_id), "--print-value"])
        printed_value(dev)
        o = bed.outcome(20)
        check(o["observer_status"] == "0x6f" and o["status"] == "0x5f", "peer saw %r" % o, bed)
        check(time.monotonic() - t0 >= 2, "ended before the deadline", bed)
        check(dev.wait(20) == 1 and "JOIN_FAIL" in dev.text(), "device not failed", bed)


@case
def broker_restart_during_observation(build):
    with JoinBed(build).start() as bed:
        dev = bed.spawn("device", [bed.bin("srup-device"), "--config", bed.device_config, "join",
                                   "--observer", topic_id(bed.observer_id), "--print-value"])
        right = printed_value(dev)
        bed.broker.stop()
        # Decided while the broker is down: the RESPONSE waits in the client.
        check(bed.present(right)[1] == VALID, "right value did not match", bed)
        time.sleep(1)
        bed.broker.restart()  # same port, sessions kept
        o = bed.outcome(60)
        check(o["observer_status"] == "0x60" and o["status"] == "0x50", "peer saw %r" % o, bed)
        check(dev.wait(60) == 0, "device did not hear the verdict", bed)


@case
def print_value_without_channel_section(build):
    """join --print-value presents nothing, so it needs no channel section:
    with a configuration of only [identity], [server], [mqtt] and [state]
    (the sections of the shipped device.conf) the join completes. Without
    --print-value the sim channel's section is still asked for."""
    with JoinBed(build).start() as bed:
        config = bed._ini(bed.path("print-only.conf"), {
            "identity": {"id": topic_id(bed.device_id), "private_key": bed.device_priv},
            "server": {"id": topic_id(bed.server_id), "public_key": bed.server_pub},
            "mqtt": {"broker": bed.broker_url},
            "state": {"dir": bed.path("device-state")},
        })
        rc, out = bed.device_command(["join", "--observer", topic_id(bed.observer_id)],
                                     config=config)
        check(rc == 3 and "[sim] socket: needed for --channel sim" in out,
              "join presenting on sim without [sim]: rc=%d\n%s" % (rc, out), bed)
        dev = bed.spawn("device", [bed.bin("srup-device"), "--config", config, "join",
                                   "--observer", topic_id(bed.observer_id), "--print-value"])
        right = printed_value(dev)
        # Presented by other means: here the sim channel, from another config.
        check(bed.present_retry(right, bed.device_id) == VALID, "printed value not valid", bed)
        o = bed.outcome(20)
        check(o["observer_status"] == "0x60" and o["status"] == "0x50", "peer saw %r" % o, bed)
        check(dev.wait(20) == 0 and "JOIN_SUCCESS" in dev.text(), "device: %s" % dev.text(),
              bed)


# ---- the test plays the server -------------------------------------------

@case
def third_party_reference_vector(build):
    """A reference-made OBSERVE_REQ (shared/vectors) drives the daemon."""
    with JoinBed(build) as bed:
        bed.setup()
        keys = bed.path("vector-keys")
        os.makedirs(keys)
        for name in ("observer_private.pem", "server_public.pem", "observer_public.pem"):
            shutil.copy(os.path.join(VECTORS, "keys", name), keys)
        os.chmod(os.path.join(keys, "observer_private.pem"), 0o600)
        bed.observer_id = 0xB1B2B3B4B5B6B7B8
        bed.server_id = 0x1122334455667788
        bed.observer_priv = os.path.join(keys, "observer_private.pem")
        bed.server_pub = os.path.join(keys, "server_public.pem")
        bed.observer_pub = os.path.join(keys, "observer_public.pem")
        bed.write_observer_config()
        bed.start_observer()
        raw = RawServer(bed).subscribe()
        raw.publish_file(os.path.join(VECTORS, "observe_request.bin"))
        bed.observer.wait_line(r"OBSERVE_REQ for device c1c2c3c4c5c6c7c8 accepted", 10)
        rc, result, out = bed.present(b"5e1f0c2d3b4a69788796a5b4c3d2e1f0",
                                      device_id=0xC1C2C3C4C5C6C7C8)
        check(result == VALID, "frame result %r: %s" % (result, out), bed)
        r = raw.response(10)
        check(r["_exit"] == 0 and r["signature_valid"] is True, "RESPONSE does not verify", bed)
        check(r["status"] == VALID, "status %r" % r["status"], bed)
        check(bytes.fromhex(r["token"]) == b"tok-observe_req", "token not echoed", bed)
        check(r["sender_id"] == id16(bed.observer_id), "sender is not the observer", bed)


@case
def supersede(build):
    with JoinBed(build) as bed:
        bed.setup()
        bed.start_observer()
        raw = RawServer(bed).subscribe()
        dev = 0x0000000000abcdef  # leading zeros: topic form "abcdef"
        raw.publish_file(raw.observe_request(dev, b"A" * 32, "token-first"))
        bed.observer.wait_line(r"OBSERVE_REQ for device %s accepted" % id16(dev), 10)
        raw.publish_file(raw.observe_request(dev, b"B" * 32, "token-second"))
        r = raw.response(10)
        check(r["status"] == FAIL and bytes.fromhex(r["token"]) == b"token-first",
              "first not superseded: %r" % r, bed)
        check(bed.present(b"A" * 32, device_id=dev)[1] == INVALID, "old value accepted", bed)
        check(bed.present(b"B" * 32, device_id=dev)[1] == VALID, "new value refused", bed)
        r = raw.response(10, r["_index"] + 1)
        check(r["status"] == VALID and bytes.fromhex(r["token"]) == b"token-second",
              "second not valid: %r" % r, bed)
        bed.observer.wait_line(r"outcome=superseded status=0x6f", 5)


@case
def max_pending_overflow(build):
    with JoinBed(build, max_pending=2) as bed:
        bed.setup()
        bed.start_observer()
        raw = RawServer(bed).subscribe()
        for i in (1, 2):
            raw.publish_file(raw.observe_request(0x100 + i, b"v%d" % i, "tok-%d" % i))
        raw.publish_file(raw.observe_request(0x103, b"v3", "tok-3"))
        r = raw.response(10)
        check(r["status"] == FAIL and bytes.fromhex(r["token"]) == b"tok-3",
              "overflow not answered 0x6F at once: %r" % r, bed)
        bed.observer.wait_line(r"observation device=%s outcome=overflow status=0x6f" % id16(0x103), 5)
        # The two held ones still work.
        check(bed.present(b"v1", device_id=0x101)[1] == VALID, "held observation lost", bed)
        r = raw.response(10, r["_index"] + 1)
        check(r["status"] == VALID and bytes.fromhex(r["token"]) == b"tok-1", "%r" % r, bed)


@case
def replay_ignored(build):
    with JoinBed(build) as bed:
        bed.setup()
        bed.start_observer()
        raw = RawServer(bed).subscribe()
        req = raw.observe_request(0x42, b"x" * 32, "tok-replay")
        raw.publish_file(req)
        bed.observer.wait_line(r"OBSERVE_REQ for device %s accepted" % id16(0x42), 10)
        check(bed.present(b"x" * 32, device_id=0x42)[1] == VALID, "no match", bed)
        r = raw.response(10)
        check(r["status"] == VALID, "%r" % r, bed)
        raw.publish_file(req)
        bed.observer.wait_line(r"dropped message on SRUP/%s: .*replay" % topic_id(bed.observer_id), 10)
        check(bed.present(b"x" * 32, device_id=0x42)[1] == 0x00, "replay made it pending", bed)
        # After a restart the replay is still refused (sequence IDs on disk).
        bed.stop_observer()
        bed.start_observer()
        raw.publish_file(req)
        bed.observer.wait_line(r"dropped message on SRUP/%s: .*replay" % topic_id(bed.observer_id), 10)
        check(bed.present(b"x" * 32, device_id=0x42)[1] == 0x00, "replay after restart", bed)
        check(raw.no_response(1.5, r["_index"] + 1), "a replay was answered", bed)


@case
def forged_or_foreign_sender_ignored(build):
    with JoinBed(build) as bed:
        bed.setup()
        bed.start_observer()
        raw = RawServer(bed).subscribe()
        # Signed with another key while claiming to be the server.
        raw.publish_file(raw.observe_request(0x51, b"s" * 32, "tok-forged", sign_key=bed.device_priv))
        bed.observer.wait_line(r"dropped message on .*signature", 10)
        # From a sender that is not the server (its key is not known either).
        raw.publish_file(raw.observe_request(0x52, b"s" * 32, "tok-foreign",
                                             sender_id=bed.device_id, sign_key=bed.device_priv))
        bed.observer.wait_line(r"dropped message on .*%s" % id16(bed.device_id), 10)
        for dev in (0x51, 0x52):
            check(bed.present(b"s" * 32, device_id=dev)[1] == 0x00, "forged request pending", bed)
        check(raw.no_response(1.5), "a forged request was answered", bed)
        # The server itself is still heard (the forgery did not poison its sequence).
        raw.publish_file(raw.observe_request(0x53, b"t" * 32, "tok-real"))
        check(bed.present_retry(b"t" * 32, 0x53) == VALID, "real request refused", bed)


@case
def garbage_while_in_flight(build):
    with JoinBed(build) as bed:
        bed.setup()
        bed.start_observer()
        raw = RawServer(bed).subscribe()
        raw.publish_file(raw.observe_request(0x77, b"g" * 32, "tok-in-flight"))
        bed.observer.wait_line(r"OBSERVE_REQ for device %s accepted" % id16(0x77), 10)
        valid = open(raw.observe_request(0x78, b"h" * 32, "tok-other"), "rb").read()
        hostile = [b"", b"\x05", b"\x00" * 19, os.urandom(300), valid[:40], valid[:-1],
                   valid + b"\x00", b"\x04" + valid[1:], valid[:1] + b"\x15" + valid[2:],
                   os.urandom(200 * 1024)]
        for payload in hostile:
            raw.publish_bytes(payload)
        bed.observer.wait_line(r"dropped message", 10)
        check(bed.observer.p.poll() is None, "observer died", bed)
        check(bed.present(b"g" * 32, device_id=0x77)[1] == VALID, "in-flight observation lost", bed)
        r = raw.response(10)
        check(r["status"] == VALID and bytes.fromhex(r["token"]) == b"tok-in-flight", "%r" % r, bed)


@case
def private_key_too_open(build):
    with JoinBed(build) as bed:
        bed.setup()
        os.chmod(bed.observer_priv, 0o644)
        obs = bed.start_observer(wait=False)
        rc = obs.wait(20)
        check(rc != 0, "observer started with a world-readable key", bed)
        check(re.search(r"too open|permissions", obs.text()), "no clear error:\n" + obs.text(), bed)
        out = subprocess.run([bed.bin("srup-observerd"), "--config", bed.observer_config,
                              "--check-config"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
        check(out.returncode != 0, "--check-config accepted a world-readable key", bed)


@case
def malformed_configs(build):
    with JoinBed(build) as bed:
        bed.setup()
        good = bed.observer_config_sections()
        classes = {
            "unknown section": ({"bogus": {"x": "1"}}, r"bogus"),
            "unknown key": ({"observation": {"colour": "red"}}, r"colour"),
            "bad id": ({"identity": {"id": "xyz"}}, r"\[identity\] id"),
            "id too long": ({"server": {"id": "1" * 17}}, r"\[server\] id"),
            "bad number": ({"observation": {"window_seconds": "soon"}}, r"window_seconds"),
            "zero attempts": ({"observation": {"max_attempts": "0"}}, r"max_attempts"),
            "bad channel": ({"observation": {"channel": "carrier-pigeon"}}, r"channel"),
            "missing broker": ({"mqtt": None}, r"broker"),
            "missing sim socket": ({"sim": None}, r"socket"),
            "missing key file": ({"identity": {"private_key": bed.path("nope.pem")}}, r"nope\.pem"),
        }
        for name, (change, want) in classes.items():
            sections = {k: dict(v) for k, v in good.items()}
            for sec, keys in change.items():
                if keys is None:
                    sections.pop(sec, None)
                else:
                    sections.setdefault(sec, {}).update(keys)
            path = bed._ini(bed.path("bad.conf"), sections)
            out = subprocess.run([bed.bin("srup-observerd"), "--config", path, "--check-config"],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            check(out.returncode != 0, "%s accepted" % name)
            check(re.search(want, out.stdout) and "bad.conf" in out.stdout,
                  "%s: error does not name it: %s" % (name, out.stdout))
        out = subprocess.run([bed.bin("srup-observerd"), "--config", bed.observer_config,
                              "--check-config"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
        check(out.returncode == 0, "good config refused: " + out.stdout)


@case
def shutdown_answers_pending(build):
    with JoinBed(build) as bed:
        bed.setup()
        bed.start_observer()
        raw = RawServer(bed).subscribe()
        raw.publish_file(raw.observe_request(0x99, b"z" * 32, "tok-shutdown"))
        bed.observer.wait_line(r"OBSERVE_REQ for device %s accepted" % id16(0x99), 10)
        check(bed.stop_observer() == 0, "observer did not exit cleanly on SIGTERM", bed)
        r = raw.response(10)
        check(r["status"] == FAIL and bytes.fromhex(r["token"]) == b"tok-shutdown",
              "pending observation not answered at shutdown: %r" % r, bed)


def present_retry(self, value, device_id, seconds=10):
    """Present until the observer has the request (it may still be on its way)."""
    deadline = time.monotonic() + seconds
    while True:
        result = self.present(value, device_id=device_id)[1]
        if result not in (0x00, None) or time.monotonic() > deadline:
            return result
        time.sleep(0.2)


JoinBed.present_retry = present_retry


if __name__ == "__main__":
    sys.exit(cases.main(sys.argv))
