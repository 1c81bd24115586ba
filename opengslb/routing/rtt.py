"""Round-trip times measured by this node's health checks, smoothed per server.

:class:`LatencyTable` keeps an exponentially weighted moving average (EWMA)
of each server's successful health-check durations and, per (domain,
family), the server the ``latency`` algorithm answers now (so its hysteresis
survives view rebuilds).  The core feeds it from every finished check.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Tuple

__all__ = ["DEFAULT_ALPHA", "LatencyTable", "ServerId"]

#: Weight of the newest measurement in the moving average.
DEFAULT_ALPHA = 0.3

ServerId = Tuple[str, str, int]  # (region, address, port)


class LatencyTable:
    """Smoothed round-trip times per server, and each domain's current latency choice."""

    def __init__(self, alpha: float = DEFAULT_ALPHA) -> None:
        self.alpha = alpha
        self._rtt: Dict[ServerId, float] = {}
        self.current: Dict[Any, ServerId] = {}  # (domain, family) -> the server answered now
        self.version = 0  # bumped by every measurement

    def record(self, region: str, address: str, port: int, seconds: float) -> None:
        """Add one successful check's duration (seconds) to the server's average."""
        key = (region, address, port)
        old = self._rtt.get(key)
        self._rtt[key] = seconds if old is None else old + self.alpha * (seconds - old)
        self.version += 1

    def rtt(self, region: str, address: str, port: int) -> Optional[float]:
        """The server's smoothed round-trip time in seconds, or None before its first success."""
        return self._rtt.get((region, address, port))

    def of(self, candidate: Any) -> float:
        """The smoothed RTT of a routing candidate (infinite before its first success)."""
        found = self._rtt.get((candidate.region, candidate.address, candidate.port))
        return math.inf if found is None else found
