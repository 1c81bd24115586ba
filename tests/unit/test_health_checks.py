"""Tests for opengslb.health.checks: the real Checker.

Timeouts and endpoint parameters are driven on a ``MemoryReactorClock``;
behaviour against servers uses real loopback listeners started in-test
(``twisted.trial`` TestCases, which return Deferreds), each cleaned up:
listening ports stopped and every accepted connection closed.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
from typing import Any, List, Optional, Tuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from twisted.internet import reactor as global_reactor
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks
from twisted.internet.interfaces import IListeningPort, IOpenSSLServerConnectionCreator
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import Certificate, trustRootFromCertificates
from twisted.internet.testing import MemoryReactorClock
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from zope.interface import implementer

from opengslb.config.model import HealthCheckConfig, ServerConfig
from opengslb.health.checks import Checker, CheckFailed

reactor: Any = global_reactor

TLS_NAME = "health.example.test"


# -- helpers ---------------------------------------------------------------


class _TrackedProtocol(ProtocolWrapper):
    def connectionMade(self) -> None:
        self.lost: Deferred[None] = Deferred()
        super().connectionMade()

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        super().connectionLost(reason)
        self.lost.callback(None)


class TrackingFactory(WrappingFactory):
    """Wraps a server factory and remembers every connection, to close them at cleanup."""

    protocol = _TrackedProtocol

    def __init__(self, wrapped: Factory) -> None:
        super().__init__(wrapped)
        self.all: List[_TrackedProtocol] = []
        self.peers: List[str] = []

    def buildProtocol(self, addr: Any) -> Any:
        proto = super().buildProtocol(addr)
        self.all.append(proto)
        self.peers.append(addr.host)
        return proto

    def close_all(self) -> Deferred[Any]:
        waits = []
        for proto in self.all:
            if not proto.lost.called:
                proto.transport.abortConnection()
            waits.append(proto.lost)
        return DeferredList(waits)


class HealthResource(Resource):
    """Answers every path: /status/NNN with that code, /hang never, else 200."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.hosts: List[Optional[bytes]] = []
        self.paths: List[bytes] = []

    def render_GET(self, request: Request) -> Any:
        self.hosts.append(request.getHeader(b"host"))
        self.paths.append(request.uri)
        if request.path == b"/hang":
            return NOT_DONE_YET
        if request.path == b"/endless":
            request.write(b"x" * 1000)  # headers and some body, then nothing more
            return NOT_DONE_YET
        if request.path.startswith(b"/status/"):
            request.setResponseCode(int(request.path.rsplit(b"/", 1)[1]))
        return b"x" * 70000  # a body bigger than one read


def make_cert(name: str, san: bool = True) -> Tuple[Any, Any, bytes]:
    """A self-signed certificate for DNS ``name`` and IP 127.0.0.1: (key, cert, pem).

    ``san=False``: the name only in the subject's CN, no subjectAltName (as
    old appliances issue them; RFC 6125 verifiers do not accept it).
    """
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    )
    if san:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    cert = builder.sign(key, hashes.SHA256())
    return key, cert, cert.public_bytes(serialization.Encoding.PEM)


@implementer(IOpenSSLServerConnectionCreator)
class SNIRecordingServerTLS:
    """Server TLS with one certificate, recording the SNI each client sent."""

    def __init__(self, key: Any, cert: Any) -> None:
        self.server_names: List[Optional[bytes]] = []
        ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
        ctx.use_certificate(cert)
        ctx.use_privatekey(key)
        ctx.set_tlsext_servername_callback(lambda conn: self.server_names.append(conn.get_servername()))
        self._ctx = ctx

    def serverConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        return SSL.Connection(self._ctx, None)


def ipv6_loopback_available() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


# -- deterministic tests on a memory reactor --------------------------------


