"""Issue 11 from outside: the real `twistd -n opengslb` process against hostile HTTP clients.

Authorization by default over every route × method spelling × token form,
scoped tokens, connection floods under ``ulimit -n 1024``, a slowloris
client, refused sources whose body is never read, bounded input (no 500s,
no tracebacks), and the metrics listener's access control.
"""

from __future__ import annotations

import base64
import http.client
import json
import resource
import socket
import time
from typing import Any, Dict, List, Optional, Tuple

import pytest

from opengslb.api.openapi import openapi_document
from tests.e2e.harness import LOAD_SLACK, HTTPBackend, free_port, hold_connections, wait_until

pytestmark = pytest.mark.e2e

ADMIN = "admin-token-0123456789"
DRAIN = "drain-token-0123456789"


def config_text(api_port: int, metrics_port: int, servers: List[HTTPBackend], api_extra: str = "",
                metrics_extra: str = "", algorithm: str = "failover") -> str:
    listed = "\n".join(f"      - {{address: {b.host}, port: {b.port}}}" for b in servers)
    return f"""
dns:
  listen_address: "{{DNS}}"
logging: {{level: info, format: json}}
metrics:
  enabled: true
  address: "127.0.0.1:{metrics_port}"
{metrics_extra}
api:
  enabled: true
  address: "127.0.0.1:{api_port}"
  allowed_networks: ["127.0.0.0/8"]
  tokens: ["{ADMIN}", {{token: "{DRAIN}", scope: drain}}]
{api_extra}
regions:
  - name: r1
    servers:
{listed}
    health_check: {{type: http, interval: 500ms, timeout: 400ms, path: /health,
                   failure_threshold: 1, success_threshold: 1}}
domains:
  - {{name: app.example.test, routing_algorithm: {algorithm}, regions: [r1]}}
"""


def request(port: int, method: str, path: str, headers: Optional[Dict[str, str]] = None,
            body: Optional[bytes] = None, source: str = "127.0.0.1") -> Tuple[int, Dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5, source_address=(source, 0))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def concrete_paths() -> List[str]:
    """Every path of the served document with its parameters filled in, plus unknown ones."""
    fill = {"{region}": "r1", "{address}": "127.0.0.1", "{id}": "svc-1"}
    paths = []
    for template in openapi_document()["paths"]:
        for name, value in fill.items():
            template = template.replace(name, value)
        paths.append(template)
    return paths + ["/api/v1/nope", "/", "/api/v1/overrides/r1"]


METHOD_SPELLINGS = ["GET", "get", "Get", "HEAD", "head", "POST", "post", "pOST", "PUT", "put", "Put",
                    "PATCH", "patch", "DELETE", "delete", "dELETE", "OPTIONS", "options", "TRACE",
                    "FOO", "PROPFIND"]
BAD_TOKEN_FORMS: List[Optional[str]] = [
    None, "Bearer wrong-token", "bearer wrong-token", f"Bearer {ADMIN}x", f"Bearer {ADMIN[:-1]}",
    "Bearer", f"Token {ADMIN}", ADMIN, "Basic " + base64.b64encode(f"x:{ADMIN}".encode()).decode(),
    f"Bearer {ADMIN.upper()}",
]
WRITE_BODIES = json.dumps({"weight": 0, "reason": "bypass", "region": "r1", "address": "127.0.0.9",
                           "port": 80, "ttl": "30s", "name": "x"}).encode()


def state(port: int) -> Dict[str, Any]:
    """What a write could have changed: overrides, services, members, reloads."""
    snapshot = {}
    for path in ("/api/v1/overrides", "/api/v1/services", "/api/v1/cluster/members"):
        status, _, body = request(port, "GET", path)
        assert status == 200
        snapshot[path] = json.loads(body)
    return snapshot


