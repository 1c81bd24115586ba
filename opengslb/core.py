"""The GSLB core: the inputs of the served policy → the answering view.

:class:`Gslb` owns the live configuration and the health manager, receives
the other inputs at construction (the runtime records, the peers' verdicts),
and rebuilds the :class:`~opengslb.dns.view.AnsweringView` whenever one of
them changes (coalesced to at most one rebuild per reactor turn).  Every
server's health and weight in that view come from the served policy
(:func:`opengslb.served.served`); the API and the metrics ask the same
function through :meth:`Gslb.served`.  Nothing here touches sockets.

Ramps: while a server's weight is moving on its own (a predictive bleed or a
slow start), the regions concerned are rebuilt every :attr:`Gslb.RAMP_STEP`
seconds, and once more at the exact end of each ramp.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Protocol, Set, Tuple

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from opengslb.config.model import Config, ServerConfig, changed_regions
from opengslb.dns.view import AnsweringView, DomainView, RoutingInputs, build_view, zone_index_for
from opengslb.health.checks import Checker
from opengslb.health.manager import HealthManager
from opengslb.health.tracker import ServerHealth, ServerKey
from opengslb.routing import Candidate
from opengslb.routing.geoip import GeoIPError, GeoIPLookup, open_reader
from opengslb.routing.rtt import LatencyTable
from opengslb.runtime import Runtime
from opengslb.served import Inputs, PeerVerdicts, RampClock, RuntimeRecords, Served, served
from opengslb.served.bleed import bleeding_servers, served_bleed
from opengslb.served.consensus import NO_PEERS
from opengslb.stats import CHECK_DURATION_BOUNDS, DurationHistogram, QueryStats

log = Logger(namespace="opengslb.core")

ViewListener = Callable[[AnsweringView], None]


class PeerSource(Protocol):
    """The other nodes' verdicts (cluster mode: :class:`opengslb.cluster.consensus.DistributedHealth`)."""

    def snapshot(self) -> PeerVerdicts:
        """The fresh peer verdicts and the consensus mode now."""

    def add_listener(self, listener: Callable[[Optional[Iterable[str]]], None]) -> None:
        """Call ``listener(regions)`` when peer verdicts may change what is served (``None``: any region)."""


