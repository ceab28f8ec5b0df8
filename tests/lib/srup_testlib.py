"""Helpers for the Python-orchestrated tests: a private Mosquitto broker on a
free loopback port, free ports, and running a command with a deadline.

Standard library only. The broker lives in a temporary directory of its own
(config, persistence database, log), so parallel ctest runs never share one;
restart() keeps the port and the persisted sessions.

    with Broker() as broker:
        run(["mosquitto_pub", "-p", str(broker.port), "-t", "x", "-m", "y"])
        broker.restart()
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

BROKER_START_TIMEOUT = 10.0
BROKER_STOP_TIMEOUT = 10.0
PORT_ATTEMPTS = 8


def free_port():
    """A TCP port on 127.0.0.1 that was free at the time of the call."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd, timeout=30.0, check=True, **kwargs):
    """Run cmd (a list) with stdin from /dev/null, capturing text output.

    Kills it (and its process group) after timeout seconds and raises
    subprocess.TimeoutExpired. With check, a non-zero exit raises
    subprocess.CalledProcessError carrying the output."""
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    kwargs.setdefault("text", True)
    proc = subprocess.Popen(cmd, start_new_session=True, **kwargs)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, err = proc.communicate()
        raise subprocess.TimeoutExpired(cmd, timeout, output=out, stderr=err)
    if check and proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, cmd, output=out, stderr=err)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _mosquitto_binary():
    for path in ("/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto"):
        if os.access(path, os.X_OK):
            return path
    found = shutil.which("mosquitto")
    if not found:
        raise RuntimeError("mosquitto not found (install the mosquitto package)")
    return found


class Broker:
    """A private Mosquitto: start(), stop(), restart() on the same port."""

    def __init__(self, debug=False, extra=None):
        self.debug = debug  # also log every packet (PUBLISH sent, PUBACK received)
        self.extra = extra or []  # further mosquitto.conf lines (a bridge's, ...)
        self.dir = tempfile.mkdtemp(prefix="srup-broker.")
        self.conf = os.path.join(self.dir, "mosquitto.conf")
        self.log = os.path.join(self.dir, "mosquitto.log")
        self.port = None
        self.proc = None

    @property
    def url(self):
        return "tcp://127.0.0.1:%d" % self.port

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _write_config(self):
        lines = [
            "persistence true",
            "persistence_location %s/" % self.dir,
            "listener %d 127.0.0.1" % self.port,
            "allow_anonymous true",
            # Never drop QoS 1 messages queued for a slow subscriber:
            # tests count what arrives.
            "max_queued_messages 0",
            # Without it the broker's small writes wait for delayed ACKs
            # (about 40 ms per hop), which a deployment must avoid as well.
            "set_tcp_nodelay true",
            # Paho reads a packet whole before anything can refuse it: the
            # broker bounds what a publisher can make a node hold (1 MiB,
            # room for the nodes' own 128 KiB payload check).
            "max_packet_size 1048576",
            "log_dest file %s" % self.log,
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
        ] + (["log_type debug"] if self.debug else [])
        # As root, mosquitto would switch to its own user, which cannot
        # write this directory.
        if os.geteuid() == 0:
            lines.append("user root")
        # Global options first: a bridge's lines belong to its "connection".
        lines += list(self.extra)
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")

    def _log_says_running(self):
        try:
            with open(self.log) as f:
                return any(" running" in line for line in f)
        except FileNotFoundError:
            return False

    def _accepts(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def _launch(self):
        """True when ready; False if mosquitto exited (port taken)."""
        self._write_config()
        try:
            os.unlink(self.log)
        except FileNotFoundError:
            pass
        errlog = open(os.path.join(self.dir, "stderr.log"), "a")
        try:
            self.proc = subprocess.Popen(
                [_mosquitto_binary(), "-c", self.conf],
                stdin=subprocess.DEVNULL, stdout=errlog, stderr=errlog,
                start_new_session=True)
        finally:
            errlog.close()
        deadline = time.monotonic() + BROKER_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.proc = None
                return False
            # "running" is logged once every listener is bound, so the
            # connect reaches this broker and not another process.
            if self._log_says_running() and self._accepts():
                return True
            time.sleep(0.01)
        self._terminate(force=True)
        raise RuntimeError("mosquitto on port %d not ready after %.0f s (see %s)"
                           % (self.port, BROKER_START_TIMEOUT, self.log))

    def start(self):
        if self.proc is not None:
            return
        for _ in range(PORT_ATTEMPTS):
            self.port = free_port()
            if self._launch():
                return
            # Lost a race for the port with a parallel test: pick another.
        raise RuntimeError("could not start mosquitto (see %s)" % self.dir)

    def _terminate(self, force=False):
        if self.proc is None:
            return
        if not force:
            self.proc.terminate()  # SIGTERM: the broker saves its sessions
            try:
                self.proc.wait(timeout=BROKER_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                force = True
        if force:
            _kill_group(self.proc)
            self.proc.wait()
        self.proc = None

    def stop(self):
        self._terminate()

    def kill(self):
        """SIGKILL: the broker saves nothing more."""
        self._terminate(force=True)

    def restart(self):
        """Stop, then start on the same port with the same persistence."""
        if self.port is None:
            return self.start()
        self.stop()
        for _ in range(3):
            if self._launch():
                return
            time.sleep(0.2)
        raise RuntimeError("port %d no longer free for a restart" % self.port)

    def close(self):
        self._terminate()
        shutil.rmtree(self.dir, ignore_errors=True)


if __name__ == "__main__":
    # Self-check: start, publish, restart on the same port, publish, stop.
    with Broker() as b:
        port = b.port
        run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(b.port), "-t", "t", "-m", "m"],
            timeout=10)
        b.restart()
        assert b.port == port
        run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(b.port), "-t", "t", "-m", "m"],
            timeout=10)
        try:
            run(["sleep", "5"], timeout=0.2)
        except subprocess.TimeoutExpired:
            pass
        else:
            raise AssertionError("run() did not time out")
    print("srup_testlib: ok")
