#!/usr/bin/env python3
"""The device role end to end over a real Mosquitto broker: every server
command answered by `srup-device run` (and by srup-observerd, which
registers the same role), driven by the server-side peer in command mode,
with a real HTTP(S) server (tests/lib/http_server.py) for the updates.

Each case is one ctest test: test_device_role.py BUILD_DIR CASE.
"""
import os
import re
import socket
import stat
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from joinbed import Cases, JoinBed, RawServer, check, id16, topic_id  # noqa: E402
import srup_wire  # noqa: E402
from http_server import GOOD, ERROR_BODY, MISSING_BODY, HttpServer, good_digest, sha256_hex  # noqa: E402

UPDATE_SUCCESS, ACTIVATE_SUCCESS, ACTIVATE_FAIL = 0x00, 0x10, 0x1F
ACTION_SUCCESS, ACTION_UNKNOWN, ACTION_FAIL = 0x20, 0x2E, 0x2F
DATA_UNKNOWN = 0x3F
GROUP_ADD_OK, GROUP_DEL_OK, GROUP_DEL_INVALID, GROUP_ADD_LIMIT = 0x40, 0x41, 0x4C, 0x4E
JOIN_SUCCESS, JOIN_REFUSED = 0x50, 0x5E
RESIGN_SUCCESS = 0x70
HTTP_ERROR, SERVER_FAIL, FILE_FAIL, DIGEST_FAIL = 0xFC, 0xFD, 0xFE, 0xFF
EXIT_DEREGISTERED = 79

cases = Cases()
case = cases.case


# ---- the bed: keys, broker, peer in command mode, the agent ------------------

HOOK_SCRIPT = """#!/bin/sh
# Records how it was called: argv one per line, then its stdin.
out="$SRUP_TEST_OUT"
[ -n "$out" ] || out=%(dir)s/hook-$(basename "$0")-$$
{ for a in "$@"; do echo "arg:$a"; done; } > "$out.args"
cat > "$out.stdin"
case "$1" in
  */updates/*) cp "$1" "$out.file" ;;
esac
echo "hook output line"
exit %(status)d
"""


def write_hook(bed, name, status=0, sleep=0):
    path = bed.path(name)
    body = HOOK_SCRIPT % {"dir": bed.path("hooks-ran"), "status": status}
    if sleep:
        body = body.replace("exit ", "sleep %d\nexit " % sleep)
    with open(path, "w") as f:
        f.write(body)
    os.chmod(path, 0o755)
    return path


def hook_runs(bed, name):
    """The runs of hook `name` so far: a list of (args, stdin, copied file)."""
    d = bed.path("hooks-ran")
    runs = []
    for entry in sorted(os.listdir(d)):
        if entry.startswith("hook-%s-" % name) and entry.endswith(".args"):
            stem = os.path.join(d, entry[:-5])
            with open(stem + ".args") as f:
                args = [line[4:] for line in f.read().splitlines()]
            stdin = open(stem + ".stdin", "rb").read() if os.path.exists(stem + ".stdin") else b""
            copied = open(stem + ".file", "rb").read() if os.path.exists(stem + ".file") else None
            runs.append((args, stdin, copied))
    return runs


