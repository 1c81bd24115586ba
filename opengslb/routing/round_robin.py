"""round-robin: rotate evenly over the healthy candidates.

Equal weights rotate in order.  Unequal effective weights (a bleed in
progress, an override) are honoured with smooth weighted round-robin, the
scheme nginx uses: every pick adds each weight to its running score, picks the
highest score and subtracts the total from it, which interleaves choices
instead of sending bursts to the heaviest server.
"""

from __future__ import annotations

import random
from typing import List, Optional, Sequence

from opengslb.routing.base import Candidate, EmptyPicker, Picker, RoutingContext, eligible


class _RotatingPicker:
    def __init__(self, candidates: Sequence[Candidate], start: int) -> None:
        self._candidates = tuple(candidates)
        self._next = start % len(self._candidates)

    def pick(self) -> Optional[Candidate]:
        chosen = self._candidates[self._next]
        self._next = (self._next + 1) % len(self._candidates)
        return chosen

    def peek(self) -> Optional[Candidate]:
        return self._candidates[self._next]


class _SmoothWeightedPicker:
    def __init__(self, candidates: Sequence[Candidate]) -> None:
        self._candidates = tuple(candidates)
        self._weights = [c.weight for c in self._candidates]
        self._total = sum(self._weights)
        self._scores: List[float] = [0.0] * len(self._candidates)

    def pick(self) -> Optional[Candidate]:
        scores = self._scores
        best = 0
        for i, weight in enumerate(self._weights):
            scores[i] += weight
            if scores[i] > scores[best]:
                best = i
        scores[best] -= self._total
        return self._candidates[best]

    def peek(self) -> Optional[Candidate]:
        scores = self._scores
        best, best_score = 0, scores[0] + self._weights[0]
        for i, weight in enumerate(self._weights):
            if scores[i] + weight > best_score:
                best, best_score = i, scores[i] + weight
        return self._candidates[best]


class RoundRobin:
    """Rotate over eligible candidates; smooth weighted when weights differ."""

    name = "round-robin"

    def prepare(self, candidates: Sequence[Candidate], rng: random.Random,
                context: Optional[RoutingContext] = None) -> Picker:
        pool = eligible(candidates)
        if not pool:
            return EmptyPicker()
        if len({c.weight for c in pool}) == 1:
            # Start at a random place so that many domains over the same
            # servers do not all begin with the first one.
            return _RotatingPicker(pool, rng.randrange(len(pool)))
        return _SmoothWeightedPicker(pool)
