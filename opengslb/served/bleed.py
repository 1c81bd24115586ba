"""The bleed ramp of predictive health (SPEC §7.6): pure functions of (signal record, now).

Part of the served policy (:mod:`opengslb.served`): standalone and cluster
mode both use it.

An agent that sees its host running hot sends a ``bleed`` signal; the state
machine keeps one signal record per server (``region/address:port``)::

    {"reason", "value", "threshold", "bleed_duration", "since", "cleared_at"}

``since`` is when the current bleed began and ``cleared_at`` when the agent
sent ``clear`` (``None`` while the bleed is active).  From that record and
the time, :func:`bleed_state` gives the multiplier of the server's weight:

* **Draining** (active bleed): from 1.0 at ``since`` down to :data:`FLOOR`
  (0.05) at ``since + bleed_duration``, then it stays there (**drained**).
* **Restoring** (after ``clear``): from whatever factor the drain had
  reached at ``cleared_at`` back up to 1.0 over another ``bleed_duration``,
  then **restored** (1.0).

The ramp is a cosine ease (slow at both ends, :func:`ease`) or linear; the
factor is a continuous function of time in every case, so effective weights
never jump.  A new bleed that starts while a ramp is still under way would
restart at 1.0 from its ``since``; the proposer avoids that step by
back-dating ``since`` with :func:`continuing_since`, so the new drain picks up
at the factor reached so far.

Everything here is deterministic and reads no clock: the caller passes ``now``
(``reactor.seconds()``), and every node computing it from the same replicated
record gets the same factor.  A record from a proposer whose clock runs ahead
(``since`` in the future) counts as just begun.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional

__all__ = [
    "COSINE",
    "DISABLED",
    "FLOOR",
    "LINEAR",
    "NO_BLEED",
    "BleedState",
    "bleed_factor",
    "bleed_state",
    "bleeding_servers",
    "served_bleed",
    "continuing_since",
    "drain_factor",
    "ease",
    "ease_inverse",
]

#: The factor a fully bled server keeps: 5% of its weight (SPEC §7.6: "≤ 5% of base").
FLOOR = 0.05
#: Ramp shapes.
COSINE = "cosine"
LINEAR = "linear"

_EPSILON = 1e-9


@dataclass(frozen=True)
class BleedState:
    """Where a server's bleed ramp stands at one moment.

    ``factor``: the weight multiplier, :data:`FLOOR` to 1.0.
    ``phase``: ``"none"`` (no signal record), ``"draining"``, ``"drained"``
    (at the floor, bleed still active), ``"restoring"`` or ``"restored"``
    (back at 1.0 after a clear).
    ``ramp_ends_at``: when the ramp in progress reaches its end (``None``
    unless draining or restoring).
    """

    factor: float
    phase: str
    ramp_ends_at: Optional[float] = None

    @property
    def ramping(self) -> bool:
        """Whether the factor is still changing."""
        return self.phase in ("draining", "restoring")

    @property
    def drained(self) -> bool:
        """Whether the server is fully bled (at the floor with the bleed still active)."""
        return self.phase == "drained"

    @property
    def bleeding(self) -> bool:
        """Whether the factor is below 1.0 (draining, drained or restoring)."""
        return self.factor < 1.0


#: The state of a server without a signal record.
NO_BLEED = BleedState(1.0, "none")
#: The state of a server whose signal is ignored (``cluster.predictive_health.enabled`` is false).
DISABLED = BleedState(1.0, "disabled")


def ease(x: float, shape: str = COSINE) -> float:
    """A monotonic ramp from 0 at ``x <= 0`` to 1 at ``x >= 1``.

    ``cosine``: ``(1 - cos(pi x)) / 2`` (slow start and end); ``linear``: ``x``.
    """
    x = min(1.0, max(0.0, x))
    if shape == LINEAR:
        return x
    return (1.0 - math.cos(math.pi * x)) / 2.0


def ease_inverse(y: float, shape: str = COSINE) -> float:
    """The ``x`` in [0, 1] with ``ease(x) == y`` (``y`` clamped to [0, 1])."""
    y = min(1.0, max(0.0, y))
    if shape == LINEAR:
        return y
    return math.acos(1.0 - 2.0 * y) / math.pi


def drain_factor(elapsed: float, duration: float, floor: float = FLOOR, shape: str = COSINE) -> float:
    """The factor ``elapsed`` seconds into a drain of ``duration`` seconds (1.0 → ``floor``).

    A zero duration drains at once.
    """
    if elapsed <= 0.0:
        return 1.0
    if duration <= 0.0 or elapsed >= duration:
        return floor
    return 1.0 - (1.0 - floor) * ease(elapsed / duration, shape)


def bleed_state(record: Optional[Mapping[str, Any]], now: float, floor: float = FLOOR,
                shape: str = COSINE) -> BleedState:
    """The ramp of one server's signal ``record`` (a state-machine signal, or ``None``) at ``now``."""
    if record is None:
        return NO_BLEED
    duration = max(0.0, float(record.get("bleed_duration") or 0.0))
    since = float(record["since"])
    cleared = record.get("cleared_at")
    # Phases end by comparing ``now`` with the end time itself (not elapsed with the
    # duration), so that at ``now == ramp_ends_at`` the ramp is over, whatever the rounding.
    if cleared is None:
        end = since + duration
        if now >= end:
            return BleedState(floor, "drained")
        return BleedState(drain_factor(now - since, duration, floor, shape), "draining", end)
    cleared = max(float(cleared), since)
    reached = drain_factor(cleared - since, duration, floor, shape)
    end = cleared + duration
    if now >= end or reached >= 1.0:
        return BleedState(1.0, "restored")
    elapsed = now - cleared
    if elapsed <= 0.0:
        return BleedState(reached, "restoring", end)
    factor = reached + (1.0 - reached) * ease(elapsed / duration, shape)
    return BleedState(factor, "restoring", end)


