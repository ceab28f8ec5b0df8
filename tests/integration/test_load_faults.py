#!/usr/bin/env python3
"""Nothing acknowledged is lost under load either: srup-observerd with its
state on disk (and on a tmpfs) against bursts of validly signed
OBSERVE_REQs, restarts with thousands of records, kills around a verdict,
and damaged entries in its inbound/ folder.

Each case is one ctest test: test_load_faults.py BUILD_DIR CASE.

  burst_on_disk, burst_on_tmpfs
      6,000 OBSERVE_REQs for distinct devices (max_pending 1000, window
      1 s): every one answered exactly once, no inbound record left once
      all are answered, nothing answered again after SIGTERM and a start.
  kill_with_5000_pending
      5,000 accepted and pending (max_pending 100000), SIGKILL, start: all
      5,000 answered.
  kill_around_verdict
      a request presented (0x60), the observer killed as soon as that
      RESPONSE reaches the server, while a burst keeps it busy; after each
      restart: no token answered with two different statuses.
  fifo_at_start, wrapped_id_at_start
      a record named ffffffffffffffff in inbound/ (and a FIFO named as a
      record, for the first): the start does not hang, and the next
      request is held (survives a SIGKILL).
"""
import os
import re
import stat
import struct
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import faults  # noqa: E402
import joinbed  # noqa: E402
import srup_testlib  # noqa: E402
from joinbed import Cases, JoinBed, RawServer, check, id16, topic_id  # noqa: E402

# faults makes every bed's broker one that saves its database after each
# change, for tests that SIGKILL it; these never do, and with thousands of
# queued messages that save would make the broker the bottleneck.
joinbed.Broker = srup_testlib.Broker
from mqtt_raw import MqttClient  # noqa: E402
from inbound_records import inbound_records  # noqa: E402
from obs_ops import wait_for  # noqa: E402
import srup_wire  # noqa: E402

VALID, FAIL = 0x60, 0x6F
cases = Cases()
case = cases.case


class Answers:
    """Every RESPONSE the observer publishes on its topic, read by a
    subscriber of our own: token -> list of statuses, in arrival order."""

    def __init__(self, bed):
        self.bed = bed
        self.by_token = {}
        self.total = 0
        self.lock = threading.Lock()
        self.seen = set()  # payloads: a QoS 1 redelivery is counted once
        self.client_id = "load-test-sub-%d" % os.getpid()
        self.sub = self._connect()
        self.running = True
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _connect(self):
        """A persistent session: what comes while it is away is kept."""
        sub = MqttClient("127.0.0.1", self.bed.broker.port, self.client_id, clean=False)
        sub.subscribe("SRUP/" + topic_id(self.bed.observer_id))
        return sub

    def _read(self):
        last_ping = time.monotonic()
        while self.running:
            # The subscriber sends nothing else while no message comes:
            # without a PINGREQ the broker drops it after 1.5 keepalives.
            if time.monotonic() - last_ping > 15:
                self.sub._send(0xC0, b"")
                last_ping = time.monotonic()
            try:
                _t, _topic, payload = self.sub.next_message(0.2)
            except TimeoutError:
                continue
            except EOFError:
                print("the test's subscriber lost its connection; connecting again",
                      flush=True)
                try:
                    self.sub = self._connect()
                except OSError as e:
                    print("cannot connect again: %s" % e, flush=True)
                    return
                continue
            if payload in self.seen:
                continue
            self.seen.add(payload)
            try:
                f = srup_wire.fields(payload)
            except Exception:
                continue
            if f["type"] != 0x02 or f["sender"] != self.bed.observer_id or not f["body"]:
                continue
            with self.lock:
                self.by_token.setdefault(f["token"], []).append(f["body"][0])
                self.total += 1

    def answered(self, tokens):
        with self.lock:
            return sum(1 for t in tokens if t in self.by_token)

    def snapshot(self):
        with self.lock:
            return {t: list(s) for t, s in self.by_token.items()}, self.total

    def wait_all(self, tokens, timeout, quiet=30):
        """Until every token is answered, timeout passes, or nothing new
        arrives for quiet seconds."""
        deadline = time.monotonic() + timeout
        last, last_change = -1, time.monotonic()
        while time.monotonic() < deadline:
            n = self.answered(tokens)
            if n == len(tokens):
                return n
            if n != last:
                last, last_change = n, time.monotonic()
            elif time.monotonic() - last_change > quiet:
                break
            time.sleep(0.2)
        return self.answered(tokens)

    def close(self):
        self.running = False
        self.thread.join(5)
        self.sub.close()


def signed_requests(bed, raw, n, first_device, tag):
    """n OBSERVE_REQs for distinct joining devices, signed by the server:
    one built with srup-msg, the others copies with their own device,
    token and sequence ID (python3-cryptography signs them)."""
    with open(raw.observe_request(first_device, b"\x5a" * 16, "%s-t" % tag), "rb") as f:
        template = f.read()
    key = srup_wire.load_key(bed.server_priv)
    head, _tok, _sig, body = srup_wire.split(template)
    msgs, tokens = [], []
    for i in range(n):
        raw.seq += 1
        token = b"%s-%05d" % (tag.encode(), i)
        body_i = srup_wire.with_joining_device(template, first_device + i)
        msgs.append(srup_wire.resign(template, key, raw.seq, token, body_i))
        tokens.append(token)
    return msgs, tokens