class MemoryReactorTests(SynchronousTestCase):
    """Timeouts and connection parameters, on MemoryReactorClock."""

    def failure_reason(self, d: Deferred[None]) -> str:
        return self.failureResultOf(d, CheckFailed).value.reason

    def test_http_times_out_within_timeout(self) -> None:
        """An http check that never connects fails with 'timeout after Ns' at the timeout."""
        clock = MemoryReactorClock()
        checker = Checker(clock)
        d = checker.check(ServerConfig("192.0.2.1", 8080), HealthCheckConfig(timeout=2.0))
        host, port, _factory, timeout, bind = clock.tcpClients[0]
        self.assertEqual((host, port, timeout, bind), ("192.0.2.1", 8080, 2.0, None))
        clock.advance(1.99)
        self.assertNoResult(d)
        clock.advance(0.01)
        self.assertEqual(self.failure_reason(d), "timeout after 2s")
        self.assertTrue(clock.connectors[0].stoppedConnecting)

    def test_tcp_times_out_within_timeout(self) -> None:
        """A tcp check that never connects fails at its timeout."""
        clock = MemoryReactorClock()
        d = Checker(clock).check(ServerConfig("192.0.2.1", 22), HealthCheckConfig(type="tcp", timeout=0.5))
        self.assertEqual(clock.tcpClients[0][3], 0.5)
        clock.advance(0.5)
        self.assertEqual(self.failure_reason(d), "timeout after 0.5s")

    def test_source_address_binds_same_family(self) -> None:
        """source_address is bound for servers of its family, not for the other family."""
        clock = MemoryReactorClock()
        checker = Checker(clock, source_address="10.1.1.1")
        checks = [
            checker.check(ServerConfig("192.0.2.1", 80), HealthCheckConfig(type="http")),
            checker.check(ServerConfig("192.0.2.2", 443), HealthCheckConfig(type="https")),
            checker.check(ServerConfig("192.0.2.3", 22), HealthCheckConfig(type="tcp")),
            checker.check(ServerConfig("2001:db8::1", 22), HealthCheckConfig(type="tcp")),
        ]
        binds = [(c[0], c[4]) for c in clock.tcpClients]
        self.assertEqual(
            binds,
            [
                ("192.0.2.1", ("10.1.1.1", 0)),
                ("192.0.2.2", ("10.1.1.1", 0)),
                ("192.0.2.3", ("10.1.1.1", 0)),
                ("2001:db8::1", None),
            ],
        )
        clock.advance(5)
        for d in checks:
            self.assertEqual(self.failure_reason(d), "timeout after 5s")

    def test_ipv6_server_connects_to_literal(self) -> None:
        """An IPv6 server is reached over TCP6 at its literal address."""
        clock = MemoryReactorClock()
        d = Checker(clock, source_address="2001:db8::99").check(
            ServerConfig("2001:db8::1", 8443), HealthCheckConfig(type="https")
        )
        self.assertEqual(clock.tcpClients[0][0:2], ("2001:db8::1", 8443))
        self.assertEqual(clock.tcpClients[0][4], ("2001:db8::99", 0))
        clock.advance(5)
        self.assertEqual(self.failure_reason(d), "timeout after 5s")

    def test_unknown_type_fails(self) -> None:
        """An unsupported check type fails the check instead of raising."""
        d = Checker(MemoryReactorClock()).check(ServerConfig("192.0.2.1"), HealthCheckConfig(type="icmp"))
        self.assertIn("unsupported check type", self.failure_reason(d))

    def test_close_closes_pool(self) -> None:
        """close() fires once the pool is closed."""
        self.successResultOf(Checker(MemoryReactorClock()).close())


# -- real loopback servers --------------------------------------------------


