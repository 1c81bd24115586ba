"""The HTTP API (SPEC §9), in memory through treq's StubTreq.

Every reply a test receives is also checked against the OpenAPI document
served at /api/v1/openapi.json (see :func:`call`), so the document cannot
drift from the behaviour.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import pytest
from hypothesis import given
from hypothesis import strategies as st
from openapi_schema_validator import OAS31Validator, oas31_format_checker
from openapi_schema_validator import validate as validate_schema
from openapi_spec_validator import validate as validate_spec
from treq.testing import StubTreq
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from zope.interface import implementer

from opengslb.api import GslbAPI, auth
from opengslb.api.app import _shielded
from opengslb.api.openapi import openapi_document
from opengslb.api.timefmt import rfc3339
from opengslb.config.model import (
    APIConfig,
    Config,
    DNSConfig,
    DomainConfig,
    HealthCheckConfig,
    ListenAddress,
    RegionConfig,
    ServerConfig,
)
from opengslb.core import Gslb
from opengslb.health.checks import CheckFailed

NOW = 1795686027.0  # 2026-11-26T09:40:27Z
TOKEN = "s3cret-token"
DOCUMENT = openapi_document()


def net(*texts: str) -> tuple:
    return tuple(ipaddress.ip_network(t) for t in texts)


def api_settings(**changes: Any) -> APIConfig:
    base = dict(enabled=True, address=ListenAddress("127.0.0.1", 8080), tokens=(TOKEN,))
    base.update(changes)
    return APIConfig(**base)


def sample_config() -> Config:
    checks = HealthCheckConfig(interval=10.0, timeout=2.0, failure_threshold=1, success_threshold=1)
    regions = (
        RegionConfig("east", (ServerConfig("192.0.2.10", 80, weight=100),
                              ServerConfig("192.0.2.11", 8080, weight=50),
                              ServerConfig("2001:db8::10", 80, weight=0)), checks),
        RegionConfig("west", (ServerConfig("198.51.100.10", 443, weight=300),), checks),
        RegionConfig("empty", (), checks),
    )
    domains = (
        DomainConfig("app.example.test", ("east", "west"), "round-robin", ttl=15),
        DomainConfig("fo.example.test", ("west", "east"), "failover"),
    )
    return Config(dns=DNSConfig(listen_address=ListenAddress("127.0.0.1", 53), default_ttl=60),
                  regions=regions, domains=domains)


class FakeChecker:
    """Passes every check except for the addresses in ``down``."""

    def __init__(self) -> None:
        self.down: Dict[str, str] = {}

    def check(self, server: ServerConfig, settings: HealthCheckConfig) -> Deferred:
        if server.address in self.down:
            return fail(CheckFailed(self.down[server.address]))
        return succeed(None)

    def close(self) -> Deferred:
        return succeed(None)


@dataclass
class Outcome:
    ok: bool
    errors: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)
    restart_required: List[str] = field(default_factory=list)


class FakeReloader:
    """Records reloads; each returns the next Deferred of ``pending`` or ``outcome``."""

    def __init__(self) -> None:
        self.calls = 0
        self.outcome = Outcome(ok=True)
        self.pending: Optional[Deferred] = None

    def reload(self) -> Deferred:
        self.calls += 1
        if self.pending is not None:
            return self.pending
        return succeed(self.outcome)


@implementer(IResource)
class FromPeer:
    """Serves ``inner`` as if every request came from ``host`` (StubTreq says 127.0.0.1)."""

    isLeaf = True

    def __init__(self, inner: IResource, host: str) -> None:
        self.inner = inner
        self.host = host

    def render(self, request: IRequest) -> Any:
        kind = IPv6Address if ":" in self.host else IPv4Address
        request.client = kind("TCP", self.host, 40000)
        return self.inner.render(request)

    def getChildWithDefault(self, name: bytes, request: IRequest) -> IResource:
        raise NotImplementedError

    def putChild(self, path: bytes, child: IResource) -> None:
        raise NotImplementedError


def fired(d: Deferred) -> Any:
    """The result of a Deferred that must already have fired."""
    results: List[Any] = []

    def keep(result: Any) -> Any:
        results.append(result)
        return None if isinstance(result, Failure) else result

    d.addBoth(keep)
    assert results, "the Deferred has not fired"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


class World:
    """A real Gslb core on a Clock with a fake checker and reloader, and the API over it."""

    def __init__(self, settings: Optional[APIConfig] = None) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.checker = FakeChecker()
        self.gslb = Gslb(self.clock, sample_config(), self.checker)
        self.settings = settings or api_settings()
        self.readiness: Tuple[bool, Optional[str]] = (True, None)
        self.reloader = FakeReloader()
        self.api = GslbAPI(self.gslb, self.reloader, lambda: self.settings,
                           lambda: self.readiness, "node-a", self.clock)

    def start(self) -> None:
        """Start health checks and run the first full round."""
        self.gslb.start()
        self.clock.advance(10)
        self.clock.advance(0)


@dataclass
class Result:
    status: int
    headers: Any
    body: Any

    def header(self, name: str) -> Optional[str]:
        values = self.headers.getRawHeaders(name)
        return values[0] if values else None


def call(world: World, method: str, path: str, peer: str = "127.0.0.1",
         headers: Optional[Dict[str, Any]] = None, pending: bool = False,
         data: Optional[bytes] = None) -> Any:
    """Send one request; return a :class:`Result` (or, with ``pending``, a finisher).

    The reply is checked to be JSON and to match the OpenAPI document.
    """
    stub = StubTreq(FromPeer(world.api.resource(), peer))
    d = stub.request(method, "http://api.test" + path, headers=headers, data=data)

    def finish() -> Result:
        stub.flush()
        response = fired(d)
        body = fired(response.content())
        result = Result(response.code, response.headers, None)
        if method != "HEAD":
            assert result.header("Content-Type") == "application/json"
            result.body = json.loads(body)
            check_against_document(method, path, result.status, result.body)
        return result

    if pending:
        return finish
    return finish()


def check_against_document(method: str, path: str, status: int, body: Any) -> None:
    """The reply body matches the schema the document gives for (path, method, status)."""
    responses = DOCUMENT["paths"].get(document_path(path), {}).get(method.lower(), {}).get(
        "responses", {})
    if str(status) in responses:
        schema = responses[str(status)]["content"]["application/json"]["schema"]
    else:
        assert status in (403, 404, 405), f"undocumented status {status} for {method} {path}"
        schema = {"$ref": "#/components/schemas/Error"}
    validate_schema(body, {**schema, "components": DOCUMENT["components"]}, cls=OAS31Validator,
                    format_checker=oas31_format_checker)


def document_path(path: str) -> str:
    """The document's path (template) that ``path`` matches, or ``path`` itself."""
    for template in DOCUMENT["paths"]:
        pattern = re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path):
            return template
    return path


