#!/usr/bin/env python3
"""The observer's operator interfaces over real processes: the audit log,
the metrics file and the control socket (srup-observerctl).

Each case is one ctest test: test_operator.py BUILD_DIR CASE. The test plays
the C2 server (RawServer) so that tokens and values are known, and checks
the files and answers after known outcomes.
"""
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from joinbed import Cases, JoinBed, RawServer, check, id16  # noqa: E402
from obs_ops import ctl, ctl_json, wait_for  # noqa: E402

VALID, INVALID, FAIL = 0x60, 0x6E, 0x6F
cases = Cases()
case = cases.case


def request(bed, raw, device, value, token):
    start = len(bed.observer.lines)
    raw.publish_file(raw.observe_request(device, value, token))
    bed.observer.wait_line(r"OBSERVE_REQ for device %s accepted" % id16(device), 20, start)


def metrics_of(path):
    """The exposition file as {name{labels}: value}; checks its grammar."""
    values = {}
    with open(path) as f:
        text = f.read()
    check(text.endswith("\n"), "metrics file does not end with a newline")
    for line in text.splitlines():
        if line.startswith("#"):
            check(re.match(r"^# (HELP|TYPE) srup_observer_\w+ .+$", line), "bad line %r" % line)
            continue
        m = re.match(r'^(srup_observer_\w+(?:\{\w+="[^"]*"(?:,\w+="[^"]*")*\})?) ([0-9.e+]+)$',
                     line)
        check(m, "bad sample line %r" % line)
        values[m.group(1)] = float(m.group(2))
    return values


def audit_lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


# ---- audit log and metrics after known outcomes -----------------------------

