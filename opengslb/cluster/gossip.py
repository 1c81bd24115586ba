"""Gossip of health verdicts between cluster nodes over UDP (SPEC §7.5, §7.8).

Every node sends its own health verdicts to every other Raft member on the
cluster port (UDP; Raft uses the same port number over TCP): the changed
entries at once (a *delta*, batched per reactor turn) and its whole map every
``full_state_interval`` (a *full state*), so a change reaches every node within
one interval even when a delta is lost.

Wire format (docs/gossip.md has the details): one datagram of at most
:data:`MAX_DATAGRAM` bytes is ``version (1 byte) | nonce (12 random bytes) |
AES-256-GCM(key, nonce, payload, associated data = version byte)``, where the
payload is compact JSON::

    {"from": "10.0.0.1:7946", "epoch": E, "seq": S, "ts": T, "kind": "delta"|"full",
     "chunk": i, "chunks": n, "verdicts": [[region, address, port, healthy], ...]}

Replay protection: each process draws a random 64-bit ``epoch`` and numbers
its datagrams ``seq`` = 0, 1, 2, ... A receiver keeps, per sender, the current
epoch, the highest sequence number seen and a bitmap of the last
:data:`REPLAY_WINDOW` numbers (as IPsec does): a number at or below the
window, or one already seen, is a replay. A different epoch is accepted (the
sender restarted) only when its ``ts`` (the sender's clock) is later than
every ``ts`` seen in the current epoch; the sender's state then starts over.

A full state too large for one datagram is split into chunks that take
consecutive sequence numbers; its id is the sequence number of chunk 0
(``seq - chunk``). It replaces the sender's map once every chunk arrived;
entries set by a delta newer than the full state survive the replacement.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from twisted.internet.base import DelayedCall
from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from opengslb.health.tracker import ServerKey

__all__ = ["Gossip", "MAX_DATAGRAM", "REPLAY_WINDOW", "VERSION", "DROP_REASONS"]

VERSION = 1
NONCE_SIZE = 12
TAG_SIZE = 16
MAX_DATAGRAM = 1200
MAX_PLAINTEXT = MAX_DATAGRAM - 1 - NONCE_SIZE - TAG_SIZE
REPLAY_WINDOW = 1024  # a full state of a few thousand servers is ~100 datagrams
MAX_ASSEMBLIES = 2  # incomplete full states kept per sender
MAX_CHUNKS = 10_000
DROP_REASONS = ("malformed", "auth", "replay", "unknown_peer")

Verdicts = Dict[ServerKey, bool]


class _Malformed(Exception):
    """An authenticated payload that does not follow the format."""


@dataclass
class _Message:
    sender: str
    epoch: int
    seq: int
    ts: float
    kind: str
    chunk: int
    chunks: int
    verdicts: List[Tuple[ServerKey, bool]]


@dataclass
class _Window:
    """Replay state of one sender: epoch, its latest ``ts``, highest seq and a bitmap."""

    epoch: int
    ts: float
    top: int
    seen: int = 1  # bit i set: seq ``top - i`` was accepted

    def accept(self, epoch: int, seq: int, ts: float) -> Optional[bool]:
        """Record ``(epoch, seq)``; ``None`` for a replay, ``True`` for a new epoch, else ``False``."""
        if epoch != self.epoch:
            if ts <= self.ts:
                return None
            self.epoch, self.ts, self.top, self.seen = epoch, ts, seq, 1
            return True
        if seq > self.top:
            self.seen = ((self.seen << (seq - self.top)) | 1) & ((1 << REPLAY_WINDOW) - 1)
            self.top = seq
        else:
            bit = 1 << (self.top - seq)
            if self.top - seq >= REPLAY_WINDOW or self.seen & bit:
                return None
            self.seen |= bit
        self.ts = max(self.ts, ts)
        return False


@dataclass
class _View:
    """What one sender told us: verdicts, the seq that set each, assemblies of full states."""

    heard: float
    verdicts: Verdicts = field(default_factory=dict)
    set_by: Dict[ServerKey, int] = field(default_factory=dict)
    full_id: int = -1  # id (seq of chunk 0) of the last full state applied
    assemblies: Dict[int, Dict[int, List[Tuple[ServerKey, bool]]]] = field(default_factory=dict)


def _peer_address(node_id: str) -> Tuple[str, int]:
    """``"host:port"`` / ``"[v6]:port"`` → ``(host, port)``; ``ValueError`` when it is neither."""
    host, sep, port = node_id.rpartition(":")
    if not sep or not host:
        raise ValueError(f"not host:port: {node_id!r}")
    return host.strip("[]"), int(port)


def _parse(plain: bytes) -> _Message:
    """Decode and validate one decrypted payload; ``_Malformed`` on any deviation."""
    try:
        obj = json.loads(plain)
    except (ValueError, RecursionError) as e:
        raise _Malformed(str(e)) from None
    if not isinstance(obj, dict):
        raise _Malformed("payload is not an object")

    def integer(name: str, low: int, high: int) -> int:
        v = obj.get(name)
        if type(v) is not int or not low <= v <= high:
            raise _Malformed(f"bad {name}")
        return v

    sender, kind, rows = obj.get("from"), obj.get("kind"), obj.get("verdicts")
    ts: Any = obj.get("ts")
    if not isinstance(sender, str) or kind not in ("delta", "full") or not isinstance(rows, list):
        raise _Malformed("bad from/kind/verdicts")
    try:
        if type(ts) not in (int, float) or not math.isfinite(ts):
            raise _Malformed("bad ts")
    except OverflowError:  # an integer too large for a float
        raise _Malformed("bad ts") from None
    epoch = integer("epoch", 0, 2**64 - 1)
    seq = integer("seq", 0, 2**63 - 1)
    chunks = integer("chunks", 1, MAX_CHUNKS)
    chunk = integer("chunk", 0, min(chunks - 1, seq))
    verdicts = []
    for row in rows:
        if (not isinstance(row, list) or len(row) != 4 or not isinstance(row[0], str)
                or not isinstance(row[1], str) or type(row[2]) is not int
                or not 0 <= row[2] <= 65535 or type(row[3]) is not bool):
            raise _Malformed("bad verdict row")
        verdicts.append((ServerKey(row[0], row[1], row[2]), row[3]))
    return _Message(sender, epoch, seq, float(ts), kind, chunk, chunks, verdicts)


class Gossip(DatagramProtocol):
    """Sends this node's verdicts to the Raft members and keeps what they sent.

    :ivar node_id: this node's id, the ``from`` of what it sends (settable
        before the first send, e.g. once an ephemeral port is known).
    :ivar dropped: datagrams dropped, by reason (one of :data:`DROP_REASONS`):
        ``malformed`` (short, unknown version, bad payload), ``auth`` (failed
        AES-GCM authentication: wrong key or tampered), ``replay`` (sequence
        number already seen or too old, old epoch, or our own datagram echoed
        back), ``unknown_peer`` (sender id not in ``peers()``).
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        node_id: str,
        key: bytes,
        peers: Callable[[], Iterable[str]],
        on_verdicts: Callable[[str, Verdicts], None],
        full_state_interval: float = 1.0,
        rng: Optional[Callable[[int], bytes]] = None,
        clock: Optional[Any] = None,
    ) -> None:
        """
        :param reactor: ``IReactorUDP``; binds the UDP port in :meth:`start`.
        :param node_id: this node's advertise ``"host:port"`` (its Raft identity).
        :param key: the 32-byte gossip key (``keys.derive_key(..., keys.GOSSIP)``).
        :param peers: the current Raft members' ids (``"host:port"``, IP
            literals); this node is skipped if listed. Called per send and per
            received datagram.
        :param on_verdicts: called with a sender's id and the verdicts a delta
            changed, or the sender's whole map after a full state. Its
            exceptions are logged, never raised to the transport.
        :param full_state_interval: seconds between full states.
        :param rng: ``rng(n)`` returns n random bytes (nonces, epoch);
            :func:`os.urandom` by default. Must be cryptographically strong
            outside tests: a repeated nonce breaks AES-GCM.
        :param clock: ``IReactorTime``: time source and scheduler; ``reactor`` by default.
        :raises ValueError: when ``key`` is not 32 bytes.
        """
        if len(key) != 32:
            raise ValueError("the gossip key must be 32 bytes")
        self._reactor: Any = reactor
        self._clock: Any = clock if clock is not None else reactor
        self.node_id = node_id
        self._aead = AESGCM(key)
        self._peers = peers
        self._on_verdicts = on_verdicts
        self._interval = full_state_interval
        self._rng = rng if rng is not None else os.urandom
        self._epoch = int.from_bytes(self._rng(8), "big")
        self._seq = 0
        self._local: Verdicts = {}
        self._pending: Verdicts = {}
        self._flush_call: Optional[DelayedCall] = None
        self._loop: Optional[LoopingCall] = None
        self._port: Optional[Any] = None  # IListeningPort
        self._windows: Dict[str, _Window] = {}
        self._views: Dict[str, _View] = {}
        self.dropped: Dict[str, int] = {reason: 0 for reason in DROP_REASONS}

    # -- lifecycle -----------------------------------------------------------

    def start(self, interface: str, port: int) -> Any:
        """Bind UDP ``interface:port`` and start sending; the ``IListeningPort``.

        Errors of ``listenUDP`` (``CannotListenError``) propagate.
        """
        self._port = self._reactor.listenUDP(port, self, interface=interface)
        return self._port

    def stop(self) -> Deferred[None]:
        """Stop sending and close the port; the Deferred fires once it is closed."""
        port, self._port = self._port, None
        if port is None:
            return succeed(None)
        result: Optional[Deferred[None]] = port.stopListening()
        return result if result is not None else succeed(None)

    def startProtocol(self) -> None:
        """Begin the periodic full state (a transport is attached)."""
        self._loop = LoopingCall(self._send_full)
        self._loop.clock = self._clock
        self._loop.start(self._interval, now=True)

    def stopProtocol(self) -> None:
        """Cancel the periodic full state and any pending delta."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None

    # -- local verdicts ------------------------------------------------------

    def set_local(self, verdicts: Mapping[ServerKey, bool]) -> None:
        """Replace this node's verdicts; added or changed ones go out as a delta this turn.

        Removed entries are not sent as a delta: receivers drop them at the
        next full state.
        """
        new = dict(verdicts)
        for key, healthy in new.items():
            if key not in self._local or self._local[key] != healthy:
                self._pending[key] = bool(healthy)
        for key in self._pending.keys() - new.keys():
            del self._pending[key]
        self._local = new
        if self._pending and self._flush_call is None:
            self._flush_call = self._clock.callLater(0, self._flush)

    def local(self) -> Verdicts:
        """A copy of this node's own verdicts."""
        return dict(self._local)

    def views(self) -> Dict[str, Tuple[float, Verdicts]]:
        """Per sender id: (our clock when we last accepted a datagram from it, its verdicts)."""
        return {s: (v.heard, dict(v.verdicts)) for s, v in self._views.items()}

    # -- sending -------------------------------------------------------------

    def _flush(self) -> None:
        self._flush_call = None
        pending, self._pending = self._pending, {}
        if pending:
            self._send("delta", pending)

    def _send_full(self) -> None:
        try:
            self._forget_departed()
            self._send("full", self._local)
        except Exception:
            self.log.failure("gossip: sending the full state failed")

    def _forget_departed(self) -> None:
        members = set(self._peers())
        for sender in self._views.keys() - members:
            del self._views[sender]

    def _send(self, kind: str, verdicts: Mapping[ServerKey, bool]) -> None:
        """Encrypt ``verdicts`` into as few datagrams as fit and send each to every peer."""
        transport: Any = self.transport
        if transport is None:
            return
        targets = []
        for peer in self._peers():
            if peer == self.node_id:
                continue
            try:
                targets.append(_peer_address(peer))
            except ValueError:
                self.log.warn("gossip: cannot address peer {peer!r}", peer=peer)
        if not targets:
            return
        for datagram in self._encode(kind, verdicts):
            for addr in targets:
                try:
                    transport.write(datagram, addr)
                except Exception as e:  # OSError, InvalidAddressError (host names)
                    self.log.warn("gossip: send to {addr} failed: {e}", addr=addr, e=e)

    def _encode(self, kind: str, verdicts: Mapping[ServerKey, bool]) -> List[bytes]:
        """The datagrams carrying ``verdicts`` (one, empty, when there are none)."""
        rows = [json.dumps([k.region, k.address, k.port, bool(v)], separators=(",", ":"))
                for k, v in verdicts.items()]
        ts = self._clock.seconds()
        bound = len(rows) + 1  # upper bound of chunk indexes and counts
        header = {"from": self.node_id, "epoch": self._epoch, "seq": self._seq + bound,
                  "ts": ts, "kind": kind, "chunk": bound, "chunks": bound, "verdicts": []}
        room = MAX_PLAINTEXT - len(json.dumps(header, separators=(",", ":")))
        groups: List[List[str]] = [[]]
        used = 0
        for row in rows:
            if len(row) + 1 > room:
                self.log.warn("gossip: verdict too large to send: {row}", row=row)
                continue
            if used + len(row) + 1 > room and groups[-1]:
                groups.append([])
                used = 0
            groups[-1].append(row)
            used += len(row) + 1
        out = []
        for i, group in enumerate(groups):
            header.update(seq=self._seq, chunk=i, chunks=len(groups))
            self._seq += 1
            text = json.dumps(header, separators=(",", ":"))  # ends with "verdicts":[]}
            plain = (text[:-3] + "[" + ",".join(group) + "]}").encode("ascii")
            nonce = self._rng(NONCE_SIZE)
            aad = bytes([VERSION])
            out.append(aad + nonce + self._aead.encrypt(nonce, plain, aad))
        return out

    # -- receiving -----------------------------------------------------------

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        """Authenticate, check and apply one datagram; drops are counted, nothing is raised."""
        try:
            reason = self._receive(datagram)
        except Exception:
            self.log.failure("gossip: unexpected error on a datagram from {addr}", addr=addr)
            reason = "malformed"
        if reason is not None:
            self.dropped[reason] += 1
            self.log.debug("gossip: dropped a datagram from {addr}: {reason}", addr=addr, reason=reason)

    def _receive(self, datagram: bytes) -> Optional[str]:
        """Handle one datagram; the drop reason, or ``None`` when it was accepted."""
        if len(datagram) < 1 + NONCE_SIZE + TAG_SIZE or datagram[0] != VERSION:
            return "malformed"
        nonce, sealed = datagram[1:1 + NONCE_SIZE], datagram[1 + NONCE_SIZE:]
        try:
            plain = self._aead.decrypt(nonce, sealed, datagram[:1])
        except InvalidTag:
            return "auth"
        try:
            msg = _parse(plain)
        except _Malformed:
            return "malformed"
        if msg.sender == self.node_id:
            return "replay"  # our own datagram reflected back
        if msg.sender not in set(self._peers()):
            return "unknown_peer"
        window = self._windows.get(msg.sender)
        if window is None:
            self._windows[msg.sender] = _Window(msg.epoch, msg.ts, msg.seq)
            restarted = True
        else:
            accepted = window.accept(msg.epoch, msg.seq, msg.ts)
            if accepted is None:
                return "replay"
            restarted = accepted
        view = self._views.get(msg.sender)
        now = self._clock.seconds()
        if view is None:
            view = self._views[msg.sender] = _View(heard=now)
        elif restarted:  # keep the verdicts until the new epoch's full state replaces them
            view.set_by = dict.fromkeys(view.set_by, -1)
            view.full_id, view.assemblies = -1, {}
        view.heard = now
        if msg.kind == "delta":
            self._apply_delta(msg, view)
        else:
            self._add_chunk(msg, view)
        return None

    def _apply_delta(self, msg: _Message, view: _View) -> None:
        changed = {}
        for key, healthy in msg.verdicts:
            if msg.seq > view.set_by.get(key, -1):
                view.verdicts[key] = healthy
                view.set_by[key] = msg.seq
                changed[key] = healthy
        if changed:
            self._notify(msg.sender, changed)

    def _add_chunk(self, msg: _Message, view: _View) -> None:
        full_id = msg.seq - msg.chunk
        if full_id <= view.full_id:
            return  # older than the full state already applied
        parts = view.assemblies.get(full_id)
        if parts is None:
            parts = view.assemblies[full_id] = {}
            while len(view.assemblies) > MAX_ASSEMBLIES:
                del view.assemblies[min(view.assemblies)]
            if full_id not in view.assemblies:
                return
        parts[msg.chunk] = msg.verdicts
        if len(parts) < msg.chunks:
            return
        del view.assemblies[full_id]
        for older in [i for i in view.assemblies if i < full_id]:
            del view.assemblies[older]
        last = full_id + msg.chunks - 1
        verdicts: Verdicts = {}
        for i in range(msg.chunks):
            verdicts.update(parts.get(i, ()))
        set_by = dict.fromkeys(verdicts, last)
        for key, seq in view.set_by.items():
            if seq > last:  # a delta sent after this full state
                verdicts[key], set_by[key] = view.verdicts[key], seq
        view.verdicts, view.set_by, view.full_id = verdicts, set_by, full_id
        self._notify(msg.sender, dict(verdicts))

    def _notify(self, sender: str, verdicts: Verdicts) -> None:
        try:
            self._on_verdicts(sender, verdicts)
        except Exception:
            self.log.failure("gossip: on_verdicts failed for {sender}", sender=sender)
