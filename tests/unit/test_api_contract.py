"""The OpenAPI document and the server agree exactly on what a request may carry.

Fast and in memory (the API over a real core and runtime, through StubTreq):
request bodies and path addresses are drawn by hypothesis from near-valid
shapes — each route's own fields with edge-case values, unknown fields,
nulls, missing fields — validated against the served document with
jsonschema-rs (the validator schemathesis uses), and sent to the API.  The
server must refuse a request as malformed (400) exactly when the document
says it is invalid: it never refuses what the document allows (a client
generated from it would break) and never accepts what it forbids.

The text formats themselves (:mod:`opengslb.api.patterns`) are checked
against what they stand for: IP addresses as :mod:`ipaddress` reads them,
durations as :func:`~opengslb.config.durations.parse_duration` reads them
within their bounds, and the agent's own spelling of a ttl.

``tests/integration/test_api_fuzz.py`` runs schemathesis over the real process.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any, Dict, List, Sequence

import jsonschema_rs
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from opengslb.api import patterns
from opengslb.api.openapi import OVERRIDE_TTL_MAX, SERVICE_TTL_MAX, openapi_document
from opengslb.config.durations import format_duration, parse_duration
from tests.unit.test_api import RuntimeWorld

DOCUMENT = openapi_document()
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


def validator(name: str) -> Any:
    """A jsonschema-rs validator of ``#/components/schemas/<name>`` of the document."""
    return jsonschema_rs.Draft202012Validator(
        {"$ref": f"#/components/schemas/{name}", "components": DOCUMENT["components"]})


def path_validator(path: str, method: str, parameter: str) -> Any:
    """A jsonschema-rs validator of a path parameter of an operation of the document."""
    (schema,) = [p["schema"] for p in DOCUMENT["paths"][path][method]["parameters"]
                 if p["name"] == parameter]
    return jsonschema_rs.Draft202012Validator(schema)


# -- edge-case values ----------------------------------------------------------------

NUMBERS: List[Any] = [None, True, False, 0, 1, 5, 5.0, -0.0, 5.5, -1, 100, 1000, 1001, 65535, 65536,
                      10**20, 1e6, 1e6 + 1, 1e-300, 604800, 604801, 31622400, 31622401]
TEXTS: List[Any] = ["", " ", "\t\n", "\u3000", "x", "a b", "x" * 128, "x" * 129, "x" * 1024, "x" * 1025]
DURATIONS: List[Any] = [
    "30s", "0s", "1s", "0.5s", "1.5s", "90s", "500ms", "1m", "1m30s", "1m60s", "1h30m", "1h0m0s",
    "2h5s", "168h", "168h1s", "169h", "10080m", "10081m", "604800s", "604801s", "8784h", "8785h",
    " 30s", "30s\n", "30", "1d", "+30s", "01s", "1h30m10m", "1.0000000001s", "1.000000001s"]
ADDRESSES: List[Any] = [
    "192.0.2.60", "192.0.2.10", "198.51.100.10", "2001:db8::10", "2001:DB8::10", "0.0.0.0", "::",
    "0::0", "::0.0.0.0", "224.0.0.1", "239.255.255.255", "ff02::1", "2001:db8::60", " 192.0.2.60",
    "192.0.2.60 ", "fe80::1%eth0", "192.0.2.060", "::ffff:192.0.2.60", "1:2:3:4:5:6:7::",
    "1::2::3", "192.0.2.256"]
MEMBERS: List[Any] = [
    "10.0.0.1:7946", "[2001:db8::1]:7946", "host.example:7946", "10.0.0.1:0", "10.0.0.1:65535",
    "10.0.0.1:65536", "10.0.0.1:07946", "2001:db8::1:7946", "[10.0.0.1]:7946", " 10.0.0.1:7946"]
NAMES: List[Any] = ["east", "west", "nowhere", "cpu_high", "memory_high", "disk_full", "bleed", "clear"]
SCALARS: List[Any] = NUMBERS + TEXTS + DURATIONS + ADDRESSES + MEMBERS + NAMES
SCALAR = st.sampled_from(SCALARS)
VALUE = st.one_of(SCALAR, st.lists(SCALAR, max_size=2),
                  st.dictionaries(st.sampled_from(["a", "type"]), SCALAR, max_size=2))


OVERRIDE_BASES = [{"weight": 0, "reason": "drain"}, {"enabled": False, "reason": "x", "ttl": "1h"},
                  {"weight": 5, "enabled": True, "reason": "a b", "ttl": 60}]
