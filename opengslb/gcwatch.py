"""Log garbage-collector pauses long enough to matter.

A collection holds the GIL: while it runs, neither the reactor (DNS) nor
pysyncobj's tick thread (heartbeats, the leader lease) moves.  A pause
longer than :data:`GC_PAUSE` is logged with its generation, so that a
missed heartbeat or a lapsed lease can be matched with its cause.
"""

from __future__ import annotations

import gc
import time
from typing import Any, Dict

from twisted.logger import Logger

log = Logger("opengslb")

#: Collections longer than this (seconds) are logged.
GC_PAUSE = 0.05


class GCPauseWatch:
    """Times every collection through ``gc.callbacks``; :meth:`install` / :meth:`uninstall`.

    :param reactor: receives the log call (``callFromThread``: a collection
        may run on any thread).
    """

    def __init__(self, reactor: Any, threshold: float = GC_PAUSE) -> None:
        self.reactor = reactor
        self.threshold = threshold
        self._started = 0.0
        self.longest = 0.0  # the longest pause seen (seconds)

    def install(self) -> None:
        if self._on_gc not in gc.callbacks:
            gc.callbacks.append(self._on_gc)

    def uninstall(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: Dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        took = time.perf_counter() - self._started
        self.longest = max(self.longest, took)
        if took > self.threshold:
            self.reactor.callFromThread(
                lambda: log.warn("garbage collection of generation {generation} paused every thread for "
                                 "{took:.3f}s ({collected} objects collected)",
                                 generation=info.get("generation"), took=took,
                                 collected=info.get("collected"), event="gc_pause"))