class RoleBed(JoinBed):
    """A JoinBed whose peer runs in command mode and controls the device,
    with hooks in the device's configuration and an HTTP(S) server."""

    def __init__(self, build, device_sections=None, tls=True, **kw):
        super().__init__(build, **kw)
        self.extra_device_sections = device_sections or {}
        self.tls = tls
        self.http = None
        self.agent = None

    def start(self):
        try:
            self.setup_role()
        except BaseException:
            self.close()
            raise
        return self

    def setup_role(self):
        os.makedirs(self.path("hooks-ran"), exist_ok=True)
        self.http = HttpServer(self.path("http"), tls=self.tls).start()
        self.activate_hook = write_hook(self, "activate")
        self.action_hook = write_hook(self, "action")
        self.failing_hook = write_hook(self, "failing", status=3)
        self.data_hook = write_hook(self, "data")
        sections = {
            "update": {"max_bytes": 100000, "connect_timeout_seconds": 5,
                       "timeout_seconds": 60, "activate": self.activate_hook},
            "hooks": {"timeout_seconds": 30},
            "actions": {"1": self.action_hook + " --reboot now", "2": self.failing_hook},
            "data": {"CONFIG": self.data_hook},
            "identification": {"text": "test sensor v1; rev C"},
        }
        if self.http.ca_file:
            sections["update"]["ca_file"] = self.http.ca_file
        for name, keys in self.extra_device_sections.items():
            sections.setdefault(name, {}).update(keys)
        self.device_sections = sections
        self.setup()
        self.start_peer(commands=True, watch=[self.device_id])

    def start_agent(self, wait=True):
        self.agent = self.spawn("agent", [self.bin("srup-device"), "--config",
                                          self.device_config, "run"])
        if wait:
            self.agent.wait_line(r"connected to the broker; answering", 20)
        return self.agent

    def stop_agent(self):
        rc = self.agent.stop()
        self.agent = None
        return rc

    def close(self):
        super().close()
        if self.http:
            self.http.close()

    # ---- exchanges ---------------------------------------------------
    def command(self, msg_type, **fields):
        return self.send(self.device_id, msg_type, **fields)

    def response(self, sent, timeout=30):
        return self.peer_event("RESPONSE", timeout, sent["_index"], device=self.device_id,
                               token=sent["token"])

    def status(self, sent, timeout=30):
        return int(self.response(sent, timeout)["status"], 16)

    def no_response(self, sent, seconds=3):
        return self.no_peer_event("RESPONSE", seconds, sent["_index"], device=self.device_id,
                                  token=sent["token"])

    def staged(self):
        d = self.path("device-state", "updates")
        return sorted(os.listdir(d)) if os.path.isdir(d) else []


def role_bed(build, bed_class=RoleBed, **kw):
    """A started bed (RoleBed or a subclass) with its device agent running."""
    bed = bed_class(build, **kw).start()
    try:
        bed.start_agent()
    except BaseException:
        bed.close()
        raise
    return bed


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---- ID_REQ --------------------------------------------------------------------

@case
def id_request(build):
    with role_bed(build) as bed:
        sent = bed.command("id_request")
        ev = bed.peer_event("DATA", 30, sent["_index"], device=bed.device_id, token=sent["token"])
        check(ev["data_id"] == "IDENTIFICATION_RESPONSE" and
              bytes.fromhex(ev["data_hex"]) == b"test sensor v1; rev C", "DATA %r" % ev, bed)


@case
def id_request_observer_default(build):
    """The appliance answers too, by default with its name, version and
    /etc/os-release PRETTY_NAME."""
    with JoinBed(build) as bed:
        bed.setup()
        bed.start_peer(commands=True)
        bed.start_observer()
        sent = bed.send(bed.observer_id, "id_request")
        ev = bed.peer_event("DATA", 30, sent["_index"], device=bed.observer_id,
                            token=sent["token"])
        text = bytes.fromhex(ev["data_hex"]).decode()
        pretty = ""
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    pretty = line.split("=", 1)[1].strip().strip('"')
        check(re.fullmatch(r"srup-observerd \d+\.\d+\.\d+; " + re.escape(pretty), text),
              "identification %r" % text, bed)


# ---- INITIATE / ACTIVATE ---------------------------------------------------------

@case
def update_then_activate(build):
    with role_bed(build) as bed:
        sent = bed.command("initiate", url=bed.http.url("/good"), digest=good_digest)
        check(bed.status(sent) == UPDATE_SUCCESS, "INITIATE not 0x00", bed)
        check(len(bed.staged()) == 1 and not bed.staged()[0].startswith("."),
              "staged: %r" % bed.staged(), bed)
        staged = bed.path("device-state", "updates", bed.staged()[0])
        check(stat.S_IMODE(os.stat(staged).st_mode) == 0o600, "staged file not 0600", bed)
        check(open(staged, "rb").read() == GOOD, "staged file differs", bed)
        act = bed.command("activate", token=sent["token"])
        check(bed.status(act) == ACTIVATE_SUCCESS, "ACTIVATE not 0x10", bed)
        runs = hook_runs(bed, "activate")
        check(len(runs) == 1, "activate hook ran %d times" % len(runs), bed)
        args, _, copied = runs[0]
        check(args == [staged, sent["token"]] and copied == GOOD,
              "hook args %r, file %s" % (args, copied is not None), bed)
        bed.agent.wait_line(r"hook activate\[\d+\]: hook output line", 10)
        # The 32 raw bytes form of the digest is accepted too.
        raw = bed.command("initiate", url=bed.http.url("/good"), digest_hex=good_digest)
        check(bed.status(raw) == UPDATE_SUCCESS, "raw digest refused", bed)


