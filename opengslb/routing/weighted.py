"""weighted: choose at random with probability proportional to weight.

Weight-0 candidates are never chosen.  The cumulative weights are computed
once when the view is prepared; a pick is one random draw and a bisect.
"""

from __future__ import annotations

import bisect
import itertools
import random
from typing import Optional, Sequence

from opengslb.routing.base import Candidate, EmptyPicker, Picker, eligible


class _WeightedPicker:
    def __init__(self, candidates: Sequence[Candidate], rng: random.Random) -> None:
        self._candidates = tuple(candidates)
        self._cumulative = list(itertools.accumulate(c.weight for c in self._candidates))
        self._total = self._cumulative[-1]
        self._random = rng.random

    def pick(self) -> Optional[Candidate]:
        point = self._random() * self._total
        index = bisect.bisect_right(self._cumulative, point)
        return self._candidates[min(index, len(self._candidates) - 1)]


class Weighted:
    """Probability proportional to effective weight."""

    name = "weighted"

    def prepare(self, candidates: Sequence[Candidate], rng: random.Random) -> Picker:
        pool = eligible(candidates)
        if not pool:
            return EmptyPicker()
        return _WeightedPicker(pool, rng)
