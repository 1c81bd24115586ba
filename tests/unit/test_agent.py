"""The backend agent (SPEC §8) against the real API and runtime, in memory.

The agent's treq client is a StubTreq over the API resource (hosts a.test,
b.test, ... are cluster endpoints; some can be made to refuse connections or
answer 503), and everything runs on one ``task.Clock``: the agent's loops,
the runtime's expiry loop and the health checks.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Set
from urllib.parse import urlsplit

from treq.testing import StubTreq
from twisted.internet.defer import Deferred, fail, succeed
from twisted.web.resource import IResource
from zope.interface import implementer

from opengslb.agent import Agent, APIUnavailable, ClusterClient
from opengslb.config.agent import AgentAPIConfig, AgentConfig, AgentServiceConfig
from opengslb.config.model import HealthCheckConfig, ServerConfig
from opengslb.health.checks import CheckFailed
from tests.unit.test_api import TOKEN, RuntimeWorld

CHECK = HealthCheckConfig(type="tcp", interval=2.0, timeout=1.0, failure_threshold=2,
                          success_threshold=1)


@implementer(IResource)
class Endpoints:
    """Serves the API for every host, except hosts told to answer 503."""

    isLeaf = True

    def __init__(self, api: IResource) -> None:
        self.api = api
        self.unavailable: Set[str] = set()
        self.seen: List[str] = []

    def render(self, request: Any) -> Any:
        host = request.getRequestHostname().decode()
        self.seen.append(host)
        if host in self.unavailable:
            request.setResponseCode(503)
            request.setHeader(b"content-type", b"application/json")
            return b'{"error": "no leader", "code": 503}'
        return self.api.render(request)

    def getChildWithDefault(self, name: bytes, request: Any) -> IResource:
        raise NotImplementedError

    def putChild(self, path: bytes, child: IResource) -> None:
        raise NotImplementedError


class Network:
    """treq over StubTreq; hosts in ``refused`` fail to connect."""

    def __init__(self, endpoints: Endpoints) -> None:
        self.stub = StubTreq(endpoints)
        self.refused: Set[str] = set()

    def request(self, method: str, url: str, **kwargs: Any) -> Deferred:
        if urlsplit(url).hostname in self.refused:
            return fail(ConnectionRefusedError("connection refused"))
        return self.stub.request(method, url, **kwargs)


class LocalCheck:
    """The agent's local check: passes unless ``healthy`` is False."""

    def __init__(self) -> None:
        self.healthy = True
        self.calls = 0

    def check(self, server: ServerConfig, settings: HealthCheckConfig) -> Deferred:
        self.calls += 1
        return succeed(None) if self.healthy else fail(CheckFailed("connection refused"))


class Bench:
    def __init__(self, check: Optional[HealthCheckConfig] = CHECK, ttl: float = 6.0,
                 hosts: tuple = ("a.test", "b.test"), region: str = "east") -> None:
        self.world = RuntimeWorld()
        self.endpoints = Endpoints(self.world.api.resource())
        self.network = Network(self.endpoints)
        self.local = LocalCheck()
        service = AgentServiceConfig(region=region, address="192.0.2.80", port=8080, weight=40,
                                     ttl=ttl, check=check)
        self.config = AgentConfig(api=AgentAPIConfig(tuple(f"http://{h}" for h in hosts), TOKEN),
                                  services=(service,), heartbeat_interval=2.0)
        self.client = ClusterClient(self.world.clock, self.config.api.endpoints, TOKEN,
                                    http=self.network, timeout=1.0)
        self.agent = Agent(self.world.clock, self.config, client=self.client, checker=self.local,
                           name="agent-a")

    def run(self, seconds: float, step: float = 0.5) -> None:
        """Let ``seconds`` pass, delivering HTTP exchanges as they happen."""
        elapsed = 0.0
        while True:
            for _ in range(4):
                self.network.stub.flush()
                self.world.clock.advance(0)
            if elapsed >= seconds:
                return
            self.world.clock.advance(step)
            elapsed += step

    def registrations(self) -> List[Dict[str, Any]]:
        return list(self.world.store.machine.registrations.values())


def test_registers_after_the_first_check_with_its_claim():
    """The agent checks its service, then registers it with the claim and its name."""
    bench = Bench()
    bench.agent.start()
    bench.run(0)
    (registration,) = bench.registrations()
    assert bench.local.calls >= 1
    assert (registration["region"], registration["address"], registration["port"],
            registration["weight"], registration["ttl"], registration["claim"],
            registration["agent"]) == ("east", "192.0.2.80", 8080, 40, 6.0, True, "agent-a")
    assert bench.agent.services[0].id == registration["id"]


