"""Layer-1 tests of the BLE channel's observer side (radio/radio_ble.c):
ble_observer_driver runs the channel against the BlueZ stand-in on a
private bus; the stand-in plays BlueZ and a remote central.

usage: test_ble_observer.py PATH/TO/ble_observer_driver [unittest options]
"""

import os
import sys
import tempfile
import unittest

import dbus

import bluez_standin as bz
from bluez_standin import (CONFIRMATION_UUID, GATT_CHRC, GATT_SERVICE, OBSERVER_ID_UUID,
                           RESULT_UUID, SERVICE_UUID, FakeBluez, LineProcess, PrivateBus,
                           frame, pump, pump_for)

DRIVER = None
OBSERVER_ID = 0x0A0B0C0D0E0F1011
DEVICE_ID = 0x0102030405060708
VALUE = "correct horse battery"
INVALID = "org.bluez.Error.InvalidValueLength"


class ObserverCase(unittest.TestCase):
    grace = 10
    encrypt = False
    bluez_at_start = True
    env_extra = {}

    def setUp(self):
        self.bus = PrivateBus()
        self.tmp = tempfile.TemporaryDirectory(prefix="srup-ble-obs-")
        self.events = []
        self.bluez = FakeBluez(self.bus.address, events=self.events) if self.bluez_at_start \
            else None
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.bus.address, **self.env_extra)
        argv = [DRIVER, "--observer-id", "%016x" % OBSERVER_ID, "--device", "%016x" % DEVICE_ID,
                "--value", VALUE, "--adapter", "hci0", "--grace", str(self.grace)]
        if self.encrypt:
            argv.append("--encrypt")
        self.log_path = os.path.join(self.tmp.name, "observer.log")
        self.obs = LineProcess(argv, env, self.log_path)
        self.obs.wait_line("ready")
        if self.bluez:
            self.wait_registered()

    def tearDown(self):
        rc = self.obs.stop("quit")
        failed = not getattr(self._outcome, "success", True)
        if rc != 0 or failed:
            with open(self.log_path) as f:
                sys.stderr.write("---- observer log ----\n" + f.read())
            sys.stderr.write("---- observer stdout ----\n%s\n" % "\n".join(self.obs.lines))
        if self.bluez:
            self.bluez.close()
        self.bus.stop()
        self.tmp.cleanup()
        self.assertEqual(rc, 0, "the observer driver exited with %s" % rc)

    # helpers

    def wait_registered(self, bluez=None):
        b = bluez or self.bluez
        pump(lambda: b.app is not None, 5, "RegisterApplication")

    def command(self, cmd):
        start = len(self.obs.drain())
        self.obs.send(cmd)
        return self.obs.wait_line({"start": "started", "stop": "stopped"}[cmd], start=start)

    def barrier(self):
        """Every line the driver wrote so far has been read."""
        start = len(self.obs.drain())
        self.obs.send("ping")
        self.obs.wait_line("pong", start=start)

    def frames_seen(self):
        self.barrier()
        return [line for line in self.obs.lines if line.startswith("frame ")]

    def unavailable_seen(self):
        self.barrier()
        return [line for line in self.obs.lines if line.startswith("unavailable")]

    def result(self):
        return self.bluez.read(RESULT_UUID)