@case
def audit_and_metrics(build):
    with JoinBed(build, window_seconds=3, max_attempts=2) as bed:
        bed.observer_sections = {"metrics": {"file": bed.path("srup.prom"),
                                             "interval_seconds": 1}}
        bed.setup()
        bed.start_observer()
        raw = RawServer(bed).subscribe()
        values = {0xA1: b"valid-value-" * 2, 0xB2: b"invalid-val-" * 2, 0xC3: b"fail-value-" * 2}
        tokens = {0xA1: "tok-valid", 0xB2: "tok-invalid", 0xC3: "tok-fail"}
        for dev in values:
            request(bed, raw, dev, values[dev], tokens[dev])
        check(bed.present(values[0xA1], device_id=0xA1)[1] == VALID, "valid not matched", bed)
        check(bed.present(b"w1" * 8, device_id=0xB2)[1] == INVALID, "wrong matched", bed)
        check(bed.present(b"w2" * 8, device_id=0xB2)[1] == INVALID, "wrong matched", bed)
        seen = {}
        start = 0
        while len(seen) < 3:
            r = raw.response(30, start)
            start = r["_index"] + 1
            seen[bytes.fromhex(r["token"]).decode()] = r["status"]
        check(seen == {"tok-valid": VALID, "tok-invalid": INVALID, "tok-fail": FAIL},
              "responses %r" % seen, bed)

        # The audit file: one line per decided observation, hashes not values.
        audit = bed.path("observer-state", "audit.log")
        records = wait_for("3 audit records", lambda: len(audit_lines(audit)) >= 3 and
                           audit_lines(audit), 10, bed)
        check(len(records) == 3, "audit records %r" % records, bed)
        by_dev = {int(r["device"], 16): r for r in records}
        want = {0xA1: ("valid", "0x60", 0), 0xB2: ("invalid", "0x6e", 2),
                0xC3: ("expired", "0x6f", 0)}
        for dev, (outcome, status, attempts) in want.items():
            r = by_dev[dev]
            check(r["kind"] == "observation" and r["outcome"] == outcome and
                  r["status"] == status and r["attempts"] == attempts, "record %r" % r, bed)
            check(r["server"] == id16(bed.server_id) and r["channel"] == "sim", "%r" % r, bed)
            check(r["token_sha256"] == hashlib.sha256(tokens[dev].encode()).hexdigest(),
                  "token hash in %r" % r, bed)
            check(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", r["time"]), "%r" % r, bed)
            check(isinstance(r["duration_ms"], int), "%r" % r, bed)
        check(by_dev[0xC3]["duration_ms"] >= 3000, "expired before its deadline", bed)
        with open(audit, "rb") as f:
            text = f.read()
        for dev, value in values.items():
            check(value not in text and value.hex().encode() not in text,
                  "a confirmation value is in the audit log", bed)
            check(tokens[dev].encode() not in text, "a token in clear in the audit log", bed)

        # A replayed OBSERVE_REQ is dropped and counted by its reason.
        raw.publish_file(raw.observe_request(0xD4, b"d" * 16, "tok-replay", seq=raw.seq))
        bed.observer.wait_line(r"dropped message on .*replayed sequence id", 20)

        # The metrics file, rewritten on change.
        prom = bed.path("srup.prom")

        def settled():
            if not os.path.exists(prom):
                return None
            m = metrics_of(prom)
            return m if m.get('srup_observer_messages_dropped_total{reason="replay"}') == 1 \
                else None
        m = wait_for("metrics with the replay counted", settled, 20, bed)
        expect = {
            "srup_observer_requests_accepted_total": 3,
            'srup_observer_outcomes_total{outcome="valid"}': 1,
            'srup_observer_outcomes_total{outcome="invalid"}': 1,
            'srup_observer_outcomes_total{outcome="expired"}': 1,
            'srup_observer_outcomes_total{outcome="cancelled"}': 0,
            'srup_observer_frames_total{result="match"}': 1,
            'srup_observer_frames_total{result="mismatch"}': 2,
            'srup_observer_messages_dropped_total{reason="signature"}': 0,
            "srup_observer_pending": 0,
            "srup_observer_broker_connected": 1,
            "srup_observer_join_latency_seconds_count": 3,
            'srup_observer_join_latency_seconds_bucket{le="+Inf"}': 3,
        }
        for k, v in expect.items():
            check(m.get(k) == v, "metrics %s = %r, expected %r" % (k, m.get(k), v), bed)
        # The expired one waited its 3 s window: not in the 2.5 s bucket.
        check(m['srup_observer_join_latency_seconds_bucket{le="2.5"}'] == 2, "%r" % m, bed)
        check(m["srup_observer_join_latency_seconds_sum"] >= 3.0, "%r" % m, bed)
        check(not os.path.exists(prom + ".tmp"), "temporary metrics file left", bed)

        # status reads the same counters.
        rc, st = ctl_json(bed, "status")
        c = st["counters"]
        check(rc == 0 and st["pending"] == 0 and c["outcomes"]["valid"] == 1 and
              c["outcomes"]["invalid"] == 1 and c["outcomes"]["expired"] == 1 and
              c["dropped_by_reason"]["replay"] == 1 and c["requests_accepted"] == 3,
              "status %r" % st, bed)


# ---- the control socket -------------------------------------------------------

@case
def control_commands(build):
    with JoinBed(build) as bed:
        bed.setup()
        bed.start_observer()
        sock = bed.path("control.sock")
        st = os.stat(sock)
        check(st.st_mode & 0o777 == 0o660, "socket mode %o" % (st.st_mode & 0o777), bed)
        raw = RawServer(bed).subscribe()
        request(bed, raw, 0x101, b"one" * 8, "tok-1")
        request(bed, raw, 0x102, b"two" * 8, "tok-2")
        check(bed.present(b"nope" * 4, device_id=0x101)[1] == INVALID, "wrong matched", bed)

        rc, out, _ = ctl(bed, "status")
        check(rc == 0 and re.search(r"^observer %s  \(server %s\)$" % (id16(bed.observer_id),
                                                                     id16(bed.server_id)),
                                    out, re.M), "status text:\n" + out, bed)
        check(re.search(r"^  pending +2$", out, re.M) and
              re.search(r"^  broker +%s \(connected\)$" % re.escape(bed.broker_url), out, re.M) and
              re.search(r"^  channel +sim \(listening\)$", out, re.M), "status text:\n" + out, bed)
        rc, lst = ctl_json(bed, "list")
        devs = {int(e["device"], 16): e for e in lst["observations"]}
        check(rc == 0 and lst["pending"] == 2 and set(devs) == {0x101, 0x102}, "%r" % lst, bed)
        check(devs[0x101]["attempts"] == 1 and devs[0x102]["attempts"] == 0, "%r" % lst, bed)
        check(0 < devs[0x101]["deadline_in_ms"] <= 120000, "%r" % lst, bed)
        rc, out, _ = ctl(bed, "list")
        check(rc == 0 and re.search(r"^%s +\S+ +1 +\S+$" % id16(0x101), out, re.M),
              "list text:\n" + out, bed)

        # cancel answers 0x6F through the engine.
        rc, out, _ = ctl(bed, "cancel", "102")
        check(rc == 0 and "cancelled: device %s answered 0x6f" % id16(0x102) in out, out, bed)
        r = raw.response(20)
        check(r["status"] == FAIL and bytes.fromhex(r["token"]) == b"tok-2", "%r" % r, bed)
        check(bed.present(b"two" * 8, device_id=0x102)[1] == 0x00, "cancelled still pending", bed)
        rc, out, err = ctl(bed, "cancel", "102")
        check(rc == 1 and "no observation pending for device %s" % id16(0x102) in err, err, bed)
        rc, hist = ctl_json(bed, "history", "5")
        check(rc == 0 and hist["observations"][0]["outcome"] == "cancelled" and
              hist["observations"][0]["status"] == "0x6f", "%r" % hist, bed)
        audit = audit_lines(bed.path("observer-state", "audit.log"))
        check([a["outcome"] for a in audit] == ["cancelled"], "%r" % audit, bed)

        # Usage errors never reach the daemon; the daemon refuses bad lines itself.
        check(ctl(bed, "frobnicate")[0] == 2, "unknown command accepted", bed)
        check(ctl(bed, "history", "0")[0] == 2, "history 0 accepted", bed)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(sock)
            s.sendall(b"cancel zz\nstatus\n" + b"x" * 300)
            got = b""
            while True:
                try:
                    chunk = s.recv(65536)
                except ConnectionResetError:  # the daemon closed on unread input
                    break
                if not chunk:
                    break
                got += chunk
        answers = [json.loads(line) for line in got.decode().splitlines()]
        check(len(answers) == 3 and not answers[0]["ok"] and "not a device ID" in
              answers[0]["error"] and answers[1]["ok"] and not answers[2]["ok"] and
              "over the limit" in answers[2]["error"], "raw answers %r" % answers, bed)


@case
def control_stuck_client(build):
    with JoinBed(build).start() as bed:
        sock = bed.path("control.sock")
        # A client that asks and asks and never reads.
        stuck = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stuck.connect(sock)
        stuck.setblocking(False)
        sent = 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                sent += stuck.send(b"history 256\nstatus\n" * 64)
            except BlockingIOError:
                # Our side is full: the daemon stopped reading us. Let it
                # try to write a little more, then check once again.
                time.sleep(0.2)
                try:
                    sent += stuck.send(b"status\n")
                    continue
                except BlockingIOError:
                    break
        check(sent > 0, "nothing sent", bed)
        # Observations go on while it sits there, and other clients are served.
        for _ in range(2):
            rc, out = bed.join()
            check(rc == 0 and "JOIN_SUCCESS" in out, "join while a client is stuck:\n" + out, bed)
        rc, st = ctl_json(bed, "status")
        check(rc == 0 and st["counters"]["outcomes"]["valid"] == 2, "%r" % st, bed)
        rc, hist = ctl_json(bed, "history")
        check(len(hist["observations"]) == 2, "%r" % hist, bed)
        stuck.close()
        check(bed.observer.p.poll() is None, "observer died", bed)


@case
def control_refused_by_mode_or_by_daemon(build):
    # A user who is not root, the daemon's or in the socket's group: as
    # documented, the kernel refuses them first at the shipped mode 0660;
    # with the mode widened the daemon's own check refuses them.
    nobody = 65534
    with JoinBed(build).start() as bed:
        sock = bed.path("control.sock")
        os.chmod(bed.dir, 0o711)  # mkdtemp's 0700 would stop them at the directory
        st = os.stat(sock)
        check(st.st_mode & 0o777 == 0o660 and st.st_gid != nobody,
              "socket mode %o group %d" % (st.st_mode & 0o777, st.st_gid), bed)
        rc, out, err = ctl(bed, "status", user=nobody)
        check(rc == 3 and "cannot connect to %s: Permission denied" % sock in err,
              "refused by the file mode: rc %d: %s%s" % (rc, out, err), bed)
        # The daemon never saw that peer: a later request is answered and
        # nothing was logged before it (accepts are in arrival order).
        check(ctl(bed, "status")[0] == 0, "root's status failed", bed)
        check(bed.observer.count(r"control socket: refused") == 0,
              "a refusal logged though the kernel refused the connect", bed)

        os.chmod(sock, 0o666)
        argv = ["setpriv", "--reuid=%d" % nobody, "--regid=%d" % nobody, "--clear-groups",
                bed.bin("srup-observerctl"), "--socket", sock, "status"]
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = p.communicate(timeout=60)
        bed.log("ctl status as nobody| rc=%d %s%s" % (p.returncode, out, err))
        check(p.returncode == 1 and "permission denied: uid %d is not root" % nobody in err,
              "refused by the daemon: rc %d: %s%s" % (p.returncode, out, err), bed)
        # setpriv execs: the peer the daemon saw is this pid.
        bed.observer.wait_line(r"control socket: refused pid %d uid %d" % (p.pid, nobody), 10)


@case
def control_connect_bounded(build):
    # The daemon's loop is stopped and its listen queue is full: the connect
    # itself would wait for ever, the whole exchange is bounded.
    with JoinBed(build).start() as bed:
        sock = bed.path("control.sock")
        pid = bed.observer.p.pid
        fillers = []
        os.kill(pid, signal.SIGSTOP)
        try:
            # Non-blocking connects queue until the backlog (16, a few more
            # by the kernel's count) is full, then fail with EAGAIN.
            for _ in range(256):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.setblocking(False)
                try:
                    s.connect(sock)
                except BlockingIOError:
                    s.close()
                    break
                fillers.append(s)
            check(16 <= len(fillers) < 256, "%d connections queued" % len(fillers), bed)
            argv = [bed.bin("srup-observerctl"), "--socket", sock, "status"]
            p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                # A guard against a hang, not a measure of the bound.
                out, err = p.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.communicate()
                check(False, "srup-observerctl still waiting after 60 s on a full queue", bed)
            bed.log("ctl status on a full queue| rc=%d %s%s" % (p.returncode, out, err))
            check(p.returncode == 3 and "cannot connect to %s" % sock in err and
                  "no connection within" in err, "rc %d: %s%s" % (p.returncode, out, err), bed)
        finally:
            for s in fillers:
                s.close()
            os.kill(pid, signal.SIGCONT)
        # Let go, the daemon serves again (once it has closed the queued
        # connections it may say "too many control connections" for a while).
        wait_for("an answer once the daemon runs again", lambda: ctl(bed, "status")[0] == 0,
                 60, bed)
        check(bed.observer.p.poll() is None, "observer died", bed)


@case
def audit_rotation(build):
    # max_pending 1: every further request is answered 0x6F at once, one
    # audit record each.
    with JoinBed(build, max_pending=1) as bed:
        bed.observer_sections = {"audit": {"max_bytes": 4096, "keep": 2}}
        bed.setup()
        bed.start_observer()
        raw = RawServer(bed).subscribe()
        request(bed, raw, 0x200, b"held" * 4, "tok-held")
        n = 40
        for i in range(n):
            raw.publish_file(raw.observe_request(0x300 + i, b"v" * 16, "tok-%d" % i))
        last = id16(0x300 + n - 1)
        bed.observer.wait_line(r"observation device=%s outcome=overflow" % last, 60)
        base = bed.path("observer-state", "audit.log")
        # The log line comes first; the audit record follows it.
        wait_for("the last record", lambda: '"device":"%s"' % last in open(base).read(), 20, bed)
        files = [base, base + ".1", base + ".2"]
        for f in files:
            check(os.path.exists(f), "%s missing" % f, bed)
            check(os.path.getsize(f) <= 4096, "%s is %d bytes" % (f, os.path.getsize(f)), bed)
        check(not os.path.exists(base + ".3"), "more files kept than keep = 2", bed)
        records = [r for f in reversed(files) for r in audit_lines(f)]
        devs = [int(r["device"], 16) for r in records]
        # The newest are kept, in order, with none missing between.
        check(devs == list(range(devs[0], 0x300 + n)), "records %r" % [hex(d) for d in devs], bed)
        check(all(r["outcome"] == "overflow" for r in records), "%r" % records, bed)


# ---- structured journald records ---------------------------------------------

def journal_datagrams(sock, want, timeout, bed):
    """Native journal protocol datagrams (KEY=value lines) read from sock
    until want(fields) holds for one; returns them all."""
    got = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        check(left > 0, "no journal record as expected; got %r" % got, bed)
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        fields = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
        got.append(fields)
        if want(fields):
            return got


@case
def journal_fields(build):
    # journald's socket, played by the test: a tmpfs over /run (in this
    # test's own mount namespace) holding /run/systemd/journal/socket.
    import faults
    run = faults.Tmpfs("/run", 1024)
    try:
        os.makedirs("/run/systemd/journal")
        journal = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        journal.bind("/run/systemd/journal/socket")
        with JoinBed(build) as bed:
            bed.setup()
            bed.start_observer()
            raw = RawServer(bed).subscribe()
            value = b"journal-value-16"
            request(bed, raw, 0xE1, value, "tok-journal")
            check(bed.present(value, device_id=0xE1)[1] == VALID, "no match", bed)
            got = journal_datagrams(journal, lambda f: f.get("SRUP_KIND") == "observation", 20,
                                    bed)
            rec = got[-1]
            want = {
                "SRUP_DEVICE": id16(0xE1), "SRUP_SERVER": id16(bed.server_id),
                "SRUP_OUTCOME": "valid", "SRUP_STATUS": "0x60", "SRUP_ATTEMPTS": "0",
                "SRUP_CHANNEL": "sim", "PRIORITY": "5",
                "SRUP_TOKEN_SHA256": hashlib.sha256(b"tok-journal").hexdigest(),
                "MESSAGE": "observation device=%s outcome=valid status=0x60" % id16(0xE1),
            }
            for k, v in want.items():
                check(rec.get(k) == v, "journal %s = %r, expected %r (%r)" % (k, rec.get(k), v,
                                                                            rec), bed)
            check(int(rec["SRUP_DURATION_MS"]) >= 0, "%r" % rec, bed)
            check(all(value.hex() not in repr(g) and "journal-value" not in repr(g) and
                      "tok-journal" not in repr(g) for g in got), "a secret in the journal", bed)
        journal.close()
    finally:
        run.close()


if __name__ == "__main__":
    if sys.argv[2:3] == ["journal_fields"]:
        import faults
        faults.reexec_in_private_mount_namespace()
    sys.exit(cases.main(sys.argv))
