"""Raft through pysyncobj — the only module that imports pysyncobj.

pysyncobj runs its own tick thread.  This module bridges it to the reactor:

* replicated writes (:meth:`RaftNode.propose`) return Deferreds with a
  timeout; their results arrive on the reactor thread;
* after every tick the tick thread publishes an immutable
  :class:`RaftStatus` (state, leader, term, members, a leader *lease*) that
  the reactor reads without locks, and leadership or membership changes are
  delivered on the reactor thread;
* the replicated method never raises (a raising method wedges pysyncobj);
* every applied command is mirrored, in order, into a reactor-side
  :class:`StateMachine` that the rest of the program reads.

Three additions to plain pysyncobj make leader-only DNS safe and stable:

* **Lease.** The leader may answer only while a majority acknowledged it
  within ``leaderFallbackTimeout`` (0.8 × the minimum election timeout), on
  the monotonic clock.  A leader resumed after SIGSTOP finds its lease
  expired before it can answer anything queued in its sockets.
* **Leader stickiness.** A node that heard from a live leader within the
  lease time ignores vote requests (Raft thesis §4.2.3), unless the request
  comes from the target of a leadership transfer.
* **Pre-vote.** A node whose election timer fires first asks the others
  whether they would vote for it (Raft thesis §9.6); only with a majority of
  "yes" does it raise its term and start a real election.  A restarted or
  partitioned node therefore cannot bump terms and cut itself off from a
  leader that is alive.

And one to its transport, so that a peer without the cluster key costs
next to nothing (SPEC §7.8, issue 11): see :class:`_GuardedConnection`.
Frames are length-prefixed; a frame longer than the bound for the
connection's state is refused from its 4-byte header, before any of it is
buffered, and the connection closed.  Until a peer has proven it holds the
key (a frame that decrypts *and* carries the random key this node sent on
that connection), the bound is :data:`UNAUTHENTICATED_FRAME_LIMIT`; after,
:data:`AUTHENTICATED_FRAME_LIMIT`.  A frame that does not decrypt closes the
connection (pysyncobj's own rule, kept), and nothing is unpickled before it
decrypts.  Incoming connections that have not authenticated within
:data:`HANDSHAKE_TIMEOUT` are closed, and at most
:data:`MAX_UNAUTHENTICATED` of them are kept at once.
"""

from __future__ import annotations

import collections
import functools
import gzip
import ipaddress
import json
import math
import os
import random
import struct
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, FrozenSet, List, Optional, Sequence, Tuple

from cryptography.fernet import InvalidToken
from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, SyncObjConsumer, replicated
from pysyncobj import pickle as pysyncobj_pickle
from pysyncobj.journal import FIRST_RECORD_OFFSET, LAST_RECORD_OFFSET_OFFSET
from pysyncobj.monotonic import monotonic as pysyncobj_clock
from pysyncobj.node import TCPNode
from pysyncobj.tcp_connection import CONNECTION_STATE, TcpConnection
from pysyncobj.transport import TCPTransport
from pysyncobj.utility import TcpUtility, UtilityException
from twisted.internet import defer, task
from twisted.logger import Logger
from twisted.python.failure import Failure

from opengslb.config.model import ClusterConfig
from opengslb.state.keys import raft_password
from opengslb.state.local import check_data_dir, write_atomically
from opengslb.state.machine import Command, Result, StateMachine, state_counts
from opengslb.state.raftmeta import write_meta_in_background

log = Logger(namespace="opengslb.cluster")

PYSYNCOBJ_VERSION = "0.3.17"
MEMBERS_FILE = "members.json"
LEADER_WAIT = 2.0  # a write waits this long for an election to produce a leader
#: A leader that stops waits at most this long for a follower to take over (SIGTERM, removal).
HANDOVER_TIMEOUT = 2.5
#: A refused or unsuccessful handover request is repeated after this many seconds.
HANDOVER_RETRY = 0.25
HANDOVER_POLL = 0.01
#: Stopping pysyncobj (closing its sockets, joining its tick thread) is awaited this long.
DESTROY_TIMEOUT = 1.0
#: Joining: first and largest pause between attempts (doubling, with jitter), and how long a
#: joiner keeps looking for a leader before it gives up (exit 1).
JOIN_BACKOFF = 0.2
JOIN_BACKOFF_MAX = 3.0
JOIN_GIVE_UP = 120.0
#: How long one admin request (status, add) may take.
ADMIN_TIMEOUT = 3.0
JOIN_ADD_TIMEOUT = 10.0
#: A node without a leader for this long asks members it cannot reach to dial it (see _Transport).
REACH_OUT_AFTER = 1.5
#: A node in a self-demotion hold-down stands for election only after this many maximum
#: election timeouts without a leader (then it is the only candidate that can win).
HOLD_DOWN_GRACE = 3
JOURNAL_FILE = "raft.journal"
SNAPSHOT_FILE = "raft.snapshot"

#: Largest frame (bytes after the 4-byte length) accepted from a peer that has
#: not yet proven it holds the cluster key.  The handshake frames are a Fernet
#: token around a pickled 32-byte random key, a node address or an admin
#: command: about 200 bytes.
UNAUTHENTICATED_FRAME_LIMIT = 4096
#: Largest frame accepted from an authenticated peer.  pysyncobj sends log
#: entries in batches of about 64 KiB (appendEntriesBatchSizeBytes) plus at
#: most one more entry, and snapshots in 64 KiB chunks
#: (logCompactionBatchSize); an entry is one state-machine command, bounded by
#: the API's request-body limit (at most 1 MiB).  Compressed, encrypted and
#: base64-encoded, a frame stays under 2 MiB: 16 MiB is a wide margin that
#: still bounds what a buggy or compromised member can make this node hold.
AUTHENTICATED_FRAME_LIMIT = 16 * 1024 * 1024
#: Seconds an incoming connection has to authenticate before it is closed.
HANDSHAKE_TIMEOUT = 5.0
#: Incoming connections allowed to wait for authentication at once; more are
#: closed as soon as they are accepted.  (A cluster has at most 7 members,
#: each opening one connection per peer, plus short admin connections.)
MAX_UNAUTHENTICATED = 32
#: Refusals are all counted, but logged at most once per this many seconds
#: (a flood of garbage must not become a flood of log lines).
REJECT_LOG_INTERVAL = 10.0
#: Ticks of pysyncobj's thread further apart than this (beyond the tick's own wait) are logged:
#: heartbeats, votes and the lease all wait for it, so a stall near the lease costs the lease.
TICK_STALL = 0.2
_LENGTH = struct.Struct("i")  # pysyncobj's frame header: a native signed int

_REGULAR_ENTRY = 0  # pysyncobj's _COMMAND_TYPE.REGULAR: the first byte of a state-machine entry
_STATE_NAMES = {0: "Follower", 1: "Candidate", 2: "Leader"}
_FAIL_NAMES = {v: k.lower() for k, v in vars(FAIL_REASON).items() if not k.startswith("_")}


#: :attr:`ProposalFailed.outcome` when the write certainly changed nothing: it never left this
#: node, or the cluster refused or discarded it (no leader, not the leader, queue full, denied).
NOT_APPLIED = "not_applied"
#: :attr:`ProposalFailed.outcome` when the write left this node and its fate is not known: it
#: may still commit (a timeout, a leader change after it was sent).  Retrying is safe only
#: because every runtime-state command is idempotent (a PUT or DELETE states the end result).
UNKNOWN = "unknown"

# pysyncobj failures after which the command can never be applied: it was refused before it
# reached a leader's log, or the log position it got was taken by another entry.
_NEVER_APPLIED = frozenset({FAIL_REASON.QUEUE_FULL, FAIL_REASON.MISSING_LEADER, FAIL_REASON.DISCARDED,
                            FAIL_REASON.NOT_LEADER, FAIL_REASON.REQUEST_DENIED})


class ProposalFailed(Exception):
    """A replicated write (or a cluster operation) was not confirmed.

    ``outcome`` is :data:`NOT_APPLIED` when nothing changed for sure, and
    :data:`UNKNOWN` when the write may still be committed (Raft cannot take
    a proposal back once it has reached the leader's log).
    """

    def __init__(self, message: str, outcome: str = NOT_APPLIED) -> None:
        super().__init__(message)
        self.outcome = outcome


@dataclass(frozen=True)
class RaftTiming:
    """pysyncobj timing derived from ``cluster.raft`` (SPEC §2)."""

    min_timeout: float
    max_timeout: float
    append_entries_period: float
    leader_fallback: float

    @classmethod
    def from_config(cls, cluster: ClusterConfig) -> "RaftTiming":
        election = cluster.raft.election_timeout
        return cls(min_timeout=election / 2, max_timeout=election,
                   append_entries_period=cluster.raft.heartbeat_timeout / 10,
                   leader_fallback=0.8 * (election / 2))


@dataclass(frozen=True)
class RaftStatus:
    """What the tick thread last saw.

    ``lease_until`` is on the adapter's clock (:attr:`RaftNode.clock`), the
    one clock every lease time is taken from.  ``handing_over`` is true on a
    leader that has asked a follower to take over: it stops answering at
    once, so that it and its successor never answer together.
    """

    state: str = "Follower"
    term: int = 0
    commit_index: int = 0
    leader: Optional[str] = None
    self_address: str = ""
    members: Tuple[str, ...] = ()
    connected: FrozenSet[str] = frozenset()
    leader_ready: bool = False  # leader that has committed an entry of its own term
    lease_until: float = 0.0
    handing_over: bool = False
    joining: bool = False  # a joiner whose addition is not in its log yet
    published_at: float = 0.0  # when the tick thread took this status (adapter clock)
    #: A leader's record of when each other member last answered it this term (adapter clock).
    answers: Tuple[Tuple[str, float], ...] = ()

    @property
    def is_leader(self) -> bool:
        return self.state == "Leader"

    def serving(self, now: float) -> bool:
        """True while this node may answer with data: a ready leader, not handing over, holding
        its lease at ``now`` (a time on the adapter's clock)."""
        return self.leader_ready and not self.handing_over and now < self.lease_until

    @property
    def lease_lapsed(self) -> bool:
        """A ready leader, not handing over, whose lease had ended when this status was taken."""
        return self.leader_ready and not self.handing_over and self.published_at >= self.lease_until


