"""Predictive bleed and overwatch veto in the real `twistd -n opengslb` process (SPEC §7.6, §7.7).

Standalone mode behaves as a one-node cluster for these (SPEC §7.7), so a
single process is enough: an agent-registered server (registered and
heartbeated through the API the way ``opengslb agent`` does) next to a
configured one, measured by the share of real DNS answers.

Needs the service wiring of :class:`opengslb.cluster.overwatch.Overwatch`
(built next to the Runtime, started after it, stopped before it) and
``Metrics.runtime`` / ``Metrics.overwatch``.
"""

from __future__ import annotations

import time
import urllib.request
from typing import Any, Dict, List, Optional, Tuple

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.cluster import Cluster
from tests.e2e.harness import LOAD_SLACK, HTTPBackend, free_port, wait_until
from tests.e2e.test_runtime_e2e import API, TOKEN

pytestmark = pytest.mark.e2e

NAME = "app.example.test"
BLEED = 3.0  # seconds: cluster.predictive_health.cpu.bleed_duration


def config_text(api_port: int, metrics_port: int, configured: HTTPBackend, *,
                mode: str = "balanced", interval: str = "10s", threshold: int = 3,
                algorithm: str = "round-robin") -> str:
    return f"""
dns:
  listen_address: "{{DNS}}"
  default_ttl: 5
logging: {{level: info, format: json}}
metrics: {{enabled: true, address: "127.0.0.1:{metrics_port}"}}
api:
  enabled: true
  address: "127.0.0.1:{api_port}"
  tokens: ["{TOKEN}"]
regions:
  - name: r1
    servers:
      - {{address: {configured.host}, port: {configured.port}}}
    health_check: {{type: http, interval: 500ms, timeout: 400ms, path: /health,
                    failure_threshold: 1, success_threshold: 1}}
domains:
  - {{name: {NAME}, routing_algorithm: {algorithm}, regions: [r1]}}
cluster:
  mode: standalone
  raft: {{data_dir: "{{DATA}}"}}
  predictive_health:
    enabled: true
    cpu: {{threshold: 90, bleed_duration: {BLEED:g}s}}
  overwatch: {{external_check_interval: {interval}, veto_mode: {mode}, veto_threshold: {threshold}}}
"""


