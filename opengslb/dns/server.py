"""DNS over UDP and TCP: the responder and the listeners.

:class:`DNSResponder` turns one request into one response (or nothing): the
strict reader (:mod:`opengslb.dns.wire`) reads it, :func:`refusal_of`
decides FORMERR/NOTIMP/BADVERS, the resolver (:mod:`opengslb.dns.resolver`)
answers, and :mod:`opengslb.dns.reply` encodes.  The protocols below move
bytes and keep each listener bounded: UDP sockets get a large receive buffer,
TCP listeners cap connections per listener and per source, idle time and the
time one message may take to arrive.
"""

from __future__ import annotations

import socket
import sys
import time
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Sequence, Tuple

import psutil
from twisted.internet import protocol, udp
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IDelayedCall,
    IListeningPort,
    IReactorFDSet,
    IReactorTCP,
    IReactorTime,
    IReactorUDP,
)
from twisted.logger import Logger
from twisted.names import dns
from twisted.protocols.basic import Int16StringReceiver
from twisted.protocols.policies import TimeoutMixin

from opengslb.config.model import ListenAddress
from opengslb.dns.ecs import EcsError, Subnet, ecs_option, find_subnet, source_client
from opengslb.dns.reply import (
    FORWARDED_OPTION,
    MIN_UDP_SIZE,
    encode_reply,
    header_only,
    reply_limit,
)
from opengslb.dns.resolver import OTHER_DOMAIN, AllDownHook, AllDownReport, StaleHook, answer
from opengslb.dns.view import AnsweringView
from opengslb.dns.wire import OPT, Message, read_request
from opengslb.limits import ConnectionLimiter, listen_fair
from opengslb.routing.base import NO_CLIENT, Client
from opengslb.stats import QueryStats

if TYPE_CHECKING:
    from opengslb.dns.fastpath import FastPath
    from opengslb.dns.forward import Forwarder

log = Logger(namespace="opengslb.dns")

TCP_IDLE_TIMEOUT = 10.0  # seconds without a complete message before a connection is closed
TCP_MESSAGE_DEADLINE = 3.0  # seconds from a message's first byte to its last
UDP_RECEIVE_BUFFER = 4 * 1024 * 1024  # asked of the kernel; net.core.rmem_max caps it
BADVERS = 16

RCODE_NAMES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP",
               5: "REFUSED", BADVERS: "BADVERS"}
TYPE_LABELS = {dns.A: "A", dns.AAAA: "AAAA"}