SERVICE_BASES = [{"region": "east", "address": "192.0.2.60", "port": 80, "ttl": "30s"},
                 {"region": "west", "address": "2001:db8::60", "port": 8080, "ttl": 90, "weight": 7,
                  "healthy": None, "agent": "a"},
                 {"region": "east", "address": "192.0.2.61", "port": 1, "ttl": "1m30.5s",
                  "healthy": True, "agent": None}]
SIGNAL_BASES = [{"type": "clear"}, {"type": "bleed", "reason": "memory_high", "value": 90, "threshold": 85.5},
                {"type": "clear", "reason": "cpu_high", "value": 12.5, "threshold": 90.0}]
HEARTBEAT_BASES = [{}, {"healthy": True}, *({"healthy": None, "signal": s} for s in SIGNAL_BASES)]
MEMBER_BASES = [{"address": "10.0.0.1:7946"}, {"address": "[2001:db8::1]:7946", "name": "n"},
                {"name": "node-b"}]


def bodies(fields: Sequence[str], nested: Dict[str, Any],
           bases: Sequence[Dict[str, Any]] = ({},)) -> st.SearchStrategy[Dict[str, Any]]:
    """Near-valid objects: one of ``bases`` (valid bodies) with up to three changes, each
    setting one of ``fields`` (or an unknown one) to an edge-case value or removing it.

    ``nested`` gives extra value strategies for some fields (objects, numbers in range).
    """
    def value_of(key: str) -> st.SearchStrategy[Any]:
        return st.one_of(nested[key], VALUE) if key in nested else VALUE

    names = st.sampled_from(list(fields) + ["extra"])
    change = names.flatmap(lambda name: st.tuples(st.just(name), st.one_of(
        st.just(_REMOVE), value_of(name))))

    def apply(base: Dict[str, Any], changes: List[Any]) -> Dict[str, Any]:
        body = dict(base)
        for name, value in changes:
            if value is _REMOVE:
                body.pop(name, None)
            else:
                body[name] = value
        return body

    return st.builds(apply, st.sampled_from(list(bases)), st.lists(change, min_size=1, max_size=3))


_REMOVE = object()


SIGNAL = bodies(["type", "reason", "value", "threshold"],
                {"type": st.sampled_from(["bleed", "clear", "other"]),
                 "reason": st.sampled_from(["cpu_high", "error_rate_high", "disk_full"]),
                 "value": st.one_of(st.floats(-1, 2e6), st.integers(-5, 2 * 10**6), st.sampled_from(NUMBERS)),
                 "threshold": st.one_of(st.floats(-1, 2e6), st.integers(-5, 2 * 10**6),
                                        st.sampled_from(NUMBERS))},
                SIGNAL_BASES)


def agrees(world: RuntimeWorld, method: str, path: str, body: Any, schema: str) -> None:
    """``body`` is refused as malformed (400) exactly when the document's ``schema`` rejects it."""
    valid = validator(schema).is_valid(body)
    result = world.send(method, path, body)
    assert (result.status != 400) == valid, (body, valid, result.status, result.body)


# -- bodies ---------------------------------------------------------------------------




#: The edge cases tried for a field, by name (besides GENERIC, tried for every field).
FIELD_EDGES: Dict[str, List[Any]] = {
    "weight": NUMBERS, "port": NUMBERS, "value": NUMBERS, "threshold": NUMBERS,
    "ttl": DURATIONS + NUMBERS, "address": ADDRESSES + MEMBERS,
    "reason": TEXTS + NAMES, "agent": TEXTS, "name": TEXTS, "region": TEXTS + NAMES, "type": NAMES,
    "signal": SIGNAL_BASES + [{"type": "bleed"}, {"type": "clear", "extra": 1}],
}
GENERIC: List[Any] = [None, True, False, 0, 5, 5.0, 5.5, -1, 10**20, "", " ", "x", "30s", "192.0.2.60",
                      [], {}, [1], {"a": 1}]


def single_changes(bases: Sequence[Dict[str, Any]], fields: Sequence[str]) -> List[Dict[str, Any]]:
    """Every base body, and every base with one field (or an unknown one) removed or set to
    each of its edge cases: the boundary of the valid bodies, exhaustively."""
    out: List[Dict[str, Any]] = [dict(base) for base in bases]
    for base in bases:
        for name in list(fields) + ["extra"]:
            out.append({k: v for k, v in base.items() if k != name})
            out += [dict(base, **{name: value}) for value in GENERIC + FIELD_EDGES.get(name, [])]
    return out


