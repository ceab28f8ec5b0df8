#!/usr/bin/env python3
"""--check-config of srup-observerd and srup-device, and the drop-ins both
read (FILE.d/*.conf after FILE), over the real programs.

Each case is one ctest test: test_check_config.py BUILD_DIR CASE.
"""
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from joinbed import Cases, JoinBed, check, id16, topic_id  # noqa: E402

EXIT_CONFIG = 78
EXIT_USAGE = 2
cases = Cases()
case = cases.case


def run(argv, timeout=60):
    out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         timeout=timeout)
    return out.returncode, out.stdout, out.stderr


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return path


def error_lines(stderr):
    """The <3> lines; every line of stderr must be one (one problem each)."""
    lines = [l for l in stderr.splitlines() if l and not l.startswith("note: ")]
    for line in lines:
        check(re.match(r"^<[34]>", line), "not a log line of its own: %r\n%s" % (line, stderr))
    return lines


def has_line(lines, path, line, where, what):
    prefix = "<3>%s:%d: %s: " % (path, line, where)
    return any(l.startswith(prefix) and what in l for l in lines)


# The example as a package ships it: not to be edited (dpkg would ask on
# upgrade), so everything the site needs goes into a drop-in.
SHIPPED_OBSERVER = """\
[identity]
id = 0
private_key = /nonexistent/observer/private.pem
[server]
id = 0
public_key = /nonexistent/server-public.pem
[mqtt]
broker = tcp://c2.example.net:1883
[observation]
channel = sim
window_seconds = 120
[sim]
socket = /nonexistent/sim.sock
[state]
dir = /nonexistent/state
"""


def site_dropin(bed, window):
    return ("[identity]\nid = %s\nprivate_key = %s\n[server]\nid = %s\npublic_key = %s\n"
            "[mqtt]\nbroker = %s\n[observation]\nwindow_seconds = %d\n[sim]\nsocket = %s\n"
            "[state]\ndir = %s\n[control]\nsocket = %s\n"
            % (topic_id(bed.observer_id), bed.observer_priv, topic_id(bed.server_id),
               bed.server_pub, bed.broker_url, window, bed.sim_socket,
               bed.path("observer-state"), bed.path("control.sock")))


@case
def observer_dropins(build):
    """The shipped file untouched, the site's values in drop-ins read in
    byte order: --check-config lists the files read and passes; the daemon
    runs with the drop-ins' values."""
    with JoinBed(build) as bed:
        bed.setup()
        main = write(bed.path("etc", "observer.conf"), SHIPPED_OBSERVER)
        rc, out, err = run([bed.bin("srup-observerd"), "--config", main, "--check-config"])
        check(rc == EXIT_CONFIG, "shipped example passed: %d\n%s%s" % (rc, out, err))
        lines = error_lines(err)
        check(has_line(lines, main, 2, "[identity] id", "0 is no node's ID") and
              has_line(lines, main, 6, "[server] public_key", "cannot read") and
              has_line(lines, main, 8, "[mqtt] broker", "placeholder"),
              "not every problem in one pass, one line each:\n" + err)

        site = write(bed.path("etc", "observer.conf.d", "50-site.conf"), site_dropin(bed, 30))
        later = write(bed.path("etc", "observer.conf.d", "60-window.conf"),
                      "[observation]\nwindow_seconds = 45\n")
        # Not read: other names and hidden files.
        write(bed.path("etc", "observer.conf.d", "60-window.conf.dpkg-dist"), "[bogus]\n")
        write(bed.path("etc", "observer.conf.d", ".70-hidden.conf"), "[bogus]\n")
        write(bed.path("etc", "observer.conf.d", "README"), "[bogus]\n")
        rc, out, err = run([bed.bin("srup-observerd"), "--config", main, "--check-config"])
        check(rc == 0, "configured through drop-ins, refused: %d\n%s%s" % (rc, out, err))
        check(out.splitlines() == ["read %s" % main, "read %s" % site, "read %s" % later,
                                   "%s: configuration valid (observer %s, channel sim)"
                                   % (main, id16(bed.observer_id))],
              "files read not listed before the verdict:\n" + out)

        bed.observer_config = main
        obs = bed.start_observer()
        obs.wait_line(r"window 45s", 20)


@case
def observer_errors_name_the_dropin(build):
    """An error in a drop-in names the drop-in and its line, at
    --check-config and when the daemon starts; ports included."""
    with JoinBed(build) as bed:
        bed.setup()
        main = write(bed.path("etc", "observer.conf"), SHIPPED_OBSERVER)
        write(bed.path("etc", "observer.conf.d", "50-site.conf"), site_dropin(bed, 30))
        for url, what in (("mqtt://127.0.0.1:99999", "port 99999 is out of range (1..65535)"),
                          ("mqtt://127.0.0.1:http", "port 'http' is not a number"),
                          ("mqtt://127.0.0.1:", "the port after ':' is empty")):
            bad = write(bed.path("etc", "observer.conf.d", "70-broker.conf"),
                        "# the site's broker\n[mqtt]\nbroker = %s\n" % url)
            for extra in (["--check-config"], []):
                rc, out, err = run([bed.bin("srup-observerd"), "--config", main] + extra)
                check(rc == EXIT_CONFIG, "%s %s: exit %d\n%s" % (url, extra, rc, err))
                check(has_line(error_lines(err), bad, 3, "[mqtt] broker", what),
                      "%s %s: error does not name %s:3:\n%s" % (url, extra, bad, err))
            if extra == ["--check-config"]:
                check(("read %s" % bad) in out, "the drop-in not listed:\n" + out)
        os.unlink(bad)

        # A drop-in that is not a regular file is named.
        os.mkdir(bed.path("etc", "observer.conf.d", "80-dir.conf"))
        rc, out, err = run([bed.bin("srup-observerd"), "--config", main, "--check-config"])
        check(rc == EXIT_CONFIG and bed.path("etc", "observer.conf.d", "80-dir.conf") in err,
              "a directory among the drop-ins: %d\n%s" % (rc, err))


