"""Fault injection for the integration tests: a broker that can be killed
with SIGKILL and started again on its port, SIGKILL for any Proc, and
private tmpfs mounts for the state directory (full or read-only).

A broker killed with SIGKILL keeps only what it had saved: this one saves
its persistence database after every change, as a production broker with
`autosave_on_changes` would, so the sessions made before the kill survive
it. Importing this module makes JoinBed start such brokers.

The mount helpers need a private mount namespace: a test calls
reexec_in_private_mount_namespace() first (it runs itself again under
`unshare --mount --propagation private`), so nothing it mounts is seen
outside it, and it all goes when the test's process ends.
"""
import os
import signal
import subprocess
import sys
import time

import joinbed
from srup_testlib import Broker


class KillableBroker(Broker):
    def _write_config(self):
        super()._write_config()
        with open(self.conf, "a") as f:
            f.write("autosave_on_changes true\nautosave_interval 1\n")

    def kill(self):
        """SIGKILL: no shutdown, no last save."""
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def start_again(self):
        """Start on the same port after kill()."""
        for _ in range(10):
            if self._launch():
                return
            time.sleep(0.3)
        raise RuntimeError("port %d no longer free after the kill" % self.port)


joinbed.Broker = KillableBroker


def sigkill(proc):
    """SIGKILL a Proc (its whole process group); returns once it is gone."""
    if proc.p.poll() is None:
        try:
            os.killpg(proc.p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.p.wait()
    proc.stop()  # joins the output reader
    return proc.p.returncode


PRIVATE_MOUNTS_ENV = "SRUP_TEST_PRIVATE_MOUNTS"


def reexec_in_private_mount_namespace():
    """Run this test again in a mount namespace of its own (unshare), unless
    it already is: mounts made there are never seen outside the test and go
    with it, whatever happens."""
    if os.environ.get(PRIVATE_MOUNTS_ENV) == "1":
        return
    env = dict(os.environ, **{PRIVATE_MOUNTS_ENV: "1"})
    argv = ["unshare", "--mount", "--propagation", "private", sys.executable] + sys.argv
    os.execvpe("unshare", argv, env)


class Tmpfs:
    """A tmpfs of size_kib mounted on path (created if missing)."""

    def __init__(self, path, size_kib):
        self.path = path
        os.makedirs(path, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dk,mode=0700" % size_kib,
                        "srup-test", path], check=True)
        self.filler = None

    def fill(self):
        """Take every free byte (a file grown until ENOSPC)."""
        self.filler = os.path.join(self.path, "filler")
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (65536, 4096, 1):
                while True:
                    try:
                        os.write(fd, b"\0" * size)
                    except OSError:
                        break
        finally:
            os.close(fd)

    def free(self):
        if self.filler:
            os.unlink(self.filler)
            self.filler = None

    def remount(self, mode):
        subprocess.run(["mount", "-o", "remount,%s" % mode, self.path], check=True)

    def close(self):
        subprocess.run(["umount", "-l", self.path], check=False)