@case
def update_from_pysrup_server(build):
    """INITIATE as a pySRUP server builds it (WIRE.md Q8): pySRUPLib's
    setters send the URL and the digest with their C terminator, length()+1
    bytes. With both fields terminated, and with each alone, the download
    is verified and staged, and ACTIVATE runs the hook on it. Another NUL
    is still refused."""
    with role_bed(build) as bed:
        sub = bed.subscribe_raw("SRUP/" + topic_id(bed.device_id))
        url = bed.http.url("/good").encode()
        digest = good_digest.encode()
        forms = {"both terminated": (url + b"\0", digest + b"\0"),
                 "url terminated": (url + b"\0", digest),
                 "digest terminated": (url, digest + b"\0"),
                 "raw digest terminated": (url, bytes.fromhex(good_digest) + b"\0")}
        for name, (url_field, digest_field) in forms.items():
            sent = bed.command("initiate", url_hex=url_field.hex(), digest_hex=digest_field.hex())
            # The bytes on the wire are pySRUP's: lv16(url\0), lv16(digest\0).
            for _, msg in bed.raw_messages(sub, 20):
                if msg["type"] == "initiate" and bytes.fromhex(msg["token"]) == \
                        sent["token"].encode():
                    body = srup_wire.split(bytes.fromhex(msg["_hex"]))[3]
                    check(body == struct.pack(">H", len(url_field)) + url_field +
                          struct.pack(">H", len(digest_field)) + digest_field,
                          "%s: INITIATE body %s" % (name, body.hex()), bed)
                    break
            status = bed.status(sent)
            check(status == UPDATE_SUCCESS, "%s: INITIATE answered 0x%02x" % (name, status), bed)
            staged = bed.path("device-state", "updates", sent["token"].encode().hex())
            check(os.path.exists(staged) and open(staged, "rb").read() == GOOD,
                  "%s: staged %r" % (name, bed.staged()), bed)
            act = bed.command("activate", token=sent["token"])
            check(bed.status(act) == ACTIVATE_SUCCESS, "%s: ACTIVATE not 0x10" % name, bed)
            runs = hook_runs(bed, "activate")
            check(runs and runs[-1][0] == [staged, sent["token"]] and runs[-1][2] == GOOD,
                  "%s: activate hook %r" % (name, runs[-1][0] if runs else None), bed)
        check(bed.http.count("/good") == len(forms), "downloads: %d" % bed.http.count("/good"),
              bed)
        # Only one terminator: a second one, or a NUL inside, is refused.
        two = bed.command("initiate", url_hex=(url + b"\0\0").hex(), digest=good_digest)
        check(bed.status(two) == FILE_FAIL, "URL with two NULs not 0xFE", bed)
        inner = bed.command("initiate", url_hex=(url + b"\0x\0").hex(), digest=good_digest)
        check(bed.status(inner) == FILE_FAIL, "URL with a NUL inside not 0xFE", bed)
        long_digest = bed.command("initiate", url=url.decode(),
                                  digest_hex=(digest + b"\0\0").hex())
        check(bed.status(long_digest) == DIGEST_FAIL, "66-byte digest not 0xFF", bed)
        check(bed.http.count("/good") == len(forms), "a refused INITIATE downloaded", bed)


