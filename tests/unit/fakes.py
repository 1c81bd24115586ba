"""Fakes shared by the unit tests: a health checker whose verdicts the test decides,
and a runtime-state store in memory.

:class:`FakeChecker` stands in for :class:`opengslb.health.checks.Checker`
(``check(server, settings) -> Deferred``, ``close() -> Deferred``).  Every
check it starts is recorded as a :class:`FakeCheck`; what the check then does
is set per checker and per address:

* ``down[address] = reason`` — checks of that address fail with
  ``CheckFailed(reason)``; the rest succeed (or follow ``auto``);
* ``hold`` — addresses whose checks stay pending (``held[address]`` is the
  latest one's Deferred, for the test to fire);
* ``raise_for`` — addresses whose ``check()`` raises instead of returning;
* ``auto`` — ``True``: settle at once (success unless down), ``False``: fail
  at once, ``None``: stay pending until the test calls
  :meth:`FakeCheck.succeed` or :meth:`FakeCheck.fail`;
* ``duration`` — with a ``clock``, a check settles that many clock seconds
  after it starts (the verdict is decided then).

:class:`MemoryStore` offers the store contract of :class:`opengslb.runtime.Store`
(``machine``, ``writable``, ``propose``, ``add_listener``) as the standalone
:class:`opengslb.state.local.LocalStore` does, minus the disk and the worker
thread: a command is applied at once, so tests on ``task.Clock`` never wait.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Set

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime

from opengslb.config.model import HealthCheckConfig, ServerConfig
from opengslb.health.checks import CheckFailed
from opengslb.runtime import Runtime
from opengslb.state.machine import StateMachine

__all__ = ["FakeCheck", "FakeChecker", "MemoryStore", "memory_runtime"]


class FakeCheck:
    """One check the checker started; ``started`` is the clock's time then."""

    def __init__(self, server: ServerConfig, settings: HealthCheckConfig, started: float) -> None:
        self.server = server
        self.settings = settings
        self.started = started
        self.cancelled = False
        self.deferred: Deferred[None] = Deferred(self._cancel)

    def _cancel(self, d: Deferred[None]) -> None:
        self.cancelled = True

    def succeed(self) -> None:
        """The check passes."""
        self.deferred.callback(None)

    def fail(self, reason: str = "HTTP 503") -> None:
        """The check fails with ``CheckFailed(reason)``."""
        self.deferred.errback(CheckFailed(reason))


class FakeChecker:
    """A checker whose results the test controls (see the module docstring)."""

    def __init__(self, clock: Optional[IReactorTime] = None, auto: Optional[bool] = True,
                 duration: float = 0.0) -> None:
        self.clock = clock
        self.auto = auto
        self.duration = duration
        self.down: Dict[str, str] = {}
        self.hold: Set[str] = set()
        self.held: Dict[str, Deferred[None]] = {}
        self.raise_for: Set[str] = set()
        self.checks: List[FakeCheck] = []
        self.checked: List[str] = []  # endpoints, in the order their checks started
        self.closed = False

    def check(self, server: ServerConfig, settings: HealthCheckConfig) -> Deferred[None]:
        """Start one check of ``server``; raises ``RuntimeError`` for addresses in ``raise_for``."""
        if server.address in self.raise_for:
            raise RuntimeError("boom")
        self.checked.append(server.endpoint)
        check = FakeCheck(server, settings, self.clock.seconds() if self.clock is not None else 0.0)
        self.checks.append(check)
        if server.address in self.hold:
            self.held[server.address] = check.deferred
        elif self.auto is not None:
            if self.duration > 0 and self.clock is not None:
                self.clock.callLater(self.duration, self._settle, check)
            else:
                self._settle(check)
        return check.deferred

    def _settle(self, check: FakeCheck) -> None:
        """Give ``check`` its verdict now (unless it was cancelled meanwhile)."""
        if check.deferred.called:
            return
        address = check.server.address
        if address in self.down:
            check.fail(self.down[address])
        elif self.auto:
            check.succeed()
        else:
            check.fail()

    def close(self) -> Deferred[None]:
        """Stop: nothing to release."""
        self.closed = True
        return succeed(None)

    def pending(self) -> List[FakeCheck]:
        """The checks not settled yet."""
        return [c for c in self.checks if not c.deferred.called]

    def started_at(self, address: str) -> List[float]:
        """When each check of ``address`` started (clock seconds)."""
        return [c.started for c in self.checks if c.server.address == address]


class MemoryStore:
    """The store contract in memory: apply at once, listeners, optional failure.

    ``proposed`` records every command; ``failing = "reason"`` makes writes
    fail (not committed); ``writable = False`` says no write can be committed.
    """

    def __init__(self) -> None:
        self.machine = StateMachine()
        self.writable = True
        self.proposed: List[Dict[str, Any]] = []
        self.failing: Optional[str] = None
        self._listeners: List[Callable[[], None]] = []

    def add_listener(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def propose(self, command: Dict[str, Any]) -> Deferred:
        self.proposed.append(command)
        if self.failing is not None:
            return fail(RuntimeError(self.failing))
        result = self.machine.apply(command)
        if result["ok"]:
            for listener in self._listeners:
                listener()
        return succeed(result)

    def ops(self, op: str) -> List[Dict[str, Any]]:
        return [c for c in self.proposed if c["op"] == op]


def memory_runtime(clock: Any, config: Any) -> Runtime:
    """A real :class:`opengslb.runtime.Runtime` over a fresh :class:`MemoryStore` (no records)."""
    return Runtime(clock, MemoryStore(), config)
