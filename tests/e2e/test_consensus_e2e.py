"""Distributed health: verdict gossip and consensus across 3 real nodes (SPEC §7.5)."""

import os
import socket
import time

import pytest

from tests.e2e.cluster import Cluster
from tests.e2e.harness import LOAD_SLACK, HTTPBackend, wait_until
from tests.e2e.test_cluster_e2e import scrape

pytestmark = pytest.mark.e2e


@pytest.fixture
def two_backends():
    made = [HTTPBackend("127.0.13.1"), HTTPBackend("127.0.13.2")]
    yield made
    for backend in made:
        backend.stop()


def start(tmp_path, backends, consensus, subnet):
    cluster = Cluster(tmp_path / consensus, 3, backends[0].host, backends[0].port, subnet=subnet,
                      health_consensus=consensus, extra_backends=[(backends[1].host, backends[1].port)])
    cluster.base.mkdir()
    cluster.bootstrap()
    return cluster


def answered(cluster, leader, n=8):
    return {cluster.nodes[leader].address("app.cluster.test") for _ in range(n)}


@pytest.mark.parametrize("consensus,stays", [("majority", True), ("all", False)])
def test_backend_unreachable_from_one_node(tmp_path, two_backends, consensus, stays):
    """A backend failing only one node's checks stays in answers under majority, leaves under all."""
    subnet = "127.0.14" if consensus == "majority" else "127.0.15"
    cluster = start(tmp_path, two_backends, consensus, subnet)
    try:
        leader = cluster.wait_leader()
        flaky = two_backends[0]
        wait_until(lambda: answered(cluster, leader) == {b.host for b in two_backends}, 10)
        # One follower's checks (from its own 127.0.x.y) fail; the other two nodes still pass.
        follower = [h for h in cluster.hosts if h != leader][0]
        flaky.refuse_from = {follower}

        def follower_verdict() -> object:
            status = cluster.api(leader, "/api/v1/health/servers")[1]
            entry = next(s for s in status["servers"] if s["address"] == flaky.host)
            return entry["node_verdicts"].get(cluster.address(follower))

        # failure_threshold × interval + gossip: the leader hears the follower's verdict.
        wait_until(lambda: follower_verdict() is False, 4 + LOAD_SLACK, message="the follower's verdict")
        if not stays:
            wait_until(lambda: flaky.host not in answered(cluster, leader, 12), 2 + LOAD_SLACK,
                       message="out of answers")
        result = answered(cluster, leader, 12)
        assert (flaky.host in result) is stays, result
    finally:
        cluster.stop_all()


def test_stopped_backend_leaves_answers_whichever_node_checks(tmp_path, two_backends):
    """A stopped backend leaves answers within interval × failure_threshold + 1 s."""
    cluster = start(tmp_path, two_backends, "majority", "127.0.16")
    try:
        leader = cluster.wait_leader()
        wait_until(lambda: answered(cluster, leader) == {b.host for b in two_backends}, 10)
        two_backends[0].stop()
        stopped = time.monotonic()
        wait_until(lambda: answered(cluster, leader, 6) == {two_backends[1].host}, 6 + LOAD_SLACK,
                   interval=0.05)
        assert time.monotonic() - stopped <= 1 * 2 + 1 + 0.5 + LOAD_SLACK
    finally:
        cluster.stop_all()


def test_bad_gossip_packets_are_dropped_and_counted(tmp_path, two_backends):
    """Garbage, tampered and wrong-key datagrams on the cluster port are dropped and counted."""
    cluster = start(tmp_path, two_backends, "majority", "127.0.17")
    try:
        leader = cluster.wait_leader()
        target = (leader, cluster.cluster_port)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.sendto(b"\x00junk", target)  # malformed
        sock.sendto(b"\x01" + os.urandom(12) + os.urandom(64), target)  # wrong key / tampered
        sock.close()
        wait_until(lambda: scrape(cluster, leader).get(
            ("opengslb_gossip_packets_dropped_total", (("reason", "auth"),)), 0) >= 1, 5)
        metrics = scrape(cluster, leader)
        assert metrics[("opengslb_gossip_packets_dropped_total", (("reason", "malformed"),))] >= 1
        # The cluster still answers with data (from whichever node leads now: leadership may move).
        assert cluster.answers(cluster.wait_leader()) == "data"
    finally:
        cluster.stop_all()
