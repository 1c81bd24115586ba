"""The one ordered registry of routing algorithms, by configuration name."""

from __future__ import annotations

from typing import Dict

from opengslb.routing.base import Algorithm
from opengslb.routing.consistent_hash import ConsistentHash
from opengslb.routing.failover import Failover
from opengslb.routing.geolocation import Geolocation
from opengslb.routing.latency import Latency
from opengslb.routing.round_robin import RoundRobin
from opengslb.routing.weighted import Weighted

ALGORITHMS: Dict[str, Algorithm] = {
    algorithm.name: algorithm
    for algorithm in (RoundRobin(), Weighted(), Failover(), Geolocation(), Latency(), ConsistentHash())
}


def algorithm_for(name: str) -> Algorithm:
    """The algorithm called ``name`` (a validated config value); KeyError otherwise."""
    return ALGORITHMS[name]
