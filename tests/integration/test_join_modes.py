#!/usr/bin/env python3
"""The device-initiated side of SRUP end to end over a real Mosquitto broker:
srup-device join --mode human|unmediated, resign and deregister against the
server-side peer (srup-join-peer), and the peer's command mode itself.

Each case is one ctest test: test_join_modes.py BUILD_DIR CASE.
"""
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from joinbed import JoinBed, RawServer, id16, topic_id  # noqa: E402

JOIN_SUCCESS, JOIN_REFUSED, JOIN_FAIL = 0x50, 0x5E, 0x5F
RESIGN_SUCCESS, RESIGN_FAIL = 0x70, 0x7F
DEREGISTER_SUCCESS, DEREGISTER_FAIL = 0x80, 0x8F

CASES = {}


def case(fn):
    CASES[fn.__name__] = fn
    return fn


def check(cond, what, bed=None):
    if not cond:
        if bed:
            for p in bed.procs:
                print("---- %s output ----\n%s" % (p.name, p.text()))
        raise AssertionError(what)


def command_bed(build, **peer_options):
    """Keys, broker and the peer in command mode (no observer: these flows
    need none)."""
    bed = JoinBed(build)
    try:
        bed.setup()
        bed.start_peer(commands=True, **peer_options)
    except BaseException:
        bed.close()
        raise
    return bed


def next_message(bed, sub, start=0, timeout=20, **kw):
    return next(bed.raw_messages(sub, timeout, start, **kw))


# ---- the peer's command mode ----------------------------------------------

@case
def peer_commands(build):
    """send, send_group, replay and watch do what the harness relies on:
    the SENT line names the message that is on the wire, a replay is the
    same bytes, a bad command is an ERROR and the peer goes on."""
    with command_bed(build) as bed:
        dev = bed.device_id
        sub = bed.subscribe_raw("SRUP/" + topic_id(dev))
        sent = bed.send(dev, "id_request")
        check(sent["type"] == "id_request" and sent["device"] == id16(dev) and
              sent["topic"] == "SRUP/" + topic_id(dev), "SENT %r" % sent, bed)
        idx, msg = next_message(bed, sub, verify_key=bed.server_pub)
        check(msg["type"] == "id_request" and msg["_exit"] == 0 and msg["signature_valid"],
              "on the wire: %r" % msg, bed)
        check(bytes.fromhex(msg["token"]).decode() == sent["token"] and
              msg["sequence_id"] == sent["seq"] and msg["sender_id"] == id16(bed.server_id),
              "SENT %r but the wire has %r" % (sent, msg), bed)
        check(re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
                           sent["token"]), "default token is no uuid4: %r" % sent, bed)

        # Fields by srup-msg's names, text and hex.
        sent2 = bed.send(dev, "data", token="tok-data", data_id="CONFIG", data_hex="00ff10")
        idx2, msg2 = next_message(bed, sub, idx + 1, verify_key=bed.server_pub)
        check(msg2["type"] == "data" and bytes.fromhex(msg2["data_id"]) == b"CONFIG" and
              msg2["data"] == "00ff10" and bytes.fromhex(msg2["token"]) == b"tok-data" and
              int(msg2["sequence_id"], 16) > int(msg["sequence_id"], 16),
              "data on the wire: %r" % msg2, bed)
        check(int(sent2["n"]) == int(sent["n"]) + 1, "n did not count up: %r" % sent2, bed)

        # A replay is the same bytes on the same topic.
        bed.replay(int(sent["n"]))
        _, again = next_message(bed, sub, idx2 + 1)
        check(again["_hex"] == msg["_hex"], "replay differs from the original", bed)

        # send_group: the group topic, the named device's sequence ID.
        gsub = bed.subscribe_raw("SRUP/groups/g1", name="gsub")
        gs = bed.send_group("g1", "action", dev, action_id=7)
        _, gmsg = next_message(bed, gsub, verify_key=bed.server_pub)
        check(gmsg["type"] == "action" and gmsg["action_id"] == 7 and
              gs["topic"] == "SRUP/groups/g1" and gs["device"] == id16(dev) and
              int(gmsg["sequence_id"], 16) > int(msg2["sequence_id"], 16),
              "group message %r / %r" % (gs, gmsg), bed)
        gadd = bed.send(dev, "group_add", group_id="g1")
        for _, amsg in bed.raw_messages(sub, 20, idx2 + 1, verify_key=bed.server_pub):
            if amsg["type"] == "group_add":
                break
        check(amsg["device_id"] == id16(dev) and bytes.fromhex(amsg["group_id"]) == b"g1" and
              gadd["type"] == "group_add", "group_add %r" % amsg, bed)

        # Bad commands: an ERROR line each, and the peer keeps going.
        for bad in ("send nothex id_request", "send %s no_such_type" % id16(dev),
                    "send %s action action_id=300" % id16(dev), "replay 999", "frobnicate",
                    "send_group g1 action action_id=1", "hm_confirm %s abc" % id16(dev)):
            start = bed.peer_command(bad)
            bed.peer.wait_line(r"^ERROR ", 10, start)
        check(bed.send(dev, "id_request")["type"] == "id_request", "peer stopped", bed)

        # watch, then what the device publishes on its topic is an event.
        other = bed.add_device("other", 0x00000000000abc12)
        bed.watch(0xabc12)
        raw = RawServer(bed, server_id=0xabc12, sign_key=other)
        start = bed.peer.mark()
        raw.publish_file(raw.build({"type": "response", "version": 5,
                                    "sequence_id": id16(5), "sender_id": id16(0xabc12),
                                    "token": b"tok-answer".hex(), "status": 0x20}),
                         topic="SRUP/abc12")
        r = bed.peer_event("RESPONSE", 10, start, device=0xabc12)
        check(r["token"] == "tok-answer" and r["status"] == "0x20", "RESPONSE %r" % r, bed)
        raw.publish_file(raw.build({"type": "data", "version": 5, "sequence_id": id16(6),
                                    "sender_id": id16(0xabc12), "token": b"tok d".hex(),
                                    "data_id": b"IDENTIFICATION_RESPONSE".hex(),
                                    "data": b"box 1".hex()}), topic="SRUP/abc12")
        d = bed.peer_event("DATA", 10, start, device=0xabc12)
        check(d["data_id"] == "IDENTIFICATION_RESPONSE" and d["data_hex"] == b"box 1".hex() and
              d["token"] == "hex:" + b"tok d".hex(), "DATA %r" % d, bed)

        start = bed.peer_command("quit")
        check(bed.peer.wait(20) == 0, "quit did not stop the peer", bed)


def main():
    if len(sys.argv) != 3 or sys.argv[2] not in CASES:
        print("usage: %s BUILD_DIR {%s}" % (sys.argv[0], "|".join(CASES)), file=sys.stderr)
        return 2
    CASES[sys.argv[2]](sys.argv[1])
    print("%s: passed" % sys.argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main())
