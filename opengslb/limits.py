"""Connection caps shared by every TCP listener (API, metrics, DNS over TCP).

A listener asks :class:`ConnectionLimiter` before it builds a protocol for
an accepted socket; when the listener or the peer's address is at its cap
the socket is closed at once, before a byte is read, so one client (or a
crowd) cannot use up the process's file descriptors that health checks and
DNS need.  Refusals are counted per reason and logged at most once a minute
per listener.  :func:`listen_fair` opens a listening port that accepts a
bounded number of connections per reactor turn (:class:`FairPort`), and
:class:`AcceptRate` paces accepts over time.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

from twisted.internet import tcp
from twisted.internet.interfaces import IListeningPort
from twisted.internet.posixbase import PosixReactorBase
from twisted.logger import Logger

log = Logger(namespace="opengslb.limits")

#: Seconds between two "connection refused: at the cap" log lines of one listener.
REFUSAL_LOG_INTERVAL = 60.0
#: Connections a listener accepts per reactor turn (the rest wait in the backlog).
ACCEPTS_PER_TURN = 16
#: Listen backlog of every TCP listener (nginx's default).
BACKLOG = 511


class ConnectionLimiter:
    """Counts open connections of one listener, in all and per source host.

    :param name: the listener's name in logs and metrics (``api``, ``metrics``,
        ``dns-tcp``).
    :param caps: returns ``(max_connections, max_connections_per_source)``;
        read at every accept, so a reload that changes them applies to the
        next connection.
    :param clock: ``seconds()`` for the log rate limit.
    """

    def __init__(self, name: str, caps: Callable[[], Tuple[int, int]], clock: object) -> None:
        self.name = name
        self._caps = caps
        self._clock = clock
        self.open = 0
        self._per_source: Dict[str, int] = {}
        self.refused: Dict[str, int] = {"listener_full": 0, "source_full": 0}
        self._last_logged: Optional[float] = None

    def acquire(self, source: str) -> bool:
        """Take a slot for a new connection from ``source``; False when at a cap.

        Every True must be matched by one :meth:`release` with the same source.
        """
        total, per_source = self._caps()
        if self.open >= total:
            self._refuse("listener_full", source, total)
            return False
        held = self._per_source.get(source, 0)
        if held >= per_source:
            self._refuse("source_full", source, per_source)
            return False
        self.open += 1
        self._per_source[source] = held + 1
        return True

    def release(self, source: str) -> None:
        """Give back the slot of a closed connection from ``source``."""
        held = self._per_source.get(source, 0)
        if held <= 1:
            self._per_source.pop(source, None)
        else:
            self._per_source[source] = held - 1
        self.open = max(0, self.open - 1)

    def held_by(self, source: str) -> int:
        """Connections ``source`` has open now."""
        return self._per_source.get(source, 0)

    def _refuse(self, reason: str, source: str, cap: int) -> None:
        self.refused[reason] += 1
        now = self._clock.seconds()  # type: ignore[attr-defined]
        if self._last_logged is not None and now - self._last_logged < REFUSAL_LOG_INTERVAL:
            return
        self._last_logged = now
        what = "the listener" if reason == "listener_full" else f"source {source}"
        log.warn("{listener}: connection from {source} closed: {what} is at its cap of {cap} "
                 "connections (logged at most once a minute; {count} refused so far)",
                 listener=self.name, source=source, what=what, cap=cap,
                 count=sum(self.refused.values()), event="connection_refused")


def raise_fd_limit() -> Tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return ``(before, after)``.

    Listeners, health checks and Raft share one descriptor table; the
    default soft limit (often 1024) is the first thing a connection flood
    exhausts.  Like nginx's ``worker_rlimit_nofile`` and systemd's
    ``LimitNOFILE``, we take what the hard limit allows.  On failure (or
    where ``resource`` is missing) nothing changes and ``after == before``.
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Linux
        return (-1, -1)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if target <= soft and soft != resource.RLIM_INFINITY:
        return (soft, soft)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        return (soft, soft)
    return (soft, resource.getrlimit(resource.RLIMIT_NOFILE)[0])


class AcceptRate:
    """A token bucket of new connections per second for one listener.

    Holds up to ``rate()`` tokens (the burst) and refills at ``rate()`` per
    second.  :meth:`take` spends one; when none is left the listener stops
    accepting until :meth:`wait` seconds have passed, so the connections wait
    in the kernel's backlog (like HAProxy's ``rate-limit sessions``) instead
    of costing the reactor time that DNS needs.

    A connection accepted while the bucket is empty (the rest of one accept
    batch) is still served, and its token is owed: the balance goes negative
    and the pause lasts until the debt is repaid, so the average stays at
    ``rate()`` however large the batches.
    """

    def __init__(self, rate: Callable[[], float], clock: object) -> None:
        self._rate = rate
        self._clock = clock
        self._tokens: Optional[float] = None
        self._at = 0.0

    def _refill(self) -> float:
        rate = self._rate()
        now = self._clock.seconds()  # type: ignore[attr-defined]
        if self._tokens is None:
            self._tokens = rate
        else:
            self._tokens = min(rate, self._tokens + (now - self._at) * rate)
        self._at = now
        return rate

    def take(self) -> bool:
        """Spend a token for one new connection (owing it when there is none);
        False when the bucket was empty: the listener should pause for :meth:`wait`."""
        self._refill()
        assert self._tokens is not None
        available = self._tokens >= 1.0
        self._tokens -= 1.0
        return available

    def available(self) -> float:
        """Tokens in the bucket now (0 while in debt)."""
        self._refill()
        assert self._tokens is not None
        return max(0.0, self._tokens)

    def wait(self) -> float:
        """Seconds until the next token."""
        rate = self._refill()
        assert self._tokens is not None
        return max(0.0, (1.0 - self._tokens) / rate)


class FairPort(tcp.Port):
    """A TCP port that accepts at most :data:`ACCEPTS_PER_TURN` connections per reactor turn.

    Twisted's own port grows its batch with the load (100, 120, ...); under a
    connection flood one batch then takes milliseconds of a reactor turn that
    DNS queries wait behind.  The rest stay in the kernel's backlog.  A
    factory with an ``accept_budget()`` (a rate-limited listener) narrows the
    batch further to what its rate allows now, so the connections let in
    after a pause arrive one per turn instead of as one burst of work.
    """

    @property  # type: ignore[override]
    def numberAccepts(self) -> int:
        budget = getattr(self.factory, "accept_budget", None)
        if budget is None:
            return ACCEPTS_PER_TURN
        return max(1, min(ACCEPTS_PER_TURN, int(budget())))

    @numberAccepts.setter
    def numberAccepts(self, value: int) -> None:
        pass


def listen_fair(reactor: Any, port: int, factory: Any, interface: str) -> IListeningPort:
    """``reactor.listenTCP`` with a :class:`FairPort` and a :data:`BACKLOG`-deep backlog
    (a memory reactor in tests gets a plain ``listenTCP``)."""
    if not isinstance(reactor, PosixReactorBase):
        return reactor.listenTCP(port, factory, backlog=BACKLOG, interface=interface)  # type: ignore[no-any-return]
    listening = FairPort(port, factory, BACKLOG, interface, reactor)
    listening.startListening()
    return listening
