#!/usr/bin/env python3
"""The device-initiated side of SRUP end to end over a real Mosquitto broker:
srup-device join --mode human|unmediated, resign and deregister against the
server-side peer (srup-join-peer), and the peer's command mode itself.

Each case is one ctest test: test_join_modes.py BUILD_DIR CASE.
"""
import os
import re
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from joinbed import Cases, JoinBed, RawServer, check, id16, topic_id  # noqa: E402
from srup_testlib import Broker, free_port  # noqa: E402

JOIN_SUCCESS, JOIN_REFUSED, JOIN_FAIL = 0x50, 0x5E, 0x5F
RESIGN_SUCCESS, RESIGN_FAIL = 0x70, 0x7F
DEREGISTER_SUCCESS, DEREGISTER_FAIL = 0x80, 0x8F

CASES = Cases()
case = CASES.case


def command_bed(build, peer_timeout=None, **peer_options):
    """Keys, broker and the peer in command mode (no observer: these flows
    need none)."""
    bed = JoinBed(build, peer_timeout=peer_timeout)
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
        # WATCHING is printed when the SUBSCRIBE leaves, not when it is
        # granted: publish again (fresh sequence IDs) until the peer hears it.
        for seq in range(1, 6):
            raw.publish_file(raw.build({"type": "response", "version": 5,
                                        "sequence_id": id16(seq), "sender_id": id16(0xabc12),
                                        "token": b"tok-answer".hex(), "status": 0x20}),
                             topic="SRUP/abc12")
            if not bed.no_peer_event("RESPONSE", 3, start, device=0xabc12):
                break
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


# ---- srup-device join --mode human|unmediated, resign, deregister ----------

def device(bed, *args, timeout=30, background=False):
    return bed.device_command(list(args) + ["--timeout", str(timeout)], timeout=timeout,
                              background=background)


def printed_value(proc):
    """The value srup-device printed for a person, and its grouped form."""
    _, m = proc.wait_line(r"^CONFIRMATION VALUE: (\S+)$", 30)
    _, g = proc.wait_line(r"^CONFIRMATION VALUE \(grouped\): (.+)$", 5)
    return m.group(1), g.group(1)


def joined_unmediated(bed):
    rc, out = device(bed, "join", "--mode", "unmediated")
    check(rc == 0 and "JOIN_SUCCESS (0x50)" in out, "unmediated join: rc=%d\n%s" % (rc, out),
          bed)


@case
def human_join_confirmed(build):
    """HM_JOIN_REQ on the server's topic; the device prints the value sealed
    to it; the person types it at the server; JOIN_SUCCESS, exit 0."""
    with command_bed(build) as bed:
        dev = device(bed, "join", "--mode", "human", background=True)
        _, m = dev.wait_line(r"^HM_JOIN_REQ sent on (\S+) \(token (\S+)\)$", 20)
        check(m.group(1) == "SRUP/servers/%s/%s" % (topic_id(bed.server_id),
                                                    topic_id(bed.device_id)),
              "HM_JOIN_REQ on %s" % m.group(1), bed)
        req = bed.peer_event("JOIN_REQUEST", 20, device=bed.device_id, mode="human")
        shown = bed.peer_event("HM_VALUE", 20, device=bed.device_id)
        value, grouped = printed_value(dev)
        check(value == shown["value"] and re.fullmatch(r"[0-9a-f]{32}", value),
              "device shows %r, server %r" % (value, shown["value"]), bed)
        check(grouped.split() == [value[i:i + 4] for i in range(0, 32, 4)],
              "grouped rendering %r" % grouped, bed)
        check(dev.p.poll() is None, "device ended before the verdict", bed)
        bed.peer_command("hm_confirm %s %s" % (id16(bed.device_id), value))
        o = bed.peer_event("OUTCOME", 20, req["_index"], device=bed.device_id, mode="human")
        check(o["status"] == "0x50", "peer outcome %r" % o, bed)
        check(dev.wait(20) == 0 and "JOIN_SUCCESS (0x50)" in dev.text(),
              "device not joined: %s" % dev.text(), bed)
        # The verdict echoed the request's token, on the device's topic.
        v = bed.peer_event("SENT", 5, req["_index"], type="response", device=bed.device_id)
        check(v["token"] == m.group(2) and v["topic"] == "SRUP/" + topic_id(bed.device_id),
              "verdict %r" % v, bed)


