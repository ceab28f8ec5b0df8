#!/usr/bin/env python3
"""Faults survived, with real processes: the broker killed (SIGKILL) during
pending observations, the observer killed at random points of a stream of
observations, the state directory full and read-only.

Each case is one ctest test: test_faults.py BUILD_DIR CASE. The state
directory cases mount a tmpfs; they run themselves again in a mount
namespace of their own (faults.reexec_in_private_mount_namespace).
"""
import os
import random
import re
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import faults  # noqa: E402  (before JoinBed starts a broker)
from joinbed import Cases, JoinBed, RawServer, check, id16, topic_id  # noqa: E402
from obs_ops import responses, wait_for  # noqa: E402

VALID, INVALID, FAIL = 0x60, 0x6E, 0x6F
cases = Cases()
case = cases.case


def printed_value(proc):
    _, m = proc.wait_line(r"confirmation value: ([0-9a-f]+)", 60)
    return bytes.fromhex(m.group(1))


def spawn_join(bed, config, name="device"):
    return bed.spawn(name, [bed.bin("srup-device"), "--config", config, "join", "--observer",
                            topic_id(bed.observer_id), "--print-value", "--timeout", "200"])


def present_until_compared(bed, value, device_id, tries=40):
    """The OBSERVE_REQ may still be on its way: present until compared."""
    for _ in range(tries):
        rc, result, _ = bed.present(value, device_id=device_id)
        if result not in (None, 0x00):
            return result
        time.sleep(0.25)
    return None


# ---- the broker killed ----------------------------------------------------------

@case
def broker_sigkill(build):
    with JoinBed(build).start() as bed:
        id2 = JoinBed._fresh_id()
        config2 = bed.write_device_config("device2", id2, bed.add_device("device2", id2))
        dev_a = spawn_join(bed, bed.device_config, "device-a")
        dev_b = spawn_join(bed, config2, "device-b")
        value_a, value_b = printed_value(dev_a), printed_value(dev_b)
        for dev in (bed.device_id, id2):
            bed.observer.wait_line(r"OBSERVE_REQ for device %s accepted" % id16(dev), 30)
        time.sleep(1.5)  # every session is in the broker's saved database
        mark = len(bed.observer.lines)
        bed.broker.kill()
        # Decided while the broker is dead: the RESPONSE waits in the client.
        check(bed.present(value_b, device_id=id2)[1] == VALID, "b did not match", bed)
        time.sleep(1)
        bed.broker.start_again()
        bed.observer.wait_line(r"connected to the broker", 60, mark)
        # Pending across the kill, decided after it.
        check(bed.present(value_a)[1] == VALID, "a did not match", bed)
        outcomes = {}
        start = 0
        while len(outcomes) < 2:
            o = bed.outcome(90, start)
            start = o["_index"] + 1
            outcomes[o["device"]] = (o["observer_status"], o["status"])
        want = {id16(bed.device_id): ("0x60", "0x50"), id16(id2): ("0x60", "0x50")}
        check(outcomes == want, "peer saw %r" % outcomes, bed)
        check(dev_a.wait(90) == 0 and dev_b.wait(90) == 0, "a device did not join", bed)


# ---- the observer killed -----------------------------------------------------------

ROUNDS = 20
PER_ROUND = 3


def wait_replays_refused(obs, n, timeout, bed):
    wait_for("%d replays refused" % n, lambda: obs.count(r"replayed sequence id") >= n,
             timeout, bed)


def accepted_devices(proc):
    return [int(m, 16) for m in re.findall(r"OBSERVE_REQ for device ([0-9a-f]{16}) accepted",
                                           proc.text())]


def restored_count(proc):
    """How many received messages this instance took over from the one
    killed before it (the node keeps each until its handler is done)."""
    m = re.search(r"(\d+) received message\(s\) from before a restart to handle", proc.text())
    return int(m.group(1)) if m else 0


def check_accepted_again(proc, accepted, r, bed):
    """A request is accepted by at most one instance, except that the one
    right after a kill may take over what the killed one had accepted and
    not yet answered (restored from the node's records, not redelivered by
    the broker, which the replay rule refuses), and so on while each is
    killed before answering. Returns those taken over."""
    again = []
    for d in accepted_devices(proc):
        if d in accepted:
            check(accepted[d] == r - 1 and d not in again,
                  "device %x accepted twice (rounds %d and %d)" % (d, accepted[d], r), bed)
            again.append(d)
    check(len(again) <= restored_count(proc),
          "devices %s accepted again but not taken over from before the restart"
          % ", ".join("%x" % d for d in again), bed)
    return again


