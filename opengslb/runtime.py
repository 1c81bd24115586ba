"""Runtime state: the commands that change it, coarse heartbeats and expiry (SPEC §6, §7.7).

:class:`Runtime` sits on a runtime-state store (the standalone
:class:`~opengslb.state.local.LocalStore` or the Raft-replicated store; both
offer ``machine``, ``propose``, ``add_listener`` and ``writable``).  It does
three things:

* **Commands.** Overrides, registrations, heartbeats, vetoes: checked,
  proposed with the leader's ``reactor.seconds()``, and logged once
  committed.  A write that cannot be committed fails with
  :class:`WriteFailed` (the API answers 503).
* **Coarse heartbeats** (SPEC §6): a heartbeat is proposed only when it
  changes the claim or the signal, or when the replicated ``last_heartbeat``
  is older than ``ttl/3``; otherwise it only updates an in-memory last-seen
  time.  A registration's deadline is ``max(replicated last_heartbeat,
  in-memory last seen, when this node became leader) + ttl``: a node that has
  just become leader (or just started, standalone) grants every registration
  one full ttl of grace, since the previous leader's last-seen times were
  never replicated.  A bleed that (re)starts while a ramp is under way is
  back-dated so the weight never steps (:func:`~opengslb.served.bleed.continuing_since`).
* **Expiry**: on the leader (``is_leader()``), a ``LoopingCall`` every
  :attr:`Runtime.EXPIRY_INTERVAL` seconds proposes ``service.expire`` for
  registrations past their deadline and ``override.expire`` for expired
  overrides, both carrying the leader's ``reactor.seconds()``.

What the records mean for serving is not decided here: :meth:`Runtime.records`
gives a snapshot (:class:`~opengslb.served.records.RuntimeRecords`) to the
served policy (:mod:`opengslb.served`), and listeners (the core) hear of every
change — after each applied command (coalesced to one notice per reactor turn)
and when an override's expiry passes (it stops counting at once, before the
leader's ``override.expire`` removes it).

Everything runs on the reactor thread; time is ``reactor.seconds()``.
"""

from __future__ import annotations

import uuid
from typing import Any, Callable, Dict, List, Mapping, Optional, Protocol, Sequence, Tuple

from twisted.internet import defer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from opengslb.config.model import Config, ServerConfig
from opengslb.health.tracker import ServerKey
from opengslb.served.bleed import bleed_state, continuing_since
from opengslb.served.records import Registrations, RuntimeRecords, served_registrations
from opengslb.state.machine import Command, Result, StateMachine, registration_servers, server_key

log = Logger(namespace="opengslb.runtime")

__all__ = ["NotFound", "Rejected", "Runtime", "Store", "WriteFailed"]

#: Signal reason → the ``cluster.predictive_health`` entry holding its bleed duration.
SIGNAL_SETTINGS = {"cpu_high": "cpu", "memory_high": "memory", "error_rate_high": "error_rate"}

#: ``listener()``: the runtime records changed (any server may be served differently).
Listener = Callable[[], None]