class Registration(ObserverCase):
    def test_objects_and_properties_are_the_specified_ones(self):
        objs = self.bluez.app["objects"]
        services = {p: i[GATT_SERVICE] for p, i in objs.items() if GATT_SERVICE in i}
        chrcs = {i[GATT_CHRC]["UUID"]: (p, i[GATT_CHRC]) for p, i in objs.items()
                 if GATT_CHRC in i}
        self.assertEqual(len(services), 1)
        (svc_path, svc), = services.items()
        self.assertEqual(svc["UUID"], SERVICE_UUID)
        self.assertIs(svc["Primary"], True)
        self.assertEqual(sorted(chrcs), sorted([OBSERVER_ID_UUID, CONFIRMATION_UUID,
                                                RESULT_UUID]))
        for uuid, (path, props) in chrcs.items():
            self.assertEqual(props["Service"], svc_path)
            self.assertTrue(path.startswith(svc_path + "/"), path)
        self.assertEqual(chrcs[OBSERVER_ID_UUID][1]["Flags"], ["read"])
        self.assertEqual(chrcs[CONFIRMATION_UUID][1]["Flags"], ["write"])
        self.assertEqual(chrcs[RESULT_UUID][1]["Flags"], ["read", "notify"])
        self.assertEqual(self.bluez.app["path"], "/org/srup/observer")
        self.assertTrue(svc_path.startswith("/org/srup/observer/"))

    def test_observer_id_is_8_bytes_big_endian(self):
        self.assertEqual(self.bluez.read(OBSERVER_ID_UUID), OBSERVER_ID.to_bytes(8, "big"))

    def test_read_honours_offset(self):
        self.assertEqual(self.bluez.read(OBSERVER_ID_UUID, offset=5),
                         OBSERVER_ID.to_bytes(8, "big")[5:])
        self.assertEqual(self.bluez.read(OBSERVER_ID_UUID, offset=8), b"")
        with self.assertRaises(dbus.exceptions.DBusException) as e:
            self.bluez.read(OBSERVER_ID_UUID, offset=9)
        self.assertEqual(e.exception.get_dbus_name(), "org.bluez.Error.InvalidOffset")

    def test_result_is_zero_before_any_frame(self):
        self.assertEqual(self.result(), b"\x00")

    def test_no_pairing_agent_without_require_encryption(self):
        pump_for(0.3)
        self.assertNotIn("register_agent", self.bluez.kinds())

    def test_no_advertisement_while_nothing_is_pending(self):
        pump_for(0.3)
        self.assertIsNone(self.bluez.adv)
        self.assertNotIn("register_adv", self.bluez.kinds())


class EncryptedConfirmation(ObserverCase):
    encrypt = True

    def test_confirmation_is_encrypt_write(self):
        objs = self.bluez.app["objects"]
        flags = [i[GATT_CHRC]["Flags"] for i in objs.values()
                 if GATT_CHRC in i and i[GATT_CHRC]["UUID"] == CONFIRMATION_UUID]
        self.assertEqual(flags, [["encrypt-write"]])

    def test_pairing_agent_accepts_just_works_only(self):
        pump(lambda: "default_agent" in self.bluez.kinds(), 5, "RequestDefaultAgent")
        self.assertEqual(self.bluez.agent["capability"], "NoInputNoOutput")
        dev = dbus.ObjectPath(FakeBluez.CENTRAL_DEVICE)
        self.assertIsNone(self.bluez.call_agent("RequestConfirmation", "ou",
                                                (dev, dbus.UInt32(123456))))
        self.assertIsNone(self.bluez.call_agent("RequestAuthorization", "o", (dev,)))
        rejected = "org.bluez.Error.Rejected"
        self.assertEqual(self.bluez.call_agent("RequestPinCode", "o", (dev,)), rejected)
        self.assertEqual(self.bluez.call_agent("RequestPasskey", "o", (dev,)), rejected)
        self.assertEqual(self.bluez.call_agent("AuthorizeService", "os", (dev, "0000")), rejected)
        other = dbus.bus.BusConnection(self.bus.address)
        try:
            self.assertEqual(self.bluez.call_agent("RequestConfirmation", "ou",
                                                   (dev, dbus.UInt32(1)), conn=other), rejected)
        finally:
            other.close()

    def test_agent_registered_again_after_bluez_returns(self):
        pump(lambda: "default_agent" in self.bluez.kinds(), 5, "RequestDefaultAgent")
        self.bluez.close()
        self.bluez = FakeBluez(self.bus.address, events=self.events)
        pump(lambda: self.bluez.kinds().count("default_agent") == 1, 5,
             "RequestDefaultAgent after the restart")


class Advertising(ObserverCase):
    def test_advertises_only_while_listening(self):
        self.assertIn("started 0", self.command("start"))
        pump(lambda: self.bluez.adv is not None, 5, "RegisterAdvertisement")
        props = self.bluez.adv["props"]
        self.assertEqual(props["Type"], "peripheral")
        self.assertEqual(props["ServiceUUIDs"], [SERVICE_UUID])
        self.command("stop")
        pump(lambda: self.bluez.adv is None, 5, "UnregisterAdvertisement")
        self.command("start")
        pump(lambda: self.bluez.adv is not None, 5, "RegisterAdvertisement again")
        self.command("stop")
        pump(lambda: self.bluez.adv is None, 5, "UnregisterAdvertisement again")
        adv = [k for k in self.bluez.kinds() if k in ("register_adv", "unregister_adv")]
        self.assertEqual(adv, ["register_adv", "unregister_adv"] * 2)
        # The application stayed registered throughout.
        self.assertNotIn("unregister_app", self.bluez.kinds())

    def test_advertisement_released_by_bluez_is_registered_again(self):
        self.command("start")
        pump(lambda: self.bluez.adv is not None, 5, "RegisterAdvertisement")
        adv = self.bluez.adv
        self.bluez.adv = None
        self.bluez.conn.call_blocking(adv["sender"], adv["path"], bz.ADV, "Release", "", (),
                                      timeout=5)
        pump(lambda: self.bluez.adv is not None, 10, "RegisterAdvertisement after Release")
        self.assertEqual(self.bluez.kinds().count("register_adv"), 2)

    def test_quick_start_stop_settles_unadvertised(self):
        self.command("start")
        self.command("stop")
        self.command("start")
        self.command("stop")
        pump_for(0.5)
        self.assertIsNone(self.bluez.adv)


