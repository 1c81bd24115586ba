"""Runtime state in the real `twistd -n opengslb` process (SPEC §6, §9): overrides and registrations.

Needs the service wiring of :class:`opengslb.runtime.Runtime` (service.py
builds ``Runtime(reactor, store, config)``, hands it to the core and to
``GslbAPI(runtime=...)``; the service tree starts it after the core and
stops it before).
"""

from __future__ import annotations

import http.client
import json
import signal
import time
from typing import Any, Dict, List, Optional, Tuple

import pytest

from tests.e2e.harness import LOAD_SLACK, HTTPBackend, free_port, wait_until

pytestmark = pytest.mark.e2e

TOKEN = "runtime-e2e-token-0123456789"


class API:
    """A small blocking JSON client for one process's API."""

    def __init__(self, port: int) -> None:
        self.port = port

    def call(self, method: str, path: str, body: Any = None, token: Optional[str] = TOKEN,
             raw: Optional[bytes] = None) -> Tuple[int, Any]:
        headers: Dict[str, str] = {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        if data is not None:
            headers["Content-Type"] = "application/json"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            assert response.getheader("Content-Type") == "application/json", payload
            return response.status, json.loads(payload)
        finally:
            conn.close()

    def answering(self) -> bool:
        try:
            return self.call("GET", "/api/v1/live")[0] == 200
        except OSError:
            return False


def config_text(api_port: int, servers: List[Tuple[str, int]], extra_domains: str = "",
                check: str = "{type: http, interval: 500ms, timeout: 400ms, path: /health, "
                             "failure_threshold: 1, success_threshold: 1}") -> str:
    lines = "\n".join(f"      - {{address: {host}, port: {port}}}" for host, port in servers)
    return f"""
dns:
  listen_address: "{{DNS}}"
  default_ttl: 5
logging: {{level: info, format: json}}
api:
  enabled: true
  address: "127.0.0.1:{api_port}"
  tokens: ["{TOKEN}"]
regions:
  - name: r1
    servers:
{lines}
    health_check: {check}
domains:
  - {{name: app.example.test, routing_algorithm: round-robin, regions: [r1]}}
{extra_domains}
"""


def start(gslb_factory, text: str, port: int) -> Tuple[Any, API]:
    node = gslb_factory(text)
    api = API(port)
    wait_until(api.answering, 10, message=f"API on {port}\n{node.log()}")
    return node, api


def answers(node: Any, name: str = "app.example.test", count: int = 12) -> set:
    return {node.address(name) for _ in range(count)}


def restart(node: Any, api: API, kill: bool = False) -> None:
    """Stop the process (SIGTERM, or SIGKILL with ``kill``) and start it again on the same files."""
    assert node.process is not None
    if kill:
        node.process.kill()
        node.process.wait()
        node._log.close()
        node.process = None
    else:
        node.stop()
    node.start(wait=False)
    wait_until(api.answering, 10, interval=0.02, message=f"API after restart\n{node.log()}")


def test_override_drains_a_server_within_a_second_and_survives_restarts(gslb_factory, backends):
    """An acknowledged weight-0 override is out of answers within 1 s, and stays after restarts."""
    a = backends(HTTPBackend("127.0.0.71"))
    b = backends(HTTPBackend("127.0.0.72"))
    port = free_port()
    node, api = start(gslb_factory, config_text(port, [(a.host, a.port), (b.host, b.port)]), port)
    wait_until(lambda: answers(node) == {a.host, b.host}, 5, message="both answered")

    status, body = api.call("PUT", f"/api/v1/overrides/r1/{a.host}",
                            {"weight": 0, "reason": "e2e drain"})
    acknowledged = time.monotonic()
    assert status == 200, body
    wait_until(lambda: answers(node, count=20) == {b.host}, 1.0 + LOAD_SLACK, interval=0.02,
               message="drained within 1s")
    assert time.monotonic() - acknowledged < 1.0 + LOAD_SLACK

    servers = {s["address"]: s for s in api.call("GET", "/api/v1/health/servers")[1]["servers"]}
    assert (servers[a.host]["effective_weight"], servers[a.host]["weight_source"]) == (0, "override")

    for kill in (False, True):
        restart(node, api, kill=kill)
        assert answers(node, count=20) == {b.host}
        overrides = api.call("GET", "/api/v1/overrides")[1]["overrides"]
        assert [(o["address"], o["weight"], o["reason"]) for o in overrides] == [
            (a.host, 0, "e2e drain")]

    status, _ = api.call("DELETE", f"/api/v1/overrides/r1/{a.host}")
    assert status == 200
    wait_until(lambda: answers(node) == {a.host, b.host}, 1.0, interval=0.02, message="back")


def test_override_with_enabled_false_and_ttl_expires_on_its_own(gslb_factory, backends):
    """enabled: false removes a server; with ttl 2s it comes back by itself after about 2 s."""
    a = backends(HTTPBackend("127.0.0.73"))
    b = backends(HTTPBackend("127.0.0.74"))
    port = free_port()
    node, api = start(gslb_factory, config_text(port, [(a.host, a.port), (b.host, b.port)]), port)
    wait_until(lambda: answers(node) == {a.host, b.host}, 5, message="both answered")
    status, body = api.call("PUT", f"/api/v1/overrides/r1/{b.host}",
                            {"enabled": False, "reason": "maintenance", "ttl": "2s"})
    assert status == 200 and body["expires_at"] is not None
    assert answers(node, count=20) == {a.host}
    wait_until(lambda: answers(node) == {a.host, b.host}, 4, message="override expired")
    wait_until(lambda: api.call("GET", "/api/v1/overrides")[1] == {"overrides": []}, 3,
               message="expired override removed from the store")


def test_registration_appears_once_healthy_and_expires_after_its_ttl(gslb_factory, backends):
    """A registered server joins answers once healthy; when heartbeats stop it leaves after its ttl."""
    configured = backends(HTTPBackend("127.0.0.75"))
    checked = backends(HTTPBackend("127.0.0.76"))
    claimed = backends(HTTPBackend("127.0.0.77"))
    port = free_port()
    node, api = start(gslb_factory, config_text(port, [(configured.host, configured.port)]), port)
    wait_until(lambda: answers(node) == {configured.host}, 5, message="configured answered")

    checked.status = 503
    status, body = api.call("POST", "/api/v1/services", {
        "region": "r1", "address": checked.host, "port": checked.port, "ttl": "3s"})
    assert status == 201, body
    checked_id = body["id"]
    time.sleep(1.2)  # a couple of failed checks: never served while unhealthy
    assert answers(node, count=20) == {configured.host}
    checked.status = 200
    wait_until(lambda: checked.host in answers(node), 2, message="registered server healthy")

    status, body = api.call("POST", "/api/v1/services", {
        "region": "r1", "address": claimed.host, "port": claimed.port, "ttl": "3s",
        "healthy": False, "agent": "e2e"})
    assert status == 201
    claimed_id = body["id"]
    assert claimed.host not in answers(node, count=20)
    status, body = api.call("PUT", f"/api/v1/services/{claimed_id}/heartbeat", {"healthy": True})
    assert status == 200 and body["healthy"] is True
    wait_until(lambda: answers(node) == {configured.host, checked.host, claimed.host}, 1, interval=0.02,
               message="claimed server served")

    # Keep only `claimed` alive; `checked` gets no heartbeats and expires after its 3 s ttl.
    deadline = time.monotonic() + 6
    expired_at = None
    while time.monotonic() < deadline:
        api.call("PUT", f"/api/v1/services/{claimed_id}/heartbeat", {"healthy": True})
        ids = [s["id"] for s in api.call("GET", "/api/v1/services")[1]["services"]]
        if checked_id not in ids and expired_at is None:
            expired_at = time.monotonic()
        time.sleep(0.5)
    assert expired_at is not None, "registration without heartbeats did not expire"
    assert answers(node, count=20) == {configured.host, claimed.host}
    assert api.call("PUT", f"/api/v1/services/{checked_id}/heartbeat", {})[0] == 404

    status, _ = api.call("DELETE", f"/api/v1/services/{claimed_id}")
    assert status == 200
    assert answers(node, count=20) == {configured.host}


def test_reload_keeps_runtime_state(gslb_factory, backends):
    """SIGHUP applies the new file and keeps overrides and registrations."""
    a = backends(HTTPBackend("127.0.0.78"))
    b = backends(HTTPBackend("127.0.0.79"))
    dynamic = backends(HTTPBackend("127.0.0.80"))
    port = free_port()
    servers = [(a.host, a.port), (b.host, b.port)]
    node, api = start(gslb_factory, config_text(port, servers), port)
    assert api.call("PUT", f"/api/v1/overrides/r1/{a.host}", {"weight": 0, "reason": "r"})[0] == 200
    status, body = api.call("POST", "/api/v1/services", {
        "region": "r1", "address": dynamic.host, "port": dynamic.port, "ttl": "1h", "healthy": True})
    assert status == 201
    wait_until(lambda: answers(node) == {b.host, dynamic.host}, 2, message="state applied")

    extra = "  - {name: new.example.test, routing_algorithm: round-robin, regions: [r1]}"
    node.write_config(config_text(port, servers, extra_domains=extra))
    node.signal(signal.SIGHUP)
    wait_until(lambda: node.address("new.example.test") is not None, 5, message="reloaded")
    assert answers(node) == {b.host, dynamic.host}
    assert answers(node, "new.example.test") == {b.host, dynamic.host}
    assert [o["address"] for o in api.call("GET", "/api/v1/overrides")[1]["overrides"]] == [a.host]
    assert [s["id"] for s in api.call("GET", "/api/v1/services")[1]["services"]] == [body["id"]]


def test_bad_requests_are_4xx_json_and_store_nothing(gslb_factory, backends):
    """Unknown region, bad address, weight out of range, missing token: 4xx JSON, nothing stored."""
    a = backends(HTTPBackend("127.0.0.81"))
    port = free_port()
    node, api = start(gslb_factory, config_text(port, [(a.host, a.port)]), port)
    service = {"region": "r1", "address": "127.0.0.82", "port": 80, "ttl": "30s"}
    cases = [
        ("PUT", f"/api/v1/overrides/nowhere/{a.host}", {"weight": 0, "reason": "x"}, TOKEN, 404),
        ("PUT", "/api/v1/overrides/r1/127.0.0.99", {"weight": 0, "reason": "x"}, TOKEN, 404),
        ("PUT", "/api/v1/overrides/r1/not-an-address", {"weight": 0, "reason": "x"}, TOKEN, 400),
        ("PUT", f"/api/v1/overrides/r1/{a.host}", {"weight": 1001, "reason": "x"}, TOKEN, 400),
        ("PUT", f"/api/v1/overrides/r1/{a.host}", {"weight": 0, "reason": "x"}, None, 401),
        ("PUT", f"/api/v1/overrides/r1/{a.host}", {"weight": 0, "reason": "x"}, "wrong", 401),
        ("POST", "/api/v1/services", dict(service, region="nowhere"), TOKEN, 404),
        ("POST", "/api/v1/services", dict(service, address="999.1.1.1"), TOKEN, 400),
        ("POST", "/api/v1/services", dict(service, weight=5000), TOKEN, 400),
        ("POST", "/api/v1/services", dict(service, port=70000), TOKEN, 400),
        ("POST", "/api/v1/services", dict(service, ttl="forever"), TOKEN, 400),
        ("POST", "/api/v1/services", dict(service, address=a.host), TOKEN, 409),
        ("POST", "/api/v1/services", service, None, 401),
        ("PUT", "/api/v1/services/unknown-id/heartbeat", {"healthy": True}, TOKEN, 404),
        ("DELETE", "/api/v1/services/unknown-id", None, TOKEN, 404),
    ]
    for method, path, body, token, expected in cases:
        status, reply = api.call(method, path, body, token=token)
        assert status == expected, (method, path, body, reply)
        assert reply["code"] == expected and isinstance(reply["error"], str) and reply["error"]
    status, reply = api.call("POST", "/api/v1/services", raw=b"{not json")
    assert status == 400 and reply["error"] == "the request body is not valid JSON"
    assert api.call("GET", "/api/v1/overrides")[1] == {"overrides": []}
    assert api.call("GET", "/api/v1/services")[1] == {"services": []}
    assert answers(node) == {a.host}


def test_acknowledged_writes_survive_kill_9(gslb_factory, backends):
    """20 trials: every acknowledged override and registration survives kill -9 and a restart."""
    trials = 20
    hosts = [f"127.0.1.{i + 1}" for i in range(trials)]
    port = free_port()
    check = "{type: tcp, interval: 30s, timeout: 1s}"
    node, api = start(gslb_factory, config_text(port, [(h, 9) for h in hosts], check=check), port)
    acknowledged_overrides: Dict[str, str] = {}
    acknowledged_services: Dict[str, str] = {}
    for trial, host in enumerate(hosts):
        reason = f"trial {trial}"
        status, body = api.call("PUT", f"/api/v1/overrides/r1/{host}", {"weight": trial, "reason": reason})
        assert status == 200, body
        acknowledged_overrides[host] = reason
        status, body = api.call("POST", "/api/v1/services", {
            "region": "r1", "address": f"127.0.2.{trial + 1}", "port": 8000 + trial, "ttl": "1h",
            "healthy": True})
        assert status == 201, body
        acknowledged_services[body["id"]] = f"127.0.2.{trial + 1}"
        restart(node, api, kill=True)
        overrides = {o["address"]: o["reason"] for o in api.call("GET", "/api/v1/overrides")[1]["overrides"]}
        assert overrides == acknowledged_overrides, f"trial {trial}"
        services = {s["id"]: s["address"] for s in api.call("GET", "/api/v1/services")[1]["services"]}
        assert services == acknowledged_services, f"trial {trial}"