class Node:
    """One standalone process with its API and metrics ports."""

    def __init__(self, gslb_factory: Any, configured: HTTPBackend, **settings: Any) -> None:
        self.api_port, self.metrics_port = free_port(), free_port()
        self.process = gslb_factory(config_text(self.api_port, self.metrics_port, configured, **settings))
        self.api = API(self.api_port)
        wait_until(self.api.answering, 10, message=f"API\n{self.process.log()}")

    def register(self, backend: HTTPBackend) -> str:
        status, body = self.api.call("POST", "/api/v1/services", {
            "region": "r1", "address": backend.host, "port": backend.port, "ttl": "60s",
            "healthy": True, "agent": "e2e-agent"})
        assert status == 201, body
        return str(body["id"])

    def heartbeat(self, rid: str, signal: Optional[Dict[str, Any]] = None) -> float:
        """Send a heartbeat claiming healthy; returns the monotonic time it was acknowledged."""
        body: Dict[str, Any] = {"healthy": True}
        if signal is not None:
            body["signal"] = signal
        status, reply = self.api.call("PUT", f"/api/v1/services/{rid}/heartbeat", body)
        assert status == 200, reply
        return time.monotonic()

    def answers(self, count: int) -> List[Optional[str]]:
        return [self.process.address(NAME) for _ in range(count)]

    def share(self, host: str, count: int = 40) -> float:
        return self.answers(count).count(host) / count

    def service(self, rid: str) -> Dict[str, Any]:
        services = self.api.call("GET", "/api/v1/services")[1]["services"]
        return next(s for s in services if s["id"] == rid)

    def metric(self, family: str, **labels: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
        for parsed in text_string_to_metric_families(text):
            if parsed.name in (family, family.removesuffix("_total")):
                for sample in parsed.samples:
                    if sample.name == family and sample.labels == labels:
                        return float(sample.value)
        raise AssertionError(f"{family}{labels} not exposed")


def sample_shares(node: Node, host: str, start: float, offsets: Tuple[float, ...]) -> List[float]:
    """The share of ``host`` measured at each offset (seconds after ``start``)."""
    shares = []
    for offset in offsets:
        delay = start + offset - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        shares.append(node.share(host))
    return shares


def test_a_bleed_moves_the_answer_share_away_and_back(gslb_factory, backends):
    """A cpu_high bleed lowers the server's share of answers gradually over bleed_duration to ~5%,
    and a clear brings it back gradually over the same time."""
    configured = backends(HTTPBackend("127.0.0.91"))
    agent = backends(HTTPBackend("127.0.0.92"))
    node = Node(gslb_factory, configured)
    rid = node.register(agent)
    wait_until(lambda: node.share(agent.host, 20) == 0.5, 5, interval=0.05, message="even split")

    # Expected share with round-robin over weights 100·f and 100: f / (1 + f);
    # the cosine ramp gives f ≈ 0.86, 0.53, 0.19, 0.05 at 0.75, 1.5, 2.25 and 3.5 s.
    offsets = (0.75, 1.5, 2.25, BLEED + 0.5)
    acknowledged = node.heartbeat(rid, {"type": "bleed", "reason": "cpu_high", "value": 97.5,
                                        "threshold": 90})
    down = sample_shares(node, agent.host, acknowledged, offsets)
    assert down[0] >= 0.35 and 0.15 < down[1] < 0.45 and down[3] <= 0.1, down
    assert all(b <= a + 0.05 for a, b in zip(down, down[1:])), down
    assert any(0.1 < s < 0.45 for s in down[1:3]), f"no intermediate share: {down}"

    service = node.service(rid)
    assert service["signal"]["phase"] == "drained" and service["signal"]["bleed_factor"] == 0.05
    assert service["signal"]["reason"] == "cpu_high" and service["effective_weight"] == pytest.approx(5.0)
    assert node.metric("opengslb_bleeding_servers") == 1

    acknowledged = node.heartbeat(rid, {"type": "clear"})
    up = sample_shares(node, agent.host, acknowledged, offsets)
    assert up[0] <= 0.2 and 0.15 < up[1] < 0.45 and up[3] >= 0.45, up
    assert all(b >= a - 0.05 for a, b in zip(up, up[1:])), up
    service = node.service(rid)
    assert service["signal"]["phase"] == "restored" and service["effective_weight"] == 100
    assert node.metric("opengslb_bleeding_servers") == 0


@pytest.mark.parametrize("mode", ["strict", "balanced", "permissive"])
def test_overwatch_veto_modes_for_an_agent_claiming_healthy_for_a_dead_backend(gslb_factory, backends, mode):
    """The agent keeps claiming healthy after its backend died: strict takes it out within about one
    external_check_interval, balanced after veto_threshold intervals, permissive keeps serving it
    and counts the disagreements.  A veto lifts once the backend answers the leader again."""
    configured = backends(HTTPBackend("127.0.0.93"))
    agent = backends(HTTPBackend("127.0.0.94"))
    node = Node(gslb_factory, configured, mode=mode, interval="1s", threshold=3)
    rid = node.register(agent)
    wait_until(lambda: set(node.answers(10)) == {configured.host, agent.host}, 5, interval=0.05,
               message="both answered")

    agent.stop()
    died = time.monotonic()
    if mode == "permissive":
        time.sleep(4.0)
        assert agent.host in node.answers(10)
        assert node.service(rid)["veto"] is None
        assert node.metric("opengslb_overwatch_disagreements_total", mode="permissive") >= 3
        assert node.metric("opengslb_vetoes_active") == 0
        return

    gone = lambda: agent.host not in node.answers(10)  # noqa: E731
    if mode == "balanced":
        time.sleep(1.5)  # at most two checks have failed since: no veto yet
        assert agent.host in node.answers(10)
    wait_until(gone, (2.5 if mode == "strict" else 3.5) + LOAD_SLACK, interval=0.05,
               message=f"{mode}: out of answers")
    took = time.monotonic() - died
    assert took <= (2.5 if mode == "strict" else 4.5) + LOAD_SLACK
    if mode == "balanced":
        assert took >= 2.0  # three consecutive failures of 1 s-apart checks
    veto = node.service(rid)["veto"]
    assert veto is not None and mode in veto["reason"] and veto["since"] is not None
    assert node.service(rid)["healthy"] is False and node.service(rid)["claim"] is True
    assert node.metric("opengslb_vetoes_active") == 1
    assert node.metric("opengslb_overwatch_disagreements_total", mode=mode) >= (1 if mode == "strict" else 3)
    assert '"overwatch_veto"' in node.process.log()

    agent.start()  # the same port again: the leader's next check passes, the veto lifts
    wait_until(lambda: agent.host in node.answers(10), 2.5, interval=0.05, message="veto lifted")
    assert node.service(rid)["veto"] is None
    assert node.metric("opengslb_vetoes_active") == 0


def test_three_node_cluster_replicates_the_veto_and_the_bleed(tmp_path, backends):
    """In a 3-node cluster the leader vetoes (strict) an agent-claimed server whose backend died; the
    veto is replicated to every node and lifts when the backend is back.  A bleed signal sent to a
    follower drains the server in the leader's answers, and every node reports the same ramp."""
    configured = backends(HTTPBackend("127.0.33.1"))
    agent = backends(HTTPBackend("127.0.33.2"))
    base = tmp_path / "c"
    base.mkdir()
    cluster = Cluster(base, 3, configured.host, configured.port, subnet="127.0.34",
                      cluster_extra="  overwatch: {external_check_interval: 1s, veto_mode: strict}\n"
                                    "  predictive_health: {enabled: true, cpu: {threshold: 90, "
                                    "bleed_duration: 2s}}")
    try:
        cluster.bootstrap()
        leader = cluster.wait_leader()
        follower = next(h for h in cluster.hosts if h != leader)
        status, body = cluster.api(follower, "/api/v1/services", "POST", {
            "region": "r1", "address": agent.host, "port": agent.port, "ttl": "60s", "healthy": True,
            "agent": "e2e-agent"})
        assert status == 201, body
        rid = body["id"]

        def leader_answers() -> set:
            return {cluster.nodes[leader].address("app.cluster.test") for _ in range(10)}

        def services(host: str) -> Dict[str, Any]:
            return next(s for s in cluster.api(host, "/api/v1/services")[1]["services"] if s["id"] == rid)

        wait_until(lambda: leader_answers() == {configured.host, agent.host}, 5, interval=0.05,
                   message="both answered by the leader")
        agent.stop()
        wait_until(lambda: agent.host not in leader_answers(), 3.0 + LOAD_SLACK, interval=0.05,
                   message="vetoed")
        for host in cluster.hosts:
            wait_until(lambda h=host: services(h)["veto"] is not None, 2.0, message=f"veto on {host}")
            assert "strict" in services(host)["veto"]["reason"]
        agent.start()
        wait_until(lambda: agent.host in leader_answers(), 3.0 + LOAD_SLACK, interval=0.05,
                   message="veto lifted")
        for host in cluster.hosts:
            wait_until(lambda h=host: services(h)["veto"] is None, 2.0, message=f"lifted on {host}")

        status, body = cluster.api(follower, f"/api/v1/services/{rid}/heartbeat", "PUT", {
            "healthy": True, "signal": {"type": "bleed", "reason": "cpu_high", "value": 99, "threshold": 90}})
        assert status == 200, body
        wait_until(lambda: all((services(h)["signal"] or {}).get("phase") == "drained" for h in cluster.hosts),
                   2.5 + LOAD_SLACK, message="drained on every node")
        answers = [cluster.nodes[leader].address("app.cluster.test") for _ in range(40)]
        assert answers.count(agent.host) / len(answers) <= 0.1, answers
        for host in cluster.hosts:
            signal = services(host)["signal"]
            assert (signal["reason"], signal["phase"], signal["bleed_factor"]) == ("cpu_high", "drained", 0.05)
    finally:
        cluster.stop_all()