def bearer(token: str = TOKEN) -> Dict[str, List[str]]:
    return {"Authorization": [f"Bearer {token}"]}


# -- the pure helpers -----------------------------------------------------------


def test_rfc3339_is_utc_whole_seconds_or_none():
    """Timestamps render as RFC 3339 UTC with a Z and no fraction; None stays None."""
    assert rfc3339(NOW + 0.9) == "2026-11-26T09:40:27Z"
    assert rfc3339(0) == "1970-01-01T00:00:00Z"
    assert rfc3339(None) is None


@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1", "127.0.0.1"),
    ("::ffff:127.0.0.1", "127.0.0.1"),
    (" 10.0.0.1 ", "10.0.0.1"),
    ("10.0.0.1:5555", "10.0.0.1"),
    ("[2001:db8::1]:443", "2001:db8::1"),
    ("[::ffff:10.1.2.3]", "10.1.2.3"),
    ("fe80::1%eth0", "fe80::1"),
    ("2001:DB8::1", "2001:db8::1"),
])
def test_parse_address_normalises(text, expected):
    """Addresses are normalised: ports and brackets dropped, IPv4-mapped IPv6 made IPv4."""
    assert str(auth.parse_address(text)) == expected


@pytest.mark.parametrize("text", ["", "unknown", "example.com", "[::1", "300.1.1.1", "1.2.3.4.5"])
def test_parse_address_rejects_non_addresses(text):
    """Anything that is not an IP address parses to None."""
    assert auth.parse_address(text) is None


PROXY = api_settings(trust_proxy_headers=True, trusted_proxies=net("127.0.0.1/32", "10.9.0.0/16"))


def test_forwarded_for_ignored_unless_trust_proxy_headers():
    """With trust_proxy_headers false the header is ignored, even from a trusted proxy."""
    settings = api_settings(trust_proxy_headers=False)
    assert str(auth.client_address("127.0.0.1", ["192.0.2.7"], settings)) == "127.0.0.1"