@case
def update_wrong_digest(build):
    with role_bed(build) as bed:
        sent = bed.command("initiate", url=bed.http.url("/other"), digest=good_digest)
        check(bed.status(sent) == DIGEST_FAIL, "wrong digest not 0xFF", bed)
        check(bed.staged() == [], "left behind: %r" % bed.staged(), bed)
        act = bed.command("activate", token=sent["token"])
        check(bed.status(act) == ACTIVATE_FAIL and hook_runs(bed, "activate") == [],
              "ACTIVATE of a failed token ran", bed)
        # A token verified once, then INITIATEd again with a wrong file:
        # the older file goes too, and ACTIVATE of that token runs nothing.
        good = bed.command("initiate", url=bed.http.url("/good"), digest=good_digest)
        check(bed.status(good) == UPDATE_SUCCESS and len(bed.staged()) == 1, "not staged", bed)
        again = bed.command("initiate", token=good["token"], url=bed.http.url("/other"),
                            digest=good_digest)
        check(bed.status(again) == DIGEST_FAIL and bed.staged() == [],
              "left behind after a failed re-download: %r" % bed.staged(), bed)
        act = bed.command("activate", token=good["token"])
        check(bed.status(act) == ACTIVATE_FAIL and hook_runs(bed, "activate") == [],
              "ACTIVATE after a failed re-download ran", bed)


@case
def update_http_error(build):
    """An HTTP error status: 0xFC, DATA HTTP_STATUS, DATA HTTP_RESPONSE, then
    the final 0xFE (file not supplied); nothing staged."""
    with role_bed(build) as bed:
        for path, code, body in (("/missing", 404, MISSING_BODY), ("/error", 500, ERROR_BODY)):
            sent = bed.command("initiate", url=bed.http.url(path), digest=good_digest)
            first = bed.response(sent)
            st = bed.peer_event("DATA", 30, sent["_index"], token=sent["token"],
                                data_id="HTTP_STATUS")
            resp = bed.peer_event("DATA", 30, sent["_index"], token=sent["token"],
                                  data_id="HTTP_RESPONSE")
            final = bed.peer_event("RESPONSE", 30, first["_index"] + 1, token=sent["token"])
            check(first["status"] == "0xfc" and final["status"] == "0xfe",
                  "%s: statuses %r %r" % (path, first, final), bed)
            check(first["_index"] < st["_index"] < resp["_index"] < final["_index"],
                  "%s: out of order" % path, bed)
            check(bytes.fromhex(st["data_hex"]) == str(code).encode() and
                  bytes.fromhex(resp["data_hex"]) == body, "%s: data %r %r" % (path, st, resp), bed)
            check(bed.staged() == [], "left behind: %r" % bed.staged(), bed)


@case
def update_unreachable(build):
    with role_bed(build) as bed:
        sent = bed.command("initiate", url="http://127.0.0.1:%d/good" % free_port(),
                           digest=good_digest)
        check(bed.status(sent) == SERVER_FAIL, "unreachable not 0xFD", bed)
        # A scheme other than http/https is never fetched.
        ftp = bed.command("initiate", url="file:///etc/passwd", digest=good_digest)
        check(bed.status(ftp) == FILE_FAIL, "file:// not refused with 0xFE", bed)
        check(bed.staged() == [], "left behind: %r" % bed.staged(), bed)


@case
def update_too_large(build):
    with role_bed(build, device_sections={"update": {"max_bytes": 1000}}) as bed:
        sent = bed.command("initiate", url=bed.http.url("/big?bytes=50000"),
                           digest=sha256_hex(b"B" * 50000))
        check(bed.status(sent) == FILE_FAIL, "oversized not refused with 0xFE", bed)
        check(bed.staged() == [], "left behind: %r" % bed.staged(), bed)


@case
def update_redirects_and_timeout(build):
    """Redirects are followed up to [update] max_redirects; a transfer
    that outlasts timeout_seconds is refused; nothing is left behind."""
    with role_bed(build, device_sections={"update": {"max_redirects": 2,
                                                     "timeout_seconds": 2}}) as bed:
        ok = bed.command("initiate", url=bed.http.url("/redirect?n=2"), digest=good_digest)
        check(bed.status(ok) == UPDATE_SUCCESS, "2 redirects not followed", bed)
        staged = bed.staged()
        far = bed.command("initiate", url=bed.http.url("/redirect?n=3"), digest=good_digest)
        check(bed.status(far) == FILE_FAIL, "3 redirects not refused with 0xFE", bed)
        slow = bed.command("initiate", url=bed.http.url("/slow?s=30"), digest=good_digest)
        check(bed.status(slow, 60) == FILE_FAIL, "over the total timeout not 0xFE", bed)
        check(bed.staged() == staged, "left behind: %r" % bed.staged(), bed)


