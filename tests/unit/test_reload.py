"""The reload path: sharing unchanged parts, indexes built off the reactor, the collector paused."""

from __future__ import annotations

import dataclasses
import gc
import random
from typing import Any, Callable, List

from twisted.python.failure import Failure

from opengslb.config import Config, ConfigError, Problem
from opengslb.config.model import DomainConfig, RegionConfig, ServerConfig, share_unchanged
from opengslb.dns.view import ServedState, build_view, zone_index_for
from opengslb.reload import Reloader


def sample(ttl: int = 30, extra_domain: bool = False, port: int = 80) -> Config:
    regions = (RegionConfig("east", (ServerConfig("192.0.2.1", port),)),
               RegionConfig("west", (ServerConfig("198.51.100.1", 80),)))
    domains = [DomainConfig("a.example.com", ("east",), ttl=ttl),
               DomainConfig("b.example.com", ("west",))]
    if extra_domain:
        domains.append(DomainConfig("c.example.com", ("west",)))
    return Config(regions=regions, domains=tuple(domains))


def test_share_unchanged_reuses_equal_parts_and_keeps_the_value():
    old, new = sample(), sample(ttl=60, port=8080)
    shared = share_unchanged(new, old)
    assert shared == new
    assert shared.regions[1] is old.regions[1] and shared.regions[0] is new.regions[0]
    assert shared.domains[1] is old.domains[1] and shared.domains[0] is new.domains[0]


def test_share_unchanged_returns_the_old_tuples_when_nothing_changed():
    old = sample()
    shared = share_unchanged(sample(), old)
    assert shared.regions is old.regions and shared.domains is old.domains and shared.dns is old.dns


def test_share_unchanged_handles_added_and_removed_items():
    old, new = sample(extra_domain=True), sample()
    shared = share_unchanged(new, old)
    assert shared == new and shared.domains is not old.domains
    assert all(a is b for a, b in zip(shared.domains, old.domains))
    grown = share_unchanged(sample(extra_domain=True), new)
    assert grown.domains[:2] == new.domains and grown.domains[0] is new.domains[0]


def test_derived_values_are_not_part_of_the_configuration():
    config = sample()
    config.derived["x"] = 1
    assert config == sample() and "derived" not in repr(config)
    assert dataclasses.replace(config).derived == {}


def healthy(region: str, server: ServerConfig) -> ServedState:
    return ServedState(healthy=True, weight=float(server.weight), last_healthy=1.0)


def test_a_reload_keeps_unchanged_domain_views_and_zone_views():
    first = build_view(sample(extra_domain=True), healthy, random.Random(0))
    reloaded = share_unchanged(sample(ttl=5), first.config)
    index = zone_index_for(reloaded, first)  # what the reload's worker thread does
    assert reloaded.derived["zone_index"] is index
    assert index.by_name["b.example.com"] is first.zone_index.by_name["b.example.com"]
    second = build_view(reloaded, healthy, random.Random(0), previous=first, dirty=set())
    assert second.zone_index is index
    assert second.domains["b.example.com"] is first.domains["b.example.com"]
    assert second.domains["a.example.com"].ttl == 5
    assert "c.example.com" not in second.domains


class SyncPool:
    """A thread pool that runs the work at once (the reactor thread stands in for a worker)."""

    def callInThreadWithCallback(self, on_result: Callable[..., None], work: Callable[..., Any],
                                 *args: Any, **kwargs: Any) -> None:
        try:
            result = work(*args, **kwargs)
        except BaseException:
            on_result(False, Failure())
        else:
            on_result(True, result)


class FakeReactor:
    def __init__(self) -> None:
        self.pool = SyncPool()

    def getThreadPool(self) -> SyncPool:
        return self.pool

    def callFromThread(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        f(*args, **kwargs)

    def seconds(self) -> float:
        return 0.0


def run_reload(loader: Callable[[str], Any], running: Config) -> tuple:
    applied: List[Config] = []
    prepared: List[Config] = []
    collector_during_load: List[bool] = []

    def load(path: str) -> Any:
        collector_during_load.append(gc.isenabled())
        return loader(path)

    reloader = Reloader(FakeReactor(), "gslb.yaml", current=lambda: running, apply=applied.append,
                        loader=load, prepare=prepared.append)
    outcomes: list = []
    reloader.reload().addCallback(outcomes.append)
    return outcomes[0], applied, prepared, collector_during_load


def test_reload_shares_prepares_and_pauses_the_collector():
    running = sample()
    assert gc.isenabled()
    outcome, applied, prepared, collecting = run_reload(lambda path: (sample(ttl=9), []), running)
    assert outcome.ok and collecting == [False] and gc.isenabled()
    assert applied == prepared and applied[0].regions is running.regions
    assert applied[0].regions_by_name == {"east": running.regions[0], "west": running.regions[1]}


def test_a_failed_reload_turns_the_collector_back_on():
    def broken(path: str) -> Any:
        raise ConfigError([Problem("gslb.yaml", 3, "domains", "bad")])

    outcome, applied, _, collecting = run_reload(broken, sample())
    assert not outcome.ok and applied == [] and collecting == [False] and gc.isenabled()
    assert "gslb.yaml:3" in outcome.errors[0]