def test_no_write_without_a_valid_token_over_every_route_method_and_token_form(gslb_factory, backends):
    """Every route × method spelling × missing/invalid token form: never a 2xx but for exact
    GET/HEAD, never a 500, and nothing changes (overrides, services, members, reloads)."""
    backend = backends(HTTPBackend("127.0.0.21"))
    api_port, metrics_port = free_port(), free_port()
    node = gslb_factory(config_text(api_port, metrics_port, [backend]))
    wait_until(lambda: request(api_port, "GET", "/api/v1/live")[0] == 200, 10)
    before = state(api_port)
    counts: Dict[int, int] = {}
    forms = BAD_TOKEN_FORMS + [f"Bearer {ADMIN}"]  # the valid token, for the mis-spelled methods
    for path in concrete_paths():
        for method in METHOD_SPELLINGS:
            for form in forms:
                valid = form == f"Bearer {ADMIN}"
                if valid and method.upper() == method:
                    continue  # correctly spelled writes with the admin token are allowed
                headers = {"Content-Type": "application/json"}
                if form is not None:
                    headers["Authorization"] = form
                status, reply_headers, body = request(api_port, method, path, headers, WRITE_BODIES)
                counts[status] = counts.get(status, 0) + 1
                where = f"{method} {path} with {form!r}: {status} {body[:200]!r}"
                assert status < 500 or status == 501, where
                if method in ("GET", "HEAD"):
                    continue
                assert status in (401, 501), where
                if method != "HEAD":
                    assert reply_headers.get("content-type") == "application/json", where
                    assert json.loads(body)["code"] == status, where
    assert state(api_port) == before
    assert '"api_reload"' not in node.log() and "reload requested" not in node.log()
    assert "Traceback" not in node.log()
    assert counts.get(401, 0) > 1000 and counts.get(501, 0) > 500, counts


def test_a_drain_token_drains_but_cannot_reload_or_change_membership(gslb_factory, backends):
    """Scope drain may set and lift overrides; reload, join and remove need scope admin (403)."""
    backend = backends(HTTPBackend("127.0.0.22"))
    api_port, metrics_port = free_port(), free_port()
    node = gslb_factory(config_text(api_port, metrics_port, [backend]))
    wait_until(lambda: request(api_port, "GET", "/api/v1/live")[0] == 200, 10)
    drain = {"Authorization": f"Bearer {DRAIN}", "Content-Type": "application/json"}
    path = f"/api/v1/overrides/r1/{backend.host}"
    status, _, _ = request(api_port, "PUT", path, drain, b'{"enabled": false, "reason": "maint"}')
    assert status == 200
    assert node.query("app.example.test").rcode() == 2  # SERVFAIL: the only server is drained
    for method, admin_path, body in [("POST", "/api/v1/config/reload", b""),
                                     ("POST", "/api/v1/cluster/join", b'{"address": "127.0.0.9:7946"}'),
                                     ("POST", "/api/v1/cluster/remove", b'{"name": "x"}')]:
        status, _, reply = request(api_port, method, admin_path, drain, body)
        assert status == 403 and b"needs scope 'admin'" in reply, (admin_path, reply)
    assert request(api_port, "DELETE", path, drain)[0] == 200
    status, _, reply = request(api_port, "POST", "/api/v1/config/reload",
                               {"Authorization": f"Bearer {ADMIN}"})
    assert (status, json.loads(reply)["reloaded"]) == (200, True)