@case
def activate_unknown_token(build):
    with role_bed(build) as bed:
        act = bed.command("activate", token="never-initiated")
        check(bed.status(act) == ACTIVATE_FAIL, "unknown token not 0x1F", bed)
        time.sleep(0.5)
        check(hook_runs(bed, "activate") == [], "hook ran", bed)


# ---- ACTION / DATA ------------------------------------------------------------------

@case
def action(build):
    with role_bed(build) as bed:
        ok = bed.command("action", action_id=1)
        check(bed.status(ok) == ACTION_SUCCESS, "action 1 not 0x20", bed)
        runs = hook_runs(bed, "action")
        check(len(runs) == 1 and runs[0][0] == ["--reboot", "now"], "runs %r" % runs, bed)
        bad = bed.command("action", action_id=2)
        check(bed.status(bad) == ACTION_FAIL, "failing hook not 0x2F", bed)
        unknown = bed.command("action", action_id=200)
        check(bed.status(unknown) == ACTION_UNKNOWN, "unknown action not 0x2E", bed)


@case
def data(build):
    with role_bed(build) as bed:
        sent = bed.command("data", data_id="CONFIG", data_hex="00ff0a41")
        bed.agent.wait_line(r"hook data-CONFIG\[\d+\] exited with status 0", 20)
        runs = hook_runs(bed, "data")
        check(len(runs) == 1 and runs[0][1] == bytes.fromhex("00ff0a41"), "runs %r" % runs, bed)
        check(bed.no_response(sent, 1), "a handled DATA was answered", bed)
        unknown = bed.command("data", data_id="NO_SUCH", data="x")
        check(bed.status(unknown) == DATA_UNKNOWN, "unknown data not 0x3F", bed)


# ---- groups -----------------------------------------------------------------------------

def group_add(bed, group):
    return bed.status(bed.command("group_add", group_id=group))


def group_message_answered(bed, group):
    sent = bed.send_group(group, "action", bed.device_id, action_id=200)
    return bed.peer_event("RESPONSE", 30, sent["_index"], token=sent["token"])


@case
def group_add_and_message(build):
    with role_bed(build) as bed:
        check(group_add(bed, "site.A-1") == GROUP_ADD_OK, "GROUP_ADD not 0x40", bed)
        check(int(group_message_answered(bed, "site.A-1")["status"], 16) == ACTION_UNKNOWN,
              "group message not handled", bed)
        check(group_add(bed, "bad/group") == 0x4F, "bad group ID not 0x4F", bed)
        # Leaving: answered 0x41, and the group topic is no longer handled.
        check(bed.status(bed.command("group_destroy", group_id="site.A-1")) == GROUP_DEL_OK,
              "GROUP_DESTROY not 0x41", bed)
        late = bed.send_group("site.A-1", "action", bed.device_id, action_id=200)
        check(bed.no_response(late, 3), "group message after leaving answered", bed)


@case
def group_limit(build):
    with role_bed(build, device_sections={"groups": {"max": 1}}) as bed:
        check(group_add(bed, "g1") == GROUP_ADD_OK, "first GROUP_ADD refused", bed)
        check(group_add(bed, "g2") == GROUP_ADD_LIMIT, "GROUP_ADD past the limit not 0x4E", bed)


@case
def group_delete_not_member(build):
    with role_bed(build) as bed:
        check(bed.status(bed.command("group_delete", group_id="nope")) == GROUP_DEL_INVALID,
              "GROUP_DELETE of a non-member not 0x4C", bed)
        check(group_add(bed, "g1") == GROUP_ADD_OK, "GROUP_ADD refused", bed)
        check(bed.status(bed.command("group_delete", group_id="g1")) == GROUP_DEL_OK,
              "GROUP_DELETE not 0x41", bed)