def disagreements(world: RuntimeWorld, method: str, path: str, candidates: Sequence[Any],
                  schema: str) -> List[Any]:
    """The bodies on which the server (400 or not) and the document (invalid or valid) differ."""
    check = validator(schema)
    found = []
    for body in candidates:
        result = world.send(method, path, body)
        if (result.status != 400) != check.is_valid(body):
            found.append((body, result.status, result.body))
    return found


def test_every_single_change_of_an_override_agrees():
    world = RuntimeWorld()
    candidates = single_changes(OVERRIDE_BASES, ["weight", "enabled", "reason", "ttl"])
    assert disagreements(world, "PUT", "/api/v1/overrides/east/192.0.2.10", candidates,
                         "OverrideRequest") == []


def test_every_single_change_of_a_registration_agrees():
    world = RuntimeWorld()
    candidates = single_changes(SERVICE_BASES, ["region", "address", "port", "weight", "ttl", "healthy",
                                                "agent"])
    assert disagreements(world, "POST", "/api/v1/services", candidates, "ServiceRequest") == []


def test_every_single_change_of_a_heartbeat_agrees():
    world = RuntimeWorld()
    assert world.send("POST", "/api/v1/services", SERVICE_BASES[0]).status == 201
    candidates = single_changes(HEARTBEAT_BASES, ["healthy", "signal"])
    candidates += [{"signal": signal} for signal in
                   single_changes(SIGNAL_BASES, ["type", "reason", "value", "threshold"])]
    assert disagreements(world, "PUT", "/api/v1/services/svc0/heartbeat", candidates,
                         "HeartbeatRequest") == []


def test_every_single_change_of_a_membership_change_agrees():
    world = RuntimeWorld()
    candidates = single_changes(MEMBER_BASES, ["address", "name"])
    assert disagreements(world, "POST", "/api/v1/cluster/join", candidates, "JoinRequest") == []
    assert disagreements(world, "POST", "/api/v1/cluster/remove", candidates, "RemoveRequest") == []



@SETTINGS
@given(bodies(["weight", "enabled", "reason", "ttl"],
              {"weight": st.one_of(st.integers(-2, 1002), st.sampled_from(NUMBERS)),
               "enabled": st.booleans(),
               "reason": st.one_of(st.text(max_size=5), st.sampled_from(TEXTS)),
               "ttl": st.one_of(st.integers(0, OVERRIDE_TTL_MAX + 1), st.sampled_from(DURATIONS),
                                st.from_regex(patterns.duration(OVERRIDE_TTL_MAX), fullmatch=True))},
              OVERRIDE_BASES))
@example({"weight": 0, "reason": "drain"})
@example({"weight": 0, "reason": "drain", "ttl": None})
@example({"enabled": None, "weight": 5, "reason": "x"})
def test_override_bodies_agree_with_the_document(body):
    """PUT /overrides/{region}/{address} on a real server: 400 exactly for invalid bodies."""
    agrees(RuntimeWorld(), "PUT", "/api/v1/overrides/east/192.0.2.10", body, "OverrideRequest")


@SETTINGS
@given(bodies(["region", "address", "port", "weight", "ttl", "healthy", "agent"],
              {"region": st.sampled_from(["east", "west", "nowhere", ""]),
               "address": st.one_of(st.from_regex(patterns.IP_ADDRESS, fullmatch=True),
                                    st.ip_addresses().map(str), st.sampled_from(ADDRESSES)),
               "port": st.one_of(st.integers(-1, 65537), st.sampled_from(NUMBERS)),
               "weight": st.one_of(st.integers(-2, 1002), st.sampled_from(NUMBERS)),
               "ttl": st.one_of(st.integers(0, SERVICE_TTL_MAX + 1), st.sampled_from(DURATIONS),
                                st.from_regex(patterns.duration(SERVICE_TTL_MAX), fullmatch=True)),
               "healthy": st.one_of(st.none(), st.booleans()),
               "agent": st.one_of(st.none(), st.text(max_size=130), st.sampled_from(TEXTS))},
              SERVICE_BASES))
@example({"region": "east", "address": "192.0.2.60", "port": 80, "ttl": "30s"})
@example({"region": "east", "address": "192.0.2.60", "port": 80, "ttl": "30s", "weight": None})
@example({"region": "east", "address": "192.0.2.60", "port": 80.0, "ttl": 30.0})
def test_registration_bodies_agree_with_the_document(body):
    """POST /services: 400 exactly for invalid bodies (valid ones: 201, 200, 404 region, 409)."""
    agrees(RuntimeWorld(), "POST", "/api/v1/services", body, "ServiceRequest")


@SETTINGS
@given(bodies(["healthy", "signal"], {"healthy": st.one_of(st.none(), st.booleans()),
                                      "signal": st.one_of(st.none(), SIGNAL)},
              HEARTBEAT_BASES))