@case
def human_join_wrong_value(build):
    """The person types something else: JOIN_REFUSED, exit 1."""
    with command_bed(build) as bed:
        dev = device(bed, "join", "--mode", "human", background=True)
        value, _ = printed_value(dev)
        wrong = "0" * 32 if value != "0" * 32 else "1" * 32
        bed.peer_command("hm_confirm %s %s" % (id16(bed.device_id), wrong))
        check(bed.peer_event("OUTCOME", 20, device=bed.device_id)["status"] == "0x5e",
              "peer did not refuse", bed)
        check(dev.wait(20) == 1 and "JOIN_REFUSED (0x5e)" in dev.text(),
              "device: %s" % dev.text(), bed)


@case
def human_join_server_timeout(build):
    """Nobody confirms at the server: its own timeout answers JOIN_FAIL."""
    with command_bed(build, peer_timeout=2) as bed:
        dev = device(bed, "join", "--mode", "human", background=True)
        printed_value(dev)
        o = bed.peer_event("OUTCOME", 30, device=bed.device_id, mode="human")
        check(o["status"] == "0x5f", "peer outcome %r" % o, bed)
        check(dev.wait(20) == 1 and "JOIN_FAIL (0x5f)" in dev.text(),
              "device: %s" % dev.text(), bed)


@case
def observed_mode_explicit(build):
    """--mode observed is today's join (the default), peer and observer as ever."""
    with JoinBed(build).start() as bed:
        rc, out = bed.device_command(["join", "--mode", "observed", "--observer",
                                      topic_id(bed.observer_id), "--channel", "sim"])
        check(rc == 0 and "JOIN_SUCCESS (0x50)" in out, "rc=%d\n%s" % (rc, out), bed)
        o = bed.outcome(10)
        check(o["observer_status"] == "0x60" and o["status"] == "0x50", "peer %r" % o, bed)
        rc, out = bed.device_command(["join", "--mode", "observed"])
        check(rc == 2 and "--observer" in out, "observed without observer: rc=%d" % rc, bed)


@case
def observed_timeout_while_presenting(build):
    """--timeout bounds the whole join, presenting included. The observer
    listens on sim but its broker is away, so it never gets the OBSERVE_REQ
    and answers every frame "not compared": the join ends at its --timeout
    with exit 4, not after the 30 s of presenting again (that loop blocked
    the timer)."""
    broker = Broker()
    broker.start()
    url = "tcp://127.0.0.1:%d" % broker.port
    try:
        with JoinBed(build, brokers={"observer": "tcp://127.0.0.1:%d" % free_port(),
                                     "peer": url, "device": url}) as bed:
            bed.setup()
            bed.start_peer()
            bed.start_observer(wait=False)
            bed.observer.wait_line(r"cannot connect to", 20)
            started = time.monotonic()
            rc, out = bed.join(timeout=3)
            took = time.monotonic() - started
            check(rc == 4 and "timeout: the observer did not compare the value" in out and
                  "--timeout ran out" in out,
                  "rc=%d after %.1f s\n%s" % (rc, took, out), bed)
    finally:
        broker.close()


@case
def unmediated_join_accepted(build):
    with command_bed(build, join_policy="accept") as bed:
        rc, out = device(bed, "join", "--mode", "unmediated")
        check(rc == 0 and "JOIN_SUCCESS (0x50)" in out, "rc=%d\n%s" % (rc, out), bed)
        m = re.search(r"JOIN_REQ sent on (\S+) \(token (\S+)\)", out)
        check(m.group(1) == "SRUP/servers/%s/%s" % (topic_id(bed.server_id),
                                                    topic_id(bed.device_id)),
              "JOIN_REQ on %s" % m.group(1), bed)
        bed.peer_event("JOIN_REQUEST", 5, device=bed.device_id, mode="unmediated")
        o = bed.peer_event("OUTCOME", 5, device=bed.device_id, mode="unmediated")
        v = bed.peer_event("SENT", 5, type="response", device=bed.device_id)
        check(o["status"] == "0x50" and v["token"] == m.group(2), "%r %r" % (o, v), bed)


