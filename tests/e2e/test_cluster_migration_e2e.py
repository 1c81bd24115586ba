"""Migration between the modes with real processes (docs/cluster.md, Migration; issue 13 item 4).

Standalone → cluster: ``--mode cluster --bootstrap`` on a standalone data
directory imports its runtime state.  Cluster → standalone: ``--mode
standalone`` on a cluster data directory takes the last committed state.
"""

import json
import signal
import time

import pytest

from tests.e2e.cluster import Cluster
from tests.e2e.harness import HTTPBackend, OpenGSLB, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def backends():
    made = [HTTPBackend("127.0.26.1"), HTTPBackend("127.0.26.2")]
    yield made
    for backend in made:
        backend.stop()


def _overrides(cluster: Cluster, host: str) -> dict:
    code, body = cluster.api(host, "/api/v1/overrides")
    assert code == 200, body
    return {o["address"]: o["weight"] for o in body["overrides"]}


def _events(node: OpenGSLB, event: str) -> list:
    found = []
    for line in node.log().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == event:
            found.append(record)
    return found


def _run(cluster: Cluster, host: str, args: list) -> OpenGSLB:
    """(Re)start ``host`` with exactly ``args`` (mode and start flags)."""
    node = cluster.nodes.get(host)
    if node is None:
        directory = cluster.base / host
        directory.mkdir(exist_ok=True)
        node = OpenGSLB(directory, cluster.config(host), dns_host=host, dns_port=cluster.dns_port)
        cluster.nodes[host] = node
    node.extra_args = list(args)
    node.start(wait=False)
    return node


def _stop(cluster: Cluster, host: str) -> None:
    node = cluster.nodes[host]
    since = time.monotonic()
    node.signal(signal.SIGTERM)
    code, elapsed = cluster.wait_exit(host, since, 10)
    assert code == 0 and elapsed < 5, (code, elapsed, node.log()[-3000:])


def test_override_survives_standalone_to_cluster_and_back(tmp_path, backends):
    """An override set in standalone is imported by --bootstrap (logged with counts), replicated to
    joiners; an override set in the cluster is kept when the node restarts as standalone."""
    (b1, b2) = backends
    cluster = Cluster(tmp_path / "c", 3, b1.host, b1.port, subnet="127.0.27",
                      extra_backends=[(b2.host, b2.port)])
    cluster.base.mkdir()
    first = cluster.hosts[0]
    try:
        # 1. standalone, with an override
        node = _run(cluster, first, ["--mode", "standalone"])
        node.wait_answering()
        code, body = cluster.api(first, f"/api/v1/overrides/r1/{b1.host}", "PUT",
                                 {"weight": 7, "reason": "set in standalone"})
        assert code == 200, body
        _stop(cluster, first)
        data = node.directory / "data"
        assert (data / "state.json").exists()

        # 2. the same data directory bootstraps a cluster: the override is imported
        _run(cluster, first, ["--mode", "cluster", "--bootstrap"])
        assert cluster.wait_leader([first], timeout=15) == first
        wait_until(lambda: _overrides(cluster, first) == {b1.host: 7}, 10)
        imported = _events(node, "migrated_from_standalone")
        assert len(imported) == 1, node.log()[-3000:]
        assert (imported[0]["overrides"], imported[0]["registrations"]) == (1, 0)
        assert not (data / "state.json").exists() and (data / "standalone-imported.json").exists()
        for host in cluster.hosts[1:]:
            _run(cluster, host, ["--mode", "cluster", "--join", cluster.address(first)])
        cluster.wait_members(3, [first])
        for host in cluster.hosts[1:]:
            wait_until(lambda host=host: _overrides(cluster, host) == {b1.host: 7}, 15)

        # 3. a write in the cluster, then back to standalone on the first node's data directory
        leader = cluster.wait_leader(timeout=15)
        code, body = cluster.api(leader, f"/api/v1/overrides/r1/{b2.host}", "PUT",
                                 {"weight": 9, "reason": "set in the cluster"}, timeout=10)
        assert code == 200, body
        wait_until(lambda: _overrides(cluster, first) == {b1.host: 7, b2.host: 9}, 10)
        for host in [h for h in cluster.hosts if h != leader] + [leader]:
            _stop(cluster, host)
        _run(cluster, first, ["--mode", "standalone"]).wait_answering()
        assert _overrides(cluster, first) == {b1.host: 7, b2.host: 9}
        adopted = _events(node, "migrated_from_cluster")
        assert len(adopted) == 1 and adopted[0]["overrides"] == 2, node.log()[-3000:]
        assert not (data / "members.json").exists() and list(data.glob("cluster-*/raft.journal"))

        # 4. a standalone restart keeps that state and does not import anything again
        _stop(cluster, first)
        _run(cluster, first, ["--mode", "standalone"]).wait_answering()
        assert _overrides(cluster, first) == {b1.host: 7, b2.host: 9}
        assert len(_events(node, "migrated_from_cluster")) == 1
    finally:
        cluster.stop_all()
