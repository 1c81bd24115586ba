"""The bounded HTTP listener (opengslb/httpserve.py) on a memory reactor and clock."""

from __future__ import annotations

import json
from typing import List, Optional, Tuple

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.web.resource import Resource
from twisted.web.server import Request

from opengslb.httpserve import BoundedChannel, BoundedSite, ListenerLimits, Refusal
from opengslb.limits import ConnectionLimiter


class Recorder(Resource):
    """A leaf that records every request it renders (and its body)."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: List[Tuple[bytes, bytes]] = []

    def render(self, request: Request) -> bytes:
        self.seen.append((request.method, request.content.read()))
        return b"ok"


class Transport(StringTransport):
    """StringTransport that also records an abort and a half-close."""

    def __init__(self, host: str) -> None:
        super().__init__(peerAddress=IPv4Address("TCP", host, 40000))
        self.aborted = False
        self.write_closed = False

    def abortConnection(self) -> None:
        self.aborted = True
        self.loseConnection()

    def loseWriteConnection(self) -> None:
        self.write_closed = True


def make_site(limits: ListenerLimits = ListenerLimits(), gate=None) -> Tuple[BoundedSite, Recorder,
                                                                               MemoryReactorClock]:
    reactor = MemoryReactorClock()
    leaf = Recorder()
    site = BoundedSite(leaf, reactor, "test", lambda: limits,
                       gate if gate is not None else (lambda request: None))
    return site, leaf, reactor


def connect(site: BoundedSite, host: str = "127.0.0.1") -> Optional[Tuple[BoundedChannel, Transport]]:
    channel = site.buildProtocol(IPv4Address("TCP", host, 40000))
    if channel is None:
        return None
    transport = Transport(host)
    channel.makeConnection(transport)
    return channel, transport


def status_of(transport: Transport) -> int:
    return int(transport.value().split(b" ", 2)[1])


def test_connections_over_the_listener_cap_are_refused_unread():
    """Past max_connections buildProtocol returns None (the socket is closed at accept)."""
    site, _, _ = make_site(ListenerLimits(max_connections=3, max_connections_per_source=10))
    held = [connect(site, f"127.0.0.{i}") for i in range(1, 4)]
    assert all(held)
    assert connect(site, "127.0.0.9") is None
    assert site.limiter.refused["listener_full"] == 1
    channel, transport = held[0]
    channel.connectionLost(None)
    assert connect(site, "127.0.0.9") is not None, "a closed connection frees its slot"


def test_connections_over_the_per_source_cap_are_refused_others_admitted():
    """One source is held to max_connections_per_source; another source still gets in."""
    site, _, _ = make_site(ListenerLimits(max_connections=100, max_connections_per_source=2))
    assert connect(site, "127.0.0.5") and connect(site, "127.0.0.5")
    assert connect(site, "127.0.0.5") is None
    assert connect(site, "127.0.0.6") is not None
    assert site.limiter.refused == {"listener_full": 0, "source_full": 1}
    assert site.limiter.held_by("127.0.0.5") == 2


def test_a_trickling_client_is_cut_off_at_the_deadline_not_kept_alive_by_bytes():
    """One header byte a second does not reset the deadline: 408 at request_timeout."""
    site, leaf, reactor = make_site(ListenerLimits(request_timeout=5.0))
    channel, transport = connect(site)
    channel.dataReceived(b"GET / HTTP/1.1\r\n")
    for _ in range(4):
        reactor.advance(1.0)
        channel.dataReceived(b"X-A: b\r\n")
    assert transport.value() == b""
    reactor.advance(1.0)
    assert status_of(transport) == 408
    assert leaf.seen == []
    reactor.advance(2.0)
    assert transport.aborted


def test_an_idle_connection_is_closed_at_the_deadline():
    """A connection that sends nothing is aborted after request_timeout."""
    site, _, reactor = make_site(ListenerLimits(request_timeout=2.0))
    _, transport = connect(site)
    reactor.advance(1.9)
    assert not transport.aborted
    reactor.advance(0.2)
    assert transport.aborted and transport.value() == b""


def test_a_kept_alive_connection_gets_a_new_deadline_per_request():
    """After a response the next request has its own full deadline."""
    site, leaf, reactor = make_site(ListenerLimits(request_timeout=2.0))
    channel, transport = connect(site)
    reactor.advance(1.5)
    channel.dataReceived(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
    assert leaf.seen == [(b"GET", b"")]
    reactor.advance(1.5)
    assert not transport.aborted
    reactor.advance(0.6)
    assert transport.aborted


def test_a_large_content_length_is_refused_before_the_body():
    """Content-Length over max_body_bytes: 413 at once; the resource never runs."""
    site, leaf, _ = make_site(ListenerLimits(max_body_bytes=1024))
    channel, transport = connect(site)
    channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n")
    assert status_of(transport) == 413
    body = json.loads(transport.value().split(b"\r\n\r\n", 1)[1])
    assert body == {"error": "the request body is larger than 1024 bytes", "code": 413}
    assert transport.write_closed
    channel.dataReceived(b"x" * 100_000)  # the rest is dropped, not buffered
    assert leaf.seen == []


def test_a_chunked_body_is_cut_off_once_it_passes_the_bound():
    """A chunked body with no length is counted as it comes and refused past the bound."""
    site, leaf, _ = make_site(ListenerLimits(max_body_bytes=1024))
    channel, transport = connect(site)
    channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(3):
        channel.dataReceived(b"200\r\n" + b"a" * 512 + b"\r\n")
    assert status_of(transport) == 413
    assert leaf.seen == []


def test_a_body_within_the_bound_reaches_the_resource():
    """A body up to max_body_bytes is delivered whole."""
    site, leaf, _ = make_site(ListenerLimits(max_body_bytes=1024))
    channel, transport = connect(site)
    channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1024\r\n\r\n" + b"b" * 1024)
    assert leaf.seen == [(b"POST", b"b" * 1024)]
    assert status_of(transport) == 200


def test_the_gate_runs_on_the_headers_and_its_refusal_skips_the_body():
    """A gate refusal is answered as JSON with its headers; the body is never read."""
    seen = []

    def gate(request: Request) -> Optional[Refusal]:
        seen.append((request.method, request.path, request.getHeader(b"x-key")))
        return Refusal(401, "no", {"WWW-Authenticate": "Bearer"})

    site, leaf, _ = make_site(gate=gate)
    channel, transport = connect(site)
    channel.dataReceived(b"PUT /a/b?c=d HTTP/1.1\r\nHost: x\r\nX-Key: k\r\nContent-Length: 5\r\n\r\n")
    assert seen == [(b"PUT", b"/a/b", b"k")]
    head, body = transport.value().split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 401 Unauthorized")
    assert b"WWW-Authenticate: Bearer" in head and b"Connection: close" in head
    assert json.loads(body) == {"error": "no", "code": 401}
    channel.dataReceived(b"hello")
    assert leaf.seen == []


def test_a_refused_client_that_keeps_sending_is_aborted():
    """After a refusal at most LINGER_BYTES more are read and dropped, then the socket is aborted."""
    site, _, reactor = make_site(gate=lambda request: Refusal(403, "no"))
    channel, transport = connect(site)
    channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999\r\n\r\n")
    channel.dataReceived(b"z" * 300_000)
    assert transport.aborted


def test_a_refused_quiet_client_is_closed_after_the_linger():
    """A refused client that stops sending is closed after LINGER_SECONDS."""
    site, _, reactor = make_site(gate=lambda request: Refusal(403, "no"))
    channel, transport = connect(site)
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert not transport.aborted
    reactor.advance(1.01)
    assert transport.aborted


def test_limiter_reads_its_caps_per_accept():
    """A reload that raises a cap applies to the next connection."""
    caps = [1, 1]
    limiter = ConnectionLimiter("t", lambda: (caps[0], caps[1]), MemoryReactorClock())
    assert limiter.acquire("a") and not limiter.acquire("b")
    caps[:] = [2, 1]
    assert limiter.acquire("b")
    limiter.release("a")
    limiter.release("b")
    assert limiter.open == 0 and limiter.held_by("a") == 0


class FakePort:
    """Records stopReading/startReading of the listening port."""

    connected = True

    def __init__(self) -> None:
        self.reading = True

    def stopReading(self) -> None:
        self.reading = False

    def startReading(self) -> None:
        self.reading = True


def speak(site: BoundedSite, host: str) -> Tuple[BoundedChannel, Transport]:
    """A connection that sends the start of a request (spending its token)."""
    connected = connect(site, host)
    assert connected is not None, "an accepted socket is served, never reset"
    connected[0].dataReceived(b"GET / HTTP/1.1\r\n")
    return connected


def test_past_the_connection_rate_the_listener_pauses_then_resumes():
    """max_connection_rate 4/s: the 5th speaking connection is served, owed, and accepting
    pauses until the debt is repaid (2 tokens at 4/s: 1/2 s); a 6th lengthens it."""
    site, _, reactor = make_site(ListenerLimits(max_connection_rate=4.0))
    site.port = FakePort()
    for i in range(4):
        speak(site, f"127.0.0.{i + 1}")
    assert site.port.reading
    speak(site, "127.0.0.9")
    assert not site.port.reading
    speak(site, "127.0.0.10")  # the rest of the batch is served too
    reactor.advance(0.49)
    assert not site.port.reading
    reactor.advance(0.02)
    assert site.port.reading, "resumed by the first pause's timer"
    speak(site, "127.0.0.11")
    assert not site.port.reading, "the 6th was owed too: paused again at once"
    reactor.advance(0.47)  # 0.04 token left at the resume, -0.96 now: (1 + 0.96) / 4 = 0.49 s
    assert not site.port.reading
    reactor.advance(0.03)
    assert site.port.reading


def test_connections_that_never_speak_cost_no_rate_token():
    """A flood's leftovers (connections that close without sending) do not slow the listener."""
    site, _, reactor = make_site(ListenerLimits(max_connection_rate=2.0))
    site.port = FakePort()
    for i in range(50):
        channel, transport = connect(site, f"127.0.1.{i + 1}")
        channel.connectionLost(None)
    assert site.port.reading and site.limiter.open == 0
    speak(site, "127.0.0.1")
    speak(site, "127.0.0.2")
    assert site.port.reading
    speak(site, "127.0.0.3")
    assert not site.port.reading


def test_fair_port_batches_follow_the_rate_budget():
    """A rate-limited factory narrows the accept batch to its budget (1..16); others get 16."""
    from opengslb.limits import ACCEPTS_PER_TURN, FairPort

    class Budgeted:
        budget = 3.7

        def accept_budget(self) -> float:
            return self.budget

    factory = Budgeted()
    port = FairPort(0, factory)  # never started: only its batch size is read
    assert port.numberAccepts == 3
    factory.budget = 0.0
    assert port.numberAccepts == 1
    factory.budget = 500.0
    assert port.numberAccepts == ACCEPTS_PER_TURN
    port.numberAccepts = 1000  # Twisted's own growth is ignored
    assert FairPort(0, object()).numberAccepts == ACCEPTS_PER_TURN
