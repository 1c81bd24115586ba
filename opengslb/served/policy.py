"""Who gets served: the one function from the inputs to a server's :class:`Served` record.

:func:`served` is pure: it reads only its arguments (no clock, no I/O), so
the answering view, the API and the metrics all get the same answer for the
same inputs, and tests can drive it with plain values.  The inputs
(:class:`Inputs`) are snapshots:

* ``config`` — the configuration (weights, regions' ``slow_start``,
  ``cluster.predictive_health.enabled``);
* ``own`` — this node's check verdicts (``healthy``, ``last_healthy`` per
  checked server; a configured server not checked yet is served healthy);
* ``peers`` — the other nodes' fresh verdicts and ``cluster.health_consensus``
  (:class:`~opengslb.served.consensus.PeerVerdicts`; standalone: none);
* ``records`` — overrides, served registrations, vetoes, bleed signals
  (:class:`~opengslb.served.records.RuntimeRecords`);
* ``ramps`` — every server's slow-start clock from the previous decision;
* ``now`` — the reactor's time.

The decision, in order:

1. **Health.** A server registered with an agent's claim is judged by the
   claim (healthy since its last heartbeat, or unhealthy).  Any other server
   is judged by the checks: this node's verdict combined with the peers'
   by the consensus mode; a configured server not checked yet is healthy, a
   claimless registration not checked yet is not.  An active veto makes it
   unhealthy.
2. **Weight.** The base weight (configured or registered); an active
   override replaces it (``enabled: false`` → 0); times the bleed factor
   (SPEC §7.6, only with ``predictive_health.enabled``).
3. **Slow start.** A server that just became eligible (healthy, weight above
   zero) ramps from 10% to 100% over its region's ``slow_start``
   (:mod:`opengslb.served.slow_start`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Mapping, Optional, Protocol

from opengslb.config.model import Config, ServerConfig
from opengslb.health.tracker import ServerKey
from opengslb.served.bleed import served_bleed
from opengslb.served.consensus import NO_PEERS, PeerVerdicts
from opengslb.served.record import Served
from opengslb.served.records import NO_RECORDS, RuntimeRecords
from opengslb.served.slow_start import RampClock, next_clock, ramp_ends_at, ramp_factor

__all__ = ["Inputs", "Verdict", "served"]


class Verdict(Protocol):
    """This node's verdict on one server (:class:`~opengslb.health.tracker.ServerHealth` is one)."""

    @property
    def healthy(self) -> bool:
        """The check verdict after thresholds."""

    @property
    def last_healthy(self) -> Optional[float]:
        """When the server was last seen healthy (``None``: never)."""


@dataclass(frozen=True)
class Inputs:
    """Snapshots of everything the served policy depends on (see the module docstring)."""

    config: Config
    own: Mapping[ServerKey, Verdict] = field(default_factory=dict)
    peers: PeerVerdicts = NO_PEERS
    records: RuntimeRecords = NO_RECORDS
    ramps: Mapping[ServerKey, RampClock] = field(default_factory=dict)
    now: float = 0.0


def served(inputs: Inputs, region: str, server: ServerConfig) -> Served:
    """The :class:`Served` record of ``server`` (configured, or a served registration) in ``region``.

    ``server.weight`` is its base weight.  Never raises for a server the
    configuration does not know (its region's slow start is then 0).
    """
    key = ServerKey(region, server.address, server.port)
    now = inputs.now
    reasons: List[str] = []

    # 1. health
    own = inputs.own.get(key)
    registration = inputs.records.registrations.get(key)
    claim = registration.get("claim") if registration is not None else None
    last_healthy: Optional[float]
    if claim is not None:
        judged_by = "claim"
        healthy = bool(claim)
        last_healthy = inputs.records.heard(registration) if healthy else None  # type: ignore[arg-type]
        reasons.append(f"the agent claims {'healthy' if healthy else 'unhealthy'}")
    else:
        judged_by = "check"
        if own is None:
            healthy = registration is None  # configured: healthy until checked; registered: not
            last_healthy = None
            reasons.append("not checked yet: " + ("served healthy" if healthy else "unhealthy until its "
                                                                                      "first passing check"))
        else:
            healthy, last_healthy = own.healthy, own.last_healthy
            reasons.append(f"own check: {'healthy' if healthy else 'unhealthy'}")
            if inputs.peers.mode != "leader":
                votes = inputs.peers.votes(key)
                combined = inputs.peers.served(key, healthy)
                if votes:
                    up = sum(1 for vote in votes if vote) + (1 if own.healthy else 0)
                    reasons.append(f"{inputs.peers.mode} of {len(votes) + 1} nodes ({up} healthy): "
                                   f"{'healthy' if combined else 'unhealthy'}")
                if combined is not None:
                    healthy = combined
    veto = inputs.records.veto(key, now)
    if veto is not None:
        healthy = False
        reasons.append(f"vetoed: {veto.get('reason', '')}")

    # 2. weight
    base = int(server.weight)
    weight = float(base)
    source = "config" if registration is None else "registration"
    override = inputs.records.override(region, server.address, now)
    if override is not None:
        why = override.get("reason", "")
        if override.get("enabled") is False:
            weight, source = 0.0, "override"
            reasons.append(f"override: disabled ({why})")
        elif override.get("weight") is not None:
            weight, source = float(override["weight"]), "override"
            reasons.append(f"override: weight {override['weight']} ({why})")
    bleed = served_bleed(inputs.config.cluster.predictive_health.enabled, inputs.records.signal(key), now)
    if bleed.bleeding:
        reasons.append(f"predictive bleed: {bleed.phase}, factor {bleed.factor:.3f}")
    weight *= bleed.factor

    # 3. slow start
    region_config = inputs.config.regions_by_name.get(region)
    window = float(region_config.slow_start) if region_config is not None else 0.0
    ramp = next_clock(inputs.ramps.get(key), healthy and weight > 0.0, window, now)
    factor = ramp_factor(ramp, window, now)
    if factor < 1.0:
        reasons.append(f"slow start: {factor:.0%} of its weight")
    weight *= factor

    ends = [end for end in (bleed.ramp_ends_at if bleed.ramping else None, ramp_ends_at(ramp, window))
            if end is not None]
    return Served(healthy=healthy, weight=weight, last_healthy=last_healthy, drained=bleed.drained,
                  base=base, source=source, judged_by=judged_by, reasons=tuple(reasons), bleed=bleed,
                  slow_start=factor, ramp=ramp, ramp_ends_at=min(ends) if ends else None)
