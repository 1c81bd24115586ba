"""failover: the first eligible candidate in configuration order.

Regions come in the domain's order and servers in the region's order, so the
primary is answered whenever it is healthy again.
"""

from __future__ import annotations

import random
from typing import Optional, Sequence

from opengslb.routing.base import Candidate, EmptyPicker, Picker, RoutingContext, eligible


class _FixedPicker:
    def __init__(self, candidate: Candidate) -> None:
        self._candidate = candidate

    def pick(self) -> Optional[Candidate]:
        return self._candidate

    def peek(self) -> Optional[Candidate]:
        return self._candidate


class Failover:
    """Always the first eligible candidate in the order given (configuration order).

    A fully bled (``drained``) candidate yields to the first eligible one that
    is not drained; when every eligible candidate is drained, the first of
    them is answered all the same.
    """

    name = "failover"

    def prepare(self, candidates: Sequence[Candidate], rng: random.Random,
                context: Optional[RoutingContext] = None) -> Picker:
        pool = eligible(candidates)
        if not pool:
            return EmptyPicker()
        return _FixedPicker(next((c for c in pool if not c.drained), pool[0]))