def bleed_factor(record: Optional[Mapping[str, Any]], now: float, floor: float = FLOOR,
                 shape: str = COSINE) -> float:
    """Just the factor of :func:`bleed_state`."""
    return bleed_state(record, now, floor, shape).factor


def continuing_since(factor: float, duration: float, now: float, floor: float = FLOOR,
                     shape: str = COSINE) -> float:
    """The ``since`` for a new bleed of ``duration`` that should be at ``factor`` at ``now``.

    Used when a bleed (re)starts while the server's factor is below 1.0 (a
    clear was still being ramped back, or the reason changed): back-dating
    the start by the time a drain needs to reach ``factor`` continues the
    ramp from there instead of jumping back to 1.0.  A factor of 1.0 gives
    ``now``; a factor at or below the floor gives ``now - duration``.
    """
    if factor >= 1.0 - _EPSILON or duration <= 0.0:
        return now
    if factor <= floor + _EPSILON:
        return now - duration
    progress = ease_inverse((1.0 - factor) / (1.0 - floor), shape)
    return now - progress * duration


def served_bleed(enabled: bool, record: Optional[Mapping[str, Any]], now: float) -> BleedState:
    """The bleed a server is served with: :data:`NO_BLEED` without a signal ``record``,
    :data:`DISABLED` (factor 1.0) when predictive health is not ``enabled``, else
    :func:`bleed_state` of the record at ``now``."""
    if record is None:
        return NO_BLEED
    if not enabled:
        return DISABLED
    return bleed_state(record, now)


def bleeding_servers(enabled: bool, records: Iterable[Mapping[str, Any]], now: float) -> int:
    """How many of the signal ``records`` have a factor below 1.0 at ``now`` (0 when not ``enabled``)."""
    if not enabled:
        return 0
    return sum(1 for record in records if bleed_state(record, now).bleeding)
