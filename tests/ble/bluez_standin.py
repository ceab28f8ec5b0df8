"""A stand-in for BlueZ (org.bluez) on a private D-Bus bus, for the layer-1
BLE tests.

It implements the part of BlueZ's D-Bus API the SRUP BLE channel uses:

- observer side: Adapter1 + GattManager1 + LEAdvertisingManager1 on
  /org/bluez/<adapter>; RegisterApplication calls back GetManagedObjects on
  the application, RegisterAdvertisement reads the advertisement's
  properties, and the test plays a remote central by calling WriteValue /
  ReadValue / StartNotify on the registered objects, with the options
  BlueZ passes (device, link, mtu, offset);
- device side: Adapter1 discovery (SetDiscoveryFilter, StartDiscovery,
  StopDiscovery) that makes a remote observer appear as a Device1, whose
  Connect resolves a GattService1 with its three GattCharacteristic1
  objects (the observer's ID, Confirmation, Result).

Everything that happens is recorded in `events` for the tests to check.
"""

import os
import shutil
import subprocess
import tempfile
import threading
import queue
import time

import dbus
import dbus.exceptions
import dbus.mainloop.glib
import dbus.service
from gi.repository import GLib

dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)

SERVICE_UUID = "675e4787-0421-48d6-91d6-e1fa9256adc8"
OBSERVER_ID_UUID = "c854bb5a-176d-4061-b943-540bf5542ee0"
CONFIRMATION_UUID = "54a98014-0997-42b5-92fb-d987bd4482eb"
RESULT_UUID = "0fac6e76-acf3-451f-9915-f51fe07097ba"

BUS_NAME = "org.bluez"
ADAPTER = "org.bluez.Adapter1"
DEVICE = "org.bluez.Device1"
GATT_MANAGER = "org.bluez.GattManager1"
GATT_SERVICE = "org.bluez.GattService1"
GATT_CHRC = "org.bluez.GattCharacteristic1"
ADV_MANAGER = "org.bluez.LEAdvertisingManager1"
ADV = "org.bluez.LEAdvertisement1"
AGENT_MANAGER = "org.bluez.AgentManager1"
AGENT = "org.bluez.Agent1"
OM = "org.freedesktop.DBus.ObjectManager"
PROPS = "org.freedesktop.DBus.Properties"

# radio.h's enum radio_err
RADIO_OK = 0
RADIO_E_IO = 7
RADIO_E_TIMEOUT = 8
RADIO_E_UNAVAILABLE = 9
RADIO_E_PROTOCOL = 10
RADIO_E_WRONG_OBSERVER = 11
RADIO_E_REFUSED = 12


def bluez_error(name, text):
    return dbus.exceptions.DBusException(text, name="org.bluez.Error." + name)


def frame(device_id, value, version=1, length=None):
    """The confirmation frame of OBSERVATION-CHANNEL.md section 1."""
    if isinstance(value, str):
        value = value.encode()
    n = len(value) if length is None else length
    return bytes([version]) + device_id.to_bytes(8, "big") + n.to_bytes(2, "big") + value