@case
def unmediated_join_refused(build):
    with command_bed(build, join_policy="refuse") as bed:
        rc, out = device(bed, "join", "--mode", "unmediated")
        check(rc == 1 and "JOIN_REFUSED (0x5e)" in out, "rc=%d\n%s" % (rc, out), bed)
        o = bed.peer_event("OUTCOME", 5, device=bed.device_id, mode="unmediated")
        check(o["status"] == "0x5e", "peer %r" % o, bed)
        # Not controlled: the server does not even hear it on the device's topic.
        rc, out = device(bed, "resign", timeout=3)
        check(rc == 4 and bed.no_peer_event("RESIGN", 0.5), "resign rc=%d\n%s" % (rc, out),
              bed)


@case
def resign_success(build):
    """RESIGN_REQ on the device's own topic after a join; 0x70, exit 0; the
    server no longer controls it, so a second resign fails (0x7F, exit 1)."""
    with command_bed(build) as bed:
        joined_unmediated(bed)
        rc, out = device(bed, "resign")
        check(rc == 0 and "RESIGN_SUCCESS (0x70)" in out, "rc=%d\n%s" % (rc, out), bed)
        check("RESIGN_REQ sent on SRUP/%s " % topic_id(bed.device_id) in out,
              "topic: %s" % out, bed)
        check(bed.peer_event("RESIGN", 5, device=bed.device_id)["status"] == "0x70", "peer",
              bed)
        rc, out = device(bed, "resign")
        check(rc == 1 and "RESIGN_FAIL (0x7f)" in out, "second resign rc=%d\n%s" % (rc, out),
              bed)


def refused(build, command, expect, **peer_options):
    """The server answers command with its failure status: exit 1, and the
    server's key stays."""
    with command_bed(build, **peer_options) as bed:
        joined_unmediated(bed)
        rc, out = device(bed, command)
        check(rc == 1 and expect in out, "%s: rc=%d\n%s" % (command, rc, out), bed)
        check(os.path.exists(bed.server_pub), "key deleted although refused", bed)


@case
def resign_refused(build):
    refused(build, "resign", "RESIGN_FAIL (0x7f)", resign_status=RESIGN_FAIL)


@case
def deregister_success(build):
    """DEREGISTER_REQ; 0x80, exit 0, and the server's key file is gone: the
    next command cannot even load its configuration (exit 3)."""
    with command_bed(build) as bed:
        # The device's own copy of the server key (the bed's is shared).
        server_key = bed.path("device-server.pem")
        shutil.copy(bed.server_pub, server_key)
        bed.device_sections = {"server": {"public_key": server_key}}
        bed.write_device_config("device", bed.device_id, bed.device_priv)
        joined_unmediated(bed)
        rc, out = device(bed, "deregister")
        check(rc == 0 and "DEREGISTER_SUCCESS (0x80)" in out and
              "deleted the server's public key %s" % server_key in out,
              "rc=%d\n%s" % (rc, out), bed)
        check("DEREGISTER_REQ sent on SRUP/%s " % topic_id(bed.device_id) in out,
              "topic: %s" % out, bed)
        check(not os.path.exists(server_key), "server key still there", bed)
        check(os.path.exists(bed.server_pub), "deleted the wrong file", bed)
        check(bed.peer_event("DEREGISTER", 5, device=bed.device_id)["status"] == "0x80",
              "peer", bed)
        rc, out = device(bed, "deregister")
        check(rc == 3 and "public_key" in out, "after deregistration rc=%d\n%s" % (rc, out),
              bed)


@case
def deregister_refused(build):
    refused(build, "deregister", "DEREGISTER_FAIL (0x8f)", deregister_status=DEREGISTER_FAIL)


