"""GC pauses above the threshold are logged through the reactor."""

import gc
from typing import Any, Callable, Dict, List

from twisted.logger import formatEvent, globalLogPublisher

from opengslb.gcwatch import GCPauseWatch


class Reactor:
    def __init__(self) -> None:
        self.calls: List[Callable[[], Any]] = []

    def callFromThread(self, f: Callable[..., Any], *args: Any) -> None:
        self.calls.append(lambda: f(*args))


def collected_events(watch: GCPauseWatch, reactor: Reactor) -> List[Dict[str, Any]]:
    events: List[Dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    watch.install()
    try:
        gc.collect()
        for call in reactor.calls:
            call()
    finally:
        watch.uninstall()
        globalLogPublisher.removeObserver(events.append)
    return [e for e in events if e.get("event") == "gc_pause"]


def test_a_pause_above_the_threshold_is_logged_with_its_generation() -> None:
    reactor = Reactor()
    watch = GCPauseWatch(reactor, threshold=0.0)
    logged = collected_events(watch, reactor)
    assert logged and "garbage collection of generation 2 paused every thread" in formatEvent(logged[-1])
    assert watch.longest > 0
    assert watch._on_gc not in gc.callbacks  # uninstalled


def test_short_pauses_are_not_logged() -> None:
    reactor = Reactor()
    assert collected_events(GCPauseWatch(reactor, threshold=60.0), reactor) == []
