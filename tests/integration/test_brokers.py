#!/usr/bin/env python3
"""Beyond one broker: every party configured with a list of brokers.

  two_mosquittos    both Mosquittos listed everywhere; the first SIGKILLed
                    mid-observation: all move to the second and a new
                    observed join succeeds there; the first back and the
                    second killed: all are back on the first.
  rabbitmq_cluster  a three-node RabbitMQ cluster (quorum queues); observer
                    on node 1, peer and device on node 2; node 1 SIGKILLed
                    with an observation pending: the observer resumes its
                    session on another node and the join completes, nothing
                    acted on twice.
  bridge            the observer on a site Mosquitto bridged (SRUP/# both
                    ways, QoS 1) to a central one holding peer and device;
                    the central broker stopped mid-observation and started
                    again: JOIN_SUCCESS once it is back; then the site
                    broker SIGKILLed: the observer (listing the central
                    broker second) moves there and joins go on.

usage: test_brokers.py BUILD_DIR CASE. rabbitmq_cluster uses the cluster
named by SRUP_RABBIT_CLUSTER (a state file of tests/lib/rabbit_cluster.py,
formed once per test run by the ctest fixture), or forms its own.
"""
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from joinbed import Cases, JoinBed, check, id16, topic_id  # noqa: E402
from srup_testlib import Broker  # noqa: E402
from rabbit_cluster import RabbitCluster  # noqa: E402
from obs_ops import ctl, ctl_json, wait_for  # noqa: E402
from test_operator import metrics_of  # noqa: E402
from notify_socket import NotifySocket  # noqa: E402
from inbound_records import inbound_records  # noqa: E402

cases = Cases()
case = cases.case

VALID = 0x60  # the observer's verdict in the frame result
MOVE_TIMEOUT = 20  # a lost connection is seen at once on loopback; backoff adds a little


def printed_value(proc):
    _, m = proc.wait_line(r"confirmation value: ([0-9a-f]+)", 30)
    return bytes.fromhex(m.group(1))


def log_size(broker):
    try:
        return os.path.getsize(broker.log)
    except FileNotFoundError:
        return 0


def wait_client_on(broker, ident, start, bed, timeout=MOVE_TIMEOUT):
    """The broker's own log (from byte start) shows the node ident
    connected: evidence that does not depend on what the node logs."""
    rx = re.compile(r"New client connected from .* as SRUP Client: %s " % topic_id(ident))

    def seen():
        try:
            with open(broker.log, errors="replace") as f:
                f.seek(start)
                return any(rx.search(line) for line in f)
        except FileNotFoundError:
            return False
    wait_for("node %s connected to the broker on port %d" % (topic_id(ident), broker.port),
             seen, timeout, bed)


def present_retry(bed, value, seconds=20):
    """Present until the observer has the request (it may still be on its way)."""
    deadline = time.monotonic() + seconds
    while True:
        result = bed.present(value)[1]
        if result not in (0x00, None) or time.monotonic() > deadline:
            return result
        time.sleep(0.2)


def observed_join(bed, what):
    rc, out = bed.join(timeout=60)
    check(rc == 0 and "JOIN_SUCCESS" in out, "%s: device did not join: rc=%d\n%s" % (what, rc, out),
          bed)


def start_pending_join(bed):
    """A join waiting at the observer: the device has printed its value and
    the observer holds the OBSERVE_REQ."""
    mark = bed.observer.mark()
    dev = bed.spawn("device", [bed.bin("srup-device"), "--config", bed.device_config, "join",
                               "--observer", topic_id(bed.observer_id), "--print-value",
                               "--timeout", "120"])
    value = printed_value(dev)
    bed.observer.wait_line(r"OBSERVE_REQ for device %s accepted" % id16(bed.device_id), 30, mark)
    return dev, value


