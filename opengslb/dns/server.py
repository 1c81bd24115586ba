"""DNS over UDP and TCP: wire format, EDNS0, truncation and listeners.

:class:`DNSResponder` turns one request datagram into one response (or
nothing); the protocols below only move bytes.  Zone semantics live in
:mod:`opengslb.dns.resolver`.
"""

from __future__ import annotations

import socket
import struct
import time
from bisect import bisect_left
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Sequence, Tuple

import psutil
from twisted.internet import protocol
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort, IReactorTCP, IReactorUDP
from twisted.logger import Logger
from twisted.names import dns
from twisted.protocols.basic import Int16StringReceiver
from twisted.protocols.policies import TimeoutMixin

from opengslb.config.model import ListenAddress
from opengslb.dns.resolver import OTHER_DOMAIN, Answer, StaleHook, answer
from opengslb.dns.view import AnsweringView, DomainView
from opengslb.routing import Candidate

if TYPE_CHECKING:
    from opengslb.dns.fastpath import FastPath
    from opengslb.dns.forward import Forwarder

log = Logger(namespace="opengslb.dns")

ADVERTISED_UDP_SIZE = 1232  # the DNS flag day 2020 recommendation
MIN_UDP_SIZE = 512
TCP_IDLE_TIMEOUT = 10.0
BADVERS = 16

RCODE_NAMES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP",
               5: "REFUSED", BADVERS: "BADVERS"}
TYPE_LABELS = {dns.A: "A", dns.AAAA: "AAAA"}


