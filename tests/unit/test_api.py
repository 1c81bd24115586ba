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
from openapi_spec_validator import validate as validate_spec
from treq.testing import StubTreq
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from zope.interface import implementer

from opengslb.api import GslbAPI, auth
from opengslb.api.app import _shielded
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
from opengslb.runtime import Runtime
from tests.openapi_check import DOCUMENT
from tests.openapi_check import check_against_document as check_document
from tests.unit.fakes import FakeChecker, MemoryStore

NOW = 1795686027.0  # 2026-11-26T09:40:27Z
TOKEN = "s3cret-token"


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
    """The API as production builds it, on a Clock.

    A real Gslb core and a real :class:`opengslb.runtime.Runtime` (started, as
    the service starts it before serving) over the in-memory store, with a fake
    checker and reloader.  Health checks start with :meth:`start`.
    """

    def __init__(self, settings: Optional[APIConfig] = None) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.checker = FakeChecker()
        self.store = MemoryStore()
        self.ids = iter(f"svc{i}" for i in range(100))
        self.runtime = Runtime(self.clock, self.store, sample_config(), id_factory=lambda: next(self.ids))
        self.gslb = Gslb(self.clock, self.runtime.config, self.checker, runtime=self.runtime)
        self.settings = settings or api_settings()
        self.readiness: Tuple[bool, Optional[str]] = (True, None)
        self.reloader = FakeReloader()
        self.api = GslbAPI(self.gslb, self.reloader, lambda: self.settings,
                           lambda: self.readiness, "node-a", self.clock, runtime=self.runtime)
        self.runtime.start()
        self.clock.advance(0)

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
    check_document(method, document_path(path), status, body, undocumented=(401, 403, 404, 405, 413, 501))


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
                     "registration_id": None, "judged_by": "check", "node_verdicts": {}}


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
                           "config_hash": None, "demoted": None}
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
    """A known path with another method answers 405 with Allow (a write method after the token check)."""
    world = World()
    result = call(world, "GET", "/api/v1/config/reload")
    assert result.status == 405
    assert result.header("Allow") == "POST"
    assert result.body == {"error": "method GET is not allowed on /api/v1/config/reload",
                           "code": 405}
    result = call(world, "DELETE", "/api/v1/live", headers=bearer())
    assert result.status == 405 and result.header("Allow") == "GET, HEAD"
    assert call(world, "DELETE", "/api/v1/live").status == 401  # authorization by default
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
                        world.clock, runtime=world.runtime)
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


# -- runtime state: overrides and registered services (SPEC §9) ---------------------------


class RuntimeWorld(World):
    """The World with health checking started at once, and helpers for the runtime-state routes."""

    def __init__(self, settings: Optional[APIConfig] = None) -> None:
        super().__init__(settings)
        self.gslb.start()
        self.clock.advance(0)

    def send(self, method: str, path: str, body: Any = None, token: Optional[str] = TOKEN,
             raw: Optional[bytes] = None) -> Result:
        headers = bearer(token) if token is not None else {}
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        if data is not None:
            headers["Content-Type"] = ["application/json"]
        result = call(self, method, path, headers=headers, data=data)
        self.clock.advance(0)
        return result

    def writes(self) -> int:
        return len(self.store.proposed)


def in_an_hour() -> str:
    return rfc3339(NOW + 3600)


def test_override_put_get_list_and_delete():
    """PUT sets the override (expires_at from ttl), GET shows it, DELETE removes it, then 404."""
    world = RuntimeWorld()
    assert world.send("GET", "/api/v1/overrides").body == {"overrides": []}
    put = world.send("PUT", "/api/v1/overrides/east/192.0.2.10",
                     {"weight": 0, "reason": "drain for maintenance", "ttl": "1h"})
    expected = {"region": "east", "address": "192.0.2.10", "weight": 0, "enabled": None,
                "reason": "drain for maintenance", "created_at": rfc3339(NOW),
                "expires_at": in_an_hour()}
    assert (put.status, put.body) == (200, expected)
    assert world.send("GET", "/api/v1/overrides/east/192.0.2.10").body == expected
    assert world.send("GET", "/api/v1/overrides").body == {"overrides": [expected]}
    deleted = world.send("DELETE", "/api/v1/overrides/east/192.0.2.10")
    assert (deleted.status, deleted.body) == (200, expected)
    assert world.send("DELETE", "/api/v1/overrides/east/192.0.2.10").status == 404
    missing = world.send("GET", "/api/v1/overrides/east/192.0.2.10")
    assert missing.status == 404 and "no override" in missing.body["error"]