def unwrap(v):
    """dbus-python values to plain Python ones."""
    if isinstance(v, dbus.Boolean):
        return bool(v)
    if isinstance(v, (dbus.Byte, dbus.Int16, dbus.UInt16, dbus.Int32, dbus.UInt32,
                      dbus.Int64, dbus.UInt64)):
        return int(v)
    if isinstance(v, (dbus.String, dbus.ObjectPath)):
        return str(v)
    if isinstance(v, dbus.Array):
        if v.signature == "y":
            return bytes(int(b) for b in v)
        return [unwrap(x) for x in v]
    if isinstance(v, dbus.Dictionary):
        return {unwrap(k): unwrap(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [unwrap(x) for x in v]
    return v


# ---- A private bus ---------------------------------------------------------

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow receive_type="*"/>
  </policy>
</busconfig>
"""


class PrivateBus:
    """A dbus-daemon of the test's own, system-bus-like, on a socket in a
    temporary folder. `address` goes in DBUS_SYSTEM_BUS_ADDRESS."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="srup-ble-")
        socket = os.path.join(self.dir, "bus")
        conf = os.path.join(self.dir, "bus.conf")
        with open(conf, "w") as f:
            f.write(BUS_CONFIG.format(socket=socket))
        self.log = open(os.path.join(self.dir, "dbus-daemon.log"), "w")
        self.proc = subprocess.Popen(
            ["dbus-daemon", "--config-file=" + conf, "--nofork", "--print-address=1"],
            stdout=subprocess.PIPE, stderr=self.log, text=True)
        self.address = self.proc.stdout.readline().strip()
        if not self.address:
            self.stop()
            raise RuntimeError("dbus-daemon did not start")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def pump(cond, timeout, what):
    """Runs the GLib main loop until cond() is true; fails naming `what`."""
    ctx = GLib.MainContext.default()
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("timed out waiting for " + what)
        if not ctx.iteration(False):
            time.sleep(0.005)


def pump_for(seconds):
    ctx = GLib.MainContext.default()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not ctx.iteration(False):
            time.sleep(0.005)


class LineProcess:
    """A child process whose stdout lines are collected by a thread."""

    def __init__(self, argv, env, log_path):
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, env=env, text=True, bufsize=1)
        self.lines = []
        self._q = queue.Queue()
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self):
        for line in self.proc.stdout:
            self._q.put(line.rstrip("\n"))

    def drain(self):
        while True:
            try:
                self.lines.append(self._q.get_nowait())
            except queue.Empty:
                return self.lines

    def send(self, command):
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def wait_line(self, prefix, timeout=5.0, start=0):
        """The first line from index `start` that begins with prefix."""
        found = []

        def seen():
            for line in self.drain()[start:]:
                if line.startswith(prefix):
                    found.append(line)
                    return True
            return False
        pump(seen, timeout, "a line starting with %r (got %r)" % (prefix, self.lines))
        return found[0]

    def stop(self, command=None, timeout=10):
        if self.proc.poll() is None and command:
            try:
                self.send(command)
                self.proc.wait(timeout)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._t.join(2)
        self.drain()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except (BrokenPipeError, OSError):
                pass
        self.log.close()
        return self.proc.returncode


# ---- Objects ---------------------------------------------------------------

class PropsObject(dbus.service.Object):
    """An exported object with org.freedesktop.DBus.Properties over
    self.props = {interface: {name: typed dbus value}}."""

    def __init__(self, bluez, path, props):
        self.bluez = bluez
        self.path = path
        self.props = props
        super().__init__(bluez.conn, path)

    @dbus.service.method(PROPS, in_signature="s", out_signature="a{sv}")
    def GetAll(self, iface):
        return self.props.get(iface, {})

    @dbus.service.method(PROPS, in_signature="ss", out_signature="v")
    def Get(self, iface, name):
        try:
            return self.props[iface][name]
        except KeyError:
            raise dbus.exceptions.DBusException(
                "no property %s.%s" % (iface, name),
                name="org.freedesktop.DBus.Error.InvalidArgs")

    @dbus.service.signal(PROPS, signature="sa{sv}as")
    def PropertiesChanged(self, iface, changed, invalidated):
        pass

    def set(self, iface, **changes):
        self.props[iface].update(changes)
        self.PropertiesChanged(iface, changes, dbus.Array([], signature="s"))


class Root(dbus.service.Object):
    def __init__(self, bluez):
        self.bluez = bluez
        super().__init__(bluez.conn, "/")

    @dbus.service.method(OM, in_signature="", out_signature="a{oa{sa{sv}}}")
    def GetManagedObjects(self):
        return {dbus.ObjectPath(o.path): o.props for o in self.bluez.objects.values()}

    @dbus.service.signal(OM, signature="oa{sa{sv}}")
    def InterfacesAdded(self, path, interfaces):
        pass

    @dbus.service.signal(OM, signature="oas")
    def InterfacesRemoved(self, path, interfaces):
        pass


