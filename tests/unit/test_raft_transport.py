"""The guarded Raft transport (opengslb.state.raft._GuardedConnection, issue 11 item 5).

A real pysyncobj connection on a real loopback socket, driven by pysyncobj's
own poller: frames above the bound are refused from their header before they
are buffered, a frame that does not decrypt closes the connection, nothing is
unpickled without the key, and only a peer that echoes this node's random key
gets the larger bound.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
import zlib
from typing import Any, Iterator, List, Optional, Tuple

import pysyncobj.pickle
import pytest
from pysyncobj.encryptor import getEncryptor
from pysyncobj.poller import createPoller
from pysyncobj.tcp_connection import CONNECTION_STATE, TcpConnection

from opengslb.state import raft
from opengslb.state.raft import (
    AUTHENTICATED_FRAME_LIMIT,
    UNAUTHENTICATED_FRAME_LIMIT,
    _CountingEncryptor,
    _GuardedConnection,
)

ENCRYPTOR = getEncryptor("cluster password")  # PBKDF2: derive it once


class Side:
    """This node's end of one accepted connection, plus the peer's raw socket."""

    def __init__(self, peer: socket.socket, conn: _GuardedConnection, poller: Any) -> None:
        self.peer = peer
        self.conn = conn
        self.poller = poller
        self.messages: List[Any] = []
        self.rejects: List[str] = []
        self.refused: List[str] = []
        self.largest_buffer = 0

    def pump(self, seconds: float = 0.3) -> None:
        """Run pysyncobj's poller for a while, noting the largest read buffer seen."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and self.conn.state != CONNECTION_STATE.DISCONNECTED:
            self.poller.poll(0.01)
            self.largest_buffer = max(self.largest_buffer, len(self.buffer()))

    def buffer(self) -> bytes:
        data: bytes = self.conn._TcpConnection__readBuffer  # type: ignore[attr-defined]
        return data

    @property
    def closed(self) -> bool:
        return self.conn.state == CONNECTION_STATE.DISCONNECTED


@pytest.fixture
def side() -> Iterator[Side]:
    listener = socket.create_server(("127.0.0.1", 0))
    peer = socket.create_connection(listener.getsockname())
    accepted, _ = listener.accept()
    listener.close()
    accepted.setblocking(False)
    poller = createPoller("auto")
    conn = TcpConnection(poller=poller, socket=accepted, timeout=10.0, sendBufferSize=2**16,
                         recvBufferSize=2**16)
    made = Side(peer, conn, poller)  # type: ignore[arg-type]
    conn.encryptor = _CountingEncryptor(ENCRYPTOR, made.rejects.append)
    conn.setOnMessageReceivedCallback(made.messages.append)
    made.conn = _GuardedConnection.adopt(conn, made.refused.append)
    yield made
    made.conn.disconnect()
    peer.close()


def frame(message: Any, rand_key: Optional[bytes] = None) -> bytes:
    """A frame as pysyncobj's TcpConnection.send writes it, with the cluster key."""
    if rand_key is not None:
        message = (rand_key, message)
    data = ENCRYPTOR.encrypt_at_time(zlib.compress(pysyncobj.pickle.dumps(message), 3), int(time.monotonic()))
    return struct.pack("i", len(data)) + data


def send_in_background(sock: socket.socket, data: bytes) -> Tuple[threading.Thread, List[Exception]]:
    """sendall() in a thread (it blocks once the receiver stops reading); errors are collected."""
    errors: List[Exception] = []

    def run() -> None:
        try:
            sock.sendall(data)
        except OSError as error:
            errors.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


