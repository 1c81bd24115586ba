"""Slow start (SPEC §4.1): a server that becomes eligible ramps from 10% to 100% of its weight.

A region's ``slow_start`` (seconds, 0 = off) is the window.  A server becomes
*eligible* when it is served healthy with a weight above zero: it turns
healthy, or a drain override (``weight: 0`` or ``enabled: false``) is lifted.
From that moment its effective weight is multiplied by :func:`ramp_factor`,
which rises linearly from :data:`START` (0.1) to 1.0 over the window.

The ramp's start is remembered per server in a :class:`RampClock`.  The
served policy is a pure function, so the clock is both an input (the one
from the previous decision) and an output (:func:`next_clock`); the caller
keeps the latest one.  A server seen for the first time (at start-up, after a
reload that adds it, a new registration) starts without a ramp: only a
transition from not eligible to eligible starts one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

__all__ = ["START", "RampClock", "next_clock", "ramp_ends_at", "ramp_factor"]

#: The factor a ramp starts at.
START = 0.1


@dataclass(frozen=True)
class RampClock:
    """Where one server's slow start stands.

    ``eligible``: served healthy with a weight above zero at the last
    decision; ``since``: when the ramp in progress began (``None``: none).
    """

    eligible: bool
    since: Optional[float] = None


def next_clock(previous: Optional[RampClock], eligible: bool, window: float, now: float) -> RampClock:
    """The clock after a decision at ``now`` that found the server ``eligible`` (or not).

    A ramp starts when ``previous`` says not eligible and the server is now;
    it is forgotten once over (``now >= since + window``) or when the server
    stops being eligible.  No ``previous`` (first sighting) or a zero window
    never starts one.
    """
    if not eligible:
        return RampClock(False)
    if previous is None or window <= 0.0:
        return RampClock(True)
    if not previous.eligible:
        return RampClock(True, now)
    if previous.since is not None and now < previous.since + window:
        return previous
    return RampClock(True)


def ramp_factor(clock: Optional[RampClock], window: float, now: float) -> float:
    """The weight multiplier of ``clock`` at ``now``: :data:`START` at the ramp's start, 1.0 at its end.

    Linear in between; 1.0 without a ramp in progress or with a zero window.
    """
    if clock is None or clock.since is None or window <= 0.0:
        return 1.0
    progress = (now - clock.since) / window
    if progress >= 1.0:
        return 1.0
    return START + (1.0 - START) * max(0.0, progress)


def ramp_ends_at(clock: Optional[RampClock], window: float) -> Optional[float]:
    """When the ramp in progress reaches 100% (``None`` when there is none)."""
    if clock is None or clock.since is None or window <= 0.0:
        return None
    return clock.since + window