class QueryStats:
    """Plain counters the hot path bumps; metrics read them at scrape time.

    Keys are tuples of label values, so a query costs two dict updates and
    no Prometheus child lookups.  Query durations go into a fixed-bucket
    histogram: ``duration_counts[i]`` counts durations ``<= DURATION_BOUNDS[i]``
    (and above the previous bound); the last slot counts the rest (``+Inf``).
    Counts are per bucket, not cumulative; ``duration_sum`` is in seconds.
    Everything runs on the reactor thread, so no locking.
    """

    DURATION_BOUNDS: tuple[float, ...] = (
        0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

    def __init__(self) -> None:
        self.queries: dict[tuple[str, str, str], int] = {}
        self.routing: dict[tuple[str, str, str], int] = {}
        self.stale: dict[str, int] = {}
        self.duration_counts: list[int] = [0] * (len(self.DURATION_BOUNDS) + 1)
        self.duration_sum = 0.0

    def count_query(self, domain: str, qtype: str, status: str) -> None:
        key = (domain, qtype, status)
        self.queries[key] = self.queries.get(key, 0) + 1

    def count_routing(self, domain: str, algorithm: str, server: str) -> None:
        key = (domain, algorithm, server)
        self.routing[key] = self.routing.get(key, 0) + 1

    def count_stale(self, domain: str) -> None:
        self.stale[domain] = self.stale.get(domain, 0) + 1

    def observe_duration(self, seconds: float) -> None:
        """Record how long answering one query took (one bisect, two additions)."""
        self.duration_counts[bisect_left(self.DURATION_BOUNDS, seconds)] += 1
        self.duration_sum += seconds


def _header_only(request: bytes, rcode: int) -> bytes:
    """A response echoing only the request's ID, opcode and RD bit."""
    (query_id, flags) = struct.unpack("!HH", request[:4])
    opcode_bits = flags & 0x7800
    rd = flags & 0x0100
    return struct.pack("!HHHHHH", query_id, 0x8000 | opcode_bits | rd | (rcode & 0xF), 0, 0, 0, 0)


FORWARDED_OPTION = 65430  # private-use EDNS option marking a query relayed by a follower


class DNSResponder:
    """Answers raw DNS requests from the current answering view.

    ``view_source`` returns the view to use; ``serving`` says whether this node
    may answer with data now (the cluster leader gate; always true standalone).
    A node that is not serving applies ``follower_policy()``: ``refuse``
    (REFUSED), ``drop`` (no reply) or ``forward`` (relay through
    ``forwarder`` to the leader; a query that was already relayed once is
    answered SERVFAIL instead, so nothing is forwarded twice).
    """

    def __init__(self, view_source: Callable[[], AnsweringView], stats: QueryStats,
                 on_stale: Optional[StaleHook] = None,
                 serving: Callable[[], bool] = lambda: True,
                 follower_policy: Callable[[], str] = lambda: "refuse",
                 forwarder: Optional["Forwarder"] = None,
                 fast_path: Optional["FastPath"] = None) -> None:
        self._view_source = view_source
        self._stats = stats
        self._on_stale = on_stale
        self._serving = serving
        self.serving = serving
        self._follower_policy = follower_policy
        self._forwarder = forwarder
        # Prepared wire answers for plain A/AAAA queries (None = not mine); see fastpath.py.
        self.fast_respond: Callable[[bytes, bool], Optional[bytes]] = (
            fast_path.respond if fast_path is not None else _no_fast_answer)

    @property
    def stats(self) -> QueryStats:
        return self._stats

    def respond(self, data: bytes, max_size: Optional[int]) -> "Optional[bytes] | Deferred[Optional[bytes]]":
        """The response to ``data``, ``None`` to drop it, or a Deferred of either (forwarding).

        ``max_size`` is ``None`` over TCP; over UDP the response is limited to
        the client's advertised EDNS size (at least 512).
        """
        if not self._serving():
            return self._not_serving(data, max_size)
        return self.answer(data, max_size)

    def _not_serving(self, data: bytes, max_size: Optional[int]) -> "Optional[bytes] | Deferred[Optional[bytes]]":
        policy = self._follower_policy()
        if policy == "drop":
            return None
        parsed = _parse(data)
        if isinstance(parsed, (bytes, type(None))):
            return parsed
        request = parsed
        limit = _limit(request, max_size)
        if policy == "forward" and self._forwarder is not None:
            if any(code == FORWARDED_OPTION for code, _ in _options(request)):
                return encode_response(request, Answer(dns.ESERVER, [], [], [], authoritative=False), limit)
            return self._forwarder.forward(request, limit)
        return encode_response(request, Answer(dns.EREFUSED, [], [], [], authoritative=False), limit)

    def answer(self, data: bytes, max_size: Optional[int]) -> Optional[bytes]:
        """Answer ``data`` with data from the view (the serving node's path)."""
        parsed = _parse(data)
        if not isinstance(parsed, dns._EDNSMessage):
            if parsed is not None:
                rcode = parsed[3] & 0xF
                self._stats.count_query(OTHER_DOMAIN, "other", RCODE_NAMES.get(rcode, str(rcode)))
            return parsed
        request = parsed
        query = request.queries[0]
        qtype_label = TYPE_LABELS.get(query.type, "other")

        if request.ednsVersion is not None and request.ednsVersion > 0:
            result = Answer(BADVERS, [], [], [], authoritative=False)
        else:
            result = answer(self._view_source(), query.name.name, query.type, query.cls,
                            self._on_stale)
        domain_label = result.domain.name if result.domain is not None else OTHER_DOMAIN
        self._stats.count_query(domain_label, qtype_label, RCODE_NAMES.get(result.rcode, str(result.rcode)))
        if result.routed is not None and result.domain is not None:
            self._stats.count_routing(result.domain.name, result.domain.algorithm,
                                      result.routed.endpoint)

        return encode_response(request, result, _limit(request, max_size))


def _parse(data: bytes) -> "dns._EDNSMessage | bytes | None":
    """Parse a request: the message, or the reply to send instead (NOTIMP/FORMERR), or None to drop."""
    if len(data) < 12:
        return None  # not even a header: nothing to reply to
    flags = (data[2] << 8) | data[3]
    if flags & 0x8000:
        return None  # a response, not a query: never answer those
    if (flags >> 11) & 0xF != dns.OP_QUERY:
        return _header_only(data, dns.ENOTIMP)
    try:
        plain = dns.Message()
        plain.fromStr(data)
        opt_count = sum(1 for r in plain.additional if r.type == dns.OPT)
        if len(plain.queries) != 1 or opt_count > 1 or plain.answers or plain.authority:
            return _header_only(data, dns.EFORMAT)
        request = dns._EDNSMessage._fromMessage(plain)
        options = [option for r in plain.additional if r.type == dns.OPT
                   for option in dns._OPTHeader.fromRRHeader(r).options]
        request.ednsOptions = options  # type: ignore[attr-defined]  # twisted drops OPT options
    except Exception:  # anything unparsable, malformed OPT options included
        return _header_only(data, dns.EFORMAT)
    return request


def _limit(request: dns._EDNSMessage, max_size: Optional[int]) -> Optional[int]:
    """The response size limit: None over TCP, else the client's EDNS size (at least 512)."""
    if max_size is None:
        return None
    return max(MIN_UDP_SIZE, request.maxSize if request.ednsVersion is not None else 0)


def _options(request: dns._EDNSMessage) -> List[Tuple[int, bytes]]:
    return [(o.code, o.data) for o in getattr(request, "ednsOptions", [])]


def encode_response(request: dns._EDNSMessage, result: Answer, limit: Optional[int]) -> bytes:
    """Encode ``result`` as the response to ``request``, fitting ``limit`` bytes.

    When the full response does not fit, the additional section is dropped
    first; if it still does not fit, every record section is emptied and TC is
    set so the client retries over TCP (RFC 2181 §9).  The OPT record always
    stays.
    """
    response = dns._EDNSMessage(
        id=request.id, answer=True, opCode=request.opCode, auth=result.authoritative,
        recDes=request.recDes, rCode=result.rcode, queries=request.queries,
        answers=result.answers, authority=result.authority, additional=result.additional,
        ednsVersion=0 if request.ednsVersion is not None else None,
        dnssecOK=False, maxSize=ADVERTISED_UDP_SIZE)
    wire = _to_wire(response)
    if limit is None or len(wire) <= limit:
        return wire
    response.additional = []
    wire = _to_wire(response)
    if len(wire) <= limit:
        return wire
    response.answers, response.authority, response.trunc = [], [], True
    return _to_wire(response)


def _to_wire(message: dns._EDNSMessage) -> bytes:
    plain = message._toMessage()
    plain.maxSize = 0  # never let twisted cut the bytes; truncation is ours
    return plain.toStr()


def _no_fast_answer(data: bytes, udp: bool) -> Optional[bytes]:
    return None


class DNSDatagramProtocol(protocol.DatagramProtocol):
    """UDP: one datagram in, at most one datagram out, from the same socket.

    The hot path: while serving, the fast path's prepared answer is sent with
    the socket's own ``sendto`` (the address came from ``recvfrom`` on this
    socket, so Port.write's address checks are skipped); anything else goes
    through :meth:`DNSResponder.respond`.
    """

    def __init__(self, responder: DNSResponder) -> None:
        self._responder = responder
        self._serving = responder.serving
        self._fast = responder.fast_respond
        self._observe = responder.stats.observe_duration
        self._sendto: Any = None

    def startProtocol(self) -> None:
        sock = getattr(self.transport, "socket", None)
        self._sendto = sock.sendto if sock is not None else self.transport.write  # type: ignore[union-attr]

    def datagramReceived(self, data: bytes, addr: tuple) -> None:  # type: ignore[override]
        started = time.perf_counter()
        if self._serving():
            fast_reply = self._fast(data, True)
            if fast_reply is not None:
                try:
                    self._sendto(fast_reply, addr)
                except OSError:
                    return  # full buffer or ICMP error: a lost datagram, as UDP allows
                self._observe(time.perf_counter() - started)
                return
        try:
            reply = self._responder.respond(data, MIN_UDP_SIZE)
        except Exception:
            log.failure("unexpected error answering a query from {peer}", peer=addr[0])
            reply = _header_only(data, dns.ESERVER) if len(data) >= 12 else None
        if isinstance(reply, Deferred):
            reply.addCallback(self._send_later, addr)
        elif reply is not None:
            self.transport.write(reply, addr)  # type: ignore[union-attr]
            self._responder.stats.observe_duration(time.perf_counter() - started)

    def _send_later(self, reply: Optional[bytes], addr: tuple) -> None:
        if reply is not None and self.transport is not None:
            self.transport.write(reply, addr)  # type: ignore[call-arg,arg-type]


class DNSStreamProtocol(Int16StringReceiver, TimeoutMixin):
    """TCP: length-prefixed messages, several per connection, idle timeout."""

    MAX_LENGTH = 65535

    def __init__(self, responder: DNSResponder) -> None:
        self._responder = responder

    def connectionMade(self) -> None:
        self.setTimeout(TCP_IDLE_TIMEOUT)

    def stringReceived(self, data: bytes) -> None:
        started = time.perf_counter()
        self.resetTimeout()
        if self._responder.serving():
            fast = self._responder.fast_respond(data, False)
            if fast is not None:
                self.sendString(fast)
                self._responder.stats.observe_duration(time.perf_counter() - started)
                return
        try:
            reply = self._responder.respond(data, None)
        except Exception:
            log.failure("unexpected error answering a TCP query")
            reply = _header_only(data, dns.ESERVER) if len(data) >= 12 else None
        if isinstance(reply, Deferred):
            reply.addCallback(self._send_later)
        elif reply is not None:
            self.sendString(reply)
            self._responder.stats.observe_duration(time.perf_counter() - started)

    def _send_later(self, reply: Optional[bytes]) -> None:
        if reply is not None and self.transport is not None and self.connected:
            self.sendString(reply)

    def timeoutConnection(self) -> None:
        self.transport.loseConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: object = None) -> None:
        self.setTimeout(None)