class _LeaseTracker:
    """When each follower last answered this leader, on the adapter's clock.

    pysyncobj keeps its own record of responses, taken on CLOCK_MONOTONIC_RAW,
    which is not the clock the lease is read with: on a host where the two
    differ by more than the lease, a leader would never answer, or would
    answer after it lost its majority (issue 13).  The adapter therefore
    records each response itself, with its own clock, as it sees it.  A
    record belongs to one term: a new term starts with none.

    Responses are timed when they arrive, which is later than the follower's
    promise began (its receipt of our heartbeat); the margin between the
    lease (0.8 × the minimum election timeout) and the earliest moment a
    successor can answer (a vote round and a commit round after the
    follower's promise ends) covers that delay.
    """

    def __init__(self) -> None:
        self._term = -1
        self._times: Dict[str, float] = {}

    def record(self, node: str, term: int, now: float) -> None:
        """``node`` answered this leader in ``term`` at ``now``."""
        if term != self._term:
            self._term, self._times = term, {}
        self._times[node] = now

    def lease_until(self, others: Sequence[str], term: int, lease: float) -> float:
        """End of the lease of a leader of ``term`` whose other members are ``others``.

        A majority of all members (this node counts) must have answered within
        ``lease``.  A lone node's lease never ends; with no answers in
        ``term`` it has already ended.
        """
        need = (len(others) + 1) // 2  # answers from other members needed for a majority
        if need == 0:
            return math.inf
        if term != self._term:
            return -math.inf
        times = sorted((self._times.get(n, -math.inf) for n in others), reverse=True)
        return times[need - 1] + lease

    def answers(self, others: Sequence[str], term: int) -> Tuple[Tuple[str, float], ...]:
        """When each of ``others`` last answered a leader of ``term`` (-inf: not this term)."""
        return tuple((n, self._times.get(n, -math.inf) if term == self._term else -math.inf)
                     for n in sorted(others))


class _MachineConsumer(SyncObjConsumer):
    """The replicated state machine.  Applied on pysyncobj's tick thread."""

    def __init__(self, on_apply: Callable[[Command], None], on_restore: Callable[[Dict[str, Any]], None]) -> None:
        super().__init__()
        self._machine = StateMachine()
        self._on_apply = on_apply
        self._on_restore = on_restore

    @replicated
    def apply_command(self, command: Command) -> Result:
        try:
            result = self._machine.apply(command)
        except Exception as error:  # never let pysyncobj see an exception
            result = {"ok": False, "error": f"internal error: {error}"}
        if result.get("ok"):
            self._on_apply(command)
        return result

    def _serialize(self) -> Dict[str, Any]:
        return {"machine": self._machine.snapshot()}

    def _deserialize(self, data: Dict[str, Any]) -> None:
        snapshot = data["machine"]
        self._machine.restore(snapshot)
        self._on_restore(self._machine.snapshot())


_BAD_KEY = "a frame failed authentication (wrong cluster key?)"


class _CountingEncryptor:
    """Wraps pysyncobj's Fernet to count packets that fail authentication."""

    def __init__(self, inner: Any, on_reject: Callable[[str], None]) -> None:
        self._inner = inner
        self._on_reject = on_reject

    def encrypt_at_time(self, data: bytes, at: int) -> bytes:
        return self._inner.encrypt_at_time(data, at)

    def extract_timestamp(self, data: bytes) -> int:
        try:
            return self._inner.extract_timestamp(data)
        except InvalidToken:
            self._on_reject(_BAD_KEY)
            raise

    def decrypt(self, data: bytes) -> bytes:
        try:
            return self._inner.decrypt(data)
        except InvalidToken:
            self._on_reject(_BAD_KEY)
            raise


class _GuardedConnection(TcpConnection):
    """A pysyncobj connection that refuses oversized frames before buffering them.

    pysyncobj reads whatever the socket holds into one buffer and parses a
    frame only once all of it has arrived, so a 4-byte header claiming 2 GB
    would make it buffer whatever follows.  Here the header is checked as soon
    as it is there: a length below 0 or above :meth:`frame_limit` closes the
    connection at once.  Reading also pauses whenever a whole frame is
    buffered, so it is parsed (and a bad one refused) before more is read:
    the buffer never holds more than one frame's bound plus one ``recv``.

    ``authenticated`` turns true after a frame that decrypted and carried the
    random key this node sent on this connection (a replayed frame cannot).
    Runs on pysyncobj's thread, like the rest of the transport.  Connections
    are pysyncobj's own objects, adopted with :meth:`adopt` (the class is
    swapped), since pysyncobj creates them itself.
    """

    authenticated = False
    accepted_at = 0.0
    on_refused: Optional[Callable[[str], None]] = None

    @classmethod
    def adopt(cls, conn: TcpConnection, on_refused: Optional[Callable[[str], None]]) -> "_GuardedConnection":
        """Make ``conn`` (a plain TcpConnection) a guarded one, unauthenticated as of now."""
        conn.__class__ = cls
        guarded: _GuardedConnection = conn  # type: ignore[assignment]
        guarded.authenticated = False
        guarded.accepted_at = time.monotonic()
        guarded.on_refused = on_refused
        return guarded

    def frame_limit(self) -> int:
        """The largest frame accepted now (without a cluster key nothing authenticates)."""
        if self.authenticated or self.encryptor is None:
            return AUTHENTICATED_FRAME_LIMIT
        return UNAUTHENTICATED_FRAME_LIMIT

    def _next_frame_length(self) -> Optional[int]:
        """The length in the header of the buffered frame; None while the header is incomplete."""
        buffer = self._TcpConnection__readBuffer  # type: ignore[attr-defined]
        if len(buffer) < _LENGTH.size:
            return None
        length: int = _LENGTH.unpack_from(buffer)[0]
        return length

    def _refuse_oversized(self, length: int) -> None:
        limit = self.frame_limit()
        state = "an authenticated" if self.authenticated else "an unauthenticated"
        self.disconnect()
        if self.on_refused is not None:
            self.on_refused(f"{state} peer announced a {length}-byte frame (limit {limit})")

    def _TcpConnection__processRead(self) -> bool:
        """One ``recv``, unless the buffered header is refused or a whole frame waits to be parsed."""
        length = self._next_frame_length()
        if length is not None:
            if not 0 <= length <= self.frame_limit():
                self._refuse_oversized(length)
                return False
            if len(self._TcpConnection__readBuffer) >= _LENGTH.size + length:  # type: ignore[attr-defined]
                return False  # parse this frame before reading more
        more: bool = TcpConnection._TcpConnection__processRead(self)  # type: ignore[attr-defined]
        if self.state == CONNECTION_STATE.DISCONNECTED:
            return False
        length = self._next_frame_length()
        if length is not None and not 0 <= length <= self.frame_limit():
            self._refuse_oversized(length)
            return False
        return more

    def _TcpConnection__processParseMessage(self) -> Any:
        """pysyncobj's parse (decrypt, then unpickle), with the frame bound and authentication noted."""
        length = self._next_frame_length()
        if length is not None and not 0 <= length <= self.frame_limit():
            self._refuse_oversized(length)
            return None
        carries_our_key = self.recvRandKey is not None and self.encryptor is not None
        message = TcpConnection._TcpConnection__processParseMessage(self)  # type: ignore[attr-defined]
        if message is not None and carries_our_key and self.state != CONNECTION_STATE.DISCONNECTED:
            self.authenticated = True
        return message

    def disconnect(self) -> None:
        self.authenticated = False
        super().disconnect()


class _BoundConnection(_GuardedConnection):
    """An outgoing Raft connection that leaves from this node's own address.

    pysyncobj connects without binding, so on a host with several addresses
    (or 127.0.x.y test nodes) its traffic would leave from whatever address
    the kernel picks; binding makes firewall rules and partitions by address
    mean what they say.
    """

    source_host: Optional[str] = None

    def setSockoptKeepalive(self) -> None:  # called on the fresh socket, just before connect()
        super().setSockoptKeepalive()
        if self.source_host:
            self._TcpConnection__socket.bind((self.source_host, 0))  # type: ignore[attr-defined]