@case
def group_survives_restart(build):
    with role_bed(build) as bed:
        check(group_add(bed, "g1") == GROUP_ADD_OK, "GROUP_ADD refused", bed)
        path = bed.path("device-state", "groups")
        check(stat.S_IMODE(os.stat(path).st_mode) == 0o600, "groups file not 0600", bed)
        check(bed.stop_agent() == 0, "agent did not stop cleanly", bed)
        bed.start_agent()
        bed.agent.wait_line(r"member of group g1 \(restored\)", 10)
        check(int(group_message_answered(bed, "g1")["status"], 16) == ACTION_UNKNOWN,
              "group message not handled after the restart", bed)


# ---- JOIN_COMMAND, TERMINATE, DEREGISTER ---------------------------------------------

@case
def terminate_then_ignored(build):
    with role_bed(build) as bed:
        check(bed.status(bed.command("terminate_command")) == RESIGN_SUCCESS,
              "TERMINATE not answered 0x70", bed)
        ignored = bed.command("action", action_id=1)
        bed.agent.wait_line(r"dropped action .* terminated this device", 20)
        check(bed.no_response(ignored, 2) and hook_runs(bed, "action") == [],
              "command obeyed after TERMINATE", bed)
        # Also after a restart.
        bed.stop_agent()
        bed.start_agent()
        ignored = bed.command("id_request")
        bed.agent.wait_line(r"dropped id_request .* terminated this device", 20)
        # A new join is obeyed, and then everything else again.
        join = bed.command("join_command", device_id=id16(bed.device_id))
        check(bed.status(join) == GROUP_DEL_OK, "JOIN_COMMAND not accepted (0x41)", bed)
        check(bed.status(bed.command("action", action_id=200)) == ACTION_UNKNOWN,
              "not obeyed after the new join", bed)


@case
def join_command_policy(build):
    with role_bed(build, device_sections={"join": {"command": "refuse"}}) as bed:
        join = bed.command("join_command", device_id=id16(bed.device_id))
        check(bed.status(join) == JOIN_REFUSED, "refused JOIN_COMMAND not 0x5E", bed)


@case
def deregister_stops(build):
    with role_bed(build) as bed:
        sent = bed.command("deregister_command")
        rc = bed.agent.wait(30)
        check(rc == EXIT_DEREGISTERED, "exit status %r" % rc, bed)
        check(bed.agent.count(r"deregistered by server %s: its key removed" %
                              id16(bed.server_id)) == 1, "no clear log line", bed)
        check(bed.no_response(sent, 1), "answered a DEREGISTER_CMD", bed)
        record = bed.path("device-state", "deregistered")
        check(os.path.exists(record) and stat.S_IMODE(os.stat(record).st_mode) == 0o600,
              "no 0600 record", bed)
        # Stays stopped: a restart exits 79 at once, saying how to clear it.
        again = bed.start_agent(wait=False)
        check(again.wait(20) == EXIT_DEREGISTERED, "restart did not exit 79", bed)
        check(re.search(r"not starting: deregistered by server %s .*remove that file" %
                        id16(bed.server_id), again.text()), "restart log unclear", bed)
        check(again.count(r"connected to the broker") == 0, "restart connected", bed)


@case
def observer_deregister_stops(build):
    """The appliance obeys DEREGISTER_CMD the same way: exit 79, and 79 at
    once on a restart, with its observations never started again."""
    with JoinBed(build) as bed:
        bed.setup()
        bed.start_peer(commands=True)
        obs = bed.start_observer()
        bed.send(bed.observer_id, "deregister_command")
        check(obs.wait(30) == EXIT_DEREGISTERED, "observer exit status %r" % obs.p.returncode,
              bed)
        check(obs.count(r"deregistered by server %s: its key removed" % id16(bed.server_id)) == 1,
              "no clear log line", bed)
        again = bed.start_observer(wait=False)
        check(again.wait(20) == EXIT_DEREGISTERED and
              re.search(r"not starting: deregistered by server", again.text()),
              "restart did not refuse with 79", bed)


# ---- senders, replays -----------------------------------------------------------------