def publish_all(bed, msgs, timeout=120):
    pub = MqttClient("127.0.0.1", bed.broker.port, "load-test-pub-%d" % os.getpid())
    topic = "SRUP/" + topic_id(bed.observer_id)
    mids = []
    for i, m in enumerate(msgs):
        mids.append(pub.publish(topic, m))
        if len(mids) == 1000:  # packet IDs are 16 bits: wait before they wrap
            pub.wait_acked(mids, timeout)
            mids = []
    pub.wait_acked(mids, timeout)
    pub.close()


def inbound_dir(bed):
    return os.path.join(bed.observer_config_sections()["state"]["dir"], "inbound")


def records_left(bed):
    return inbound_records(bed.observer_config_sections()["state"]["dir"])


def recovered(proc):
    m = re.search(r"(\d+) received message\(s\) from before a restart", proc.text())
    return int(m.group(1)) if m else 0


def burst(build, state_dir=None):
    n = 6000
    sections = {"state": {"dir": state_dir}} if state_dir else None
    with JoinBed(build, window_seconds=1, max_pending=1000, observer_sections=sections) as bed:
        bed.setup()
        bed.start_observer()
        raw = RawServer(bed)
        answers = Answers(bed)
        msgs, tokens = signed_requests(bed, raw, n, 0x100000, "b")
        t0 = time.monotonic()
        publish_all(bed, msgs)
        got = answers.wait_all(tokens, 240)
        took = time.monotonic() - t0
        by_token, _ = answers.snapshot()
        twice = sum(1 for t in tokens if len(by_token.get(t, [])) > 1)
        # Released once the broker acknowledged each RESPONSE.
        try:
            wait_for("no inbound record left", lambda: not records_left(bed), 30)
        except AssertionError:
            pass
        left = len(records_left(bed))
        print("%d published: %d answered (%d more than once) in %.1f s; %d inbound records "
              "left" % (n, got, twice, took, left), flush=True)
        # A clean restart answers nothing again.
        bed.stop_observer()
        _, before = answers.snapshot()
        obs = bed.start_observer(wait=False)
        obs.wait_line(r"connected to the broker", 180)
        probe = raw.observe_request(0x7fffff, b"probe-value-1234", "probe")
        raw.publish_file(probe)
        wait_for("the probe's answer", lambda: answers.answered([b"probe"]), 30, bed)
        by_token, after = answers.snapshot()
        again = after - before - 1
        print("after SIGTERM and a start: %d records taken over, %d RESPONSEs besides the "
              "probe's" % (recovered(obs), again), flush=True)
        answers.close()
        check(got == n, "%d of %d acknowledged requests never answered" % (n - got, n), bed)
        check(twice == 0, "%d requests answered more than once" % twice, bed)
        check(left == 0, "%d inbound records left after every request was answered" % left,
              bed)
        check(again == 0 and recovered(obs) == 0,
              "%d answered again after a clean restart" % max(again, recovered(obs)), bed)


@case
def burst_on_disk(build):
    burst(build)


@case
def burst_on_tmpfs(build):
    bed_dir = os.path.join("/tmp", "srup-load-tmpfs-%d" % os.getpid())
    mnt = faults.Tmpfs(bed_dir, 256 * 1024)
    try:
        burst(build, os.path.join(mnt.path, "observer"))
    finally:
        mnt.close()
        try:
            os.rmdir(bed_dir)
        except OSError:
            pass


@case
def kill_with_5000_pending(build):
    n = 5000
    with JoinBed(build, window_seconds=3600, max_pending=100000) as bed:
        bed.setup()
        bed.start_observer()
        raw = RawServer(bed)
        answers = Answers(bed)
        msgs, tokens = signed_requests(bed, raw, n, 0x200000, "k")
        publish_all(bed, msgs)
        obs = bed.observer
        # Every one on disk, acknowledged and pending (windows of an hour).
        wait_for("%d records" % n, lambda: len(records_left(bed)) >= n, 600, bed)
        faults.sigkill(obs)
        bed.observer = None
        # The next instance resumes them with windows of 2 s: each is then
        # answered 0x6F.
        bed.window_seconds = 2
        bed.write_observer_config()
        before = answers.answered(tokens)
        pending = len(records_left(bed))
        obs = bed.start_observer(wait=False)
        obs.wait_line(r"connected to the broker", 180)
        got = answers.wait_all(tokens, 240)
        drops = obs.count(r"dropped: receive queue full")
        print("%d acknowledged, %d answered before the kill, %d records at the restart, "
              "%d taken over, %d answered in all; 'queue full' lines: %d"
              % (n, before, pending, recovered(obs), got, drops), flush=True)
        answers.close()
        check(got == n, "%d of %d acknowledged requests never answered" % (n - got, n), bed)


