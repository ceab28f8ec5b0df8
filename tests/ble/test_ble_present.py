"""Layer-1 tests of the BLE channel's device side (radio/radio_ble_present.c):
ble_present_driver calls radio_ble_present against the BlueZ stand-in on a
private bus, which shows a remote observer on hci1.

usage: test_ble_present.py PATH/TO/ble_present_driver [unittest options]
"""

import os
import subprocess
import sys
import tempfile
import unittest

import bluez_standin as bz
from bluez_standin import SERVICE_UUID, FakeBluez, PrivateBus, frame, pump

DRIVER = None
OBSERVER_ID = 0x0A0B0C0D0E0F1011
DEVICE_ID = 0x0102030405060708
VALUE = "correct horse battery"


class PresentCase(unittest.TestCase):
    adapters = (("hci1", "00:AA:02:00:00:00", True),)

    def setUp(self):
        self.bus = PrivateBus()
        self.tmp = tempfile.TemporaryDirectory(prefix="srup-ble-present-")
        self.bluez = FakeBluez(self.bus.address, adapters=self.adapters)
        self.out = None

    def tearDown(self):
        if not getattr(self._outcome, "success", True) and self.out is not None:
            sys.stderr.write("---- presenter output ----\n%s\n" % self.out)
        self.bluez.close()
        self.bus.stop()
        self.tmp.cleanup()

    def present(self, expect=OBSERVER_ID, value=VALUE, timeout_ms=20000, adapter="hci1",
                encrypt=False):
        """Runs the presenter while the stand-in serves; returns
        (err, result, detail)."""
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.bus.address)
        log = os.path.join(self.tmp.name, "present.log")
        with open(log, "w") as errf:
            p = subprocess.Popen([DRIVER, "--adapter", adapter, "--expect", "%016x" % expect,
                                  "--device", "%016x" % DEVICE_ID, "--value", value,
                                  "--timeout-ms", str(timeout_ms)]
                                 + (["--encrypt", "yes"] if encrypt else []),
                                 stdout=subprocess.PIPE, stderr=errf, env=env, text=True)
            try:
                pump(lambda: p.poll() is not None, timeout_ms / 1000 + 15, "the presenter")
            finally:
                if p.poll() is None:
                    p.kill()
                stdout = p.stdout.read()
                p.stdout.close()
                p.wait()
        with open(log) as f:
            self.out = f.read() + stdout
        self.assertEqual(p.returncode, 0, self.out)
        fields = dict(line.split("=", 1) for line in stdout.splitlines() if "=" in line)
        return int(fields["err"].split()[0]), int(fields["result"], 16), fields["detail"]

    def kinds(self):
        return self.bluez.kinds()


class Present(PresentCase):
    def test_valid_frame_is_written_and_result_read(self):
        remote = self.bluez.add_remote(observer_id=OBSERVER_ID, answer=0x60)
        err, result, detail = self.present()
        self.assertEqual((err, result), (bz.RADIO_OK, 0x60), detail)
        self.assertEqual(len(remote.writes), 1)
        data, options = remote.writes[0]
        self.assertEqual(data, frame(DEVICE_ID, VALUE))
        self.assertEqual(options.get("type"), "request")
        flt = [e["filter"] for e in self.bluez.events if e["kind"] == "discovery_filter"]
        self.assertEqual(flt, [{"UUIDs": [SERVICE_UUID], "Transport": "le"}])
        k = self.kinds()
        # Order of the steps, and the device left disconnected, scan stopped.
        self.assertLess(k.index("start_discovery"), k.index("connect"))
        self.assertLess(k.index("stop_discovery"), k.index("connect"))
        reads = [e["role"] for e in self.bluez.events if e["kind"] == "read"]
        self.assertEqual(reads, ["id", "result"])
        self.assertLess(k.index("write"), k.index("disconnect"))
        self.assertEqual(remote.disconnects, 1)
        self.assertFalse(self.bluez.discovering)

    def test_mismatch_is_reported(self):
        self.bluez.add_remote(observer_id=OBSERVER_ID, answer=0x6E)
        err, result, detail = self.present(value="wrong")
        self.assertEqual((err, result), (bz.RADIO_OK, 0x6E), detail)

    def test_discovery_restarts_until_the_observer_is_seen(self):
        # Emulated controllers report an advertisement once, when a scan
        # starts: the observer shows up only on the third scan here.
        remote = self.bluez.add_remote(observer_id=OBSERVER_ID, appear_after_starts=3)
        err, result, detail = self.present(timeout_ms=15000)
        self.assertEqual((err, result), (bz.RADIO_OK, 0x60), detail)
        self.assertGreaterEqual(self.bluez.discovery_starts, 3)
        self.assertEqual(len(remote.writes), 1)

    def test_device_without_the_service_is_ignored(self):
        self.bluez.add_remote(observer_id=OBSERVER_ID, uuids=["0000180f-0000-1000-8000-00805f9b34fb"])
        err, _, detail = self.present(timeout_ms=3000)
        self.assertEqual(err, bz.RADIO_E_TIMEOUT, detail)
        self.assertNotIn("connect", self.kinds())

    def test_connect_failure_is_retried(self):
        remote = self.bluez.add_remote(observer_id=OBSERVER_ID, connect_failures=1)
        err, result, detail = self.present()
        self.assertEqual((err, result), (bz.RADIO_OK, 0x60), detail)
        self.assertEqual(remote.connects, 2)


    def test_stalled_service_resolution_is_retried(self):
        remote = self.bluez.add_remote(observer_id=OBSERVER_ID, resolve_failures=1)
        err, result, detail = self.present(timeout_ms=15000)
        self.assertEqual((err, result), (bz.RADIO_OK, 0x60), detail)
        self.assertEqual(remote.connects, 2)
        self.assertEqual(remote.disconnects, 2)