class AdvertisingStalled(ObserverCase):
    # sd-bus's method call timeout, 1 s instead of 25 s.
    env_extra = {"SYSTEMD_BUS_TIMEOUT": "1"}

    def test_registration_without_answer_is_undone_on_stop(self):
        # BlueZ registered the advertisement but its answer never came: the
        # observer must not assume it is unregistered once nothing is pending.
        self.bluez.hold_adv_reply = True
        self.command("start")
        pump(lambda: self.bluez.adv is not None, 5, "RegisterAdvertisement")
        self.command("stop")
        pump(lambda: self.bluez.adv is None, 10,
             "UnregisterAdvertisement after a registration that got no answer")

    def test_registration_without_answer_is_retried_while_listening(self):
        self.bluez.hold_adv_reply = True
        self.command("start")
        pump(lambda: self.bluez.adv is not None, 5, "RegisterAdvertisement")
        self.bluez.hold_adv_reply = False
        self.bluez.adv = None
        pump(lambda: self.bluez.adv is not None, 10, "RegisterAdvertisement again")
        self.command("stop")
        pump(lambda: self.bluez.adv is None, 10, "UnregisterAdvertisement")


class Frames(ObserverCase):
    def test_valid_frame_matches_and_sets_result(self):
        self.assertIsNone(self.bluez.write(frame(DEVICE_ID, VALUE)))
        self.assertEqual(self.result(), b"\x60")
        self.assertEqual(self.frames_seen(), ["frame 1 %016x 0x60" % DEVICE_ID])

    def test_wrong_value_mismatches(self):
        self.assertIsNone(self.bluez.write(frame(DEVICE_ID, "wrong value")))
        self.assertEqual(self.result(), b"\x6e")
        self.assertIsNone(self.bluez.write(frame(DEVICE_ID, VALUE)))
        self.assertEqual(self.result(), b"\x60")

    def test_frame_for_device_without_observation_is_refused(self):
        self.assertIsNone(self.bluez.write(frame(DEVICE_ID, "wrong value")))
        err = self.bluez.write(frame(0x0999, VALUE))
        self.assertEqual(err, "org.bluez.Error.Failed")
        self.assertEqual(self.result(), b"\x6e", "Result must not change")

    def test_malformed_frames_are_refused_and_change_nothing(self):
        good = frame(DEVICE_ID, VALUE)
        cases = {
            "version 2": frame(DEVICE_ID, VALUE, version=2),
            "version 0": frame(DEVICE_ID, VALUE, version=0),
            "length 0": frame(DEVICE_ID, b"", length=0) + b"x",
            "length 257": frame(DEVICE_ID, b"x" * 257),
            "longer than announced": good + b"!",
            "shorter than the header": good[:10],
            "one byte": good[:1],
            "empty": b"",
            "truncated value": good[:-3],
        }
        for name, data in cases.items():
            with self.subTest(name):
                self.assertEqual(self.bluez.write(data), INVALID, name)
                self.assertEqual(self.result(), b"\x00")
        self.assertEqual(self.frames_seen(), [])
        # The channel goes on.
        self.assertIsNone(self.bluez.write(good))
        self.assertEqual(self.result(), b"\x60")

    def test_maximum_frame(self):
        self.assertIsNone(self.bluez.write(frame(DEVICE_ID, "z" * 256)))
        self.assertEqual(self.result(), b"\x6e")

    def test_long_write_with_offsets_as_bluez_chunks_it(self):
        data = frame(DEVICE_ID, VALUE + "!" * 40)  # 11 + 61 bytes, 4 chunks at MTU 23
        data_ok = frame(DEVICE_ID, VALUE)
        for start in range(0, len(data), 18):
            self.assertIsNone(self.bluez.write(data[start:start + 18], offset=start, mtu=23),
                              "chunk at %d" % start)
        self.assertEqual(self.result(), b"\x6e")
        self.assertEqual(len(self.frames_seen()), 1)
        for start in range(0, len(data_ok), 18):
            self.assertIsNone(self.bluez.write(data_ok[start:start + 18], offset=start, mtu=23))
        self.assertEqual(self.result(), b"\x60")

    def test_long_write_without_mtu_any_chunk_size(self):
        data = frame(DEVICE_ID, VALUE)
        chunks = [(0, data[:12]), (12, data[12:15]), (15, data[15:])]
        for off, chunk in chunks:
            self.assertIsNone(self.bluez.write(chunk, offset=off, mtu=None))
        self.assertEqual(self.result(), b"\x60")

    def test_long_write_out_of_order_is_refused(self):
        data = frame(DEVICE_ID, VALUE + "!" * 40)
        self.assertIsNone(self.bluez.write(data[:18], offset=0, mtu=23))
        self.assertEqual(self.bluez.write(data[36:54], offset=36, mtu=23), INVALID)
        # The partial frame was dropped: its continuation is refused too.
        self.assertEqual(self.bluez.write(data[18:36], offset=18, mtu=23), INVALID)
        self.assertEqual(self.result(), b"\x00")

    def test_long_write_past_267_bytes_is_refused(self):
        data = frame(DEVICE_ID, "y" * 256)
        self.assertIsNone(self.bluez.write(data[:200], offset=0, mtu=205))
        self.assertEqual(self.bluez.write(b"y" * 68, offset=200, mtu=205), INVALID)
        self.assertEqual(self.result(), b"\x00")

    def test_partial_frame_is_dropped_when_listening_stops(self):
        # Held bytes of a long write are the writer's secret: they must not
        # outlive the listening period (and be completed in a later one).
        data = frame(DEVICE_ID, VALUE + "!" * 40)
        self.command("start")
        self.assertIsNone(self.bluez.write(data[:18], offset=0, mtu=23))
        self.command("stop")
        self.command("start")
        self.assertEqual(self.bluez.write(data[18:], offset=18, mtu=None), INVALID)
        self.assertEqual(self.frames_seen(), [])
        self.assertEqual(self.result(), b"\x00")

    def test_new_write_at_offset_zero_restarts_the_frame(self):
        data = frame(DEVICE_ID, VALUE + "!" * 40)
        self.assertIsNone(self.bluez.write(data[:18], offset=0, mtu=23))
        self.assertIsNone(self.bluez.write(frame(DEVICE_ID, VALUE)))
        self.assertEqual(self.result(), b"\x60")

    def test_result_notifies_subscribers(self):
        self.bluez.start_notify()
        self.assertIsNone(self.bluez.write(frame(DEVICE_ID, "nope")))
        self.assertIsNone(self.bluez.write(frame(DEVICE_ID, VALUE)))
        pump(lambda: len(self.bluez.notifications) >= 2, 5, "two Result notifications")
        self.assertEqual(self.bluez.notifications, [b"\x6e", b"\x60"])
        self.bluez.call_chrc(RESULT_UUID, "StopNotify")
        self.assertEqual(self.bluez.write(frame(DEVICE_ID, "x" * 300)[:5]), INVALID)
        pump_for(0.2)
        self.assertEqual(len(self.bluez.notifications), 2, "malformed frames do not notify")