@example({})
@example({"signal": None})
@example({"signal": {"type": "clear", "reason": "cpu_high", "value": 12.5, "threshold": 90.0}})
@example({"signal": {"type": "bleed", "reason": "cpu_high", "value": 97.5, "threshold": 90}})
def test_heartbeat_bodies_agree_with_the_document(body):
    """PUT /services/{id}/heartbeat of a registration: 400 exactly for invalid bodies."""
    world = RuntimeWorld()
    assert world.send("POST", "/api/v1/services", {"region": "east", "address": "192.0.2.60",
                                                   "port": 80, "ttl": "30s"}).status == 201
    agrees(world, "PUT", "/api/v1/services/svc0/heartbeat", body, "HeartbeatRequest")


@SETTINGS
@given(bodies(["address", "name"], {"name": st.one_of(st.text(max_size=3), st.sampled_from(TEXTS)),
                                    "address": st.sampled_from(MEMBERS)},
              MEMBER_BASES))
@example({"address": "10.0.0.1:7946", "name": "n"})
def test_membership_bodies_agree_with_the_document(body):
    """POST /cluster/join and /cluster/remove (standalone: 409 once the body is valid)."""
    world = RuntimeWorld()
    agrees(world, "POST", "/api/v1/cluster/join", body, "JoinRequest")
    agrees(world, "POST", "/api/v1/cluster/remove", body, "RemoveRequest")


@pytest.mark.parametrize("method, path", [
    ("PUT", "/api/v1/overrides/east/192.0.2.10"), ("POST", "/api/v1/services"),
    ("PUT", "/api/v1/services/svc0/heartbeat"), ("POST", "/api/v1/cluster/join"),
    ("POST", "/api/v1/cluster/remove"),
])
@pytest.mark.parametrize("raw", [b"", b"  \r\n"])
def test_a_missing_body_is_400_where_the_document_requires_one(method, path, raw):
    """Every operation with a request body requires it (the document says so) and gets 400 without."""
    template = re.sub(r"/east/192\.0\.2\.10$", "/{region}/{address}", path).replace(
        "/svc0/", "/{id}/")
    assert DOCUMENT["paths"][template][method.lower()]["requestBody"]["required"] is True
    world = RuntimeWorld()
    world.send("POST", "/api/v1/services", {"region": "east", "address": "192.0.2.60", "port": 80,
                                            "ttl": "30s"})
    result = world.send(method, path, raw=raw)
    assert result.status == 400 and "body is required" in result.body["error"], result.body


# -- path parameters --------------------------------------------------------------------


@SETTINGS
@given(st.one_of(st.text(alphabet="0123456789abcdefABCDEF:.x ", min_size=1, max_size=40),
                 st.from_regex(patterns.IP_ADDRESS, fullmatch=True), st.ip_addresses().map(str)))
@example("192.0.2.10")
@example("not-an-ip")
def test_path_addresses_agree_with_the_document(address):
    """GET /overrides/{region}/{address}: 400 exactly when the address is not the document's IP."""
    valid = path_validator("/api/v1/overrides/{region}/{address}", "get", "address").is_valid(address)
    result = RuntimeWorld().send("GET", "/api/v1/overrides/east/" + address.replace(" ", "%20"))
    assert (result.status != 400) == valid, (address, result.status, result.body)


# -- the formats themselves --------------------------------------------------------------


def reads_as_ip(text: str) -> bool:
    """What :mod:`ipaddress` reads as an address, zones (``%eth0``) aside."""
    if "%" in text:
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("low, high", [(0, 0), (1, 9), (1, 10), (0, 99), (5, 123), (37, 4099),
                                       (1, 65535), (1, 167), (1, 10079)])
def test_integer_range_matches_exactly_its_numbers(low, high):
    expression = re.compile(patterns.integer_range(low, high))
    for number in range(0, high * 3 + 20):
        assert bool(expression.fullmatch(str(number))) == (low <= number <= high), number
    for text in ("01", "-1", "+1", " 1", "1 ", "1.0", "١"):
        assert not expression.fullmatch(text), text


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(st.from_regex(patterns.IP_ADDRESS, fullmatch=True),
                 st.text(alphabet="0123456789abcdefABCDEF:.", max_size=45),
                 st.lists(st.sampled_from(["0", "1", "ff", "FFFF", "12345", "::", ":", "1.2.3.4",
                                           "01.2.3.4", "."]), max_size=10).map("".join),
                 st.ip_addresses().map(str),
                 st.ip_addresses(v=6).map(lambda a: a.exploded),
                 st.ip_addresses(v=6).map(lambda a: a.compressed.upper())))
