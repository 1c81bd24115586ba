"""One domain's answer for one address family: the algorithm's choice, ``answer_count`` and the ECS scope.

:class:`Steering` wraps the picker an algorithm prepared.  :meth:`Steering.select`
is what a query asks: up to ``answer_count`` distinct eligible addresses —
the algorithm's choice first, then the algorithm's own ranking (the chosen
region's other servers then the following regions for geolocation, next
scores for consistent-hash, next fastest for latency, else the eligible
servers in configuration order from the one after the choice, so the set
rotates with the choice) — and the ECS scope prefix length of the answer
(0 when the algorithm does not look at the client).  With ``advance=False``
nothing moves: the same selection the next query would get, for explaining.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from opengslb.routing.base import Candidate, Client, Picker, eligible

__all__ = ["Steering"]

Selection = Tuple[Tuple[Candidate, ...], int]


class Steering:
    """A prepared (domain, family): ``picker`` over ``candidates`` answering up to ``count`` addresses."""

    __slots__ = ("picker", "pool", "count", "client_aware")

    def __init__(self, picker: Picker, candidates: Sequence[Candidate], count: int = 1) -> None:
        self.picker: Any = picker
        self.pool = eligible(candidates)
        self.count = max(1, count)
        self.client_aware = bool(getattr(picker, "client_aware", False))

    @property
    def simple(self) -> bool:
        """True when an answer is one ``picker.pick()`` (client-independent, one address)."""
        return not self.client_aware and self.count == 1

    def select(self, client: Client, advance: bool = True) -> Selection:
        """(chosen candidates, ECS scope) for ``client``; no candidates when nothing is eligible."""
        picker = self.picker
        if self.client_aware:
            first, scope = picker.pick_for(client, advance)
        else:
            first, scope = (picker.pick() if advance else picker.peek()), 0
        if first is None:
            return (), scope
        if self.count == 1:
            return (first,), scope
        return self._more(first, client), scope

    def bound(self, client: Client) -> Optional[Tuple[Callable[[], Optional[Candidate]], int]]:
        """For one-address answers: (a function picking ``client``'s next answer, the ECS scope).

        What :meth:`select` does for ``client``, split so a caller that sees
        the same client again (the fast path, by the query's bytes) can skip
        the steering and only pick.  Valid until the view is rebuilt.  None
        for multi-value answers or a picker that cannot bind a client.
        """
        if self.count != 1:
            return None
        if not self.client_aware:
            return self.picker.pick, 0
        bind = getattr(self.picker, "bound_for", None)
        return bind(client) if bind is not None else None

    def _more(self, first: Candidate, client: Client) -> Tuple[Candidate, ...]:
        picker = self.picker
        if self.client_aware:
            rest: Sequence[Candidate] = picker.ranking_for(client, first)
        elif hasattr(picker, "ranking"):
            rest = picker.ranking(first)
        else:
            pool = self.pool
            at = pool.index(first) if first in pool else -1
            rest = pool[at + 1:] + pool[:max(at, 0)]
        chosen: List[Candidate] = [first]
        seen = {first.address}
        for candidate in rest:
            if len(chosen) >= self.count:
                break
            if candidate.address not in seen:
                seen.add(candidate.address)
                chosen.append(candidate)
        return tuple(chosen)

    def matched(self, client: Client) -> Optional[Dict[str, Any]]:
        """What steered ``client`` (a topology rule, GeoIP record, hashed network), or None."""
        if self.client_aware:
            result: Optional[Dict[str, Any]] = self.picker.explain_for(client)
            return result
        return None
