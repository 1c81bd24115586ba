"""consistent-hash: weighted rendezvous hashing of the client network (SPEC §4.1).

The client network is the ECS subnet (source prefix capped at /24 and /56),
else the /24 (IPv4) or /56 (IPv6) holding the query's source address.  Each
network goes to the eligible server with the highest weighted rendezvous
score (:mod:`opengslb.routing.rendezvous`): when one of N servers leaves,
only the networks it had move, spread over the others in proportion to
their weights, and when it comes back they return to it.

The answer depends on the client network only, so its ECS scope is the
network's prefix length.  With ``answer_count`` above 1 the further
addresses are the next-highest scores: the same for a network until the set
of servers changes.  Choices are cached per network (bounded) until the
view is rebuilt.
"""

from __future__ import annotations

import ipaddress
import random
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from opengslb.routing.base import (
    NO_CLIENT,
    Candidate,
    Client,
    Picker,
    RoutingContext,
    client_key,
    eligible,
    hashing_network,
)
from opengslb.routing.rendezvous import choose, score

__all__ = ["ConsistentHash"]

_CACHE_LIMIT = 65_536


class _HashPicker:
    client_aware = True

    def __init__(self, candidates: Sequence[Candidate]) -> None:
        self._pool = eligible(candidates)
        self._keyed = [(f"{c.address}:{c.port}".encode(), c.weight, c) for c in self._pool]
        self._cache: Dict[Client, Candidate] = {}

    def pick_for(self, client: Client, advance: bool = True) -> Tuple[Optional[Candidate], int]:
        network = hashing_network(client)
        found = self._cache.get(network)
        if found is None:
            found = choose(client_key(network), self._keyed)
            if found is None:
                return None, network[2]
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[network] = found
        return found, network[2]

    def pick(self) -> Optional[Candidate]:
        return self.pick_for(NO_CLIENT)[0]

    def bound_for(self, client: Client) -> Tuple[Callable[[], Optional[Candidate]], int]:
        """(a function giving ``client``'s server, the ECS scope): see :meth:`Steering.bound`."""
        found, scope = self.pick_for(client)
        return (lambda: found), scope

    def peek(self) -> Optional[Candidate]:
        return self.pick_for(NO_CLIENT)[0]

    def ranking_for(self, client: Client, first: Candidate) -> Sequence[Candidate]:
        key = client_key(hashing_network(client))
        ranked: List[Tuple[float, int, Candidate]] = sorted(
            ((-score(key, server, weight), c.order, c) for server, weight, c in self._keyed if c != first),
            key=lambda item: (item[0], item[1]))
        return [c for _, _, c in ranked]

    def explain_for(self, client: Client) -> Optional[Dict[str, Any]]:
        version, value, prefix = hashing_network(client)
        return {"hashed_network": _network_text(version, value, prefix)}


def _network_text(version: int, value: int, prefix: int) -> str:
    address = ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value)
    return f"{address}/{prefix}"


class ConsistentHash:
    """Weighted rendezvous hashing of the client network over the eligible servers."""

    name = "consistent-hash"

    def prepare(self, candidates: Sequence[Candidate], rng: random.Random,
                context: Optional[RoutingContext] = None) -> Picker:
        return _HashPicker(candidates)