def test_forwarded_for_ignored_from_an_untrusted_peer():
    """A peer outside trusted_proxies cannot choose its address with the header."""
    assert str(auth.client_address("192.0.2.50", ["127.0.0.1"], PROXY)) == "192.0.2.50"


def test_forwarded_for_uses_right_most_untrusted_entry():
    """Right to left, trusted hops are skipped; the first other address is the client."""
    header = ["1.1.1.1, 192.0.2.7", "10.9.1.1"]  # a client-written entry, the client, a proxy
    assert str(auth.client_address("::ffff:127.0.0.1", header, PROXY)) == "192.0.2.7"


def test_forwarded_for_all_trusted_takes_the_left_most():
    """When every entry is a trusted proxy, the left-most one is the client."""
    assert str(auth.client_address("127.0.0.1", ["10.9.0.5, 10.9.0.6"], PROXY)) == "10.9.0.5"


def test_forwarded_for_garbage_before_the_client_is_unknowable():
    """A non-address where the client should be makes the source unknown (None)."""
    assert auth.client_address("127.0.0.1", ["192.0.2.7, bogus"], PROXY) is None
    assert str(auth.client_address("127.0.0.1", ["bogus, 192.0.2.7"], PROXY)) == "192.0.2.7"


def test_forwarded_for_empty_header_means_the_peer():
    """An empty header from a trusted proxy leaves the proxy as the source."""
    assert str(auth.client_address("127.0.0.1", ["", " "], PROXY)) == "127.0.0.1"


def test_no_ip_peer_is_unknown():
    """A transport without an IP address (UNIX socket) has no source address."""
    assert auth.client_address(None, [], PROXY) is None
    assert not auth.source_allowed(None, PROXY)


_ipv4 = st.ip_addresses(v=4).map(str)


@given(spoofed=st.lists(st.one_of(_ipv4, st.text(max_size=12).filter(lambda s: "," not in s))),
       client=_ipv4.filter(lambda a: not a.startswith(("127.", "10.9."))),
       hops=st.lists(st.sampled_from(["10.9.0.1", "10.9.200.3", "127.0.0.1"]), max_size=3))
def test_client_cannot_spoof_past_the_trusted_proxies(spoofed, client, hops):
    """Whatever the client writes into the header, the address the proxies saw wins."""
    header = ", ".join(spoofed + [client] + hops)
    assert str(auth.client_address("127.0.0.1", [header], PROXY)) == client


def test_source_allowed_matches_networks_of_both_families():
    """Allowed networks match addresses of their own family only."""
    settings = api_settings(allowed_networks=net("10.0.0.0/8", "2001:db8::/32"))
    assert auth.source_allowed(auth.parse_address("10.2.3.4"), settings)
    assert auth.source_allowed(auth.parse_address("2001:db8::5"), settings)
    assert not auth.source_allowed(auth.parse_address("11.0.0.1"), settings)
    assert not auth.source_allowed(auth.parse_address("::ffff:11.0.0.1"), settings)