class _Transport(TCPTransport):
    """Marks vote requests sent by the target of a leadership transfer; binds outgoing connections;
    guards every connection (:class:`_GuardedConnection`) and bounds the unauthenticated ones.

    It also talks to **strangers**: cluster members this node has not learned
    yet.  pysyncobj lets only the node with the higher address dial, and
    drops an incoming connection from an address it does not know; while a
    join is settling, two members may know each other one way only, and if
    the leader dies then, neither can reach the other and no election can
    ever succeed (issue 13).  So an incoming connection that has proven it
    holds the cluster key (:class:`_GuardedConnection`) is kept even from an
    unknown address, and a node with the higher address dials an unknown
    lower one when that one asks (the ``opengslb_dial`` admin command,
    sent by :class:`RaftNode` while it has no leader).  Messages on such a
    connection reach pysyncobj as from any node (votes, pre-votes, appends);
    it never joins this node's membership, and is replaced by a regular
    connection once the node is learned.
    """

    def __init__(self, syncObj: Any, selfNode: Any, otherNodes: Any) -> None:
        self._strangers: Dict[Any, Any] = {}  # TCPNode -> its (incoming or outgoing) connection
        super().__init__(syncObj, selfNode, otherNodes)

    def _refused(self, reason: str) -> None:
        on_reject = getattr(self._syncObj, "_on_reject", None)
        if on_reject is not None:
            on_reject(reason)

    def _bind_outgoing(self, conn: Any) -> None:
        bound = _BoundConnection.adopt(conn, self._refused)
        source = getattr(self._syncObj, "_self_address", "").rpartition(":")[0].strip("[]")
        if source and source not in ("0.0.0.0", "::"):
            bound.source_host = source

    def addNode(self, node: Any) -> None:
        stranger = self._strangers.pop(node, None)
        if stranger is not None:  # learned at last: replace the stranger's connection by a regular one
            self._connections.pop(node, None)
            stranger.setOnDisconnectedCallback(None)
            stranger.disconnect()
            self._onNodeDisconnected(node)
        super().addNode(node)
        conn = self._connections.get(node)
        if conn is None or isinstance(conn, _GuardedConnection):
            return
        self._bind_outgoing(conn)

    def dial_stranger(self, address: str) -> bool:
        """Connect to ``address``, a node not (yet) among ours that asked to be dialled.

        Only a node with the higher address dials (pysyncobj's rule, so the
        two never cross); returns whether a connection is on its way.
        """
        node = TCPNode(address)
        if (self._selfNode is None or node == self._selfNode or node in self._nodes
                or not self._selfNode.address > node.address):
            return False
        current = self._connections.get(node)
        if current is not None and current.state != CONNECTION_STATE.DISCONNECTED:
            return True
        conn = TcpConnection(poller=self._syncObj._poller, timeout=self._syncObj.conf.connectionTimeout,
                             sendBufferSize=self._syncObj.conf.sendBufferSize,
                             recvBufferSize=self._syncObj.conf.recvBufferSize,
                             keepalive=self._syncObj.conf.tcp_keepalive)
        conn.encryptor = self._syncObj.encryptor
        conn.setOnConnectedCallback(functools.partial(self._onOutgoingConnected, conn))
        conn.setOnMessageReceivedCallback(functools.partial(self._onMessageReceived, node))
        conn.setOnDisconnectedCallback(functools.partial(self._onDisconnected, conn))
        self._bind_outgoing(conn)
        self._connections[node] = conn
        self._strangers[node] = conn
        return bool(conn.connect(node.ip, node.port))

    def _onIncomingMessageReceived(self, conn: Any, message: Any) -> None:
        if (conn.sendRandKey and getattr(conn, "authenticated", False) and isinstance(message, str)
                and message != "readonly" and message not in self._nodeAddrToNode
                and self._selfNode is not None and message != self._selfNode.address
                and _is_peer_address(message)):
            node = TCPNode(message)  # a key holder we do not know yet: keep it as a stranger
            previous = self._strangers.pop(node, None)
            if previous is not None and previous is not conn:
                previous.setOnDisconnectedCallback(None)
                previous.disconnect()
            self._unknownConnections.discard(conn)
            self._connections[node] = conn
            self._strangers[node] = conn
            conn.setOnMessageReceivedCallback(functools.partial(self._onMessageReceived, node))
            self._onNodeConnected(node)
            return
        super()._onIncomingMessageReceived(conn, message)

    def _onDisconnected(self, conn: Any) -> None:
        node = self._connToNode(conn)
        if node is not None and self._strangers.get(node) is conn:
            del self._strangers[node]
            self._connections.pop(node, None)
            self._unknownConnections.discard(conn)
            self._onNodeDisconnected(node)
            return
        super()._onDisconnected(conn)

    def _onNewIncomingConnection(self, conn: Any) -> None:
        waiting = sum(1 for c in self._unknownConnections if not getattr(c, "authenticated", False))
        if waiting >= MAX_UNAUTHENTICATED:
            conn.disconnect()  # no callbacks are set yet: this only closes the socket
            self._refused(f"more than {MAX_UNAUTHENTICATED} connections waiting to authenticate")
            return
        super()._onNewIncomingConnection(conn)
        _GuardedConnection.adopt(conn, self._refused)

    def _onTick(self) -> None:
        super()._onTick()
        deadline = time.monotonic() - HANDSHAKE_TIMEOUT
        for conn in list(self._unknownConnections):
            if not getattr(conn, "authenticated", True) and conn.accepted_at < deadline:
                conn.disconnect()  # its disconnect callback drops it from _unknownConnections
                self._refused(f"a connection did not authenticate within {HANDSHAKE_TIMEOUT:g}s")

    def send(self, node: Any, message: Any) -> bool:
        sync = self._syncObj
        if (isinstance(message, dict) and message.get("type") == "request_vote"
                and hasattr(sync, "_clock") and sync._clock() < sync._transfer_election_until):
            message = dict(message, transfer=True)
        return super().send(node, message)