class Store(Protocol):
    """A runtime-state store: LocalStore (standalone) or the Raft-replicated store."""

    machine: StateMachine

    @property
    def writable(self) -> bool:
        """Whether a write can be committed now (cluster: a leader is known)."""

    def propose(self, command: Command) -> "defer.Deferred[Result]":
        """Commit ``command``; fires its result once durable, fails when it cannot be committed."""

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` after every applied command (and restored snapshot)."""


class WriteFailed(Exception):
    """The store could not confirm a write (no leader, timeout, disk): the API answers 503.

    ``outcome`` is ``"not_applied"`` when the write certainly changed nothing
    and ``"unknown"`` when it may still take effect (it left this node and
    then timed out or lost its leader; or the disk write failed after the
    change was applied in memory).  Every write is idempotent, so repeating
    it is safe either way.
    """

    def __init__(self, message: str, outcome: str = "unknown") -> None:
        super().__init__(message)
        self.outcome = outcome


class Rejected(Exception):
    """The state machine rejected a command; the message is its reason."""


class NotFound(Exception):
    """No such override or registration."""


def _never() -> float:
    return float("-inf")


class Runtime:
    """Runtime-state commands, coarse heartbeats and the leader's expiry.

    :param reactor: ``IReactorTime`` for time and the expiry loop.
    :param store: the runtime-state store (see :class:`Store`).
    :param config: the configuration in force; a reload passes the new one
        to :meth:`config_changed`.
    :param is_leader: whether this node may expire registrations and
        overrides (standalone: always).
    :param id_factory: new registration ids (uuid4 hex by default).

    Call :meth:`start` once the store is open and :meth:`stop` at shutdown.
    """

    #: Seconds between two runs of the expiry loop.
    EXPIRY_INTERVAL = 1.0
    #: A heartbeat that changes nothing is replicated once the replicated
    #: ``last_heartbeat`` is older than this fraction of the ttl.
    REFRESH_FRACTION = 1.0 / 3.0

    def __init__(self, reactor: Any, store: Store, config: Config,
                 is_leader: Callable[[], bool] = lambda: True,
                 id_factory: Callable[[], str] = lambda: uuid.uuid4().hex) -> None:
        self._reactor = reactor
        self._store = store
        self._config = config
        self._is_leader = is_leader
        self._id_factory = id_factory
        self._listeners: List[Listener] = []
        self._last_seen: Dict[str, float] = {}
        self._refresh_proposed: Dict[str, float] = {}
        self._leader_since: Optional[float] = None
        self._registrations = Registrations({}, {}, {})
        self._next_override_expiry: Optional[float] = None
        self._refresh_pending = False
        self._loop: Optional[LoopingCall] = None
        self._stopped = False
        store.add_listener(self._state_changed)
        self._reconcile()

    # -- lifecycle ----------------------------------------------------------------

    @property
    def machine(self) -> StateMachine:
        return self._store.machine

    @property
    def config(self) -> Config:
        """The configuration the runtime judges registrations against."""
        return self._config

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener()`` whenever the records change what may be served."""
        self._listeners.append(listener)

    def start(self) -> None:
        """Apply the (loaded) state and start the expiry loop."""
        self._stopped = False
        self._reconcile()
        self._notify()
        if self._loop is None:
            self._loop = LoopingCall(self._tick)
            self._loop.clock = self._reactor
            self._loop.start(self.EXPIRY_INTERVAL, now=True).addErrback(
                lambda f: log.failure("the runtime-state expiry loop died", failure=f))

    def stop(self) -> None:
        """Stop the expiry loop (a run in progress finishes on its own)."""
        self._stopped = True
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def is_leader(self) -> bool:
        """Whether this node leads (may expire, veto, ...); False when the check itself fails."""
        try:
            return bool(self._is_leader())
        except Exception:
            log.failure("is_leader() failed; treating this node as not the leader")
            return False

    def config_changed(self, config: Config) -> None:
        """A reload swapped the configuration: re-judge which registrations are served."""
        self._config = config
        self._reconcile()

    # -- the records, read side ----------------------------------------------------

    def records(self) -> RuntimeRecords:
        """A snapshot of the records for the served policy (live mappings: valid this reactor turn)."""
        machine = self.machine
        return RuntimeRecords(overrides=machine.overrides, registrations=self._registrations.served,
                              vetoes=machine.vetoes, signals=machine.signals, last_seen=self._last_seen)

    def extra_servers(self, region: str) -> Sequence[ServerConfig]:
        """The served registrations of ``region`` as servers, in registration order."""
        return self._registrations.extra.get(region, ())

    def unclaimed_servers(self) -> Dict[ServerKey, ServerConfig]:
        """Served registrations without a claim: health-checked with their region's settings."""
        return {key: server for region, servers in self._registrations.extra.items() for server in servers
                if (key := ServerKey(region, server.address, server.port)) in self._registrations.served
                and self._registrations.served[key].get("claim") is None}

    def not_served(self, registration: Mapping[str, Any]) -> Optional[str]:
        """Why ``registration`` is not a candidate, or ``None`` when it is."""
        key = ServerKey(registration["region"], registration["address"], registration["port"])
        current = self._registrations.served.get(key)
        if current is not None and current["id"] == registration["id"]:
            return None
        return self._registrations.not_served.get(registration["id"], "not served")

    def active_override(self, region: str, address: str) -> Optional[Dict[str, Any]]:
        """The override of region/address unless it has expired (a live record: do not change it)."""
        override = self.records().override(region, address, self._reactor.seconds())
        return override  # type: ignore[return-value]

    def active_vetoes(self) -> Dict[str, Dict[str, Any]]:
        """Vetoes in force (``region/address:port`` → live record: do not change it)."""
        now = self._reactor.seconds()
        return {key: veto for key, veto in self.machine.vetoes.items()
                if veto.get("expires_at") is None or veto["expires_at"] > now}

    def claimed_servers(self) -> List[Tuple[ServerKey, ServerConfig, Dict[str, Any]]]:
        """Served registrations that carry an agent's claim, in order: (key, server, record).

        These are the servers the overwatch checks (SPEC §7.7).
        """
        result = []
        for region, servers in self._registrations.extra.items():
            for server in servers:
                key = ServerKey(region, server.address, server.port)
                registration = self._registrations.served.get(key)
                if registration is not None and registration.get("claim") is not None:
                    result.append((key, server, dict(registration)))
        return result

    def last_seen(self, registration: Mapping[str, Any]) -> float:
        """The latest heartbeat known here: replicated or only seen by this node."""
        return self.records().heard(registration)

    def expires_at(self, registration: Mapping[str, Any]) -> float:
        """When the leader expires ``registration`` if no heartbeat arrives (see the module doc)."""
        start = self.last_seen(registration)
        if self._leader_since is not None:
            start = max(start, self._leader_since)
        return start + float(registration["ttl"])

    def served_registrations(self, region: str) -> List[Dict[str, Any]]:
        """The served registrations of ``region`` (live records), in order."""
        served = self._registrations.served
        return [dict(served[ServerKey(region, s.address, s.port)]) for s in self.extra_servers(region)]

    def server_known(self, region: str, address: str) -> bool:
        """Whether ``address`` is a configured server of ``region`` or a served registration there."""
        try:
            servers = self._config.region(region).servers
        except KeyError:
            return False
        return (any(s.address == address for s in servers)
                or any(s.address == address for s in self.extra_servers(region)))

    # -- writes --------------------------------------------------------------------------

    def _propose(self, command: Command) -> "defer.Deferred[Any]":
        """Propose ``command``; fires its value, fails with Rejected or WriteFailed."""
        if not self._store.writable:
            return defer.fail(WriteFailed("runtime state cannot be written now: no leader", "not_applied"))
        try:
            d = defer.maybeDeferred(self._store.propose, command)
        except Exception as error:  # maybeDeferred catches; be safe with odd stores
            return defer.fail(WriteFailed(str(error), "not_applied"))

        def committed(result: Result) -> Any:
            if not result.get("ok"):
                raise Rejected(str(result.get("error")))
            return result.get("value")

        def not_committed(failure: Failure) -> None:
            outcome = getattr(failure.value, "outcome", "unknown")
            if outcome not in ("not_applied", "unknown"):
                outcome = "unknown"
            log.warn("runtime-state write {op} not confirmed ({outcome}): {error}", op=command.get("op"),
                     outcome=outcome, error=failure.getErrorMessage(), event="runtime_write_failed")
            raise WriteFailed(f"the write was not confirmed: {failure.getErrorMessage()}", outcome)

        d.addCallbacks(committed, not_committed)
        return d

    def set_override(self, region: str, address: str, weight: Optional[int],
                     enabled: Optional[bool], reason: str, ttl: Optional[float]
                     ) -> "defer.Deferred[Dict[str, Any]]":
        """Replace the override of region/address; fires the stored record."""
        now = self._reactor.seconds()
        command = {"op": "override.set", "region": region, "address": address, "weight": weight,
                   "enabled": enabled, "reason": reason, "at": now,
                   "expires_at": None if ttl is None else now + ttl}

        def done(record: Dict[str, Any]) -> Dict[str, Any]:
            log.info("override of {server} in {region}: weight {weight}, enabled {enabled} "
                     "({reason})", server=address, region=region, weight=weight, enabled=enabled,
                     reason=reason, event="override_set")
            return record

        return self._propose(command).addCallback(done)

    def delete_override(self, region: str, address: str) -> "defer.Deferred[Dict[str, Any]]":
        """Remove the override of region/address; fires the removed record, NotFound when none."""
        if server_key(region, address) not in self.machine.overrides:
            return defer.fail(NotFound(f"no override for {address} in region {region}"))

        def done(record: Dict[str, Any]) -> Dict[str, Any]:
            log.info("override of {server} in {region} removed", server=address, region=region,
                     event="override_deleted")
            return record

        d = self._propose({"op": "override.delete", "region": region, "address": address})
        return d.addCallbacks(done, _not_found_if_rejected(
            f"no override for {address} in region {region}"))

    def register(self, region: str, address: str, port: int, weight: int, ttl: float,
                 healthy: Optional[bool], agent: Optional[str]
                 ) -> "defer.Deferred[Tuple[Dict[str, Any], bool]]":
        """Register (or re-register) a server; fires ``(record, created)``.

        The same region+address+port keeps its id; a new one gets a fresh
        id chosen here, before proposing.
        """
        existing = self.machine.find_registration(region, address, port)
        rid = existing["id"] if existing is not None else self._id_factory()
        now = self._reactor.seconds()
        command = {"op": "service.register", "id": rid, "region": region, "address": address,
                   "port": port, "weight": weight, "ttl": ttl, "healthy": healthy, "agent": agent,
                   "at": now}

        def done(value: Dict[str, Any]) -> Tuple[Dict[str, Any], bool]:
            created = bool(value.pop("created", False))
            self._last_seen[value["id"]] = now
            if created:
                log.info("registered {server}:{port} in {region} (id {id}, ttl {ttl:g}s, agent {agent})",
                         server=address, port=port, region=region, id=value["id"], ttl=ttl,
                         agent=agent, event="service_registered")
            record = self.machine.registrations.get(value["id"], value)
            return record, created

        return self._propose(command).addCallback(done)

    def heartbeat(self, rid: str, healthy: Optional[bool], signal: Optional[Dict[str, Any]]
                  ) -> "defer.Deferred[Dict[str, Any]]":
        """Record a heartbeat carrying the claim ``healthy`` (``None``: no claim) and ``signal``.

        Proposed only when the claim or the signal changes or the replicated
        last heartbeat is older than ttl/3; fires the registration record;
        NotFound for an unknown id.
        """
        registration = self.machine.registrations.get(rid)
        if registration is None:
            return defer.fail(NotFound(f"no registration {rid}"))
        now = self._reactor.seconds()
        self._last_seen[rid] = max(now, self._last_seen.get(rid, _never()))
        changed = registration.get("claim") != healthy or self._signal_changes(registration, signal)
        replicated = max(float(registration["last_heartbeat"]), self._refresh_proposed.get(rid, _never()))
        if not changed and now - replicated < float(registration["ttl"]) * self.REFRESH_FRACTION:
            return defer.succeed(registration)
        command: Command = {"op": "service.heartbeat", "id": rid, "at": now, "healthy": healthy}
        first: Optional[Command] = None  # a back-dated signal.set, proposed before the heartbeat
        if signal is not None:
            command["signal"] = self._signal_command(signal)
            first = self._continued_bleed(registration, command["signal"], now)
            if first is not None:
                del command["signal"]
        self._refresh_proposed[rid] = now

        def failed(failure: Failure) -> Failure:
            if self._refresh_proposed.get(rid) == now:
                del self._refresh_proposed[rid]
            return failure

        claim_changed = registration.get("claim") != healthy
        signal_changed = self._signal_changes(registration, signal)

        def done(_: Any) -> Dict[str, Any]:
            server = f"{registration['address']}:{registration['port']}"
            if claim_changed:
                log.info("registration {id} ({server}) now claims {claim}", id=rid, server=server,
                         claim={True: "healthy", False: "unhealthy", None: "nothing"}[healthy],
                         event="service_claim")
            if signal_changed and signal is not None:
                self._log_signal(rid, server, registration["region"], signal)
            return self.machine.registrations.get(rid, registration)

        if first is None:
            d = self._propose(command)
        else:
            d = self._propose(first).addCallback(lambda _: self._propose(command))
        d.addErrback(failed)
        return d.addCallbacks(done, _not_found_if_rejected(f"no registration {rid}"))

    def deregister(self, rid: str) -> "defer.Deferred[Dict[str, Any]]":
        """Remove a registration; fires the removed record, NotFound for an unknown id."""
        if rid not in self.machine.registrations:
            return defer.fail(NotFound(f"no registration {rid}"))

        def done(record: Dict[str, Any]) -> Dict[str, Any]:
            log.info("deregistered {id} ({server}:{port} in {region})", id=rid,
                     server=record["address"], port=record["port"], region=record["region"],
                     event="service_deregistered")
            return record

        d = self._propose({"op": "service.deregister", "id": rid})
        return d.addCallbacks(done, _not_found_if_rejected(f"no registration {rid}"))

    def _signal_changes(self, registration: Dict[str, Any], signal: Optional[Dict[str, Any]]) -> bool:
        if signal is None:
            return False
        current = self.machine.signals.get(
            server_key(registration["region"], registration["address"], registration["port"]))
        active = current is not None and current.get("cleared_at") is None
        if signal.get("type") == "clear":
            return active
        return not active or current is None or current.get("reason") != signal.get("reason")

    def _log_signal(self, rid: str, server: str, region: str, signal: Dict[str, Any]) -> None:
        """Log a bleed or clear that was just replicated (SPEC §11: bleeds are logged)."""
        settings = self._config.cluster.predictive_health
        applied = "" if settings.enabled else " (ignored: cluster.predictive_health.enabled is false)"
        if signal.get("type") == "bleed":
            entry = getattr(settings, SIGNAL_SETTINGS.get(str(signal.get("reason")), "cpu"))
            log.info("{server} in {region} asks to be bled: {reason} ({value:g} > {threshold:g}); "
                     "weight down to 5% over {duration:g}s{applied}", server=server, region=region,
                     id=rid, reason=signal.get("reason"), value=float(signal.get("value") or 0.0),
                     threshold=float(signal.get("threshold") or 0.0),
                     duration=float(entry.bleed_duration), applied=applied, event="predictive_bleed")
        else:
            log.info("{server} in {region} cleared its bleed signal: weight back up{applied}",
                     server=server, region=region, id=rid, applied=applied, event="predictive_clear")

    def _continued_bleed(self, registration: Dict[str, Any], signal: Dict[str, Any],
                         now: float) -> Optional[Command]:
        """A ``signal.set`` that starts a new bleed where the current ramp stands, or ``None``.

        A bleed that replaces another one (a new reason) or follows a clear
        whose ramp back is not finished would restart the drain at 1.0: a
        step.  Instead its ``since`` is back-dated so the drain continues
        from the factor reached now (:func:`continuing_since`).  ``None``
        when no ramp is under way (the heartbeat then carries the signal).
        """
        if signal.get("type") != "bleed" or not self._signal_changes(registration, signal):
            return None
        key = server_key(registration["region"], registration["address"], registration["port"])
        reached = bleed_state(self.machine.signals.get(key), now).factor
        if reached >= 1.0:
            return None
        duration = float(signal["bleed_duration"])
        return {"op": "signal.set", "region": registration["region"],
                "address": registration["address"], "port": registration["port"],
                "reason": signal["reason"], "value": signal["value"],
                "threshold": signal["threshold"], "bleed_duration": duration,
                "at": continuing_since(reached, duration, now)}

    def set_veto(self, key: ServerKey, reason: str) -> "defer.Deferred[Any]":
        """Replicate a veto of ``key`` (the overwatch, on the leader); fires the stored record."""
        return self._propose({"op": "veto.set", "region": key.region, "address": key.address,
                              "port": key.port, "reason": reason, "at": self._reactor.seconds()})

    def clear_veto(self, key: ServerKey) -> "defer.Deferred[Any]":
        """Replicate the lifting of ``key``'s veto; fires the removed record (``None`` if none)."""
        return self._propose({"op": "veto.clear", "region": key.region, "address": key.address,
                              "port": key.port})

    def _signal_command(self, signal: Dict[str, Any]) -> Dict[str, Any]:
        """A heartbeat's signal as the command carries it (with the configured bleed duration)."""
        if signal.get("type") != "bleed":
            return {"type": "clear"}
        settings = self._config.cluster.predictive_health
        entry = getattr(settings, SIGNAL_SETTINGS.get(str(signal.get("reason")), "cpu"))
        return {"type": "bleed", "reason": signal.get("reason"), "value": signal.get("value"),
                "threshold": signal.get("threshold"), "bleed_duration": entry.bleed_duration}

    # -- reacting to the store ------------------------------------------------------------

    def _state_changed(self) -> None:
        if not self._refresh_pending:
            self._refresh_pending = True
            self._reactor.callLater(0, self._refresh)

    def _refresh(self) -> None:
        self._refresh_pending = False
        self._reconcile()
        self._notify()

    def _notify(self) -> None:
        for listener in self._listeners:
            try:
                listener()
            except Exception:
                log.failure("a runtime-state listener failed")

    def _reconcile(self) -> None:
        """Recompute which registrations are served (logging newly unserved ones) and the next expiry."""
        registrations = served_registrations(self._config, (r for _, r in registration_servers(self.machine)))
        for rid, why in registrations.not_served.items():
            if self._registrations.not_served.get(rid) != why:
                log.warn("registration {id} is not served: {why}", id=rid, why=why, event="service_not_served")
        self._registrations = registrations
        known = set(self.machine.registrations)
        for table in (self._last_seen, self._refresh_proposed):
            for rid in [r for r in table if r not in known]:
                del table[rid]
        expiries = [o["expires_at"] for o in self.machine.overrides.values()
                    if o.get("expires_at") is not None]
        self._next_override_expiry = min(expiries) if expiries else None


    # -- the expiry loop ---------------------------------------------------------------------

    def _tick(self) -> "defer.Deferred[Any]":
        """One run of the expiry loop; never fails (errors are logged)."""
        now = self._reactor.seconds()
        try:
            leader = bool(self._is_leader())
        except Exception:
            log.failure("is_leader() failed; treating this node as not the leader")
            leader = False
        if leader and self._leader_since is None:
            self._leader_since = now
            if self.machine.registrations:
                log.info("leading: {count} registrations get one ttl of grace from now",
                         count=len(self.machine.registrations), event="runtime_leader")
        elif not leader:
            self._leader_since = None
        if self._next_override_expiry is not None and self._next_override_expiry <= now:
            # The override stopped counting now, whoever proposes its removal.
            self._next_override_expiry = None
            self._notify()
        if not leader or self._stopped or not self._store.writable:
            return defer.succeed(None)
        proposals: List["defer.Deferred[Any]"] = []
        expired = [rid for rid, registration in self.machine.registrations.items()
                   if self.expires_at(registration) <= now]
        if expired:
            for rid in expired:
                registration = self.machine.registrations[rid]
                log.info("registration {id} ({server}:{port} in {region}) expired: no heartbeat "
                         "for {ttl:g}s", id=rid, server=registration["address"],
                         port=registration["port"], region=registration["region"],
                         ttl=float(registration["ttl"]), event="service_expired")
            proposals.append(self._propose({"op": "service.expire", "at": now, "ids": expired}))
        if any(o.get("expires_at") is not None and o["expires_at"] <= now
               for o in self.machine.overrides.values()):
            proposals.append(self._propose({"op": "override.expire", "at": now}))
        if not proposals:
            return defer.succeed(None)

        def logged(failure: Failure) -> None:
            log.warn("runtime-state expiry not committed: {error}", error=failure.getErrorMessage(),
                     event="runtime_expiry_failed")

        return defer.DeferredList([p.addErrback(logged) for p in proposals])


def _not_found_if_rejected(message: str) -> Callable[[Failure], Failure]:
    """An errback turning a Rejected (the thing vanished meanwhile) into NotFound."""

    def convert(failure: Failure) -> Failure:
        if failure.check(Rejected):
            return Failure(NotFound(message))
        return failure

    return convert
