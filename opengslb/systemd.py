"""systemd integration: the ``sd_notify`` protocol for ``Type=notify`` units.

The protocol is a few lines (sd_notify(3)): newline-separated ``KEY=value``
assignments sent as one datagram to the ``AF_UNIX`` socket named by
``$NOTIFY_SOCKET`` (a leading ``@`` means the abstract namespace).  Without
``$NOTIFY_SOCKET`` (not started by systemd) nothing is sent.

:class:`SystemdNotifier` is a child service of the process:

* ``READY=1`` once ``ready()`` is true (DNS listening and the first round
  of health checks done — /api/v1/ready's condition, minus leadership: a
  follower has started too);
* ``STATUS=`` with the role and counts, whenever it changes (checked every
  second);
* ``WATCHDOG=1`` every half ``$WATCHDOG_USEC`` *from the reactor*, so a
  stalled reactor misses its pings and systemd restarts the service
  (``WatchdogSec=`` in the unit);
* ``STOPPING=1`` when the service stops.
"""

from __future__ import annotations

import os
import socket
from typing import Callable, Mapping, Optional

from twisted.application import service
from twisted.internet import task
from twisted.logger import Logger

log = Logger(namespace="opengslb.systemd")

#: Seconds between two checks of readiness and status.
POLL_INTERVAL = 1.0


class Notifier:
    """Sends sd_notify messages to ``$NOTIFY_SOCKET``; a no-op without it.

    :param environ: the process environment (``os.environ``).
    """

    def __init__(self, environ: Mapping[str, str]) -> None:
        address = environ.get("NOTIFY_SOCKET", "")
        self.address: Optional[str] = None
        if address.startswith("@"):
            self.address = "\0" + address[1:]
        elif address.startswith("/"):
            self.address = address
        self._socket: Optional[socket.socket] = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, **fields: str) -> bool:
        """Send ``KEY=value`` lines (``ready="1"`` becomes ``READY=1``); True when sent.

        Never blocks (a non-blocking datagram to a local socket); a failure is
        logged and reported as False, never raised.
        """
        if self.address is None:
            return False
        text = "\n".join(f"{key.upper()}={value}" for key, value in fields.items())
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._socket.setblocking(False)
            self._socket.sendto(text.encode("utf-8", "replace"), self.address)
            return True
        except OSError as error:
            log.warn("cannot notify systemd ({address}): {error}", address=self.address.lstrip("\0"),
                     error=error, event="sd_notify_failed")
            return False

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def watchdog_interval(environ: Mapping[str, str], pid: int) -> Optional[float]:
    """Seconds between WATCHDOG=1 pings: half of ``$WATCHDOG_USEC``, or None when the
    watchdog is off or meant for another process (``$WATCHDOG_PID``)."""
    usec = environ.get("WATCHDOG_USEC", "")
    owner = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (owner and owner != str(pid)):
        return None
    return int(usec) / 2_000_000


class SystemdNotifier(service.Service):
    """READY, STATUS, WATCHDOG and STOPPING for the running process (see module doc).

    :param clock: the reactor.
    :param ready: True once the process serves (DNS bound, first health round done).
    :param status: one line describing the node now (role and counts).
    :param environ: defaults to ``os.environ``; ``pid`` to ``os.getpid()``.
    """

    def __init__(self, clock: object, ready: Callable[[], bool], status: Callable[[], str],
                 environ: Optional[Mapping[str, str]] = None, pid: Optional[int] = None) -> None:
        environ = os.environ if environ is None else environ
        self.notifier = Notifier(environ)
        self._ready = ready
        self._status = status
        self._told_ready = False
        self._last_status: Optional[str] = None
        self._poll = task.LoopingCall(self._check)
        self._poll.clock = clock  # type: ignore[assignment]
        self._watchdog = task.LoopingCall(lambda: self.notifier.send(watchdog="1"))
        self._watchdog.clock = clock  # type: ignore[assignment]
        self._watchdog_every = watchdog_interval(environ, os.getpid() if pid is None else pid)

    def startService(self) -> None:
        super().startService()
        if not self.notifier.enabled:
            return
        self._poll.start(POLL_INTERVAL, now=True)
        if self._watchdog_every is not None:
            self._watchdog.start(self._watchdog_every, now=True)

    def _check(self) -> None:
        try:
            status = self._status()
        except Exception:  # a status line must never stop the pings
            log.failure("building the systemd status line failed")
            status = "running"
        fields = {}
        if status != self._last_status:
            fields["status"] = status
            self._last_status = status
        if not self._told_ready and self._ready():
            fields["ready"] = "1"
            self._told_ready = True
            log.info("told systemd the service is ready", event="sd_ready")
        if fields:
            self.notifier.send(**fields)

    def stopService(self) -> None:
        super().stopService()
        for loop in (self._poll, self._watchdog):
            if loop.running:
                loop.stop()
        self.notifier.send(stopping="1", status="stopping")
        self.notifier.close()