class ErrorReports:
    """Logs unexpected errors met while answering, without letting packets flood the log.

    The first error is logged with its traceback; after that at most one per
    ``interval`` seconds of ``clock``, saying how many were not logged in
    between.  :attr:`total` counts them all.  Call :meth:`report` from an
    ``except`` block (the traceback is the one being handled).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, interval: float = 60.0) -> None:
        self._clock = clock
        self._interval = interval
        self._last: Optional[float] = None
        self._unlogged = 0
        self.total = 0

    def report(self, message: str, **fields: Any) -> None:
        self.total += 1
        now = self._clock()
        if self._last is not None and now - self._last < self._interval:
            self._unlogged += 1
            return
        log.failure(message + " ({unlogged} more not logged since the last report)",
                    unlogged=self._unlogged, **fields)
        self._last, self._unlogged = now, 0


class DNSResponder:
    """Answers raw DNS requests from the current answering view.

    Every request is read by :func:`opengslb.dns.wire.read_request` first:
    a packet shorter than a header or with QR set is dropped (``None``); a
    malformed one gets FORMERR; an opcode other than QUERY NOTIMP; EDNS
    version > 0 BADVERS; a zone transfer (AXFR, IXFR) NOTIMP — the zone is
    computed live and never transferred.  Replies to all of them keep the
    question and the OPT record when those could be read.

    ``view_source`` returns the view to use; ``serving`` says whether this node
    may answer with data now (the cluster leader gate; always true standalone).
    A node that is not serving applies ``follower_policy()``: ``refuse``
    (REFUSED), ``drop`` (no reply) or ``forward`` (relay through
    ``forwarder`` to the leader; a query that was already relayed once is
    answered SERVFAIL instead, so nothing is forwarded twice).  ``errors``
    logs unexpected failures of the listeners (rate-limited).
    """

    def __init__(self, view_source: Callable[[], AnsweringView], stats: QueryStats,
                 on_stale: Optional[StaleHook] = None,
                 serving: Callable[[], bool] = lambda: True,
                 follower_policy: Callable[[], str] = lambda: "refuse",
                 forwarder: Optional["Forwarder"] = None,
                 fast_path: Optional["FastPath"] = None,
                 errors: Optional[ErrorReports] = None) -> None:
        self._view_source = view_source
        self._stats = stats
        self._on_stale = on_stale
        self._serving = serving
        self.serving = serving
        self._follower_policy = follower_policy
        self._forwarder = forwarder
        self._nsid_source: Optional[str] = None
        self._nsid = b""
        self.errors = errors if errors is not None else ErrorReports()
        self._on_all_down: AllDownHook = AllDownReport(stats)
        # Prepared wire answers for plain A/AAAA queries (None = not mine); see fastpath.py.
        self.fast_respond: Callable[..., Optional[bytes]] = (
            fast_path.respond if fast_path is not None else _no_fast_answer)

    @property
    def stats(self) -> QueryStats:
        return self._stats

    def view(self) -> AnsweringView:
        """The answering view in use now (its ``config`` holds the DNS settings)."""
        return self._view_source()

    def _nsid_of(self, view: AnsweringView) -> bytes:
        """``dns.nsid`` as bytes (encoded once per configuration)."""
        configured = view.config.dns.nsid
        if configured is not self._nsid_source:
            self._nsid_source, self._nsid = configured, configured.encode("utf-8")
        return self._nsid

    def respond(self, data: bytes, max_size: Optional[int], source: Optional[str] = None
                ) -> "Optional[bytes] | Deferred[Optional[bytes]]":
        """The response to ``data``, ``None`` to drop it, or a Deferred of either (forwarding).

        ``max_size`` is ``None`` over TCP; over UDP the response is limited to
        the client's advertised EDNS size (at least 512), or 512 without EDNS.
        ``source`` is the query's source address (the client of client-aware
        routing when the query carries no ECS option).  Never raises for any input.
        """
        if not self._serving():
            return self._not_serving(data, max_size)
        return self.answer(data, max_size, source)

    def _not_serving(self, data: bytes, max_size: Optional[int]) -> "Optional[bytes] | Deferred[Optional[bytes]]":
        policy = self._follower_policy()
        if policy == "drop":
            return None
        request = read_request(data)
        if request is None:
            return None
        limit = reply_limit(request, max_size)
        nsid = self._nsid_of(self._view_source())
        refusal = refusal_of(request)
        if refusal is not None:
            return encode_reply(request, refusal, limit=limit, nsid=nsid)
        if policy == "forward" and self._forwarder is not None:
            edns = request.edns
            if edns is not None and edns.has_option(FORWARDED_OPTION):
                return encode_reply(request, dns.ESERVER, limit=limit, nsid=nsid)
            return self._forwarder.forward(request, limit)
        return encode_reply(request, dns.EREFUSED, limit=limit, nsid=nsid)

    def answer(self, data: bytes, max_size: Optional[int], source: Optional[str] = None) -> Optional[bytes]:
        """Answer ``data`` with data from the view (the serving node's path).

        A malformed EDNS Client Subnet option (RFC 7871) gets FORMERR; a
        valid one names the client and is echoed with the answer's scope.
        """
        request = read_request(data)
        if request is None:
            return None
        view = self._view_source()
        nsid = self._nsid_of(view)
        limit = reply_limit(request, max_size)
        question = request.question
        qtype_label = TYPE_LABELS.get(question.qtype, "other") if question is not None else "other"
        refusal = refusal_of(request)
        subnet: Optional[Subnet] = None
        if refusal is None and request.edns is not None and request.edns.options:
            try:
                subnet = find_subnet(request.edns.options)
            except EcsError:
                self._stats.ecs_queries += 1
                refusal = dns.EFORMAT
            else:
                if subnet is not None:
                    self._stats.ecs_queries += 1
        if refusal is not None or question is None:
            rcode = dns.EFORMAT if refusal is None else refusal
            self._stats.count_query(OTHER_DOMAIN, qtype_label, RCODE_NAMES.get(rcode, str(rcode)))
            return encode_reply(request, rcode, limit=limit, nsid=nsid)

        result = answer(view, question, self._on_stale, client=client_of(subnet, source),
                        on_all_down=self._on_all_down)
        domain_label = result.domain.name if result.domain is not None else OTHER_DOMAIN
        self._stats.count_query(domain_label, qtype_label, RCODE_NAMES.get(result.rcode, str(result.rcode)))
        if result.routed is not None and result.domain is not None:
            self._stats.count_routing(result.domain.name, result.domain.algorithm,
                                      result.routed.endpoint)
        return encode_reply(request, result.rcode, authoritative=result.authoritative,
                            answers=result.answers, authority=result.authority,
                            additional=result.additional, limit=limit, nsid=nsid,
                            ecs=ecs_option(subnet, result.scope) if subnet is not None else None)


AXFR, IXFR = 252, 251


def refusal_of(request: Message) -> Optional[int]:
    """The rcode answering ``request`` without looking at any data, or None to answer it.

    FORMERR for a malformed message (:attr:`Message.error`), for a QUERY
    without exactly one question, with records in the answer or authority
    section, or asking for type OPT; NOTIMP for other opcodes and for zone
    transfers (RFC 5936, RFC 1995: refused cleanly, as gdnsd does); BADVERS
    for EDNS versions above 0 (RFC 6891 §6.1.3).
    """
    if request.error is not None:
        return dns.EFORMAT
    if request.opcode != dns.OP_QUERY:
        return dns.ENOTIMP
    if request.edns is not None and request.edns.version > 0:
        return BADVERS
    question = request.question
    if question is None:
        return dns.EFORMAT
    if question.qtype in (AXFR, IXFR):
        return dns.ENOTIMP
    if request.ancount or request.nscount or question.qtype == OPT:
        return dns.EFORMAT
    return None


def client_of(subnet: Optional[Subnet], source: Optional[str]) -> Client:
    """The client routing sees: the ECS network, else the source address (else 0.0.0.0/0)."""
    if subnet is not None and subnet.client is not None:
        return subnet.client
    if source is not None:
        try:
            return source_client(source)
        except (OSError, ValueError):
            pass
    return NO_CLIENT


def _no_fast_answer(data: bytes, udp: bool, source: Optional[str] = None) -> Optional[bytes]:
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
        self.answer(data, addr, time.perf_counter())

    def answer(self, data: bytes, addr: tuple, started: float) -> None:
        """Answer ``data`` (received at ``started``, a ``time.perf_counter`` reading) to ``addr``."""
        if self._serving():
            fast_reply = self._fast(data, True, addr[0])
            if fast_reply is not None:
                try:
                    self._sendto(fast_reply, addr)
                except OSError:
                    return  # full buffer or ICMP error: a lost datagram, as UDP allows
                self._observe(time.perf_counter() - started)
                return
        self.answer_in_full(data, addr, started)

    def answer_in_full(self, data: bytes, addr: tuple, started: float) -> None:
        """Answer ``data`` through :meth:`DNSResponder.respond` (the fast path declined or was not asked)."""
        try:
            reply = self._responder.respond(data, MIN_UDP_SIZE, addr[0])
        except Exception:
            self._responder.errors.report("unexpected error answering a query from {peer}", peer=addr[0])
            reply = header_only(data, dns.ESERVER) if len(data) >= 12 else None
        if isinstance(reply, Deferred):
            reply.addCallback(self._send_later, addr)
        elif reply is not None:
            self.transport.write(reply, addr)  # type: ignore[union-attr]
            self._responder.stats.observe_duration(time.perf_counter() - started)

    def _send_later(self, reply: Optional[bytes], addr: tuple) -> None:
        if reply is not None and self.transport is not None:
            self.transport.write(reply, addr)  # type: ignore[call-arg,arg-type]


class DNSDatagramPort(udp.Port):
    """A UDP port whose read loop is the DNS hot path.

    Twisted's :meth:`udp.Port.doRead` hands each datagram to the protocol's
    ``datagramReceived``; here the loop itself asks the fast path and sends
    its prepared answer, and only datagrams the fast path declines (or all,
    while not serving) reach :meth:`DNSDatagramProtocol.answer_in_full`.
    One Python call less per query, the per-datagram lookups hoisted out of
    the loop.  Like Twisted's loop it reads at most ``maxThroughput`` bytes per reactor turn, so other
    listeners and timers still get their turn under a flood, and treats
    read errors the same way.
    """

    protocol: "DNSDatagramProtocol"

    def doRead(self) -> None:
        protocol = self.protocol
        recvfrom = self.socket.recvfrom
        sendto = self.socket.sendto
        serving = protocol._serving
        fast = protocol._fast
        observe = protocol._observe
        slow = protocol.answer_in_full
        clock = time.perf_counter
        size = self.maxPacketSize
        trim = self.addressFamily == socket.AF_INET6  # drop flow info and scope id, as Twisted does
        budget = self.maxThroughput
        while budget > 0:
            try:
                data, addr = recvfrom(size)
            except OSError as error:
                if error.args[0] in udp._sockErrReadRefuse:
                    if self._connectedAddr:
                        protocol.connectionRefused()
                elif error.args[0] not in udp._sockErrReadIgnore:
                    raise
                return
            started = clock()
            budget -= len(data)
            if trim:
                addr = addr[:2]
            try:
                if serving():
                    reply = fast(data, True, addr[0])
                    if reply is not None:
                        try:
                            sendto(reply, addr)
                        except OSError:
                            continue  # full buffer or ICMP error: a lost datagram, as UDP allows
                        observe(clock() - started)
                        continue
                slow(data, addr, started)
            except BaseException:
                log.failure("unexpected error in the UDP read loop")


class DNSStreamProtocol(Int16StringReceiver, TimeoutMixin):
    """TCP: length-prefixed messages, several per connection, each answered in order.

    Bounds (DESIGN 14): the connection is closed after
    :data:`TCP_IDLE_TIMEOUT` seconds without a complete message; a message
    must arrive whole within ``message_deadline`` seconds of the read that
    brought its first byte, so trickling bytes cannot hold a connection; and
    while replies the client does not read fill the transport's buffer,
    reading stops (the protocol is the transport's streaming producer).
    ``clock`` schedules both timers (the global reactor when omitted);
    ``on_close`` is called once when the connection is gone.
    """

    MAX_LENGTH = 65535

    def __init__(self, responder: DNSResponder, clock: Optional[IReactorTime] = None,
                 on_close: Optional[Callable[[], None]] = None,
                 message_deadline: float = TCP_MESSAGE_DEADLINE) -> None:
        self._responder = responder
        if clock is not None:
            self.callLater = clock.callLater  # type: ignore[method-assign,assignment]  # TimeoutMixin uses it too
        self._on_close = on_close
        self._message_deadline = message_deadline
        self._deadline: Optional[IDelayedCall] = None

    _peer: Optional[str] = None  # the client's address (client-aware routing without ECS)

    def connectionMade(self) -> None:
        self._peer = getattr(self.transport.getPeer(), "host", None)  # type: ignore[union-attr]
        self.setTimeout(TCP_IDLE_TIMEOUT)
        self.transport.registerProducer(self, True)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)
        if not self.connected:
            return
        if self._unprocessed:  # part of a message (or a paused backlog) waits
            if self._deadline is None:
                self._deadline = self.callLater(self._message_deadline, self._too_slow)
        elif self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def stringReceived(self, data: bytes) -> None:
        started = time.perf_counter()
        self.resetTimeout()
        if self._deadline is not None:  # this message made it in time; the next one starts afresh
            self._deadline.cancel()
            self._deadline = None
        if self._responder.serving():
            fast = self._responder.fast_respond(data, False, self._peer)
            if fast is not None:
                self.sendString(fast)
                self._responder.stats.observe_duration(time.perf_counter() - started)
                return
        try:
            reply = self._responder.respond(data, None, self._peer)
        except Exception:
            self._responder.errors.report("unexpected error answering a TCP query")
            reply = header_only(data, dns.ESERVER) if len(data) >= 12 else None
        if isinstance(reply, Deferred):
            reply.addCallback(self._send_later)
        elif reply is not None:
            self.sendString(reply)
            self._responder.stats.observe_duration(time.perf_counter() - started)

    def _send_later(self, reply: Optional[bytes]) -> None:
        if reply is not None and self.transport is not None and self.connected:
            self.sendString(reply)

    def _too_slow(self) -> None:
        self._deadline = None
        self.transport.abortConnection()  # type: ignore[union-attr]

    def timeoutConnection(self) -> None:
        if self.paused:  # replies are waiting for a client that does not read: do not wait for it
            self.transport.abortConnection()  # type: ignore[union-attr]
        else:
            self.transport.loseConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: object = None) -> None:
        self.setTimeout(None)
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close()


TCPLimits = Callable[[], Tuple[int, int]]
"""() → (connections per listener, connections per source address)."""


class DNSStreamFactory(protocol.ServerFactory):
    """DNS over TCP connections, bounded per listener and per source address.

    ``limits()`` gives (max connections, max connections per source
    address); by default ``dns.tcp_max_connections`` and
    ``dns.tcp_max_connections_per_source`` of the configuration in use, so a
    reload changes them for new connections.  The caps are kept by a
    :class:`~opengslb.limits.ConnectionLimiter` named ``dns-tcp``, as for
    every TCP listener: a connection over either cap is refused on accept
    (:meth:`buildProtocol` returns ``None`` and the reactor closes the
    socket before reading a byte), counted per reason in
    ``limiter.refused`` and logged at most once a minute.
    """

    noisy = False

    def __init__(self, responder: DNSResponder, clock: IReactorTime,
                 limits: Optional[TCPLimits] = None) -> None:
        self._responder = responder
        self._clock = clock
        self.limiter = ConnectionLimiter("dns-tcp", limits if limits is not None else self._configured_limits,
                                         clock)

    def _configured_limits(self) -> Tuple[int, int]:
        settings = self._responder.view().config.dns
        return settings.tcp_max_connections, settings.tcp_max_connections_per_source

    def buildProtocol(self, addr: object) -> Optional[DNSStreamProtocol]:  # type: ignore[override]
        source = str(getattr(addr, "host", addr))
        if not self.limiter.acquire(source):
            return None
        return DNSStreamProtocol(self._responder, self._clock,
                                 on_close=lambda: self.limiter.release(source))


def grow_receive_buffer(sock: Any, wanted: int = UDP_RECEIVE_BUFFER) -> int:
    """Ask the kernel for a ``wanted``-byte receive buffer on ``sock``; returns what it granted.

    Linux caps the request at ``net.core.rmem_max`` and reports twice the
    granted size (its bookkeeping overhead included, socket(7)); the figure
    returned is the granted size, half the report, so it compares with
    ``wanted``.  Never raises: a refused request leaves the default.
    """
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, wanted)
    except OSError:
        pass
    try:
        reported = int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
    except OSError:
        return 0
    return reported // 2 if sys.platform.startswith("linux") else reported


def _log_receive_buffer(host: str, port: int, granted: int, wanted: int = UDP_RECEIVE_BUFFER) -> None:
    """Say what the kernel granted; a warning naming the sysctl when it is less than asked."""
    if granted >= wanted:
        log.info("DNS over UDP on {host}:{port}: {granted} bytes of receive buffer",
                 host=host, port=port, granted=granted)
    else:
        log.warn("DNS over UDP on {host}:{port}: {granted} bytes of receive buffer, asked for {wanted}: "
                 "raise net.core.rmem_max to at least {wanted} so a burst of queries is not dropped",
                 host=host, port=port, granted=granted, wanted=wanted, event="udp_receive_buffer_small")


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

    Each UDP socket asks for a :data:`UDP_RECEIVE_BUFFER` receive buffer
    (the size granted is logged); each TCP listener is a bounded
    :class:`DNSStreamFactory` on a port that accepts a few connections per
    reactor turn (:func:`opengslb.limits.listen_fair`), so a connection
    flood waits in the kernel's backlog instead of delaying UDP.  Raises
    ``twisted.internet.error.CannotListenError`` (after closing what was
    already bound) when any bind fails.
    """
    ports: List[IListeningPort] = []
    tcp_reactor: IReactorTCP = reactor  # type: ignore[assignment]
    clock: IReactorTime = reactor  # type: ignore[assignment]
    try:
        for host in bind_addresses(listen):
            datagrams = _listen_udp(reactor, listen.port, DNSDatagramProtocol(responder), host)
            ports.append(datagrams)
            sock = getattr(datagrams, "socket", None)
            if sock is not None:
                _log_receive_buffer(host, listen.port, grow_receive_buffer(sock))
            ports.append(listen_fair(tcp_reactor, listen.port, DNSStreamFactory(responder, clock), host))
    except Exception:
        for port in ports:
            port.stopListening()
        raise
    return ports


def _listen_udp(reactor: IReactorUDP, port: int, protocol: "DNSDatagramProtocol", host: str) -> IListeningPort:
    """Listen with a :class:`DNSDatagramPort` on a reactor that watches descriptors, else ``listenUDP``."""
    if not IReactorFDSet.providedBy(reactor):
        return reactor.listenUDP(port, protocol, interface=host, maxPacketSize=65535)
    listening = DNSDatagramPort(port, protocol, interface=host, maxPacketSize=65535, reactor=reactor)
    listening.startListening()
    return listening


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
    datagram = _freebind_socket(host, port, socket.SOCK_DGRAM)
    tcp = _freebind_socket(host, port, socket.SOCK_STREAM)
    _log_receive_buffer(host, port, grow_receive_buffer(datagram))  # the adopted duplicate shares it
    try:
        datagrams = DNSDatagramPort._fromListeningDescriptor(
            reactor, datagram.fileno(), family, DNSDatagramProtocol(responder), 65535)
        datagrams.startListening()
        ports = [datagrams, reactor.adoptStreamPort(tcp.fileno(), family, DNSStreamFactory(responder, reactor))]
    finally:
        datagram.close()  # the reactor holds its own duplicates of the descriptors
        tcp.close()
    return ports


__all__ = ["DNSDatagramProtocol", "DNSResponder", "DNSStreamFactory", "DNSStreamProtocol", "ErrorReports",
           "grow_receive_buffer", "listen_dns", "listen_vip", "refusal_of"]
