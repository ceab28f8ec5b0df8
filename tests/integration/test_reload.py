#!/usr/bin/env python3
"""SIGHUP reloads the configuration of srup-observerd and `srup-device run`
(real Mosquitto, the sim channel, the same process throughout):

- what can change with the broker session up takes effect: the window and
  attempts of observations requested after the reload (one already pending
  keeps its own), the [actions] hooks of the next ACTION;
- a file that fails its checks is refused whole, logged with FILE:LINE, and
  the process runs on with what it had;
- a changed restart-only key is named in one log line (and by
  srup-observerctl status) and keeps its running value.

Each case is one ctest test: test_reload.py BUILD_DIR CASE.
"""
import os
import re
import signal
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from joinbed import Cases, JoinBed, RawServer, check, id16  # noqa: E402
from notify_socket import NotifySocket  # noqa: E402
from obs_ops import ctl, ctl_json, responses, wait_for  # noqa: E402
import test_device_role as role  # noqa: E402

INVALID, FAIL = 0x6E, 0x6F
cases = Cases()
case = cases.case


def hup(bed, proc, pattern, timeout=20):
    """SIGHUP to proc; waits for its line matching pattern (a reload's
    outcome) and checks the process is still the one running."""
    start = proc.mark()
    os.kill(proc.p.pid, signal.SIGHUP)
    try:
        idx, m = proc.wait_line(pattern, timeout, start)
    except TimeoutError as e:
        check(False, "after SIGHUP (exit status %r): %s" % (proc.p.poll(), e), bed)
    check(proc.p.poll() is None, "%s exited after SIGHUP" % proc.name, bed)
    return start, idx, m


def observer_bed(build, **kw):
    bed = JoinBed(build, **kw)
    try:
        bed.setup()
        bed.start_observer()
        raw = RawServer(bed).subscribe()
    except BaseException:
        bed.close()
        raise
    return bed, raw


def request(bed, raw, device, token):
    start = bed.observer.mark()
    raw.publish_file(raw.observe_request(device, b"reload-value-%x" % device, token))
    bed.observer.wait_line(r"OBSERVE_REQ for device %s accepted" % id16(device), 20, start)


def pending(bed):
    rc, lst = ctl_json(bed, "list")
    check(rc == 0, "list: %r" % lst, bed)
    return {int(e["device"], 16): e for e in lst["observations"]}


def answered(raw, token):
    hexed = token.encode().hex()
    return [r for r in responses(raw) if r.get("token") == hexed]


def rewrite_observer(bed, **sections):
    """The observer's file again with these sections' keys replaced."""
    for name, keys in sections.items():
        bed.observer_sections.setdefault(name, {}).update(keys)
    bed.write_observer_config()


def config_line(path, pattern):
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if re.search(pattern, line):
                return n
    raise AssertionError("%s: no line matching %r" % (path, pattern))


# ---- srup-observerd -------------------------------------------------------------

@case
def observer_window_for_new_only(build):
    bed, raw = observer_bed(build, window_seconds=600, max_attempts=3)
    with bed:
        pid = bed.observer.p.pid
        request(bed, raw, 0xA1, "tok-old")
        # Its wrong value counts one attempt of three.
        check(bed.present(b"wrong-1" * 3, device_id=0xA1)[1] == INVALID, "wrong matched", bed)

        rewrite_observer(bed, observation={"window_seconds": 3, "max_attempts": 1})
        hup(bed, bed.observer, r"reload: .*applied: window 3s, max_attempts 1")
        check(bed.observer.count(r"restart needed") == 0, "nothing needs a restart", bed)

        request(bed, raw, 0xB2, "tok-new")
        devs = pending(bed)
        check(devs[0xA1]["deadline_in_ms"] > 500000, "old window changed: %r" % devs, bed)
        check(devs[0xB2]["deadline_in_ms"] <= 3000, "new window not applied: %r" % devs, bed)
        # The new one ends at the deadline of the new window ...
        got = wait_for("the new observation's RESPONSE", lambda: answered(raw, "tok-new"), 30,
                       bed)
        check(got[0]["status"] == FAIL, "new one: %r" % got, bed)
        # ... the old one is still pending and still takes three attempts.
        check(bed.present(b"wrong-2" * 3, device_id=0xA1)[1] == INVALID, "wrong matched", bed)
        devs = pending(bed)
        check(0xA1 in devs and devs[0xA1]["attempts"] == 2, "old one: %r" % devs, bed)
        check(not answered(raw, "tok-old"), "the old observation was answered", bed)
        check(bed.observer.p.pid == pid and bed.observer.p.poll() is None, "not the same", bed)