class LoopbackTests(TestCase):
    """The Checker against real servers on 127.0.0.1."""

    def setUp(self) -> None:
        self.checker = Checker(reactor)
        self.addCleanup(self.checker.close)

    def listen(self, factory: Factory, interface: str = "127.0.0.1") -> Tuple[TrackingFactory, int]:
        tracking = TrackingFactory(factory)
        port: IListeningPort = reactor.listenTCP(0, tracking, interface=interface)

        @inlineCallbacks
        def cleanup() -> Any:
            yield port.stopListening()
            yield tracking.close_all()

        self.addCleanup(cleanup)
        return tracking, port.getHost().port

    def web(self, interface: str = "127.0.0.1") -> Tuple[HealthResource, TrackingFactory, int]:
        resource = HealthResource()
        tracking, port = self.listen(Site(resource, timeout=None), interface)
        return resource, tracking, port

    @inlineCallbacks
    def free_port(self) -> Any:
        """A loopback port with nothing listening on it."""
        port = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
        number = port.getHost().port
        yield port.stopListening()
        return number

    @inlineCallbacks
    def assert_fails(self, d: Deferred[None], reason: str) -> Any:
        failure = yield self.assertFailure(d, CheckFailed)
        self.assertEqual(failure.reason, reason)

    @inlineCallbacks
    def test_http_200_is_healthy(self) -> Any:
        """A 2xx answer makes the check pass; the path is requested and the body read."""
        resource, _, port = self.web()
        result = yield self.checker.check(
            ServerConfig("127.0.0.1", port), HealthCheckConfig(path="/healthz?deep=1")
        )
        self.assertIsNone(result)
        self.assertEqual(resource.paths, [b"/healthz?deep=1"])

    @inlineCallbacks
    def test_http_503_fails(self) -> Any:
        """A non-2xx answer fails with 'HTTP <code>'."""
        _, _, port = self.web()
        yield self.assert_fails(
            self.checker.check(ServerConfig("127.0.0.1", port), HealthCheckConfig(path="/status/503")),
            "HTTP 503",
        )

    @inlineCallbacks
    def test_http_redirect_is_not_followed(self) -> Any:
        """A 3xx answer is a failure, not followed."""
        resource, _, port = self.web()
        yield self.assert_fails(
            self.checker.check(ServerConfig("127.0.0.1", port), HealthCheckConfig(path="/status/302")),
            "HTTP 302",
        )
        self.assertEqual(len(resource.paths), 1)

    @inlineCallbacks
    def test_http_connection_refused(self) -> Any:
        """Nothing listening fails with 'connection refused'."""
        port = yield self.free_port()
        yield self.assert_fails(
            self.checker.check(ServerConfig("127.0.0.1", port), HealthCheckConfig()),
            "connection refused",
        )

    @inlineCallbacks
    def test_http_no_answer_times_out(self) -> Any:
        """A server that accepts but never answers fails with the timeout reason."""
        resource, _, port = self.web()
        start = reactor.seconds()
        yield self.assert_fails(
            self.checker.check(ServerConfig("127.0.0.1", port), HealthCheckConfig(path="/hang", timeout=0.2)),
            "timeout after 0.2s",
        )
        self.assertLess(reactor.seconds() - start, 1.0)
        self.assertEqual(resource.paths, [b"/hang"])

    @inlineCallbacks
    def test_http_endless_body_times_out_and_closes(self) -> Any:
        """A body that never ends times the check out, and the checker closes the connection."""
        _, tracking, port = self.web()
        yield self.assert_fails(
            self.checker.check(
                ServerConfig("127.0.0.1", port), HealthCheckConfig(path="/endless", timeout=0.2)
            ),
            "timeout after 0.2s",
        )
        yield tracking.all[0].lost  # closed by the checker, not by cleanup

    @inlineCallbacks
    def test_host_header_from_settings_then_server(self) -> Any:
        """Host is settings.host, else server.host, else the address:port."""
        resource, _, port = self.web()
        yield self.checker.check(
            ServerConfig("127.0.0.1", port, host="srv.example"), HealthCheckConfig(host="chk.example")
        )
        yield self.checker.check(ServerConfig("127.0.0.1", port, host="srv.example"), HealthCheckConfig())
        yield self.checker.check(ServerConfig("127.0.0.1", port), HealthCheckConfig())
        self.assertEqual(resource.hosts, [b"chk.example", b"srv.example", f"127.0.0.1:{port}".encode()])

    @inlineCallbacks
    def test_http_ipv6(self) -> Any:
        """An IPv6 server is checked at its bracketed literal."""
        if not ipv6_loopback_available():
            self.skipTest("no IPv6 loopback")
        resource, _, port = self.web(interface="::1")
        yield self.checker.check(ServerConfig("::1", port), HealthCheckConfig())
        self.assertEqual(resource.hosts, [f"[::1]:{port}".encode()])

    @inlineCallbacks
    def test_source_address_is_used(self) -> Any:
        """With source_address the check connects from that address."""
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.2", 0))
        except OSError:
            self.skipTest("cannot bind 127.0.0.2")
        checker = Checker(reactor, source_address="127.0.0.2")
        self.addCleanup(checker.close)
        _, tracking, port = self.web()
        yield checker.check(ServerConfig("127.0.0.1", port), HealthCheckConfig())
        yield checker.check(ServerConfig("127.0.0.1", port), HealthCheckConfig(type="tcp"))
        self.assertEqual(tracking.peers, ["127.0.0.2", "127.0.0.2"])

    @inlineCallbacks
    def test_tcp_connect_succeeds_and_closes(self) -> Any:
        """A tcp check passes on connect and closes the connection itself."""
        tracking, port = self.listen(Factory.forProtocol(Protocol))
        result = yield self.checker.check(ServerConfig("127.0.0.1", port), HealthCheckConfig(type="tcp"))
        self.assertIsNone(result)
        self.assertEqual(len(tracking.all), 1)
        yield tracking.all[0].lost  # closed by the checker, not by cleanup

    @inlineCallbacks
    def test_tcp_connection_refused(self) -> Any:
        """A tcp check to a closed port fails with 'connection refused'."""
        port = yield self.free_port()
        yield self.assert_fails(
            self.checker.check(ServerConfig("127.0.0.1", port), HealthCheckConfig(type="tcp")),
            "connection refused",
        )