@case
def foreign_sender_ignored(build):
    """Commands signed by someone else, or naming the server but signed by
    another key, on the device's topic or on one of its group topics, are
    dropped before any handler; a forged high sequence ID blocks nothing."""
    with role_bed(build) as bed:
        rogue_id = 0x0badc0de
        rogue_key = bed.add_device("rogue", rogue_id)
        check(group_add(bed, "g1") == GROUP_ADD_OK, "GROUP_ADD refused", bed)
        for sender, dev_topic in ((rogue_id, "SRUP/" + topic_id(bed.device_id)),
                                  (bed.server_id, "SRUP/" + topic_id(bed.device_id)),
                                  (rogue_id, "SRUP/groups/g1"), (bed.server_id, "SRUP/groups/g1")):
            raw = RawServer(bed, server_id=sender, sign_key=rogue_key)
            raw.seq = 1 << 40
            start = bed.peer.mark()
            for msg in ({"type": "action", "action_id": 1},
                        {"type": "initiate", "url": bed.http.url("/good").encode().hex(),
                         "digest": good_digest.encode().hex()},
                        {"type": "deregister_command"}):
                raw.seq += 1
                msg.update({"version": 5, "sequence_id": id16(raw.seq), "sender_id": id16(sender),
                            "token": b"rogue-token".hex()})
                raw.publish_file(raw.build(msg), topic=dev_topic)
            check(bed.no_peer_event("RESPONSE", 3, start, device=bed.device_id),
                  "a foreign command was answered", bed)
        i = 0
        for _ in range(12):  # each of them dropped, and said so
            i = bed.agent.wait_line(r"dropped message on .*(unknown sender key|bad signature)",
                                    30, i)[0] + 1
        check(bed.http.count("/good") == 0 and hook_runs(bed, "action") == [],
              "a foreign command acted", bed)
        check(bed.agent.p.poll() is None, "agent stopped", bed)
        check(bed.status(bed.command("action", action_id=200)) == ACTION_UNKNOWN,
              "the server is no longer obeyed", bed)


@case
def replay_ignored(build):
    """Every command replayed byte for byte is dropped by the pipeline
    before it acts: no answer, no download, no hook, no state change."""
    with role_bed(build) as bed:
        sent = bed.command("initiate", url=bed.http.url("/good"), digest=good_digest)
        check(bed.status(sent) == UPDATE_SUCCESS, "INITIATE not 0x00", bed)
        act = bed.command("action", action_id=1)
        check(bed.status(act) == ACTION_SUCCESS, "ACTION not 0x20", bed)
        ident = bed.command("id_request")
        bed.peer_event("DATA", 30, ident["_index"], token=ident["token"])
        data = bed.command("data", data_id="CONFIG", data="x")
        bed.agent.wait_line(r"hook data-CONFIG\[\d+\] exited", 30)
        gadd = bed.command("group_add", group_id="g1")
        check(bed.status(gadd) == GROUP_ADD_OK, "GROUP_ADD refused", bed)
        gdel = bed.command("group_delete", group_id="g1")
        check(bed.status(gdel) == GROUP_DEL_OK, "GROUP_DELETE refused", bed)
        term = bed.command("terminate_command")
        check(bed.status(term) == RESIGN_SUCCESS, "TERMINATE not 0x70", bed)
        join = bed.command("join_command", device_id=id16(bed.device_id))
        check(bed.status(join) == GROUP_DEL_OK, "JOIN_COMMAND not 0x41", bed)
        downloads = bed.http.count("/good")
        for original in (sent, act, ident, data, gadd, term, gdel):
            mark = bed.agent.mark()
            start = bed.replay(int(original["n"]))
            bed.agent.wait_line(r"dropped message on .*replayed sequence id", 20, mark)
            check(bed.no_peer_event("RESPONSE", 1, start, token=original["token"]) and
                  bed.no_peer_event("DATA", 0.1, start, token=original["token"]),
                  "replayed %s answered" % original["type"], bed)
        check(bed.http.count("/good") == downloads, "a replayed INITIATE downloaded", bed)
        check(len(hook_runs(bed, "action")) == 1 and len(hook_runs(bed, "data")) == 1,
              "a replayed ACTION or DATA ran its hook", bed)
        # The replayed GROUP_ADD joined nothing, the replayed TERMINATE
        # terminated nothing: the device obeys, and is in no group.
        check(bed.status(bed.command("action", action_id=200)) == ACTION_UNKNOWN,
              "not obeyed after a replayed TERMINATE", bed)
        check(not os.path.exists(bed.path("device-state", "terminated")), "terminated", bed)
        with open(bed.path("device-state", "groups")) as f:
            check(f.read() == "", "a replayed GROUP_ADD joined", bed)