def test_override_shows_as_effective_weight_with_its_source():
    """/health/servers and /domains show the override's effective weight with source 'override'."""
    world = RuntimeWorld()
    world.send("PUT", "/api/v1/overrides/east/192.0.2.11", {"weight": 700, "reason": "more"})
    world.send("PUT", "/api/v1/overrides/west/198.51.100.10", {"enabled": False, "reason": "off"})
    servers = {s["address"]: s for s in world.send("GET", "/api/v1/health/servers").body["servers"]}
    assert (servers["192.0.2.11"]["weight"], servers["192.0.2.11"]["effective_weight"],
            servers["192.0.2.11"]["weight_source"]) == (50, 700.0, "override")
    assert (servers["198.51.100.10"]["effective_weight"],
            servers["198.51.100.10"]["weight_source"]) == (0.0, "override")
    assert servers["192.0.2.10"]["weight_source"] == "config"
    app = world.send("GET", "/api/v1/domains").body["domains"][0]
    west = [c for c in app["candidates"] if c["region"] == "west"][0]
    assert (west["weight"], west["effective_weight"], west["weight_source"]) == (300, 0.0, "override")


def test_override_ttl_in_integer_seconds_and_ipv6_addresses_are_normalised():
    """ttl may be integer seconds; an IPv6 address in the path is matched in canonical form."""
    world = RuntimeWorld()
    result = world.send("PUT", "/api/v1/overrides/east/2001:DB8:0::10",
                        {"weight": 5, "enabled": True, "reason": "r", "ttl": 3600})
    assert result.status == 200
    assert (result.body["address"], result.body["expires_at"]) == ("2001:db8::10", in_an_hour())


@pytest.mark.parametrize("path, body, status, message", [
    ("/api/v1/overrides/east/192.0.2.10", {"weight": 1001, "reason": "x"}, 400,
     "weight must be an integer from 0 to 1000"),
    ("/api/v1/overrides/east/192.0.2.10", {"weight": -1, "reason": "x"}, 400, "weight must be"),
    ("/api/v1/overrides/east/192.0.2.10", {"weight": "5", "reason": "x"}, 400, "weight must be"),
    ("/api/v1/overrides/east/192.0.2.10", {"weight": True, "reason": "x"}, 400, "weight must be"),
    ("/api/v1/overrides/east/192.0.2.10", {"reason": "x"}, 400, "needs weight and/or enabled"),
    ("/api/v1/overrides/east/192.0.2.10", {"weight": 5}, 400, "reason is required"),
    ("/api/v1/overrides/east/192.0.2.10", {"weight": 5, "reason": " "}, 400, "reason is required"),
    ("/api/v1/overrides/east/192.0.2.10", {"enabled": "no", "reason": "x"}, 400, "enabled must be"),
    ("/api/v1/overrides/east/192.0.2.10", {"weight": 5, "reason": "x", "ttl": "5 minutes"}, 400, "ttl must be"),
    ("/api/v1/overrides/east/192.0.2.10", {"weight": 5, "reason": "x", "ttl": 0}, 400, "ttl must be"),
    ("/api/v1/overrides/east/192.0.2.10", {"weight": 5, "reason": "x", "tll": "1h"}, 400,
     "unknown field 'tll'"),
    ("/api/v1/overrides/east/192.0.2.10", [1, 2], 400, "must be a JSON object"),
    ("/api/v1/overrides/nowhere/192.0.2.10", {"weight": 5, "reason": "x"}, 404,
     "unknown region 'nowhere'"),
    ("/api/v1/overrides/east/198.51.100.10", {"weight": 5, "reason": "x"}, 404,
     "198.51.100.10 is not a server of region east"),
    ("/api/v1/overrides/east/not-an-ip", {"weight": 5, "reason": "x"}, 400, "is not an IP address"),
])
def test_bad_override_requests_are_4xx_json_and_store_nothing(path, body, status, message):
    """Bad override requests answer 400/404 with a clear message; nothing is written."""
    world = RuntimeWorld()
    result = world.send("PUT", path, body)
    assert result.status == status, result.body
    assert message in result.body["error"] and result.body["code"] == status
    assert world.writes() == 0 and world.store.machine.overrides == {}


def test_invalid_json_body_is_400():
    """A body that is not JSON is a 400 and nothing is written."""
    world = RuntimeWorld()
    result = world.send("PUT", "/api/v1/overrides/east/192.0.2.10", raw=b"{weight: 0")
    assert (result.status, result.body["error"]) == (400, "the request body is not valid JSON")
    assert world.writes() == 0


