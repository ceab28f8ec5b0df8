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

cases = Cases()
case = cases.case

VALID = 0x60  # the observer's verdict in the frame result
MOVE_TIMEOUT = 20  # a lost connection is seen at once on loopback; backoff adds a little


def printed_value(proc):
    _, m = proc.wait_line(r"confirmation value: ([0-9a-f]+)", 30)
    return bytes.fromhex(m.group(1))


def wait_connected(proc, url, start, timeout=MOVE_TIMEOUT):
    """The party's log names url as the broker it is now connected to."""
    return proc.wait_line(r"connected to %s(\s|$|\))" % re.escape(url), timeout, start)


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
            bed.start()
            wait_connected(bed.observer, a.url, 0)
            wait_connected(bed.peer, a.url, 0)
            observed_join(bed, "on the first broker")
            dev, value = start_pending_join(bed)
            wait_connected(dev, a.url, 0)
            marks = {p: p.mark() for p in (bed.observer, bed.peer)}
            a.kill()
            for proc, mark in marks.items():
                wait_connected(proc, b.url, mark)
            wait_connected(dev, b.url, 0)
            # The pending join's messages may have died with the first
            # broker; the device gives up on its own. A new one succeeds.
            dev.stop()
            observed_join(bed, "on the second broker")
            # A healthy session stays where it is: the first one back does
            # not pull anyone off the second.
            a.restart()
            marks = {p: p.mark() for p in (bed.observer, bed.peer)}
            observed_join(bed, "with both brokers up")
            for proc, mark in marks.items():
                check(proc.count(r"connected to %s" % re.escape(a.url)) == 1,
                      "%s left a healthy session for the first broker" % proc.name, bed)
            b.kill()
            for proc, mark in marks.items():
                wait_connected(proc, a.url, mark)
            observed_join(bed, "back on the first broker")
    finally:
        a.close()
        b.close()


def inbound_records(state_dir):
    d = os.path.join(state_dir, "inbound")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


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
            wait_connected(bed.observer, cluster.mqtt_url(0), 0)
            wait_connected(bed.peer, cluster.mqtt_url(1), 0)
            observed_join(bed, "through the cluster")
            dev, value = start_pending_join(bed)
            obs_mark = bed.observer.mark()
            peer_mark = bed.peer.mark()
            cluster.kill_node(0)
            _, m = bed.observer.wait_line(r"connected to (%s|%s)(\s|$|\))" % (
                re.escape(cluster.mqtt_url(1)), re.escape(cluster.mqtt_url(2))),
                MOVE_TIMEOUT + 30, obs_mark)
            check(present_retry(bed, value) == VALID, "the value was not matched", bed)
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
            bed.stop_observer()
            left = inbound_records(bed.path("observer-state"))
            check(left == [], "observer inbound records left: %r" % left, bed)
    finally:
        if own:
            cluster.stop()
        else:
            cluster.restart_node(0)  # the next user of the fixture finds three nodes
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
            mark = bed.observer.mark()
            site.kill()
            wait_connected(bed.observer, central.url, mark)
            observed_join(bed, "with the site broker gone")
    finally:
        central.close()
        if site:
            site.close()


if __name__ == "__main__":
    sys.exit(cases.main(sys.argv))
