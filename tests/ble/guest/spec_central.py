#!/usr/bin/env python3
"""A BLE central written from OBSERVATION-CHANNEL.md alone, as another
party would write one, with nothing of the project's code: it finds the
SRUP Observation service through BlueZ (python3-dbus), checks the Observer
ID, writes one confirmation frame, and learns Result from its notification.

  spec_central.py --adapter hci1 --observer-id HEX --device HEX --value-hex HEX
                  [--write-type request|reliable] [--timeout S]

Prints "result 0xNN" (0x60 match, 0x6E mismatch) and exits 0, or prints
"error: ..." and exits 1 (2 for "refused", the ATT error of a write).
"""
import argparse
import sys
import time

import dbus
import dbus.mainloop.glib
from gi.repository import GLib

SERVICE = "675e4787-0421-48d6-91d6-e1fa9256adc8"
OBSERVER_ID = "c854bb5a-176d-4061-b943-540bf5542ee0"
CONFIRMATION = "54a98014-0997-42b5-92fb-d987bd4482eb"
RESULT = "0fac6e76-acf3-451f-9915-f51fe07097ba"
CHRC = "org.bluez.GattCharacteristic1"


class Central:
    def __init__(self, adapter, deadline):
        dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
        self.bus = dbus.SystemBus()
        self.adapter_path = "/org/bluez/" + adapter
        self.adapter = dbus.Interface(self.bus.get_object("org.bluez", self.adapter_path),
                                      "org.bluez.Adapter1")
        self.deadline = deadline
        self.ctx = GLib.MainContext.default()

    def objects(self):
        om = dbus.Interface(self.bus.get_object("org.bluez", "/"),
                            "org.freedesktop.DBus.ObjectManager")
        return om.GetManagedObjects()

    def spin(self, cond, until):
        while not cond() and time.monotonic() < until:
            if not self.ctx.iteration(False):
                time.sleep(0.02)
        return cond()

    def find_observer(self):
        """Scan for the service; the scan is started again every 3 s, as a
        controller may report an advertisement only when scanning starts."""
        self.adapter.SetDiscoveryFilter({"UUIDs": [SERVICE], "Transport": "le"})
        while time.monotonic() < self.deadline:
            try:
                self.adapter.StartDiscovery()
            except dbus.exceptions.DBusException:
                pass
            end = min(self.deadline, time.monotonic() + 3)
            while time.monotonic() < end:
                for path, ifaces in self.objects().items():
                    dev = ifaces.get("org.bluez.Device1")
                    if dev and str(path).startswith(self.adapter_path + "/") and \
                            SERVICE in [str(u).lower() for u in dev.get("UUIDs", [])]:
                        self.stop_discovery()
                        return str(path)
                self.spin(lambda: False, time.monotonic() + 0.25)
            self.stop_discovery()
        raise RuntimeError("no observer advertising the service")

    def stop_discovery(self):
        try:
            self.adapter.StopDiscovery()
        except dbus.exceptions.DBusException:
            pass

    def characteristics(self, dev_path):
        found = {}
        for path, ifaces in self.objects().items():
            c = ifaces.get(CHRC)
            if c and str(path).startswith(dev_path + "/"):
                found[str(c["UUID"]).lower()] = str(path)
        return found


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--adapter", default="hci1")
    ap.add_argument("--observer-id", required=True)
    ap.add_argument("--device", required=True)
    ap.add_argument("--value-hex", required=True)
    ap.add_argument("--write-type", default="request")
    ap.add_argument("--timeout", type=float, default=30)
    a = ap.parse_args()

    value = bytes.fromhex(a.value_hex)
    frame = bytes([1]) + int(a.device, 16).to_bytes(8, "big") + len(value).to_bytes(2, "big") \
        + value
    c = Central(a.adapter, time.monotonic() + a.timeout)
    dev_path = c.find_observer()
    dev = dbus.Interface(c.bus.get_object("org.bluez", dev_path), "org.bluez.Device1")
    props = dbus.Interface(c.bus.get_object("org.bluez", dev_path),
                           "org.freedesktop.DBus.Properties")
    dev.Connect(timeout=max(1, c.deadline - time.monotonic()))
    try:
        resolved = c.spin(lambda: bool(props.Get("org.bluez.Device1", "ServicesResolved")),
                          c.deadline)
        if not resolved:
            raise RuntimeError("services not resolved")
        chrcs = c.characteristics(dev_path)
        obj = {u: dbus.Interface(c.bus.get_object("org.bluez", p), CHRC) for u, p in chrcs.items()}
        ident = bytes(obj[OBSERVER_ID].ReadValue({}))
        if ident != int(a.observer_id, 16).to_bytes(8, "big"):
            print("error: observer ID %s is not the one expected" % ident.hex())
            return 1
        notified = []

        def changed(iface, changed_props, invalidated):
            if "Value" in changed_props:
                notified.append(bytes(changed_props["Value"]))
        c.bus.add_signal_receiver(changed, signal_name="PropertiesChanged",
                                  dbus_interface="org.freedesktop.DBus.Properties",
                                  path=chrcs[RESULT])
        obj[RESULT].StartNotify()
        try:
            obj[CONFIRMATION].WriteValue(dbus.Array(frame, signature="y"),
                                         {"type": a.write_type})
        except dbus.exceptions.DBusException as e:
            print("refused: %s: %s" % (e.get_dbus_name(), e.get_dbus_message()))
            return 2
        if not c.spin(lambda: notified, time.monotonic() + 10):
            print("error: no Result notification")
            return 1
        print("result 0x%02x" % notified[-1][0])
        return 0
    finally:
        try:
            dev.Disconnect()
        except dbus.exceptions.DBusException:
            pass


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (RuntimeError, dbus.exceptions.DBusException) as e:
        print("error: %s" % e)
        sys.exit(1)