def peer_sees_close(sock: socket.socket, timeout: float = 2.0) -> bool:
    """True when the peer's socket reports EOF or a reset within ``timeout``."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def test_oversized_header_is_refused_before_buffering(side: Side) -> None:
    """A header announcing 32 MB from an unauthenticated peer closes the connection at once; the
    buffer never holds more than one recv, however much the peer keeps sending."""
    thread, _ = send_in_background(side.peer, struct.pack("i", 32 * 1024 * 1024) + os.urandom(4 * 1024 * 1024))
    side.pump(1.0)
    assert side.closed
    assert side.largest_buffer <= 2**16 + 4
    assert side.refused and "unauthenticated peer announced a 33554432-byte frame (limit 4096)" in side.refused[0]
    assert peer_sees_close(side.peer)
    thread.join(5)


def test_frame_just_over_the_unauthenticated_bound_is_refused(side: Side) -> None:
    """The bound is exact: 4097 bytes announced is refused, whatever the content."""
    side.peer.sendall(struct.pack("i", UNAUTHENTICATED_FRAME_LIMIT + 1) + b"x" * 100)
    side.pump()
    assert side.closed and side.refused


def test_negative_length_is_refused(side: Side) -> None:
    """A negative length (pysyncobj's header is signed) is refused too."""
    side.peer.sendall(struct.pack("i", -5) + b"x" * 10)
    side.pump()
    assert side.closed and side.refused


def test_garbage_frame_closes_without_unpickling(side: Side, monkeypatch: pytest.MonkeyPatch) -> None:
    """A frame that does not decrypt closes the connection after that first frame, is counted as a
    rejected packet, and nothing is unpickled."""
    unpickled: List[bytes] = []
    monkeypatch.setattr(pysyncobj.pickle, "loads", lambda data: unpickled.append(data))
    side.peer.sendall(struct.pack("i", 200) + os.urandom(200) + frame("never read"))
    side.pump()
    assert side.closed
    assert side.rejects == ["a frame failed authentication (wrong cluster key?)"]
    assert unpickled == [] and side.messages == []
    assert peer_sees_close(side.peer)


def test_only_a_peer_that_echoes_our_key_gets_the_large_bound(side: Side) -> None:
    """The handshake's first frame (the peer's random key) is small and accepted but does not
    authenticate; a frame carrying the key this node sent does, and then a large frame passes."""
    side.peer.sendall(frame(os.urandom(32)))
    side.pump()
    assert not side.closed and len(side.messages) == 1 and not side.conn.authenticated
    our_key = os.urandom(32)
    side.conn.recvRandKey = our_key  # what pysyncobj's transport does after the first frame

    side.peer.sendall(frame("192.0.2.11:7946", rand_key=our_key))
    side.pump()
    assert side.messages[-1] == "192.0.2.11:7946" and side.conn.authenticated

    big = os.urandom(1024 * 1024)  # incompressible: a ~1.4 MB frame
    side.peer.sendall(frame({"type": "append_entries", "data": big}, rand_key=our_key))
    side.pump(2.0)
    assert not side.closed, side.refused
    assert side.messages[-1]["data"] == big
    assert side.conn.frame_limit() == AUTHENTICATED_FRAME_LIMIT


def test_valid_frame_too_large_before_authentication(side: Side) -> None:
    """Even a frame made with the right key is refused when it is large and the peer has not
    proven it is live (a replayed or oversized first frame)."""
    side.peer.sendall(frame(os.urandom(8192)))  # incompressible: > 4096 bytes
    side.pump()
    assert side.closed and side.refused and side.messages == []


def test_authenticated_bound_is_finite(side: Side) -> None:
    """An authenticated peer is bounded too."""
    side.conn.authenticated = True
    side.conn.recvRandKey = os.urandom(32)
    thread, _ = send_in_background(side.peer, struct.pack("i", AUTHENTICATED_FRAME_LIMIT + 1) + b"y" * 1000)
    side.pump()
    assert side.closed and "an authenticated peer" in side.refused[0]
    thread.join(5)


def test_disconnect_forgets_authentication(side: Side) -> None:
    """A reused connection object (outgoing connections reconnect) starts unauthenticated."""
    side.conn.authenticated = True
    side.conn.disconnect()
    assert not side.conn.authenticated
    assert side.conn.frame_limit() == UNAUTHENTICATED_FRAME_LIMIT


def test_limits_are_sane() -> None:
    """The unauthenticated bound fits the handshake; the authenticated one fits pysyncobj's batches."""
    handshake = len(frame(os.urandom(32))) - 4
    assert handshake < UNAUTHENTICATED_FRAME_LIMIT // 4
    assert raft.AUTHENTICATED_FRAME_LIMIT >= 8 * (2**16 + 1024 * 1024)
