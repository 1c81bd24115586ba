"""The HTTP API of the real `twistd -n opengslb` process, over real sockets (SPEC §9).

Requests are made with ``http.client`` from the test process (source
127.0.0.1).  Every JSON reply is checked against the OpenAPI document (the
one this checkout builds; one test checks the process serves the same).
"""

from __future__ import annotations

import http.client
import json
import re
from typing import Any, Dict, Optional, Tuple

import pytest
from openapi_spec_validator import validate as validate_spec

from tests.e2e.harness import HTTPBackend, free_port, wait_until
from tests.openapi_check import DOCUMENT, check_against_document

pytestmark = pytest.mark.e2e

TOKEN = "e2e-token-0123456789"
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def config_text(api_port: int, backends, api_extra: str = "", tokens=(TOKEN,),
                domains: str = "") -> str:
    servers = "\n".join(f"      - {{address: {b.host}, port: {b.port}, weight: {w}}}"
                        for b, w in backends)
    token_list = ", ".join(json.dumps(t) for t in tokens)
    return f"""
dns:
  listen_address: "{{DNS}}"
  default_ttl: 20
logging: {{level: info, format: json}}
api:
  enabled: true
  address: "127.0.0.1:{api_port}"
  tokens: [{token_list}]
{api_extra}
cluster:
  node_name: e2e-node
  raft: {{data_dir: "{{DATA}}"}}
regions:
  - name: r1
    servers:
{servers}
    health_check: {{type: http, interval: 1s, timeout: 500ms, path: /health,
                   failure_threshold: 1, success_threshold: 1}}
domains:
  - {{name: app.example.test, routing_algorithm: weighted, regions: [r1], ttl: 15}}
{domains}
"""