class _SyncObj(SyncObj):
    """SyncObj plus lease publication, leader stickiness, pre-vote and key-failure counting.

    Clocks: ``clock`` (the adapter's clock, shared with :class:`RaftNode`)
    times everything the adapter decides on: the lease, leader contact,
    pre-vote grants, transfers.  pysyncobj's own deadlines (the election
    timer) are on pysyncobj's clock and are only ever compared with it.

    Work for the tick thread (:meth:`call_on_tick`) goes through a queue that
    the one tick callback registered here drains; pysyncobj's tick-callback
    list is never changed after start-up, since it is guarded by a
    non-reentrant lock that the tick thread holds while running callbacks.
    """

    def __init__(self, self_address: str, others: List[str], conf: SyncObjConf,
                 consumer: _MachineConsumer, timing: RaftTiming, on_reject: Callable[[str], None],
                 publish: Callable[["RaftStatus"], None],
                 clock: Callable[[], float] = time.monotonic, joining: bool = False,
                 on_stall: Callable[[float], None] = lambda gap: None) -> None:
        self._init_adapter(self_address, timing, on_reject, publish, clock, on_stall)
        self.joining = joining
        super().__init__(self_address, others, conf, consumers=[consumer], transportClass=_Transport)
        #: The journal's once-a-second meta store runs in its own thread (see raftmeta).
        self.meta_writer = write_meta_in_background(getattr(self, "_SyncObj__raftLog", None))
        self._SyncObj__transport.setOnUtilityMessageCallback(  # type: ignore[attr-defined]
            "opengslb_dial", self._on_dial_request)
        self.addOnTickCallback(self._after_tick)

    def _on_dial_request(self, args: List[Any], reply: Callable[[Any, Any], None]) -> None:
        """Tick thread: a key holder (admin command ``opengslb_dial ADDRESS``) asks to be dialled."""
        address = args[0] if args else None
        transport = self._SyncObj__transport  # type: ignore[attr-defined]
        if isinstance(address, str) and _is_peer_address(address) and transport.dial_stranger(address):
            reply(None, FAIL_REASON.SUCCESS)
        else:
            reply(None, FAIL_REASON.REQUEST_DENIED)

    def _init_adapter(self, self_address: str, timing: RaftTiming, on_reject: Callable[[str], None],
                      publish: Callable[["RaftStatus"], None], clock: Callable[[], float],
                      on_stall: Callable[[float], None] = lambda gap: None) -> None:
        """The adapter's own fields (set before pysyncobj starts its tick thread)."""
        self._timing = timing
        self._clock = clock
        self._last_leader_contact = -math.inf
        self._transfer_election_until = -math.inf
        self._handover_until = -math.inf
        self._publish = publish
        self._on_stall = on_stall
        self.tick_started = -math.inf  # when the current (or last) tick began (adapter clock)
        self.meta_writer = None
        self.tick_thread: Optional[int] = None  # the thread running ticks, once one ran
        self._self_address = self_address
        self._encryptor_wrapper: Optional[_CountingEncryptor] = None
        self._on_reject = on_reject
        self._prevote_round = 0
        self._prevote_grants: set = set()
        self._prevote_granted_at = -math.inf
        self._responses = _LeaseTracker()
        self._tick_work: Deque[Callable[[], None]] = collections.deque()
        #: A joiner whose addition is not confirmed yet never starts an election (it may not
        #: know every member yet); it still answers votes.  Cleared by RaftNode (any thread).
        self.joining = False
        self._join_scanned = 0  # log entries up to here hold no entry adding this node
        self._change_pending_until = 0  # log index of the last membership change not yet applied
        #: After a self-demotion: no elections before this time (adapter clock) unless no leader
        #: was heard for HOLD_DOWN_GRACE election timeouts.  Set by RaftNode.hold_down (any thread).
        self.hold_down_until = -math.inf

    def call_on_tick(self, work: Callable[[], None]) -> None:
        """Run ``work()`` on the tick thread after the next tick.  Any thread; never blocks.

        ``work`` must not raise (it is run under pysyncobj's tick-callback
        lock: it must not add or remove tick callbacks either).
        """
        self._tick_work.append(work)  # deque.append is atomic

    def _run_tick_work(self) -> None:
        while True:
            try:
                work = self._tick_work.popleft()
            except IndexError:
                return
            work()

    def _SyncObj__changeCluster(self, request: Any) -> bool:
        """Leader: accept a membership change only when no earlier one is still unapplied.

        pysyncobj means to allow one change at a time but never records the
        pending one, so concurrent joins could put two uncommitted changes in
        the log (Raft's single-server changes are safe only one at a time).  A
        refused change answers REQUEST_DENIED; joiners retry with backoff.
        """
        if self._SyncObj__raftLastApplied < self._change_pending_until:  # type: ignore[attr-defined]
            return False
        accepted: bool = SyncObj._SyncObj__changeCluster(self, request)  # type: ignore[attr-defined]
        if accepted:  # it goes to the next log index
            self._change_pending_until = self._SyncObj__getCurrentLogIndex() + 1  # type: ignore[attr-defined]
        return accepted

    def _transferLeadership(self, args: Any, callback: Any) -> None:
        """pysyncobj's ``transfer`` admin command, made to stop answering first like every
        handover here (:meth:`request_handover`); the most caught-up follower is chosen."""
        self.request_handover(lambda sent: callback(
            None, FAIL_REASON.SUCCESS if sent else FAIL_REASON.REQUEST_DENIED))

    def request_handover(self, on_result: Callable[[bool], None], prefer: FrozenSet[str] = frozenset()) -> None:
        """Tick thread: ask the most caught-up connected follower to take over (Raft's TimeoutNow).

        ``on_result(sent)`` tells whether the request went out; pysyncobj
        refuses when this node does not lead or no follower is connected and
        fully caught up.  Once sent, this leader stops answering (its
        ``handing_over`` status) for up to the maximum election timeout, the
        time its successor has to win; if none does, it answers again.
        """
        outcome: List[bool] = []

        def done(_: Any, error: Any) -> None:
            outcome.append(error == FAIL_REASON.SUCCESS)

        if self._SyncObj__raftState == 2:  # type: ignore[attr-defined]
            # Stop answering before the successor can: the request may reach it at once.
            self._handover_until = self._clock() + self._timing.max_timeout
            self._publish_status()
            self.transferLeadership(node=self._handover_target(prefer), callback=done)
        sent = bool(outcome and outcome[0])
        if not sent:
            self._handover_until = -math.inf
        on_result(sent)

    def _handover_target(self, prefer: FrozenSet[str]) -> Any:
        """The most caught-up connected follower among ``prefer`` (None: let pysyncobj choose
        among all, e.g. when none of the preferred is connected and fully caught up)."""
        if not prefer:
            return None
        last = self._SyncObj__getCurrentLogIndex()  # type: ignore[attr-defined]
        match = self._SyncObj__raftMatchIndex  # type: ignore[attr-defined]
        connected = self._SyncObj__connectedNodes  # type: ignore[attr-defined]
        candidates = sorted((n.id, n) for n in self._SyncObj__otherNodes  # type: ignore[attr-defined]
                            if n.id in prefer and n in connected and match.get(n, 0) == last)
        return candidates[0][1] if candidates else None

    @property
    def encryptor(self) -> Any:
        inner = self._SyncObj__encryptor  # type: ignore[attr-defined]
        if inner is None:
            return None
        if self._encryptor_wrapper is None:
            self._encryptor_wrapper = _CountingEncryptor(inner, self._on_reject)
        return self._encryptor_wrapper

    # -- pre-vote -----------------------------------------------------------------

    def _onTick(self, timeToWait: float = 0.0) -> None:
        started = self._clock()
        gap, self.tick_started = started - self.tick_started, started
        self.tick_thread = threading.get_ident()
        if TICK_STALL + timeToWait < gap < math.inf:  # the last tick (its poll waits timeToWait) ran long
            self._on_stall(gap)
        self._prevote_gate()
        super()._onTick(timeToWait)

    def _prevote_gate(self) -> None:
        """Hold back an expired election timer until a majority grants a pre-vote."""
        if self._SyncObj__raftState == 2 or self._SyncObj__selfNode is None:  # type: ignore[attr-defined]
            return
        raft_now = pysyncobj_clock()  # the election deadline is on pysyncobj's clock
        if self._SyncObj__raftElectionDeadline >= raft_now:  # type: ignore[attr-defined,has-type]
            return
        now = self._clock()
        others = self._SyncObj__otherNodes  # type: ignore[attr-defined]
        if self.joining:  # not a confirmed member yet: never stand for election
            self._SyncObj__raftElectionDeadline = raft_now + self._SyncObj__generateRaftTimeout()  # type: ignore[attr-defined]
            self._SyncObj__raftLeader = None  # nothing heard for an election timeout
            return
        if not others or now < self._transfer_election_until:
            return  # a single node, or the target of a leadership transfer: elect at once
        if now < self.hold_down_until and now - self._last_leader_contact < HOLD_DOWN_GRACE * self._timing.max_timeout:
            # Demoted lately: leave the election to the others; only when nobody has led for
            # HOLD_DOWN_GRACE election timeouts (this node is the only candidate) stand again.
            self._SyncObj__raftElectionDeadline = raft_now + self._SyncObj__generateRaftTimeout()  # type: ignore[attr-defined]
            self._SyncObj__raftLeader = None
            return
        if now - self._prevote_granted_at < self._timing.max_timeout:
            return  # a majority said yes: let pysyncobj run the election now
        self._SyncObj__raftElectionDeadline = raft_now + self._SyncObj__generateRaftTimeout()  # type: ignore[attr-defined]
        # No word from a leader for a whole election timeout: stop naming one (pysyncobj forgets it
        # only when it starts an election, which the pre-vote may hold back indefinitely).
        self._SyncObj__raftLeader = None
        self._prevote_round += 1
        self._prevote_grants = {self._self_address}
        message = {"type": "opengslb_prevote", "round": self._prevote_round,
                   "term": self._SyncObj__raftCurrentTerm + 1,  # type: ignore[attr-defined]
                   "last_log_index": self._SyncObj__getCurrentLogIndex(),  # type: ignore[attr-defined]
                   "last_log_term": self._SyncObj__getCurrentLogTerm()}  # type: ignore[attr-defined]
        for node in others:
            self._SyncObj__transport.send(node, message)  # type: ignore[attr-defined]

    def _answer_prevote(self, node: Any, message: Dict[str, Any], now: float) -> None:
        my_term = self._SyncObj__getCurrentLogTerm()  # type: ignore[attr-defined]
        my_index = self._SyncObj__getCurrentLogIndex()  # type: ignore[attr-defined]
        log_ok = (message["last_log_term"], message["last_log_index"]) >= (my_term, my_index)
        if self._SyncObj__raftState == 2:  # type: ignore[attr-defined]
            leader_alive = self._lease_until(now) > now
        else:
            leader_alive = now - self._last_leader_contact < self._timing.leader_fallback
        granted = (log_ok and not leader_alive
                   and message["term"] > self._SyncObj__raftCurrentTerm)  # type: ignore[attr-defined]
        self._SyncObj__transport.send(node, {"type": "opengslb_prevote_response",  # type: ignore[attr-defined]
                                             "round": message["round"], "granted": granted})

    def _count_prevote(self, node: Any, message: Dict[str, Any], now: float) -> None:
        if message.get("round") != self._prevote_round or not message.get("granted"):
            return
        self._prevote_grants.add(node.id)
        members = len(self._SyncObj__otherNodes) + 1  # type: ignore[attr-defined]
        if len(self._prevote_grants) > members / 2:
            self._prevote_granted_at = now
            self._SyncObj__raftElectionDeadline = 0  # type: ignore[attr-defined]

    def _SyncObj__onMessageReceived(self, node: Any, message: Any) -> None:
        kind = message.get("type") if isinstance(message, dict) else None
        now = self._clock()
        if kind == "opengslb_prevote":
            self._answer_prevote(node, message, now)
            return
        if kind == "opengslb_prevote_response":
            self._count_prevote(node, message, now)
            return
        if kind == "opengslb_stale_term":
            self._step_down_for(message)
            return
        if kind == "append_entries":
            my_term = self._SyncObj__raftCurrentTerm  # type: ignore[attr-defined]
            if message["term"] < my_term:
                # A leader behind our term (we ran ahead while cut off): tell it, so it steps
                # down and one election brings everyone to one term (etcd's answer to the same
                # pre-vote + check-quorum corner).  pysyncobj would silently ignore it forever.
                self._SyncObj__transport.send(node, {"type": "opengslb_stale_term",  # type: ignore[attr-defined]
                                                     "term": my_term})
                return
            self._last_leader_contact = now
        elif kind == "next_node_idx":
            if self._SyncObj__raftState == 2:  # type: ignore[attr-defined]  # a follower answered us
                self._responses.record(node.id, self._SyncObj__raftCurrentTerm, now)  # type: ignore[attr-defined]
        elif kind == "timeout_now":
            self._transfer_election_until = now + self._timing.max_timeout
        elif kind == "request_vote" and not message.get("transfer"):
            state = self._SyncObj__raftState  # type: ignore[attr-defined]
            if state == 2:  # leader: keep leading while holding a majority
                if self._lease_until(now) > now:
                    return
            elif now - self._last_leader_contact < self._timing.leader_fallback:
                return  # a live leader exists: do not let a stray candidate disrupt it
        SyncObj._SyncObj__onMessageReceived(self, node, message)  # type: ignore[attr-defined]

    def _step_down_for(self, message: Dict[str, Any]) -> None:
        """A follower has a higher term than ours: adopt it and stop leading (Raft's rule)."""
        term = message.get("term")
        if not isinstance(term, int) or term <= self._SyncObj__raftCurrentTerm:  # type: ignore[attr-defined]
            return
        self._SyncObj__setCurrentTerm(term, None)  # type: ignore[attr-defined]
        self._SyncObj__setState(0)  # type: ignore[attr-defined]  # follower
        self._SyncObj__raftLeader = None

    def _lease_until(self, now: float) -> float:
        """End of this leader's lease on the adapter's clock (see :class:`_LeaseTracker`)."""
        others = [n.id for n in self._SyncObj__otherNodes]  # type: ignore[attr-defined]
        return self._responses.lease_until(others, self._SyncObj__raftCurrentTerm,  # type: ignore[attr-defined]
                                           self._timing.leader_fallback)

    def _after_tick(self) -> None:
        """Runs on the tick thread after every tick: queued work, then a fresh status."""
        try:
            self._run_tick_work()
            if self.joining:
                self._check_added()
        finally:
            self._publish_status()

    def _check_added(self) -> None:
        """Joining: end joining mode once the entry adding this node is in the log.

        From then on this node is a member by Raft's rule (a configuration
        takes effect when appended), and it knows every member: all earlier
        changes come before it in the log, since the leader accepts one at a
        time.  A log that starts after the scanned part (a snapshot from the
        leader) also proves membership: only members are sent snapshots.
        """
        log_index = self._SyncObj__getCurrentLogIndex()  # type: ignore[attr-defined]
        if log_index <= self._join_scanned:
            return
        entries = self._SyncObj__getEntries(self._join_scanned + 1)  # type: ignore[attr-defined]
        if not entries:
            self.joining = False  # the log now starts after the scanned part: a snapshot
            return
        for command, _, _ in entries:
            request = self._SyncObj__parseChangeClusterRequest(command)  # type: ignore[attr-defined]
            if request and request[0] == "add" and request[1] == self._self_address:
                self.joining = False
                return
        self._join_scanned = log_index

    def _publish_status(self) -> None:
        state = self._SyncObj__raftState  # type: ignore[attr-defined]
        if state == 1:
            self._prevote_granted_at = -math.inf  # a grant starts one election, not several
        leader = self._SyncObj__raftLeader  # type: ignore[attr-defined]
        others = self._SyncObj__otherNodes  # type: ignore[attr-defined]
        connected = self._SyncObj__connectedNodes  # type: ignore[attr-defined]
        commit = self._SyncObj__raftCommitIndex  # type: ignore[attr-defined]
        noop = self._SyncObj__noopIDx  # type: ignore[attr-defined]
        now = self._clock()
        is_leader = state == 2
        term = self._SyncObj__raftCurrentTerm  # type: ignore[attr-defined]
        self._publish(RaftStatus(
            state=_STATE_NAMES.get(state, "Follower"),
            term=term,
            commit_index=commit,
            leader=leader.id if leader is not None else None,
            self_address=self._self_address,
            members=tuple(sorted([self._self_address] + [n.id for n in others])),
            connected=frozenset(n.id for n in connected),
            leader_ready=is_leader and noop is not None and commit >= noop
            and self._SyncObj__raftLastApplied >= noop,  # type: ignore[attr-defined]
            lease_until=self._lease_until(now) if is_leader else 0.0,
            handing_over=is_leader and now < self._handover_until,
            joining=self.joining,
            published_at=now,
            answers=self._responses.answers([n.id for n in others], term) if is_leader else (),
        ))