@case
def kill_around_verdict(build):
    rounds = 6
    with JoinBed(build, window_seconds=10, max_pending=100000) as bed:
        bed.setup()
        bed.start_observer()
        raw = RawServer(bed)
        answers = Answers(bed)
        contradictions = []
        presented = []
        for r in range(rounds):
            dev = 0x300000 + r
            value = b"verdict-%04d-val" % r
            token = b"v-%02d" % r
            raw.publish_file(raw.observe_request(dev, value, token.decode()))
            bed.observer.wait_line(r"OBSERVE_REQ for device %s accepted" % id16(dev), 30)
            # Keeps the loop busy while the verdict's RESPONSE is
            # acknowledged, so the kill lands before the record goes.
            msgs, _ = signed_requests(bed, raw, 300, 0x400000 + r * 1000, "f%02d" % r)
            filler = threading.Thread(target=publish_all, args=(bed, msgs))
            filler.start()
            check(bed.present(value, device_id=dev, timeout=30)[1] == VALID,
                  "round %d: no match" % r, bed)
            wait_for("round %d's RESPONSE" % r, lambda: answers.answered([token]), 30, bed,
                     poll=lambda: time.sleep(0.002))
            faults.sigkill(bed.observer)
            bed.observer = None
            filler.join()
            presented.append(token)
            bed.start_observer(wait=False).wait_line(r"connected to the broker", 180)
        # The last instance answers what is still open (window 10 s) and
        # releases every record once the broker has its answer.
        try:
            wait_for("no inbound record left", lambda: not records_left(bed), 120)
        except AssertionError:
            pass
        by_token, total = answers.snapshot()
        for t, statuses in sorted(by_token.items()):
            if len(set(statuses)) > 1:
                contradictions.append("%s: %s" % (t.decode(), " then ".join(
                    "0x%02x" % s for s in statuses)))
        answered_twice = sum(1 for t in presented if len(by_token.get(t, [])) > 1)
        print("%d rounds: %d RESPONSEs, %d tokens; presented tokens answered again: %d; "
              "contradicting answers: %d %s" % (rounds, total, len(by_token), answered_twice,
                                                len(contradictions), contradictions[:5]),
              flush=True)
        answers.close()
        check(not contradictions, "tokens answered with two statuses: %s" % contradictions,
              bed)


def record_bytes(topic, payload):
    """An inbound record as the node writes it (device-side/srup_inbound.h)."""
    def fnv(b):
        h = 0xcbf29ce484222325
        for x in b:
            h = ((h ^ x) * 0x100000001b3) & 0xffffffffffffffff
        return h
    body = b"SRUPIN1\0" + struct.pack(">II", len(topic), len(payload)) + topic + payload
    return body + struct.pack(">Q", fnv(body))


@case
def fifo_at_start(build):
    at_start(build, fifo=True)


@case
def wrapped_id_at_start(build):
    at_start(build, fifo=False)


def at_start(build, fifo):
    with JoinBed(build, window_seconds=3) as bed:
        bed.setup()
        inbound = inbound_dir(bed)
        os.makedirs(inbound, mode=0o700)
        fifo = os.path.join(inbound, "0000000000000001.msg") if fifo else None
        if fifo:
            os.mkfifo(fifo, 0o600)
        # A record of a message that is dropped at once (not a SRUP
        # message), under the largest ID.
        topic = ("SRUP/" + topic_id(bed.observer_id)).encode()
        with open(os.path.join(inbound, "ffffffffffffffff.msg"), "wb") as f:
            f.write(record_bytes(topic, b"not a SRUP message"))
        obs = bed.start_observer(wait=False)
        try:
            obs.wait_line(r"connected to the broker", 30)
        except Exception:
            check(False, "the start did not get past inbound/ (FIFO)", bed)
        check(not fifo or not os.path.exists(fifo) or not stat.S_ISFIFO(os.lstat(fifo).st_mode),
              "the FIFO is still there", bed)
        obs.wait_line(r"dropped message on .*decode error", 30)
        answers = Answers(bed)
        raw = RawServer(bed)
        # The first request after the start: held (it has a record), so a
        # SIGKILL before its answer does not lose it.
        raw.publish_file(raw.observe_request(0x5151, b"held-value-12345", "held"))
        obs.wait_line(r"OBSERVE_REQ for device %s accepted" % id16(0x5151), 30)
        faults.sigkill(obs)
        bed.observer = None
        check(not answers.answered([b"held"]), "answered before the kill", bed)
        obs = bed.start_observer(wait=False)
        obs.wait_line(r"connected to the broker", 60)
        got = answers.wait_all([b"held"], 60)
        print("after the kill: %d taken over; the held request answered: %s; id-0 records: %s"
              % (recovered(obs), bool(got), [n for n in records_left(bed)
                                             if n.startswith("0000000000000000")]), flush=True)
        answers.close()
        check(got == 1, "the first request after the start was lost by a SIGKILL", bed)
        check(obs.p.poll() is None, "observer died", bed)


MOUNTING = {"burst_on_tmpfs"}


if __name__ == "__main__":
    if sys.argv[2:3] and sys.argv[2] in MOUNTING:
        faults.reexec_in_private_mount_namespace()
    sys.exit(cases.main(sys.argv))
