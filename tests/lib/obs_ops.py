"""What the tests of the observer's operator interfaces and faults share
beyond joinbed: waiting on a condition, the RESPONSEs a RawServer saw so
far (decoded), and srup-observerctl's answers.
"""
import json
import re
import subprocess
import time

from joinbed import check


def wait_for(what, fn, timeout, bed=None, poll=None):
    """fn()'s first true value within timeout seconds; poll() runs between
    tries (a main loop to pump), else a short sleep."""
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got:
            return got
        check(time.monotonic() < deadline, "timed out waiting for %s" % what, bed)
        if poll:
            poll()
        else:
            time.sleep(0.1)


def responses(raw):
    """Every RESPONSE raw's subscriber saw, verified with the observer's key
    and decoded, in arrival order; an exact duplicate (a QoS 1 redelivery)
    once."""
    out, seen = [], set()
    for _, line in list(raw.sub.lines):
        if not re.match(r"^[0-9a-f]+$", line) or line in seen:
            continue
        seen.add(line)
        d = subprocess.run([raw.bed.bin("srup-msg"), "decode", "--hex", "--verify",
                            raw.bed.observer_pub, "-"], input=line, stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True)
        if d.returncode == 0:
            msg = json.loads(d.stdout)
            if msg.get("type") == "response":
                out.append(msg)
    return out


def ctl(bed, *args, user=None):
    """srup-observerctl on the bed's control socket: (rc, stdout, stderr);
    user: run as that uid (and gid), with no supplementary groups."""
    argv = [bed.bin("srup-observerctl"), "--socket", bed.path("control.sock")] + list(args)
    if user is not None:
        argv = ["setpriv", "--reuid=%d" % user, "--regid=%d" % user, "--clear-groups"] + argv
    out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         timeout=30)
    bed.log("ctl %s| rc=%d %s%s" % (" ".join(args), out.returncode, out.stdout, out.stderr))
    return out.returncode, out.stdout, out.stderr


def ctl_json(bed, *args):
    rc, out, err = ctl(bed, "--json", *args)
    check(rc in (0, 1), "srup-observerctl %s: rc %d: %s" % (" ".join(args), rc, err), bed)
    return rc, json.loads(out)
