"""Scheduling of health checks: one LoopingCall per server (SPEC §5).

:class:`HealthManager` owns the :class:`ServerHealth` of every checked
server.  Each server has its own ``LoopingCall`` on a Deferred-returning
function, so checks of one server never overlap: when a check is slower than
the interval, the next one starts at the first interval boundary after it
finished.  Start times are spread over the interval so that a start or a
reload does not fire every check at once.

Everything runs on the reactor thread and all timing goes through the
injected reactor (``task.Clock`` in tests).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Callable, Dict, List, Mapping, Optional, Protocol, Set, Tuple

from twisted.internet.base import DelayedCall
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredList,
    maybeDeferred,
    succeed,
)
from twisted.internet.defer import TimeoutError as DeferredTimeoutError
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from opengslb.config.model import Config, HealthCheckConfig, RegionConfig, ServerConfig, changed_regions

from .checks import CheckFailed
from .tracker import ServerHealth, ServerKey

__all__ = ["HealthChecker", "HealthManager"]


class HealthChecker(Protocol):
    """What the manager needs from a checker (:class:`~.checks.Checker` provides it)."""

    def check(self, server: ServerConfig, settings: HealthCheckConfig) -> "Deferred[None]":
        """Fire ``None`` when healthy; fail (ideally with ``CheckFailed``) otherwise."""

    def close(self) -> "Deferred[Any]":
        """Release the checker's resources."""


OnChange = Callable[[ServerKey, ServerHealth], None]
OnResult = Callable[[ServerKey, bool, float], None]


class _Entry:
    """Bookkeeping of one checked server (private to the manager)."""

    __slots__ = (
        "key",
        "server",
        "settings",
        "health",
        "configured",
        "loop",
        "start_call",
        "start_when_idle",
        "in_flight",
        "idle_waiters",
        "removed",
    )

    def __init__(
        self,
        key: ServerKey,
        server: ServerConfig,
        settings: HealthCheckConfig,
        health: ServerHealth,
        configured: bool,
    ) -> None:
        self.key = key
        self.server = server
        self.settings = settings
        self.health = health
        self.configured = configured
        self.loop: Optional[LoopingCall] = None
        self.start_call: Optional[DelayedCall] = None
        self.start_when_idle = False
        self.in_flight: Optional[Deferred[Any]] = None
        self.idle_waiters: List[Deferred[None]] = []
        self.removed = False


