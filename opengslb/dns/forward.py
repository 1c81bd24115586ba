"""Relaying a follower's queries to the cluster leader (``follower_queries: forward``).

The relayed query is the client's question, byte for byte, with a fresh ID
and an OPT record carrying a private EDNS option, so the receiving node never
relays it again (a node that is not serving answers such a query SERVFAIL).
The leader's reply is read with the strict wire reader and goes back to the
client with the client's ID, and without an OPT record when the client sent
none.  No reply within the timeout, or a reply that is malformed or answers
another question → SERVFAIL.
"""

from __future__ import annotations

import random
import struct
from typing import Any, Callable, Dict, Optional, Tuple

from twisted.internet import defer, protocol
from twisted.logger import Logger
from twisted.names import dns

from opengslb.dns.reply import FORWARDED_OPTION, encode_reply, opt_record
from opengslb.dns.wire import Message, read_message

log = Logger(namespace="opengslb.dns.forward")

FORWARD_TIMEOUT = 1.0

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
        self._pending: Dict[int, Tuple[defer.Deferred, Message, Optional[int]]] = {}
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

    def forward(self, request: Message, limit: Optional[int]) -> "defer.Deferred[Optional[bytes]]":
        """Relay ``request`` (a well-formed query with one question); fires with the reply
        bytes for the client, at most ``limit`` bytes (``None``: TCP)."""
        leader = self._leader_address()
        question = request.question
        if leader is None or self._port is None or question is None:
            return defer.succeed(encode_reply(request, dns.ESERVER, limit=limit))
        relay_id = self._rng.randrange(1 << 16)
        while relay_id in self._pending:
            relay_id = self._rng.randrange(1 << 16)
        edns = request.edns
        opt = bytearray(opt_record(0, edns is not None and edns.dnssec_ok,
                                   ((FORWARDED_OPTION, b"opengslb"),)))
        opt[3:5] = struct.pack("!H", limit or 65535)  # our UDP size: what the client can take
        relayed = (struct.pack("!HHHHHH", relay_id, request.flags & 0x7910, 1, 0, 0, 1)
                   + question.wire + bytes(opt))
        d: defer.Deferred[Optional[bytes]] = defer.Deferred()
        self._pending[relay_id] = (d, request, limit)
        self.transport.write(relayed, leader)  # type: ignore[union-attr]

        def expire() -> None:
            entry = self._pending.pop(relay_id, None)
            if entry is not None and not entry[0].called:
                entry[0].callback(encode_reply(request, dns.ESERVER, limit=limit))

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
        d.callback(relay_reply(request, data, limit))


def relay_reply(request: Message, data: bytes, limit: Optional[int]) -> bytes:
    """The leader's reply ``data`` as the reply to the client's ``request``.

    The ID becomes the client's; the OPT record is removed when the client
    sent none (it is the last record in our replies).  SERVFAIL instead when
    the reply is malformed, is not a response, answers another question, or
    exceeds ``limit``.
    """
    reply = read_message(data)
    question = request.question
    if (reply is None or reply.error is not None or not reply.is_response or question is None
            or reply.question is None or reply.question.wire != question.wire):
        log.warn("unusable reply from the leader")
        return encode_reply(request, dns.ESERVER, limit=limit)
    wire = struct.pack("!H", request.id) + data[2:]
    if request.edns is None and reply.opt_span is not None:
        start, end = reply.opt_span
        if end != len(data):
            return encode_reply(request, dns.ESERVER, limit=limit)
        wire = wire[:10] + struct.pack("!H", reply.arcount - 1) + wire[12:start]
    if limit is not None and len(wire) > limit:
        return encode_reply(request, dns.ESERVER, limit=limit)
    return wire