@case
def observer_bad_config_refused(build):
    bed, raw = observer_bed(build, window_seconds=4)
    with bed:
        rewrite_observer(bed, observation={"window_seconds": 0})
        line = config_line(bed.observer_config, r"^window_seconds = 0$")
        _, _, m = hup(bed, bed.observer,
                      r"reload refused: (.*observer\.conf):(\d+): \[observation\] window_seconds")
        check(m.group(1) == bed.observer_config and int(m.group(2)) == line,
              "error names %s:%s, not %s:%d" % (m.group(1), m.group(2), bed.observer_config,
                                                line), bed)
        bed.observer.wait_line(r"running on unchanged", 5)
        check(bed.observer.count(r"reload: .*applied") == 0, "a refused file applied", bed)
        # The old window (4 s) is still in effect.
        request(bed, raw, 0xC3, "tok-after")
        devs = pending(bed)
        check(0 < devs[0xC3]["deadline_in_ms"] <= 4000, "window: %r" % devs, bed)
        got = wait_for("its RESPONSE", lambda: answered(raw, "tok-after"), 30, bed)
        check(got[0]["status"] == FAIL, "%r" % got, bed)

        # A key file that cannot be read is refused the same way.
        rewrite_observer(bed, observation={"window_seconds": 9},
                         server={"public_key": bed.path("no-such-key.pem")})
        hup(bed, bed.observer, r"reload refused: .*no-such-key\.pem")
        request(bed, raw, 0xD4, "tok-after-2")
        check(0 < pending(bed)[0xD4]["deadline_in_ms"] <= 4000, "window changed", bed)


@case
def observer_restart_only_named(build):
    bed, raw = observer_bed(build, window_seconds=60)
    with bed:
        url = bed.broker_url
        rewrite_observer(bed, mqtt={"broker": "tcp://127.0.0.1:1"},
                         observation={"channel": "ble", "window_seconds": 5})
        start, _, m = hup(bed, bed.observer, r"reload: restart needed for: (.*)$")
        check(m.group(1) == "[mqtt] broker, [observation] channel", "named %r" % m.group(1), bed)
        bed.observer.wait_line(r"reload: .*applied: window 5s", 5, start)
        check(bed.observer.count(r"restart needed for") == 1, "more than one line", bed)

        rc, st = ctl_json(bed, "status")
        check(rc == 0 and st["restart_needed"] == ["[mqtt] broker", "[observation] channel"],
              "status: %r" % st, bed)
        # Not half-applied: the session and the channel are the running ones.
        check(st["broker"]["url"] == url and st["broker"]["state"] == "connected" and
              st["channel"]["kind"] == "sim", "status: %r" % st, bed)
        rc, out, _ = ctl(bed, "status")
        check(re.search(r"^  restart needed +\[mqtt\] broker, \[observation\] channel", out,
                        re.M), "status text:\n" + out, bed)
        # What could change did.
        request(bed, raw, 0xE5, "tok-e5")
        check(pending(bed)[0xE5]["deadline_in_ms"] <= 5000, "window not applied", bed)
        got = wait_for("its RESPONSE", lambda: answered(raw, "tok-e5"), 30, bed)
        check(got[0]["status"] == FAIL, "%r" % got, bed)

        # Back to the running values: nothing is waiting for a restart.
        bed.observer_sections.pop("mqtt", None)
        rewrite_observer(bed, observation={"channel": "sim"})
        hup(bed, bed.observer, r"reload: .*applied")
        rc, st = ctl_json(bed, "status")
        check(st["restart_needed"] == [], "status: %r" % st, bed)
        rc, out, _ = ctl(bed, "status")
        check("restart needed" not in out, "status text:\n" + out, bed)


@case
def observer_dropin_reloaded(build):
    """A drop-in written after the start (FILE.d/*.conf) is read by the
    reload; a bad one is refused naming the drop-in's FILE:LINE."""
    bed, raw = observer_bed(build, window_seconds=60)
    with bed:
        d = bed.observer_config + ".d"
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "50-window.conf"), "w") as f:
            f.write("[observation]\nwindow_seconds = 4\n")
        hup(bed, bed.observer, r"reload: .*applied: window 4s")
        request(bed, raw, 0xF1, "tok-f1")
        check(0 < pending(bed)[0xF1]["deadline_in_ms"] <= 4000, "drop-in not applied", bed)

        bad = os.path.join(d, "60-bad.conf")
        with open(bad, "w") as f:
            f.write("# later than 50-window.conf\n[observation]\nwindow_seconds = 0\n")
        _, _, m = hup(bed, bed.observer, r"reload refused: (.*):(\d+): \[observation\] "
                      r"window_seconds")
        check(m.group(1) == bad and m.group(2) == "3", "named %s:%s" % m.groups(), bed)
        request(bed, raw, 0xF2, "tok-f2")
        check(0 < pending(bed)[0xF2]["deadline_in_ms"] <= 4000, "window changed", bed)


# ---- srup-device run -------------------------------------------------------------

