"""An observed-join bed that starts from nothing, as an installation does:
a key service stand-in (keyex_standin.py) over HTTPS, a Mosquitto that
speaks mqtts only and requires client certificates from the service's CA,
the observer and the device registered with srup-register, and the C2
server peer taking their keys from the service (--keyex).

RegisteredBed is a JoinBed (tests/lib/joinbed.py): join(), present(),
outcome(), start_observer() work on the registered configurations.
"""
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

from keyex_standin import KeyService  # noqa: E402
from joinbed import JoinBed  # noqa: E402
from srup_testlib import Broker  # noqa: E402


class TlsBroker(Broker):
    """Mosquitto on a free loopback port, mqtts only: its certificate from
    the service's access CA, client certificates required, the CN taken as
    the user name (use_identity_as_username), every connection logged."""

    def __init__(self, keyex):
        super().__init__()
        self.cert, self.key = keyex.issue_broker_cert(self.dir)
        self.ca = keyex.ca_file

    def _write_config(self):
        lines = [
            "persistence false",
            "listener %d 127.0.0.1" % self.port,
            "cafile %s" % self.ca, "certfile %s" % self.cert, "keyfile %s" % self.key,
            "require_certificate true", "use_identity_as_username true",
            "allow_anonymous false",
            "set_tcp_nodelay true",
            # As every test broker: bounds what a publisher can make a node
            # hold, since Paho reads a packet whole.
            "max_packet_size 1048576",
            "log_dest file %s" % self.log,
            "log_type error", "log_type warning", "log_type notice", "log_type information",
        ]
        if os.geteuid() == 0:
            lines.append("user root")
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")

    def log_text(self):
        with open(self.log) as f:
            return f.read()


def run_register(build, config, keyex, *extra, timeout=120):
    """srup-register for config against keyex; CompletedProcess (text)."""
    env = dict(os.environ)
    env["SRUP_REGISTER_OBSERVERD"] = os.path.join(build, "observer", "srup-observerd")
    env["SRUP_REGISTER_DEVICE"] = os.path.join(build, "device-side", "srup-device")
    argv = [os.path.join(build, "registration", "srup-register"), "--config", config,
            "--url", keyex.url, "--ca-file", keyex.tls_ca_file] + list(extra)
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                          stdin=subprocess.DEVNULL)


class RegisteredBed(JoinBed):
    def __init__(self, build_dir, **kw):
        super().__init__(build_dir, **kw)
        self.keyex = None
        self.transcripts = {}

    def _placeholder_config(self, name, observer):
        """The shipped file's placeholders, the channel and the state."""
        lines = ["[identity]", "id = 0",
                 "private_key = %s" % self.path(name, "private.pem"),
                 "[server]", "id = 0", "public_key = /etc/srup/server-public.pem",
                 "[mqtt]", "broker = mqtts://c2.example.net:8883", "ca_file = /etc/srup/ca.pem"]
        if observer:
            lines += ["[observation]", "channel = %s" % self.channel,
                      "window_seconds = %d" % self.window_seconds,
                      "max_attempts = %d" % self.max_attempts,
                      "[control]", "socket = %s" % self.path("control.sock")]
        lines += ["[sim]", "socket = %s" % self.sim_socket,
                  "[state]", "dir = %s" % self.path(name + "-state")]
        path = self.path(name + ".conf")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def _register(self, name, config):
        r = run_register(self.build, config, self.keyex)
        self.transcripts[name] = r
        self.log("register %s| %s%s" % (name, r.stdout, r.stderr))
        m = re.search(r"^registered ([0-9a-f]+)$", r.stdout, re.M)
        if r.returncode != 0 or not m:
            raise RuntimeError("srup-register %s exited %d:\n%s%s"
                               % (name, r.returncode, r.stdout, r.stderr))
        return int(m.group(1), 16)

    def setup(self):
        self.keyex = KeyService()
        self.keyex.start()
        self.broker = TlsBroker(self.keyex)
        self.broker.start()
        self.keyex.broker = "mqtt://127.0.0.1:%d" % self.broker.port
        self.broker_url = "mqtts://127.0.0.1:%d" % self.broker.port
        self.sim_socket = self.path("sim.sock")
        self.observer_config = self._placeholder_config("observer", True)
        self.device_config = self._placeholder_config("device", False)
        self.observer_id = self._register("observer", self.observer_config)
        self.device_id = self._register("device", self.device_config)
        # The C2 server speaks with the service's server key, connects with a
        # client certificate of the same CA and has no key of anyone.
        self.server_id = int(self.keyex.server_id_text, 16)
        os.makedirs(self.path("server-peers"), exist_ok=True)
        self.server_priv = self.keyex.write_server_private(self.path("server.pem"))
        cert, key = self.keyex.issue_client_cert(self.dir, self.keyex.server_id_text)
        self.peer_args = ["--ca-file", self.keyex.ca_file, "--cert-file", cert,
                          "--key-file", key, "--keyex", self.keyex.url,
                          "--keyex-ca", self.keyex.tls_ca_file]
        return self

    def start_peer(self, extra_args=(), **kw):
        return super().start_peer(extra_args=list(self.peer_args) + list(extra_args), **kw)

    def close(self):
        super().close()
        if self.keyex:
            self.keyex.close()
