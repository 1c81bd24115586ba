"""The shape every routing algorithm has.

An algorithm is a small stateless object.  When the answering view is
rebuilt it calls :meth:`Algorithm.prepare` once per (domain, address family)
with every candidate in configuration order; the returned :class:`Picker`
is then asked for one candidate per query.  Pickers only ever return
*eligible* candidates: healthy, with an effective weight above zero.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Optional, Protocol, Sequence, Tuple


@dataclass(frozen=True)
class Candidate:
    """One server as routing sees it.

    ``weight`` is the effective weight (configured or overridden, times any
    bleed factor); ``healthy`` is the served health verdict.  ``order`` is the
    position in configuration order (regions in the domain's order, servers
    in the region's order).  ``drained`` marks a server predictive health has
    fully bled (SPEC §7.6): still eligible with its small weight, but failover
    passes it over while another eligible candidate is not drained.
    """

    address: str
    port: int
    region: str
    weight: float
    healthy: bool
    order: int = 0
    drained: bool = False

    @property
    def endpoint(self) -> str:
        return f"{self.address}:{self.port}"


def eligible(candidates: Sequence[Candidate]) -> Tuple[Candidate, ...]:
    """The candidates any algorithm may choose: healthy and weight > 0."""
    return tuple(c for c in candidates if c.healthy and c.weight > 0)


class Picker(Protocol):
    """Chooses one candidate per call; ``None`` when nothing is eligible."""

    def pick(self) -> Optional[Candidate]: ...


class Algorithm(Protocol):
    """A named routing algorithm."""

    name: str

    def prepare(self, candidates: Sequence[Candidate], rng: random.Random) -> Picker:
        """Return a picker over ``candidates`` (all of them, in config order).

        ``rng`` is the injected source of randomness; algorithms never use
        the global :mod:`random` state.
        """
        ...


class EmptyPicker:
    """A picker with nothing to choose from."""

    def pick(self) -> Optional[Candidate]:
        return None