@case
def observer_sigkill_repeated(build):
    seed = int(os.environ.get("SRUP_FAULT_SEED", random.randrange(1 << 30)))
    print("seed %d (SRUP_FAULT_SEED to repeat)" % seed, flush=True)
    rng = random.Random(seed)
    with JoinBed(build) as bed:
        bed.setup()
        bed.start_peer = None  # the test plays the server
        raw = RawServer(bed).subscribe()
        reqs = {}  # device -> (value, token, file)
        for r in range(ROUNDS):
            for k in range(PER_ROUND):
                dev = 0x7000 + r * 16 + k
                value = b"value-%04x-" % dev * 2
                token = "tok-%04x" % dev
                reqs[dev] = (value, token, raw.observe_request(dev, value, token))
        accepted = {}  # device -> the last instance (round) that accepted it
        taken_over = set()  # devices a restarted instance took over
        for r in range(ROUNDS):
            bed.start_observer()  # its state file loads, or this times out
            obs = bed.observer
            # Every request accepted before is refused now.
            replay = [d for d in accepted if accepted[d] == r - 1] + \
                rng.sample(sorted(accepted), min(2, len(accepted)))
            for d in replay:
                raw.publish_file(reqs[d][2])
            wait_replays_refused(obs, len(replay), 60, bed)

            def stream(devs):
                for d in devs:
                    try:
                        raw.publish_file(reqs[d][2])
                        bed.present(reqs[d][0], device_id=d, timeout=2)
                    except Exception:
                        pass  # the observer is gone: fine
            devs = [0x7000 + r * 16 + k for k in range(PER_ROUND)]
            t = threading.Thread(target=stream, args=(devs,))
            t.start()
            time.sleep(rng.uniform(0.0, 0.8))  # the stream takes about that long
            faults.sigkill(obs)
            t.join()
            bed.observer = None
            # What this instance took over from the previous one (if the
            # kill came before its RESPONSE was acknowledged) ...
            taken_over.update(check_accepted_again(obs, accepted, r, bed))
            # ... and what it accepted for the first time.
            for d in accepted_devices(obs):
                accepted[d] = r
        # Last restart: every accepted request replayed, every one refused.
        bed.start_observer()
        obs = bed.observer
        for d in sorted(accepted):
            raw.publish_file(reqs[d][2])
        wait_replays_refused(obs, len(accepted), 120, bed)
        taken_over.update(check_accepted_again(obs, accepted, ROUNDS, bed))
        # And a fresh request still works.
        fresh = raw.observe_request(0x7fff, b"fresh-value-1234", "tok-fresh")
        raw.publish_file(fresh)
        obs.wait_line(r"OBSERVE_REQ for device %s accepted" % id16(0x7fff), 30)
        check(bed.present(b"fresh-value-1234", device_id=0x7fff)[1] == VALID, "no match", bed)

        def fresh_answered():
            got = responses(raw)
            return got if any(bytes.fromhex(x["token"]) == b"tok-fresh" for x in got) else None
        got = wait_for("the fresh request's RESPONSE", fresh_answered, 30, bed)
        seqs = [int(x["sequence_id"], 16) for x in got]
        check(all(b > a for a, b in zip(seqs, seqs[1:])),
              "RESPONSE sequence IDs went back: %r" % seqs, bed)
        # A request is answered twice only if its first answer was sent but
        # not yet acknowledged when the instance was killed: then the next
        # one took it over.
        tokens = [bytes.fromhex(x["token"]) for x in got]
        twice = {t for t in tokens if tokens.count(t) > 1}
        allowed = {("tok-%04x" % d).encode() for d in taken_over}
        check(twice <= allowed, "answered twice without being taken over: %r"
              % sorted(twice - allowed), bed)
        print("%d rounds: %d requests accepted, %d taken over after a kill, %d RESPONSEs seen "
              "(%d answered twice), sequence IDs %d..%d"
              % (ROUNDS, len(accepted), len(taken_over), len(got), len(twice), seqs[0], seqs[-1]))


# ---- the state directory full or read-only -----------------------------------------

def tmpfs_bed(build, size_kib=256):
    bed = JoinBed(build)
    mnt = faults.Tmpfs(bed.path("state-mnt"), size_kib)
    bed.observer_sections = {"state": {"dir": os.path.join(mnt.path, "observer")}}
    return bed, mnt


def observe(bed, raw, dev, value, token, start=0):
    """Publish an OBSERVE_REQ; returns its file."""
    path = raw.observe_request(dev, value, token)
    raw.publish_file(path)
    return path


