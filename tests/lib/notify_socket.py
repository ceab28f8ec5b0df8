"""The datagram socket systemd gives a Type=notify service (NOTIFY_SOCKET),
owned by a test: every sd_notify message a daemon sends, in order."""
import os
import socket
import threading
import time


class NotifySocket:
    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.messages = []  # (monotonic time, text)
        self.done = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while not self.done:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode(errors="replace")))

    def env(self, watchdog_usec=1000000):
        """The environment of a daemon started under this socket."""
        env = dict(os.environ)
        env["NOTIFY_SOCKET"] = self.path
        env["WATCHDOG_USEC"] = str(watchdog_usec)
        return env

    def assignments(self, start=0):
        """Each NAME=value of the messages from index start, in order."""
        return [a for _, m in self.messages[start:] for a in m.split("\n") if a]

    def status(self):
        """The last STATUS= sent (None: none yet)."""
        last = None
        for a in self.assignments():
            if a.startswith("STATUS="):
                last = a[len("STATUS="):]
        return last

    def close(self):
        self.done = True
        self.sock.close()