@case
def verdict_replay_ignored(build):
    """An earlier JOIN_SUCCESS and the HM_JOIN_RESP, replayed byte for byte
    while the device waits for a human verdict, are dropped as replays; the
    verdict that counts is the real one (here a refusal)."""
    with command_bed(build) as bed:
        joined_unmediated(bed)
        old = bed.peer_event("SENT", 5, type="response", device=bed.device_id)
        dev = device(bed, "join", "--mode", "human", background=True)
        value, _ = printed_value(dev)
        resp = bed.peer_event("SENT", 5, type="hm_join_response", device=bed.device_id)
        for n in (old["n"], resp["n"]):
            start = dev.mark()
            bed.replay(int(n))
            dev.wait_line(r"dropped message on SRUP/%s: replayed sequence id"
                          % topic_id(bed.device_id), 20, start)
        check(dev.p.poll() is None, "the device took a replay as a verdict", bed)
        check(dev.count(r"^CONFIRMATION VALUE: ") == 1, "replayed value shown again", bed)
        bed.peer_command("hm_confirm %s %s" % (id16(bed.device_id), "f" * 32))
        check(dev.wait(20) == 1 and "JOIN_REFUSED (0x5e)" in dev.text() and
              "JOIN_SUCCESS" not in dev.text(), "device: %s" % dev.text(), bed)


@case
def verdict_from_other_sender_ignored(build):
    """JOIN_SUCCESS with the right token from another sender, and one that
    claims to be the server but is signed by another key, change nothing;
    the server's own verdict still ends the join."""
    with command_bed(build) as bed:
        dev = device(bed, "join", "--mode", "human", background=True)
        _, m = dev.wait_line(r"^HM_JOIN_REQ sent on \S+ \(token (\S+)\)$", 20)
        token = m.group(1).encode().hex()
        value, _ = printed_value(dev)
        rogue_id = 0x7e57
        rogue_key = bed.add_device("rogue", rogue_id)
        topic = "SRUP/" + topic_id(bed.device_id)
        raw = RawServer(bed, server_id=rogue_id, sign_key=rogue_key)
        verdict = {"type": "response", "version": 5, "sequence_id": id16(1 << 40),
                   "token": token, "status": JOIN_SUCCESS}
        start = dev.mark()
        raw.publish_file(raw.build(dict(verdict, sender_id=id16(rogue_id))), topic=topic)
        dev.wait_line(r"dropped message on %s: unknown sender key for %s"
                      % (topic, id16(rogue_id)), 20, start)
        raw.publish_file(raw.build(dict(verdict, sender_id=id16(bed.server_id))), topic=topic)
        dev.wait_line(r"dropped message on %s: bad signature" % topic, 20, start)
        check(dev.p.poll() is None, "the device took a foreign verdict", bed)
        bed.peer_command("hm_confirm %s %s" % (id16(bed.device_id), value))
        check(dev.wait(20) == 0 and "JOIN_SUCCESS (0x50)" in dev.text(),
              "device: %s" % dev.text(), bed)


@case
def exit_codes(build):
    """2 usage, 3 configuration/keys/broker, 4 timeout."""
    with JoinBed(build) as bed:
        bed.setup()
        for args in (["join", "--mode", "bogus"], ["join", "--mode", "human", "--observer", "1"],
                     ["resign", "--channel", "sim"], ["join", "--mode", "unmediated",
                                                      "--print-value"],
                     ["run", "--timeout", "5"], ["resign", "--mode", "human"], ["frobnicate"]):
            rc, out = bed.device_command(args)
            check(rc == 2, "%r: rc=%d\n%s" % (args, rc, out), bed)
        missing = bed.path("missing.conf")
        rc, out = bed.device_command(["resign"], config=missing)
        check(rc == 3, "missing config: rc=%d\n%s" % (rc, out), bed)
        # run is the resident agent: its own statuses (srup_exit.h, 78 = config).
        rc, out = bed.device_command(["run"], config=missing)
        check(rc == 78 and "missing.conf" in out, "run, missing config: rc=%d\n%s" % (rc, out),
              bed)
        # No server answers (no peer runs): timeout.
        for args in (["resign"], ["deregister"], ["join", "--mode", "unmediated"],
                     ["join", "--mode", "human"]):
            rc, out = device(bed, *args, timeout=2)
            check(rc == 4 and "timeout: no answer to" in out, "%r: rc=%d\n%s" % (args, rc, out),
                  bed)
        check(os.path.exists(bed.server_pub), "a timed-out deregister deleted the key", bed)


if __name__ == "__main__":
    sys.exit(CASES.main(sys.argv))
