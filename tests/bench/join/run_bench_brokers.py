#!/usr/bin/env python3
"""Observed joins beyond one broker, in one run (figures only, no assertions):

  one Mosquitto        peer, observer and device on one broker
  RabbitMQ cluster     three nodes (quorum queues); observer on node 1, peer
                       and device on node 2 (each lists all three)
  bridged site broker  observer on a site Mosquitto bridged (SRUP/# both
                       ways, QoS 1) to a central one with peer and device

For each: observed-join p50/p99 (srup-bench-join latency), then the time
from a broker's death (SIGKILL: the first Mosquitto of two, RabbitMQ node 1,
the site broker) to the first successful observed join after it.

usage: run_bench_brokers.py BUILD_DIR [JOINS]
With SRUP_RABBIT_CLUSTER naming a formed cluster (tests/lib/rabbit_cluster.py)
it is used; otherwise one is formed (25-90 s) and stopped at the end.
"""
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "lib"))
from joinbed import JoinBed, id16  # noqa: E402
from rabbit_cluster import RabbitCluster  # noqa: E402
from srup_testlib import Broker  # noqa: E402


def latency(bench, bed, joins):
    out = subprocess.run([bench, "latency", "--config", bed.device_config, "--observer",
                          id16(bed.observer_id), "--joins", str(joins)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         timeout=60 + joins * 5)
    m = re.search(r"p50 ([0-9.]+) ms\s+p90 ([0-9.]+) ms\s+p99 ([0-9.]+) ms", out.stdout)
    if out.returncode != 0 or not m:
        print(out.stdout)
        return None
    return float(m.group(1)), float(m.group(3))


JOIN_ATTEMPT_S = 2  # a join takes tens of ms; one started too early is lost


def first_join_after(bed, killed_at, bound=120):
    """Seconds from killed_at to the end of the first successful join, and
    how many joins were tried. A join started before the observer is on its
    next broker loses its OBSERVE_REQ with the dead one and runs out its
    JOIN_ATTEMPT_S: the figure is the failover plus whole failed attempts."""
    tries = 0
    while time.monotonic() - killed_at < bound:
        tries += 1
        rc, _ = bed.join(timeout=JOIN_ATTEMPT_S)
        if rc == 0:
            return time.monotonic() - killed_at, tries
    return None


def report(name, lat, failover):
    lat_text = "p50 %7.2f ms  p99 %7.2f ms" % lat if lat else "latency run failed"
    fo_text = ("%.2f s (join %d)" % failover if failover is not None
               else "no join within the bound")
    print("%-22s %s   broker death -> first join: %s" % (name, lat_text, fo_text), flush=True)
    return lat


def main():
    build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
    joins = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    bench = os.path.join(build, "tests", "bench", "join", "srup-bench-join")
    rows = {}

    # One Mosquitto (its failover: a second listed Mosquitto).
    a, b = Broker(), Broker()
    try:
        a.start()
        b.start()
        both = "%s %s" % (a.url, b.url)
        with JoinBed(build, window_seconds=600,
                     brokers={"observer": both, "peer": both, "device": both}) as bed:
            bed.start()
            lat = latency(bench, bed, joins)
            t = time.monotonic()
            a.kill()
            rows["one Mosquitto"] = report("one Mosquitto (+2nd)", lat, first_join_after(bed, t))
    finally:
        a.close()
        b.close()

    state = os.environ.get("SRUP_RABBIT_CLUSTER")
    own = not (state and os.path.exists(state))
    cluster = RabbitCluster().form() if own else RabbitCluster.attach(state)
    try:
        node2_first = cluster.urls([1, 2, 0])
        with JoinBed(build, window_seconds=600,
                     brokers={"observer": cluster.urls([0, 1, 2]), "peer": node2_first,
                              "device": node2_first}) as bed:
            bed.start()
            lat = latency(bench, bed, joins)
            t = time.monotonic()
            cluster.kill_node(0)
            rows["RabbitMQ"] = report("RabbitMQ cluster (3)", lat, first_join_after(bed, t))
    finally:
        if own:
            cluster.stop()
        else:
            cluster.restart_node(0)
            cluster.save(state)

    central, site = Broker(), None
    try:
        central.start()
        site = Broker(extra=["connection central", "address 127.0.0.1:%d" % central.port,
                             "topic SRUP/# both 1", "cleansession false",
                             "remote_clientid srup-bench-bridge-%d" % os.getpid(),
                             "try_private true", "restart_timeout 1 5"])
        site.start()
        with JoinBed(build, window_seconds=600,
                     brokers={"observer": "%s %s" % (site.url, central.url),
                              "peer": central.url, "device": central.url}) as bed:
            bed.start()
            lat = latency(bench, bed, joins)
            t = time.monotonic()
            site.kill()
            rows["bridge"] = report("bridged site broker", lat, first_join_after(bed, t))
    finally:
        central.close()
        if site:
            site.close()

    base = rows.get("one Mosquitto")
    if base:
        for k in ("RabbitMQ", "bridge"):
            if rows.get(k):
                print("%-22s p50 %.2fx, p99 %.2fx one Mosquitto" % (k, rows[k][0] / base[0],
                                                                    rows[k][1] / base[1]))
    return 0 if all(rows.get(k) for k in ("one Mosquitto", "RabbitMQ", "bridge")) else 1


if __name__ == "__main__":
    sys.exit(main())
