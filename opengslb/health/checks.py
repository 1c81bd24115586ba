"""One health check of one server: http, https (treq over Twisted's Agent) or tcp.

:class:`Checker` is the only thing here other modules use.  ``check()``
returns a Deferred that fires ``None`` when the server is healthy and fails
with :class:`CheckFailed` otherwise, and always finishes within the check's
``timeout`` (enforced with ``reactor.callLater``, so a ``task.Clock`` or
``MemoryReactorClock`` drives it in tests).

Connection reuse: the default pool is **non-persistent**.  Every check opens
a fresh connection (and TLS handshake), which is what a new client that got
this address from DNS experiences; a kept-alive connection would hide a
server that no longer accepts connections, and would be shared between checks
with different TLS settings for the same ``address:port`` (the pool key does
not include SNI or verification).  It also means no idle sockets or
``callLater``\\ s linger between checks.  A caller may still inject its own pool.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, List, Optional, Tuple, cast

from hyperlink import EncodedURL
from OpenSSL import SSL
from service_identity import CertificateError, VerificationError
from service_identity.hazmat import DNS_ID, IPAddress_ID, verify_service_identity
from service_identity.pyopenssl import extract_patterns
from treq.client import HTTPClient
from twisted.internet import error as ierror
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.defer import TimeoutError as DeferTimeoutError
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IProtocolFactory,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.ssl import CertificateOptions, optionsForClientTLS
from twisted.python.failure import Failure
from twisted.web._newclient import RequestTransmissionFailed, ResponseNeverReceived
from twisted.web.client import (
    URI,
    Agent,
    HTTPConnectionPool,
    ResponseDone,
    ResponseFailed,
    _HTTP11ClientFactory,
)
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory, IPolicyForHTTPS, IResponse
from zope.interface import implementer

from opengslb.config.model import HealthCheckConfig, ServerConfig

if TYPE_CHECKING:
    from twisted.internet._sslverify import IOpenSSLTrustRoot

__all__ = ["CheckFailed", "Checker"]


class CheckFailed(Exception):
    """A check found the server unhealthy.

    :ivar reason: short human-readable cause, e.g. ``"connection refused"``,
        ``"timeout after 2s"``, ``"HTTP 503"``,
        ``"TLS handshake failed: certificate verify failed"``.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


def _is_ip_literal(name: str) -> bool:
    return isIPAddress(name) or isIPv6Address(name)


class _PreEncodedURL(EncodedURL):
    """A URL that is already in URI form, so ``to_uri()`` returns it as is.

    treq calls ``to_uri()`` on every request URL, and hyperlink's
    ``to_uri()`` IDNA-encodes the host, which rejects IPv6 literals
    (python-hyper/hyperlink#68, #188).  Check URLs are built encoded.
    """

    def to_uri(self) -> EncodedURL:
        return self


def _check_url(scheme: str, address: str, port: int, path: str) -> EncodedURL:
    """``scheme://address:port/path`` in URI form (IPv6 literals work)."""
    if not path.startswith("/"):
        path = "/" + path
    # Encode path and query with a placeholder host, then put the literal in.
    encoded = EncodedURL.from_text(f"{scheme}://host.invalid:{port}{path}").to_uri()
    return _PreEncodedURL(
        scheme=scheme,
        host=address,
        port=port,
        path=encoded.path,
        query=encoded.query,
        rooted=True,
    )


def _host_bytes(name: str) -> bytes:
    """A host name as Host-header bytes (IDNA for non-ASCII names)."""
    try:
        return name.encode("ascii")
    except UnicodeEncodeError:
        return name.encode("idna")


def _seconds(value: float) -> str:
    return f"{value:g}s"


@implementer(IOpenSSLClientConnectionCreator)
class _UnverifiedTLSCreator:
    """TLS client connections that send SNI but do not verify the certificate.

    Used for ``tls_verify: false``.  SNI is only sent for DNS names (RFC 6066
    forbids IP literals in it).
    """

    def __init__(self, server_name: Optional[str]) -> None:
        self._options = CertificateOptions()  # verify=False: VERIFY_NONE
        self._server_name: Optional[bytes] = None
        if server_name and not _is_ip_literal(server_name):
            self._server_name = server_name.encode("idna")

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        connection = self._options.clientConnectionForTLS(tlsProtocol)
        if self._server_name is not None:
            connection.set_tlsext_host_name(self._server_name)
        return connection


