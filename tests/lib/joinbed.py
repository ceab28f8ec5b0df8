"""A whole observed join on one machine, for tests, benchmarks and the demo.

JoinBed makes throwaway keys and IDs, starts a private Mosquitto on a free
loopback port, the server-side join peer, srup-observerd and, on demand,
srup-device, and reads what each prints. Every process is stopped by
close() (or the with-block), whatever happened.
"""
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import queue

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from srup_testlib import Broker  # noqa: E402


def id16(value):
    return "%016x" % value


def topic_id(value):
    return "%x" % value


def check(cond, what, bed=None):
    """Fail the case with what; with bed, print every process's output first."""
    if not cond:
        if bed:
            for p in bed.procs:
                print("---- %s output ----\n%s" % (p.name, p.text()))
        raise AssertionError(what)


class Cases:
    """A test script's cases by name (one ctest test each): decorate with
    @cases.case, end with sys.exit(cases.main(sys.argv)), which runs
    SCRIPT BUILD_DIR CASE."""

    def __init__(self):
        self.cases = {}

    def case(self, fn):
        self.cases[fn.__name__] = fn
        return fn

    def main(self, argv):
        if len(argv) != 3 or argv[2] not in self.cases:
            print("usage: %s BUILD_DIR {%s}" % (argv[0], "|".join(self.cases)), file=sys.stderr)
            return 2
        self.cases[argv[2]](argv[1])
        print("%s: passed" % argv[2])
        return 0


class Proc:
    """A child process whose output lines are collected as they come."""

    def __init__(self, name, argv, env=None, log=None, stdin=False):
        self.name = name
        self.argv = argv
        self.lines = []
        self._new = threading.Condition()
        self._log = log
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                  env=env, text=True, errors="replace",
                                  start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.p.stdout:
            line = line.rstrip("\n")
            with self._new:
                self.lines.append((time.monotonic(), line))
                self._new.notify_all()
            if self._log:
                self._log("%s| %s" % (self.name, line))
        with self._new:
            self._new.notify_all()

    def wait_line(self, pattern, timeout, start=0):
        """Wait for a line matching pattern (from line index start); return
        (index, match) or raise TimeoutError with the output so far."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        i = start
        with self._new:
            while True:
                while i < len(self.lines):
                    m = rx.search(self.lines[i][1])
                    if m:
                        return i, m
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0 or (self.p.poll() is not None and not self._reader.is_alive()):
                    raise TimeoutError("%s: no line matching %r within %.1fs; output:\n%s" % (
                        self.name, pattern, timeout, self.text()))
                self._new.wait(min(left, 0.2))

    def write_line(self, text):
        """One line on the process's standard input (started with stdin=True)."""
        if self._log:
            self._log("%s< %s" % (self.name, text))
        self.p.stdin.write(text + "\n")
        self.p.stdin.flush()

    def mark(self):
        """The index of the next line to come, for wait_line(start=...)."""
        with self._new:
            return len(self.lines)

    def count(self, pattern):
        rx = re.compile(pattern)
        with self._new:
            return sum(1 for _, line in self.lines if rx.search(line))

    def text(self):
        with self._new:
            return "\n".join(line for _, line in self.lines)

    def wait(self, timeout):
        rc = self.p.wait(timeout=timeout)
        self._reader.join(timeout=5)  # the output is complete once wait returns
        return rc

    def stop(self, sig=signal.SIGTERM, timeout=10):
        if self.p.stdin:
            try:
                self.p.stdin.close()
            except OSError:
                pass
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait()
        self._reader.join(timeout=5)
        return self.p.returncode