# -- reading a stopped node's state (migration to standalone, docs/cluster.md) ------------

#: The files of a node's cluster state in its data directory.
CLUSTER_FILES = (MEMBERS_FILE, JOURNAL_FILE, JOURNAL_FILE + ".meta", SNAPSHOT_FILE)


def cluster_state_present(data_dir: str) -> bool:
    """True when ``data_dir`` holds cluster state (a member list or a Raft journal)."""
    return any(os.path.exists(os.path.join(data_dir, name)) for name in (MEMBERS_FILE, JOURNAL_FILE))


def _journal_entries(path: str) -> List[Tuple[bytes, int, int]]:
    """(command, index, term) of every record in pysyncobj's journal file, read only (no mmap)."""
    with open(path, "rb") as handle:
        data = handle.read()
    if len(data) < FIRST_RECORD_OFFSET:
        return []
    end = struct.unpack_from("<I", data, LAST_RECORD_OFFSET_OFFSET)[0]
    entries = []
    offset = FIRST_RECORD_OFFSET
    while offset < min(end, len(data)):
        size = struct.unpack_from("<I", data, offset)[0]
        record = data[offset + 4:offset + 4 + size]
        index, term = struct.unpack_from("<QQ", record)
        entries.append((bytes(record[16:]), index, term))
        offset += size + 8
    return entries


def _command_of(entry: bytes) -> Optional[Command]:
    """The state-machine command in a regular log entry (``apply_command``'s one argument)."""
    if not entry or entry[0] != _REGULAR_ENTRY:
        return None
    call = pysyncobj_pickle.loads(entry[1:])
    args = call[1] if isinstance(call, tuple) and len(call) >= 2 else ()
    command = args[0] if args else None
    return command if isinstance(command, dict) and "op" in command else None


def read_committed_state(data_dir: str) -> Tuple[Dict[str, Any], int]:
    """The last committed runtime state of a stopped node: (snapshot, commit index).

    Reads what pysyncobj left in ``data_dir``: the snapshot (``raft.snapshot``,
    when log compaction wrote one) and then the journal's entries after it up
    to the commit index recorded in ``raft.journal.meta``.  pysyncobj records
    the commit index at most once a second while running; :meth:`RaftNode.stop`
    records it once more after pysyncobj stopped, so a clean stop loses
    nothing.  Call only while no node runs on ``data_dir``; blocking file I/O
    (start-up, before serving).

    :raise ValueError: the files cannot be read or do not hold runtime state.
    """
    machine = StateMachine()
    applied_through = 0
    try:
        snapshot_path = os.path.join(data_dir, SNAPSHOT_FILE)
        if os.path.exists(snapshot_path):
            with gzip.open(snapshot_path, "rb") as handle:
                dump = pysyncobj_pickle.load(handle)
            consumers = dump[0][1:] if dump[0] is not None else []
            if consumers and isinstance(consumers[0], dict) and "machine" in consumers[0]:
                machine.restore(consumers[0]["machine"])
            applied_through = int(dump[1][1])
        journal_path = os.path.join(data_dir, JOURNAL_FILE)
        commit = applied_through
        if os.path.exists(journal_path):
            meta_path = journal_path + ".meta"
            meta: Dict[str, Any] = {}
            if os.path.exists(meta_path):
                with open(meta_path, "rb") as handle:
                    meta = pysyncobj_pickle.loads(handle.read())
            commit = max(commit, int(meta.get("raftCommitIndex", 1)))
            for entry, index, _term in _journal_entries(journal_path):
                if applied_through < index <= commit:
                    command = _command_of(entry)
                    if command is not None:
                        machine.apply(command)
    except (OSError, EOFError, ValueError, TypeError, IndexError, KeyError, struct.error) as error:
        raise ValueError(f"cannot read the cluster state in {data_dir}: {error}") from None
    except Exception as error:  # unpickling garbage raises anything
        raise ValueError(f"cannot read the cluster state in {data_dir}: {type(error).__name__}: {error}") from None
    return machine.snapshot(), commit


def archive_cluster_state(data_dir: str, stamp: str) -> str:
    """Move the cluster files of ``data_dir`` into ``data_dir/cluster-STAMP/``; returns that path.

    After a move to standalone the node no longer holds cluster state, so a
    later start in cluster mode needs ``--bootstrap`` or ``--join`` again and a
    later standalone start does not import the old cluster state twice.
    """
    target = os.path.join(data_dir, f"cluster-{stamp}")
    os.makedirs(target, mode=0o700, exist_ok=True)
    for name in CLUSTER_FILES:
        path = os.path.join(data_dir, name)
        if os.path.exists(path):
            os.replace(path, os.path.join(target, name))
    return target


def describe_counts(snapshot: Dict[str, Any]) -> Dict[str, int]:
    """Counts of a snapshot's runtime parts (overrides, registrations, signals, vetoes)."""
    machine = StateMachine()
    machine.restore(snapshot)
    return state_counts(machine)


def _is_peer_address(text: str) -> bool:
    """True for ``IPv4:port`` or ``[IPv6]:port`` (a node's identity on the cluster port)."""
    host, _, port = text.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        return False
    try:
        ipaddress.ip_address(host[1:-1] if host.startswith("[") and host.endswith("]") else host)
    except ValueError:
        return False
    return True


def _admin(address: str, command: List[Any], password: str, timeout: float) -> Any:
    """Run one pysyncobj admin command on ``address`` (blocking: call it in a thread)."""
    return TcpUtility(password=password, timeout=timeout).executeCommand(address, command)


def _members_from_status(status: Dict[str, Any]) -> List[str]:
    members = [status["self"].id] if status.get("self") is not None else []
    prefix = "partner_node_status_server_"
    members += [key[len(prefix):] for key in status if key.startswith(prefix)]
    return sorted(set(members))


