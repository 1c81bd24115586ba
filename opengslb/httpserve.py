"""Serving a twisted.web resource on a configured address (API and metrics), bounded.

Every HTTP listener of the process is bounded the same way (DESIGN.md 14):

* **connections** — at most ``max_connections`` open, and at most
  ``max_connections_per_source`` from one peer address; a connection over
  either cap is closed as it is accepted, before anything is read
  (:class:`opengslb.limits.ConnectionLimiter`).  Connections that send
  something are let in at most ``max_connection_rate`` a second (the same
  number as a burst; one closed at a cap, or one that closes without a
  word, costs nothing), and at most
  :data:`~opengslb.limits.ACCEPTS_PER_TURN` are accepted per reactor turn
  (fewer when the rate's budget is low); past the rate the listener stops
  accepting for a moment and new connections wait in the kernel's backlog,
  so a flood costs DNS answering a bounded share of the reactor;
* **time** — a request's line, headers and body must all arrive within
  ``request_timeout`` of its first byte (of the connection, for the first
  request; of the previous response, on a kept-alive connection).  It is a
  deadline, not an idle timer: a client trickling one byte a second is cut
  off just like a silent one (408 when part of a request came, else a plain
  close);
* **size** — request line plus headers at most 16 KiB (Twisted's own
  bound), the body at most ``max_body_bytes``: a larger ``Content-Length``
  is answered 413 before the body is read, a chunked body is cut off with
  413 as soon as it passes the bound;
* **admission before the body** — when the headers are complete the
  listener's *gate* (source network, method, token) runs; a refusal is
  answered at once and the body is never read (``Connection: close``; the
  rest of the client's bytes are discarded for at most a second so the
  reply is not lost to a TCP reset, then the socket is closed).

Replies made here are JSON, ``{"error": ..., "code": N}`` as the API's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

from twisted.internet.interfaces import IDelayedCall, IListeningPort, IReactorTCP
from twisted.web.http import RESPONSES, HTTPChannel, datetimeToString
from twisted.web.resource import IResource
from twisted.web.server import Request, Site

from opengslb.config.model import ListenAddress
from opengslb.limits import AcceptRate, ConnectionLimiter, listen_fair

#: Seconds the rest of a refused request is read and dropped before the socket closes.
LINGER_SECONDS = 1.0
#: Bytes of a refused request read and dropped before the socket closes anyway.
LINGER_BYTES = 256 * 1024



@dataclass(frozen=True)
class ListenerLimits:
    """The bounds of one HTTP listener (from ``api.*`` or ``metrics.*``)."""

    max_connections: int = 128
    max_connections_per_source: int = 32
    request_timeout: float = 10.0
    max_body_bytes: int = 64 * 1024
    max_connection_rate: float = 500.0  # new connections per second (and the burst)


@dataclass(frozen=True)
class Refusal:
    """A reply the gate makes before the body is read: JSON error ``status``."""

    status: int
    message: str
    headers: Mapping[str, str] = field(default_factory=dict)

    def encode(self, now: float) -> bytes:
        """The whole HTTP/1.1 response, closing the connection."""
        body = json.dumps({"error": self.message, "code": self.status}).encode("utf-8")
        lines = [b"HTTP/1.1 %d %s" % (self.status, RESPONSES.get(self.status, b"Error")),
                 b"Date: " + datetimeToString(now),
                 b"Content-Type: application/json",
                 b"Cache-Control: no-store",
                 b"Content-Length: %d" % len(body),
                 b"Connection: close"]
        lines += [f"{name}: {value}".encode("latin-1") for name, value in self.headers.items()]
        return b"\r\n".join(lines) + b"\r\n\r\n" + body


#: What a listener checks when a request's headers are complete: None admits it.
Gate = Callable[[Request], Optional[Refusal]]


def admit_all(request: Request) -> Optional[Refusal]:
    """The gate of a listener without access control."""
    return None


class BoundedChannel(HTTPChannel):
    """An HTTP/1.1 channel with a per-request deadline, a body bound and a gate."""

    site: "BoundedSite"

    def __init__(self) -> None:
        super().__init__()
        self._deadline: Optional[IDelayedCall] = None
        self._lingering: Optional[IDelayedCall] = None
        self._in_request = False
        self._counted = False
        self._refused = False
        self._body_seen = 0
        self._source = ""

    # -- the deadline ---------------------------------------------------------

    def connectionMade(self) -> None:
        super().connectionMade()
        self._start_deadline()

    def _start_deadline(self) -> None:
        self._stop_deadline()
        limit = self.site.limits().request_timeout
        self._deadline = self.site.reactor.callLater(limit, self._deadline_passed)

    def _stop_deadline(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _deadline_passed(self) -> None:
        self._deadline = None
        if self._in_request:
            self._refuse(Refusal(408, "the request did not arrive in time (request_timeout)"))
        else:
            self.transport.abortConnection()  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        if data:
            if not self._counted:
                # The connection's first bytes spend its token of the listener's rate; a
                # connection that closes unheard (a flood's leftovers) costs none.
                self._counted = True
                self.site.connection_spoke()
            self._in_request = True
        super().dataReceived(data)

    def lineReceived(self, line: bytes) -> None:
        if not self._refused:
            super().lineReceived(line)

    def allContentReceived(self) -> None:
        if self._refused:
            return
        self._stop_deadline()
        self._in_request = False
        self._body_seen = 0
        super().allContentReceived()

    def requestDone(self, request: Request) -> None:
        super().requestDone(request)
        if self.persistent and self.transport is not None and not self._lingering:
            self._start_deadline()

    # -- size and admission ---------------------------------------------------

    def allHeadersReceived(self) -> None:
        super().allHeadersReceived()
        request = self.requests[-1]
        # What Request.requestReceived sets once the body is in; the gate needs it now.
        request.method, request.uri, request.clientproto = self._command, self._path, self._version
        request.path = self._path.split(b"?", 1)[0]
        refusal = self.site.gate(request)
        if refusal is not None:
            self._refuse(refusal)
            return
        limit = self.site.limits().max_body_bytes
        if self.length is not None and self.length > limit:
            self._refuse(Refusal(413, f"the request body is larger than {limit} bytes"))

    def rawDataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        if not self._handlingRequest and self._transferDecoder is not None:
            self._body_seen += len(data)
            limit = self.site.limits().max_body_bytes
            if self._body_seen > limit + 64:  # + chunk framing
                self._refuse(Refusal(413, f"the request body is larger than {limit} bytes"))
                return
        super().rawDataReceived(data)

    def _refuse(self, refusal: Refusal) -> None:
        """Answer ``refusal`` now, drop what else the client sends, then close."""
        self._stop_deadline()
        transport: Any = self.transport
        if transport is None or self._refused:
            return
        self._refused = True
        transport.write(refusal.encode(self.site.reactor.seconds()))
        self.setTimeout(None)
        budget = [LINGER_BYTES]

        def discard(data: bytes) -> None:
            budget[0] -= len(data)
            if budget[0] < 0:
                transport.abortConnection()

        self.dataReceived = discard  # type: ignore[method-assign]
        self.persistent = False
        try:
            transport.loseWriteConnection()
        except (AttributeError, NotImplementedError):
            transport.loseConnection()
        self._lingering = self.site.reactor.callLater(LINGER_SECONDS, transport.abortConnection)

    def connectionLost(self, reason: Any = None) -> None:
        self._stop_deadline()
        if self._lingering is not None and self._lingering.active():
            self._lingering.cancel()
        self.site.limiter.release(self._source)
        if self.requests:
            super().connectionLost(reason)
        else:
            self.setTimeout(None)


class BoundedSite(Site):
    """A Site with connection caps, request bounds and a gate; no access log, no HTML tracebacks.

    :param resource: the root resource.
    :param name: the listener's name in logs (``api``, ``metrics``).
    :param limits: returns the current :class:`ListenerLimits` (read per
        connection and per request, so a reload applies to the next one).
    :param gate: admits or refuses a request once its headers are in.
    """

    noisy = False
    displayTracebacks = False
    protocol = BoundedChannel  # type: ignore[assignment]  # HTTP/1.1 only: no h2 negotiation

    def __init__(self, resource: IResource, reactor: Any, name: str,
                 limits: Callable[[], ListenerLimits], gate: Gate = admit_all) -> None:
        super().__init__(resource, reactor=reactor)
        self.limits = limits
        self.gate = gate
        self.limiter = ConnectionLimiter(
            name, lambda: (limits().max_connections, limits().max_connections_per_source), reactor)
        self.rate = AcceptRate(lambda: limits().max_connection_rate, reactor)
        self.port: Optional[Any] = None  # set by listen_http: paused when the rate is spent
        self._resume: Optional[IDelayedCall] = None

    def buildProtocol(self, addr: Any) -> Optional[BoundedChannel]:  # type: ignore[override]
        source = str(getattr(addr, "host", ""))
        if not self.limiter.acquire(source):
            return None  # the port closes the socket unread (cheap: costs no rate token)
        channel: BoundedChannel = super().buildProtocol(addr)
        channel._source = source
        channel.timeOut = None  # the request deadline replaces the idle timer
        return channel

    def connection_spoke(self) -> None:
        """A connection sent its first bytes: spend a token; past the rate, pause accepting.

        The connection itself is served (closing it would reset a client that did
        nothing wrong); its token is owed, and the listener accepts nothing new
        until the debt is repaid.
        """
        if not self.rate.take():
            self._pause_accepting()

    def accept_budget(self) -> float:
        """How many connections the rate allows now (read by :class:`opengslb.limits.FairPort`)."""
        return self.rate.available()

    def _pause_accepting(self) -> None:
        """Leave new connections in the backlog until the rate allows one more."""
        if self.port is None or (self._resume is not None and self._resume.active()):
            return
        self.port.stopReading()
        self._resume = self.reactor.callLater(self.rate.wait(), self._resume_accepting)

    def _resume_accepting(self) -> None:
        self._resume = None
        if self.port is not None and self.port.connected:
            self.port.startReading()

    def stopFactory(self) -> None:
        if self._resume is not None and self._resume.active():
            self._resume.cancel()
        super().stopFactory()

    def log(self, request: Request) -> None:  # type: ignore[override]
        pass


def listen_http(reactor: IReactorTCP, address: ListenAddress, site: BoundedSite) -> IListeningPort:
    """Serve ``site`` over HTTP on ``address`` (``host == ""``: every IPv4 address).

    Raises ``twisted.internet.error.CannotListenError`` when the port cannot be bound.
    """
    site.port = listen_fair(reactor, address.port, site, address.host)
    return site.port