@implementer(IPolicyForHTTPS)
class _CheckTLSPolicy:
    """TLS policy of one https check.

    :param server_name: the name to send as SNI and to verify (the configured
        host); when empty, the netloc the agent connects to (the address).
    :param verify: verify the certificate chain and that it names
        ``server_name`` (``tls_verify: true``); otherwise accept any
        certificate.
    :param trust_root: trust anchors for verification; ``None`` = platform trust.
    """

    def __init__(self, server_name: str, verify: bool, trust_root: "Optional[IOpenSSLTrustRoot]") -> None:
        self._server_name = server_name
        self._verify = verify
        self._trust_root = trust_root

    def creatorForNetloc(self, hostname: bytes, port: int) -> IOpenSSLClientConnectionCreator:
        name = self._server_name or hostname.decode("ascii")
        if self._verify:
            return cast(IOpenSSLClientConnectionCreator, _VerifyingTLSCreator(name, self._trust_root))
        return cast(IOpenSSLClientConnectionCreator, _UnverifiedTLSCreator(name))


@implementer(IOpenSSLClientConnectionCreator)
class _VerifyingTLSCreator:
    """TLS client connections that verify the chain and that the certificate names ``server_name``.

    Twisted's ``optionsForClientTLS`` (trust, SNI) with our own check of the
    leaf certificate's name: Twisted's check lets a certificate without any
    subjectAltName through (service_identity raises ``CertificateError``, not
    ``VerificationError``; Twisted logs a traceback and accepts the
    handshake).  Here both fail the handshake, with a reason for the check.
    """

    def __init__(self, server_name: str, trust_root: "Optional[IOpenSSLTrustRoot]") -> None:
        self._options = optionsForClientTLS(server_name, trustRoot=trust_root)
        self._identity = IPAddress_ID(server_name) if _is_ip_literal(server_name) else DNS_ID(server_name)

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        connection = self._options.clientConnectionForTLS(tlsProtocol)
        identity = self._identity

        def verify(conn: SSL.Connection, cert: Any, error: int, depth: int, ok: int) -> bool:
            if depth != 0 or not ok:  # the chain is OpenSSL's; the name is checked on the leaf
                return bool(ok)
            try:
                verify_service_identity(extract_patterns(cert), [identity], [])
            except Exception:  # VerificationError, CertificateError, or worse: refuse, keep the reason
                tlsProtocol.failVerification(Failure())
                return False
            return True

        connection.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, verify)
        return connection


def _bind_address(source_address: Optional[str], family: int) -> Optional[Tuple[str, int]]:
    """``(source_address, 0)`` when it is of the server's address family, else ``None``."""
    if not source_address:
        return None
    source_family = 6 if ":" in source_address else 4
    return (source_address, 0) if source_family == family else None


def _tcp_endpoint(
    reactor: Any, address: str, port: int, timeout: float, source_address: Optional[str]
) -> TCP4ClientEndpoint | TCP6ClientEndpoint:
    """A plain TCP endpoint to an IP literal, with connect timeout and optional bind."""
    family = 6 if ":" in address else 4
    bind = _bind_address(source_address, family)
    endpoint_type = TCP6ClientEndpoint if family == 6 else TCP4ClientEndpoint
    return endpoint_type(reactor, address, port, timeout=timeout, bindAddress=bind)


@implementer(IAgentEndpointFactory)
class _CheckEndpointFactory:
    """Endpoints for an Agent that only ever talks to one checked server.

    Connects straight to the IP literal in the URI (no name resolution), with
    the check's connect timeout and source address; https is wrapped in TLS
    created by ``policy``.
    """

    def __init__(
        self,
        reactor: Any,
        policy: _CheckTLSPolicy,
        timeout: float,
        source_address: Optional[str],
    ) -> None:
        self._reactor = reactor
        self._policy = policy
        self._timeout = timeout
        self._source_address = source_address

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        host = uri.host.decode("ascii")
        endpoint = cast(
            IStreamClientEndpoint,
            _tcp_endpoint(self._reactor, host, uri.port, self._timeout, self._source_address),
        )
        if uri.scheme == b"https":
            return wrapClientTLS(self._policy.creatorForNetloc(uri.host, uri.port), endpoint)
        return endpoint


