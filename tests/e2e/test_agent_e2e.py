"""The real `opengslb agent` process against the real server (SPEC §8).

The agent registers its backend, keeps the registration alive with
heartbeats carrying its local check's claim, rides out a server restart and
an endpoint that refuses connections, and deregisters on SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from tests.e2e.harness import LOAD_SLACK, REPO, HTTPBackend, child_env, free_port, stop_process, wait_until
from tests.e2e.test_runtime_e2e import TOKEN, answers, config_text, restart, start

pytestmark = pytest.mark.e2e


class AgentProcess:
    """``python -m opengslb agent --config FILE`` with its output kept in a file."""

    def __init__(self, directory: Path, text: str) -> None:
        self.config = directory / "agent.yaml"
        self.config.write_text(text)
        os.chmod(self.config, 0o600)
        self.log_path = directory / "agent.log"
        self.process: Optional[subprocess.Popen] = None

    def start(self) -> "AgentProcess":
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "opengslb", "agent", "--config", str(self.config)],
            stdout=self._log, stderr=subprocess.STDOUT, env=child_env(), cwd=str(REPO))
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 10) -> int:
        if self.process is None:
            return 0
        code = stop_process(self.process, signum, timeout)
        self._log.close()
        self.process = None
        return code


@pytest.fixture
def agents(tmp_path):
    started: List[AgentProcess] = []

    def make(text: str) -> AgentProcess:
        directory = tmp_path / f"agent{len(started)}"
        directory.mkdir()
        agent = AgentProcess(directory, text)
        started.append(agent)
        return agent.start()

    yield make
    for agent in started:
        agent.stop(signal.SIGKILL)


def agent_text(endpoints: List[str], backend: HTTPBackend, ttl: str = "3s") -> str:
    quoted = ", ".join(f'"{e}"' for e in endpoints)
    return f"""
api:
  endpoints: [{quoted}]
  token: "{TOKEN}"
name: e2e-agent
heartbeat_interval: 500ms
services:
  - region: r1
    address: {backend.host}
    port: {backend.port}
    weight: 100
    ttl: {ttl}
    check: {{type: http, path: /health, interval: 300ms, timeout: 250ms,
             failure_threshold: 1, success_threshold: 1}}
logging: {{level: info, format: json}}
"""


def services(api: Any) -> List[Dict[str, Any]]:
    status, body = api.call("GET", "/api/v1/services")
    assert status == 200
    return body["services"]


def test_agent_registers_keeps_alive_follows_its_check_and_deregisters(gslb_factory, backends, agents):
    """Registered with its claim, alive past several ttls and a server restart, out on SIGTERM."""
    configured = backends(HTTPBackend("127.0.0.91"))
    service = backends(HTTPBackend("127.0.0.92"))
    port = free_port()
    node, api = start(gslb_factory, config_text(port, [(configured.host, configured.port)]), port)
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: the agent must move on
    agent = agents(agent_text([dead, f"http://127.0.0.1:{port}"], service))

    def registered() -> Optional[Dict[str, Any]]:
        found = [s for s in services(api) if s["address"] == service.host]
        return found[0] if found else None

    first = wait_until(registered, 10, message=f"agent registered\n{agent.log()}")
    assert (first["claim"], first["agent"], first["port"], first["ttl"]) == (
        True, "e2e-agent", service.port, 3.0)
    wait_until(lambda: answers(node) == {configured.host, service.host}, 2, message="served")

    time.sleep(7)  # more than two ttls: heartbeats keep it
    assert registered()["id"] == first["id"]
    assert agent.process is not None and agent.process.poll() is None

    service.status = 503  # its own check fails: the agent claims unhealthy
    wait_until(lambda: registered()["claim"] is False, 3, message="claim unhealthy")
    assert answers(node, count=20) == {configured.host}
    service.status = 200
    wait_until(lambda: registered()["claim"] is True, 3, message="claim healthy again")

    restart(node, api, kill=True)  # the server goes away for a moment and comes back
    time.sleep(4)  # more than a ttl after the restart: still registered, same id
    assert registered()["id"] == first["id"], agent.log()
    wait_until(lambda: answers(node) == {configured.host, service.host}, 2, message="served")

    began = time.monotonic()
    assert agent.stop(signal.SIGTERM) == 0
    assert time.monotonic() - began < 3 + LOAD_SLACK
    assert registered() is None, agent.log()
    assert answers(node, count=20) == {configured.host}
    assert '"event": "agent_deregistered"' in agent.log()


def test_agent_re_registers_after_its_registration_expired(gslb_factory, backends, agents):
    """When the registration is gone (expired or removed), the agent's next heartbeat registers again."""
    service = backends(HTTPBackend("127.0.0.93"))
    other = backends(HTTPBackend("127.0.0.94"))
    port = free_port()
    _, api = start(gslb_factory, config_text(port, [(other.host, other.port)]), port)
    agent = agents(agent_text([f"http://127.0.0.1:{port}"], service))
    wait_until(lambda: [s["id"] for s in services(api)], 10, message=f"registered\n{agent.log()}")
    (old,) = [s["id"] for s in services(api)]
    assert api.call("DELETE", f"/api/v1/services/{old}")[0] == 200
    new = wait_until(lambda: [s["id"] for s in services(api) if s["id"] != old], 3,
                     message="registered again")
    assert len(new) == 1
    assert agent.stop() == 0
    assert services(api) == []


def test_agent_keeps_its_registration_across_a_leader_kill(tmp_path, agents):
    """In a 3-node cluster the agent (talking to every node's API) keeps its registration, with the
    same id, after the leader is killed: it moves to the other endpoints and the new leader keeps it."""
    from tests.e2e.cluster import TOKEN as CLUSTER_TOKEN
    from tests.e2e.cluster import Cluster

    configured = HTTPBackend("127.0.20.1")
    service = HTTPBackend("127.0.20.2")
    cluster = Cluster(tmp_path / "cluster", 3, configured.host, configured.port, subnet="127.0.21")
    cluster.base.mkdir()
    try:
        cluster.bootstrap()
        leader = cluster.wait_leader()
        endpoints = [f"http://{leader}:{cluster.api_port}"] + [
            f"http://{h}:{cluster.api_port}" for h in cluster.hosts if h != leader]
        agent = agents(agent_text(endpoints, service, ttl="4s").replace(TOKEN, CLUSTER_TOKEN))

        def registered(host: str) -> Optional[Dict[str, Any]]:
            status = cluster.status(host)
            if status is None:
                return None
            found = [s for s in cluster.api(host, "/api/v1/services")[1]["services"]
                     if s["address"] == service.host]
            return found[0] if found else None

        first = wait_until(lambda: registered(leader), 10, message=f"agent registered\n{agent.log()}")
        cluster.kill(leader)
        others = [h for h in cluster.hosts if h != leader]
        new_leader = cluster.wait_leader(others, timeout=5)
        time.sleep(6)  # more than a ttl after the leader change: heartbeats reached the new leader
        kept = registered(new_leader)
        assert kept is not None and kept["id"] == first["id"], agent.log()
        wait_until(lambda: service.host in {cluster.nodes[new_leader].address("app.cluster.test")
                                            for _ in range(8)}, 3, message="registered server served")
    finally:
        cluster.stop_all()
        configured.stop()
        service.stop()