@pytest.mark.parametrize("method, path", [
    ("PUT", "/api/v1/overrides/east/192.0.2.10"), ("DELETE", "/api/v1/overrides/east/192.0.2.10"),
    ("POST", "/api/v1/services"), ("PUT", "/api/v1/services/x/heartbeat"),
    ("DELETE", "/api/v1/services/x"),
])
def test_runtime_writes_need_the_token(method, path):
    """Every state-changing runtime route is 401 without a valid token, and writes nothing."""
    world = RuntimeWorld()
    body = {"weight": 0, "reason": "x"} if "overrides" in path else {
        "region": "east", "address": "192.0.2.60", "port": 80, "ttl": "30s"}
    for token in (None, "wrong"):
        result = world.send(method, path, body, token=token)
        assert result.status == 401 and result.header("WWW-Authenticate") == "Bearer"
    assert world.writes() == 0


def test_register_201_then_same_id_200_and_listed():
    """POST /services answers 201 with a new id, 200 with the same id again; GET lists it."""
    world = RuntimeWorld()
    body = {"region": "east", "address": "192.0.2.60", "port": 8080, "ttl": "30s", "healthy": True,
            "agent": "agent-7"}
    first = world.send("POST", "/api/v1/services", body)
    assert (first.status, first.body) == (201, {"id": "svc0"})
    again = world.send("POST", "/api/v1/services", dict(body, weight=20))
    assert (again.status, again.body) == (200, {"id": "svc0"})
    (service,) = world.send("GET", "/api/v1/services").body["services"]
    assert service == {
        "id": "svc0", "region": "east", "address": "192.0.2.60", "port": 8080, "weight": 20,
        "effective_weight": 20.0, "weight_source": "registration", "ttl": 30.0, "agent": "agent-7",
        "claim": True, "healthy": True, "judged_by": "claim", "served": True,
        "not_served_reason": None, "signal": None, "veto": None, "registered_at": rfc3339(NOW),
        "last_heartbeat": rfc3339(NOW), "expires_at": rfc3339(NOW + 30)}
    servers = world.send("GET", "/api/v1/health/servers").body["servers"]
    assert [s["address"] for s in servers if s["region"] == "east"] == [
        "192.0.2.10", "192.0.2.11", "2001:db8::10", "192.0.2.60"]
    registered = servers[3]
    assert (registered["registration_id"], registered["judged_by"], registered["status"]) == (
        "svc0", "claim", "healthy")
    east = world.send("GET", "/api/v1/health/regions").body["regions"][0]
    assert (east["servers"], east["healthy"]) == (4, 4)
    candidates = world.send("GET", "/api/v1/domains").body["domains"][0]["candidates"]
    assert candidates[3] == {"address": "192.0.2.60", "port": 8080, "region": "east",
                             "healthy": True, "weight": 20, "effective_weight": 20.0,
                             "weight_source": "registration"}


def test_registration_without_claim_reports_check_judgement():
    """Without 'healthy' the registration is judged by the region's checks (unhealthy at first)."""
    world = RuntimeWorld()
    world.checker.down["192.0.2.61"] = "connection refused"
    assert world.send("POST", "/api/v1/services", {"region": "west", "address": "192.0.2.61",
                                                   "port": 80, "ttl": 30}).status == 201
    world.clock.advance(0)
    (service,) = world.send("GET", "/api/v1/services").body["services"]
    assert (service["claim"], service["judged_by"], service["healthy"]) == (None, "check", False)
    server = world.send("GET", "/api/v1/health/servers").body["servers"][-1]
    assert (server["judged_by"], server["healthy"], server["last_error"]) == (
        "check", False, "connection refused")