class HostileInput(ObserverCase):
    def test_only_org_bluez_may_call(self):
        other = dbus.bus.BusConnection(self.bus.address)
        try:
            err = self.bluez.write(frame(DEVICE_ID, VALUE), conn=other)
            self.assertEqual(err, "org.bluez.Error.NotPermitted")
        finally:
            other.close()
        self.assertEqual(self.result(), b"\x00")
        self.assertEqual(self.frames_seen(), [])

    def test_bad_options_get_errors_not_crashes(self):
        data = dbus.Array(frame(DEVICE_ID, VALUE), signature="y")
        bad_options = [
            {"offset": dbus.String("zero")},
            {"offset": dbus.UInt32(0)},
            {"mtu": dbus.Int16(23)},
            {"device": dbus.String("/not/a/path")},
            {"prepare-authorize": dbus.String("yes")},
        ]
        for opts in bad_options:
            with self.subTest(opts):
                with self.assertRaises(dbus.exceptions.DBusException) as e:
                    self.bluez.call_chrc(CONFIRMATION_UUID, "WriteValue", "aya{sv}",
                                         (data, dbus.Dictionary(opts, signature="sv")))
                self.assertEqual(e.exception.get_dbus_name(), "org.bluez.Error.InvalidArguments")
        # Unknown options are ignored; wrong signatures are rejected by the bus library.
        self.assertIsNone(self.bluez.write(
            frame(DEVICE_ID, VALUE),
            options=dbus.Dictionary({"frobnicate": dbus.Int32(1)}, signature="sv")))
        for sig, args in (("s", ("x",)), ("ay", (dbus.Array([1], signature="y"),)),
                          ("", ())):
            with self.assertRaises(dbus.exceptions.DBusException):
                self.bluez.call_chrc(CONFIRMATION_UUID, "WriteValue", sig, args)
        with self.assertRaises(dbus.exceptions.DBusException):
            self.bluez.call_chrc(OBSERVER_ID_UUID, "ReadValue", "a{sv}",
                                 (dbus.Dictionary({"offset": dbus.String("1")}, signature="sv"),))
        # Still alive and answering.
        self.assertEqual(self.result(), b"\x60")

    def test_prepare_authorize_holds_nothing(self):
        opts = self.bluez.central_options(extra={"prepare-authorize": dbus.Boolean(True)})
        self.assertIsNone(self.bluez.write(frame(DEVICE_ID, VALUE)[:5], options=opts))
        self.assertEqual(self.result(), b"\x00")


