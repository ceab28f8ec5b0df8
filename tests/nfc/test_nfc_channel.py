#!/usr/bin/env python3
"""NFC channel tests through libnfc's real pn532_uart driver.

The observer's reader (radio_nfc.c, run by nfc_observe_probe on a real
sd-event loop) against an emulated PN532 playing a Type 4 Tag; the
device's tag emulation (radio_nfc_present.c, run by nfc_present_probe)
against an emulated PN532 playing a reader; and both at once through two
emulated PN532s sharing one field.

  test_nfc_channel.py BUILD_DIR_OF_tests/nfc CASE
"""

import os
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import pn532_emu as emu  # noqa: E402

DEVICE_ID = 0x00000000000000A1
RIGHT = b"right confirmation value 0123456789"
WRONG = b"a wrong value of the same kind 9876"
DECOY = b"decoy value behind a fault"


def frame(value, device_id=DEVICE_ID, version=1):
    return emu.confirmation_frame(device_id, value, version)


def ndef_srup_payload(msg):
    """The confirmation record's payload in an NDEF message (checks the
    encoding the device side produced, independently of the C parser)."""
    off = 0
    while off < len(msg):
        hdr, tl = msg[off], msg[off + 1]
        off += 2
        if hdr & 0x10:
            pl = msg[off]
            off += 1
        else:
            pl = struct.unpack(">I", msg[off:off + 4])[0]
            off += 4
        il = 0
        if hdr & 0x08:
            il = msg[off]
            off += 1
        rtype = msg[off:off + tl]
        off += tl + il
        payload = msg[off:off + pl]
        off += pl
        if hdr & 0x07 == 0x02 and rtype == emu.SRUP_MIME:
            assert hdr & 0x80 and hdr & 0x40, "one record, MB and ME set"
            assert off == len(msg), "nothing after the record"
            return payload
    raise AssertionError("no srup record in %s" % msg.hex())


class Failed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failed(what)