class Encryption(PresentCase):
    def test_pairing_is_confirmed_by_the_presenters_agent(self):
        remote = self.bluez.add_remote(observer_id=OBSERVER_ID, pair=True)
        err, result, detail = self.present(encrypt=True)
        self.assertEqual((err, result), (bz.RADIO_OK, 0x60), detail)
        self.assertTrue(remote.paired)
        k = self.kinds()
        self.assertLess(k.index("register_agent"), k.index("paired"))
        self.assertIn("unregister_agent", k)
        self.assertIsNone(self.bluez.agent)

    def test_without_require_encryption_no_agent_and_the_write_fails(self):
        self.bluez.add_remote(observer_id=OBSERVER_ID, pair=True)
        err, _, detail = self.present()
        self.assertEqual(err, bz.RADIO_E_REFUSED, detail)
        self.assertNotIn("register_agent", self.kinds())


class Refusals(PresentCase):
    def test_wrong_observer_is_refused_before_writing(self):
        remote = self.bluez.add_remote(observer_id=0x0BAD)
        err, result, detail = self.present()
        self.assertEqual(err, bz.RADIO_E_WRONG_OBSERVER, detail)
        self.assertIn("Observer ID", detail)
        self.assertIn("0000000000000bad", detail)
        self.assertEqual(remote.writes, [])
        self.assertEqual(result, 0x00)
        self.assertEqual(remote.disconnects, 1)

    def test_observer_refusing_the_write(self):
        remote = self.bluez.add_remote(observer_id=OBSERVER_ID, answer="refuse")
        err, result, detail = self.present()
        self.assertEqual(err, bz.RADIO_E_REFUSED, detail)
        self.assertIn("write Confirmation", detail)
        self.assertIn("org.bluez.Error.Failed", detail)
        self.assertEqual(result, 0x00)
        self.assertEqual(remote.disconnects, 1)


class Timeouts(PresentCase):
    def test_no_observer_times_out_in_discovery(self):
        err, _, detail = self.present(timeout_ms=3000)
        self.assertEqual(err, bz.RADIO_E_TIMEOUT, detail)
        self.assertTrue(detail.startswith("discovery:"), detail)
        self.assertFalse(self.bluez.discovering, "discovery left running")

    def test_connect_never_answering_times_out(self):
        self.bluez.add_remote(observer_id=OBSERVER_ID, connect_hangs=True)
        err, _, detail = self.present(timeout_ms=3000)
        self.assertEqual(err, bz.RADIO_E_TIMEOUT, detail)
        self.assertTrue(detail.startswith("connect:"), detail)

    def test_services_never_resolving_times_out(self):
        remote = self.bluez.add_remote(observer_id=OBSERVER_ID, resolve=False)
        err, _, detail = self.present(timeout_ms=3000)
        self.assertEqual(err, bz.RADIO_E_TIMEOUT, detail)
        self.assertTrue(detail.startswith("services:"), detail)
        self.assertEqual(remote.writes, [])
        self.assertEqual(remote.disconnects, 1)


class Adapters(PresentCase):
    adapters = (("hci1", "00:AA:02:00:00:00", False),)

    def test_powered_off_adapter(self):
        err, _, detail = self.present()
        self.assertEqual(err, bz.RADIO_E_UNAVAILABLE, detail)
        self.assertIn("adapter check", detail)
        self.assertIn("powered off", detail)

    def test_missing_adapter(self):
        err, _, detail = self.present(adapter="hci9")
        self.assertEqual(err, bz.RADIO_E_UNAVAILABLE, detail)
        self.assertIn("hci9", detail)


if __name__ == "__main__":
    DRIVER = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
