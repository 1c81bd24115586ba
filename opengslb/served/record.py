"""The served record: what the policy decided about one server, and why."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

from opengslb.dns.view import ServedState
from opengslb.served.bleed import NO_BLEED, BleedState
from opengslb.served.slow_start import RampClock

__all__ = ["Served"]


@dataclass(frozen=True)
class Served(ServedState):
    """One server as DNS serves it now (a :class:`~opengslb.dns.view.ServedState` with the reasons).

    From :class:`ServedState`: ``healthy`` (served healthy), ``weight`` (the
    effective weight: base or override weight × bleed factor × slow-start
    factor), ``last_healthy`` (when last seen healthy), ``drained`` (fully
    bled: failover passes it over).

    ``base``: the configured or registered weight; ``source``: where the
    weight before the factors comes from (``"config"``, ``"registration"``
    or ``"override"``); ``judged_by``: ``"check"`` (health checks, combined
    across nodes in cluster mode) or ``"claim"`` (the agent's claim);
    ``reasons``: one line per input that shaped the decision, in the order
    applied; ``bleed``: the predictive-health ramp; ``slow_start``: the
    slow-start factor (1.0 when not ramping); ``ramp``: the slow-start clock
    after this decision (the caller keeps it for the next one);
    ``ramp_ends_at``: when the earliest ramp in progress (bleed or slow
    start) ends, ``None`` when the weight is not changing on its own.
    """

    base: int = 0
    source: str = "config"
    judged_by: str = "check"
    reasons: Tuple[str, ...] = ()
    bleed: BleedState = NO_BLEED
    slow_start: float = 1.0
    ramp: RampClock = RampClock(True)
    ramp_ends_at: Optional[float] = None