class Gslb:
    """Live configuration, health and the view answers come from.

    :param reactor: time and scheduling.
    :param config: the configuration to start with (:meth:`apply_config` swaps it).
    :param checker: runs health checks.
    :param rng: the routing algorithms' source of randomness.
    :param stats: the DNS side's counters (shared with the listeners).
    :param runtime: the runtime state (overrides, registrations, vetoes,
        signals); standalone and cluster mode alike have one.
    :param peers: the other nodes' verdicts (cluster mode); ``None``: this
        node's verdicts are served as they are.

    ``check_results`` and ``check_durations`` count finished health checks
    (read by the metrics).
    """

    #: Seconds between two view rebuilds while a ramp (bleed or slow start) is in progress.
    RAMP_STEP = 0.5

    def __init__(self, reactor: IReactorTime, config: Config, checker: Checker,
                 runtime: Runtime,
                 rng: Optional[random.Random] = None,
                 stats: Optional[QueryStats] = None,
                 peers: Optional[PeerSource] = None) -> None:
        self._reactor: Any = reactor
        self._rng = rng if rng is not None else random.Random()
        self.config = config
        self.stats = stats if stats is not None else QueryStats()
        self.check_results: dict[tuple[str, str, str], int] = {}
        self.check_durations = DurationHistogram(CHECK_DURATION_BOUNDS)
        self.health = HealthManager(reactor, checker, on_change=self._health_changed,
                                    on_result=self._check_finished)
        self.runtime = runtime
        self._peers = peers
        self._listeners: List[ViewListener] = []
        self._rebuild_pending = False
        self._stale_logged: Set[str] = set()
        self._dirty: Optional[Set[str]] = None  # regions to recompute at the next rebuild (None: all)
        self._ramps: Dict[ServerKey, RampClock] = {}  # slow-start clocks, from the last decisions
        self._ramp_ends: Dict[str, float] = {}  # region → the earliest end of a ramp in progress there
        self._ramp_call: Optional[Any] = None  # IDelayedCall of the next ramp rebuild
        self._checked: Set[ServerKey] = set()  # registrations health-checked here
        # Client-aware routing's inputs (SPEC §4.1): the GeoIP database (raises GeoIPError when
        # it cannot be read at start) and this node's health-check round-trip times.
        self.routing_inputs = RoutingInputs(geoip=GeoIPLookup(config.geoip.database), latency=LatencyTable())
        #: (config, reader, error) opened by prepare_config in a reload's worker thread.
        self._prepared_geoip: Optional[Tuple[Config, Any, Optional[GeoIPError]]] = None
        self._stopped = False
        if runtime.config is not config:
            runtime.config_changed(config)
        runtime.add_listener(self._runtime_changed)
        self._check_registrations()
        if peers is not None:
            peers.add_listener(self.request_rebuild)
        self.view = self._build()

    # -- inputs --------------------------------------------------------

    def start(self) -> None:
        """Start health checking for the current configuration."""
        self._stopped = False
        self.health.apply_config(self.config)
        self._rebuild_now()

    def stop(self) -> object:
        """Stop health checks and ramp rebuilds; returns a Deferred that fires when checks stopped."""
        self._stopped = True
        if self._ramp_call is not None and self._ramp_call.active():
            self._ramp_call.cancel()
        self._ramp_call = None
        return self.health.stop()

    def apply_config(self, config: Config) -> None:
        """Swap in a new configuration atomically; health of surviving servers is kept."""
        if self._dirty is not None:
            self._dirty.update(changed_regions(config, self.config.regions_by_name))
        self.config = config
        self._reload_geoip(config)
        self.health.apply_config(config)
        self.runtime.config_changed(config)
        self._check_registrations()
        self._rebuild_now()

    def prepare_config(self, config: Config) -> None:
        """Compute what views of ``config`` derive from it alone (its zone index).

        Thread-safe and meant for a reload's worker thread, before
        :meth:`apply_config`: it only reads the current view.
        """
        zone_index_for(config, self.view)
        try:
            self._prepared_geoip = (config, open_reader(config.geoip.database), None)
        except GeoIPError as error:
            self._prepared_geoip = (config, None, error)

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

    def local_verdicts(self) -> Dict[ServerKey, bool]:
        """This node's own check verdicts (what it gossips)."""
        return {key: health.healthy for key, health in self.health.states().items()}

    def add_view_listener(self, listener: ViewListener) -> None:
        """Call ``listener(view)`` after every rebuild (e.g. the fast path's cache)."""
        self._listeners.append(listener)

    # -- served state (the policy, asked with the current inputs) ----------

    def inputs(self, now: Optional[float] = None) -> Inputs:
        """Snapshots of every input of the served policy at ``now`` (default: the reactor's time)."""
        return Inputs(config=self.config, own=self.health.states(),
                      peers=self._peers.snapshot() if self._peers is not None else NO_PEERS,
                      records=self._records(), ramps=self._ramps,
                      now=self._reactor.seconds() if now is None else now)

    def served(self, region: str, server: ServerConfig) -> Served:
        """How ``server`` of ``region`` is served now (health, effective weight, why).

        Read-only: the slow-start clocks advance only when the view is rebuilt.
        """
        return served(self.inputs(), region, server)

    def judge(self) -> Callable[[str, ServerConfig], Served]:
        """:meth:`served` over one snapshot of the inputs: for judging many servers at once."""
        inputs = self.inputs()
        return lambda region, server: served(inputs, region, server)

    def servers(self, region: str) -> List[ServerConfig]:
        """The candidates of ``region``: its configured servers, then its served registrations."""
        try:
            configured = list(self.config.region(region).servers)
        except KeyError:
            return []
        return configured + list(self.runtime.extra_servers(region))

    def served_at(self, region: str, address: str, port: int) -> Served:
        """:meth:`served` of the server at address:port of ``region`` (base weight 0 when unknown)."""
        for server in self.servers(region):
            if server.address == address and server.port == port:
                return self.served(region, server)
        return self.served(region, ServerConfig(address, port, weight=0))

    def peer_verdicts(self, key: ServerKey) -> Dict[str, bool]:
        """Each other node's fresh verdict for ``key`` (empty in standalone mode)."""
        return self._peers.snapshot().per_node(key) if self._peers is not None else {}

    def bleeding_servers(self) -> int:
        """How many servers predictive health is bleeding now (draining, drained or restoring)."""
        return bleeding_servers(self.config.cluster.predictive_health.enabled,
                                self._records().signals.values(), self._reactor.seconds())

    def registration_status(self, registration: Mapping[str, Any]) -> Dict[str, Any]:
        """How one registration is served, for the API (raw numbers, not text).

        ``served``: whether it is a candidate now; ``not_served``: why not
        (``None`` when served); ``healthy``: the verdict DNS uses;
        ``judged_by``: ``"claim"`` or ``"check"``; ``signal`` / ``veto``:
        the records (the veto only while in force) or ``None``; ``bleed``:
        the :class:`~opengslb.served.bleed.BleedState` now; ``last_seen``,
        ``expires_at``; ``effective_weight`` and ``weight_source``.
        """
        region, address, port = registration["region"], registration["address"], registration["port"]
        key = ServerKey(region, address, port)
        records, now = self._records(), self._reactor.seconds()
        why = self.runtime.not_served(registration)
        if why is None:
            record = self.served(region, ServerConfig(address, port, int(registration["weight"])))
            healthy, weight, source, bleed = record.healthy, record.weight, record.source, record.bleed
        else:
            healthy, weight, source = False, 0.0, "registration"
            bleed = served_bleed(self.config.cluster.predictive_health.enabled, records.signal(key), now)
        return {
            "served": why is None,
            "not_served": why,
            "healthy": healthy,
            "judged_by": "check" if registration.get("claim") is None else "claim",
            "signal": records.signal(key),
            "bleed": bleed,
            "veto": records.veto(key, now),
            "last_seen": self.runtime.last_seen(registration),
            "expires_at": self.runtime.expires_at(registration),
            "effective_weight": weight,
            "weight_source": source,
        }

    def on_stale(self, domain: DomainView, chosen: Candidate) -> None:
        """Count a stale answer; log it once per domain until health changes."""
        self.stats.count_stale(domain.name)
        if domain.name not in self._stale_logged:
            self._stale_logged.add(domain.name)
            log.warn("all servers of {domain} are unhealthy; answering the last healthy "
                     "address {server} (stale)", domain=domain.name, server=chosen.endpoint,
                     event="stale_answer")

    # -- internals --------------------------------------------------------

    def _records(self) -> RuntimeRecords:
        return self.runtime.records()

    def _health_changed(self, key: ServerKey, health: ServerHealth) -> None:
        self.request_rebuild([key.region])

    def _runtime_changed(self) -> None:
        self._check_registrations()
        self.request_rebuild()

    def _check_registrations(self) -> None:
        """Health-check the served registrations without a claim, with their region's settings."""
        wanted = self.runtime.unclaimed_servers()
        configured = self.config.server_endpoints  # (region, address, port): equal to ServerKeys
        regions = self.config.regions_by_name
        try:
            for key in self._checked - set(wanted):
                if key not in configured:
                    self.health.remove_server(key)
            for key, server in wanted.items():
                self.health.add_server(key, server, regions[key.region].health_check, initial_healthy=False)
        except RuntimeError:  # the health manager is stopped: shutting down
            return
        self._checked = set(wanted)

    def _check_finished(self, key: ServerKey, success: bool, duration: float) -> None:
        label = (key.region, f"{key.address}:{key.port}", "success" if success else "failure")
        self.check_results[label] = self.check_results.get(label, 0) + 1
        self.check_durations.observe(duration)
        if success and self.routing_inputs.latency is not None:
            self.routing_inputs.latency.record(key.region, key.address, key.port, duration)

    def _reload_geoip(self, config: Config) -> None:
        """Reopen the GeoIP database (a reload picks up a file updated in place); keep the old on
        failure.  The file was opened by :meth:`prepare_config` in the reload's worker thread;
        a configuration applied without it is opened here."""
        geoip = self.routing_inputs.geoip
        prepared, self._prepared_geoip = self._prepared_geoip, None
        if geoip is None:
            return
        if prepared is not None and prepared[0] is config:
            _, reader, error = prepared
        else:
            try:
                reader, error = open_reader(config.geoip.database), None
            except GeoIPError as failure:
                reader, error = None, failure
        if error is not None:
            log.error("{error}; keeping the GeoIP database in use", error=str(error), event="geoip_failed")
            return
        geoip.install(config.geoip.database, reader)

    def _build(self) -> AnsweringView:
        """A new view from the current inputs; keeps the slow-start clocks and ramp ends it found."""
        now = self._reactor.seconds()
        inputs = self.inputs(now)
        full = self._dirty is None or not hasattr(self, "view")
        clocks: Dict[ServerKey, RampClock] = {} if full else dict(self._ramps)
        ends: Dict[str, float] = {}
        judged: Set[str] = set()

        def lookup(region: str, server: ServerConfig) -> Served:
            record = served(inputs, region, server)
            clocks[ServerKey(region, server.address, server.port)] = record.ramp
            judged.add(region)
            if record.ramp_ends_at is not None:
                ends[region] = min(ends.get(region, record.ramp_ends_at), record.ramp_ends_at)
            return record

        view = build_view(self.config, lookup, self._rng, extra=self.runtime.extra_servers, now=now,
                          previous=getattr(self, "view", None), dirty=self._dirty,
                          inputs=self.routing_inputs)
        regions = self.config.regions_by_name
        for region, end in self._ramp_ends.items():  # regions carried over keep their ramps
            if region not in judged and region in regions and end > now:
                ends.setdefault(region, end)
        self._ramps, self._ramp_ends = clocks, ends
        return view

    def _rebuild_now(self) -> None:
        self._rebuild_pending = False
        previous = self.view
        self.view = self._build()
        self._dirty = set()
        self._stale_logged.clear()
        self._log_failovers(previous, self.view)
        self._schedule_ramp()
        for listener in self._listeners:
            listener(self.view)

    def _schedule_ramp(self) -> None:
        """While a ramp is in progress, rebuild its regions every RAMP_STEP s and at each ramp's end."""
        if self._stopped or not self._ramp_ends:
            return
        now = self._reactor.seconds()
        due = min(now + self.RAMP_STEP, max(now, min(self._ramp_ends.values())))
        if self._ramp_call is not None and self._ramp_call.active():
            if self._ramp_call.getTime() <= due:
                return
            self._ramp_call.cancel()
        self._ramp_call = self._reactor.callLater(due - now, self._ramp_step)

    def _ramp_step(self) -> None:
        self._ramp_call = None
        self.request_rebuild(set(self._ramp_ends))

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


def _first_choice(domain: DomainView, family: int) -> Optional[Candidate]:
    return domain.families[family].picker.pick()


__all__ = ["Gslb", "PeerSource"]
