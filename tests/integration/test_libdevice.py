#!/usr/bin/env python3
"""libsrup-device in a device maker's own program (tests/device-side/
libdevice_app.c: srup_device.h and the shared library alone, a poll() loop)
over a real Mosquitto, driven by the server-side peer in command mode.

Each case is one ctest test: test_libdevice.py BUILD_DIR CASE.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from joinbed import Cases, check  # noqa: E402
from test_device_role import (ACTION_SUCCESS, ACTION_UNKNOWN, DATA_UNKNOWN,  # noqa: E402
                              RoleBed, hook_runs, role_bed)

cases = Cases()
case = cases.case


class AppBed(RoleBed):
    """The role bed (its device configuration has hooks, which the
    library's own program must not run) with libdevice_app as the device."""

    def __init__(self, build, attach=False, flow=None, **kw):
        super().__init__(build, **kw)
        self.attach = attach
        self.flow = flow

    def start_agent(self, wait=True):
        app = os.path.join(self.build, "tests", "device-side", "libdevice_app")
        argv = ([app] + (["--attach"] if self.attach else []) +
                (["--flow", self.flow] if self.flow else []) + [self.device_config])
        self.agent = self.spawn("app", argv)
        if wait:
            self.agent.wait_line(r"^connected ", 20)
        return self.agent


def app_bed(build, attach=False, flow=None):
    return role_bed(build, AppBed, attach=attach, flow=flow)


def answers(bed):
    # ACTION: the application's synchronous answer.
    done = bed.command("action", action_id=7)
    check(bed.status(done) == ACTION_SUCCESS, "action 7 not 0x20", bed)
    # ACTION 1 has a hook in the file: the application answers, not it.
    other = bed.command("action", action_id=1)
    check(bed.status(other) == ACTION_UNKNOWN, "action 1 not 0x2E", bed)
    check(hook_runs(bed, "action") == [], "a hook ran under the library", bed)

    # DATA: answered later, from the program's loop, with the request's token.
    later = bed.command("data", data_id="ASYNC", data_hex="00ff0a41")
    ev = bed.peer_event("DATA", 30, later["_index"], device=bed.device_id,
                        token=later["token"])
    check(ev["data_id"] == "ECHO" and ev["data_hex"].lower() == "00ff0a41",
          "DATA %r" % ev, bed)
    bed.agent.wait_line(r"^data answered", 20)
    check(bed.no_response(later, 1), "a handled DATA was answered", bed)
    unknown = bed.command("data", data_id="NO_SUCH", data="x")
    check(bed.status(unknown) == DATA_UNKNOWN, "unknown data not 0x3F", bed)

    # ID_REQ: the library's own answer, the configured text.
    ident = bed.command("id_request")
    ev = bed.peer_event("DATA", 30, ident["_index"], device=bed.device_id,
                        token=ident["token"])
    check(ev["data_id"] == "IDENTIFICATION_RESPONSE" and
          bytes.fromhex(ev["data_hex"]) == b"test sensor v1; rev C", "DATA %r" % ev, bed)
    check(bed.stop_agent() == 0, "the program did not stop cleanly", bed)


@case
def poll_loop_answers(build):
    with app_bed(build) as bed:
        answers(bed)


@case
def attached_loop_answers(build):
    """The same on the program's own sd-event loop (srup_device_attach_event),
    the later answer from a defer source of that loop."""
    with app_bed(build, attach=True) as bed:
        answers(bed)


def flow_ends(bed, verdict):
    """The flow's start, the busy refusal of a second, and its end."""
    _, m = bed.agent.wait_line(r"^flow started: .*", 20)
    line = m.group(0)
    check("flow started: success; second: a flow of that kind is already running" in line,
          "flow start: %r" % line, bed)
    _, m = bed.agent.wait_line(r"^flow (accepted|refused|failed) .*", 40)
    line = m.group(0)
    check(line.startswith("flow " + verdict), "flow end: %r" % line, bed)
    bed.agent.wait_line(r"^flow user released", 10)
    return line


@case
def flow_unmediated_join(build):
    """srup_device_join (unmediated): JOIN_REQ, the server's JOIN_SUCCESS."""
    with app_bed(build, flow="unmediated") as bed:
        check(" 0x50:" in flow_ends(bed, "accepted"), "not JOIN_SUCCESS", bed)
        check(bed.stop_agent() == 0, "the program did not stop cleanly", bed)


@case
def flow_resign(build):
    """srup_device_resign: RESIGN_REQ, the server's RESIGN_SUCCESS."""
    with app_bed(build, flow="resign") as bed:
        check(" 0x70:" in flow_ends(bed, "accepted"), "not RESIGN_SUCCESS", bed)
        check(bed.stop_agent() == 0, "the program did not stop cleanly", bed)


@case
def flow_deregister(build):
    """srup_device_deregister: DEREGISTER_SUCCESS, the server's key file
    deleted, the application told it was deregistered."""
    with app_bed(build, flow="deregister") as bed:
        check(" 0x80:" in flow_ends(bed, "accepted"), "not DEREGISTER_SUCCESS", bed)
        bed.agent.wait_line(r"^deregistered", 10)
        check(not os.path.exists(bed.server_pub), "the server's key file is still there", bed)
        bed.stop_agent()


if __name__ == "__main__":
    sys.exit(cases.main(sys.argv))