class Adapter(PropsObject):
    def __init__(self, bluez, name, address, powered=True):
        props = {
            ADAPTER: {"Address": dbus.String(address), "Name": dbus.String(name),
                      "Powered": dbus.Boolean(powered), "Discovering": dbus.Boolean(False)},
            GATT_MANAGER: {},
            ADV_MANAGER: {"ActiveInstances": dbus.Byte(0),
                          "SupportedInstances": dbus.Byte(5)},
        }
        self.name = name
        super().__init__(bluez, "/org/bluez/" + name, props)

    # GattManager1
    @dbus.service.method(GATT_MANAGER, in_signature="oa{sv}", out_signature="",
                         sender_keyword="sender", async_callbacks=("ok", "err"))
    def RegisterApplication(self, app, options, sender, ok, err):
        self.bluez.register_application(self, str(app), sender, ok, err)

    @dbus.service.method(GATT_MANAGER, in_signature="o", out_signature="",
                         sender_keyword="sender")
    def UnregisterApplication(self, app, sender):
        self.bluez.record("unregister_app", adapter=self.name, path=str(app))
        if self.bluez.app and self.bluez.app["path"] == str(app):
            self.bluez.app = None
        else:
            raise bluez_error("DoesNotExist", "no such application")

    # LEAdvertisingManager1
    @dbus.service.method(ADV_MANAGER, in_signature="oa{sv}", out_signature="",
                         sender_keyword="sender", async_callbacks=("ok", "err"))
    def RegisterAdvertisement(self, adv, options, sender, ok, err):
        self.bluez.register_advertisement(self, str(adv), sender, ok, err)

    @dbus.service.method(ADV_MANAGER, in_signature="o", out_signature="",
                         sender_keyword="sender")
    def UnregisterAdvertisement(self, adv, sender):
        self.bluez.record("unregister_adv", adapter=self.name, path=str(adv))
        if self.bluez.adv and self.bluez.adv["path"] == str(adv):
            self.bluez.adv = None
        else:
            raise bluez_error("DoesNotExist", "no such advertisement")

    # Adapter1 (discovery, for the device side)
    @dbus.service.method(ADAPTER, in_signature="a{sv}", out_signature="")
    def SetDiscoveryFilter(self, flt):
        self.bluez.record("discovery_filter", adapter=self.name, filter=unwrap(flt))

    @dbus.service.method(ADAPTER, in_signature="", out_signature="")
    def StartDiscovery(self):
        self.bluez.discovery_starts += 1
        self.bluez.discovering = True
        self.bluez.record("start_discovery", adapter=self.name)
        self.set(ADAPTER, Discovering=dbus.Boolean(True))
        self.bluez.on_discovery_started(self)

    @dbus.service.method(ADAPTER, in_signature="", out_signature="")
    def StopDiscovery(self):
        if not self.bluez.discovering:
            raise bluez_error("Failed", "No discovery started")
        self.bluez.discovering = False
        self.bluez.record("stop_discovery", adapter=self.name)
        self.set(ADAPTER, Discovering=dbus.Boolean(False))


# ---- The remote observer, as BlueZ's client side shows it ------------------

class RemoteObserver:
    """What a device's BlueZ shows of an observer in range.

    behaviour keys: observer_id (int), appear_after_starts (1: on the first
    StartDiscovery), answer (0x60, 0x6E or "refuse"), resolve (bool),
    connect_failures (how many Connect calls fail first), resolve_failures
    (how many connections never resolve their services), uuids (list),
    pair (the Confirmation write makes BlueZ pair first: it asks the
    registered agent to confirm, and refuses the write without one),
    connect_hangs (Connect never answers, as with a device out of range)."""

    def __init__(self, bluez, adapter, address="AA:BB:CC:DD:EE:01", **behaviour):
        self.bluez = bluez
        self.adapter = adapter
        self.address = address
        self.b = dict(observer_id=0x0102030405060708, appear_after_starts=1, answer=0x60,
                      resolve=True, connect_failures=0, resolve_failures=0,
                      uuids=[SERVICE_UUID], pair=False, connect_hangs=False)
        self.b.update(behaviour)
        self.path = "%s/dev_%s" % (adapter.path, address.replace(":", "_"))
        self.device = None
        self.gatt = []
        self.result = 0
        self.writes = []
        self.paired = False
        self.connects = 0
        self.disconnects = 0

    def appear(self):
        if self.device:
            return
        self.device = RemoteDevice(self)
        self.bluez.add_object(self.device)

    def connected(self):
        if not self.b["resolve"]:
            return False
        if self.b["resolve_failures"] > 0:
            self.b["resolve_failures"] -= 1
            return False
        svc = self.device.path + "/service0010"
        self.gatt = [
            RemoteService(self, svc),
            RemoteChrc(self, svc + "/char0011", svc, OBSERVER_ID_UUID, ["read"], "id"),
            RemoteChrc(self, svc + "/char0013", svc, CONFIRMATION_UUID, ["write"], "conf"),
            RemoteChrc(self, svc + "/char0015", svc, RESULT_UUID, ["read", "notify"], "result"),
        ]
        for o in self.gatt:
            self.bluez.add_object(o)
        self.device.set(DEVICE, ServicesResolved=dbus.Boolean(True))
        return False


