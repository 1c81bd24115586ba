"""Combining every node's verdicts into the served one (SPEC §7.5): pure functions.

Every node checks every server and gossips its verdicts.  The leader serves
the verdicts combined by ``cluster.health_consensus``:

``majority`` (default)
    healthy when more than half of the live nodes say healthy; an exact tie
    goes to the leader's own verdict.
``any``
    healthy when at least one live node says healthy.
``all``
    healthy only when every live node says healthy.
``leader``
    the leader's own checks only.

A node is live for this purpose when its verdicts were received within
:data:`FRESHNESS` seconds (3 s); the leader itself is always live.  A node
that has no verdict for a server yet (it has just started, or the server was
just added) is left out for that server.  Standalone mode is a one-node
cluster: no peer verdicts, so the own verdict is served.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from opengslb.health.tracker import ServerKey

__all__ = ["FRESHNESS", "NO_PEERS", "PeerVerdicts", "combine", "fresh"]

#: Seconds within which a node's verdicts count (SPEC §7.5).
FRESHNESS = 3.0

#: node id → (time its verdicts were last heard, its verdicts)
Views = Mapping[str, Tuple[float, Mapping[ServerKey, bool]]]


def combine(mode: str, own: Optional[bool], others: Sequence[bool]) -> Optional[bool]:
    """The served verdict from this node's (``own``) and the other live nodes' verdicts.

    Returns ``None`` when nobody has a verdict (the caller keeps its default).
    """
    if mode == "leader" or not others:
        return own
    votes = ([own] if own is not None else []) + list(others)
    if mode == "any":
        return any(votes)
    if mode == "all":
        return all(votes)
    healthy = sum(1 for v in votes if v)
    if healthy * 2 > len(votes):
        return True
    if healthy * 2 < len(votes):
        return False
    return own if own is not None else False  # a tie goes to the leader's own verdict


def fresh(views: Views, now: float) -> Dict[str, Mapping[ServerKey, bool]]:
    """The verdict maps of ``views`` heard within :data:`FRESHNESS` seconds of ``now``."""
    return {node: verdicts for node, (heard, verdicts) in views.items() if now - heard <= FRESHNESS}


@dataclass(frozen=True)
class PeerVerdicts:
    """The other nodes' fresh verdicts and the consensus mode: one input of the served policy.

    ``views``: node id → its verdicts, fresh ones only (see :func:`fresh`).
    The default (mode ``leader``, no views) is standalone: the own verdict is served.
    """

    mode: str = "leader"  # one of opengslb.config.model.HEALTH_CONSENSUS_MODES
    views: Mapping[str, Mapping[ServerKey, bool]] = field(default_factory=dict)

    def votes(self, key: ServerKey) -> List[bool]:
        """The fresh verdicts of the other nodes about ``key``."""
        return [verdicts[key] for verdicts in self.views.values() if key in verdicts]

    def served(self, key: ServerKey, own: Optional[bool]) -> Optional[bool]:
        """The combined verdict for ``key`` given this node's own verdict (see :func:`combine`)."""
        if self.mode == "leader":
            return own
        return combine(self.mode, own, self.votes(key))

    def per_node(self, key: ServerKey) -> Dict[str, bool]:
        """Each fresh node's verdict for ``key`` (for the API)."""
        return {node: verdicts[key] for node, verdicts in self.views.items() if key in verdicts}


#: Standalone: no peers.
NO_PEERS = PeerVerdicts()