def test_ip_pattern_is_what_ipaddress_reads(text):
    assert patterns.is_ip_address(text) == reads_as_ip(text), text


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(st.from_regex(patterns.IP_ADDRESS, fullmatch=True), st.ip_addresses().map(str)))
@example("::0.0.0.0")
@example("FF02::1")
@example("ff0::1")
def test_unusable_means_unspecified_or_multicast(text):
    address = ipaddress.ip_address(text)
    assert patterns.is_usable_address(text) == (not (address.is_unspecified or address.is_multicast))


@pytest.mark.parametrize("maximum", [SERVICE_TTL_MAX, OVERRIDE_TTL_MAX])
def test_duration_pattern_is_within_bounds_and_reads_the_agents_spelling(maximum):
    """Every text the pattern admits parses to 1 s .. maximum; format_duration's spelling of any
    value in range is admitted (the agent sends its ttl that way)."""

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.from_regex(patterns.duration(maximum), fullmatch=True))
    def within_bounds(text):
        assert 1 <= parse_duration(text) <= maximum, text

    @settings(max_examples=150, deadline=None)
    @given(st.one_of(st.integers(1, maximum), st.floats(1, maximum),
                     st.decimals(1, 100, places=9).map(float)))
    def agent_spelling(seconds):
        text = format_duration(seconds)
        if parse_duration(text) <= maximum:
            assert patterns.is_duration(text, maximum), (seconds, text)

    within_bounds()
    agent_spelling()
    hours = maximum // 3600
    for text in ("30s", "90s", "5m", "1h", "1h30m", "1m30s", "1m30.5s", f"{hours}h", f"{maximum}s",
                 f"{maximum // 60}m"):
        assert patterns.is_duration(text, maximum), text
    for text in ("0s", "0.5s", "500ms", f"{maximum + 1}s", f"{hours}h1s", f"{hours + 1}h", "1h60m",
                 "1m60s", "01s", " 30s", "30s\n", "30", "1d", f"{maximum}.0s", 30):
        assert not patterns.is_duration(text, maximum), text


@pytest.mark.parametrize("text, canonical", [
    ("10.0.0.1:7946", "10.0.0.1:7946"), ("[2001:DB8:0::1]:7946", "[2001:db8::1]:7946"),
    ("[::ffff:10.0.0.1]:1", "[::ffff:a00:1]:1"),
])
def test_member_addresses_are_ip_and_port_and_canonicalised(text, canonical):
    from opengslb.api.app import _member_address

    assert patterns.is_member_address(text)
    assert _member_address(text) == canonical


@pytest.mark.parametrize("text", ["host.example:7946", "10.0.0.1", "10.0.0.1:0", "10.0.0.1:65536",
                                  "10.0.0.1:07946", "2001:db8::1:7946", "[10.0.0.1]:7946", " 10.0.0.1:1"])
def test_other_member_addresses_are_refused(text):
    assert not patterns.is_member_address(text)


def test_document_patterns_are_the_servers():
    """The document publishes the very expressions the server matches, anchored."""
    text = json.dumps(DOCUMENT)
    for expression in (patterns.IP_ADDRESS, patterns.MEMBER_ADDRESS,
                       patterns.duration(SERVICE_TTL_MAX), patterns.duration(OVERRIDE_TTL_MAX)):
        assert json.dumps(patterns.anchored(expression)) in text


@pytest.mark.parametrize("method", ["PATCH", "QUERY", "TRACE", "OPTIONS", "PUT"])
def test_an_undocumented_method_on_a_documented_path_is_405_with_a_token_and_401_without(method):
    """What schemathesis's unsupported_method check expects of the document: 405 with an Allow
    header listing the documented methods (QUERY included: it is probed, and is not a 501) when
    the token is valid; 401 without one (reads declare the bearer scheme as optional)."""
    from tests.unit.test_api import bearer, call

    world = RuntimeWorld()
    tried = 0
    for template, item in DOCUMENT["paths"].items():
        if method.lower() in item:
            continue
        tried += 1
        path = (template.replace("{region}", "east").replace("{address}", "192.0.2.10")
                .replace("{id}", "svc0"))
        result = call(world, method, path, headers=bearer())
        assert result.status == 405, (path, result.body)
        allowed = {m.strip().lower() for m in (result.header("Allow") or "").split(",")}
        assert set(item) <= allowed <= set(item) | {"head", "options"}, (path, allowed)
        assert call(world, method, path).status == 401, path
        if "get" in item:
            assert {} in item["get"]["security"] and {"bearerAuth": []} in item["get"]["security"]
    assert tried > 0