class _ConnectProbe(Protocol):
    """Closes the connection as soon as it is made; ``closed`` fires on connectionLost."""

    def __init__(self) -> None:
        self.closed: "Deferred[None]" = Deferred()

    def connectionMade(self) -> None:
        transport: Any = self.transport
        transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not self.closed.called:
            self.closed.callback(None)


class _ProbeFactory(Factory):
    """Builds the one probe of one tcp check."""

    noisy = False  # no "Starting factory" line per check

    def __init__(self, probe: _ConnectProbe) -> None:
        self._probe = probe

    def buildProtocol(self, addr: Any) -> _ConnectProbe:
        self._probe.factory = self
        return self._probe


class _DiscardBody(Protocol):
    """Reads a response body into the void; closes the connection when cancelled."""

    def __init__(self) -> None:
        self.finished: "Deferred[None]" = Deferred(self._cancel)

    def _cancel(self, _: "Deferred[None]") -> None:
        # treq.collect's Deferred cannot be cancelled: a server streaming an
        # endless body would keep the connection after the check timed out.
        transport: Any = self.transport
        if transport is not None:
            transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        pass

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.finished.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self.finished.callback(None)
        else:
            self.finished.errback(reason)


def _discard_body(response: IResponse) -> "Deferred[None]":
    """Read and drop ``response``'s body; fires ``None`` at its end (cancellable)."""
    if response.length == 0:
        return succeed(None)
    protocol = _DiscardBody()
    deliver: Any = response.deliverBody
    deliver(protocol)
    return protocol.finished


def _tls_detail(exc: SSL.Error) -> str:
    """OpenSSL's reason strings, e.g. ``certificate verify failed``."""
    parts: List[str] = []
    for arg in exc.args:
        items = arg if isinstance(arg, list) else [arg]
        for item in items:
            # OpenSSL errors are (library, function, reason) tuples.
            parts.append(str(item[-1]) if isinstance(item, tuple) and item else str(item))
    return "; ".join(dict.fromkeys(p for p in parts if p)) or "TLS error"


def _inner_failures(exc: BaseException) -> List[BaseException]:
    """Unwrap the web client's aggregate errors into their causes."""
    if isinstance(exc, (ResponseNeverReceived, ResponseFailed, RequestTransmissionFailed)):
        found: List[BaseException] = []
        for reason in exc.reasons:
            value = reason.value if isinstance(reason, Failure) else reason
            if isinstance(value, BaseException):
                found.extend(_inner_failures(value))
        return found or [exc]
    return [exc]


def _reason_for(exc: BaseException, timeout: float) -> str:
    """The short reason for a check's failure ``exc``."""
    if isinstance(exc, CheckFailed):
        return exc.reason
    causes = _inner_failures(exc)
    # The most telling cause first: TLS and refusals beat "connection lost".
    for cause in causes:
        if isinstance(cause, SSL.Error):
            return f"TLS handshake failed: {_tls_detail(cause)}"
        if isinstance(cause, VerificationError):
            return "TLS handshake failed: certificate does not match the host name"
        if isinstance(cause, CertificateError):
            return "TLS handshake failed: the certificate names no host (no subjectAltName)"
    for cause in causes:
        if isinstance(
            cause,
            (DeferTimeoutError, ierror.TimeoutError, CancelledError, ierror.ConnectingCancelledError),
        ):
            # The only cancellations inside a check are its own timeouts.
            return f"timeout after {_seconds(timeout)}"
        if isinstance(cause, ierror.ConnectionRefusedError):
            return "connection refused"
    cause = causes[0]
    if isinstance(cause, (ierror.ConnectionDone, ierror.ConnectionLost)):
        return "connection closed before a response"
    if isinstance(cause, ierror.ConnectError):
        return f"connect failed: {str(cause).rstrip('.') or type(cause).__name__}"
    return f"{type(cause).__name__}: {cause}"


class _QuietClientFactory(_HTTP11ClientFactory):
    """The pool's connection factory without "Starting/Stopping factory" log lines per check."""

    noisy = False


class _QuietPool(HTTPConnectionPool):
    """A connection pool whose per-connection factories do not log."""

    _factory = _QuietClientFactory


