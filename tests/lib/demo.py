#!/usr/bin/env python3
"""The demo: one machine, from nothing. A local key service registers the
observer and the device (srup-register); a private broker speaks mqtts
only, with the certificates the service issued; the C2 server peer takes
both keys from the service. Then the three outcomes of an observed join on
the sim channel:

  1. the device presents the right value      -> VALID   -> JOIN_SUCCESS
  2. an impostor presents wrong values         -> INVALID -> JOIN_REFUSED
  3. nobody presents anything before deadline  -> FAIL    -> JOIN_FAIL

Exit status 0 when all three outcomes were as expected.
"""
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "registration"))
from joinbed import id16, topic_id  # noqa: E402
from regbed import RegisteredBed  # noqa: E402

WINDOW = 4


def heading(text):
    print("\n=== %s" % text, flush=True)


def main(build):
    results = []
    with RegisteredBed(build, window_seconds=WINDOW) as bed:
        heading("setting up from nothing: key service, broker, registration")
        bed.setup()
        print("key service  %s (a local stand-in of the reference KeyEx)" % bed.keyex.url)
        print("broker       mosquitto on %s: client certificates from the service's CA,"
              " the CN as user name" % bed.broker_url)
        for name, conf in (("observer", bed.observer_config), ("device", bed.device_config)):
            print("\n$ srup-register --config %s --url %s --ca-file ..." % (conf, bed.keyex.url))
            print(bed.transcripts[name].stdout.rstrip())
        print("\nserver    %s   observer %s   device %s   (keys and IDs made by srup-register)"
              % (id16(bed.server_id), id16(bed.observer_id), id16(bed.device_id)))
        print("observer  channel sim (%s), window %d s, max_attempts %d"
              % (bed.sim_socket, WINDOW, bed.max_attempts), flush=True)
        bed.verbose = True
        bed.start_peer()
        bed.start_observer()

        heading("1. observed join: the device presents its confirmation value")
        t0 = time.monotonic()
        rc, out = bed.join(timeout=30)
        wall = (time.monotonic() - t0) * 1000
        o = bed.outcome(10)
        ok = rc == 0 and o["observer_status"] == "0x60" and o["status"] == "0x50"
        results.append(("VALID -> JOIN_SUCCESS", ok))
        m = re.search(r"JOIN_SUCCESS \(0x50\) after ([0-9.]+) ms", out)
        print(">>> outcome: observer 0x60 OBSERVED_JOIN_VALID, device JOIN_SUCCESS; "
              "end-to-end latency %s ms from OBS_JOIN_REQ to verdict (%.0f ms with the "
              "agent's start-up)" % (m.group(1) if m else "?", wall), flush=True)

        heading("2. wrong value: the device asks, an impostor presents three wrong values")
        mark = len(bed.peer.lines)
        dev = bed.spawn("device", [bed.bin("srup-device"), "--config", bed.device_config, "join",
                                   "--observer", topic_id(bed.observer_id), "--print-value",
                                   "--timeout", "30"])
        dev.wait_line(r"confirmation value: [0-9a-f]+", 30)
        for guess in (b"0" * 32, b"deadbeef" * 4, b"f" * 32):
            rc_p, result, _ = bed.present(guess)
            print("impostor  presented %s... -> 0x%02x" % (guess[:8].decode(), result or 0))
        o = bed.outcome(10, mark)
        dev_rc = dev.wait(30)
        ok = o["observer_status"] == "0x6e" and o["status"] == "0x5e" and dev_rc == 1
        results.append(("INVALID -> JOIN_REFUSED", ok))
        print(">>> outcome: observer 0x6E OBSERVED_JOIN_INVALID after %d distinct wrong values, "
              "device JOIN_REFUSED" % bed.max_attempts, flush=True)

        heading("3. absent device: nothing is presented within the %d s window" % WINDOW)
        mark = len(bed.peer.lines)
        dev = bed.spawn("device", [bed.bin("srup-device"), "--config", bed.device_config, "join",
                                   "--observer", topic_id(bed.observer_id), "--print-value",
                                   "--timeout", "30"])
        o = bed.outcome(WINDOW + 20, mark)
        dev_rc = dev.wait(30)
        ok = o["observer_status"] == "0x6f" and o["status"] == "0x5f" and dev_rc == 1
        results.append(("FAIL -> JOIN_FAIL", ok))
        print(">>> outcome: observer 0x6F OBSERVED_JOIN_FAIL at the deadline, device JOIN_FAIL",
              flush=True)

    heading("summary")
    for name, ok in results:
        print("%-26s %s" % (name, "as expected" if ok else "NOT as expected"))
    good = sum(ok for _, ok in results)
    print("%d of %d outcomes as expected (over mqtts, the peer taking both keys from the key "
          "service)" % (good, len(results)))
    return 0 if good == len(results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "build"))
