#!/usr/bin/env python3
"""An emulated NXP PN532 on a pseudo-terminal, for libnfc's pn532_uart driver.

libnfc opens the pty (connstring "pn532_uart:PATH", PATH a symlink to the
pty's slave side) and talks the PN532 host protocol to it: frames
"00 00 FF LEN LCS D4 CMD ... DCS 00" (extended "00 00 FF FF FF LENm LENl LCS
..." past 254 bytes), each answered with an ACK frame and then a response
frame "D5 CMD+1 ...". What is in the RF field of the emulated chip is an
"air" object:

  card    a virtual NFC Forum Type 4 Tag for an initiator (the observer's
          reader) to select and read; its contents and faults are set per
          activation (see TagSpec).
  reader  a virtual reader for a target (the device's tag emulation): it
          activates the target and runs the Type 4 Tag read sequence.
  field   two emulated PN532s sharing one field: the initiator's
          InListPassiveTarget/InDataExchange meet the target's
          TgInitAsTarget/TgGetData/TgSetData, so that two libnfc processes
          talk to each other through their real drivers.

Used in-process by the tests (Emulator.start() runs the loop on a thread;
every public method takes the emulator's lock), or as a program with a
control socket (one JSON command per line, one JSON answer per line):

  pn532_emu.py card   --link PATH [--frame HEX ...] [--fault NAME] [--absent]
  pn532_emu.py reader --link PATH [--script read|probe|leave-mid-read] [--absent]
  pn532_emu.py field  --link PATH --link2 PATH
  common: [--control SOCKET] [--events FILE] [--verbose]

Control commands: {"cmd":"present"}, {"cmd":"remove"}, {"cmd":"unplug"},
{"cmd":"plug"}, {"cmd":"tags","tags":[TagSpec...]}, {"cmd":"status"},
{"cmd":"quit"}. Events (JSON lines, "t" is CLOCK_MONOTONIC seconds):
activated, read-complete, removed, reader-result, ...

Only the Python 3 standard library is used.
"""

import argparse
import json
import os
import select
import socket
import struct
import sys
import threading
import time
import tty

# ---- PN532 command codes (host -> chip) ---------------------------------

DIAGNOSE = 0x00
GET_FIRMWARE_VERSION = 0x02
GET_GENERAL_STATUS = 0x04
READ_REGISTER = 0x06
WRITE_REGISTER = 0x08
SET_PARAMETERS = 0x12
SAM_CONFIGURATION = 0x14
POWER_DOWN = 0x16
RF_CONFIGURATION = 0x32
IN_DATA_EXCHANGE = 0x40
IN_COMMUNICATE_THRU = 0x42
IN_DESELECT = 0x44
IN_LIST_PASSIVE_TARGET = 0x4A
IN_RELEASE = 0x52
TG_GET_DATA = 0x86
TG_INIT_AS_TARGET = 0x8C
TG_SET_DATA = 0x8E

# Status bytes (PN532 user manual, error codes).
ST_OK = 0x00
ST_TIMEOUT = 0x01           # the target did not answer
ST_RELEASED = 0x29          # the initiator released the target
ST_NOT_ACCEPTABLE = 0x27    # command not acceptable in this context

PARAM_AUTO_RATS = 0x10

ACK_FRAME = bytes([0x00, 0x00, 0xFF, 0x00, 0xFF, 0x00])
ERROR_FRAME = bytes([0x00, 0x00, 0xFF, 0x01, 0xFF, 0x7F, 0x81, 0x00])

# How long an emulated InListPassiveTarget takes when no target answers
# (a real chip with MxRtyPassiveActivation = 2 takes a few tens of ms).
NO_TARGET_DELAY = 0.02

# ---- NFC Forum Type 4 Tag constants --------------------------------------

NDEF_AID = bytes.fromhex("D2760000850101")
CC_FILE_ID = 0xE103
NDEF_FILE_ID = 0xE104
SRUP_MIME = b"application/vnd.srup.confirmation"

SW_OK = b"\x90\x00"
SW_FILE_NOT_FOUND = b"\x6A\x82"
SW_INS_NOT_SUPPORTED = b"\x6D\x00"
SW_WRONG_P1P2 = b"\x6B\x00"
SW_WRONG_LENGTH = b"\x67\x00"
SW_NOT_ALLOWED = b"\x69\x86"


def hexs(b):
    return b.hex()


def build_frame(payload):
    """One chip -> host frame around payload (D5, code+1, data)."""
    body = bytes([0xD5]) + payload
    dcs = (-sum(body)) & 0xFF
    n = len(body)
    if n <= 254:
        return bytes([0x00, 0x00, 0xFF, n, (-n) & 0xFF]) + body + bytes([dcs, 0x00])
    hi, lo = n >> 8, n & 0xFF
    return (bytes([0x00, 0x00, 0xFF, 0xFF, 0xFF, hi, lo, (-(hi + lo)) & 0xFF]) + body +
            bytes([dcs, 0x00]))


# ---- Confirmation frames and NDEF ---------------------------------------