class RemoteDevice(PropsObject):
    def __init__(self, remote):
        self.remote = remote
        props = {DEVICE: {
            "Address": dbus.String(remote.address),
            "AddressType": dbus.String("public"),
            "Adapter": dbus.ObjectPath(remote.adapter.path),
            "UUIDs": dbus.Array(remote.b["uuids"], signature="s"),
            "Connected": dbus.Boolean(False),
            "ServicesResolved": dbus.Boolean(False),
            "Paired": dbus.Boolean(False),
            "RSSI": dbus.Int16(127),
        }}
        super().__init__(remote.bluez, remote.path, props)

    @dbus.service.method(DEVICE, in_signature="", out_signature="",
                         async_callbacks=("ok", "err"))
    def Connect(self, ok, err):
        r = self.remote
        r.connects += 1
        r.bluez.record("connect", path=self.path)
        if r.b["connect_hangs"]:
            return
        try:
            self.connect_now()
        except dbus.exceptions.DBusException as e:
            err(e)
            return
        ok()

    def connect_now(self):
        r = self.remote
        if r.b["connect_failures"] > 0:
            r.b["connect_failures"] -= 1
            raise bluez_error("Failed", "le-connection-abort-by-local")
        self.set(DEVICE, Connected=dbus.Boolean(True))
        GLib.timeout_add(50, r.connected)

    @dbus.service.method(DEVICE, in_signature="", out_signature="")
    def Disconnect(self):
        r = self.remote
        r.disconnects += 1
        r.bluez.record("disconnect", path=self.path)
        for o in r.gatt:
            r.bluez.remove_object(o)
        r.gatt = []
        self.set(DEVICE, ServicesResolved=dbus.Boolean(False), Connected=dbus.Boolean(False))


class RemoteService(PropsObject):
    def __init__(self, remote, path):
        props = {GATT_SERVICE: {"UUID": dbus.String(SERVICE_UUID), "Primary": dbus.Boolean(True),
                                "Device": dbus.ObjectPath(remote.device.path)}}
        super().__init__(remote.bluez, path, props)


class RemoteChrc(PropsObject):
    def __init__(self, remote, path, service, uuid, flags, role):
        self.remote = remote
        self.role = role
        props = {GATT_CHRC: {"UUID": dbus.String(uuid), "Service": dbus.ObjectPath(service),
                             "Flags": dbus.Array(flags, signature="s")}}
        super().__init__(remote.bluez, path, props)

    @dbus.service.method(GATT_CHRC, in_signature="a{sv}", out_signature="ay")
    def ReadValue(self, options):
        r = self.remote
        r.bluez.record("read", role=self.role, options=unwrap(options))
        if self.role == "id":
            value = r.b["observer_id"].to_bytes(8, "big")
        elif self.role == "result":
            value = bytes([r.result])
        else:
            raise bluez_error("NotPermitted", "Read not permitted")
        return dbus.Array(value, signature="y")

    @dbus.service.method(GATT_CHRC, in_signature="aya{sv}", out_signature="",
                         async_callbacks=("ok", "err"))
    def WriteValue(self, value, options, ok, err):
        r = self.remote
        data = bytes(int(b) for b in value)
        r.bluez.record("write", role=self.role, value=data, options=unwrap(options))
        if self.role != "conf":
            err(bluez_error("NotPermitted", "Write not permitted"))
            return

        def write():
            r.writes.append((data, unwrap(options)))
            if r.b["answer"] == "refuse":
                err(bluez_error("Failed", "Operation failed with ATT error: 0x80"))
                return
            r.result = r.b["answer"]
            ok()

        if not r.b["pair"] or r.paired:
            write()
            return
        agent = r.bluez.agent
        if not agent:
            err(bluez_error("Failed", "Operation failed with ATT error: 0x0e"))
            return

        def confirmed():
            r.paired = True
            r.bluez.record("paired", path=r.device.path)
            write()

        def refused(e):
            r.bluez.record("pairing_refused", error=str(e))
            err(bluez_error("Failed", "Operation failed with ATT error: 0x0e"))

        r.bluez.conn.call_async(agent["sender"], agent["path"], AGENT, "RequestConfirmation",
                                "ou", (dbus.ObjectPath(r.device.path), dbus.UInt32(123456)),
                                confirmed, refused)