# ---- the appliance: observations are not delayed; it joins its server --------------------

@case
def observation_not_delayed(build):
    """A download that takes 5 s and a hook that takes 5 s run on
    srup-observerd while a device joins under observation. Both are held
    past their 5 s until the observation has completed, so the join can
    only succeed if neither delays the loop; then both are answered."""
    with JoinBed(build) as bed:
        os.makedirs(bed.path("hooks-ran"), exist_ok=True)
        release = bed.path("release-hook")
        slow_hook = write_hook(bed, "slow")
        with open(slow_hook) as f:
            body = f.read()
        with open(slow_hook, "w") as f:  # 5 s, then until released (at most 120 s)
            f.write(body.replace("exit ", "sleep 5\nn=0\nwhile [ ! -e %s ] && [ $n -lt 1200 ]; "
                                 "do sleep 0.1; n=$((n+1)); done\nexit " % release))
        bed.observer_sections = {"actions": {"9": slow_hook}, "hooks": {"timeout_seconds": 300}}
        bed.setup()
        http = HttpServer(bed.path("http")).start()
        try:
            bed.start_peer(commands=True)
            bed.start_observer()
            dl = bed.send(bed.observer_id, "initiate", url=http.url("/slow?s=5&hold=1"),
                          digest=good_digest)
            hook = bed.send(bed.observer_id, "action", action_id=9)
            bed.observer.wait_line(r"hook action-9\[\d+\] started", 20)
            bed.observer.wait_line(r"INITIATE: downloading", 20)
            rc, out = bed.join()
            check(rc == 0 and "JOIN_SUCCESS" in out, "join failed: %s" % out, bed)
            outcome = bed.outcome(30)
            check(outcome["observer_status"] == "0x60", "observation %r" % outcome, bed)
            check(bed.no_peer_event("RESPONSE", 0.1, dl["_index"], token=dl["token"]) and
                  bed.no_peer_event("RESPONSE", 0.1, hook["_index"], token=hook["token"]),
                  "held work answered before it was released", bed)
            http.release()
            open(release, "w").close()
            dl_resp = bed.peer_event("RESPONSE", 60, dl["_index"], token=dl["token"])
            hook_resp = bed.peer_event("RESPONSE", 60, hook["_index"], token=hook["token"])
            check(dl_resp["status"] == "0x00" and hook_resp["status"] == "0x20",
                  "slow work failed: %r %r" % (dl_resp, hook_resp), bed)
            check(outcome["_index"] < dl_resp["_index"] and outcome["_index"] < hook_resp["_index"],
                  "the observation waited for the download or the hook", bed)
        finally:
            http.close()


@case
def observer_joins_server(build):
    """[server] join = auto: the appliance sends JOIN_REQ at first start,
    records the verdict, and does not ask again after a restart."""
    with JoinBed(build, observer_sections={"server": {"join": "auto"}}) as bed:
        bed.setup()
        bed.start_peer(commands=True, join_policy="accept")
        bed.start_observer()
        bed.peer_event("JOIN_REQUEST", 30, 0, device=bed.observer_id, mode="unmediated")
        bed.peer_event("OUTCOME", 30, 0, device=bed.observer_id, mode="unmediated",
                       status=JOIN_SUCCESS)
        bed.observer.wait_line(r"join of server .*: RESPONSE 0x50", 20)
        record = bed.path("observer-state", "join")
        check(os.path.exists(record), "verdict not recorded", bed)
        bed.stop_observer()
        start = bed.peer.mark()
        bed.start_observer()
        check(bed.no_peer_event("JOIN_REQUEST", 3, start, device=bed.observer_id),
              "joined again after a restart", bed)
        # Answered like any device.
        sent = bed.send(bed.observer_id, "action", action_id=7)
        check(bed.peer_event("RESPONSE", 30, sent["_index"], token=sent["token"])["status"] ==
              "0x2e", "observer did not answer ACTION", bed)


if __name__ == "__main__":
    sys.exit(cases.main(sys.argv))