class TLSTests(TestCase):
    """https checks against a loopback TLS server with a self-signed certificate."""

    SAN = True  # whether the certificate carries a subjectAltName

    def setUp(self) -> None:
        key, cert, self.pem = make_cert(TLS_NAME, san=self.SAN)
        self.resource = HealthResource()
        self.tls = SNIRecordingServerTLS(key, cert)
        tracking = TrackingFactory(TLSMemoryBIOFactory(self.tls, False, Site(self.resource, timeout=None)))
        listening = reactor.listenTCP(0, tracking, interface="127.0.0.1")
        self.port = listening.getHost().port

        @inlineCallbacks
        def cleanup() -> Any:
            yield listening.stopListening()
            yield tracking.close_all()

        self.addCleanup(cleanup)

    def checker(self, trusted: bool = False) -> Checker:
        trust = trustRootFromCertificates([Certificate.loadPEM(self.pem)]) if trusted else None
        checker = Checker(reactor, trust_root=trust)
        self.addCleanup(checker.close)
        return checker

    def settings(self, **kwargs: Any) -> HealthCheckConfig:
        return HealthCheckConfig(type="https", timeout=5.0, **kwargs)

    @inlineCallbacks
    def test_no_verify_sends_sni_and_host(self) -> Any:
        """tls_verify false accepts a self-signed certificate and sends the host as SNI and Host."""
        server = ServerConfig("127.0.0.1", self.port, host=TLS_NAME)
        result = yield self.checker().check(server, self.settings(tls_verify=False))
        self.assertIsNone(result)
        self.assertEqual(self.tls.server_names, [TLS_NAME.encode()])
        self.assertEqual(self.resource.hosts, [TLS_NAME.encode()])

    @inlineCallbacks
    def test_no_sni_without_host(self) -> Any:
        """Without a configured host no SNI is sent (an IP literal is not a server name)."""
        result = yield self.checker().check(ServerConfig("127.0.0.1", self.port), self.settings())
        self.assertIsNone(result)
        self.assertEqual(self.tls.server_names, [None])

    @inlineCallbacks
    def test_verify_rejects_self_signed(self) -> Any:
        """tls_verify true fails on a self-signed certificate with a TLS reason."""
        server = ServerConfig("127.0.0.1", self.port, host=TLS_NAME)
        failure = yield self.assertFailure(
            self.checker().check(server, self.settings(tls_verify=True)), CheckFailed
        )
        self.assertTrue(failure.reason.startswith("TLS handshake failed: "), failure.reason)
        self.assertIn("certificate verify failed", failure.reason)

    @inlineCallbacks
    def test_verify_accepts_trusted_certificate(self) -> Any:
        """tls_verify true passes when the certificate is trusted and names the host."""
        server = ServerConfig("127.0.0.1", self.port, host=TLS_NAME)
        result = yield self.checker(trusted=True).check(server, self.settings(tls_verify=True))
        self.assertIsNone(result)
        self.assertEqual(self.tls.server_names, [TLS_NAME.encode()])

    @inlineCallbacks
    def test_verify_rejects_wrong_host(self) -> Any:
        """tls_verify true fails when the trusted certificate does not name the host."""
        server = ServerConfig("127.0.0.1", self.port, host="other.example.test")
        failure = yield self.assertFailure(
            self.checker(trusted=True).check(server, self.settings(tls_verify=True)), CheckFailed
        )
        self.assertTrue(failure.reason.startswith("TLS handshake failed: "), failure.reason)


class NoSubjectAltNameTests(TestCase):
    """An https check against a trusted certificate that names its host only in the CN."""

    setUp = TLSTests.setUp
    checker = TLSTests.checker
    settings = TLSTests.settings
    SAN = False

    @inlineCallbacks
    def test_a_certificate_without_subject_alt_name_fails_cleanly(self) -> Any:
        """tls_verify true fails with a one-line reason (RFC 6125 §6.4.4: no CN fallback when
        verifying), and logs no traceback: the check runs every interval and must not flood the log."""
        server = ServerConfig("127.0.0.1", self.port, host=TLS_NAME)
        failure = yield self.assertFailure(
            self.checker(trusted=True).check(server, self.settings(tls_verify=True)), CheckFailed
        )
        self.assertEqual(failure.reason, "TLS handshake failed: the certificate names no host (no subjectAltName)")
        self.assertEqual(self.flushLoggedErrors(), [])