class DNSStreamFactory(protocol.ServerFactory):
    noisy = False

    def __init__(self, responder: DNSResponder) -> None:
        self._responder = responder

    def buildProtocol(self, addr: object) -> DNSStreamProtocol:
        return DNSStreamProtocol(self._responder)


def local_addresses() -> List[str]:
    """Every address configured on this host's interfaces (IPv6 link-local excluded)."""
    found: List[str] = []
    for addresses in psutil.net_if_addrs().values():
        for entry in addresses:
            if entry.family == socket.AF_INET:
                found.append(entry.address)
            elif entry.family == socket.AF_INET6 and not entry.address.lower().startswith("fe80"):
                found.append(entry.address.split("%")[0])
    return sorted(set(found))


def bind_addresses(listen: ListenAddress) -> Sequence[str]:
    """The concrete addresses to bind for ``listen``.

    A wildcard binds each local address separately, so every UDP reply leaves
    from the address its query was sent to (as BIND and gdnsd do).
    """
    if listen.is_wildcard:
        return local_addresses()
    return [listen.host]


def listen_dns(reactor: IReactorUDP, listen: ListenAddress, responder: DNSResponder
               ) -> List[IListeningPort]:
    """Bind UDP and TCP on every address of ``listen``.

    Raises ``twisted.internet.error.CannotListenError`` (after closing what was
    already bound) when any bind fails.
    """
    ports: List[IListeningPort] = []
    tcp_reactor: IReactorTCP = reactor  # type: ignore[assignment]
    try:
        for host in bind_addresses(listen):
            ports.append(reactor.listenUDP(listen.port, DNSDatagramProtocol(responder),
                                           interface=host, maxPacketSize=65535))
            ports.append(tcp_reactor.listenTCP(listen.port, DNSStreamFactory(responder),
                                               interface=host, backlog=128))
    except Exception:
        for port in ports:
            port.stopListening()
        raise
    return ports


IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)  # Linux value; Python exposes it on 3.12+


def _freebind_socket(host: str, port: int, kind: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, kind)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        level = socket.IPPROTO_IPV6 if family == socket.AF_INET6 else socket.IPPROTO_IP
        sock.setsockopt(level, IP_FREEBIND, 1)
        sock.bind((host, port))
        if kind == socket.SOCK_STREAM:
            sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def listen_vip(reactor: Any, host: str, port: int, responder: DNSResponder) -> List[IListeningPort]:
    """Bind UDP and TCP on the anycast VIP with IP_FREEBIND (works before the address exists).

    Raises OSError when the bind fails (e.g. a wildcard listener already holds the port).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    udp = _freebind_socket(host, port, socket.SOCK_DGRAM)
    tcp = _freebind_socket(host, port, socket.SOCK_STREAM)
    try:
        ports = [reactor.adoptDatagramPort(udp.fileno(), family, DNSDatagramProtocol(responder), 65535),
                 reactor.adoptStreamPort(tcp.fileno(), family, DNSStreamFactory(responder))]
    finally:
        udp.close()  # the reactor holds its own duplicates of the descriptors
        tcp.close()
    return ports


__all__ = ["DNSResponder", "QueryStats", "listen_dns", "Candidate", "DomainView"]