class RaftNode:
    """One cluster member's Raft participation, driven from the reactor.

    :meth:`start` (a Deferred) resumes from the data directory, bootstraps or
    joins.  Status listeners run on the reactor thread whenever leadership,
    term or membership changes; state listeners after every applied command.
    ``machine`` is the reactor-side mirror of the replicated state.
    """

    def __init__(self, reactor: Any, cluster: ClusterConfig, propose_timeout: float = 5.0,
                 clock: Callable[[], float] = time.monotonic, rng: Optional[random.Random] = None) -> None:
        self.reactor = reactor
        self.cluster = cluster
        self.propose_timeout = propose_timeout
        #: The one monotonic clock of every lease time (read on both threads).
        self.clock = clock
        self.machine = StateMachine()
        self.status = RaftStatus(self_address=self.address)
        self.rejected_packets = 0
        self._last_reject_log = -math.inf
        self._unlogged_rejects = 0
        self.elections = 0
        self.last_election: Optional[float] = None
        self._listeners: List[Callable[[RaftStatus], None]] = []
        self._state_listeners: List[Callable[[], None]] = []
        self._sync: Optional[_SyncObj] = None
        self._consumer: Optional[_MachineConsumer] = None
        self._joined_through: List[str] = []
        self._stopping = False
        self._joining = False
        self._joined: "Optional[defer.Deferred[None]]" = None  # the joiner's add loop
        self._leaderless_since: Optional[float] = None
        self._lease_lapsed_at = 0.0  # when this leader's lease last lapsed (adapter clock)
        self._reach_loop: Optional[task.LoopingCall] = None
        self._tick_watch: Optional[task.LoopingCall] = None
        self._members_to_save: Optional[Tuple[str, ...]] = None  # waiting for the writer
        self._members_saving = False
        self._stuck_reported = -math.inf  # the start of the last stuck tick reported
        self._last_watch = -math.inf  # the tick watch's last run (adapter clock)
        self._removed_listeners: List[Callable[[str], None]] = []
        self._checking_removal = False
        self.removed: Optional[str] = None  # why this node is no longer a member, once it knows
        self._rng = rng or random.Random()

    # -- identity and files ---------------------------------------------------

    @property
    def address(self) -> str:
        """This node's identity: its advertise address (else the bind address)."""
        return self.cluster.advertise_address or f"{self.cluster.bind_address.host}:{self.cluster.bind_address.port}"

    @property
    def data_dir(self) -> str:
        return self.cluster.raft.data_dir

    @property
    def timing(self) -> RaftTiming:
        return RaftTiming.from_config(self.cluster)

    @property
    def password(self) -> str:
        return raft_password(self.cluster.gossip.encryption_key)

    def _members_path(self) -> str:
        return os.path.join(self.data_dir, MEMBERS_FILE)

    def has_state(self) -> bool:
        """True when the data directory already holds this node's cluster state."""
        return os.path.exists(self._members_path())

    def _save_members(self, members: Tuple[str, ...]) -> None:
        data = json.dumps({"self": self.address, "members": list(members)}, indent=2).encode()
        write_atomically(self._members_path(), data)

    def _load_members(self) -> List[str]:
        with open(self._members_path(), "rb") as handle:
            saved = json.loads(handle.read())
        if saved.get("self") != self.address:
            raise ValueError(f"{self._members_path()} belongs to {saved.get('self')}, not {self.address}")
        return list(saved["members"])

    # -- start and stop --------------------------------------------------------------

    @defer.inlineCallbacks
    def start(self, bootstrap: bool, join: List[str]) -> Any:
        """Resume from the data dir, bootstrap a new cluster, or join through ``join``.

        Resuming wins whenever the data dir holds state (so ``--bootstrap`` in a
        shared file is safe).  Fails with a clear exception otherwise.
        """
        check_data_dir(self.data_dir)
        leader: Optional[str] = None  # the leader a fresh joiner found
        if self.has_state():
            members = self._load_members()
            log.info("rejoining the cluster from {dir} as {address} ({count} members)",
                     dir=self.data_dir, address=self.address, count=len(members), event="raft_resume")
        elif bootstrap:
            members = [self.address]
            log.info("bootstrapping a new cluster as {address}", address=self.address,
                     event="raft_bootstrap")
        elif join:
            leader, members = yield self._join(join)
            self._joined_through = list(join)
        else:
            raise RuntimeError("this node has no cluster state: start it with --bootstrap (first node) "
                               "or --join HOST:PORT (an existing member)")
        joining = self.address not in members
        # A joiner saves the leader's list too (it does not name this node yet): restarted
        # before its addition reached its log, it resumes joining through those members
        # instead of refusing to start for want of cluster state.
        self._save_members(tuple(sorted(set(members))))
        if leader is not None and joining:  # said once the list is stored: a restart now resumes joining
            log.info("joining the cluster: leader {leader}, members {members}", leader=leader,
                     members=", ".join(members), event="raft_join")
        members = sorted(set(members) | {self.address})
        self._joining = joining
        self._start_syncobj([m for m in members if m != self.address], joining=joining)
        if joining:
            self._joined = self._add_self(list(join), members)
        return None

    def _start_syncobj(self, others: List[str], joining: bool = False) -> None:
        timing = self.timing
        raft = self.cluster.raft
        conf = SyncObjConf(
            password=self.password,
            raftMinTimeout=timing.min_timeout, raftMaxTimeout=timing.max_timeout,
            appendEntriesPeriod=timing.append_entries_period,
            leaderFallbackTimeout=timing.leader_fallback,
            connectionRetryTime=0.5, connectionTimeout=max(2.0, 3 * timing.max_timeout),
            journalFile=os.path.join(self.data_dir, JOURNAL_FILE),
            fullDumpFile=os.path.join(self.data_dir, SNAPSHOT_FILE),
            logCompactionMinEntries=raft.snapshot_threshold, logCompactionMinTime=raft.snapshot_interval,
            useFork=False, commandsWaitLeader=False, dynamicMembershipChange=True,
            bindAddress=f"{self.cluster.bind_address.host or '0.0.0.0'}:{self.cluster.bind_address.port}",
            autoTickPeriod=0.02,
        )
        consumer = _MachineConsumer(on_apply=self._applied_on_tick, on_restore=self._restored_on_tick)
        self._sync = _SyncObj(self.address, others, conf, consumer, timing,
                              on_reject=self._rejected_on_tick, publish=self._published_on_tick,
                              on_stall=self._stalled_on_tick,
                              clock=self.clock, joining=joining)
        self._consumer = consumer
        self._reach_loop = task.LoopingCall(self._reach_out)
        self._reach_loop.clock = self.reactor
        self._reach_loop.start(1.0, now=False)
        self._tick_watch = task.LoopingCall(self._watch_tick)
        self._tick_watch.clock = self.reactor
        self._tick_watch.start(TICK_STALL / 2, now=False)

    def _watch_tick(self) -> None:
        """Reactor: name what a tick thread stuck for :data:`TICK_STALL` is doing (its stack),
        once per stuck tick; the thread itself can only tell afterwards how long it was away."""
        now, previous = self.clock(), self._last_watch
        self._last_watch = now
        sync = self._sync
        if sync is None or sync.tick_thread is None or now - previous > TICK_STALL:
            return  # the whole process was paused (SIGSTOP, a GC pause): not the tick thread's doing
        started = sync.tick_started
        stuck = now - started
        if stuck <= TICK_STALL + 0.05 or started == self._stuck_reported:
            return
        self._stuck_reported = started
        frame = sys._current_frames().get(sync.tick_thread)
        where = "".join(traceback.format_stack(frame, limit=8)) if frame is not None else "(no frame)\n"
        log.warn("raft tick thread stuck for {stuck:.3f}s so far, in:\n{where}", stuck=stuck,
                 where=where.rstrip(), event="raft_tick_stuck")

    def _reach_out(self) -> None:
        """Without a leader for :data:`REACH_OUT_AFTER` seconds, ask each member with a higher
        address that is not connected to dial this node: it may not have learned this node yet,
        and pysyncobj lets only the higher address dial (see :class:`_Transport`)."""
        since = self._leaderless_since
        if self._sync is None or since is None or self.reactor.seconds() - since < REACH_OUT_AFTER:
            return
        status = self.status
        for member in status.members:
            if member > self.address and member not in status.connected:
                d = _in_daemon_thread(self.reactor, _admin, member, ["opengslb_dial", self.address],
                                      self.password, 1.0)
                d.addErrback(lambda failure: None)
        self._check_removed()

    def _check_removed(self) -> None:
        """Leaderless: is it because this node was removed?  The leader's member list says.

        A removed node hears from nobody (the leader drops it at once), so it
        asks the members it knows for the leader's list; if the leader does
        not list it, it reports :meth:`note_removed`.  A joiner never asks.
        """
        if self._joining or self._checking_removal or self.removed is not None or self._sync is None:
            return
        self._checking_removal = True
        d = self._leader_view([m for m in self.status.members if m != self.address])

        def seen(view: Tuple[Optional[str], Any]) -> None:
            leader, found = view
            if (leader is not None and leader != self.address and self.address not in found
                    and not self._joining and self._sync is not None):
                self.note_removed(f"the leader {leader} lists {', '.join(found)}")

        def done(result: Any) -> None:
            self._checking_removal = False

        d.addCallback(seen)
        d.addBoth(done)

    def add_removed_listener(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(reason)`` (once) when this node learns it is no longer a member."""
        self._removed_listeners.append(listener)

    def note_removed(self, reason: str) -> None:
        """This node is no longer a member: log it and tell the listeners (once)."""
        if self.removed is not None:
            return
        self.removed = reason
        log.warn("this node ({address}) was removed from the cluster ({reason}); it stops serving and exits",
                 address=self.address, reason=reason, event="raft_removed")
        for listener in self._removed_listeners:
            listener(reason)

    def stop(self, handover_timeout: float = HANDOVER_TIMEOUT) -> "defer.Deferred[None]":
        """Hand leadership over when leading, then stop pysyncobj; never fails.

        Fires within ``handover_timeout`` + :data:`DESTROY_TIMEOUT` seconds in
        every case: a leader waits (bounded) until a follower leads; a
        follower, a lone node or a leader without quorum stops at once.
        pysyncobj is destroyed in a daemon thread, so a stuck tick thread
        delays nothing beyond the bound.
        """
        sync = self._sync
        if sync is None:
            return defer.succeed(None)
        self._stopping = True
        for loop in (self._reach_loop, self._tick_watch):
            if loop is not None and loop.running:
                loop.stop()
        d: defer.Deferred[Any] = defer.succeed(None)
        if self.status.is_leader and len(self.status.members) > 1:
            d = self.transfer_leadership(timeout=handover_timeout)
            d.addCallbacks(
                lambda leader: log.info("handed leadership over to {leader} before stopping", leader=leader,
                                        event="leadership_handover"),
                lambda f: log.warn("no leadership handover before stopping: {e}", e=f.getErrorMessage(),
                                   event="leadership_handover_failed"))

        def destroy(_: Any) -> Any:
            self._sync = None
            done = _in_daemon_thread(self.reactor, _destroy_and_record, sync)
            done.addTimeout(DESTROY_TIMEOUT, self.reactor)
            done.addErrback(lambda f: log.warn("pysyncobj did not stop cleanly: {e}", e=f.getErrorMessage()))
            return done

        d.addCallback(destroy)
        d.addCallback(lambda _: None)
        return d

    # -- tick thread → reactor ---------------------------------------------------------

    def _applied_on_tick(self, command: Command) -> None:
        self.reactor.callFromThread(self._mirror_apply, command)

    def _restored_on_tick(self, snapshot: Dict[str, Any]) -> None:
        self.reactor.callFromThread(self._mirror_restore, snapshot)

    def _stalled_on_tick(self, gap: float) -> None:
        self.reactor.callFromThread(
            lambda: log.warn("raft tick thread stalled: {gap:.3f}s between two ticks (heartbeats, votes "
                             "and the {lease:.2f}s leader lease wait for it)", gap=gap,
                             lease=self.timing.leader_fallback, event="raft_tick_stalled"))

    def _rejected_on_tick(self, reason: str) -> None:
        self.reactor.callFromThread(self._count_rejected, reason)

    def _published_on_tick(self, status: RaftStatus) -> None:
        previous = self.status
        self.status = status  # atomic reference swap: readers see old or new, never a mix
        if (previous.state, previous.leader, previous.members, previous.leader_ready, previous.joining) != (
                status.state, status.leader, status.members, status.leader_ready, status.joining):
            self.reactor.callFromThread(self._status_changed, previous, status)
        if status.is_leader and previous.is_leader and status.term == previous.term \
                and status.lease_lapsed != previous.lease_lapsed:
            self.reactor.callFromThread(self._lease_changed, previous, status)

    def _lease_changed(self, previous: RaftStatus, status: RaftStatus) -> None:
        """Log a leader's lease lapsing (it stops answering DNS: no majority answered it within
        the lease) and coming back, with what the tick thread saw: when each member last
        answered, which were connected, and how long the tick thread had been away."""
        if status.lease_lapsed:
            self._lease_lapsed_at = status.published_at
            ages = ", ".join(f"{node} {status.published_at - at:.2f}s ago" if at > -math.inf
                             else f"{node} not this term" for node, at in status.answers)
            log.warn("leader lease lapsed: no majority answered within {lease:.2f}s; not answering "
                     "DNS until one does (last answers: {ages}; connected: {connected}; tick gap "
                     "{gap:.3f}s)", lease=self.timing.leader_fallback, ages=ages or "none",
                     connected=", ".join(sorted(status.connected)) or "none",
                     gap=status.published_at - previous.published_at, event="raft_lease_lapsed")
        else:
            log.info("leader lease regained after {lapse:.2f}s",
                     lapse=status.published_at - self._lease_lapsed_at,
                     event="raft_lease_regained")

    def _mirror_apply(self, command: Command) -> None:
        self.machine.apply(command)
        for listener in self._state_listeners:
            listener()

    def _mirror_restore(self, snapshot: Dict[str, Any]) -> None:
        self.machine.restore(snapshot)
        for listener in self._state_listeners:
            listener()

    def _count_rejected(self, reason: str) -> None:
        """Count a refused frame or connection; log it, at most once per REJECT_LOG_INTERVAL."""
        self.rejected_packets += 1
        now = self.reactor.seconds()
        if now - self._last_reject_log < REJECT_LOG_INTERVAL:
            self._unlogged_rejects += 1
            return
        more = f" ({self._unlogged_rejects} more refused since the last report)" if self._unlogged_rejects else ""
        self._last_reject_log, self._unlogged_rejects = now, 0
        log.warn("refused cluster traffic: {reason}{more}", reason=reason, more=more,
                 event="raft_packet_rejected")

    def _status_changed(self, previous: RaftStatus, status: RaftStatus) -> None:
        if self._joining and not status.joining and self._sync is not None and not self._sync.joining:
            self._joining = False
            log.info("joined the cluster as {address} (members: {members})", address=self.address,
                     members=", ".join(status.members), event="raft_joined")
            self._save_members_later(status.members)
        if status.leader is None and (previous.leader is not None or self._leaderless_since is None):
            self._leaderless_since = self.reactor.seconds()
        elif status.leader is not None:
            self._leaderless_since = None
        if status.state == "Candidate" and previous.state != "Candidate":
            self.elections += 1
            self.last_election = self.reactor.seconds()
        if previous.state != status.state or previous.leader != status.leader:
            log.info("raft: {state} (term {term}, leader {leader})", state=status.state,
                     term=status.term, leader=status.leader or "none", event="leadership")
        if previous.members != status.members and status.members and not self._joining:
            self._save_members_later(status.members)
        for listener in self._listeners:
            listener(status)

    def _save_members_later(self, members: Tuple[str, ...]) -> None:
        """Store the member list in a worker thread: it is fsynced, and a busy disk must not stall
        DNS answering.  One write at a time; the newest list wins."""
        self._members_to_save = members
        if not self._members_saving:
            self._members_saving = True
            self._write_members()

    def _write_members(self) -> None:
        members, self._members_to_save = self._members_to_save, None
        d = _in_daemon_thread(self.reactor, self._save_members, members)
        d.addErrback(lambda failure: log.error("cannot save the member list: {error}",
                                               error=failure.getErrorMessage()))
        d.addBoth(self._members_written)

    def _members_written(self, _: Any) -> None:
        if self._members_to_save is not None:
            self._write_members()
        else:
            self._members_saving = False

    # -- public API (reactor thread) -------------------------------------------------------

    def add_status_listener(self, listener: Callable[[RaftStatus], None]) -> None:
        self._listeners.append(listener)

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` after every applied command or restored snapshot."""
        self._state_listeners.append(listener)

    @property
    def writable(self) -> bool:
        """True while pysyncobj runs; a write waits briefly for a leader (see :meth:`propose`)."""
        return self._sync is not None

    def serving(self) -> bool:
        """True while this node may answer DNS with data (see :meth:`RaftStatus.serving`)."""
        return self.status.serving(self.clock())

    def propose(self, command: Command) -> "defer.Deferred[Result]":
        """Replicate ``command``; fires with its result once committed and applied here.

        Fails with :class:`ProposalFailed` when it was not confirmed within
        ``propose_timeout``; its ``outcome`` is :data:`NOT_APPLIED` when the
        command never left this node (not running, no leader elected within
        :data:`LEADER_WAIT`) or the cluster refused or discarded it, and
        :data:`UNKNOWN` when it was handed to pysyncobj and then timed out or
        lost its leader: it may still commit.
        """
        if self._sync is None or self._consumer is None:
            return defer.fail(ProposalFailed("cluster is not running", NOT_APPLIED))
        consumer = self._consumer
        d: defer.Deferred[Result] = defer.Deferred()
        deadline = self.reactor.seconds() + min(self.propose_timeout, LEADER_WAIT)
        sent: List[bool] = []

        def on_result(result: Any, error: Any) -> None:
            self.reactor.callFromThread(self._deliver, d, result, error)

        def send() -> None:
            if d.called:
                return
            if self.status.leader is None:
                if self.reactor.seconds() < deadline:
                    self.reactor.callLater(0.05, send)  # an election is under way: wait for its outcome
                else:
                    d.errback(ProposalFailed("write not committed: no leader", NOT_APPLIED))
                return
            sent.append(True)
            consumer.apply_command(command, callback=on_result)

        def timed_out(result: Any, timeout: float) -> None:
            outcome = UNKNOWN if sent else NOT_APPLIED
            raise ProposalFailed(f"write not confirmed within {timeout:g}s", outcome)

        send()
        d.addTimeout(self.propose_timeout, self.reactor, onTimeoutCancel=timed_out)
        return d

    def _deliver(self, d: "defer.Deferred[Result]", result: Any, error: Any) -> None:
        if d.called:
            return
        if error == FAIL_REASON.SUCCESS:
            d.callback(result)
        else:
            outcome = NOT_APPLIED if error in _NEVER_APPLIED else UNKNOWN
            d.errback(ProposalFailed(f"write not committed: {_FAIL_NAMES.get(error, error)}", outcome))

    def _run_on_tick(self, function: Callable[[Any], Any]) -> "defer.Deferred[Any]":
        """Run ``function(syncobj)`` once on the tick thread; its result (or exception) arrives on
        the reactor.  Never blocks the calling thread (see :meth:`_SyncObj.call_on_tick`)."""
        sync = self._sync
        if sync is None:
            return defer.fail(ProposalFailed("cluster is not running"))
        d: defer.Deferred[Any] = defer.Deferred()

        def once() -> None:
            try:
                result = function(sync)
            except Exception:
                self.reactor.callFromThread(d.errback, Failure())
            else:
                self.reactor.callFromThread(d.callback, result)

        sync.call_on_tick(once)
        return d

    def hold_down(self, seconds: float) -> None:
        """Keep this node out of elections for ``seconds`` (after a self-demotion), unless no
        leader is heard for :data:`HOLD_DOWN_GRACE` maximum election timeouts.  Any thread."""
        if self._sync is not None:
            self._sync.hold_down_until = self.clock() + seconds

    def transfer_leadership(self, timeout: float = HANDOVER_TIMEOUT,
                            prefer: FrozenSet[str] = frozenset()) -> "defer.Deferred[str]":
        """Hand leadership to an up-to-date follower; fires with its address once it leads.

        "Leads" means this node has heard from it as the leader of a later
        term.  ``prefer``: addresses to choose the successor from when one of
        them is connected and caught up (else any follower that is).
        The request is repeated every :data:`HANDOVER_RETRY` seconds
        while pysyncobj refuses it (no follower connected and caught up yet)
        or the chosen one did not win; fails with :class:`ProposalFailed`
        after ``timeout``, and at once when this node does not lead.
        """
        if not self.status.is_leader:
            return defer.fail(ProposalFailed("this node does not lead"))
        started = self.reactor.seconds()
        term = self.status.term
        d: defer.Deferred[str] = defer.Deferred()
        last_request = [-math.inf]

        def request() -> None:
            last_request[0] = self.reactor.seconds()
            self._run_on_tick(lambda sync: sync.request_handover(lambda sent: None, prefer))

        def poll() -> None:
            status = self.status
            if status.leader not in (None, self.address) and status.term > term:
                d.callback(status.leader)
            elif self.reactor.seconds() - started >= timeout:
                d.errback(ProposalFailed(f"no follower took over within {timeout:g}s"))
            else:
                if status.is_leader and self.reactor.seconds() - last_request[0] >= HANDOVER_RETRY:
                    request()
                self.reactor.callLater(HANDOVER_POLL, poll)

        poll()
        return d

    @defer.inlineCallbacks
    def ask_leader_to_hand_over(self, timeout: float = HANDOVER_TIMEOUT) -> Any:
        """Ask the current leader (another node) to hand leadership over; fires with the new
        leader's address once this node hears from it, fails with ProposalFailed otherwise.

        The leader refuses while no follower is connected and fully caught up
        (e.g. just after a write); like :meth:`transfer_leadership`, the request
        is then repeated every :data:`HANDOVER_RETRY` seconds until ``timeout``.
        """
        leader = self.status.leader
        if leader is None or leader == self.address:
            raise ProposalFailed("no other node leads")
        started = self.reactor.seconds()
        while True:
            try:
                reply = yield _in_daemon_thread(self.reactor, _admin, leader, ["transfer"], self.password,
                                                ADMIN_TIMEOUT)
            except Exception as error:
                raise ProposalFailed(f"leader {leader}: {error}") from None
            if str(reply).startswith("SUCCESS") or self.status.leader != leader:
                break
            if self.reactor.seconds() - started + HANDOVER_RETRY >= timeout:
                raise ProposalFailed(f"leader {leader} did not hand over: {reply}")
            yield _sleep(self.reactor, HANDOVER_RETRY)
        while self.reactor.seconds() - started < timeout:
            if self.status.leader not in (None, leader):
                return self.status.leader
            yield _sleep(self.reactor, HANDOVER_POLL * 5)
        raise ProposalFailed(f"no node took over from {leader} within {timeout:g}s")

    def change_membership(self, action: str, address: str, timeout: float = 10.0,
                          via: Optional[str] = None) -> "defer.Deferred[str]":
        """Add or remove ``address`` through pysyncobj's admin command on ``via`` (default: this node).

        Runs the blocking admin client in a worker thread.  Fires with its reply
        text (``SUCCESS ...``); fails with ProposalFailed otherwise.
        """
        command = ["add" if action == "add" else "remove", address]
        d = _in_daemon_thread(self.reactor, _admin, via or self.address, command, self.password, timeout)

        def check(reply: Any) -> str:
            text = str(reply)
            if not text.startswith("SUCCESS"):
                raise ProposalFailed(f"{action} {address}: {text}")
            return text

        def failed(failure: Any) -> Any:
            failure.trap(UtilityException)
            raise ProposalFailed(f"{action} {address}: {failure.getErrorMessage()}")

        d.addCallbacks(check, failed)
        return d

    def _backoff(self, attempt: int) -> float:
        """Seconds before retry ``attempt`` (0, 1, ...): doubling from JOIN_BACKOFF up to
        JOIN_BACKOFF_MAX, times a random 0.5-1.0 so that joiners started together spread out."""
        return min(JOIN_BACKOFF_MAX, JOIN_BACKOFF * 2 ** attempt) * self._rng.uniform(0.5, 1.0)

    @defer.inlineCallbacks
    def _leader_view(self, contacts: List[str]) -> Any:
        """Ask ``contacts`` in turn for the leader; fires with (leader, its member list), or with
        (None, error text) when none knows a leader.  The leader's list is the authoritative one."""
        last_error = "no member answered"
        for contact in contacts:
            try:
                status = yield _in_daemon_thread(self.reactor, _admin, contact, ["status"], self.password,
                                                 ADMIN_TIMEOUT)
            except Exception as error:
                last_error = f"{contact}: {error}"
                continue
            if not isinstance(status, dict):
                last_error = f"{contact}: unexpected answer {status!r}"
                continue
            leader = status.get("leader")
            leader_id = getattr(leader, "id", None)
            if not leader_id:
                last_error = f"{contact} knows no leader"
                continue
            if leader_id != contact:
                try:
                    status = yield _in_daemon_thread(self.reactor, _admin, leader_id, ["status"],
                                                     self.password, ADMIN_TIMEOUT)
                except Exception as error:
                    last_error = f"leader {leader_id}: {error}"
                    continue
                if not isinstance(status, dict) or getattr(status.get("leader"), "id", None) != leader_id:
                    last_error = f"{leader_id} no longer leads"
                    continue
            return leader_id, _members_from_status(status)
        return None, last_error

    @defer.inlineCallbacks
    def _join(self, seeds: List[str]) -> Any:
        """Find the leader through any seed; returns (the leader, its member list: the full one).

        Retries with backoff until a seed names a leader that answers, for
        at most :data:`JOIN_GIVE_UP` seconds; then fails with RuntimeError.
        """
        started = self.reactor.seconds()
        attempt = 0
        while True:
            leader, found = yield self._leader_view(seeds)
            if leader is not None:
                return leader, list(found)
            if self.reactor.seconds() - started > JOIN_GIVE_UP:
                raise RuntimeError(f"could not join the cluster through {', '.join(seeds)}: {found}")
            yield _sleep(self.reactor, self._backoff(attempt))
            attempt += 1

    @defer.inlineCallbacks
    def _add_self(self, seeds: List[str], members: List[str]) -> Any:
        """Ask the leader to add this node until the addition is confirmed.

        Runs with pysyncobj started (a 1 → 2 change commits only with this
        node's answer).  The leader accepts one membership change at a time,
        so a joiner started together with others is refused at first and
        retries with backoff.  A refused or lost request is followed by a
        look at the leader's member list: an earlier request may have
        committed after all (pysyncobj refuses a duplicate add).
        """
        attempt = 0
        while not self._stopping and self._sync is not None and self._sync.joining:
            contacts = [m for m in members if m != self.address] + [s for s in seeds if s not in members]
            leader, found = yield self._leader_view(contacts)
            if leader is not None and self.address in found:
                break
            reply = "no leader found"
            if leader is not None:
                try:
                    reply = str((yield _in_daemon_thread(self.reactor, _admin, leader, ["add", self.address],
                                                         self.password, JOIN_ADD_TIMEOUT)))
                except Exception as error:
                    reply = str(error) or type(error).__name__
                if reply.startswith("SUCCESS"):
                    break
                members = sorted(set(members) | set(found))
            delay = self._backoff(attempt)
            log.info("join: not added yet ({reply}); retrying in {delay:.1f}s", reply=reply, delay=delay,
                     event="raft_join_retry")
            yield _sleep(self.reactor, delay)
            attempt += 1
        # Confirmed (or stopping).  Joining mode ends on the tick thread once the entry adding this
        # node is in its log (_SyncObj._check_added): then it knows every member.
        return None