@pytest.mark.parametrize("body, status, message", [
    ({"region": "nowhere", "address": "192.0.2.60", "port": 80, "ttl": "30s"}, 404,
     "unknown region 'nowhere'"),
    ({"address": "192.0.2.60", "port": 80, "ttl": "30s"}, 400, "region is required"),
    ({"region": "east", "address": "192.0.2.300", "port": 80, "ttl": "30s"}, 400,
     "address must be an IP address"),
    ({"region": "east", "address": "0.0.0.0", "port": 80, "ttl": "30s"}, 400, "not a usable"),
    ({"region": "east", "port": 80, "ttl": "30s"}, 400, "address is required"),
    ({"region": "east", "address": "192.0.2.60", "port": 0, "ttl": "30s"}, 400, "port is required"),
    ({"region": "east", "address": "192.0.2.60", "port": 65536, "ttl": "30s"}, 400, "port is required"),
    ({"region": "east", "address": "192.0.2.60", "port": "80", "ttl": "30s"}, 400, "port is required"),
    ({"region": "east", "address": "192.0.2.60", "port": 80, "ttl": "30s", "weight": 1001}, 400,
     "weight must be an integer from 0 to 1000"),
    ({"region": "east", "address": "192.0.2.60", "port": 80}, 400, "ttl is required"),
    ({"region": "east", "address": "192.0.2.60", "port": 80, "ttl": "soon"}, 400, "ttl must be a duration"),
    ({"region": "east", "address": "192.0.2.60", "port": 80, "ttl": "500ms"}, 400,
     "ttl must be a duration from 1s to 168h"),
    ({"region": "east", "address": "192.0.2.60", "port": 80, "ttl": 30, "healthy": "yes"}, 400,
     "healthy must be"),
    ({"region": "east", "address": "192.0.2.60", "port": 80, "ttl": 30, "agent": 7}, 400,
     "agent must be"),
    ({"region": "east", "address": "192.0.2.60", "port": 80, "ttl": 30, "colour": "red"}, 400,
     "unknown field 'colour'"),
    ({"region": "east", "address": "192.0.2.10", "port": 9999, "ttl": 30}, 409,
     "192.0.2.10 is a configured server of region east"),
])
def test_bad_registrations_are_4xx_json_and_store_nothing(body, status, message):
    """Bad registrations answer 400 (404 for an unknown region, 409 for a configured server)
    and store nothing."""
    world = RuntimeWorld()
    result = world.send("POST", "/api/v1/services", body)
    assert result.status == status, result.body
    assert message in result.body["error"] and result.body["code"] == status
    assert world.writes() == 0 and world.store.machine.registrations == {}


def test_heartbeat_and_deregister():
    """A heartbeat answers the service; a bad body is 400; DELETE removes it; unknown ids are 404."""
    world = RuntimeWorld()
    world.send("POST", "/api/v1/services", {"region": "east", "address": "192.0.2.60", "port": 80,
                                            "ttl": "30s", "healthy": True})
    world.clock.advance(5)
    beat = world.send("PUT", "/api/v1/services/svc0/heartbeat", {"healthy": True})
    assert beat.status == 200
    assert (beat.body["last_heartbeat"], beat.body["expires_at"]) == (
        rfc3339(NOW + 5), rfc3339(NOW + 35))
    assert world.store.ops("service.heartbeat") == []  # nothing changed: not replicated
    bleed = {"type": "bleed", "reason": "cpu_high", "value": 97.5, "threshold": 90}
    beat = world.send("PUT", "/api/v1/services/svc0/heartbeat", {"healthy": False, "signal": bleed})
    assert (beat.body["claim"], beat.body["healthy"]) == (False, False)
    assert beat.body["signal"] == {"reason": "cpu_high", "value": 97.5, "threshold": 90.0,
                                   "bleed_duration": 30.0, "since": rfc3339(NOW + 5),
                                   "cleared_at": None, "bleed_factor": 1.0, "phase": "disabled"}
    for bad, message in (({"healthy": "up"}, "healthy must be"),
                         ({"signal": {"type": "bleed", "reason": "disk_full", "value": 1,
                                      "threshold": 1}}, "signal.reason"),
                         ({"signal": {"type": "bleed", "reason": "cpu_high"}}, "signal.value"),
                         ({"signal": "clear"}, "signal must be an object"),
                         ({"claim": True}, "unknown field 'claim'")):
        result = world.send("PUT", "/api/v1/services/svc0/heartbeat", bad)
        assert result.status == 400 and message in result.body["error"], result.body
    assert world.send("PUT", "/api/v1/services/nope/heartbeat", {}).status == 404
    gone = world.send("DELETE", "/api/v1/services/svc0")
    assert (gone.status, gone.body) == (200, {"id": "svc0", "deregistered": True})
    assert world.send("DELETE", "/api/v1/services/svc0").status == 404
    assert world.send("PUT", "/api/v1/services/svc0/heartbeat", {}).status == 404
    assert world.send("GET", "/api/v1/services").body == {"services": []}


def test_write_that_cannot_be_committed_is_503_json():
    """When the store cannot commit, writes answer 503 with the JSON error shape."""
    world = RuntimeWorld()
    world.store.failing = "no quorum"
    result = world.send("PUT", "/api/v1/overrides/east/192.0.2.10", {"weight": 0, "reason": "x"})
    assert result.status == 503 and "no quorum" in result.body["error"]
    world.store.failing = None
    world.store.writable = False
    result = world.send("POST", "/api/v1/services", {"region": "east", "address": "192.0.2.60",
                                                     "port": 80, "ttl": "30s"})
    assert result.status == 503 and result.body["code"] == 503
    assert world.store.machine.overrides == {} and world.store.machine.registrations == {}