class AgentManager(PropsObject):
    def __init__(self, bluez):
        super().__init__(bluez, "/org/bluez", {AGENT_MANAGER: {}})

    @dbus.service.method(AGENT_MANAGER, in_signature="os", out_signature="",
                         sender_keyword="sender")
    def RegisterAgent(self, path, capability, sender):
        self.bluez.record("register_agent", path=str(path), capability=str(capability))
        self.bluez.agent = {"sender": sender, "path": str(path), "capability": str(capability)}

    @dbus.service.method(AGENT_MANAGER, in_signature="o", out_signature="",
                         sender_keyword="sender")
    def RequestDefaultAgent(self, path, sender):
        self.bluez.record("default_agent", path=str(path))

    @dbus.service.method(AGENT_MANAGER, in_signature="o", out_signature="",
                         sender_keyword="sender")
    def UnregisterAgent(self, path, sender):
        self.bluez.record("unregister_agent", path=str(path))
        self.bluez.agent = None


# ---- The stand-in ----------------------------------------------------------

class FakeBluez:
    """org.bluez on the private bus. `adapters` is a list of (name, address,
    powered). close() makes it leave the bus, as bluetoothd stopping would."""

    CENTRAL_DEVICE = "/org/bluez/hci0/dev_11_22_33_44_55_66"

    def __init__(self, address, adapters=(("hci0", "00:AA:01:00:00:00", True),),
                 events=None, own_name=True):
        self.conn = dbus.bus.BusConnection(address)
        self.events = [] if events is None else events
        self.objects = {}
        self.app = None          # {"sender", "path", "objects"}
        self.adv = None          # {"sender", "path", "props"}
        self.discovery_starts = 0
        self.discovering = False
        self.remotes = []
        self.notifications = []
        self._notify_match = None
        self.agent = None        # {"sender", "path", "capability"}
        # RegisterAdvertisement registers but never answers, as a stalled
        # bluetoothd would: the caller cannot know the outcome.
        self.hold_adv_reply = False
        self.root = Root(self)
        self.add_object(AgentManager(self), announce=False)
        self.adapters = {}
        for name, addr, powered in adapters:
            self.add_adapter(name, addr, powered, announce=False)
        if own_name:
            self.own_name()

    def own_name(self):
        r = self.conn.request_name(BUS_NAME, dbus.bus.NAME_FLAG_DO_NOT_QUEUE)
        if r != dbus.bus.REQUEST_NAME_REPLY_PRIMARY_OWNER:
            raise RuntimeError("cannot own org.bluez")
        self.record("own_name", unique=self.conn.get_unique_name())

    def record(self, kind, **detail):
        self.events.append(dict(t=time.monotonic(), kind=kind, **detail))

    def kinds(self):
        return [e["kind"] for e in self.events]

    def add_object(self, obj, announce=True):
        self.objects[obj.path] = obj
        if announce:
            self.root.InterfacesAdded(dbus.ObjectPath(obj.path), obj.props)

    def remove_object(self, obj, announce=True):
        if self.objects.pop(obj.path, None) is None:
            return
        obj.remove_from_connection()
        if announce:
            self.root.InterfacesRemoved(dbus.ObjectPath(obj.path),
                                        dbus.Array(list(obj.props.keys()), signature="s"))

    def add_adapter(self, name, address, powered=True, announce=True):
        a = Adapter(self, name, address, powered)
        self.adapters[name] = a
        self.add_object(a, announce)
        return a

    def remove_adapter(self, name):
        a = self.adapters.pop(name)
        self.remove_object(a)
        # BlueZ forgets what was registered on an adapter that goes.
        self.app = None
        self.adv = None
        self.record("adapter_removed", adapter=name)

    def close(self):
        for obj in list(self.objects.values()):
            obj.remove_from_connection()
        self.root.remove_from_connection()
        self.objects.clear()
        self.record("closed")
        self.conn.close()

    # observer side ----------------------------------------------------------

    def register_application(self, adapter, path, sender, ok, err):
        self.record("register_app_call", adapter=adapter.name, path=path, sender=sender)

        def got(objects):
            self.app = {"sender": sender, "path": path, "objects": unwrap(objects)}
            self.record("register_app", adapter=adapter.name, path=path)
            ok()

        def failed(e):
            self.record("register_app_failed", error=str(e))
            err(bluez_error("Failed", "GetManagedObjects on the application failed"))

        self.conn.call_async(sender, path, OM, "GetManagedObjects", "", (), got, failed)

    def register_advertisement(self, adapter, path, sender, ok, err):
        def got(props):
            self.adv = {"sender": sender, "path": path, "props": unwrap(props)}
            self.record("register_adv", adapter=adapter.name, path=path, props=self.adv["props"])
            if not self.hold_adv_reply:
                ok()

        def failed(e):
            self.record("register_adv_failed", error=str(e))
            err(bluez_error("Failed", "cannot read the advertisement"))

        self.conn.call_async(sender, path, PROPS, "GetAll", "s", (ADV,), got, failed)

    def app_chrc(self, uuid):
        for path, ifaces in self.app["objects"].items():
            c = ifaces.get(GATT_CHRC)
            if c and c.get("UUID") == uuid:
                return path
        raise AssertionError("no characteristic %s in the application" % uuid)

    def central_options(self, offset=None, mtu=517, extra=None):
        o = {"device": dbus.ObjectPath(self.CENTRAL_DEVICE), "link": dbus.String("LE")}
        if mtu is not None:
            o["mtu"] = dbus.UInt16(mtu)
        if offset:
            o["offset"] = dbus.UInt16(offset)
        if extra:
            o.update(extra)
        return dbus.Dictionary(o, signature="sv")

    def write(self, data, offset=None, mtu=517, options=None, conn=None):
        """WriteValue on Confirmation as BlueZ would call it; returns None
        or the D-Bus error name."""
        opts = options if options is not None else self.central_options(offset, mtu)
        try:
            (conn or self.conn).call_blocking(
                self.app["sender"], self.app_chrc(CONFIRMATION_UUID), GATT_CHRC,
                "WriteValue", "aya{sv}", (dbus.Array(data, signature="y"), opts), timeout=5)
        except dbus.exceptions.DBusException as e:
            return e.get_dbus_name()
        return None

    def read(self, uuid, offset=None, options=None):
        opts = options if options is not None else self.central_options(offset)
        v = self.conn.call_blocking(self.app["sender"], self.app_chrc(uuid), GATT_CHRC,
                                    "ReadValue", "a{sv}", (opts,), timeout=5)
        return bytes(int(b) for b in v)

    def call_agent(self, method, signature="", args=(), conn=None):
        """A method of the registered pairing agent; None or the error name."""
        try:
            (conn or self.conn).call_blocking(self.agent["sender"], self.agent["path"], AGENT,
                                              method, signature, args, timeout=5)
        except dbus.exceptions.DBusException as e:
            return e.get_dbus_name()
        return None

    def call_chrc(self, uuid, method, signature="", args=()):
        return self.conn.call_blocking(self.app["sender"], self.app_chrc(uuid), GATT_CHRC,
                                       method, signature, args, timeout=5)

    def start_notify(self):
        path = self.app_chrc(RESULT_UUID)

        def changed(iface, props, invalidated):
            if iface == GATT_CHRC and "Value" in props:
                self.notifications.append(unwrap(props["Value"]))

        self._notify_match = self.conn.add_signal_receiver(
            changed, signal_name="PropertiesChanged", dbus_interface=PROPS, path=path,
            bus_name=self.app["sender"])
        self.call_chrc(RESULT_UUID, "StartNotify")

    # device side --------------------------------------------------------------

    def add_remote(self, adapter="hci1", **behaviour):
        r = RemoteObserver(self, self.adapters[adapter], **behaviour)
        self.remotes.append(r)
        return r

    def on_discovery_started(self, adapter):
        for r in self.remotes:
            if r.adapter is adapter and self.discovery_starts >= r.b["appear_after_starts"]:
                r.appear()