class API:
    """A tiny blocking client for the API of one process."""

    def __init__(self, port: int) -> None:
        self.port = port

    def raw(self, method: str, path: str, headers: Optional[Dict[str, str]] = None
            ) -> Tuple[int, Dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request(method, path, headers=headers or {})
            response = conn.getresponse()
            return (response.status, {k.lower(): v for k, v in response.getheaders()},
                    response.read())
        finally:
            conn.close()

    def call(self, method: str, path: str, headers: Optional[Dict[str, str]] = None,
             token: Optional[str] = None) -> Tuple[int, Dict[str, str], Any]:
        """Send a request; return (status, lower-case headers, JSON body), checked against the document."""
        headers = dict(headers or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        status, reply_headers, body = self.raw(method, path, headers)
        assert reply_headers.get("content-type") == "application/json", (status, body)
        decoded = json.loads(body)
        self.check(method, path, status, decoded)
        return status, reply_headers, decoded

    def check(self, method: str, path: str, status: int, body: Any) -> None:
        """``body`` matches the document's schema for (path, method, status)."""
        check_against_document(method, path, status, body, undocumented=(403, 404, 405))

    def answering(self) -> bool:
        try:
            self.raw("GET", "/api/v1/live")
            return True
        except OSError:
            return False


def start(gslb_factory, text: str, port: int) -> Tuple[Any, API]:
    node = gslb_factory(text)
    api = API(port)
    wait_until(api.answering, 10, message=f"API listening on {port}\n{node.log()}")
    return node, api


def wait_ready(api: API) -> None:
    wait_until(lambda: api.raw("GET", "/api/v1/ready")[0] == 200, 10, message="ready")


def test_read_endpoints_report_health_domains_and_cluster(gslb_factory, backends):
    """Every GET endpoint answers its documented shape with the live state of the process."""
    up = backends(HTTPBackend("127.0.0.61"))
    down = backends(HTTPBackend("127.0.0.62"))
    down.status = 503
    port = free_port()
    _, api = start(gslb_factory, config_text(port, [(up, 100), (down, 300)]), port)

    assert api.call("GET", "/api/v1/live")[::2] == (200, {"alive": True})
    wait_ready(api)
    assert api.call("GET", "/api/v1/ready")[::2] == (200, {"ready": True, "reason": None})

    def down_is_unhealthy():
        servers = api.call("GET", "/api/v1/health/servers")[2]["servers"]
        return servers if servers[1]["status"] == "unhealthy" else None

    first, second = wait_until(down_is_unhealthy, 5, message="503 backend unhealthy")
    assert (first["address"], first["port"], first["region"]) == (up.host, up.port, "r1")
    assert first["healthy"] is True and first["status"] == "healthy"
    assert TIMESTAMP.fullmatch(first["last_check"]) and TIMESTAMP.fullmatch(first["last_healthy"])
    assert first["consecutive_successes"] >= 1 and first["last_error"] is None
    assert (first["weight"], first["effective_weight"], first["weight_source"]) == (100, 100, "config")
    assert second["healthy"] is False and second["consecutive_failures"] >= 1
    assert "503" in second["last_error"]

    regions = api.call("GET", "/api/v1/health/regions")[2]["regions"]
    assert regions == [{"name": "r1", "servers": 2, "healthy": 1, "unhealthy": 1,
                        "health_percent": 50.0}]

    (domain,) = api.call("GET", "/api/v1/domains")[2]["domains"]
    assert (domain["name"], domain["algorithm"], domain["ttl"], domain["regions"]) == (
        "app.example.test", "weighted", 15, ["r1"])
    assert [(c["address"], c["healthy"], c["weight"]) for c in domain["candidates"]] == [
        (up.host, True, 100), (down.host, False, 300)]

    member = {"name": "e2e-node", "address": None, "status": "alive"}
    status, _, body = api.call("GET", "/api/v1/cluster/status")
    assert status == 200
    assert len(body.pop("config_hash")) == 64
    assert body == {"mode": "standalone", "node_name": "e2e-node", "is_leader": True,
                    "leader_address": None, "members": [member], "raft": None, "demoted": None}
    assert api.call("GET", "/api/v1/cluster/members")[::2] == (200, {"members": [member]})
    assert api.call("GET", "/api/v1/cluster/leader")[::2] == (
        200, {"leader": True, "node_name": "e2e-node", "leader_address": None})

    status, _, document = api.call("GET", "/api/v1/openapi.json")
    assert status == 200 and document == DOCUMENT
    validate_spec(document)


def test_errors_are_json_with_their_status(gslb_factory, backends):
    """404, 405 (with Allow) and 401 (with WWW-Authenticate) all answer the JSON error shape."""
    up = backends(HTTPBackend("127.0.0.63"))
    port = free_port()
    _, api = start(gslb_factory, config_text(port, [(up, 100)]), port)

    status, _, body = api.call("GET", "/api/v1/does-not-exist")
    assert (status, body) == (404, {"error": "no such endpoint: /api/v1/does-not-exist",
                                    "code": 404})
    status, headers, body = api.call("GET", "/api/v1/config/reload")
    assert status == 405 and headers["allow"] == "POST" and body["code"] == 405
    status, headers, body = api.call("POST", "/api/v1/live", token=TOKEN)
    assert status == 405 and "GET" in headers["allow"] and body["code"] == 405
    for token in (None, "wrong-token"):
        status, headers, body = api.call("POST", "/api/v1/config/reload", token=token)
        assert status == 401 and body["code"] == 401, body
        assert headers["www-authenticate"] == "Bearer"


def test_reload_needs_the_token_and_applies_the_file(gslb_factory, backends):
    """POST /config/reload with the token applies the edited file; a bad file is 422 and kept out."""
    up = backends(HTTPBackend("127.0.0.64"))
    port = free_port()
    node, api = start(gslb_factory, config_text(port, [(up, 100)]), port)

    extra = "  - {name: new.example.test, routing_algorithm: round-robin, regions: [r1]}"
    node.write_config(config_text(port, [(up, 100)], domains=extra))
    status, _, _ = api.call("POST", "/api/v1/config/reload")
    assert status == 401
    assert [d["name"] for d in api.call("GET", "/api/v1/domains")[2]["domains"]] == [
        "app.example.test"]

    status, _, body = api.call("POST", "/api/v1/config/reload", token=TOKEN)
    assert status == 200, body
    assert body["reloaded"] is True and body["restart_required"] == []
    assert [d["name"] for d in api.call("GET", "/api/v1/domains")[2]["domains"]] == [
        "app.example.test", "new.example.test"]
    assert node.address("new.example.test") == up.host

    node.write_config(config_text(port, [(up, 100)], domains="  - {name: bad.example.test, "
                                                             "regions: [nowhere]}"))
    status, _, body = api.call("POST", "/api/v1/config/reload", token=TOKEN)
    assert status == 422
    assert body["error"] == ("configuration is invalid; the previous configuration is still "
                             "running")
    assert body["problems"] and any("nowhere" in p for p in body["problems"]), body
    assert node.address("new.example.test") == up.host


def test_reloaded_tokens_apply_to_the_next_request(gslb_factory, backends):
    """After a reload that rotates api.tokens, the old token is refused and the new one works."""
    up = backends(HTTPBackend("127.0.0.65"))
    port = free_port()
    node, api = start(gslb_factory, config_text(port, [(up, 100)]), port)
    node.write_config(config_text(port, [(up, 100)], tokens=("rotated-token-xyz",)))
    assert api.call("POST", "/api/v1/config/reload", token=TOKEN)[0] == 200
    assert api.call("POST", "/api/v1/config/reload", token=TOKEN)[0] == 401
    assert api.call("POST", "/api/v1/config/reload", token="rotated-token-xyz")[0] == 200


def test_no_tokens_configured_refuses_every_state_change(gslb_factory, backends):
    """With api.tokens empty, POST /config/reload is 401 and says no tokens are configured."""
    up = backends(HTTPBackend("127.0.0.66"))
    port = free_port()
    _, api = start(gslb_factory, config_text(port, [(up, 100)], tokens=()), port)
    status, headers, body = api.call("POST", "/api/v1/config/reload", token=TOKEN)
    assert status == 401 and headers["www-authenticate"] == "Bearer"
    assert "no API tokens are configured" in body["error"]


def test_source_outside_allowed_networks_is_403_everywhere(gslb_factory, backends):
    """A source outside allowed_networks gets 403 on known, unknown and write paths alike."""
    up = backends(HTTPBackend("127.0.0.67"))
    port = free_port()
    extra = '  allowed_networks: ["192.0.2.0/24"]'
    _, api = start(gslb_factory, config_text(port, [(up, 100)], api_extra=extra), port)
    for method, path in (("GET", "/api/v1/live"), ("GET", "/api/v1/nope"),
                         ("POST", "/api/v1/config/reload"), ("DELETE", "/api/v1/live")):
        status, _, body = api.call(method, path, token=TOKEN)
        assert status == 403, (method, path, body)
        assert body == {"error": "source address 127.0.0.1 is not in api.allowed_networks",
                        "code": 403}


PROXY_SETTINGS = """  allowed_networks: ["198.51.100.0/24"]
  trust_proxy_headers: {trust}
  trusted_proxies: ["127.0.0.1/32"]"""


def test_forwarded_for_is_honoured_from_a_trusted_proxy(gslb_factory, backends):
    """With trust_proxy_headers and 127.0.0.1 trusted, X-Forwarded-For decides the source."""
    up = backends(HTTPBackend("127.0.0.68"))
    port = free_port()
    extra = PROXY_SETTINGS.format(trust="true")
    _, api = start(gslb_factory, config_text(port, [(up, 100)], api_extra=extra), port)
    assert api.call("GET", "/api/v1/live", {"X-Forwarded-For": "198.51.100.7"})[0] == 200
    assert api.call("GET", "/api/v1/live")[0] == 403  # the proxy itself is not allowed
    spoofed = {"X-Forwarded-For": "198.51.100.7, 192.0.2.1"}  # 192.0.2.1 is what the proxy saw
    status, _, body = api.call("GET", "/api/v1/live", spoofed)
    assert status == 403 and "192.0.2.1" in body["error"]
    status, _, _ = api.call("POST", "/api/v1/config/reload",
                            {"X-Forwarded-For": "198.51.100.7"}, token=TOKEN)
    assert status == 200


def test_forwarded_for_is_ignored_without_trust_proxy_headers(gslb_factory, backends):
    """With trust_proxy_headers false the header is ignored: the peer 127.0.0.1 is refused."""
    up = backends(HTTPBackend("127.0.0.69"))
    port = free_port()
    extra = PROXY_SETTINGS.format(trust="false")
    _, api = start(gslb_factory, config_text(port, [(up, 100)], api_extra=extra), port)
    status, _, body = api.call("GET", "/api/v1/live", {"X-Forwarded-For": "198.51.100.7"})
    assert status == 403
    assert "127.0.0.1" in body["error"]
