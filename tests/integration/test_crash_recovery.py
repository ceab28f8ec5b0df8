#!/usr/bin/env python3
"""srup-observerd killed (SIGKILL) just after the broker received its
PUBACKs for a burst of OBSERVE_REQs, then started again on the same state
and persistent session: every OBSERVE_REQ the broker saw acknowledged is
answered with a RESPONSE (before the kill or after the restart).

The broker logs every packet (log_type debug): the PUBLISHes it sent to the
observer, in the order they were published, and the PUBACKs it received,
which is what the broker considers delivered. Rounds vary the delay
between the broker's last PUBACK to the publisher and the kill.

usage: test_crash_recovery.py BUILD_DIR [ROUNDS]
"""
import os
import re
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from joinbed import JoinBed, RawServer, topic_id  # noqa: E402
from mqtt_raw import MqttClient  # noqa: E402
import srup_wire  # noqa: E402

FIRST_BURST = 300
BURST = 100
KILL_DELAYS_MS = [15, 0, 2, 5, 10, 20, 30, 50, 80, 120, 150, 200, 250, 300, 400, 1, 7, 15, 40, 100]
ANSWER_TIMEOUT = 30


def acked_in_log(log_path, offset, client_id, payload_len):
    """Indices (in publish order, from offset in the log) of the OBSERVE_REQs
    the broker sent to client_id and had acknowledged."""
    sent = re.compile(r"Sending PUBLISH to %s \(d0, q1, r0, m(\d+), '[^']*', \.\.\. \((\d+) bytes\)\)"
                      % re.escape(client_id))
    ack = re.compile(r"Received PUBACK from %s \(Mid: (\d+)" % re.escape(client_id))
    index_of_mid, acked, count = {}, set(), 0
    with open(log_path, errors="replace") as f:
        f.seek(offset)
        for line in f:
            m = sent.search(line)
            if m and int(m.group(2)) == payload_len:
                index_of_mid[int(m.group(1))] = count
                count += 1
                continue
            m = ack.search(line)
            if m and int(m.group(1)) in index_of_mid:
                acked.add(index_of_mid.pop(int(m.group(1))))
    return acked, count


def collect_answers(sub, answered, timeout):
    """Read RESPONSE tokens from sub into answered until timeout passes with
    nothing new."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _t, _topic, payload = sub.next_message(max(0.05, deadline - time.monotonic()))
        except TimeoutError:
            return
        try:
            f = srup_wire.fields(payload)
        except Exception:
            continue
        if f["type"] == 0x02:
            answered.add(f["token"])


def main():
    build = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else len(KILL_DELAYS_MS)
    failures = []
    with JoinBed(build, window_seconds=1, max_pending=1000, broker_debug=True) as bed:
        bed.setup()
        bed.start_observer()
        raw = RawServer(bed)
        with open(raw.observe_request(bed.device_id, b"\x5a" * 16, "r00-0000"), "rb") as f:
            template = f.read()
        key = srup_wire.load_key(bed.server_priv)
        obs_topic = "SRUP/" + topic_id(bed.observer_id)
        client_id = "SRUP Client: " + topic_id(bed.observer_id)
        sub = MqttClient("127.0.0.1", bed.broker.port, "crash-test-sub")
        sub.subscribe(obs_topic)
        pub = MqttClient("127.0.0.1", bed.broker.port, "crash-test-server")
        seq = int(time.time()) << 16
        answered = set()
        total_acked = total_recovered = 0
        for r in range(rounds):
            n = FIRST_BURST if r == 0 else BURST
            delay = KILL_DELAYS_MS[r % len(KILL_DELAYS_MS)]
            tokens = [b"r%02d-%04d" % (r, i) for i in range(n)]
            burst = []
            for t in tokens:
                seq += 1
                burst.append(srup_wire.resign(template, key, seq, t))
            offset = os.path.getsize(bed.broker.log)
            mids = [pub.publish(obs_topic, m) for m in burst]
            pub.wait_acked(mids, 30)
            time.sleep(delay / 1000.0)
            os.killpg(bed.observer.p.pid, signal.SIGKILL)
            bed.observer.wait(10)
            time.sleep(0.3)  # the broker logs the lost connection, and has flushed its log
            acked, sent = acked_in_log(bed.broker.log, offset, client_id, len(burst[0]))
            collect_answers(sub, answered, 0.05)
            before = {tokens[i] for i in acked} & answered
            obs = bed.start_observer()
            need = {tokens[i] for i in acked}
            deadline = time.monotonic() + ANSWER_TIMEOUT
            while not need <= answered and time.monotonic() < deadline:
                collect_answers(sub, answered, 0.5)
            collect_answers(sub, answered, 1.5)  # the rest of the burst, not asserted
            missing = need - answered
            m = re.search(r"(\d+) received message\(s\) from before a restart", obs.text())
            recovered = int(m.group(1)) if m else 0
            total_acked += len(acked)
            total_recovered += recovered
            print("round %2d: %d published, %d sent before the kill (%d ms after the last "
                  "PUBACK to the server), %d acknowledged by the observer (%d of them "
                  "answered before the kill), %d recovered from its records after the "
                  "restart; acknowledged but unanswered: %d; burst answered: %d/%d"
                  % (r, n, sent, delay, len(acked), len(before), recovered, len(missing),
                     len(set(tokens) & answered), n), flush=True)
            if missing:
                failures.append("round %d: %d acknowledged OBSERVE_REQs never answered, e.g. %s"
                                % (r, len(missing), sorted(missing)[:3]))
                drops = [line for line in obs.text().splitlines()
                         if "dropped" in line or "record" in line or "cannot" in line]
                print("observer after the restart (drops, records, errors):\n  "
                      + "\n  ".join(drops[:40]), flush=True)
        sub.close()
        pub.close()
    print("%d rounds: %d OBSERVE_REQs acknowledged before a kill, %d handled from records "
          "after restarts" % (rounds, total_acked, total_recovered))
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        return 1
    if total_acked == 0:
        print("FAILED: no round killed the observer after it acknowledged anything")
        return 1
    print("acked_requests_survive_kill: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