@pytest.mark.parametrize("header, token", [
    ("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("BEARER abc", "abc"),
    ("Basic abc", None), ("Bearer", None), ("Bearer ", None), (None, None), ("abc", None),
])
def test_bearer_token_parsing(header, token):
    """Only the Bearer scheme (any case) with a non-empty token yields a token."""
    assert auth.bearer_token(header) == token


def test_token_compared_in_constant_time_against_every_token(monkeypatch):
    """Every configured token is compared with hmac.compare_digest, even after a match."""
    calls = []
    real = auth.hmac.compare_digest

    def counting(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    assert auth.token_valid("one", ("one", "two", "three"))
    assert len(calls) == 3
    assert not auth.token_valid("four", ("one", "two", "three"))
    assert not auth.token_valid("one", ())
    assert not auth.token_valid(None, ("one",))


# -- the routes -----------------------------------------------------------------


def test_live():
    """GET /live answers {"alive": true} as JSON."""
    result = call(World(), "GET", "/api/v1/live")
    assert (result.status, result.body) == (200, {"alive": True})
    assert result.header("Cache-Control") == "no-store"


def test_ready_and_not_ready():
    """GET /ready is 200 with reason null when ready, 503 with the reason otherwise."""
    world = World()
    assert call(world, "GET", "/api/v1/ready").body == {"ready": True, "reason": None}
    world.readiness = (False, "the first round of health checks has not completed")
    result = call(world, "GET", "/api/v1/ready")
    assert result.status == 503
    assert result.body == {"ready": False,
                           "reason": "the first round of health checks has not completed"}


def test_health_servers_before_any_check():
    """Before checks run every configured server is listed as healthy with status unknown."""
    body = call(World(), "GET", "/api/v1/health/servers").body
    first = body["servers"][0]
    assert first == {"address": "192.0.2.10", "port": 80, "region": "east", "healthy": True,
                     "status": "unknown", "last_check": None, "last_healthy": None,
                     "consecutive_failures": 0, "consecutive_successes": 0, "last_error": None,
                     "weight": 100, "effective_weight": 100.0, "weight_source": "config",
                     "registration_id": None, "judged_by": "check"}


def test_health_servers_after_checks_in_config_order():
    """After a round, each server reports its verdict, counters, error and RFC 3339 times."""
    world = World()
    world.checker.down["192.0.2.11"] = "HTTP 503"
    world.start()
    servers = call(world, "GET", "/api/v1/health/servers").body["servers"]
    assert [(s["region"], s["address"], s["port"]) for s in servers] == [
        ("east", "192.0.2.10", 80), ("east", "192.0.2.11", 8080), ("east", "2001:db8::10", 80),
        ("west", "198.51.100.10", 443)]
    up, down = servers[0], servers[1]
    assert up["healthy"] is True and up["status"] == "healthy"
    assert up["consecutive_successes"] == 1 and up["last_error"] is None
    assert re.fullmatch(r"2026-11-26T09:40:(2[7-9]|3\d)Z", up["last_check"])
    assert up["last_healthy"] == up["last_check"]
    assert down["healthy"] is False and down["status"] == "unhealthy"
    assert down["consecutive_failures"] == 1 and down["last_error"] == "HTTP 503"
    assert down["last_healthy"] == "2026-11-26T09:40:27Z"  # when it was created healthy
    assert (down["weight"], down["effective_weight"]) == (50, 50.0)


def test_health_regions_counts_and_percent():
    """Regions report servers, healthy, unhealthy and health_percent to one decimal (0.0 if empty)."""
    world = World()
    world.checker.down["192.0.2.11"] = "connection refused"
    world.start()
    regions = call(world, "GET", "/api/v1/health/regions").body["regions"]
    assert regions == [
        {"name": "east", "servers": 3, "healthy": 2, "unhealthy": 1, "health_percent": 66.7},
        {"name": "west", "servers": 1, "healthy": 1, "unhealthy": 0, "health_percent": 100.0},
        {"name": "empty", "servers": 0, "healthy": 0, "unhealthy": 0, "health_percent": 0.0},
    ]


def test_domains_list_algorithm_ttl_regions_and_candidates():
    """Domains come in config order with algorithm, TTL, regions and every candidate's state."""
    world = World()
    world.checker.down["198.51.100.10"] = "timeout"
    world.start()
    domains = call(world, "GET", "/api/v1/domains").body["domains"]
    assert [d["name"] for d in domains] == ["app.example.test", "fo.example.test"]
    app, fo = domains
    assert (app["algorithm"], app["ttl"], app["regions"]) == ("round-robin", 15, ["east", "west"])
    assert (fo["algorithm"], fo["ttl"], fo["regions"]) == ("failover", 60, ["west", "east"])
    assert app["candidates"][0] == {"address": "192.0.2.10", "port": 80, "region": "east",
                                    "healthy": True, "weight": 100, "effective_weight": 100.0,
                                    "weight_source": "config"}
    assert fo["candidates"][0] == {"address": "198.51.100.10", "port": 443, "region": "west",
                                   "healthy": False, "weight": 300, "effective_weight": 300.0,
                                   "weight_source": "config"}
    assert len(fo["candidates"]) == 4


def test_cluster_routes_in_standalone_mode():
    """Standalone: mode standalone, leader is this node, members [self], raft null."""
    world = World()
    member = {"name": "node-a", "address": None, "status": "alive"}
    status = call(world, "GET", "/api/v1/cluster/status")
    assert status.status == 200
    assert status.body == {"mode": "standalone", "node_name": "node-a", "is_leader": True,
                           "leader_address": None, "members": [member], "raft": None,
                           "config_hash": None}
    assert call(world, "GET", "/api/v1/cluster/members").body == {"members": [member]}
    leader = call(world, "GET", "/api/v1/cluster/leader")
    assert (leader.status, leader.body) == (200, {"leader": True, "node_name": "node-a",
                                                  "leader_address": None})


def test_head_is_answered_without_body():
    """HEAD on a GET route answers the GET status with no body."""
    result = call(World(), "HEAD", "/api/v1/live")
    assert result.status == 200


# -- reload and tokens ---------------------------------------------------------------


def test_reload_with_token_succeeds():
    """POST /config/reload with a valid token reloads and reports warnings and restarts."""
    world = World()
    world.reloader.outcome = Outcome(ok=True, warnings=["config.yaml is world-readable"],
                                     restart_required=["dns.listen_address"])
    result = call(world, "POST", "/api/v1/config/reload", headers=bearer())
    assert world.reloader.calls == 1
    assert result.status == 200
    assert result.body == {"reloaded": True, "warnings": ["config.yaml is world-readable"],
                           "restart_required": ["dns.listen_address"]}


def test_reload_of_an_invalid_file_is_422_with_every_problem():
    """A failed reload answers 422, says the old configuration runs, and lists the problems."""
    world = World()
    problems = ["config.yaml:3: dns.default_ttl: must be an integer", "config.yaml:9: regions: x"]
    world.reloader.outcome = Outcome(ok=False, errors=problems)
    result = call(world, "POST", "/api/v1/config/reload", headers=bearer())
    assert result.status == 422
    assert result.body == {"error": "configuration is invalid; the previous configuration is "
                                    "still running", "code": 422, "problems": problems}


def test_reload_answers_when_the_reload_finishes():
    """The reply waits for the (asynchronous) reload."""
    world = World()
    world.reloader.pending = Deferred()
    finish = call(world, "POST", "/api/v1/config/reload", headers=bearer(), pending=True)
    with pytest.raises(AssertionError, match="has not fired"):
        finish()
    world.reloader.pending.callback(Outcome(ok=True))
    assert finish().status == 200


def test_shielded_reload_survives_a_cancelled_request():
    """Cancelling the reply (client gone) does not cancel the reload itself."""
    inner: Deferred = Deferred()
    outer = _shielded(inner)
    errors: List[Failure] = []
    outer.addErrback(errors.append)
    outer.cancel()
    assert errors[0].check(CancelledError)
    assert not inner.called
    inner.callback("done")  # the reload finishes later; nothing raises
    assert inner.called and len(errors) == 1


@pytest.mark.parametrize("headers, message", [
    (None, "missing bearer token (Authorization: Bearer <token>)"),
    ({"Authorization": ["Basic dXNlcjpwYXNz"]}, "missing bearer token (Authorization: Bearer <token>)"),
    (bearer("wrong"), "invalid bearer token"),
    (bearer(TOKEN + "x"), "invalid bearer token"),
])
def test_reload_without_a_valid_token_is_401(headers, message):
    """No or a wrong token: 401 with WWW-Authenticate: Bearer; nothing is reloaded."""
    world = World()
    result = call(world, "POST", "/api/v1/config/reload", headers=headers)
    assert result.status == 401
    assert result.header("WWW-Authenticate") == "Bearer"
    assert result.body == {"error": message, "code": 401}
    assert world.reloader.calls == 0


def test_no_tokens_configured_disables_state_changes():
    """With api.tokens empty every state-changing call is 401 and says why."""
    world = World(api_settings(tokens=()))
    result = call(world, "POST", "/api/v1/config/reload", headers=bearer())
    assert result.status == 401
    assert "no API tokens are configured" in result.body["error"]
    assert world.reloader.calls == 0


def test_settings_are_read_per_request():
    """A reload that rotates tokens or networks applies to the next request."""
    world = World()
    assert call(world, "POST", "/api/v1/config/reload", headers=bearer()).status == 200
    world.settings = api_settings(tokens=("new-token",))
    assert call(world, "POST", "/api/v1/config/reload", headers=bearer()).status == 401
    assert call(world, "POST", "/api/v1/config/reload", headers=bearer("new-token")).status == 200
    world.settings = api_settings(allowed_networks=net("192.0.2.0/24"))
    assert call(world, "GET", "/api/v1/live").status == 403


# -- errors --------------------------------------------------------------------------


def test_unknown_path_is_json_404():
    """An unknown path answers 404 with the JSON error shape."""
    result = call(World(), "GET", "/api/v1/nope")
    assert result.status == 404
    assert result.body == {"error": "no such endpoint: /api/v1/nope", "code": 404}
    assert call(World(), "GET", "/api/v1/live/").status == 404


def test_wrong_method_is_json_405_with_allow():
    """A known path with another method answers 405 with Allow, before any token check."""
    world = World()
    result = call(world, "GET", "/api/v1/config/reload")
    assert result.status == 405
    assert result.header("Allow") == "POST"
    assert result.body == {"error": "method GET is not allowed on /api/v1/config/reload",
                           "code": 405}
    result = call(world, "DELETE", "/api/v1/live")
    assert result.status == 405 and result.header("Allow") == "GET, HEAD"
    assert world.reloader.calls == 0


@pytest.mark.parametrize("method, path", [
    ("GET", "/api/v1/live"), ("GET", "/api/v1/health/servers"), ("GET", "/api/v1/nope"),
    ("POST", "/api/v1/config/reload"), ("PUT", "/api/v1/live"), ("GET", "/api/v1/openapi.json"),
])
def test_source_outside_allowed_networks_is_403_first(method, path):
    """A source outside allowed_networks gets 403 on every path, before 401/404/405."""
    world = World()
    result = call(world, method, path, peer="192.0.2.99", headers=bearer())
    assert result.status == 403
    assert result.body == {"error": "source address 192.0.2.99 is not in api.allowed_networks",
                           "code": 403}
    assert world.reloader.calls == 0


@pytest.mark.parametrize("peer", ["127.0.0.1", "::ffff:127.0.0.1", "::1"])
def test_loopback_of_either_family_is_allowed_by_default(peer):
    """The default allowed networks admit 127.0.0.1, its IPv4-mapped form and ::1."""
    assert call(World(), "GET", "/api/v1/live", peer=peer).status == 200


def test_forwarded_for_honoured_only_from_trusted_proxy_with_trust_on():
    """X-Forwarded-For decides the source only when trusted; otherwise the peer does."""
    allowed = net("198.51.100.0/24")
    header = {"X-Forwarded-For": ["198.51.100.7"]}
    trusting = World(api_settings(allowed_networks=allowed, trust_proxy_headers=True))
    assert call(trusting, "GET", "/api/v1/live", headers=header).status == 200
    spoof = {"X-Forwarded-For": ["198.51.100.7, 192.0.2.1"]}
    assert call(trusting, "GET", "/api/v1/live", headers=spoof).status == 403
    assert call(trusting, "GET", "/api/v1/live").status == 403  # the proxy itself is not allowed
    not_trusting = World(api_settings(allowed_networks=allowed, trust_proxy_headers=False))
    assert call(not_trusting, "GET", "/api/v1/live", headers=header).status == 403
    untrusted_peer = World(api_settings(allowed_networks=allowed, trust_proxy_headers=True,
                                        trusted_proxies=net("10.0.0.0/8")))
    assert call(untrusted_peer, "GET", "/api/v1/live", headers=header).status == 403


def test_unexpected_exception_is_json_500_and_logged():
    """A bug in a handler answers 500 as JSON and logs the traceback."""
    world = World()

    def broken() -> Tuple[bool, Optional[str]]:
        raise ZeroDivisionError("boom")

    world.api = GslbAPI(world.gslb, world.reloader, lambda: world.settings, broken, "n",
                        world.clock)
    events: List[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        result = call(world, "GET", "/api/v1/ready")
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert result.status == 500
    assert result.body == {"error": "internal error (logged)", "code": 500}
    failures = [e for e in events if "log_failure" in e]
    assert failures and failures[0]["log_failure"].check(ZeroDivisionError)


# -- the OpenAPI document ---------------------------------------------------------------


def served_routes() -> set:
    routes = set()
    for rule in GslbAPI.app.url_map.iter_rules():
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        for method in rule.methods or ():
            if method not in ("HEAD", "OPTIONS"):
                routes.add((path, method.lower()))
    return routes


def test_openapi_document_describes_exactly_the_served_routes():
    """The document's paths and methods equal the routes Klein serves."""
    documented = {(path, method) for path, item in DOCUMENT["paths"].items() for method in item}
    assert documented == served_routes()


def test_openapi_document_is_valid():
    """The document validates as OpenAPI (openapi-spec-validator)."""
    validate_spec(DOCUMENT)


def test_openapi_document_is_served():
    """GET /openapi.json serves the document itself."""
    result = call(World(), "GET", "/api/v1/openapi.json")
    assert result.status == 200 and result.body == DOCUMENT


def test_openapi_write_routes_declare_bearer_and_401():
    """Every state-changing operation declares bearer security and a 401 reply."""
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            if method in ("post", "put", "patch", "delete"):
                assert operation["security"] == [{"bearerAuth": []}], path
                assert "401" in operation["responses"], path
