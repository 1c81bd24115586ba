"""Distributed health: combining every node's verdicts into the served one (SPEC §7.5).

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
just added) is left out for that server.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

from opengslb.config.model import HEALTH_CONSENSUS_MODES
from opengslb.health.tracker import ServerKey

FRESHNESS = 3.0
MODES = HEALTH_CONSENSUS_MODES  # defined once, in the configuration model

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


class DistributedHealth:
    """Holds the other nodes' gossiped verdicts and combines them with ours.

    ``views`` returns the gossip views: node id → (time last heard, verdicts);
    ``mode`` the current ``cluster.health_consensus``; ``clock`` the reactor.
    """

    def __init__(self, views: Callable[[], Views], mode: Callable[[], str], clock: Any) -> None:
        self._views = views
        self._mode = mode
        self._clock = clock

    def fresh_views(self) -> Dict[str, Mapping[ServerKey, bool]]:
        """Verdict maps of the nodes heard from within FRESHNESS seconds."""
        now = self._clock.seconds()
        return {node: verdicts for node, (heard, verdicts) in self._views().items()
                if now - heard <= FRESHNESS}

    def served(self, key: ServerKey, own: Optional[bool]) -> Optional[bool]:
        """The combined verdict for ``key`` given this node's own verdict."""
        mode = self._mode()
        if mode == "leader":
            return own
        others = [verdicts[key] for verdicts in self.fresh_views().values() if key in verdicts]
        return combine(mode, own, others)

    def per_node(self, key: ServerKey) -> Dict[str, bool]:
        """Each fresh node's verdict for ``key`` (for the API)."""
        return {node: verdicts[key] for node, verdicts in self.fresh_views().items() if key in verdicts}