class Checker:
    """Runs health checks, dispatching on ``HealthCheckConfig.type``.

    :param reactor: provides ``IReactorTCP`` and ``IReactorTime``; every
        connection and timer goes through it.
    :param source_address: when set, checks to servers of the same address
        family connect from this address (cluster mode: each node's checks
        leave from its advertise address).  Servers of the other family are
        checked from the default source.
    :param pool: HTTP connection pool for http/https checks; default: a
        non-persistent pool of this checker (see the module docstring).
    :param trust_root: trust anchors for ``tls_verify: true``; ``None`` means
        the platform's trust store.
    """

    def __init__(
        self,
        reactor: Any,
        source_address: Optional[str] = None,
        pool: Optional[HTTPConnectionPool] = None,
        *,
        trust_root: "Optional[IOpenSSLTrustRoot]" = None,
    ) -> None:
        self._reactor = reactor
        self._source_address = source_address or None
        self._pool = pool if pool is not None else _QuietPool(reactor, persistent=False)
        self._trust_root = trust_root

    @property
    def source_address(self) -> Optional[str]:
        return self._source_address

    def check(self, server: ServerConfig, settings: HealthCheckConfig) -> "Deferred[None]":
        """Check ``server`` once with ``settings``.

        :return: a Deferred that fires ``None`` when the server is healthy and
            fails with :class:`CheckFailed` otherwise (never with another
            exception type); it fires within ``settings.timeout`` seconds of
            reactor time.  Cancelling it aborts the check.
        """
        timeout = settings.timeout
        kind = settings.type
        try:
            if kind in ("http", "https"):
                d = self._http(server, settings)
            elif kind == "tcp":
                d = self._tcp(server, settings)
            else:
                raise CheckFailed(f"unsupported check type {kind!r}")
        except Exception as exc:  # becomes a CheckFailed below
            d = Deferred()
            d.errback(Failure(exc))
        d.addTimeout(timeout, self._reactor)

        def to_check_failed(failure: Failure) -> Failure:
            exc = failure.value
            assert exc is not None
            return Failure(CheckFailed(_reason_for(exc, timeout)))

        d.addErrback(to_check_failed)
        return d

    def _http(self, server: ServerConfig, settings: HealthCheckConfig) -> "Deferred[None]":
        scheme = settings.type
        host_name = settings.host or server.host
        policy = _CheckTLSPolicy(host_name, settings.tls_verify, self._trust_root)
        endpoints = _CheckEndpointFactory(self._reactor, policy, settings.timeout, self._source_address)
        # One Agent and client per check: they are cheap, and keep cookies
        # and TLS settings from leaking between checks.
        agent = Agent.usingEndpointFactory(self._reactor, endpoints, pool=self._pool)
        client = HTTPClient(agent)
        url = _check_url(scheme, server.address, server.port, settings.path)
        headers = Headers({b"Host": [_host_bytes(host_name)]}) if host_name else None
        d = client.get(
            url,
            headers=headers,
            allow_redirects=False,
            unbuffered=True,
            reactor=self._reactor,
            timeout=settings.timeout,
        )

        def got_response(response: IResponse) -> "Deferred[None]":
            code = response.code

            def judge(_: None) -> None:
                if not 200 <= code < 300:
                    raise CheckFailed(f"HTTP {code}")

            # Read and discard the body so the exchange completes cleanly
            # (and a persistent pool, if injected, can reuse the connection).
            return _discard_body(response).addCallback(judge)

        return d.addCallback(got_response)

    def _tcp(self, server: ServerConfig, settings: HealthCheckConfig) -> "Deferred[None]":
        endpoint = _tcp_endpoint(
            self._reactor, server.address, server.port, settings.timeout, self._source_address
        )
        probe = _ConnectProbe()
        connecting = endpoint.connect(cast(IProtocolFactory, _ProbeFactory(probe)))
        state: dict[str, Any] = {"connecting": connecting}

        def cancel(d: "Deferred[None]") -> None:
            pending = state.get("connecting")
            if pending is not None:
                pending.cancel()
            elif probe.transport is not None:
                transport: Any = probe.transport
                transport.abortConnection()

        result: "Deferred[None]" = Deferred(cancel)

        def connected(_: Any) -> None:
            state["connecting"] = None
            # Healthy once connected; finish when our side has closed, so
            # nothing of the check outlives its Deferred.
            probe.closed.addBoth(lambda _r: None if result.called else result.callback(None))

        def not_connected(failure: Failure) -> None:
            state["connecting"] = None
            if not result.called:
                result.errback(failure)

        connecting.addCallbacks(connected, not_connected)
        return result

    def close(self) -> "Deferred[None]":
        """Close the connection pool's cached connections; fires when they are closed."""
        return self._pool.closeCachedConnections()
