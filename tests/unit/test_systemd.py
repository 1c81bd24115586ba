"""The sd_notify protocol against a real AF_UNIX datagram socket, driven by task.Clock."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import List

import pytest
from twisted.internet.task import Clock

from opengslb.systemd import Notifier, SystemdNotifier, watchdog_interval


@pytest.fixture
def listener(tmp_path: Path):
    """A bound datagram socket standing in for systemd's notify socket."""
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    yield str(path), sock
    sock.close()


def received(sock: socket.socket) -> List[str]:
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except BlockingIOError:
            return messages


def test_without_notify_socket_nothing_is_sent():
    """Not started by systemd: send() is a no-op that says so."""
    notifier = Notifier({})
    assert not notifier.enabled and notifier.send(ready="1") is False


def test_abstract_socket_names_are_supported():
    """A leading @ names the abstract namespace."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0opengslb-test-notify")
    try:
        assert Notifier({"NOTIFY_SOCKET": "@opengslb-test-notify"}).send(status="x")
        assert sock.recv(100) == b"STATUS=x"
    finally:
        sock.close()


def test_ready_only_once_started_then_status_changes_and_stopping(listener):
    """READY=1 is sent once, when ready() turns true; STATUS= only on change; STOPPING=1 at stop."""
    path, sock = listener
    clock = Clock()
    state = {"ready": False, "status": "standalone: 1 domains, 0/1 servers healthy"}
    notifier = SystemdNotifier(clock, lambda: state["ready"], lambda: state["status"],
                               environ={"NOTIFY_SOCKET": path}, pid=1234)
    notifier.startService()
    assert received(sock) == ["STATUS=standalone: 1 domains, 0/1 servers healthy"]
    clock.advance(1.0)
    assert received(sock) == []
    state["ready"] = True
    clock.advance(1.0)
    assert received(sock) == ["READY=1"]
    state["status"] = "standalone: 1 domains, 1/1 servers healthy"
    clock.advance(1.0)
    assert received(sock) == ["STATUS=standalone: 1 domains, 1/1 servers healthy"]
    clock.advance(5.0)
    assert received(sock) == []
    notifier.stopService()
    assert received(sock) == ["STOPPING=1\nSTATUS=stopping"]


def test_watchdog_pings_from_the_clock_at_half_the_interval(listener):
    """WATCHDOG_USEC=2s: WATCHDOG=1 every second, only while the clock (the reactor) runs."""
    path, sock = listener
    clock = Clock()
    notifier = SystemdNotifier(clock, lambda: False, lambda: "s",
                               environ={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000",
                                        "WATCHDOG_PID": "77"}, pid=77)
    notifier.startService()
    assert received(sock).count("WATCHDOG=1") == 1
    for _ in range(3):
        clock.advance(1.0)
    assert received(sock).count("WATCHDOG=1") == 3
    notifier.stopService()
    clock.advance(5.0)
    assert "WATCHDOG=1" not in received(sock)


@pytest.mark.parametrize("environ, pid, expected", [
    ({}, 1, None),
    ({"WATCHDOG_USEC": "0"}, 1, None),
    ({"WATCHDOG_USEC": "abc"}, 1, None),
    ({"WATCHDOG_USEC": "30000000"}, 1, 15.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "2"}, 1, None),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, 1, 15.0),
])
def test_watchdog_interval(environ, pid, expected):
    """Half of WATCHDOG_USEC, and only for the process WATCHDOG_PID names."""
    assert watchdog_interval(environ, pid) == expected


def test_a_vanished_socket_is_logged_not_raised(tmp_path):
    """A notify socket that does not exist: send() returns False, no exception."""
    assert Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")}).send(ready="1") is False
