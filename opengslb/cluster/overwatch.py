"""Overwatch: the leader's own checks of agent-claimed servers, and vetoes (SPEC §7.7).

A server registered by an agent with a health claim is served by that claim.
The claim comes from inside (the agent checks its own service); the overwatch
looks from outside: every ``cluster.overwatch.external_check_interval`` the
leader checks each such server itself, with its region's ``health_check``
settings, and compares:

========================= ======================================================
claim / leader's check     outcome
========================= ======================================================
unhealthy / anything       the claim is honoured (a backend may drain itself);
                           not a disagreement
healthy / passes           agreement; a veto in force is lifted
healthy / fails            a **disagreement**, counted per ``veto_mode``:
                           ``strict`` vetoes at once, ``balanced`` after
                           ``veto_threshold`` consecutive disagreements,
                           ``permissive`` only records it (log + counter)
========================= ======================================================

A veto is replicated runtime state (``veto.set`` / ``veto.clear`` through
:class:`~opengslb.runtime.Runtime`): every node serves the server unhealthy
while it stands.  It lifts at the first passing check of the leader, and
also when it no longer applies: the registration stopped making a claim or
is no longer served, or ``veto_mode`` was changed to ``permissive``.  A
veto also survives a claim of unhealthy (the check has not passed).

Only the leader (``runtime.is_leader()``; standalone: always) checks and
proposes.  The consecutive-disagreement counts live in memory on the leader,
so a new leader starts counting afresh; vetoes themselves are replicated and
stay.  A round never overlaps the previous one (``LoopingCall`` on a
Deferred); a change of ``external_check_interval`` by reload takes effect
after the current round.

Logs (``opengslb.overwatch``): ``overwatch_disagreement`` (warn; permissive:
once per streak), ``overwatch_veto`` (warn), ``overwatch_veto_lifted`` and
``overwatch_agrees`` (info), ``overwatch_veto_failed`` (warn: the write was not
committed; retried next round).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Set

from twisted.internet import defer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from opengslb.config.model import VETO_MODES, Config, OverwatchConfig, ServerConfig
from opengslb.health.checks import CheckFailed
from opengslb.health.tracker import ServerKey
from opengslb.state.machine import server_key

log = Logger(namespace="opengslb.overwatch")

__all__ = ["MODES", "Overwatch"]

MODES = VETO_MODES  # defined once, in the configuration model


def _parse_key(key: str) -> Optional[ServerKey]:
    """``region/address:port`` → ServerKey (``None`` for a malformed key)."""
    region, _, rest = key.partition("/")
    address, _, port = rest.rpartition(":")
    try:
        return ServerKey(region, address, int(port))
    except ValueError:
        return None


class Overwatch:
    """Checks agent-claimed servers from the leader and vetoes the ones that lie.

    :param reactor: ``IReactorTime``: the loop and the time of vetoes.
    :param runtime: the :class:`~opengslb.runtime.Runtime`: which servers
        carry a claim (``claimed_servers()``), the vetoes in force
        (``active_vetoes()``), leadership (``is_leader()``) and the writes
        (``set_veto()`` / ``clear_veto()``).
    :param checker: runs one check: ``check(server, settings)`` → Deferred
        that fails with :class:`~opengslb.health.checks.CheckFailed` when
        unhealthy (the service's :class:`~opengslb.health.checks.Checker`,
        so in cluster mode the check leaves from the leader's address).
    :param config: the current configuration (it changes on reload).

    ``disagreements`` counts disagreements per ``veto_mode`` in force when
    they happened (``opengslb_overwatch_disagreements_total{mode}``).
    """

    def __init__(self, reactor: Any, runtime: Any, checker: Any, config: Callable[[], Config]) -> None:
        self._reactor = reactor
        self._runtime = runtime
        self._checker = checker
        self._config = config
        self.disagreements: Dict[str, int] = {mode: 0 for mode in MODES}
        self._streaks: Dict[ServerKey, int] = {}
        self._proposing: Set[ServerKey] = set()
        self._loop: Optional[LoopingCall] = None
        self._interval: Optional[float] = None
        self._stopped = False

    @property
    def settings(self) -> OverwatchConfig:
        return self._config().cluster.overwatch

    def streak(self, key: ServerKey) -> int:
        """Consecutive disagreements about ``key`` seen by this leader (0 when none)."""
        return self._streaks.get(key, 0)

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        """Start checking every ``external_check_interval`` (the first round at once)."""
        self._stopped = False
        self._start_loop(now=True)

    def stop(self) -> None:
        """Stop the loop; a round in progress finishes its checks but proposes nothing."""
        self._stopped = True
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def _start_loop(self, now: bool) -> None:
        self._interval = float(self.settings.external_check_interval)
        self._loop = LoopingCall(self._round)
        self._loop.clock = self._reactor
        self._loop.start(self._interval, now=now).addErrback(
            lambda f: log.failure("the overwatch loop died", failure=f))

    def _round(self) -> "defer.Deferred[None]":
        d = self.check_round()

        def reschedule(_: Any) -> None:
            # A reload changed the interval: restart the loop at the new pace.
            if not self._stopped and self.settings.external_check_interval != self._interval:
                if self._loop is not None and self._loop.running:
                    self._loop.stop()
                self._start_loop(now=False)

        return d.addCallback(reschedule)

    # -- one round -------------------------------------------------------------

    def check_round(self) -> "defer.Deferred[None]":
        """Check every claimed server once and act on the results; never fails."""
        if not self._runtime.is_leader():
            self._streaks.clear()
            return defer.succeed(None)
        config = self._config()
        settings = config.cluster.overwatch
        targets = self._runtime.claimed_servers()
        wanted = {key for key, _, _ in targets}
        for key in [k for k in self._streaks if k not in wanted]:
            del self._streaks[key]
        self._drop_stale_vetoes(wanted, settings)
        regions = {region.name: region for region in config.regions}
        checks: List["defer.Deferred[Any]"] = []
        for key, server, registration in targets:
            region = regions.get(key.region)
            if region is None:
                continue
            d = defer.maybeDeferred(self._checker.check, server, region.health_check)
            d.addCallbacks(lambda _: (True, None), _failure_reason)
            d.addCallback(self._judge, key, server, registration["id"])
            d.addErrback(_log_failure, key)
            checks.append(d)
        return defer.DeferredList(checks).addCallback(lambda _: None)

    def _judge(self, outcome: Any, key: ServerKey, server: ServerConfig, rid: str) -> None:
        """Act on one check result: agree, record, veto or lift."""
        passed, reason = outcome
        registration = self._runtime.machine.registrations.get(rid)
        if self._stopped or registration is None or not self._runtime.is_leader():
            return
        settings = self.settings
        mode = settings.veto_mode
        vetoed = server_key(key.region, key.address, key.port) in self._runtime.active_vetoes()
        if passed:
            had = self._streaks.pop(key, 0)
            if vetoed:
                self._lift(key, "the leader's check passes again")
            elif had:
                log.info("overwatch agrees again with the agent of {server} (check passes)",
                         server=_label(key), mode=mode, event="overwatch_agrees")
            return
        if registration.get("claim") is not True:
            # A claim of unhealthy is always honoured; no claim is not judged here.
            self._streaks.pop(key, None)
            return
        streak = self._streaks[key] = self._streaks.get(key, 0) + 1
        self.disagreements[mode] = self.disagreements.get(mode, 0) + 1
        if mode == "permissive":
            if streak == 1:
                log.warn("overwatch disagrees with the agent of {server}: it claims healthy, the "
                         "leader's check fails ({reason}); permissive: still served", server=_label(key),
                         reason=reason, mode=mode, streak=streak, event="overwatch_disagreement")
            if vetoed:
                self._lift(key, "veto_mode is permissive")
            return
        if vetoed:
            return
        needed = 1 if mode == "strict" else max(1, int(settings.veto_threshold))
        if streak < needed:
            log.warn("overwatch disagrees with the agent of {server}: it claims healthy, the "
                     "leader's check fails ({reason}); {streak} of {needed} before a veto",
                     server=_label(key), reason=reason, mode=mode, streak=streak, needed=needed,
                     event="overwatch_disagreement")
            return
        self._veto(key, f"overwatch ({mode}): the agent claims healthy but the leader's check "
                        f"failed {streak} time(s) in a row: {reason}", mode, streak)

    def _veto(self, key: ServerKey, reason: str, mode: str, streak: int) -> None:
        if key in self._proposing:
            return
        self._proposing.add(key)

        def done(_: Any) -> None:
            log.warn("overwatch vetoed {server}: {reason}", server=_label(key), reason=reason,
                     mode=mode, streak=streak, event="overwatch_veto")

        d = self._runtime.set_veto(key, reason)
        d.addCallbacks(done, self._write_failed, errbackArgs=(key, "veto"))
        d.addBoth(lambda _: self._proposing.discard(key))

    def _lift(self, key: ServerKey, why: str) -> None:
        if key in self._proposing:
            return
        self._proposing.add(key)

        def done(_: Any) -> None:
            log.info("overwatch lifted the veto of {server}: {why}", server=_label(key), why=why,
                     mode=self.settings.veto_mode, event="overwatch_veto_lifted")

        d = self._runtime.clear_veto(key)
        d.addCallbacks(done, self._write_failed, errbackArgs=(key, "lift"))
        d.addBoth(lambda _: self._proposing.discard(key))

    def _write_failed(self, failure: Failure, key: ServerKey, action: str) -> None:
        log.warn("overwatch could not {action} {server}: {error} (retried next round)",
                 action="veto" if action == "veto" else "lift the veto of", server=_label(key),
                 error=failure.getErrorMessage(), event="overwatch_veto_failed")

    def _drop_stale_vetoes(self, wanted: Set[ServerKey], settings: OverwatchConfig) -> None:
        """Lift vetoes of servers no longer judged by a claim, and all of them when permissive."""
        for text in list(self._runtime.active_vetoes()):
            key = _parse_key(text)
            if key is None:
                continue
            if key not in wanted:
                self._lift(key, "the server no longer makes a served health claim")
            elif settings.veto_mode == "permissive":
                self._lift(key, "veto_mode is permissive")


def _failure_reason(failure: Failure) -> Any:
    """(False, reason) for a failed check."""
    error = failure.value
    if isinstance(error, CheckFailed):
        return False, error.reason
    return False, f"{type(error).__name__}: {failure.getErrorMessage()}"


def _log_failure(failure: Failure, key: ServerKey) -> None:
    log.failure("overwatch check of {server} failed", failure=failure, server=_label(key))


def _label(key: ServerKey) -> str:
    address = f"[{key.address}]" if ":" in key.address else key.address
    return f"{address}:{key.port} in {key.region}"
