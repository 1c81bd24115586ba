"""weighted: choose at random with probability proportional to weight.

Weight-0 candidates are never chosen.  The cumulative weights are computed
once when the view is prepared; a pick is one random draw and a bisect.
"""

from __future__ import annotations

import bisect
import itertools
import random
from typing import Optional, Sequence

from opengslb.routing.base import Candidate, EmptyPicker, Picker, RoutingContext, eligible


class _WeightedPicker:
    def __init__(self, candidates: Sequence[Candidate], rng: random.Random) -> None:
        self._candidates = tuple(candidates)
        self._cumulative = list(itertools.accumulate(c.weight for c in self._candidates))
        self._total = self._cumulative[-1]
        self._count = len(self._candidates)
        self._rng = rng
        self._random = rng.random

    def pick(self) -> Optional[Candidate]:
        # _at inlined: this runs once per query on the fast path.
        index = bisect.bisect_right(self._cumulative, self._random() * self._total)
        return self._candidates[index] if index < self._count else self._candidates[-1]

    def peek(self) -> Optional[Candidate]:
        """The next pick: drawn from a copy of the random source, which is left as it is."""
        twin = random.Random()
        twin.setstate(self._rng.getstate())
        return self._at(twin.random())

    def _at(self, draw: float) -> Candidate:
        index = bisect.bisect_right(self._cumulative, draw * self._total)
        return self._candidates[min(index, len(self._candidates) - 1)]


class Weighted:
    """Probability proportional to effective weight."""

    name = "weighted"

    def prepare(self, candidates: Sequence[Candidate], rng: random.Random,
                context: Optional[RoutingContext] = None) -> Picker:
        pool = eligible(candidates)
        if not pool:
            return EmptyPicker()
        return _WeightedPicker(pool, rng)