def confirmation_frame(device_id, value, version=1):
    """OBSERVATION-CHANNEL.md section 1."""
    return struct.pack(">BQH", version, device_id, len(value)) + value


def ndef_record(tnf, rtype, payload, mb, me, rid=b"", chunk=False):
    short = len(payload) <= 255
    hdr = tnf | (0x80 if mb else 0) | (0x40 if me else 0) | (0x20 if chunk else 0)
    hdr |= 0x10 if short else 0
    hdr |= 0x08 if rid else 0
    out = bytes([hdr, len(rtype)])
    out += bytes([len(payload)]) if short else struct.pack(">I", len(payload))
    if rid:
        out += bytes([len(rid)])
    return out + rtype + rid + payload


def srup_ndef(frame):
    return ndef_record(0x02, SRUP_MIME, frame, True, True)


def capability_container(mle, mlc=0x00FF, file_id=NDEF_FILE_ID, max_size=0x0400,
                         read_access=0x00, version=0x20, tlv_tag=0x04):
    return (struct.pack(">HBHH", 0x000F, version, mle, mlc) +
            bytes([tlv_tag, 0x06]) + struct.pack(">HH", file_id, max_size) +
            bytes([read_access, 0xFF]))


class TagSpec:
    """What one activation of the virtual card serves.

    frame   confirmation frame bytes (the NDEF record's payload)
    fault   none | other-record | extra-record | malformed-cc | malformed-ndef |
            chunked-ndef | malformed-frame | sw-select | sw-read | removed-mid-read
    mle     the CC's MLe (READ BINARY chunk limit)
    """

    FAULTS = ("none", "other-record", "extra-record", "malformed-cc", "malformed-ndef",
              "chunked-ndef", "malformed-frame", "sw-select", "sw-read", "removed-mid-read")

    def __init__(self, frame=b"", fault="none", mle=0x00FF):
        if fault not in self.FAULTS:
            raise ValueError("unknown fault %r (one of %s)" % (fault, ", ".join(self.FAULTS)))
        self.frame = bytes(frame)
        self.fault = fault
        self.mle = mle

    @classmethod
    def from_json(cls, obj):
        return cls(bytes.fromhex(obj.get("frame", "")), obj.get("fault", "none"),
                   int(obj.get("mle", 0x00FF)))

    def files(self):
        """(CC bytes, NDEF file bytes) for this spec."""
        frame = self.frame
        cc = capability_container(self.mle)
        if self.fault == "malformed-frame":
            frame = bytes([0x02]) + frame[1:] if frame else b"\x02"
        if self.fault == "other-record":
            msg = ndef_record(0x01, b"U", b"\x04example.org/srup", True, True)
        elif self.fault == "extra-record":
            msg = (ndef_record(0x01, b"U", b"\x04example.org", True, False, rid=b"u1") +
                   ndef_record(0x02, SRUP_MIME, frame, False, True, rid=b"#c"))
        elif self.fault == "malformed-ndef":
            rec = srup_ndef(frame)
            msg = rec[:-3]  # the payload length says more than there is
        elif self.fault == "chunked-ndef":
            msg = ndef_record(0x02, SRUP_MIME, frame, True, True, chunk=True)
        else:
            msg = srup_ndef(frame)
        if self.fault == "malformed-cc":
            cc = capability_container(self.mle, tlv_tag=0x05)
        return cc, struct.pack(">H", len(msg)) + msg


class VirtualType4Tag:
    """The card side of one activation: answers C-APDUs from a TagSpec."""

    def __init__(self, spec):
        self.spec = spec
        self.cc, self.ndef = spec.files()
        self.app_selected = False
        self.current = None
        self.read_map = bytearray(len(self.ndef))
        self.nlen_read = False
        self.reads = 0
        self.counted = False

    def complete(self):
        return all(self.read_map)

    def apdu(self, c):
        """Returns the R-APDU, or None when the card leaves the field now."""
        if len(c) < 4:
            return SW_WRONG_LENGTH
        cla, ins, p1, p2 = c[0], c[1], c[2], c[3]
        if ins == 0xA4:
            if len(c) < 5 or len(c) < 5 + c[4]:
                return SW_WRONG_LENGTH
            data = c[5:5 + c[4]]
            if p1 == 0x04:
                if data != NDEF_AID:
                    return SW_FILE_NOT_FOUND
                if self.spec.fault == "sw-select":
                    return SW_FILE_NOT_FOUND
                self.app_selected = True
                self.current = None
                return SW_OK
            if p1 == 0x00 and len(data) == 2 and self.app_selected:
                fid = (data[0] << 8) | data[1]
                if fid == CC_FILE_ID:
                    self.current = "cc"
                    return SW_OK
                if fid == NDEF_FILE_ID:
                    self.current = "ndef"
                    return SW_OK
            return SW_FILE_NOT_FOUND
        if ins == 0xB0:
            if self.current is None:
                return SW_NOT_ALLOWED
            self.reads += 1
            off = (p1 << 8) | p2
            le = c[4] if len(c) >= 5 else 256
            le = le or 256
            body = self.cc if self.current == "cc" else self.ndef
            if off > len(body):
                return SW_WRONG_P1P2
            if self.current == "ndef":
                if self.spec.fault == "removed-mid-read" and self.nlen_read:
                    return None
                if self.spec.fault == "sw-read" and off >= 2:
                    return SW_WRONG_P1P2
                chunk = body[off:off + le]
                for i in range(off, off + len(chunk)):
                    self.read_map[i] = 1
                if off + len(chunk) >= 2:
                    self.nlen_read = True
                return chunk + SW_OK
            return body[off:off + le] + SW_OK
        return SW_INS_NOT_SUPPORTED


