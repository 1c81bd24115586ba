"""The GSLB core: current configuration + health → the answering view.

:class:`Gslb` owns the live configuration and the health manager, and
rebuilds the :class:`~opengslb.dns.view.AnsweringView` whenever one of its
inputs changes (coalesced to at most one rebuild per reactor turn).  DNS,
the API and metrics read from it; nothing here touches sockets.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Dict, Iterable, List, NamedTuple, Optional, Protocol, Sequence, Set

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from opengslb.config.model import Config, ServerConfig, changed_regions
from opengslb.dns.view import AnsweringView, DomainView, ServedState, build_view, zone_index_for
from opengslb.health.checks import Checker
from opengslb.health.manager import HealthManager
from opengslb.health.tracker import ServerHealth, ServerKey
from opengslb.routing import Candidate
from opengslb.stats import QueryStats

log = Logger(namespace="opengslb.core")

ViewListener = Callable[[AnsweringView], None]


class RuntimeInputs(Protocol):
    """What the core asks of the runtime state (:class:`opengslb.runtime.Runtime` provides it)."""

    def extra_servers(self, region: str) -> Sequence[ServerConfig]:
        """Dynamically registered servers of ``region`` that are candidates, in order."""

    def served_state(self, region: str, server: ServerConfig,
                     health: Optional[ServerHealth]) -> ServedState:
        """The served state of one server given its health-check state (``None``: not checked)."""

    def config_changed(self) -> None:
        """The configuration was swapped (reload); reconcile what depends on it."""


class Gslb:
    """Live configuration, health and the view answers come from.

    ``reactor`` provides time and scheduling; ``checker`` runs health checks;
    ``rng`` is the routing algorithms' source of randomness.
    """

    def __init__(self, reactor: IReactorTime, config: Config, checker: Checker,
                 rng: Optional[random.Random] = None,
                 stats: Optional[QueryStats] = None) -> None:
        self._reactor: Any = reactor
        self._rng = rng if rng is not None else random.Random()
        self.config = config
        self.stats = stats if stats is not None else QueryStats()
        self.check_results: dict[tuple[str, str, str], int] = {}
        self.on_check_duration: Optional[Callable[[float], None]] = None  # metrics hook
        self.health = HealthManager(reactor, checker, on_change=self._health_changed,
                                    on_result=self._check_finished)
        self._listeners: List[ViewListener] = []
        self._rebuild_pending = False
        self._stale_logged: Set[str] = set()
        self.runtime: Optional[RuntimeInputs] = None
        self._dirty: Optional[Set[str]] = None  # regions to recompute at the next rebuild (None: all)
        self.consensus: Optional[Any] = None  # cluster mode: opengslb.cluster.consensus.DistributedHealth
        self.view = self._build()

    # -- inputs --------------------------------------------------------

    def start(self) -> None:
        """Start health checking for the current configuration."""
        self.health.apply_config(self.config)
        self._rebuild_now()

    def stop(self) -> object:
        """Stop health checks; returns a Deferred that fires when they stopped."""
        return self.health.stop()

    def apply_config(self, config: Config) -> None:
        """Swap in a new configuration atomically; health of surviving servers is kept."""
        if self._dirty is not None:
            self._dirty.update(changed_regions(config, self.config.regions_by_name))
        self.config = config
        self.health.apply_config(config)
        if self.runtime is not None:
            self.runtime.config_changed()
        self._rebuild_now()

    def prepare_config(self, config: Config) -> None:
        """Compute what views of ``config`` derive from it alone (its zone index).

        Thread-safe and meant for a reload's worker thread, before
        :meth:`apply_config`: it only reads the current view.
        """
        zone_index_for(config, self.view)

    def attach_runtime(self, runtime: RuntimeInputs) -> None:
        """Let ``runtime`` (overrides, registrations, ...) shape the view from the next rebuild."""
        self.runtime = runtime
        self.request_rebuild()

    def request_rebuild(self, regions: Optional[Iterable[str]] = None) -> None:
        """Rebuild the view on the next reactor turn; requests until then are coalesced.

        ``regions`` names the regions whose servers' state changed; ``None``
        (the default) means any region may have changed.
        """
        if regions is None:
            self._dirty = None
        elif self._dirty is not None:
            self._dirty.update(regions)
        if not self._rebuild_pending:
            self._rebuild_pending = True
            self._reactor.callLater(0, self._rebuild_now)

    def attach_consensus(self, consensus: Any) -> None:
        """Serve health combined from every node's verdicts (cluster mode, SPEC §7.5)."""
        self.consensus = consensus
        self.request_rebuild()

    def local_verdicts(self) -> Dict[ServerKey, bool]:
        """This node's own check verdicts (what it gossips)."""
        return {key: health.healthy for key, health in self.health.states().items()}

    def add_view_listener(self, listener: ViewListener) -> None:
        """Call ``listener(view)`` after every rebuild (e.g. the fast path's cache)."""
        self._listeners.append(listener)

    # -- served state ----------------------------------------------------

    def served_state(self, region: str, server: ServerConfig) -> ServedState:
        """Health and effective weight of one server as DNS serves it.

        With a runtime attached, overrides, registrations' claims and vetoes
        are applied (see :meth:`RuntimeInputs.served_state`).
        """
        key = ServerKey(region, server.address, server.port)
        health: Any = self.health.get(key)
        if self.consensus is not None and health is not None:
            combined = self.consensus.served(key, health.healthy)
            if combined is not None and combined != health.healthy:
                health = CombinedVerdict(combined, health.last_healthy)
        if self.runtime is not None:
            return self.runtime.served_state(region, server, health)
        if health is None:
            return ServedState(healthy=True, weight=float(server.weight))
        return ServedState(healthy=health.healthy, weight=float(server.weight),
                           last_healthy=health.last_healthy)

    def on_stale(self, domain: DomainView, chosen: Candidate) -> None:
        """Count a stale answer; log it once per domain until health changes."""
        self.stats.count_stale(domain.name)
        if domain.name not in self._stale_logged:
            self._stale_logged.add(domain.name)
            log.warn("all servers of {domain} are unhealthy; answering the last healthy "
                     "address {server} (stale)", domain=domain.name, server=chosen.endpoint,
                     event="stale_answer")

    # -- internals --------------------------------------------------------

    def _health_changed(self, key: ServerKey, health: ServerHealth) -> None:
        self.request_rebuild([key.region])

    def _check_finished(self, key: ServerKey, success: bool, duration: float) -> None:
        label = (key.region, f"{key.address}:{key.port}", "success" if success else "failure")
        self.check_results[label] = self.check_results.get(label, 0) + 1
        if self.on_check_duration is not None:
            self.on_check_duration(duration)

    def _build(self) -> AnsweringView:
        extra = self.runtime.extra_servers if self.runtime is not None else None
        return build_view(self.config, self.served_state, self._rng, extra=extra,
                          now=self._reactor.seconds(), previous=getattr(self, "view", None),
                          dirty=self._dirty)

    def _rebuild_now(self) -> None:
        self._rebuild_pending = False
        previous = self.view
        self.view = self._build()
        self._dirty = set()
        self._stale_logged.clear()
        self._log_failovers(previous, self.view)
        for listener in self._listeners:
            listener(self.view)

    def _log_failovers(self, before: AnsweringView, after: AnsweringView) -> None:
        """Log when a failover domain's active server changes."""
        for name, domain in after.domains.items():
            if domain.algorithm != "failover" or before.domains.get(name, domain) is domain:
                continue
            for family in (4, 6):
                old = _first_choice(before.domains[name], family)
                new = _first_choice(domain, family)
                if old is not None and new is not None and old != new:
                    log.info("failover for {domain}: {old} → {new}", domain=name,
                             old=old.endpoint, new=new.endpoint, event="failover")


class CombinedVerdict(NamedTuple):
    """A server's health as served after combining node verdicts (duck-types ServerHealth)."""

    healthy: bool
    last_healthy: Optional[float]


def _first_choice(domain: DomainView, family: int) -> Optional[Candidate]:
    return domain.families[family].picker.pick()
