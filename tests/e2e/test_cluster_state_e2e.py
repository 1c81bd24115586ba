"""Replicated runtime state in a real 3-node cluster: writes through any node, durability."""

import signal

import pytest

from tests.e2e.cluster import Cluster
from tests.e2e.harness import HTTPBackend, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def backends():
    made = [HTTPBackend("127.0.18.1"), HTTPBackend("127.0.18.2")]
    yield made
    for backend in made:
        backend.stop()


def test_overrides_and_registrations_replicate_and_survive_full_restart(tmp_path, backends):
    """An override written through a follower is committed, served by the leader, and with a
    registration survives kill -9 of every node and a full restart (2 trials)."""
    cluster = Cluster(tmp_path / "c", 3, backends[0].host, backends[0].port, subnet="127.0.19",
                      extra_backends=[(backends[1].host, backends[1].port)])
    cluster.base.mkdir()
    try:
        cluster.bootstrap()
        for trial in range(2):
            leader = cluster.wait_leader(timeout=15)
            follower = [h for h in cluster.hosts if h != leader][0]
            weight = 10 + trial
            code, body = cluster.api(follower, f"/api/v1/overrides/r1/{backends[0].host}", "PUT",
                                     {"weight": weight, "reason": f"trial {trial}"}, timeout=10)
            assert code == 200, body
            code, body = cluster.api(leader, "/api/v1/services", "POST",
                                     {"region": "r1", "address": f"127.0.18.{50 + trial}", "port": 80,
                                      "ttl": "1h", "healthy": True}, timeout=10)
            assert code in (200, 201), body
            for host in cluster.hosts:
                cluster.kill(host, signal.SIGKILL)
            for host in cluster.hosts:
                cluster.start(host)  # from the data dir: no --bootstrap, no --join
            leader = cluster.wait_leader(timeout=20)
            overrides = wait_until(lambda leader=leader: cluster.api(leader, "/api/v1/overrides")[1]["overrides"], 10)
            assert [(o["address"], o["weight"]) for o in overrides] == [(backends[0].host, weight)]
            services = cluster.api(leader, "/api/v1/services")[1]["services"]
            assert {s["address"] for s in services} >= {f"127.0.18.{50 + t}" for t in range(trial + 1)}
    finally:
        cluster.stop_all()
