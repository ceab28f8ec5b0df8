"""BlueZ for the boot test: the layer-1 stand-in (tests/ble/bluez_standin.py)
owning org.bluez on the container's real system bus, under the policy of
Debian's bluez package, so srup-observerd in its sandbox reaches it as
it would reach bluetoothd. Plays the remote central of one observed join.

usage: boot_ble.py DEVICE_ID_HEX VALUE_FILE

Prints OWNED once it owns org.bluez, REGISTERED once the daemon's GATT
application is registered (BlueZ has called GetManagedObjects on it), then
waits for VALUE_FILE (the confirmation value in hex, as srup-device
--print-value shows it), writes the frame to the Confirmation
characteristic as BlueZ would, and prints WRITE ok or WRITE <error>.
Runs until a file named stop appears beside VALUE_FILE."""

import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bluez_standin as bz  # noqa: E402

SYSTEM_BUS = "unix:path=/run/dbus/system_bus_socket"


def main():
    device_id = int(sys.argv[1], 16)
    value_file = sys.argv[2]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    bluez = bz.FakeBluez(SYSTEM_BUS)
    print("OWNED", flush=True)
    bz.pump(lambda: bluez.app is not None, 300, "RegisterApplication")
    print("REGISTERED sender=%s" % bluez.app["sender"], flush=True)
    bz.pump(lambda: os.path.exists(value_file), 300, "the confirmation value")
    with open(value_file) as f:
        value = bytes.fromhex(f.read().strip())
    # The daemon advertises only while an observation is pending.
    bz.pump(lambda: bluez.adv is not None, 60, "RegisterAdvertisement")
    error = bluez.write(bz.frame(device_id, value))
    print("WRITE %s" % (error or "ok"), flush=True)
    stop_file = os.path.join(os.path.dirname(value_file), "stop")
    while not os.path.exists(stop_file):
        bz.pump_for(0.5)


if __name__ == "__main__":
    main()
