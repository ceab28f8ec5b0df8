"""A private RabbitMQ cluster of three nodes with the MQTT plugin, on loopback.

Debian's rabbitmq-server, started as the test's own processes: node names,
AMQP, MQTT and distribution ports, data and log directories, Erlang cookie
and a private epmd (on its own port, ERL_EPMD_PORT) are all the cluster's
own, so it never meets the distribution's service or another test's cluster.
MQTT sessions that are not clean get quorum queues
(mqtt.durable_queue_type = quorum): with three nodes a session and what it
holds survive the loss of any one node.

Forming takes 25-90 s on a loaded machine, so a test run forms it once:

    python3 rabbit_cluster.py form STATE.json   # ctest fixture set-up
    python3 rabbit_cluster.py stop STATE.json   # ctest fixture clean-up

and tests attach to it with RabbitCluster.attach(STATE.json). A test that
kills a node starts it again (restart_node) before it ends.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from srup_testlib import free_port  # noqa: E402

RABBIT_BIN = "/usr/lib/rabbitmq/bin"
NODES = 3
BOOT_TIMEOUT = 150.0
JOIN_TIMEOUT = 150.0


def _accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


class RabbitCluster:
    def __init__(self, state=None):
        self.state = state or {}

    # ---- the state file shared by the fixture and the tests ----------
    @classmethod
    def attach(cls, path):
        with open(path) as f:
            return cls(json.load(f))

    def save(self, path):
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.state, f, indent=1)
        os.replace(tmp, path)

    @property
    def dir(self):
        return self.state["dir"]

    def node(self, i):
        return self.state["nodes"][i]

    def mqtt_url(self, i):
        return "tcp://127.0.0.1:%d" % self.node(i)["mqtt"]

    def urls(self, order=None):
        return " ".join(self.mqtt_url(i) for i in (order or range(NODES)))

    # ---- processes ---------------------------------------------------
    def _env(self, i):
        n = self.node(i)
        d = n["dir"]
        env = dict(os.environ)
        env.update({
            "HOME": os.path.join(self.dir, "home"),  # holds the cluster's .erlang.cookie
            "ERL_EPMD_PORT": str(self.state["epmd"]),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODENAME": n["name"],
            "RABBITMQ_USE_LONGNAME": "false",
            "RABBITMQ_DIST_PORT": str(n["dist"]),
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(n["amqp"]),
            "RABBITMQ_CTL_DIST_PORT_MIN": str(n["ctl"]),
            "RABBITMQ_CTL_DIST_PORT_MAX": str(n["ctl"] + 10),
            "RABBITMQ_CONF_ENV_FILE": os.path.join(d, "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": os.path.join(d, "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": os.path.join(d, "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": os.path.join(d, "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": os.path.join(d, "mnesia"),
            "RABBITMQ_MNESIA_DIR": os.path.join(d, "mnesia", n["name"]),
            "RABBITMQ_PLUGINS_EXPAND_DIR": os.path.join(d, "plugins-expand"),
            "RABBITMQ_FEATURE_FLAGS_FILE": os.path.join(d, "feature_flags"),
            "RABBITMQ_LOG_BASE": os.path.join(d, "log"),
            "RABBITMQ_LOGS": os.path.join(d, "log", "rabbit.log"),
            "RABBITMQ_PID_FILE": os.path.join(d, "rabbit.pid"),
        })
        return env

    def ctl(self, i, *args, timeout=60, check=True, tool="rabbitmqctl"):
        argv = [os.path.join(RABBIT_BIN, tool), "-n", self.node(i)["name"]] + list(args)
        out = subprocess.run(argv, env=self._env(i), stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             timeout=timeout)
        if check and out.returncode != 0:
            raise RuntimeError("%s: exit %d\n%s" % (" ".join(argv), out.returncode, out.stdout))
        return out

    def _write_node_files(self, i):
        n = self.node(i)
        d = n["dir"]
        os.makedirs(os.path.join(d, "log"), exist_ok=True)
        with open(os.path.join(d, "rabbitmq-env.conf"), "w"):
            pass
        with open(os.path.join(d, "enabled_plugins"), "w") as f:
            f.write("[rabbitmq_mqtt].\n")
        with open(os.path.join(d, "rabbitmq.conf"), "w") as f:
            f.write("listeners.tcp.1 = 127.0.0.1:%d\n" % n["amqp"])
            f.write("mqtt.listeners.tcp.1 = 127.0.0.1:%d\n" % n["mqtt"])
            f.write("mqtt.allow_anonymous = true\n")
            # A non-clean session's queue replicated on every node.
            f.write("mqtt.durable_queue_type = quorum\n")
            f.write("mqtt.tcp_listen_options.nodelay = true\n")
            f.write("log.file.level = info\n")
        with open(os.path.join(d, "advanced.config"), "w") as f:
            # Distribution on loopback only.
            f.write("[{kernel, [{inet_dist_use_interface, {127,0,0,1}}]}].\n")

    def _launch(self, i):
        n = self.node(i)
        log = open(os.path.join(n["dir"], "log", "server.out"), "a")
        try:
            p = subprocess.Popen([os.path.join(RABBIT_BIN, "rabbitmq-server")], env=self._env(i),
                                 stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                 start_new_session=True)
        finally:
            log.close()
        n["pid"] = p.pid
        return p

    def _await_node(self, i, deadline):
        n = self.node(i)
        while time.monotonic() < deadline:
            if not _pid_alive(n["pid"]):
                raise RuntimeError("node %s exited while starting; see %s" % (
                    n["name"], os.path.join(n["dir"], "log")))
            left = max(5, int(deadline - time.monotonic()))
            out = self.ctl(i, "await_startup", "--timeout", str(left), check=False,
                           timeout=left + 30)
            if out.returncode == 0 and _accepts(n["mqtt"]):
                return
            time.sleep(0.5)  # the node is not up enough to answer: ask again
        raise RuntimeError("node %s not started within the bound" % n["name"])

    def form(self):
        """Start three nodes and cluster them; returns self. On failure,
        everything started is stopped."""
        base = tempfile.mkdtemp(prefix="srup-rabbit.")
        tag = "%d" % os.getpid()
        self.state = {"dir": base, "epmd": free_port(), "nodes": []}
        try:
            home = os.path.join(base, "home")
            os.makedirs(home)
            cookie = os.path.join(home, ".erlang.cookie")
            with open(cookie, "w") as f:
                f.write(os.urandom(20).hex().upper())
            os.chmod(cookie, 0o400)
            epmd = subprocess.Popen(["epmd", "-port", str(self.state["epmd"]), "-address",
                                     "127.0.0.1"], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
            self.state["epmd_pid"] = epmd.pid
            for i in range(NODES):
                self.state["nodes"].append({
                    "name": "srup%d-%s@localhost" % (i + 1, tag),
                    "dir": os.path.join(base, "n%d" % (i + 1)),
                    "amqp": free_port(), "mqtt": free_port(), "dist": free_port(),
                    "ctl": free_port(), "pid": None})
                self._write_node_files(i)
            started = time.monotonic()
            for i in range(NODES):
                self._launch(i)
            deadline = time.monotonic() + BOOT_TIMEOUT
            for i in range(NODES):
                self._await_node(i, deadline)
            first = self.node(0)["name"]
            for i in range(1, NODES):
                self.ctl(i, "stop_app", timeout=JOIN_TIMEOUT)
                self.ctl(i, "join_cluster", first, timeout=JOIN_TIMEOUT)
                self.ctl(i, "start_app", timeout=JOIN_TIMEOUT)
            self.wait_running(NODES, time.monotonic() + JOIN_TIMEOUT)
            self.state["formed_seconds"] = round(time.monotonic() - started, 1)
            return self
        except BaseException:
            self.stop()
            raise

    def running_nodes(self, via):
        out = self.ctl(via, "cluster_status", "--formatter", "json", check=False, timeout=60)
        if out.returncode != 0:
            return []
        try:
            text = out.stdout[out.stdout.index("{"):]
            return json.loads(text).get("running_nodes", [])
        except ValueError:
            return []

    def wait_running(self, count, deadline, via=None):
        """Wait until count nodes run in the cluster and every running
        node's MQTT port accepts."""
        via = [via] if via is not None else range(NODES)
        while time.monotonic() < deadline:
            for i in via:
                if not self.node(i)["pid"] or not _pid_alive(self.node(i)["pid"]):
                    continue
                running = self.running_nodes(i)
                if len(running) >= count and all(
                        _accepts(n["mqtt"]) for n in self.state["nodes"] if n["name"] in running):
                    return running
            time.sleep(0.5)
        raise RuntimeError("fewer than %d cluster nodes running within the bound" % count)

    def kill_node(self, i):
        """SIGKILL one node (its whole process group)."""
        n = self.node(i)
        try:
            os.killpg(n["pid"], signal.SIGKILL)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 10
        while _pid_alive(n["pid"]) and time.monotonic() < deadline:
            try:
                os.waitpid(n["pid"], os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.05)

    def restart_node(self, i):
        """Start a stopped or killed node again; it rejoins the cluster."""
        if self.node(i)["pid"] and _pid_alive(self.node(i)["pid"]):
            return
        self._launch(i)
        self._await_node(i, time.monotonic() + BOOT_TIMEOUT)
        self.wait_running(NODES, time.monotonic() + JOIN_TIMEOUT)

    def stop(self):
        for n in self.state.get("nodes", []):
            if n.get("pid") and _pid_alive(n["pid"]):
                try:
                    os.killpg(n["pid"], signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for n in self.state.get("nodes", []):
            deadline = time.monotonic() + 30
            while n.get("pid") and _pid_alive(n["pid"]) and time.monotonic() < deadline:
                try:
                    os.waitpid(n["pid"], os.WNOHANG)
                except ChildProcessError:
                    pass
                time.sleep(0.1)
            if n.get("pid") and _pid_alive(n["pid"]):
                try:
                    os.killpg(n["pid"], signal.SIGKILL)
                except ProcessLookupError:
                    pass
        pid = self.state.get("epmd_pid")
        if pid and _pid_alive(pid):
            os.kill(pid, signal.SIGTERM)
        if self.state.get("dir") and not os.environ.get("SRUP_KEEP_WORKDIR"):
            shutil.rmtree(self.state["dir"], ignore_errors=True)


def main(argv):
    if len(argv) != 3 or argv[1] not in ("form", "stop"):
        print("usage: %s form|stop STATE.json" % argv[0], file=sys.stderr)
        return 2
    path = argv[2]
    if argv[1] == "form":
        if os.path.exists(path):  # a previous run's cluster left behind
            try:
                RabbitCluster.attach(path).stop()
            finally:
                os.unlink(path)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        c = RabbitCluster().form()
        c.save(path)
        print("cluster of %d nodes formed in %.1f s: %s" % (NODES, c.state["formed_seconds"],
                                                            c.urls()))
        return 0
    if os.path.exists(path):
        RabbitCluster.attach(path).stop()
        os.unlink(path)
    print("cluster stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
