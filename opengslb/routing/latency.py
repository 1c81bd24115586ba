"""latency: the eligible server with the lowest smoothed health-check round-trip time.

:class:`LatencyTable` keeps, per server, an exponentially weighted moving
average (EWMA) of the durations of its *successful* health checks as this
node measured them (failed checks say nothing about speed; a timed-out
check is a failure).  In cluster mode the serving leader answers, so its own
measurements steer — the round-trip times from the node that answers DNS,
not an average over vantage points that do not.

The picker answers the current choice until another eligible server is
faster by the current server's region ``latency_hysteresis`` (20% by
default): the best's EWMA must be below ``(1 - hysteresis) × current``.  So
two servers a few percent apart do not make answers flap.  The current
choice is kept in the table per (domain, family), so it survives view
rebuilds.  A server never measured yet counts as infinitely slow (it is
answered only when no measured server is eligible).  The choice is
re-evaluated only when a measurement arrived since the last query, so a
query costs one integer comparison.
"""

from __future__ import annotations

import random
from typing import Any, Mapping, Optional, Sequence

from opengslb.routing.base import Candidate, EmptyPicker, Picker, RoutingContext, eligible
from opengslb.routing.rtt import DEFAULT_ALPHA, LatencyTable, ServerId

__all__ = ["DEFAULT_ALPHA", "Latency", "LatencyTable"]


def _id(candidate: Candidate) -> ServerId:
    return (candidate.region, candidate.address, candidate.port)


class _LatencyPicker:
    client_aware = False

    def __init__(self, pool: Sequence[Candidate], table: LatencyTable, key: Any,
                 hysteresis: Mapping[str, float]) -> None:
        self._pool = tuple(pool)
        self._table = table
        self._key = key
        self._hysteresis = hysteresis
        self._seen = -1
        self._choice: Optional[Candidate] = None

    def _decide(self) -> Candidate:
        table = self._table
        best = min(self._pool, key=lambda c: (table.of(c), c.order))
        current_id = table.current.get(self._key)
        current = next((c for c in self._pool if _id(c) == current_id), None)
        if current is None or current is best:
            return best
        margin = self._hysteresis.get(current.region, 20.0) / 100.0
        return best if table.of(best) < table.of(current) * (1.0 - margin) else current

    def pick(self) -> Optional[Candidate]:
        if self._seen != self._table.version:
            self._choice = self._decide()
            self._table.current[self._key] = _id(self._choice)
            self._seen = self._table.version
        return self._choice

    def peek(self) -> Optional[Candidate]:
        if self._seen == self._table.version:
            return self._choice
        return self._decide()

    def ranking(self, first: Candidate) -> Sequence[Candidate]:
        """The other eligible servers, fastest first (further addresses of a multi-value answer)."""
        table = self._table
        return sorted((c for c in self._pool if c != first), key=lambda c: (table.of(c), c.order))


class Latency:
    """Lowest smoothed health-check round-trip time, with hysteresis."""

    name = "latency"

    def prepare(self, candidates: Sequence[Candidate], rng: random.Random,
                context: Optional[RoutingContext] = None) -> Picker:
        pool = eligible(candidates)
        if not pool:
            return EmptyPicker()
        context = context if context is not None else RoutingContext()
        table = context.latency if context.latency is not None else LatencyTable()
        domain = context.domain.name if context.domain is not None else ""
        return _LatencyPicker(pool, table, (domain, context.family), context.hysteresis)
