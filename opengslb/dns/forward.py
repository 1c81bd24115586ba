"""Relaying a follower's queries to the cluster leader (``follower_queries: forward``).

The relayed query carries a private EDNS option so the receiving node never
relays it again (a node that is not serving answers such a query SERVFAIL).
The reply goes back to the client with the client's ID, and without an OPT
record when the client sent none.  No reply within the timeout → SERVFAIL.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Dict, Optional, Tuple

from twisted.internet import defer, protocol
from twisted.logger import Logger
from twisted.names import dns

from opengslb.dns.resolver import Answer

log = Logger(namespace="opengslb.dns.forward")

FORWARD_TIMEOUT = 1.0
ADVERTISED_UDP_SIZE = 1232

LeaderAddress = Callable[[], Optional[Tuple[str, int]]]


class Forwarder(protocol.DatagramProtocol):
    """Sends queries to the leader's DNS address and matches replies by ID.

    ``leader_address()`` gives the current leader's DNS (host, port) or None.
    """

    noisy = False

    def __init__(self, reactor: Any, leader_address: LeaderAddress, rng: Optional[random.Random] = None,
                 timeout: float = FORWARD_TIMEOUT) -> None:
        self._reactor = reactor
        self._leader_address = leader_address
        self._rng = rng or random.SystemRandom()
        self._timeout = timeout
        self._pending: Dict[int, Tuple[defer.Deferred, dns._EDNSMessage, Optional[int]]] = {}
        self._port: Any = None

    def start(self, interface: str = "") -> None:
        """Bind the client socket (an ephemeral port)."""
        self._port = self._reactor.listenUDP(0, self, interface=interface)

    def stop(self) -> None:
        if self._port is not None:
            self._port.stopListening()
            self._port = None
        for d, _, _ in list(self._pending.values()):
            if not d.called:
                d.callback(None)
        self._pending.clear()

    def forward(self, request: dns._EDNSMessage, limit: Optional[int]) -> "defer.Deferred[Optional[bytes]]":
        """Relay ``request``; fires with the reply bytes for the client."""
        from opengslb.dns.server import FORWARDED_OPTION, encode_response  # server imports us lazily too

        leader = self._leader_address()
        if leader is None or self._port is None:
            return defer.succeed(encode_response(request, Answer(dns.ESERVER, [], [], [], False), limit))
        relay_id = self._rng.randrange(1 << 16)
        while relay_id in self._pending:
            relay_id = self._rng.randrange(1 << 16)
        relayed = dns.Message(id=relay_id, opCode=request.opCode, recDes=request.recDes)
        relayed.queries = list(request.queries)
        relayed.additional = [dns._OPTHeader(  # type: ignore[list-item]
            udpPayloadSize=limit or 65535, dnssecOK=request.dnssecOK,
            options=[dns._OPTVariableOption(FORWARDED_OPTION, b"opengslb")])]
        d: defer.Deferred[Optional[bytes]] = defer.Deferred()
        self._pending[relay_id] = (d, request, limit)
        self.transport.write(relayed.toStr(), leader)  # type: ignore[union-attr]

        def expire() -> None:
            entry = self._pending.pop(relay_id, None)
            if entry is not None and not entry[0].called:
                entry[0].callback(encode_response(request, Answer(dns.ESERVER, [], [], [], False), limit))

        self._reactor.callLater(self._timeout, expire)
        return d

    def datagramReceived(self, data: bytes, addr: Any) -> None:  # type: ignore[override]
        if len(data) < 12:
            return
        relay_id = int.from_bytes(data[:2], "big")
        entry = self._pending.pop(relay_id, None)
        if entry is None:
            return
        d, request, limit = entry
        try:
            reply = dns._EDNSMessage()
            reply.fromStr(data)
        except Exception:
            log.warn("unparsable reply from the leader")
            return
        reply.id = request.id
        if request.ednsVersion is None:
            reply.ednsVersion = None
        reply.maxSize = ADVERTISED_UDP_SIZE
        wire = reply._toMessage()
        wire.maxSize = 0
        d.callback(wire.toStr())
