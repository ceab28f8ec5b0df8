#!/usr/bin/env python3
"""The example device (packaging/examples/device/) against a private
Mosquitto and the test peer in command mode: ID_REQ answered with its name,
ACTION 1 done (0x20), another action unknown (0x2E), DATA written to its data
directory (taken, 0x30 to the library, which sends no RESPONSE for it:
WIRE.md defines none), a data ID that is no plain name refused (0x3F,
nothing written), and SIGTERM a clean exit 0.

Usage: test_example_device.py BUILD_DIR EXAMPLE [--root ROOT]
  BUILD_DIR  the build tree with srup-join-peer and srup-keygen
  EXAMPLE    the example program; with --root, its path inside ROOT
  --root     run it in that root (chroot: the network is the host's, so
             the broker and the peer stay on the host), as the packaging
             install test does with the example it built there from the
             installed libsrup-device-dev
"""
import argparse
import os
import re
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from joinbed import JoinBed, check, topic_id  # noqa: E402

ACTION_SUCCESS, ACTION_UNKNOWN, DATA_UNKNOWN = 0x20, 0x2E, 0x3F


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("example")
    ap.add_argument("--root")
    args = ap.parse_args()

    root = os.path.abspath(args.root) if args.root else None
    # Inside the root when there is one: the example reads its files there.
    work = tempfile.mkdtemp(prefix="srup-example-device-",
                            dir=os.path.join(root, "var", "tmp") if root else None)

    def seen(path):
        """path as the example sees it."""
        return "/" + os.path.relpath(path, root) if root else path

    bed = JoinBed(args.build, workdir=work)
    try:
        bed.setup()
        bed.start_peer(commands=True, watch=[bed.device_id])
        state = bed.path("example-state")
        data_dir = bed.path("example-data")
        os.makedirs(state, mode=0o700)
        os.makedirs(data_dir, mode=0o700)
        config = bed._ini(bed.path("example.conf"), {
            "identity": {"id": topic_id(bed.device_id), "private_key": seen(bed.device_priv)},
            "server": {"id": topic_id(bed.server_id), "public_key": seen(bed.server_pub)},
            "mqtt": {"broker": bed.broker_url},
            "state": {"dir": seen(state)},
        })
        argv = [args.example, seen(config), seen(data_dir)]
        if root:
            argv = ["chroot", root, "/usr/bin/env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                    "LC_ALL=C.UTF-8"] + argv
        example = bed.spawn("example", argv)
        example.wait_line(r"^connected to \S+ as %016x$" % bed.device_id, 30)

        sent = bed.send(bed.device_id, "id_request")
        ev = bed.peer_event("DATA", 30, sent["_index"], device=bed.device_id,
                            token=sent["token"])
        check(ev["data_id"] == "IDENTIFICATION_RESPONSE" and
              bytes.fromhex(ev["data_hex"]).startswith(b"example-device on libsrup-device "),
              "identification: %r" % ev, bed)

        for action_id, want in ((1, ACTION_SUCCESS), (9, ACTION_UNKNOWN)):
            sent = bed.send(bed.device_id, "action", action_id=action_id)
            got = int(bed.peer_event("RESPONSE", 30, sent["_index"], device=bed.device_id,
                                     token=sent["token"])["status"], 16)
            check(got == want, "ACTION %d answered 0x%02x, not 0x%02x" % (action_id, got, want),
                  bed)

        payload = bytes(range(256)) + b"\nthe end\n"
        taken = bed.send(bed.device_id, "data", data_id="CONFIG", data_hex=payload.hex())
        example.wait_line(r"^data CONFIG: %d bytes in " % len(payload), 30)
        written = os.path.join(data_dir, "CONFIG")
        check(os.path.isfile(written) and open(written, "rb").read() == payload,
              "DATA CONFIG not written as sent to %s" % written, bed)

        sent = bed.send(bed.device_id, "data", data_id="../escaped", data="x")
        got = int(bed.peer_event("RESPONSE", 30, sent["_index"], device=bed.device_id,
                                 token=sent["token"])["status"], 16)
        check(got == DATA_UNKNOWN, "DATA ../escaped answered 0x%02x, not 0x3F" % got, bed)
        check(not os.path.exists(bed.path("escaped")), "a data ID wrote outside DATA_DIR", bed)
        # Answers go out in order: had the taken DATA been answered, that
        # RESPONSE would be in by now.
        check(bed.peer.count(r"^RESPONSE .*token=%s " % re.escape(taken["token"])) == 0,
              "the taken DATA CONFIG was answered (WIRE.md defines no RESPONSE to it)", bed)

        rc = example.stop()
        check(rc == 0, "exit status %r after SIGTERM, not 0" % rc, bed)
        check(example.count(r"^stopping on signal 15$") == 1, "no 'stopping on signal 15'", bed)
    except TimeoutError:
        for p in bed.procs:  # what each said, the example's own lines above all
            print("---- %s output ----\n%s" % (p.name, p.text()))
        raise
    finally:
        bed.close()
        if not os.environ.get("SRUP_KEEP_WORKDIR"):
            shutil.rmtree(work, ignore_errors=True)
    print("example_device: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
