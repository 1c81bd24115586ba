"""The Raft port against a peer without the key, on a real 3-node cluster (issue 11 item 5).

From a raw socket: a header announcing a 32 MB frame (and the 32 MB behind
it), a garbage frame, and a pile of idle connections.  Each is closed
promptly, the attacked node's resident memory stays flat, and the cluster
keeps electing, committing and answering.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from typing import List

import psutil
import pytest

from tests.e2e.cluster import Cluster
from tests.e2e.harness import LOAD_SLACK, HTTPBackend, wait_until

pytestmark = pytest.mark.e2e

FRAME = 32 * 1024 * 1024


@pytest.fixture
def cluster(tmp_path):
    backend = HTTPBackend("127.0.40.1")
    made = Cluster(tmp_path / "c", 3, backend.host, backend.port, subnet="127.0.41")
    made.base.mkdir()
    try:
        made.bootstrap()
        yield made
    finally:
        made.stop_all()
        backend.stop()


def rss(cluster: Cluster, host: str) -> int:
    return int(psutil.Process(cluster.nodes[host].process.pid).memory_info().rss)


def closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    """True when ``sock`` sees EOF or a reset within ``timeout`` seconds."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def send_until_refused(sock: socket.socket, data: bytes, timeout: float) -> int:
    """Send ``data``; stop when the node closes the connection.  Returns the bytes sent."""
    sock.settimeout(timeout)
    view, sent = memoryview(data), 0
    try:
        while sent < len(data):
            sent += sock.send(view[sent:sent + 65536])
    except (BrokenPipeError, ConnectionResetError, socket.timeout):
        pass
    return sent


def test_hostile_frames_are_cheap_and_the_cluster_keeps_working(cluster):
    """A 32 MB frame is refused from its header (at most a few hundred KB read, +<5 MB RSS), a
    garbage frame closes the connection, idle unauthenticated connections are capped and closed
    after the handshake timeout, and the cluster still commits a write and answers DNS."""
    leader = cluster.wait_leader()
    address = (leader, cluster.cluster_port)
    time.sleep(1.0)  # let start-up allocations settle
    before = rss(cluster, leader)

    # 1. A header announcing 32 MB, then the 32 MB: refused after the first recv.
    started = time.monotonic()
    with socket.create_connection(address) as sock:
        sent = send_until_refused(sock, struct.pack("i", FRAME) + os.urandom(FRAME), timeout=10)
        assert sent < 8 * 1024 * 1024, f"the node read {sent} bytes of an oversized frame"
        assert closed_by_peer(sock, 2.0)
    assert time.monotonic() - started < 3.0 + LOAD_SLACK
    grown = rss(cluster, leader) - before
    assert grown < 5 * 1024 * 1024, f"RSS grew by {grown / 1e6:.1f} MB"

    # 2. A small frame of garbage (no key): closed after that one frame.
    with socket.create_connection(address) as sock:
        sock.sendall(struct.pack("i", 200) + os.urandom(200))
        assert closed_by_peer(sock, 2.0)

    # 3. 40 idle connections: beyond 32 waiting ones are closed at once, the rest after ~5 s.
    idle: List[socket.socket] = [socket.create_connection(address) for _ in range(40)]
    try:
        early = wait_until(lambda: sum(closed_by_peer(s, 0.05) for s in idle) >= 8, 0.5 + LOAD_SLACK,
                           message="the idle connections beyond 32 closed at once")
        assert early, "fewer than 8 of 40 idle connections were closed at once"
        wait_until(lambda: all(closed_by_peer(s, 0.05) for s in idle), 10,
                   message="idle unauthenticated connections closed")
    finally:
        for s in idle:
            s.close()

    # The attacked node and the cluster are fine: same leader, a write commits, DNS answers.
    assert cluster.wait_leader() == leader
    follower = next(h for h in cluster.hosts if h != leader)
    code, body = cluster.api(follower, f"/api/v1/overrides/r1/{cluster.backend[0]}", "PUT",
                             {"weight": 7, "reason": "after the attack"}, timeout=10)
    assert code == 200, body
    overrides = wait_until(lambda: cluster.api(leader, "/api/v1/overrides")[1]["overrides"], 10)
    assert [(o["address"], o["weight"]) for o in overrides] == [(cluster.backend[0], 7)]
    assert cluster.answers(leader) == "data"
    metrics = cluster.api(leader, "/api/v1/cluster/status")[1]
    assert len([m for m in metrics["members"] if m["status"] == "alive"]) == 3
    grown = rss(cluster, leader) - before
    assert grown < 5 * 1024 * 1024, f"RSS grew by {grown / 1e6:.1f} MB"