@case
def observer_nfc_node_missing(build):
    """A channel that cannot work on this machine fails the check."""
    with JoinBed(build, channel="nfc") as bed:
        bed.observer_sections = {"nfc": {"device": "pn532_uart:/nonexistent/ttyUSB9"}}
        bed.setup()
        rc, out, err = run([bed.bin("srup-observerd"), "--config", bed.observer_config,
                            "--check-config"])
        check(rc == EXIT_CONFIG, "nfc on a missing node passed: %d\n%s%s" % (rc, out, err))
        check(re.search(r"^<3>%s:\d+: \[nfc\] device: 'pn532_uart:/nonexistent/ttyUSB9': "
                        r"/nonexistent/ttyUSB9: No such file or directory; the nfc channel "
                        r"cannot work on this machine$" % re.escape(bed.observer_config),
                        err, re.M), "no clear error:\n" + err)
        bed.observer_sections = {"nfc": {"device": "pn532_uart:/dev/null"}}
        bed.write_observer_config()
        rc, out, err = run([bed.bin("srup-observerd"), "--config", bed.observer_config,
                            "--check-config"])
        check(rc == 0, "nfc on an existing node refused: %d\n%s%s" % (rc, out, err))


SHIPPED_DEVICE = """\
[identity]
id = 0
private_key = /nonexistent/device/private.pem
[server]
id = 0
public_key = /nonexistent/server-public.pem
[mqtt]
broker = mqtts://c2.example.net:8883
ca_file = /nonexistent/ca.pem
[state]
dir = /nonexistent/state
"""


@case
def device_check_config(build):
    """srup-device gets the observer's checks: every problem in one pass,
    one line each with FILE:LINE, exit 78; the drop-ins' files listed."""
    with JoinBed(build) as bed:
        bed.setup()
        main = write(bed.path("etc", "device.conf"), SHIPPED_DEVICE)
        for argv in (["--config", main, "--check-config"],
                     ["--config", main, "run", "--check-config"]):
            rc, out, err = run([bed.bin("srup-device")] + argv)
            check(rc == EXIT_CONFIG, "%s: exit %d\n%s%s" % (argv, rc, out, err))
            lines = error_lines(err)
            for line, where, what in ((2, "[identity] id", "0 is no node's ID"),
                                      (3, "[identity] private_key", "cannot read"),
                                      (5, "[server] id", "0 is no node's ID"),
                                      (6, "[server] public_key", "cannot read"),
                                      (8, "[mqtt] broker", "placeholder"),
                                      (9, "[mqtt] ca_file", "cannot read")):
                check(has_line(lines, main, line, where, what),
                      "%s: no line %s:%d: %s\n%s" % (argv, main, line, where, err))
            check(len(lines) == 6, "%s: not one line per problem:\n%s" % (argv, err))
            check(out.splitlines() == ["read %s" % main], "files read:\n" + out)

        # The same problems from the agent itself, one journal line each.
        rc, out, err = run([bed.bin("srup-device"), "--config", main, "run"], timeout=30)
        check(rc == EXIT_CONFIG and len(error_lines(err)) == 6,
              "run: exit %d, lines:\n%s" % (rc, err))

        # Configured through a drop-in: passes.
        site = write(bed.path("etc", "device.conf.d", "50-site.conf"),
                     "[identity]\nid = %s\nprivate_key = %s\n[server]\nid = %s\n"
                     "public_key = %s\n[mqtt]\nbroker = %s\n[state]\ndir = %s\n"
                     % (topic_id(bed.device_id), bed.device_priv, topic_id(bed.server_id),
                        bed.server_pub, bed.broker_url, bed.path("device-state")))
        rc, out, err = run([bed.bin("srup-device"), "--config", main, "--check-config"])
        check(rc == 0, "configured device refused: %d\n%s%s" % (rc, out, err))
        check(out.splitlines() == ["read %s" % main, "read %s" % site,
                                   "%s: configuration valid (device %s)"
                                   % (main, id16(bed.device_id))], "output:\n" + out)

        # A key file that is there but not a key: named with its line.
        bad_key = write(bed.path("not-a-key.pem"), "not a key\n")
        server_key = write(bed.path("etc", "device.conf.d", "60-key.conf"),
                           "\n[server]\npublic_key = %s\n" % bad_key)
        rc, out, err = run([bed.bin("srup-device"), "--config", main, "--check-config"])
        check(rc == EXIT_CONFIG and re.search(r"^<3>%s:3: \[server\] public_key: " %
                                              re.escape(server_key), err, re.M),
              "a bad key file without FILE:LINE: %d\n%s" % (rc, err))
        os.unlink(server_key)

        # Only with run, or alone.
        rc, out, err = run([bed.bin("srup-device"), "--config", main, "join", "--check-config"])
        check(rc == EXIT_USAGE, "join --check-config: exit %d" % rc)


if __name__ == "__main__":
    sys.exit(cases.main(sys.argv))