class JoinBed:
    def __init__(self, build_dir, channel="sim", window_seconds=120, max_attempts=3,
                 max_pending=1000, peer_timeout=None, observer_sections=None,
                 device_sections=None, verbose=False, workdir=None, key_bits=2048,
                 broker_debug=False, brokers=None):
        self.build = os.path.abspath(build_dir)
        self.channel = channel
        self.window_seconds = window_seconds
        self.max_attempts = max_attempts
        self.max_pending = max_pending
        self.peer_timeout = peer_timeout or (window_seconds + 30)
        self.observer_sections = observer_sections or {}
        self.device_sections = device_sections or {}
        self.verbose = verbose
        self.key_bits = key_bits
        self.broker_debug = broker_debug
        # Brokers the test runs itself, as the [mqtt] broker value of each
        # party: {"observer": ..., "peer": ..., "device": ...}. Without it
        # the bed starts one private Mosquitto for all.
        self.brokers = brokers
        self.own_workdir = workdir is None
        self.dir = workdir or tempfile.mkdtemp(prefix="srup-joinbed-")
        os.makedirs(self.dir, exist_ok=True)
        self.server_id = self._fresh_id()
        self.observer_id = self._fresh_id()
        self.device_id = self._fresh_id()
        self.broker = None
        self.peer = None
        self.observer = None
        self.procs = []

    # ---- paths and helpers ------------------------------------------
    def bin(self, name):
        for sub in ("observer", "device-side", "tests/peer", "keys", "protocol"):
            path = os.path.join(self.build, sub, name)
            if os.path.exists(path):
                return path
        raise FileNotFoundError("%s not built under %s" % (name, self.build))

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    @staticmethod
    def _fresh_id():
        # As pySRUP makes device IDs: 64 random bits; never zero.
        return secrets.randbits(64) or 1

    def log(self, text):
        if self.verbose:
            print(text, flush=True)

    def make_identity(self, name, ident):
        """Key pair for one party: keys/<name>/private.pem (0600) and the
        public half in the server's peer store as <id16>.pem."""
        out = self.path("keys", name)
        os.makedirs(out, exist_ok=True)
        subprocess.run([self.bin("srup-keygen"), "--bits", str(self.key_bits), "--id",
                        id16(ident), "--out", out], check=True, stdout=subprocess.DEVNULL)
        return os.path.join(out, "private.pem"), os.path.join(out, id16(ident) + ".pem")

    def add_device(self, name, ident):
        """A further joining device known to the server."""
        priv, pub = self.make_identity(name, ident)
        shutil.copy(pub, self.path("server-peers", id16(ident) + ".pem"))
        return priv

    # ---- set-up ------------------------------------------------------
    def setup(self):
        os.makedirs(self.path("server-peers"), exist_ok=True)
        self.server_priv, self.server_pub = self.make_identity("server", self.server_id)
        self.observer_priv, self.observer_pub = self.make_identity("observer", self.observer_id)
        self.device_priv, self.device_pub = self.make_identity("device", self.device_id)
        for pub, ident in ((self.observer_pub, self.observer_id), (self.device_pub, self.device_id)):
            shutil.copy(pub, self.path("server-peers", id16(ident) + ".pem"))
        self.sim_socket = self.path("sim.sock")
        if self.brokers:
            self.broker_url = self.brokers["peer"]
        else:
            self.broker = Broker(debug=self.broker_debug)
            self.broker.start()
            self.broker_url = "tcp://127.0.0.1:%d" % self.broker.port
        self.write_observer_config()
        self.device_config = self.write_device_config("device", self.device_id, self.device_priv)
        return self

    def _ini(self, path, sections):
        with open(path, "w") as f:
            for name, keys in sections.items():
                if keys is None:
                    continue
                f.write("[%s]\n" % name)
                for k, v in keys.items():
                    f.write("%s = %s\n" % (k, v))
                f.write("\n")
        return path

    def observer_config_sections(self):
        sections = {
            "identity": {"id": topic_id(self.observer_id), "private_key": self.observer_priv},
            "server": {"id": topic_id(self.server_id), "public_key": self.server_pub},
            "mqtt": {"broker": self.brokers["observer"] if self.brokers else self.broker_url},
            "observation": {"channel": self.channel, "window_seconds": self.window_seconds,
                            "max_attempts": self.max_attempts, "max_pending": self.max_pending},
            "state": {"dir": self.path("observer-state")},
            "control": {"socket": self.path("control.sock")},
        }
        if self.channel == "sim":
            sections["sim"] = {"socket": self.sim_socket}
        for name, keys in self.observer_sections.items():
            sections.setdefault(name, {}).update(keys) if keys is not None else sections.pop(name, None)
        return sections

    def write_observer_config(self):
        self.observer_config = self._ini(self.path("observer.conf"), self.observer_config_sections())
        return self.observer_config

    def write_device_config(self, name, ident, priv):
        sections = {
            "identity": {"id": topic_id(ident), "private_key": priv},
            "server": {"id": topic_id(self.server_id), "public_key": self.server_pub},
            "mqtt": {"broker": self.brokers["device"] if self.brokers else self.broker_url},
            "sim": {"socket": self.sim_socket},
            "state": {"dir": self.path("%s-state" % name)},
        }
        for sec, keys in self.device_sections.items():
            sections.setdefault(sec, {}).update(keys)
        return self._ini(self.path("%s.conf" % name), sections)

    # ---- processes ---------------------------------------------------
    def spawn(self, name, argv, env=None, stdin=False):
        proc = Proc(name, argv, env=env, log=self.log, stdin=stdin)
        self.procs.append(proc)
        return proc

    def start_peer(self, commands=False, join_policy=None, resign_status=None,
                   deregister_status=None, watch=(), extra_args=()):
        """Start srup-join-peer (the C2 server). commands=True starts it in
        command mode: drive it with peer_command()/send() and read its
        event lines with peer_event(). watch: further device IDs it controls
        from the start (the observer always)."""
        argv = [self.bin("srup-join-peer"), "--broker", self.broker_url, "--id",
                id16(self.server_id), "--key", self.server_priv, "--peers",
                self.path("server-peers"), "--state", self.path("server-state"), "--watch",
                id16(self.observer_id), "--timeout", str(self.peer_timeout)]
        for dev in watch:
            argv += ["--watch", id16(dev)]
        if join_policy:
            argv += ["--join-policy", join_policy]
        if resign_status is not None:
            argv += ["--resign-status", "%02x" % resign_status]
        if deregister_status is not None:
            argv += ["--deregister-status", "%02x" % deregister_status]
        if commands:
            argv.append("--commands")
        self.peer = self.spawn("peer", argv + list(extra_args), stdin=commands)
        self.peer.wait_line(r"^READY", 20)
        return self.peer

    def stop_peer(self):
        if self.peer:
            rc = self.peer.stop()
            self.peer = None
            return rc
        return None

    # ---- the peer's command mode -------------------------------------
    def peer_command(self, text):
        """Write one command line to the peer; returns the index of the
        peer's next output line (to wait for its events from there)."""
        start = self.peer.mark()
        self.peer.write_line(text)
        return start

    def peer_event(self, kind, timeout=20, start=0, **fields):
        """The first event line KIND (from line index start) whose fields
        equal the given ones (values compared as text; ints as 0x%02x for
        status, else %016x), as a dict with "_index"; raises TimeoutError."""
        want = {}
        for k, v in fields.items():
            if isinstance(v, int):
                v = "0x%02x" % v if k == "status" else id16(v)
            want[k] = v
        i = start
        deadline = time.monotonic() + timeout
        while True:
            idx, m = self.peer.wait_line(r"^%s (.*)$" % re.escape(kind),
                                         max(0.1, deadline - time.monotonic()), i)
            got = parse_event(m.group(1))
            if all(got.get(k) == v for k, v in want.items()):
                got["_index"] = idx
                return got
            i = idx + 1

    def no_peer_event(self, kind, seconds, start=0, **fields):
        """True if no such event line appears within seconds."""
        try:
            self.peer_event(kind, seconds, start, **fields)
            return False
        except TimeoutError:
            return True

    def send(self, device, msg_type, timeout=20, **fields):
        """Have the peer send msg_type to device (an int ID) with fields
        (k=v as the command mode takes them); returns the SENT event."""
        return self._send_command("send %s %s" % (id16(device), msg_type), msg_type,
                                  timeout, fields)

    def send_group(self, group, msg_type, device_id, timeout=20, **fields):
        """The same on SRUP/groups/<group>, with device_id's sequence ID."""
        fields["device_id"] = id16(device_id)
        return self._send_command("send_group %s %s" % (group, msg_type), msg_type, timeout,
                                  fields)

    def _send_command(self, head, msg_type, timeout, fields):
        words = [head] + ["%s=%s" % (k, v) for k, v in fields.items()]
        start = self.peer_command(" ".join(words))
        idx, m = self.peer.wait_line(r"^(SENT .*type=%s .*|ERROR .*)$" % re.escape(msg_type),
                                     timeout, start)
        if m.group(1).startswith("ERROR"):
            raise ValueError("peer refused %r: %s" % (" ".join(words), m.group(1)))
        got = parse_event(m.group(1)[len("SENT "):])
        got["_index"] = idx
        return got

    def replay(self, n, timeout=20):
        """Have the peer publish its Nth message again, byte for byte."""
        start = self.peer_command("replay %d" % n)
        idx, m = self.peer.wait_line(r"^(REPLAYED n=%d .*|ERROR .*)$" % n, timeout, start)
        if m.group(1).startswith("ERROR"):
            raise ValueError("peer refused replay %d: %s" % (n, m.group(1)))
        return idx

    def watch(self, device, timeout=20):
        start = self.peer_command("watch %s" % id16(device))
        self.peer_event("WATCHING", timeout, start, device=device)

    def subscribe_raw(self, topic, name="sub"):
        """mosquitto_sub on topic: a Proc printing each payload as one hex
        line. Returns once the subscription is granted."""
        # Line-buffered, so that "Subscribed" (-d) arrives when it is printed.
        sub = self.spawn(name, ["stdbuf", "-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p",
                                str(self.broker.port), "-q", "1", "-t", topic, "-F", "%x", "-d",
                                "-i", "srup-test-%s-%d-%d" % (name, os.getpid(), len(self.procs))])
        sub.wait_line(r"^Subscribed \(mid", 20)
        return sub

    def raw_messages(self, sub, timeout=20, start=0, verify_key=None, decrypt_key=None):
        """Generator of (index, decoded dict) for each SRUP message sub
        printed from line start on (srup-msg decode; "_exit" its status)."""
        import json
        i = start
        while True:
            idx, m = sub.wait_line(r"^([0-9a-f]+)$", timeout, i)
            i = idx + 1
            argv = [self.bin("srup-msg"), "decode", "--hex"]
            if verify_key:
                argv += ["--verify", verify_key]
            if decrypt_key:
                argv += ["--decrypt", decrypt_key]
            out = subprocess.run(argv + ["-"], input=m.group(1), stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, text=True)
            if out.returncode == 2:
                continue
            msg = json.loads(out.stdout)
            msg["_exit"] = out.returncode
            msg["_hex"] = m.group(1)
            yield idx, msg

    # ---- srup-device one-shot commands -------------------------------
    def device_command(self, args, config=None, timeout=30, background=False):
        """srup-device --config CONFIG ARGS...: the Proc (background) or
        (rc, output)."""
        argv = [self.bin("srup-device"), "--config", config or self.device_config] + list(args)
        proc = self.spawn("device", argv)
        if background:
            return proc
        rc = proc.wait(timeout=timeout + 30)
        return rc, proc.text()

    def start_observer(self, extra_args=(), wait=True):
        self.observer = self.spawn("observer", [self.bin("srup-observerd"), "--config",
                                                self.observer_config] + list(extra_args))
        if wait:
            self.observer.wait_line(r"connected to the broker", 20)
        return self.observer

    def stop_observer(self):
        if self.observer:
            rc = self.observer.stop()
            self.observer = None
            return rc
        return None

    def start(self):
        # Called before the with-block is entered: a failure here must
        # stop what was started, as __exit__ will not run.
        try:
            self.setup()
            self.start_peer()
            self.start_observer()
        except BaseException:
            self.close()
            raise
        return self

    def join(self, timeout=None, config=None, channel=None, background=False):
        """Run srup-device join; returns the Proc (background) or (rc, output)."""
        argv = [self.bin("srup-device"), "--config", config or self.device_config, "join",
                "--observer", topic_id(self.observer_id), "--channel", channel or self.channel,
                "--timeout", str(timeout or self.peer_timeout + 10)]
        proc = self.spawn("device", argv)
        if background:
            return proc
        rc = proc.wait(timeout=(timeout or self.peer_timeout + 10) + 30)
        return rc, proc.text()

    def present(self, value, device_id=None, config=None, channel=None, timeout=5):
        """srup-device present: one frame with value (bytes) for device_id."""
        argv = [self.bin("srup-device"), "--config", config or self.device_config, "present",
                "--device", id16(device_id if device_id is not None else self.device_id),
                "--value", value.hex(), "--channel", channel or self.channel,
                "--observer", topic_id(self.observer_id), "--timeout", str(timeout)]
        out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             timeout=timeout + 30)
        self.log("present| " + out.stdout.strip())
        m = re.search(r"result 0x([0-9a-f]{2})", out.stdout)
        return out.returncode, (int(m.group(1), 16) if m else None), out.stdout

    def outcome(self, timeout, start=0):
        """The peer's next OUTCOME line (from line index start) as a dict."""
        idx, m = self.peer.wait_line(r"^OUTCOME (.*)$", timeout, start)
        fields = dict(kv.split("=", 1) for kv in m.group(1).split())
        fields["_index"] = idx
        return fields

    def close(self):
        for proc in reversed(self.procs):
            proc.stop()
        if self.broker:
            self.broker.close()
        if self.own_workdir and not os.environ.get("SRUP_KEEP_WORKDIR"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def parse_event(text):
    """k=v words of an event line as a dict (a word without = is skipped)."""
    return dict(w.split("=", 1) for w in text.split() if "=" in w)


class RawServer:
    """Plays the C2 server by hand, as a third party would: builds messages
    with srup-msg, publishes them with mosquitto_pub, and reads what the
    observer publishes on its topic with mosquitto_sub."""

    def __init__(self, bed, server_id=None, sign_key=None):
        self.bed = bed
        self.server_id = bed.server_id if server_id is None else server_id
        self.sign_key = sign_key or bed.server_priv
        self.seq = int(time.time())  # above anything a previous run left
        self.sub = None
        self.n = 0

    def subscribe(self):
        """Start collecting payloads (hex) published on the observer's topic."""
        self.sub = self.bed.spawn("sub", [
            "mosquitto_sub", "-h", "127.0.0.1", "-p", str(self.bed.broker.port), "-q", "1",
            "-t", "SRUP/" + topic_id(self.bed.observer_id), "-F", "%x", "-i",
            "srup-test-sub-%d" % os.getpid()])
        time.sleep(0.3)  # mosquitto_sub prints nothing when subscribed
        return self

    def build(self, msg, encrypt_for=None, sign_key=None):
        self.n += 1
        path = self.bed.path("raw-%d.json" % self.n)
        out = path[:-5] + ".bin"
        with open(path, "w") as f:
            import json
            json.dump(msg, f)
        argv = [self.bed.bin("srup-msg"), "encode", "--sign", sign_key or self.sign_key]
        if encrypt_for:
            argv += ["--encrypt-for", encrypt_for]
        with open(out, "wb") as f:
            subprocess.run(argv + [path], check=True, stdout=f)
        return out

    def observe_request(self, device_id, value, token, seq=None, sender_id=None,
                        sign_key=None, encrypt_for=None):
        """Build an OBSERVE_REQ file; returns its path."""
        if seq is None:
            self.seq += 1
            seq = self.seq
        msg = {"type": "observe_request", "version": 5, "sequence_id": id16(seq),
               "sender_id": id16(self.server_id if sender_id is None else sender_id),
               "token": token.encode().hex(), "joining_device_id": id16(device_id),
               "plaintext": value.hex()}
        return self.build(msg, encrypt_for=encrypt_for or self.bed.observer_pub,
                          sign_key=sign_key)

    def publish_file(self, path, topic=None):
        subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(self.bed.broker.port),
                        "-q", "1", "-t", topic or "SRUP/" + topic_id(self.bed.observer_id),
                        "-f", path], check=True, timeout=20)

    def publish_bytes(self, payload, topic=None):
        self.n += 1
        path = self.bed.path("raw-%d.payload" % self.n)
        with open(path, "wb") as f:
            f.write(payload)
        self.publish_file(path, topic)

    def response(self, timeout, start=0, verify_key=None):
        """The next RESPONSE the observer published (from line index start):
        decoded and verified with the observer's key."""
        import json
        deadline = time.monotonic() + timeout
        i = start
        while True:
            idx, m = self.sub.wait_line(r"^([0-9a-f]+)$", max(0.1, deadline - time.monotonic()), i)
            i = idx + 1
            out = subprocess.run([self.bed.bin("srup-msg"), "decode", "--hex", "--verify",
                                  verify_key or self.bed.observer_pub, "-"],
                                 input=m.group(1), stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, text=True)
            if out.returncode == 2:  # not a SRUP message (tests publish garbage too)
                continue
            msg = json.loads(out.stdout)
            if msg.get("type") == "response":
                msg["_index"] = idx
                msg["_exit"] = out.returncode
                return msg

    def no_response(self, seconds, start=0):
        """True if no RESPONSE appears within seconds."""
        try:
            self.response(seconds, start)
            return False
        except TimeoutError:
            return True