def rewrite_device(bed, **sections):
    for name, keys in sections.items():
        bed.device_sections.setdefault(name, {}).update(keys)
    bed.write_device_config("device", bed.device_id, bed.device_priv)


@case
def device_action_hook_reloaded(build):
    with role.role_bed(build) as bed:
        pid = bed.agent.p.pid
        check(bed.status(bed.command("action", action_id=1)) == role.ACTION_SUCCESS, "1", bed)
        check(bed.status(bed.command("action", action_id=3)) == role.ACTION_UNKNOWN, "3", bed)

        rewrite_device(bed, actions={"1": bed.action_hook + " --changed", "3": bed.action_hook},
                       mqtt={"broker": "tcp://127.0.0.1:1"})
        start, _, m = hup(bed, bed.agent, r"reload: restart needed for: (.*)$")
        check(m.group(1) == "[mqtt] broker", "named %r" % m.group(1), bed)
        bed.agent.wait_line(r"reload: .*applied \(3 actions", 5, start)

        # The next ACTIONs run the new hooks, over the session it had.
        check(bed.status(bed.command("action", action_id=1)) == role.ACTION_SUCCESS, "1", bed)
        check(bed.status(bed.command("action", action_id=3)) == role.ACTION_SUCCESS, "3", bed)
        args = sorted(r[0] for r in role.hook_runs(bed, "action"))
        check(args == [[], ["--changed"], ["--reboot", "now"]], "runs %r" % args, bed)
        check(bed.agent.p.pid == pid and bed.agent.p.poll() is None, "not the same", bed)


@case
def device_bad_config_refused(build):
    with role.role_bed(build) as bed:
        rewrite_device(bed, actions={"1": bed.action_hook + " --changed"},
                       hooks={"timeout_seconds": 0})
        line = config_line(bed.device_config, r"^timeout_seconds = 0$")
        _, _, m = hup(bed, bed.agent,
                      r"reload refused: (.*device\.conf):(\d+): \[hooks\] timeout_seconds")
        check(m.group(1) == bed.device_config and int(m.group(2)) == line,
              "error names %s:%s" % (m.group(1), m.group(2)), bed)
        bed.agent.wait_line(r"running on unchanged", 5)
        # The old hook still runs.
        check(bed.status(bed.command("action", action_id=1)) == role.ACTION_SUCCESS, "1", bed)
        runs = role.hook_runs(bed, "action")
        check([r[0] for r in runs] == [["--reboot", "now"]], "runs %r" % runs, bed)


# ---- systemd's notify protocol (Type=notify) ----------------------------------

def notify_case(bed, proc_factory, connected_line):
    notify = NotifySocket(bed.path("notify.sock"))
    try:
        proc = proc_factory(notify.env())
        proc.wait_line(connected_line, 30)
        got = wait_for("READY=1", lambda: "READY=1" in notify.assignments(), 10, bed)
        # The log line and the STATUS= datagram are two writes: the datagram may
        # reach the reader thread after the line has been read.
        wait_for("STATUS=broker connected", lambda: any(
            a.startswith("STATUS=broker connected") for a in notify.assignments()), 10, bed)
        # WATCHDOG=1 from the loop, at half of WATCHDOG_USEC (1 s).
        n = len(notify.messages)
        wait_for("WATCHDOG=1 twice", lambda: notify.assignments(n).count("WATCHDOG=1") >= 2, 10,
                 bed)
        # A reload is bracketed by RELOADING=1 (with MONOTONIC_USEC) and READY=1.
        n = len(notify.messages)
        hup(bed, proc, r"reload: .*applied")
        seq = wait_for("RELOADING=1 then READY=1", lambda: [
            a for a in notify.assignments(n) if a.split("=")[0] in
            ("RELOADING", "READY", "MONOTONIC_USEC")] if "READY=1" in notify.assignments(n)
            else None, 10, bed)
        check(seq[0] == "RELOADING=1" and seq[1].startswith("MONOTONIC_USEC=") and
              seq[-1] == "READY=1", "reload notifications %r" % seq, bed)
        return got
    finally:
        notify.close()


@case
def observer_notify_reload(build):
    with JoinBed(build) as bed:
        bed.setup()

        def start(env):
            bed.observer = bed.spawn("observer", [bed.bin("srup-observerd"), "--config",
                                                  bed.observer_config], env=env)
            return bed.observer
        notify_case(bed, start, r"connected to the broker")


@case
def device_notify_reload(build):
    with role.RoleBed(build).start() as bed:
        def start(env):
            bed.agent = bed.spawn("agent", [bed.bin("srup-device"), "--config",
                                            bed.device_config, "run"], env=env)
            return bed.agent
        notify_case(bed, start, r"connected to the broker; answering")


if __name__ == "__main__":
    sys.exit(cases.main(sys.argv))
