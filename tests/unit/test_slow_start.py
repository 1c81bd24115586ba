"""Slow start in the running core (SPEC §4.1): the view follows the ramp, driven by task.Clock.

A region's ``slow_start`` makes a server that recovers (or whose drain
override is lifted) ramp from 10% to 100% of its weight; the core rebuilds
the view while the ramp is in progress and stops once it is over.
"""

from __future__ import annotations

import dataclasses

import pytest

from opengslb.health.tracker import ServerKey
from tests.unit.test_runtime import World, done, sample_config

WINDOW = 10.0
EAST = ServerKey("east", "192.0.2.10", 80)


class Ramping(World):
    """The runtime world with ``slow_start: 10s`` on every region."""

    def __init__(self) -> None:
        super().__init__()
        config = sample_config()
        self.gslb.apply_config(dataclasses.replace(
            config, regions=tuple(dataclasses.replace(r, slow_start=WINDOW) for r in config.regions)))
        self.settle(30)

    def weight(self) -> float:
        return self.candidates()["east/192.0.2.10:80"].weight

    def served(self) -> float:
        return self.gslb.served_at(EAST.region, EAST.address, EAST.port).weight


def test_servers_start_at_full_weight():
    """Servers healthy from the start (first sight) do not ramp."""
    world = Ramping()
    assert world.weight() == 100.0
    assert world.gslb._ramp_call is None


def test_a_recovered_server_ramps_in_the_view_and_the_api_weight():
    """After recovery the view's weight climbs 10 → 100 over the window, without a step, then stays."""
    world = Ramping()
    world.checker.down[EAST.address] = "HTTP 503"
    world.settle(10)  # one failed check (failure_threshold 1)
    assert world.candidates()["east/192.0.2.10:80"].healthy is False
    del world.checker.down[EAST.address]
    world.settle(10)  # the next check passes: healthy again, the ramp starts
    assert world.candidates()["east/192.0.2.10:80"].healthy is True
    seen = [world.weight()]
    assert seen[0] == pytest.approx(10.0)
    assert world.served() == pytest.approx(seen[0])
    for _ in range(int(WINDOW / 0.5) + 2):
        world.settle(0.5)
        seen.append(world.weight())
    assert seen[-1] == 100.0
    assert all(b >= a for a, b in zip(seen, seen[1:]))
    assert max(b - a for a, b in zip(seen, seen[1:])) <= 90.0 * 0.5 / WINDOW + 1e-9
    assert world.gslb._ramp_call is None  # nothing left scheduled once the ramp is over


def test_the_last_ramp_rebuild_lands_on_the_exact_end():
    """A rebuild happens at the ramp's end itself, so the view reaches the full weight exactly."""
    world = Ramping()
    done(world.runtime.set_override("east", EAST.address, None, False, "maintenance", None))
    world.settle()
    assert world.weight() == 0.0
    done(world.runtime.delete_override("east", EAST.address))
    world.settle()
    assert world.weight() == pytest.approx(10.0)
    world.settle(WINDOW - 0.1)
    assert 10.0 < world.weight() < 100.0
    world.settle(0.1)
    assert world.weight() == 100.0


def test_an_unhealthy_server_during_its_ramp_starts_over():
    """Failing during the ramp resets it: the next recovery starts again at 10%."""
    world = Ramping()
    world.checker.down[EAST.address] = "HTTP 503"
    world.settle(10)
    del world.checker.down[EAST.address]
    world.settle(10)
    world.settle(5)
    assert world.weight() > 10.0
    world.checker.down[EAST.address] = "HTTP 503"
    world.settle(5)
    assert world.candidates()["east/192.0.2.10:80"].healthy is False
    del world.checker.down[EAST.address]
    world.settle(10)
    assert world.weight() == pytest.approx(10.0)
