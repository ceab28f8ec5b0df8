#!/usr/bin/env python3
"""The verdict of a server that answers 1.05 s after OBS_JOIN_RESP reaches
srup-device as soon as the broker delivers it.

A scripted server (a raw MQTT client) answers srup-device's OBS_JOIN_REQ
with OBS_JOIN_RESP and sends JOIN_SUCCESS a set time later: 0.2 s (the
fast case) or 1.05 s, the gap after which Paho's receive thread would be
asleep (its 1 s wait timed out, then 100 ms of sleep). The agent prints
when it read each message; its gap between the two minus the server's is
the extra delay. No absolute time is asserted: the slow case's median
extra delay must be within 20 ms of the fast case's, measured in the same
run (before the fix it was about 50 ms more).

usage: test_receive_delay.py BUILD_DIR
"""
import os
import re
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from joinbed import JoinBed, RawServer, id16, topic_id  # noqa: E402
from mqtt_raw import MqttClient  # noqa: E402
import srup_wire  # noqa: E402

FAST_S = 0.2
SLOW_S = 1.05
RUNS = 4
ALLOWED_MS = 20.0


def one_join(bed, server, templates, key, seq, gap, n):
    """Extra delay (ms) of the verdict sent gap seconds after OBS_JOIN_RESP."""
    device = bed.spawn("device", [bed.bin("srup-device"), "--config", bed.device_config, "join",
                                  "--observer", topic_id(bed.observer_id), "--channel", "sim",
                                  "--print-value", "--timeout", "30"])
    _t, topic, _payload = server.next_message(20)
    if not topic.startswith("SRUP/servers/"):
        raise AssertionError("unexpected first message on %s" % topic)
    token = b"delay-%04d" % n
    resp = srup_wire.resign(templates["resp"], key, seq, token)
    verdict = srup_wire.resign(templates["verdict"], key, seq + 1, token)
    dev_topic = "SRUP/" + topic_id(bed.device_id)
    t1 = time.monotonic()
    server.publish(dev_topic, resp)
    while time.monotonic() < t1 + gap:
        time.sleep(min(0.002, max(0.0, t1 + gap - time.monotonic())))
    t2 = time.monotonic()
    server.publish(dev_topic, verdict)
    rc = device.wait(30)
    out = device.text()
    m1 = re.search(r"OBS_JOIN_RESP received after ([0-9.]+) ms", out)
    m2 = re.search(r"JOIN_SUCCESS \(0x50\) after ([0-9.]+) ms", out)
    if rc != 0 or not m1 or not m2:
        raise AssertionError("srup-device join (rc %s) did not read both messages:\n%s" % (rc, out))
    return (float(m2.group(1)) - float(m1.group(1))) - (t2 - t1) * 1000.0


def main():
    build = sys.argv[1]
    with JoinBed(build) as bed:
        bed.setup()
        raw = RawServer(bed)
        dev_pub = bed.device_pub
        templates = {}
        with open(raw.build({"type": "obs_join_response", "version": 5,
                             "sequence_id": id16(1), "sender_id": id16(bed.server_id),
                             "token": b"delay-0000".hex(), "plaintext": (b"\x42" * 16).hex()},
                            encrypt_for=dev_pub), "rb") as f:
            templates["resp"] = f.read()
        with open(raw.build({"type": "response", "version": 5, "sequence_id": id16(1),
                             "sender_id": id16(bed.server_id), "token": b"delay-0000".hex(),
                             "status": 0x50}), "rb") as f:
            templates["verdict"] = f.read()
        key = srup_wire.load_key(bed.server_priv)
        server = MqttClient("127.0.0.1", bed.broker.port, "delay-test-server")
        server.subscribe("SRUP/servers/%s/#" % topic_id(bed.server_id))
        seq = int(time.time()) << 16
        extra = {FAST_S: [], SLOW_S: []}
        n = 0
        for _ in range(RUNS):
            for gap in (FAST_S, SLOW_S):
                n += 1
                seq += 2
                e = one_join(bed, server, templates, key, seq, gap, n)
                extra[gap].append(e)
                print("verdict %.2f s after OBS_JOIN_RESP: read %.1f ms later than sent"
                      % (gap, e), flush=True)
        server.close()
    fast, slow = statistics.median(extra[FAST_S]), statistics.median(extra[SLOW_S])
    print("median extra delay: %.1f ms at %.2f s, %.1f ms at %.2f s" % (fast, FAST_S, slow, SLOW_S))
    if slow - fast > ALLOWED_MS:
        print("FAILED: the verdict after %.2f s was read %.1f ms later than after %.2f s "
              "(allowed %.0f ms)" % (SLOW_S, slow - fast, FAST_S, ALLOWED_MS))
        return 1
    print("late_verdict_read_on_delivery: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