class BluezRestart(ObserverCase):
    def test_bluez_leaving_and_returning_registers_again(self):
        self.command("start")
        pump(lambda: self.bluez.adv is not None, 5, "RegisterAdvertisement")
        self.bluez.close()
        pump_for(0.3)
        self.bluez = FakeBluez(self.bus.address, events=self.events)
        self.wait_registered()
        pump(lambda: self.bluez.adv is not None, 5, "RegisterAdvertisement after restart")
        # The pending observation went on.
        self.assertIsNone(self.bluez.write(frame(DEVICE_ID, VALUE)))
        self.assertEqual(self.result(), b"\x60")
        self.assertEqual(self.unavailable_seen(), [])

    def test_bluez_returning_while_not_listening_does_not_advertise(self):
        self.bluez.close()
        self.bluez = FakeBluez(self.bus.address, events=self.events)
        self.wait_registered()
        pump_for(0.3)
        self.assertIsNone(self.bluez.adv)

    def test_adapter_removed_and_added(self):
        self.command("start")
        pump(lambda: self.bluez.adv is not None, 5, "RegisterAdvertisement")
        self.bluez.remove_adapter("hci0")
        pump_for(0.3)
        n = self.bluez.kinds().count("register_app")
        self.bluez.add_adapter("hci0", "00:AA:01:00:00:00")
        pump(lambda: self.bluez.kinds().count("register_app") == n + 1, 5,
             "RegisterApplication on the returned adapter")
        pump(lambda: self.bluez.adv is not None, 5, "RegisterAdvertisement on it")

    def test_other_adapter_going_is_ignored(self):
        self.bluez.add_adapter("hci7", "00:AA:07:00:00:00")
        self.bluez.remove_adapter("hci7")
        pump_for(0.3)
        self.assertEqual(self.bluez.kinds().count("register_app_call"), 1)


class GraceExpiry(ObserverCase):
    grace = 1

    def test_unavailable_once_after_grace_then_recovers(self):
        self.command("start")
        pump(lambda: self.bluez.adv is not None, 5, "RegisterAdvertisement")
        self.bluez.close()
        line = self.obs.wait_line("unavailable", timeout=6)
        self.assertIn("hci0", line)
        pump_for(1.5)
        self.assertEqual(len(self.unavailable_seen()), 1)
        # Still gone: listening cannot start.
        self.command("stop")
        self.assertIn("started %d" % bz.RADIO_E_UNAVAILABLE, self.command("start"))
        self.bluez = FakeBluez(self.bus.address, events=self.events)
        self.wait_registered()
        self.assertIn("started 0", self.command("start"))
        pump(lambda: self.bluez.adv is not None, 5, "RegisterAdvertisement after return")


class BluezLate(ObserverCase):
    bluez_at_start = False
    grace = 30

    def test_registers_when_bluez_appears(self):
        self.assertIn("started 0", self.command("start"))
        self.bluez = FakeBluez(self.bus.address, events=self.events)
        self.wait_registered()
        pump(lambda: self.bluez.adv is not None, 5, "RegisterAdvertisement")

    def test_registers_when_the_adapter_appears(self):
        self.bluez = FakeBluez(self.bus.address, adapters=(), events=self.events)
        pump_for(0.3)
        self.assertIsNone(self.bluez.app)
        self.bluez.add_adapter("hci0", "00:AA:01:00:00:00")
        self.wait_registered()


if __name__ == "__main__":
    DRIVER = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