def _destroy_and_record(sync: "_SyncObj") -> None:
    """Stop pysyncobj, then store its commit index (pysyncobj stores it at most once a second,
    so the last writes before a stop would otherwise look uncommitted to
    :func:`read_committed_state`).  Worker thread."""
    sync.destroy_synchronous()
    if sync.meta_writer is not None:
        sync.meta_writer.flush()


def _in_daemon_thread(reactor: Any, function: Callable[..., Any], *args: Any) -> "defer.Deferred[Any]":
    """Run the blocking ``function(*args)`` in a new daemon thread; its result arrives on the reactor.

    For pysyncobj's blocking calls (the admin client, ``destroy_synchronous``):
    unlike the reactor's thread pool, which is joined at shutdown, a daemon
    thread never holds up the process's exit.
    """
    d: defer.Deferred[Any] = defer.Deferred()

    def fire(result: Any) -> None:
        if not d.called:
            d.callback(result)  # a Failure result errbacks

    def run() -> None:
        try:
            result = function(*args)
        except BaseException:
            reactor.callFromThread(fire, Failure())
        else:
            reactor.callFromThread(fire, result)

    threading.Thread(target=run, name=f"opengslb-{getattr(function, '__name__', 'raft')}", daemon=True).start()
    return d


def _sleep(reactor: Any, seconds: float) -> "defer.Deferred[None]":
    d: defer.Deferred[None] = defer.Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d