def test_heartbeats_keep_the_registration_alive_far_past_its_ttl():
    """With heartbeats every 2s the registration (ttl 6s) lives on for a minute, coarsely replicated."""
    bench = Bench()
    bench.agent.start()
    bench.run(60)
    (registration,) = bench.registrations()
    assert bench.world.store.ops("service.expire") == []
    assert len(bench.world.store.ops("service.heartbeat")) <= 60 / 2  # not one per heartbeat
    assert registration["last_heartbeat"] >= bench.world.clock.seconds() - 6.0


def test_a_failing_local_check_turns_the_claim_unhealthy_at_once():
    """When the local check fails past its threshold, a heartbeat with healthy=false goes out."""
    bench = Bench()
    bench.agent.start()
    bench.run(1)
    bench.local.healthy = False
    bench.run(4.0)  # two failed checks (interval 2s, failure_threshold 2)
    (registration,) = bench.registrations()
    assert registration["claim"] is False
    candidates = bench.world.gslb.view.domains["app.example.test"].candidates
    assert [c.healthy for c in candidates if c.address == "192.0.2.80"] == [False]
    bench.local.healthy = True
    bench.run(2.0)
    assert bench.registrations()[0]["claim"] is True


def test_without_a_check_the_agent_makes_no_claim():
    """A service without a local check registers without a claim (judged by the cluster's checks)."""
    bench = Bench(check=None, ttl=30.0)
    bench.agent.start()
    bench.run(4)
    (registration,) = bench.registrations()
    assert registration["claim"] is None and bench.local.calls == 0
    assert bench.world.store.ops("service.heartbeat") == []


def test_tries_the_next_endpoint_when_one_refuses_or_answers_503():
    """A refused connection or a 503 moves the agent to the next endpoint, which it then keeps."""
    bench = Bench(hosts=("a.test", "b.test", "c.test"))
    bench.network.refused.add("a.test")
    bench.agent.start()
    bench.run(0)
    assert len(bench.registrations()) == 1
    assert bench.client.current == "http://b.test"
    bench.endpoints.unavailable.add("b.test")
    bench.endpoints.seen.clear()
    bench.run(2)
    assert bench.client.current == "http://c.test"
    assert bench.endpoints.seen[:2] == ["b.test", "c.test"]


def test_re_registers_when_the_registration_is_gone():
    """A heartbeat answered 404 (the registration expired or was removed) registers again."""
    bench = Bench()
    bench.agent.start()
    bench.run(0)
    (first,) = bench.registrations()
    bench.world.runtime.deregister(first["id"])
    bench.run(2)
    (second,) = bench.registrations()
    assert second["id"] != first["id"]
    assert bench.agent.services[0].id == second["id"]


def test_survives_every_endpoint_being_down_then_registers():
    """While no endpoint answers, the agent keeps trying; it registers once one is back."""
    bench = Bench()
    bench.network.refused.update({"a.test", "b.test"})
    bench.agent.start()
    bench.run(6)
    assert bench.registrations() == []
    bench.network.refused.clear()
    bench.run(2)
    assert len(bench.registrations()) == 1


def test_a_refused_registration_is_retried_every_heartbeat():
    """A 4xx to the registration (e.g. unknown region) is logged and retried, never fatal."""
    bench = Bench(region="nowhere")
    bench.agent.start()
    bench.run(6)
    assert bench.registrations() == []
    assert len([h for h in bench.endpoints.seen]) >= 3


def test_stop_deregisters():
    """Stopping the agent (SIGTERM) deregisters its service before it fires."""
    bench = Bench()
    bench.agent.start()
    bench.run(3)
    assert len(bench.registrations()) == 1
    stopped = bench.agent.stop()
    bench.run(0)
    assert stopped.called
    assert bench.registrations() == []
    assert len(bench.world.store.ops("service.deregister")) == 1
    bench.run(10)
    assert bench.registrations() == []  # no heartbeat re-registers it


def test_stop_with_every_endpoint_down_still_finishes():
    """When no endpoint answers, stopping still finishes (the registration then expires)."""
    bench = Bench()
    bench.agent.start()
    bench.run(0)
    bench.network.refused.update({"a.test", "b.test"})
    stopped = bench.agent.stop()
    bench.run(0)
    assert stopped.called
    assert len(bench.registrations()) == 1


def test_client_reports_every_endpoints_failure():
    """When every endpoint fails, APIUnavailable names what each did."""
    bench = Bench()
    bench.network.refused.add("a.test")
    bench.endpoints.unavailable.add("b.test")
    d = bench.client.request("GET", "/api/v1/live")
    bench.run(0)
    failures: List[Any] = []
    d.addErrback(failures.append)
    assert failures and failures[0].check(APIUnavailable)
    message = str(failures[0].value)
    assert "http://a.test: connection refused" in message and "http://b.test: no leader" in message