class Proc:
    """A test program with its stdout lines (and arrival times) collected."""

    def __init__(self, argv, stdin=False):
        self.argv = argv
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                  text=True, bufsize=1)
        self.lines = []
        self.err = []
        self.cond = threading.Condition()
        self.t_out = threading.Thread(target=self._pump, args=(self.p.stdout, self.lines),
                                      daemon=True)
        self.t_err = threading.Thread(target=self._pump, args=(self.p.stderr, self.err),
                                      daemon=True)
        self.t_out.start()
        self.t_err.start()

    def _pump(self, stream, into):
        for line in stream:
            with self.cond:
                into.append(line.rstrip("\n"))
                self.cond.notify_all()

    def send(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()

    def wait_line(self, prefix, count=1, timeout=10.0):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                got = [l for l in self.lines if l.startswith(prefix)]
                if len(got) >= count:
                    return got
                left = deadline - time.monotonic()
                if left <= 0 or (self.p.poll() is not None and not self.t_out.is_alive()):
                    return None
                self.cond.wait(min(left, 0.1))

    def finish(self, timeout=15.0):
        try:
            self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            raise Failed("%s did not finish in %.0f s" % (os.path.basename(self.argv[0]),
                                                          timeout))
        self.t_out.join(2)
        self.t_err.join(2)
        return self.p.returncode

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()

    def stderr_text(self):
        with self.cond:
            return "\n".join(self.err)

    def frames(self):
        out = []
        for l in self.lines:
            if l.startswith("frame "):
                _, t, dev, value, result = l.split(" ")
                out.append((float(t), int(dev, 16), bytes.fromhex(value), int(result, 16)))
        return out


class Bed:
    def __init__(self, bindir):
        self.bindir = bindir
        self.tmp = tempfile.mkdtemp(prefix="srup-nfc-")
        self.emus = []
        self.procs = []

    def path(self, name):
        return os.path.join(self.tmp, name)

    def add_emu(self, e):
        self.emus.append(e)
        return e.start()

    def observe(self, connstring, *args, control=False):
        argv = [os.path.join(self.bindir, "nfc_observe_probe"), "--device", connstring] + \
            list(args)
        if control:
            argv.append("--control")
        p = Proc(argv, stdin=control)
        self.procs.append(p)
        return p

    def present(self, connstring, value, device_id=DEVICE_ID, timeout_ms=4000):
        argv = [os.path.join(self.bindir, "nfc_present_probe"), "--device", connstring,
                "--id", "%x" % device_id, "--value", value.hex(),
                "--timeout-ms", str(timeout_ms)]
        p = Proc(argv)
        self.procs.append(p)
        return p

    def close(self):
        for p in self.procs:
            p.kill()
        for e in self.emus:
            e.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def conn(path):
    return "pn532_uart:" + path


# ---- Observer side: the reader against an emulated card ---------------------


def card_bed(bed, tags, present=True):
    link = bed.path("card")
    e = bed.add_emu(emu.Emulator.card(link, tags, present))
    return e, conn(link)


def reader_reads(bed, tags, match=RIGHT, want_value=RIGHT, frames=1, seconds=10):
    e, cs = card_bed(bed, tags)
    p = bed.observe(cs, "--frames", str(frames), "--seconds", str(seconds),
                    "--match", match.hex(), "--poll-ms", "100")
    check(p.finish() == 0, "probe failed: %s" % p.stderr_text())
    got = p.frames()
    check(len(got) == frames, "expected %d frame(s), got %s\n%s" %
          (frames, p.lines, p.stderr_text()))
    for _, dev, value, _ in got:
        check(dev == DEVICE_ID, "device id %x" % dev)
        check(value == want_value, "value %r, expected %r" % (value, want_value))
    return e, p, got


def case_reader_valid(bed):
    _, _, got = reader_reads(bed, [emu.TagSpec(frame(RIGHT))])
    check(got[0][3] == 0x60, "the callback's result byte")


def case_reader_wrong_value(bed):
    # The channel delivers what the tag holds; the callback decides.
    _, _, got = reader_reads(bed, [emu.TagSpec(frame(WRONG))], want_value=WRONG)
    check(got[0][3] == 0x6E, "the callback's result byte")


def fault_then_valid(bed, fault, warning, decoy=frame(DECOY)):
    """A tag with a fault is logged and skipped; polling resumes and the
    next (valid) tag is read."""
    e, p, _ = reader_reads(bed, [emu.TagSpec(decoy, fault), emu.TagSpec(frame(RIGHT))])
    err = p.stderr_text()
    check(warning in err, "no warning naming %r in:\n%s" % (warning, err))
    check("<4>" in err, "the skip is logged at LOG_WARNING:\n%s" % err)
    check(e.status()["activations"] >= 2, "the reader went on polling")


def case_reader_other_record(bed):
    fault_then_valid(bed, "other-record",
                     "holds no application/vnd.srup.confirmation record")


def case_reader_extra_record(bed):
    # Our record after a URI record, both with ID fields: it is found.
    reader_reads(bed, [emu.TagSpec(frame(RIGHT), "extra-record")])


def case_reader_malformed_cc(bed):
    fault_then_valid(bed, "malformed-cc", "malformed capability container: NDEF File "
                     "Control TLV is T=0x05")


def case_reader_malformed_ndef(bed):
    fault_then_valid(bed, "malformed-ndef", "run past the end of the message")


def case_reader_chunked_ndef(bed):
    fault_then_valid(bed, "chunked-ndef", "chunked records are not accepted")


def case_reader_malformed_frame(bed):
    fault_then_valid(bed, "malformed-frame", "confirmation frame (%d bytes) is malformed: "
                     "frame version is not 0x01" % len(frame(DECOY)))


def case_reader_status_word_select(bed):
    fault_then_valid(bed, "sw-select", "SELECT NDEF application: status word 6A82, not 9000")


def case_reader_status_word_read(bed):
    fault_then_valid(bed, "sw-read", "READ BINARY NDEF at offset 2: status word 6B00")


def case_reader_removed_mid_read(bed):
    fault_then_valid(bed, "removed-mid-read", "the tag stopped answering")


def case_reader_long_ndef_small_mle(bed):
    value = bytes(range(256))
    e, _, _ = reader_reads(bed, [emu.TagSpec(frame(value), mle=15)], match=value,
                           want_value=value)
    done = e.wait_event("read-complete", timeout=2)
    # 267-byte frame, long record: 306-byte message in 15-byte chunks, after
    # the CC and NLEN reads.
    check(done and done[0]["reads"] == 2 + 21, "READ BINARY count: %s" % done)


def case_reader_max_frame(bed):
    # R-APDUs of 257 bytes: extended frames between the PN532 and libnfc.
    value = bytes((i * 13) & 0xFF for i in range(256))
    e, _, _ = reader_reads(bed, [emu.TagSpec(frame(value))], match=value, want_value=value)
    done = e.wait_event("read-complete", timeout=2)
    check(done and done[0]["reads"] == 4, "READ BINARY count: %s" % done)


def case_reader_tag_left_on_reader(bed):
    # The same tag is read again at each poll, no faster than poll_ms.
    _, cs = card_bed(bed, [emu.TagSpec(frame(RIGHT))])
    p = bed.observe(cs, "--seconds", "1.5", "--poll-ms", "200")
    check(p.finish() == 0, "probe failed")
    got = p.frames()
    check(len(got) >= 2, "read again while left on the reader: %d frame(s)" % len(got))
    check(all(g[2] == RIGHT for g in got), "same value each time")
    check(len(got) <= 1.5 / 0.2 + 2, "throttled to poll_ms: %d frames in 1.5 s" % len(got))


def case_reader_queue_bounded(bed):
    # The loop stalls while a tag stays on a fast-polling reader: frames
    # beyond the queue's bound are dropped with a warning, not piled up.
    e, cs = card_bed(bed, [emu.TagSpec(frame(RIGHT))])
    p = bed.observe(cs, "--seconds", "4", "--poll-ms", "1", "--stall-ms", "2000")
    check(p.finish() == 0, "probe")
    check(p.wait_line("stalled", timeout=0), "the loop stalled")
    check("frames wait for the event loop; a frame read from a tag is dropped" in
          p.stderr_text(), "dropped frames are logged:\n%s" % p.stderr_text()[-2000:])
    reads = e.status()["reads_complete"]
    delivered = p.frames()
    check(all(f[2] == RIGHT for f in delivered), "values intact")
    check(32 < reads and len(delivered) < reads,
          "%d tags read, %d frames delivered: some dropped" % (reads, len(delivered)))


def case_reader_no_tag(bed):
    # Nothing in the field: the reader asks for a finite number of retries
    # (a real PN532 told to retry forever never answers "no target"), so
    # each poll ends at once and polling goes on without errors.
    e, cs = card_bed(bed, [emu.TagSpec(frame(RIGHT))], present=False)
    p = bed.observe(cs, "--seconds", "1.2", "--poll-ms", "100")
    check(p.finish() == 0, "probe")
    chip = e.status()["chips"][0]
    check(chip["retry_passive"] != 0xFF, "NP_INFINITE_SELECT is off: MxRtyPassiveActivation "
          "0x%02x" % chip["retry_passive"])
    check(chip["polls"] >= 3, "polled repeatedly: %d polls" % chip["polls"])
    check(not p.frames() and not [l for l in p.lines if l.startswith("unavailable")],
          "no tag, no frame, no error: %s" % p.lines)
    check("<4>" not in p.stderr_text() and "<3>" not in p.stderr_text(),
          "no tag is not a warning:\n%s" % p.stderr_text())


def case_reader_unplugged(bed):
    e, cs = card_bed(bed, [emu.TagSpec(frame(RIGHT))], present=False)
    p = bed.observe(cs, "--seconds", "30", "--frames", "1", "--poll-ms", "100")
    check(p.wait_line("listening"), "listening")
    time.sleep(0.5)
    e.unplug()
    un = p.wait_line("unavailable", timeout=5)
    check(un, "reader loss reported: %s\n%s" % (p.lines, p.stderr_text()))
    check("Input / Output Error" in un[0] or "failed" in un[0], un[0])
    time.sleep(1.5)  # reopening fails meanwhile: reported once only
    e.plug()
    e.set_present(True)
    check(p.wait_line("frame", timeout=20), "a frame after the reader came back:\n%s" %
          p.stderr_text())
    check(p.finish() == 0, "probe")
    check(len([l for l in p.lines if l.startswith("unavailable")]) == 1,
          "unavailable once: %s" % p.lines)
    check("reopening in 500 ms" in p.stderr_text(), "backoff logged")


def case_reader_open_fails(bed):
    missing = bed.path("no-such-reader")
    p = bed.observe(conn(missing), "--seconds", "2")
    check(p.finish() == 0, "probe")
    un = [l for l in p.lines if l.startswith("unavailable")]
    check(len(un) == 1, "one report while the reader stays missing: %s" % p.lines)
    check(missing in un[0] and "No such file or directory" in un[0], un[0])


def case_reader_start_stop(bed):
    e, cs = card_bed(bed, [emu.TagSpec(frame(RIGHT))])
    p = bed.observe(cs, "--seconds", "20", "--poll-ms", "100", control=True)
    time.sleep(0.5)
    check(e.status()["chips"][0]["commands"] == 0,
          "nothing is sent to the reader before listening starts")
    p.send("start")
    check(p.wait_line("frame", timeout=5), "a frame once listening")
    p.send("stop")
    check(e.wait_event("power-down", timeout=5), "the reader is closed (field off) on stop")
    time.sleep(0.2)
    n_act = e.status()["activations"]
    n_frames = len(p.frames())
    time.sleep(0.8)
    check(e.status()["activations"] == n_act, "no polling while stopped")
    check(len(p.frames()) == n_frames, "no frames while stopped")
    p.send("start")
    check(p.wait_line("frame", count=n_frames + 1, timeout=5), "frames again after start")
    p.send("quit")
    check(p.finish() == 0, "probe")


# ---- Device side: the tag emulation against an emulated reader --------------


def reader_bed(bed, script="read", present=True):
    link = bed.path("reader")
    e = bed.add_emu(emu.Emulator.reader(link, script, present))
    return e, conn(link)


def present_read(bed, value, script="read"):
    e, cs = reader_bed(bed, script)
    p = bed.present(cs, value)
    rc = p.finish()
    check(rc == 0, "present failed: %s\n%s" % (p.lines, p.stderr_text()))
    check(p.lines and p.lines[0].startswith("present success result=0x00"), p.lines)
    results = [r for r in e.status()["results"] if "ndef" in r]
    check(len(results) == 1, "one complete read: %s" % e.status()["results"])
    payload = ndef_srup_payload(bytes.fromhex(results[0]["ndef"]))
    check(payload == frame(value), "the reader got the frame: %s" % payload.hex())
    return e, results[0]


def case_present_read(bed):
    present_read(bed, RIGHT)


def case_present_max_frame(bed):
    _, r = present_read(bed, bytes(range(256)))
    check(r["mle"] == 0xFF and r["reads"] == 2, "two chunks of at most MLe: %s" % r)


def case_present_status_words(bed):
    e, _ = present_read(bed, RIGHT, script="probe")
    sws = e.status()["results"][-1]["sws"]
    check(sws == {"select-app": "9000", "select-unknown-file": "6a82",
                  "unsupported-ins": "6d00", "read-without-file": "6986"}, sws)


def case_present_reader_leaves(bed):
    e, _ = present_read(bed, RIGHT, script="leave-mid-read")
    check(e.status()["round"] == 2, "the reader came back once")


def case_present_no_reader(bed):
    _, cs = reader_bed(bed, present=False)
    p = bed.present(cs, RIGHT, timeout_ms=1200)
    check(p.finish() == 1, "present must fail")
    check(p.lines and p.lines[0].startswith("present timed out result=0x00"), p.lines)
    check("no reader came within 1200 ms" in p.lines[0], p.lines)


def case_present_open_fails(bed):
    missing = bed.path("no-such-device")
    p = bed.present(conn(missing), RIGHT, timeout_ms=1000)
    check(p.finish() == 1, "present must fail")
    check(p.lines and p.lines[0].startswith("present radio unavailable"), p.lines)
    check("No such file or directory" in p.lines[0], p.lines)


# ---- Both sides through one emulated field ----------------------------------


def field_pair(bed):
    a, b = bed.path("observer-pn532"), bed.path("device-pn532")
    e = bed.add_emu(emu.Emulator.field(a, b))
    return e, conn(a), conn(b)


def field_read(bed, value):
    _, ca, cb = field_pair(bed)
    obs = bed.observe(ca, "--frames", "1", "--seconds", "10", "--poll-ms", "100",
                      "--match", value.hex())
    check(obs.wait_line("listening"), "observer listening")
    dev = bed.present(cb, value, timeout_ms=5000)
    check(dev.finish() == 0, "present: %s\n%s" % (dev.lines, dev.stderr_text()))
    check(obs.finish() == 0, "observer")
    got = obs.frames()
    check(len(got) == 1 and got[0][2] == value and got[0][3] == 0x60,
          "observer got %s\n%s" % (obs.lines, obs.stderr_text()))


def case_field_read(bed):
    field_read(bed, RIGHT)


def case_field_max_frame(bed):
    field_read(bed, bytes((255 - i) & 0xFF for i in range(256)))


CASES = {k[len("case_"):]: v for k, v in globals().items() if k.startswith("case_")}


def main():
    if len(sys.argv) != 3 or sys.argv[2] not in CASES:
        sys.stderr.write("usage: %s BINDIR CASE\ncases: %s\n" %
                         (sys.argv[0], " ".join(sorted(CASES))))
        return 2
    bed = Bed(sys.argv[1])
    try:
        CASES[sys.argv[2]](bed)
    except Failed as f:
        print("FAIL %s: %s" % (sys.argv[2], f))
        print("0 passed, 1 failed")
        return 1
    finally:
        bed.close()
    print("1 passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
