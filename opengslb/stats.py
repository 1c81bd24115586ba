"""Plain counters the hot paths bump, read by the metrics at scrape time.

Nothing here touches prometheus_client: a query or a health check costs a
dict update or a bisect, and :mod:`opengslb.metrics` turns the numbers into
metric families only when Prometheus scrapes.  Everything runs on the
reactor thread, so there is no locking.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Sequence

__all__ = ["CHECK_DURATION_BOUNDS", "QUERY_DURATION_BOUNDS", "DurationHistogram", "QueryStats"]

CHECK_DURATION_BOUNDS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Health check duration buckets (seconds): checks are bounded by their timeout."""

QUERY_DURATION_BOUNDS: tuple[float, ...] = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
"""DNS query duration buckets (seconds): parse, answer, encode, send."""


class DurationHistogram:
    """A fixed-bucket histogram fed from the reactor thread.

    ``counts[i]`` counts observations ``<= bounds[i]`` (and above the previous
    bound); the last slot counts the rest (``+Inf``).  Counts are per bucket,
    not cumulative; ``sum`` is the total of all observations.
    """

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Record one observation (one bisect, two additions)."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value


class QueryStats:
    """What the DNS side counts per query; the metrics read it at scrape time.

    Keys are tuples of label values, so a query costs two dict updates and
    no Prometheus child lookups.  ``durations`` is the query-duration
    histogram (seconds, bounds :data:`QUERY_DURATION_BOUNDS`);
    :meth:`observe_duration` records into it.
    """

    DURATION_BOUNDS: tuple[float, ...] = QUERY_DURATION_BOUNDS

    def __init__(self) -> None:
        self.queries: dict[tuple[str, str, str], int] = {}
        self.routing: dict[tuple[str, str, str], int] = {}
        self.stale: dict[str, int] = {}
        self.all_down: dict[tuple[str, str], int] = {}
        self.ecs_queries = 0  # queries carrying an EDNS Client Subnet option
        self.durations = DurationHistogram(self.DURATION_BOUNDS)
        #: Record how long answering one query took, in seconds (the histogram's own method).
        self.observe_duration = self.durations.observe

    def count_query(self, domain: str, qtype: str, status: str) -> None:
        """Count one answered query under (domain, query type, status)."""
        key = (domain, qtype, status)
        self.queries[key] = self.queries.get(key, 0) + 1

    def count_routing(self, domain: str, algorithm: str, server: str) -> None:
        """Count one routing decision under (domain, algorithm, chosen server)."""
        key = (domain, algorithm, server)
        self.routing[key] = self.routing.get(key, 0) + 1

    def count_all_down(self, domain: str, policy: str) -> None:
        """Count one answer made by the domain's ``when_all_down`` policy."""
        key = (domain, policy)
        self.all_down[key] = self.all_down.get(key, 0) + 1

    def count_stale(self, domain: str) -> None:
        """Count one answer given with the last healthy address."""
        self.stale[domain] = self.stale.get(domain, 0) + 1
