"""Peer verdicts for the served policy (SPEC §7.5): the gossip views, kept fresh.

:class:`DistributedHealth` is the cluster-mode source of the policy's
``peers`` input: it reads the other nodes' gossiped verdicts, gives a
:class:`~opengslb.served.consensus.PeerVerdicts` snapshot of the fresh ones
with the current ``cluster.health_consensus`` (the math is
:mod:`opengslb.served.consensus`), and tells its listeners which regions to
re-judge: when verdicts arrive (:meth:`DistributedHealth.received`, the
gossip listener) and when a node's verdicts age out or come back (the
freshness watch, once a second while started).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, FrozenSet, Iterable, List, Mapping, Optional

from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from opengslb.health.tracker import ServerKey
from opengslb.served.consensus import FRESHNESS, PeerVerdicts, Views, fresh

__all__ = ["DistributedHealth", "FRESHNESS"]

log = Logger(namespace="opengslb.cluster")

#: ``listener(regions)``: the served health of these regions may have changed (``None``: any).
Listener = Callable[[Optional[Iterable[str]]], None]


class DistributedHealth:
    """Holds the other nodes' gossiped verdicts and offers them, fresh, to the policy.

    ``views`` returns the gossip views: node id → (time last heard, verdicts);
    ``mode`` the current ``cluster.health_consensus``; ``clock`` the reactor.
    """

    #: Seconds between two looks at which nodes are fresh.
    WATCH_INTERVAL = 1.0

    def __init__(self, views: Callable[[], Views], mode: Callable[[], str], clock: Any) -> None:
        self._views = views
        self._mode = mode
        self._clock = clock
        self._listeners: List[Listener] = []
        self._fresh_nodes: FrozenSet[str] = frozenset()
        self._watch: Optional[LoopingCall] = None

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(regions)`` whenever peer verdicts change what may be served."""
        self._listeners.append(listener)

    def fresh_views(self) -> Dict[str, Mapping[ServerKey, bool]]:
        """Verdict maps of the nodes heard from within FRESHNESS seconds."""
        return fresh(self._views(), self._clock.seconds())

    def snapshot(self) -> PeerVerdicts:
        """The fresh peer verdicts and the consensus mode now (the policy's ``peers`` input)."""
        mode = self._mode()
        return PeerVerdicts(mode, {} if mode == "leader" else self.fresh_views())

    def served(self, key: ServerKey, own: Optional[bool]) -> Optional[bool]:
        """The combined verdict for ``key`` given this node's own verdict."""
        return self.snapshot().served(key, own)

    def per_node(self, key: ServerKey) -> Dict[str, bool]:
        """Each fresh node's verdict for ``key`` (for the API)."""
        return PeerVerdicts(self._mode(), self.fresh_views()).per_node(key)

    # -- change notices --------------------------------------------------------

    def received(self, node: str, verdicts: Mapping[ServerKey, bool]) -> None:
        """Gossip delivered ``node``'s (changed) ``verdicts``: their regions may serve differently."""
        self._notify({key.region for key in verdicts})

    def start(self) -> None:
        """Start the freshness watch: a node aging out (or coming back) re-judges every region."""
        if self._watch is None:
            self._watch = LoopingCall(self._look)
            self._watch.clock = self._clock
            self._watch.start(self.WATCH_INTERVAL, now=False).addErrback(
                lambda f: log.failure("the peer freshness watch died", failure=f))

    def stop(self) -> None:
        """Stop the freshness watch."""
        if self._watch is not None and self._watch.running:
            self._watch.stop()
        self._watch = None

    def _look(self) -> None:
        nodes = frozenset(self.fresh_views())
        if nodes != self._fresh_nodes:
            self._fresh_nodes = nodes
            self._notify(None)

    def _notify(self, regions: Optional[Iterable[str]]) -> None:
        for listener in self._listeners:
            try:
                listener(regions)
            except Exception:
                log.failure("a peer-verdict listener failed")