def _raise_own_fd_limit(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _http_ok(port: int, path: str) -> bool:
    """Whether ``GET path`` on the listener at ``port`` answers 200 now (a refusal or a timeout is no)."""
    try:
        return request(port, "GET", path)[0] == 200
    except (OSError, http.client.HTTPException):
        return False


def _tcp_answer(node) -> bool:
    try:
        return bool(node.query("app.example.test", tcp=True, timeout=1).answer)
    except (OSError, EOFError):
        return False


def test_dns_and_health_checks_keep_working_through_connection_floods_at_ulimit_1024(
        gslb_factory, backends):
    """5,000 idle connections against each listener (API, metrics, DNS over TCP) of a process
    limited to 1,024 descriptors: DNS over UDP still answers every query with data, a
    backend that fails during the flood is still noticed (health checks get descriptors),
    and every listener serves again once the flood lets go."""
    per_listener = 5000
    if _raise_own_fd_limit(3 * per_listener + 500) < 3 * per_listener + 500:
        per_listener = (resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 500) // 3
    assert per_listener >= 1500, "the test process cannot hold enough sockets to flood"
    primary, secondary = backends(HTTPBackend("127.0.0.23")), backends(HTTPBackend("127.0.0.24"))
    api_port, metrics_port = free_port(), free_port()
    node = gslb_factory(config_text(api_port, metrics_port, [primary, secondary]), nofile=1024)
    assert node.address("app.example.test") == primary.host
    held: List[socket.socket] = []
    try:
        for port in (api_port, metrics_port, node.dns_port):
            held += hold_connections(port, per_listener, sources=250)
        time.sleep(1.0)  # the flood stays on every listener a while: DNS must answer through it
        answered = 0
        for _ in range(40):
            answered += node.address("app.example.test") == primary.host
        assert answered == 40
        primary.stop()
        wait_until(lambda: node.address("app.example.test") == secondary.host, 10,
                   message="failover while every listener is at its cap")
        status, _, _ = request(api_port, "GET", "/api/v1/live", source="127.0.5.1")
    except OSError:
        status = 0  # the API is full: refused at accept, as intended
    finally:
        for sock in held:
            sock.close()
    assert status in (0, 200)
    # Once the flood lets go, every listener serves again.
    wait_until(lambda: _tcp_answer(node), 20, message="DNS over TCP after the flood")
    wait_until(lambda: _http_ok(api_port, "/api/v1/live"), 20, message="API after the flood")
    wait_until(lambda: _http_ok(metrics_port, "/metrics"), 20, message="metrics after the flood")
    log = node.log()
    assert "Too many open files" not in log and "Traceback" not in log
    assert "is at its cap" in log
    assert '"before": 1024' in log or "1024 -> 1024" in log


def test_a_slowloris_client_is_cut_off_at_the_request_deadline(gslb_factory, backends):
    """300 connections sending one header line every 0.3 s are all closed at request_timeout
    (1 s here) with a 408; a normal request still works meanwhile."""
    backend = backends(HTTPBackend("127.0.0.25"))
    api_port, metrics_port = free_port(), free_port()
    gslb_factory(config_text(api_port, metrics_port, [backend],
                             api_extra="  request_timeout: 1s\n  max_connections: 400"))
    wait_until(lambda: request(api_port, "GET", "/api/v1/live")[0] == 200, 10)
    clients = []
    for i in range(300):
        sock = socket.create_connection(("127.0.0.1", api_port), source_address=(f"127.0.2.{1 + i % 30}", 0))
        sock.sendall(b"GET /api/v1/live HTTP/1.1\r\nHost: x\r\n")
        clients.append(sock)
    started = time.monotonic()
    open_clients = list(clients)
    replies: List[bytes] = []
    while open_clients and time.monotonic() - started < 4:
        time.sleep(0.3)
        for sock in list(open_clients):
            try:
                sock.sendall(b"X-Slow: 1\r\n")
                sock.setblocking(False)
                data = sock.recv(4096)
                sock.setblocking(True)
            except BlockingIOError:
                sock.setblocking(True)
                continue
            except OSError:
                data = b""
            replies.append(data)
            open_clients.remove(sock)
        if time.monotonic() - started < 0.8:
            assert request(api_port, "GET", "/api/v1/live", source="127.0.3.1")[0] == 200
    elapsed = time.monotonic() - started
    for sock in clients:
        sock.close()
    assert not open_clients, f"{len(open_clients)} of 300 slow connections still open after {elapsed:.1f}s"
    assert elapsed < 2.5 + LOAD_SLACK, elapsed
    # A 408 each; a client that wrote after the server closed may see a reset instead.
    assert all(r.startswith(b"HTTP/1.1 408") or r == b"" for r in replies)
    assert any(r.startswith(b"HTTP/1.1 408") for r in replies)


def test_a_refused_source_gets_403_before_its_body_is_read(gslb_factory, backends):
    """A source outside allowed_networks announcing 50 MB gets a JSON 403 right after its
    headers, without sending any body; the server closes the connection."""
    backend = backends(HTTPBackend("127.0.0.26"))
    api_port, metrics_port = free_port(), free_port()
    node = gslb_factory(config_text(api_port, metrics_port, [backend]).replace(
        'allowed_networks: ["127.0.0.0/8"]', 'allowed_networks: ["192.0.2.0/24"]'))
    wait_until(lambda: request(api_port, "GET", "/api/v1/live")[0] == 403, 10)
    sock = socket.create_connection(("127.0.0.1", api_port), timeout=3)
    sock.sendall(b"POST /api/v1/config/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 52428800\r\n\r\n")
    reply = b""
    while b"\r\n\r\n" not in reply or not reply.endswith(b"}"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        reply += chunk
    head, body = reply.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 403") and b"Connection: close" in head
    assert json.loads(body) == {"error": "source address 127.0.0.1 is not in api.allowed_networks",
                                "code": 403}
    sock.settimeout(3)
    assert sock.recv(4096) == b"", "the server closes its side after the refusal"
    sock.close()
    assert "api_reload" not in node.log()


HOSTILE_BODIES = [
    ("deep JSON", b"[" * 1000 + b"]" * 1000),
    ("deep object", b'{"a":' * 900 + b"1" + b"}" * 900),
    ("400-digit weight", b'{"weight": ' + b"9" * 400 + b', "reason": "x"}'),
    ("400-digit ttl", b'{"weight": 0, "reason": "x", "ttl": ' + b"9" * 400 + b"}"),
    ("400-digit duration text", b'{"weight": 0, "reason": "x", "ttl": "' + b"9" * 400 + b's"}'),
    ("huge float", b'{"weight": 1e999, "reason": "x"}'),
    ("NaN", b'{"weight": NaN, "reason": "x"}'),
    ("not UTF-8", b'{"reason": "\xff\xfe"}'),
    ("a list", b"[1, 2]"),
]


@pytest.mark.parametrize("what, body", HOSTILE_BODIES, ids=[h[0] for h in HOSTILE_BODIES])
def test_hostile_bodies_get_a_json_4xx_never_a_500_or_a_traceback(gslb_factory, backends, what, body):
    """Deep nesting, 400-digit numbers, NaN, non-UTF-8: a JSON 400 naming the problem."""
    backend = backends(HTTPBackend("127.0.0.27"))
    api_port, metrics_port = free_port(), free_port()
    node = gslb_factory(config_text(api_port, metrics_port, [backend]))
    wait_until(lambda: request(api_port, "GET", "/api/v1/live")[0] == 200, 10)
    headers = {"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"}
    for path in (f"/api/v1/overrides/r1/{backend.host}", "/api/v1/services/nope/heartbeat"):
        status, reply_headers, reply = request(api_port, "PUT", path, headers, body)
        assert 400 <= status < 500, (what, path, status, reply)
        assert json.loads(reply)["code"] == status
    status, _, reply = request(api_port, "PUT", "/api/v1/services/x/heartbeat", headers,
                               b'{"signal": {"type": "bleed", "reason": "cpu_high", "value": '
                               + b"9" * 400 + b', "threshold": 1}}')
    assert 400 <= status < 500
    assert "Traceback" not in node.log()


def test_malformed_paths_get_a_json_400_without_a_traceback(gslb_factory, backends):
    """A %-escape that is not UTF-8 (in the path or Host) is a JSON 400, logged without a traceback."""
    backend = backends(HTTPBackend("127.0.0.28"))
    api_port, metrics_port = free_port(), free_port()
    node = gslb_factory(config_text(api_port, metrics_port, [backend]))
    wait_until(lambda: request(api_port, "GET", "/api/v1/live")[0] == 200, 10)
    for path, headers in [("/api/v1/overrides/%ff/x", {}), ("/api/v1/live", {"Host": "\xff"})]:
        status, reply_headers, reply = request(api_port, "GET", path, headers)
        assert status == 400 and reply_headers["content-type"] == "application/json"
        assert json.loads(reply)["code"] == 400
    assert "Traceback" not in node.log()


def test_metrics_listener_applies_its_allowed_networks_and_methods(gslb_factory, backends):
    """metrics.allowed_networks: 403 outside; only GET/HEAD (405); the loopback default works."""
    backend = backends(HTTPBackend("127.0.0.29"))
    api_port, metrics_port = free_port(), free_port()
    gslb_factory(config_text(api_port, metrics_port, [backend],
                             metrics_extra='  allowed_networks: ["127.0.0.1/32"]'))
    wait_until(lambda: request(metrics_port, "GET", "/metrics")[0] == 200, 10)
    status, _, body = request(metrics_port, "GET", "/metrics", source="127.0.0.2")
    assert status == 403 and b"metrics.allowed_networks" in body
    assert request(metrics_port, "POST", "/metrics")[0] == 405
    status, _, body = request(metrics_port, "GET", "/metrics")
    assert status == 200 and b"opengslb_dns_queries_total" in body