class HealthManager:
    """Runs the health checks of every server and keeps their verdicts.

    :param reactor: ``IReactorTime`` provider for all scheduling.
    :param checker: runs one check (see :class:`HealthChecker`).
    :param on_change: ``on_change(key, health)``, called on the reactor thread
        whenever a server's ``healthy`` flips.  Exceptions it raises are
        logged and otherwise ignored.
    :param on_result: ``on_result(key, success, duration_seconds)``, called
        after every finished check (for metrics).  Exceptions are logged.
    :param log: the Logger to use; default namespace ``opengslb.health``.
    """

    #: Seconds past ``settings.timeout`` after which the manager gives up on
    #: a check whose Deferred has not fired (counted as a failure).
    CHECK_GRACE = 1.0

    def __init__(
        self,
        reactor: Any,
        checker: HealthChecker,
        on_change: OnChange,
        on_result: Optional[OnResult] = None,
        log: Optional[Logger] = None,
    ) -> None:
        self._reactor = reactor
        self._checker = checker
        self._on_change = on_change
        self._on_result = on_result
        self._log = log if log is not None else Logger(namespace="opengslb.health")
        self._entries: Dict[ServerKey, _Entry] = {}
        self._health: Dict[ServerKey, ServerHealth] = {}
        self._states = MappingProxyType(self._health)
        self._configured_once = False
        self._regions: Dict[str, RegionConfig] = {}  # as of the last apply_config
        self._first_round_pending: Set[ServerKey] = set()
        self._first_round_waiters: List[Deferred[None]] = []
        self._stopping = False
        self._stopped = False
        self._stop_waiters: List[Deferred[None]] = []

    # -- configuration ----------------------------------------------------

    def apply_config(self, config: Config) -> None:
        """Reconcile the checked servers with ``config.regions``.

        - servers of the config not checked yet start being checked;
        - configured servers no longer in the config stop being checked and
          their state is dropped (servers added with :meth:`add_server` are
          left alone unless the config now lists them);
        - servers whose :class:`ServerKey` survives keep their
          :class:`ServerHealth`; when their check settings changed, their
          schedule restarts with the new settings (after any check in
          flight has finished).

        Newly (re)started servers are spread over their interval: the server
        at position ``i`` of the ``n`` servers being (re)started (in config
        order) starts ``interval * i / n`` seconds from now.  Regions equal to
        the previous call's are skipped whole, so a reload of a large file
        touches only what changed.

        :raise RuntimeError: after :meth:`stop`.
        """
        if self._stopping:
            raise RuntimeError("HealthManager is stopped")
        previous = self._regions
        self._regions = config.regions_by_name
        changed = changed_regions(config, previous)
        gone = set(previous) - set(self._regions)
        desired: Dict[ServerKey, Tuple[ServerConfig, HealthCheckConfig]] = {}
        for region in config.regions:
            if region.name not in changed:
                continue
            for server in region.servers:
                key = ServerKey(region.name, server.address, server.port)
                desired[key] = (server, region.health_check)

        touched = changed | gone
        for key in [k for k, e in self._entries.items()
                    if e.configured and k.region in touched and k not in desired]:
            self.remove_server(key)

        now = self._reactor.seconds()
        count = len(desired)
        for index, (key, (server, settings)) in enumerate(desired.items()):
            offset = settings.interval * index / count
            entry = self._entries.get(key)
            if entry is None:
                entry = self._add(key, server, settings, ServerHealth(True, now), configured=True)
                self._schedule(entry, offset)
                continue
            entry.configured = True
            entry.server = server
            if entry.settings != settings:
                entry.settings = settings
                self._schedule(entry, offset)

        if not self._configured_once:
            self._configured_once = True
            self._first_round_pending = {key for key in desired if self._health[key].last_check is None}
            self._maybe_first_round_done()

    def add_server(
        self,
        key: ServerKey,
        server: ServerConfig,
        settings: HealthCheckConfig,
        initial_healthy: bool = True,
    ) -> None:
        """Start checking a dynamically registered server (first check on the next reactor turn).

        A server registered without an agent claim should pass
        ``initial_healthy=False``: it then stays unhealthy until its first
        passing check.  When ``key`` is already checked, its state is kept
        (``initial_healthy`` is ignored) and its schedule restarts when
        ``settings`` changed.

        :raise RuntimeError: after :meth:`stop`.
        """
        if self._stopping:
            raise RuntimeError("HealthManager is stopped")
        entry = self._entries.get(key)
        if entry is None:
            health = ServerHealth(initial_healthy, self._reactor.seconds())
            entry = self._add(key, server, settings, health, configured=False)
            self._schedule(entry, 0.0)
            return
        entry.server = server
        if entry.settings != settings:
            entry.settings = settings
            self._schedule(entry, 0.0)

    def remove_server(self, key: ServerKey) -> None:
        """Stop checking ``key`` and forget its state; unknown keys are ignored.

        A check in flight is cancelled and its result discarded; no callback
        is called for ``key`` afterwards.
        """
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        del self._health[key]
        entry.removed = True
        self._halt(entry)
        if entry.in_flight is not None:
            entry.in_flight.cancel()
        self._first_round_pending.discard(key)
        self._maybe_first_round_done()

    # -- queries ----------------------------------------------------------

    def get(self, key: ServerKey) -> Optional[ServerHealth]:
        """The health of ``key``, or ``None`` when it is not checked."""
        return self._health.get(key)

    def states(self) -> Mapping[ServerKey, ServerHealth]:
        """A live read-only mapping of every checked server to its health."""
        return self._states

    @property
    def first_round_complete(self) -> bool:
        """True once every server of the first :meth:`apply_config` has finished a check.

        Servers removed before their first check do not hold it back.
        """
        return self._configured_once and not self._first_round_pending

    def when_first_round_complete(self) -> "Deferred[None]":
        """A Deferred that fires ``None`` once :attr:`first_round_complete` is true.

        Fires at once when it already is; cancelling it just forgets it.
        """
        if self.first_round_complete:
            return succeed(None)

        def forget(d: Deferred[None]) -> None:
            if d in self._first_round_waiters:
                self._first_round_waiters.remove(d)

        waiter: Deferred[None] = Deferred(forget)
        self._first_round_waiters.append(waiter)
        return waiter

    # -- shutdown ---------------------------------------------------------

    def stop(self) -> "Deferred[None]":
        """Stop every loop, wait for checks in flight, then close the checker.

        Results of checks that finish meanwhile are still recorded and
        reported.  Every call returns its own Deferred, firing ``None`` once
        the (single) shutdown is complete; it never fails (a failure to close
        the checker is logged).
        """
        result: Deferred[None] = Deferred()
        if self._stopped:
            result.callback(None)
            return result
        self._stop_waiters.append(result)
        if self._stopping:
            return result
        self._stopping = True
        waits: List[Deferred[None]] = []
        for entry in self._entries.values():
            self._halt(entry)
            if entry.in_flight is not None:
                waiter: Deferred[None] = Deferred()
                entry.idle_waiters.append(waiter)
                waits.append(waiter)
        done: Deferred[Any] = DeferredList(waits)
        done.addCallback(lambda _: maybeDeferred(self._checker.close))
        done.addErrback(lambda f: self._log.failure("closing the health checker failed", failure=f))
        done.addBoth(self._stop_finished)
        return result

    def _stop_finished(self, _: object) -> None:
        self._stopped = True
        waiters, self._stop_waiters = self._stop_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    # -- internals --------------------------------------------------------

    def _add(
        self,
        key: ServerKey,
        server: ServerConfig,
        settings: HealthCheckConfig,
        health: ServerHealth,
        configured: bool,
    ) -> _Entry:
        entry = _Entry(key, server, settings, health, configured)
        self._entries[key] = entry
        self._health[key] = health
        return entry

    def _halt(self, entry: _Entry) -> None:
        """Stop ``entry``'s schedule; a check in flight runs on to completion."""
        if entry.start_call is not None:
            if entry.start_call.active():
                entry.start_call.cancel()
            entry.start_call = None
        entry.start_when_idle = False
        if entry.loop is not None:
            if entry.loop.running:
                entry.loop.stop()
            entry.loop = None

    def _schedule(self, entry: _Entry, offset: float) -> None:
        """(Re)start ``entry``'s loop ``offset`` seconds from now."""
        self._halt(entry)
        entry.start_call = self._reactor.callLater(offset, self._start_loop, entry)

    def _start_loop(self, entry: _Entry) -> None:
        entry.start_call = None
        if entry.removed or self._stopping:
            return
        if entry.in_flight is not None:
            # A check of the previous schedule is still running: start right
            # after it, never alongside it.
            entry.start_when_idle = True
            return
        loop = LoopingCall(self._run_check, entry)
        loop.clock = self._reactor
        entry.loop = loop
        done = loop.start(entry.settings.interval, now=True)
        done.addErrback(
            lambda f: self._log.failure(
                "health check loop of {server} in {region} died",
                failure=f,
                server=entry.key.endpoint,
                region=entry.key.region,
            )
        )

    def _run_check(self, entry: _Entry) -> "Deferred[None]":
        """Run one check of ``entry`` and record it; the Deferred never fails."""
        started = self._reactor.seconds()
        settings = entry.settings
        d: Deferred[Any] = maybeDeferred(self._checker.check, entry.server, settings)
        entry.in_flight = d
        # Belt and braces: a checker must finish within the timeout, but a
        # Deferred that never fires would stall this server's loop for good.
        d.addTimeout(settings.timeout + self.CHECK_GRACE, self._reactor)
        d.addCallbacks(
            lambda _: self._finished(entry, started, True, None),
            lambda f: self._failed(entry, started, f),
        )
        d.addErrback(
            lambda f: self._log.failure(
                "recording the health check of {server} in {region} failed",
                failure=f,
                server=entry.key.endpoint,
                region=entry.key.region,
            )
        )
        d.addBoth(lambda _: self._idle(entry))
        return d

    def _failed(self, entry: _Entry, started: float, failure: Failure) -> None:
        if entry.removed and failure.check(CancelledError):
            return
        if isinstance(failure.value, CheckFailed):
            reason = failure.value.reason
        elif failure.check(DeferredTimeoutError):
            reason = f"check did not finish within {entry.settings.timeout:g}s"
        else:
            reason = f"{type(failure.value).__name__}: {failure.value}"
            self._log.failure(
                "unexpected error checking {server} in {region}",
                failure=failure,
                server=entry.key.endpoint,
                region=entry.key.region,
            )
        self._finished(entry, started, False, reason)

    def _finished(self, entry: _Entry, started: float, success: bool, reason: Optional[str]) -> None:
        if entry.removed:
            return
        key = entry.key
        now = self._reactor.seconds()
        health = entry.health
        settings = entry.settings
        flipped = health.record(success, now, reason, settings.failure_threshold, settings.success_threshold)
        if not success:
            self._log.debug(
                "health check of {server} in {region} failed: {reason}",
                server=key.endpoint,
                region=key.region,
                reason=reason,
            )
        if flipped:
            if health.healthy:
                self._log.info("server {server} in {region} is up", server=key.endpoint, region=key.region,
                               event="server_up")
            else:
                self._log.warn(
                    "server {server} in {region} is down: {reason}",
                    server=key.endpoint,
                    region=key.region,
                    reason=reason,
                    event="server_down",
                )
            self._call("on_change", self._on_change, key, health)
        if self._on_result is not None and not entry.removed:
            self._call("on_result", self._on_result, key, success, now - started)
        if key in self._first_round_pending:
            self._first_round_pending.discard(key)
            self._maybe_first_round_done()

    def _idle(self, entry: _Entry) -> None:
        """The check in flight of ``entry`` has finished."""
        entry.in_flight = None
        waiters, entry.idle_waiters = entry.idle_waiters, []
        for waiter in waiters:
            waiter.callback(None)
        if entry.start_when_idle and not entry.removed and not self._stopping:
            entry.start_when_idle = False
            entry.start_call = self._reactor.callLater(0, self._start_loop, entry)

    def _call(self, name: str, callback: Callable[..., None], *args: Any) -> None:
        try:
            callback(*args)
        except Exception:
            self._log.failure("health {callback} callback failed", callback=name)

    def _maybe_first_round_done(self) -> None:
        if not self.first_round_complete:
            return
        waiters, self._first_round_waiters = self._first_round_waiters, []
        for waiter in waiters:
            waiter.callback(None)