@case
def two_mosquittos(build):
    a, b = Broker(), Broker()
    try:
        a.start()
        b.start()
        both = "%s %s" % (a.url, b.url)
        with JoinBed(build, brokers={"observer": both, "peer": both, "device": both}) as bed:
            bed.observer_sections = {"metrics": {"file": bed.path("srup.prom"),
                                                 "interval_seconds": 3600}}
            bed.setup()
            bed.start_peer()
            notify = NotifySocket(bed.path("notify.sock"))
            env = dict(os.environ, NOTIFY_SOCKET=notify.path)
            bed.observer = bed.spawn("observer", [bed.bin("srup-observerd"), "--config",
                                                  bed.observer_config], env=env)
            bed.observer.wait_line(r"connected to the broker", 20)
            for ident in (bed.observer_id, bed.server_id):
                wait_client_on(a, ident, 0, bed)
            observed_join(bed, "on the first broker")
            dev, value = start_pending_join(bed)
            n_notify = len(notify.messages)
            b_mark = log_size(b)
            a.kill()
            # All move to the second (its own log says so) within a few
            # seconds, and a new observed join succeeds there.
            for ident in (bed.observer_id, bed.server_id, bed.device_id):
                wait_client_on(b, ident, b_mark, bed)
            # The pending join's messages may have died with the first
            # broker; the device gives up on its own. A new one succeeds.
            dev.stop()
            observed_join(bed, "on the second broker")
            # The first back and the second killed: all are back on the first.
            a.restart()
            # A healthy session is kept: the first broker back pulls no
            # one off the second (a reconnect would come at once; two
            # brokers without a bridge are two separate worlds, so no
            # join is tried in between).
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                with open(a.log, errors="replace") as f:
                    check("SRUP Client" not in f.read(),
                          "a healthy session left for the first broker", bed)
                time.sleep(0.2)
            a_mark = log_size(a)
            b.kill()
            for ident in (bed.observer_id, bed.server_id):
                wait_client_on(a, ident, a_mark, bed)
            observed_join(bed, "back on the first broker")
            # The operator saw each loss at once and sees where the
            # observer is: STATUS=, status (text and JSON), metrics.
            status = [x for x in notify.assignments(n_notify) if x.startswith("STATUS=")]
            check(any(x.startswith("STATUS=broker disconnected") for x in status) and
                  any(x.startswith("STATUS=broker connected to %s;" % b.url) for x in status) and
                  status[-1].startswith("STATUS=broker connected to %s;" % a.url),
                  "STATUS= after the losses: %r" % status, bed)
            rc, st = ctl_json(bed, "status")
            check(rc == 0 and st["broker"]["connected_to"] == a.url and
                  st["broker"]["url"] == both and st["broker"]["state"] == "connected",
                  "status --json: %r" % st.get("broker"), bed)
            rc, out, _ = ctl(bed, "status")
            check(re.search(r"^  broker +%s \(connected; list: %s\)$" % (
                re.escape(a.url), re.escape(both)), out, re.M), "status:\n" + out, bed)
            prom = bed.path("srup.prom")
            wait_for("metrics naming the first broker", lambda: os.path.exists(prom) and
                     metrics_of(prom).get('srup_observer_broker{url="%s"}' % a.url) == 1 and
                     metrics_of(prom).get('srup_observer_broker{url="%s"}' % b.url) == 0,
                     10, bed)
            check(bed.observer.count(r"connected to %s \(broker 2 of 2\), no longer to %s"
                                     % (re.escape(b.url), re.escape(a.url))) == 1 and
                  bed.observer.count(r"connected to %s \(broker 1 of 2\), no longer to %s"
                                     % (re.escape(a.url), re.escape(b.url))) == 1,
                  "the log does not name each change of broker", bed)
            notify.close()
    finally:
        a.close()
        b.close()


def rabbit_client_port(cluster, via, ident):
    """The MQTT port of the cluster node holding node ident's connection
    (asked of node via), or None."""
    out = cluster.ctl(via, "list_mqtt_connections", "client_id", "conn_name", "--formatter",
                      "json", check=False, timeout=60)
    m = re.search(r'"client_id":"SRUP Client: %s","conn_name":"[^"]* -> [^"]*:(\d+)"'
                  % topic_id(ident), out.stdout)
    return int(m.group(1)) if m else None