@case
def state_full(build):
    bed, mnt = tmpfs_bed(build)
    try:
        with bed:
            bed.setup()
            # Full from the start: the sequence file (created at the first
            # accepted message) cannot be written, so nothing is accepted.
            mnt.fill()
            bed.start_observer()
            raw = RawServer(bed).subscribe()
            p1 = observe(bed, raw, 0x11, b"a" * 16, "tok-1")
            bed.observer.wait_line(r"cannot persist 1 accepted sequence id\(s\): .*No space "
                                   r"left on device", 30)
            bed.observer.wait_line(r"dropped message on .*could not be persisted", 5)
            check(bed.observer.count(r"accepted \(pending") == 0, "accepted unpersisted", bed)
            check(bed.present(b"a" * 16, device_id=0x11)[1] == 0x00, "it is pending", bed)
            check(raw.no_response(1), "answered without persisting", bed)
            # Space again: the same request (never persisted, so no replay)
            # is accepted now.
            mnt.free()
            raw.publish_file(p1)
            bed.observer.wait_line(r"OBSERVE_REQ for device %s accepted" % id16(0x11), 30)
            check(bed.present(b"a" * 16, device_id=0x11)[1] == VALID, "no match", bed)
            r = raw.response(30)
            check(r["status"] == VALID and bytes.fromhex(r["token"]) == b"tok-1", "%r" % r, bed)
            # Full while running: the sequence store writes in place and
            # keeps working; the audit log cannot grow and says so.
            # (Records fill the audit file's last page first: a few go in.)
            mnt.fill()
            accepted = [p1]
            audit_full = r"audit log .*cannot write a observation record: No space left on device"
            for i in range(20):
                dev = 0x1200 + i
                accepted.append(observe(bed, raw, dev, b"b" * 16, "tok-b%d" % i))
                bed.observer.wait_line(r"OBSERVE_REQ for device %s accepted" % id16(dev), 30)
                check(bed.present(b"b" * 16, device_id=dev)[1] == VALID, "no match", bed)
                r = raw.response(30, r["_index"] + 1)
                check(r["status"] == VALID and bytes.fromhex(r["token"]) == b"tok-b%d" % i,
                      "%r" % r, bed)
                if bed.observer.count(audit_full):
                    break
            check(bed.observer.count(audit_full) == 1, "no audit error on a full disk", bed)
            # What was accepted was persisted: after SIGKILL, on the full
            # disk still, the replays are refused.
            faults.sigkill(bed.observer)
            bed.start_observer()
            for p in accepted:
                raw.publish_file(p)
            wait_replays_refused(bed.observer, len(accepted), 30, bed)
            check(bed.observer.count(r"accepted \(pending") == 0, "a replay accepted", bed)
            # Space again: the audit log takes records again.
            mnt.free()
            observe(bed, raw, 0x13, b"c" * 16, "tok-3")
            bed.observer.wait_line(r"OBSERVE_REQ for device %s accepted" % id16(0x13), 30)
            check(bed.present(b"c" * 16, device_id=0x13)[1] == VALID, "no match", bed)
            audit = os.path.join(mnt.path, "observer", "audit.log")
            wait_for("the audit log to take records again",
                     lambda: '"device":"%s"' % id16(0x13) in open(audit).read(), 10, bed)
            check(bed.observer.p.poll() is None, "observer died", bed)
    finally:
        mnt.close()


@case
def state_readonly(build):
    # Linux refuses to remount read-only a file system with files open for
    # writing, and the daemon holds its sequence file open: the state
    # directory becomes read-only between runs, as after a reboot with a
    # damaged disk.
    bed, mnt = tmpfs_bed(build)
    try:
        with bed:
            bed.setup()
            bed.start_observer()
            raw = RawServer(bed).subscribe()
            p1 = observe(bed, raw, 0x21, b"r" * 16, "tok-1")
            bed.observer.wait_line(r"OBSERVE_REQ for device %s accepted" % id16(0x21), 30)
            check(bed.present(b"r" * 16, device_id=0x21)[1] == VALID, "no match", bed)
            r = raw.response(30)
            check(r["status"] == VALID, "%r" % r, bed)
            bed.stop_observer()
            seqfile = os.path.join(mnt.path, "observer", "sequences")
            with open(seqfile, "rb") as f:
                before = f.read()
            mnt.remount("ro")
            obs = bed.start_observer(wait=False)
            rc = obs.wait(60)
            check(rc is not None and rc > 0, "rc %r on a read-only state directory" % rc, bed)
            check(re.search(r"Read-only file system", obs.text()), "no clear error", bed)
            with open(seqfile, "rb") as f:
                check(f.read() == before, "the sequence file changed", bed)
            # Writable again: nothing was lost.
            mnt.remount("rw")
            bed.start_observer()
            raw.publish_file(p1)
            bed.observer.wait_line(r"replayed sequence id", 30)
            observe(bed, raw, 0x22, b"s" * 16, "tok-2")
            bed.observer.wait_line(r"OBSERVE_REQ for device %s accepted" % id16(0x22), 30)
            check(bed.present(b"s" * 16, device_id=0x22)[1] == VALID, "no match", bed)
            r = raw.response(30, r["_index"] + 1)
            check(r["status"] == VALID and bytes.fromhex(r["token"]) == b"tok-2", "%r" % r, bed)
    finally:
        mnt.close()


MOUNTING = {"state_full", "state_readonly"}


if __name__ == "__main__":
    if sys.argv[2:3] and sys.argv[2] in MOUNTING:
        faults.reexec_in_private_mount_namespace()
    sys.exit(cases.main(sys.argv))