# ---- One emulated chip -----------------------------------------------------


class Pty:
    """The serial line: a pty whose slave name a symlink at `path` points to.
    The emulator keeps the slave open so that the master never reads EIO
    between two opens by libnfc."""

    def __init__(self, path):
        self.path = path
        self.master = None
        self.slave = None
        self.plug()

    def plug(self):
        if self.master is not None:
            return
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        tmp = self.path + ".new"
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        os.symlink(os.ttyname(self.slave), tmp)
        os.replace(tmp, self.path)

    def unplug(self):
        """The reader is unplugged: the line goes away (libnfc sees EIO)."""
        if self.master is None:
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.close(self.master)
        os.close(self.slave)
        self.master = self.slave = None

    def write(self, data):
        if self.master is None:
            return
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.master, view)
            except BlockingIOError:
                select.select([], [self.master], [], 0.1)
                continue
            view = view[n:]


class Pn532:
    def __init__(self, emu, name, path):
        self.emu = emu
        self.name = name
        self.pty = Pty(path)
        self.rx = bytearray()
        self.regs = {}
        self.params = 0
        self.retry_passive = 0xFF
        self.field_on = False
        self.pending = None       # (code, payload) waiting for the air
        self.pending_since = 0.0
        self.air = None
        self.initiator_target = False  # a target is selected (initiator side)
        self.target_active = False     # activated by a reader (target side)
        self.tg_params = None          # the TgInitAsTarget parameters
        self.last_response = None
        self.commands = 0
        self.polls = 0                 # InListPassiveTarget commands

    # -- bytes in ----------------------------------------------------------

    def fileno(self):
        return self.pty.master

    def on_readable(self):
        try:
            data = os.read(self.pty.master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
        if not data:
            return
        self.rx += data
        self.parse()

    def parse(self):
        while True:
            start = self.rx.find(b"\x00\x00\xff")
            if start < 0:
                del self.rx[:max(0, len(self.rx) - 2)]
                return
            del self.rx[:start]
            buf = self.rx
            if len(buf) < 5:
                return
            ln, lcs = buf[3], buf[4]
            if ln == 0x00 and lcs == 0xFF:        # ACK: abort the running command
                if len(buf) < 6:
                    return
                del buf[:6]
                self.emu.trace(self, "host ACK: abort %s" % self.pending_name())
                self.cancel_pending()
                continue
            if ln == 0xFF and lcs == 0x00:        # NACK: send the last answer again
                if len(buf) < 6:
                    return
                del buf[:6]
                if self.last_response:
                    self.pty.write(self.last_response)
                continue
            if ln == 0xFF and lcs == 0xFF:        # extended frame
                if len(buf) < 8:
                    return
                n = (buf[5] << 8) | buf[6]
                if (buf[5] + buf[6] + buf[7]) & 0xFF:
                    del buf[:3]
                    continue
                hdr = 8
            else:
                if (ln + lcs) & 0xFF:
                    del buf[:3]
                    continue
                n = ln
                hdr = 5
            if len(buf) < hdr + n + 2:
                return
            body = bytes(buf[hdr:hdr + n])
            dcs = buf[hdr + n]
            del buf[:hdr + n + 2]
            if n < 2 or body[0] != 0xD4 or (sum(body) + dcs) & 0xFF:
                self.emu.trace(self, "bad frame from host: %s" % hexs(body))
                continue
            self.pty.write(ACK_FRAME)
            self.command(body[1], body[2:])

    # -- answers -----------------------------------------------------------

    def reply(self, code, payload=b""):
        frame = build_frame(bytes([code + 1]) + payload)
        self.last_response = frame
        self.emu.trace(self, "<- %02X %s" % (code + 1, hexs(payload)))
        self.pty.write(frame)

    def error_frame(self):
        self.last_response = ERROR_FRAME
        self.pty.write(ERROR_FRAME)

    def pending_name(self):
        return "%02X" % self.pending[0] if self.pending else "nothing"

    def cancel_pending(self):
        if self.pending and self.air:
            self.air.cancelled(self, self.pending[0])
        self.pending = None

    def command(self, code, p):
        self.emu.trace(self, "-> %02X %s" % (code, hexs(p)))
        self.commands += 1
        if self.pending:
            # A new command supersedes one still waiting for the air.
            self.cancel_pending()
        if code == DIAGNOSE:
            if p[:1] == b"\x06":
                present = self.air.target_present(self) if self.air else False
                self.reply(code, b"\x00" if present else b"\x01")
            else:
                self.reply(code, p)
        elif code == GET_FIRMWARE_VERSION:
            self.reply(code, bytes([0x32, 0x01, 0x06, 0x07]))
        elif code == GET_GENERAL_STATUS:
            self.reply(code, bytes([0x00, 1 if self.field_on else 0,
                                    1 if self.initiator_target else 0, 0x00]))
        elif code == READ_REGISTER:
            out = bytes(self.regs.get((p[i] << 8) | p[i + 1], 0)
                        for i in range(0, len(p) - 1, 2))
            self.reply(code, out)
        elif code == WRITE_REGISTER:
            for i in range(0, len(p) - 2, 3):
                self.regs[(p[i] << 8) | p[i + 1]] = p[i + 2]
            self.reply(code)
        elif code == SET_PARAMETERS:
            self.params = p[0] if p else 0
            self.reply(code)
        elif code == SAM_CONFIGURATION:
            self.reply(code)
        elif code == POWER_DOWN:
            self.release_all()
            self.reply(code, b"\x00")
            self.emu.event("power-down", chip=self.name)
        elif code == RF_CONFIGURATION:
            if p[:1] == b"\x01" and len(p) >= 2:
                self.field_on = bool(p[1] & 0x01)
                if not self.field_on:
                    self.release_initiator()
            elif p[:1] == b"\x05" and len(p) >= 4:
                self.retry_passive = p[3]
            self.reply(code)
        elif code in (IN_DESELECT, IN_RELEASE):
            self.release_all()
            self.reply(code, b"\x00")
        elif code in (IN_LIST_PASSIVE_TARGET, IN_DATA_EXCHANGE, TG_INIT_AS_TARGET,
                      TG_GET_DATA, TG_SET_DATA):
            if code == TG_INIT_AS_TARGET:
                self.release_all()
                self.tg_params = p
                self.emu.event("tag-in-field", chip=self.name)
            elif code == IN_LIST_PASSIVE_TARGET:
                self.release_initiator()
                self.polls += 1
            self.pending = (code, bytes(p))
            self.pending_since = time.monotonic()
            self.run_pending()
        else:
            # A real PN532 answers a command it does not know with an
            # application error frame.
            self.emu.trace(self, "unsupported command %02X" % code)
            self.error_frame()

    def release_initiator(self):
        if self.initiator_target and self.air:
            self.air.initiator_released(self)
        self.initiator_target = False

    def release_all(self):
        self.release_initiator()
        if self.target_active and self.air:
            self.air.target_released(self)
        self.target_active = False

    def run_pending(self):
        """Try to finish the waiting command; the air answers or waits."""
        if not self.pending:
            return
        code, p = self.pending
        answer = None
        if self.air is None:
            answer = self.no_air(code, p)
        elif code == IN_LIST_PASSIVE_TARGET:
            answer = self.air.list_passive(self, p)
            if answer is None and self.retry_passive != 0xFF and \
                    time.monotonic() - self.pending_since >= NO_TARGET_DELAY:
                answer = b"\x00"
        elif code == IN_DATA_EXCHANGE:
            if not self.initiator_target:
                answer = bytes([ST_TIMEOUT])
            else:
                answer = self.air.exchange(self, p[1:])
        elif code == TG_INIT_AS_TARGET:
            answer = self.air.target_init(self, p)
            if answer is not None:
                self.target_active = True
        elif code == TG_GET_DATA:
            answer = self.air.target_get(self) if self.target_active else bytes([ST_RELEASED])
        elif code == TG_SET_DATA:
            answer = self.air.target_set(self, p) if self.target_active \
                else bytes([ST_RELEASED])
        if answer is not None:
            self.pending = None
            self.reply(code, answer)

    def no_air(self, code, p):
        if code == IN_LIST_PASSIVE_TARGET:
            return b"\x00"
        if code in (IN_DATA_EXCHANGE, TG_GET_DATA, TG_SET_DATA):
            return bytes([ST_TIMEOUT])
        return None

    # -- what a target looks like to an initiator ---------------------------

    @staticmethod
    def target_data(atqa, uid, sak, ats):
        """InListPassiveTarget answer for one ISO14443-A target."""
        out = bytes([0x01, 0x01]) + bytes(atqa) + bytes([sak, len(uid)]) + bytes(uid)
        if ats:
            out += bytes([len(ats) + 1]) + bytes(ats)
        return out


# ---- The airs ---------------------------------------------------------------


class Air:
    def target_present(self, pn):
        return False

    def cancelled(self, pn, code):
        pass

    def initiator_released(self, pn):
        pass

    def target_released(self, pn):
        pass

    def list_passive(self, pn, p):
        return None

    def exchange(self, pn, capdu):
        return bytes([ST_TIMEOUT])

    def target_init(self, pn, p):
        return None

    def target_get(self, pn):
        return bytes([ST_RELEASED])

    def target_set(self, pn, p):
        return bytes([ST_RELEASED])

    def tick(self):
        pass


class CardAir(Air):
    """A virtual Type 4 Tag that is or is not in the reader's field."""

    UID = bytes([0x04, 0x53, 0x52, 0x55, 0x50, 0x4E, 0x46])
    ATS = bytes([0x78, 0x77, 0x81, 0x02, 0x80])

    def __init__(self, emu, tags, present=True, cycle=False):
        self.emu = emu
        self.tags = [t for t in tags] or [TagSpec(b"")]
        self.cycle = cycle        # after the last tag, start again (else keep the last)
        self.next_tag = 0
        self.present = present
        self.card = None          # VirtualType4Tag of the current activation
        self.return_at = None     # when a card pulled mid-read comes back
        self.activations = 0
        self.reads_complete = 0

    def set_tags(self, tags):
        self.tags = list(tags) or [TagSpec(b"")]
        self.next_tag = 0

    def target_present(self, pn):
        return self.present and self.card is not None

    def list_passive(self, pn, p):
        if len(p) < 2 or p[1] != 0x00 or not self.present:
            return None
        if self.cycle:
            spec = self.tags[self.next_tag % len(self.tags)]
        else:
            spec = self.tags[min(self.next_tag, len(self.tags) - 1)]
        self.next_tag += 1
        self.card = VirtualType4Tag(spec)
        self.activations += 1
        pn.initiator_target = True
        self.emu.event("activated", n=self.activations, fault=spec.fault)
        ats = self.ATS if pn.params & PARAM_AUTO_RATS else b""
        return Pn532.target_data(b"\x00\x44", self.UID, 0x20, ats)

    def exchange(self, pn, capdu):
        if self.card is None:
            return bytes([ST_TIMEOUT])
        rapdu = self.card.apdu(capdu)
        if rapdu is None:
            self.emu.event("removed", reason="mid-read")
            self.card = None
            pn.initiator_target = False
            self.present = False
            self.return_at = time.monotonic() + 0.5
            return bytes([ST_TIMEOUT])
        if self.card.complete() and not self.card.counted:
            self.card.counted = True
            self.reads_complete += 1
            self.emu.event("read-complete", n=self.reads_complete, fault=self.card.spec.fault,
                           reads=self.card.reads)
        return bytes([ST_OK]) + rapdu

    def initiator_released(self, pn):
        self.card = None

    def tick(self):
        if self.return_at is not None and time.monotonic() >= self.return_at:
            self.return_at = None
            self.present = True
            self.emu.event("present", reason="returned")


class ReaderAir(Air):
    """A virtual reader in front of the emulated chip in target mode.

    Scripts: read (the Type 4 Tag read sequence), probe (first an unknown
    file and an unsupported instruction, then read), leave-mid-read (read
    the CC, leave the field, come back and read)."""

    def __init__(self, emu, script="read", present=True):
        self.emu = emu
        self.script = script
        self.present = present
        self.gen = None
        self.outbox = None      # the C-APDU waiting for TgGetData
        self.awaiting = False   # a C-APDU was sent, its answer not yet in
        self.round = 0
        self.results = []
        self.leave_now = False

    def target_init(self, pn, p):
        if not self.present:
            return None
        if not (p[0] & 0x04):
            self.emu.trace(pn, "reader: TgInitAsTarget without ISO14443-4 PICC mode")
            return None
        self.round += 1
        self.gen = self.run(self.round)
        self.outbox = next(self.gen, None)
        self.awaiting = False
        self.emu.event("activated", n=self.round)
        return bytes([0x08, 0xE0, 0x80])   # 106 kbps, ISO14443-4 PICC; RATS

    def target_get(self, pn):
        if self.leave_now or self.outbox is None:
            if self.gen is not None:
                self.gen = None
                self.leave_now = False
                self.emu.event("reader-left")
            return bytes([ST_RELEASED])
        if self.awaiting:
            return None
        self.awaiting = True
        return bytes([ST_OK]) + self.outbox

    def target_set(self, pn, p):
        if not self.awaiting or self.gen is None:
            return bytes([ST_RELEASED])
        self.awaiting = False
        try:
            self.outbox = self.gen.send(bytes(p))
        except StopIteration:
            self.outbox = None
        return bytes([ST_OK])

    def target_released(self, pn):
        self.gen = None

    def run(self, round_no):
        """The reader's side as a generator: yields C-APDUs, receives R-APDUs."""
        sws = {}
        if self.script == "probe" and round_no == 1:
            r = yield bytes.fromhex("00A4040007") + NDEF_AID + b"\x00"
            sws["select-app"] = hexs(r[-2:])
            r = yield bytes.fromhex("00A4000C02E105")
            sws["select-unknown-file"] = hexs(r[-2:])
            r = yield bytes.fromhex("00CA000000")
            sws["unsupported-ins"] = hexs(r[-2:])
            r = yield bytes.fromhex("00B0000002")
            sws["read-without-file"] = hexs(r[-2:])
        r = yield bytes.fromhex("00A4040007") + NDEF_AID + b"\x00"
        if r[-2:] != SW_OK:
            self.finish(round_no, error="select app %s" % hexs(r), sws=sws)
            return
        r = yield bytes.fromhex("00A4000C02E103")
        if r[-2:] != SW_OK:
            self.finish(round_no, error="select cc %s" % hexs(r), sws=sws)
            return
        r = yield bytes.fromhex("00B000000F")
        if r[-2:] != SW_OK or len(r) < 17:
            self.finish(round_no, error="read cc %s" % hexs(r), sws=sws)
            return
        cc = r[:-2]
        if self.script == "leave-mid-read" and round_no == 1:
            self.leave_now = True
            self.finish(round_no, error="left on purpose", sws=sws)
            return
        mle = (cc[3] << 8) | cc[4]
        if cc[7] != 0x04 or cc[8] != 0x06:
            self.finish(round_no, error="cc tlv %s" % hexs(cc), sws=sws)
            return
        fid = cc[9:11]
        r = yield bytes.fromhex("00A4000C02") + fid
        if r[-2:] != SW_OK:
            self.finish(round_no, error="select ndef %s" % hexs(r), sws=sws)
            return
        r = yield bytes.fromhex("00B0000002")
        if r[-2:] != SW_OK or len(r) != 4:
            self.finish(round_no, error="read nlen %s" % hexs(r), sws=sws)
            return
        nlen = (r[0] << 8) | r[1]
        msg = b""
        reads = 0
        while len(msg) < nlen:
            off = 2 + len(msg)
            le = min(mle, nlen - len(msg), 0xFF)
            r = yield bytes([0x00, 0xB0, off >> 8, off & 0xFF, le])
            reads += 1
            if r[-2:] != SW_OK or len(r) < 3:
                self.finish(round_no, error="read ndef %s" % hexs(r), sws=sws)
                return
            msg += r[:-2]
        self.finish(round_no, ndef=hexs(msg[:nlen]), sws=sws, reads=reads, mle=mle)

    def finish(self, round_no, **kw):
        res = dict(round=round_no, **kw)
        self.results.append(res)
        self.emu.event("reader-result", **res)


class FieldAir(Air):
    """One field shared by two emulated chips: whichever is in target mode
    (TgInitAsTarget pending) is found by the other's InListPassiveTarget."""

    def __init__(self, emu):
        self.emu = emu
        self.target = None       # the Pn532 in target mode, once activated
        self.inbox = None        # C-APDU from the initiator, not yet fetched
        self.exchanging = None   # the initiator Pn532 waiting for an R-APDU
        self.rapdu = None
        self.activations = 0

    def _waiting_target(self, initiator):
        for pn in self.emu.chips:
            if pn is not initiator and pn.pending and pn.pending[0] == TG_INIT_AS_TARGET:
                return pn
        return None

    def target_present(self, pn):
        return self.target is not None

    def list_passive(self, pn, p):
        if len(p) < 2 or p[1] != 0x00:
            return None
        tg = self._waiting_target(pn)
        if tg is None:
            return None
        tp = tg.tg_params
        if len(tp) < 37 or not (tp[0] & 0x04):
            return None
        mifare = tp[1:7]
        atqa = bytes([mifare[1], mifare[0]])
        uid = bytes([0x08]) + mifare[2:5]
        sak = mifare[5]
        gt_len = tp[35]
        off = 36 + gt_len
        tk_len = tp[off] if off < len(tp) else 0
        tk = tp[off + 1:off + 1 + tk_len]
        ats = bytes([0x78, 0x77, 0x81, 0x02]) + tk
        # Activate the target: its TgInitAsTarget returns with the RATS.
        tg.pending = None
        tg.target_active = True
        tg.reply(TG_INIT_AS_TARGET, bytes([0x08, 0xE0, 0x80]))
        self.target = tg
        self.inbox = None
        self.exchanging = None
        self.rapdu = None
        pn.initiator_target = True
        self.activations += 1
        self.emu.event("activated", n=self.activations)
        return Pn532.target_data(atqa, uid, sak,
                                 ats if pn.params & PARAM_AUTO_RATS else b"")

    def exchange(self, pn, capdu):
        if self.target is None or not self.target.target_active:
            return bytes([ST_TIMEOUT])
        if self.exchanging is not pn:
            self.exchanging = pn
            self.inbox = bytes(capdu)
            self.rapdu = None
            self.target.run_pending()
            return None
        if self.rapdu is not None:
            r = self.rapdu
            self.exchanging = None
            self.rapdu = None
            return bytes([ST_OK]) + r
        return None

    def target_get(self, pn):
        if pn is not self.target:
            return bytes([ST_RELEASED])
        if self.inbox is not None:
            c = self.inbox
            self.inbox = None
            return bytes([ST_OK]) + c
        return None

    def target_set(self, pn, p):
        if pn is not self.target or self.exchanging is None:
            return bytes([ST_RELEASED])
        self.rapdu = bytes(p)
        self.exchanging.run_pending()
        return bytes([ST_OK])

    def cancelled(self, pn, code):
        if code == IN_DATA_EXCHANGE and self.exchanging is pn:
            self.exchanging = None
            self.inbox = None

    def initiator_released(self, pn):
        if self.target is not None:
            tg = self.target
            self.target = None
            tg.target_active = False
            self.emu.event("released", by="initiator")
            tg.run_pending()

    def target_released(self, pn):
        if pn is self.target:
            self.target = None
            self.emu.event("released", by="target")
            if self.exchanging is not None:
                ini = self.exchanging
                self.exchanging = None
                ini.initiator_target = False
                if ini.pending and ini.pending[0] == IN_DATA_EXCHANGE:
                    ini.pending = None
                    ini.reply(IN_DATA_EXCHANGE, bytes([ST_TIMEOUT]))


# ---- The emulator: chips, loop, control -------------------------------------


class Emulator:
    def __init__(self, verbose=False, events_path=None):
        self.lock = threading.RLock()
        self.chips = []
        self.verbose = verbose
        self.events = []
        self.events_file = open(events_path, "a", buffering=1) if events_path else None
        self.cond = threading.Condition(self.lock)
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        self.stop_flag = False
        self.thread = None
        self.control = None
        self.air = None

    # -- building ------------------------------------------------------------

    def add_chip(self, name, path, air):
        pn = Pn532(self, name, path)
        pn.air = air
        self.chips.append(pn)
        return pn

    @classmethod
    def card(cls, path, tags, present=True, cycle=False, **kw):
        emu = cls(**kw)
        emu.air = CardAir(emu, tags, present, cycle)
        emu.add_chip("card", path, emu.air)
        return emu

    @classmethod
    def reader(cls, path, script="read", present=True, **kw):
        emu = cls(**kw)
        emu.air = ReaderAir(emu, script, present)
        emu.add_chip("reader", path, emu.air)
        return emu

    @classmethod
    def field(cls, path_a, path_b, **kw):
        emu = cls(**kw)
        emu.air = FieldAir(emu)
        emu.add_chip("a", path_a, emu.air)
        emu.add_chip("b", path_b, emu.air)
        return emu

    # -- events ----------------------------------------------------------------

    def trace(self, pn, text):
        if self.verbose:
            sys.stderr.write("pn532[%s] %.3f %s\n" % (pn.name, time.monotonic(), text))

    def event(self, name, **kw):
        ev = dict(t=time.monotonic(), event=name, **kw)
        self.events.append(ev)
        if self.events_file:
            self.events_file.write(json.dumps(ev) + "\n")
        if self.verbose:
            sys.stderr.write("pn532 event %s\n" % json.dumps(ev))
        self.cond.notify_all()

    def wait_event(self, name, count=1, timeout=10.0, **match):
        """Block until `count` events called `name` (matching the fields
        given) were seen; returns them, or None on timeout."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                got = [e for e in self.events if e["event"] == name and
                       all(e.get(k) == v for k, v in match.items())]
                if len(got) >= count:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)

    # -- control ---------------------------------------------------------------

    def _kick(self):
        try:
            os.write(self.wake_w, b"x")
        except BlockingIOError:
            pass

    def set_present(self, present):
        with self.lock:
            self.air.present = present
            if not present and isinstance(self.air, CardAir):
                self.air.card = None
                for pn in self.chips:
                    if pn.initiator_target:
                        pn.initiator_target = False
                self.air.return_at = None
            self.event("present" if present else "removed", reason="control")
            self._kick()

    def set_tags(self, tags):
        with self.lock:
            self.air.set_tags(tags)
            self._kick()

    def unplug(self):
        with self.lock:
            for pn in self.chips:
                pn.pty.unplug()
                pn.pending = None
                pn.rx.clear()
            self.event("unplugged")
            self._kick()

    def plug(self):
        with self.lock:
            for pn in self.chips:
                pn.pty.plug()
            self.event("plugged")
            self._kick()

    def status(self):
        with self.lock:
            st = dict(chips=[dict(name=pn.name, path=pn.pty.path,
                                  plugged=pn.pty.master is not None,
                                  pending=pn.pending_name(), commands=pn.commands,
                                  polls=pn.polls, retry_passive=pn.retry_passive)
                             for pn in self.chips])
            for k in ("present", "activations", "reads_complete", "results", "round"):
                if hasattr(self.air, k):
                    st[k] = getattr(self.air, k)
            return st

    def handle_control(self, line):
        try:
            req = json.loads(line)
            cmd = req.get("cmd")
            if cmd == "present":
                self.set_present(True)
            elif cmd == "remove":
                self.set_present(False)
            elif cmd == "unplug":
                self.unplug()
            elif cmd == "plug":
                self.plug()
            elif cmd == "tags":
                self.set_tags([TagSpec.from_json(t) for t in req.get("tags", [])])
            elif cmd == "status":
                pass
            elif cmd == "quit":
                self.stop_flag = True
                self._kick()
            else:
                return {"ok": False, "error": "unknown command %r" % cmd}
            return {"ok": True, "status": self.status()}
        except (ValueError, TypeError, AttributeError) as e:
            return {"ok": False, "error": str(e)}

    def listen_control(self, path):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path)
        s.listen(4)
        s.setblocking(False)
        self.control = (s, path, {})

    # -- loop ------------------------------------------------------------------

    def loop_once(self, timeout):
        with self.lock:
            fds = [pn for pn in self.chips if pn.pty.master is not None]
            waiting = any(pn.pending for pn in self.chips) or \
                getattr(self.air, "return_at", None) is not None
        rl = [pn.fileno() for pn in fds] + [self.wake_r]
        ctl = {}
        if self.control:
            s, _, conns = self.control
            rl.append(s.fileno())
            ctl = conns
            rl += list(conns.keys())
        try:
            r, _, _ = select.select(rl, [], [], 0.005 if waiting else timeout)
        except (OSError, ValueError):
            return
        with self.lock:
            if self.wake_r in r:
                try:
                    os.read(self.wake_r, 512)
                except BlockingIOError:
                    pass
            for pn in fds:
                if pn.pty.master is not None and pn.fileno() in r:
                    pn.on_readable()
            self.air.tick()
            for pn in self.chips:
                pn.run_pending()
        if self.control:
            s, _, conns = self.control
            if s.fileno() in r:
                try:
                    c, _ = s.accept()
                    conns[c.fileno()] = (c, bytearray())
                except BlockingIOError:
                    pass
            for fd in [fd for fd in list(ctl.keys()) if fd in r]:
                c, buf = conns[fd]
                data = c.recv(4096)
                if not data:
                    c.close()
                    del conns[fd]
                    continue
                buf += data
                while b"\n" in buf:
                    line, _, rest = bytes(buf).partition(b"\n")
                    buf[:] = rest
                    ans = self.handle_control(line.decode())
                    c.sendall((json.dumps(ans) + "\n").encode())

    def run(self):
        while not self.stop_flag:
            self.loop_once(0.2)

    def start(self):
        self.thread = threading.Thread(target=self.run, name="pn532-emu", daemon=True)
        self.thread.start()
        return self

    def close(self):
        self.stop_flag = True
        self._kick()
        if self.thread:
            self.thread.join(5)
        for pn in self.chips:
            pn.pty.unplug()
        if self.control:
            s, path, conns = self.control
            for c, _ in conns.values():
                c.close()
            s.close()
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        if self.events_file:
            self.events_file.close()
        os.close(self.wake_r)
        os.close(self.wake_w)


def control_request(path, obj, timeout=5.0):
    """Send one control command to a running emulator; returns its answer."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    try:
        s.sendall((json.dumps(obj) + "\n").encode())
        buf = b""
        while b"\n" not in buf:
            data = s.recv(4096)
            if not data:
                break
            buf += data
        return json.loads(buf.decode() or "null")
    finally:
        s.close()


def main(argv=None):
    ap = argparse.ArgumentParser(description="Emulated PN532 on a pty for libnfc's "
                                 "pn532_uart driver")
    ap.add_argument("mode", choices=("card", "reader", "field"))
    ap.add_argument("--link", required=True, help="symlink to create to the pty")
    ap.add_argument("--link2", help="field mode: the second chip's symlink")
    ap.add_argument("--frame", action="append", default=[],
                    help="card: a confirmation frame (hex) to serve; several rotate")
    ap.add_argument("--fault", default="none", choices=TagSpec.FAULTS)
    ap.add_argument("--mle", type=lambda s: int(s, 0), default=0x00FF)
    ap.add_argument("--script", default="read", choices=("read", "probe", "leave-mid-read"))
    ap.add_argument("--absent", action="store_true", help="start with nothing in the field")
    ap.add_argument("--control", help="UNIX socket for control commands")
    ap.add_argument("--events", help="append JSON events to this file")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args(argv)

    kw = dict(verbose=a.verbose, events_path=a.events)
    if a.mode == "card":
        frames = [bytes.fromhex(f) for f in a.frame] or [b""]
        # Several frames: each activation serves the next, then the cycle
        # repeats (a fresh tag per activation, as when tags are swapped).
        tags = [TagSpec(f, a.fault, a.mle) for f in frames]
        emu = Emulator.card(a.link, tags, not a.absent, cycle=True, **kw)
    elif a.mode == "reader":
        emu = Emulator.reader(a.link, a.script, not a.absent, **kw)
    else:
        if not a.link2:
            ap.error("field mode needs --link2")
        emu = Emulator.field(a.link, a.link2, **kw)
    if a.control:
        emu.listen_control(a.control)
    sys.stdout.write("ready %s\n" % json.dumps(emu.status()))
    sys.stdout.flush()
    try:
        emu.run()
    except KeyboardInterrupt:
        pass
    finally:
        emu.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