@case
def rabbitmq_cluster(build):
    state = os.environ.get("SRUP_RABBIT_CLUSTER")
    own = not (state and os.path.exists(state))
    cluster = RabbitCluster().form() if own else RabbitCluster.attach(state)
    try:
        observer_urls = cluster.urls([0, 1, 2])
        node2_first = cluster.urls([1, 2, 0])
        with JoinBed(build, brokers={"observer": observer_urls, "peer": node2_first,
                                     "device": node2_first}) as bed:
            bed.start()
            observed_join(bed, "through the cluster")
            dev, value = start_pending_join(bed)
            peer_mark = bed.peer.mark()
            cluster.kill_node(0)
            # The observer resumes its session on another node: the
            # OBSERVE_REQ it holds is still pending there.
            check(present_retry(bed, value, MOVE_TIMEOUT + 30) == VALID,
                  "the value was not matched", bed)
            o = bed.outcome(60, peer_mark)
            check(o["observer_status"] == "0x60" and o["status"] == "0x50", "peer saw %r" % o, bed)
            check(dev.wait(60) == 0 and "JOIN_SUCCESS" in dev.text(),
                  "device did not hear JOIN_SUCCESS:\n%s" % dev.text(), bed)
            # Nothing acted on twice: one verdict each, one outcome at the
            # server, and every inbound record released.
            dev_id = id16(bed.device_id)
            check(bed.peer.count(r"^OUTCOME .*device=%s" % dev_id) == 2,
                  "the server saw a join's RESPONSE twice", bed)
            check(bed.observer.count(r"observation device=%s outcome=valid" % dev_id) == 2,
                  "the observer decided a join twice", bed)
            check(dev.count(r"JOIN_SUCCESS") == 1, "the device acted on JOIN_SUCCESS twice", bed)
            observed_join(bed, "after node 1's loss")
            # Node 1 back and node 2 (where the observer went) killed: the
            # observer tries its list from the first entry again, so it
            # is on node 1, not stuck further down its list; the server
            # and the device go to node 3, and joins go on.
            cluster.restart_node(0)
            cluster.kill_node(1)
            wait_for("the observer's session on node 1",
                     lambda: rabbit_client_port(cluster, 2, bed.observer_id) ==
                     cluster.node(0)["mqtt"], MOVE_TIMEOUT + 40, bed)
            observed_join(bed, "after node 2's loss")
            bed.stop_observer()
            left = inbound_records(bed.path("observer-state"))
            check(left == [], "observer inbound records left: %r" % left, bed)
    finally:
        if own:
            cluster.stop()
        else:
            for i in range(3):  # the next user of the fixture finds three nodes
                cluster.restart_node(i)
            cluster.save(state)


@case
def bridge(build):
    central = Broker()
    site = None
    try:
        central.start()
        site = Broker(extra=[
            "connection central",
            "address 127.0.0.1:%d" % central.port,
            "topic SRUP/# both 1",
            "cleansession false",
            "local_clientid srup-site-bridge-local",
            "remote_clientid srup-site-bridge-%d" % os.getpid(),
            "try_private true",
            "restart_timeout 1 5",
        ])
        site.start()
        # The observer lists the central broker after its own: if the site
        # broker dies it talks to the C2's directly.
        observer = "%s %s" % (site.url, central.url)
        with JoinBed(build, brokers={"observer": observer, "peer": central.url,
                                     "device": central.url}) as bed:
            bed.start()
            observed_join(bed, "through the bridge")
            dev, value = start_pending_join(bed)
            peer_mark = bed.peer.mark()
            central.stop()
            # Decided while the central broker is away: the RESPONSE waits
            # in the site broker's bridge queue.
            check(present_retry(bed, value) == VALID, "the value was not matched", bed)
            central.restart()
            o = bed.outcome(90, peer_mark)
            check(o["observer_status"] == "0x60" and o["status"] == "0x50", "peer saw %r" % o, bed)
            check(dev.wait(90) == 0 and "JOIN_SUCCESS" in dev.text(),
                  "device did not hear JOIN_SUCCESS:\n%s" % dev.text(), bed)
            central_mark = log_size(central)
            site.kill()
            wait_client_on(central, bed.observer_id, central_mark, bed)
            observed_join(bed, "with the site broker gone")
            # The site broker back and the central one killed: the observer
            # goes back to the first entry of its list, not stuck on the
            # last; with the central broker back, joins cross the bridge.
            site.restart()
            site_mark = log_size(site)
            central.kill()
            wait_client_on(site, bed.observer_id, site_mark, bed)
            central.restart()
            observed_join(bed, "through the bridge again")
    finally:
        central.close()
        if site:
            site.close()


if __name__ == "__main__":
    sys.exit(cases.main(sys.argv))
