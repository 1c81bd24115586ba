"""The API gate in memory: authorization by default, method spellings, token scopes, body bounds."""

from __future__ import annotations

import pytest
from twisted.internet.address import IPv4Address
from twisted.web.test.requesthelper import DummyRequest

from opengslb.api.app import MAX_JSON_DEPTH, APIError, parse_json_object
from tests.unit.test_api import TOKEN, RuntimeWorld, World, api_settings, bearer, call

DRAIN = "drain-only-token"


def scoped_world() -> RuntimeWorld:
    return RuntimeWorld(api_settings(tokens=(TOKEN,), drain_tokens=(DRAIN,)))


def gate_request(method: bytes, peer: str = "127.0.0.1", token: str = "") -> DummyRequest:
    request = DummyRequest([b"api", b"v1", b"config", b"reload"])
    request.method = method
    request.client = IPv4Address("TCP", peer, 40000)
    if token:
        request.requestHeaders.setRawHeaders(b"authorization", [f"Bearer {token}".encode()])
    return request


@pytest.mark.parametrize("method", [b"put", b"Put", b"post", b"delete", b"patch", b"FOO", b"GeT"])
def test_unknown_method_spellings_are_501_before_any_route(method):
    """HTTP methods are case-sensitive: `put` is not PUT; with or without a token, 501
    (the listener's gate; treq upper-cases methods, so this is tested on the gate itself)."""
    world = World()
    for token in ("", TOKEN):
        refusal = world.api.gate(gate_request(method, token=token))
        assert refusal is not None and refusal.status == 501, method
        assert repr(method.decode()) in refusal.message
    assert world.api.gate(gate_request(b"POST", token=TOKEN)) is None
    assert world.api.gate(gate_request(b"GET")) is None
    refusal = world.api.gate(gate_request(b"GET", peer="192.0.2.1"))
    assert refusal is not None and refusal.status == 403


@pytest.mark.parametrize("method, path", [
    ("POST", "/api/v1/nope"), ("DELETE", "/api/v1/live"), ("OPTIONS", "/api/v1/live"),
    ("PATCH", "/api/v1/overrides/east/192.0.2.10"), ("TRACE", "/"),
])
def test_every_method_but_get_and_head_needs_a_token_on_every_path(method, path):
    """Authorization by default: unknown paths and unserved methods are 401 without a token."""
    result = call(World(), method, path)
    assert result.status == 401 and result.header("WWW-Authenticate") == "Bearer"


def test_drain_scope_may_drain_but_not_reload():
    """A drain token sets an override (200) but gets 403 on reload; admin may do both."""
    world = scoped_world()
    result = world.send("PUT", "/api/v1/overrides/east/192.0.2.10", {"weight": 0, "reason": "r"},
                        token=DRAIN)
    assert result.status == 200
    result = call(world, "POST", "/api/v1/config/reload", headers=bearer(DRAIN))
    assert result.status == 403
    assert result.body["error"].endswith("needs scope 'admin'")
    assert world.reloader.calls == 0
    assert call(world, "POST", "/api/v1/config/reload", headers=bearer(TOKEN)).status == 200
    assert world.reloader.calls == 1


def test_a_body_over_max_body_bytes_is_413():
    """The in-memory path enforces api.max_body_bytes too (the listener does it before reading)."""
    world = RuntimeWorld(api_settings(max_body_bytes=1024))
    result = world.send("PUT", "/api/v1/overrides/east/192.0.2.10",
                        raw=b'{"reason": "' + b"x" * 2000 + b'", "weight": 0}')
    assert result.status == 413


@pytest.mark.parametrize("raw, fragment", [
    (b"[" * 3000 + b"]" * 3000, "nested more than"),
    (b'{"a":' * (MAX_JSON_DEPTH + 1) + b"1" + b"}" * (MAX_JSON_DEPTH + 1), "nested more than"),
    (b'{"weight": ' + b"1" * 400 + b"}", "longer than 32"),
    (b'{"weight": 1e400}', "out of range"),
    (b'{"weight": -Infinity}', "is not JSON"),
    (b'{"reason": "\xff"}', "not valid JSON"),
    (b"[]", "must be a JSON object"),
])
def test_hostile_json_is_a_400_never_an_exception(raw, fragment):
    """Depth, number size, non-finite numbers and bad encodings are 400s naming the problem."""
    with pytest.raises(APIError) as info:
        parse_json_object(raw)
    assert info.value.reply.status == 400 and fragment in info.value.reply.body["error"]


def test_json_at_the_bounds_is_accepted():
    """Exactly MAX_JSON_DEPTH levels and 32-character numbers are fine."""
    deep = b'{"a":' * (MAX_JSON_DEPTH - 1) + b"[1]" + b"}" * (MAX_JSON_DEPTH - 1)
    assert parse_json_object(deep)
    assert parse_json_object(b'{"n": ' + b"1" * 32 + b"}") == {"n": int("1" * 32)}
