"""Predictive health on the serving side (SPEC §7.6): the bleed ramp and how the runtime applies it.

The ramp math (:mod:`opengslb.served.bleed`) is tested as pure
functions; the runtime over a ``task.Clock`` and an in-memory store, so the
view's effective weights can be read at any moment of a ramp.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, List, Optional

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opengslb.config.model import ClusterConfig, PredictiveHealthConfig, PredictiveSignalConfig
from opengslb.dns.view import ServedState
from opengslb.health.tracker import ServerKey
from opengslb.metrics import Metrics
from opengslb.routing import Candidate
from opengslb.served.bleed import (
    COSINE,
    FLOOR,
    LINEAR,
    NO_BLEED,
    bleed_factor,
    bleed_state,
    continuing_since,
    drain_factor,
    ease,
    ease_inverse,
)
from tests.unit.test_metrics import samples, scrape
from tests.unit.test_runtime import NOW, World, sample_config

SHAPES = (COSINE, LINEAR)


def record(since: float = 100.0, duration: float = 30.0, cleared_at: Optional[float] = None,
           reason: str = "cpu_high") -> Dict[str, Any]:
    return {"reason": reason, "value": 97.0, "threshold": 90.0, "bleed_duration": duration,
            "since": since, "cleared_at": cleared_at}


def curve(rec: Dict[str, Any], start: float, end: float, steps: int = 2000,
          shape: str = COSINE) -> List[float]:
    return [bleed_factor(rec, start + (end - start) * i / steps, shape=shape) for i in range(steps + 1)]


# -- the ramp as pure functions ------------------------------------------------------------


def test_no_record_means_full_weight():
    """Without a signal record the factor is 1.0 and nothing ramps."""
    assert bleed_state(None, 123.0) == NO_BLEED
    assert (NO_BLEED.factor, NO_BLEED.ramping, NO_BLEED.drained, NO_BLEED.bleeding) == (
        1.0, False, False, False)


@pytest.mark.parametrize("shape", SHAPES)
def test_a_bleed_drains_from_one_to_the_floor_over_its_duration_then_stays(shape):
    """1.0 at since, strictly lower in between, exactly the floor (0.05) at since + duration and after."""
    rec = record(since=100.0, duration=30.0)
    assert bleed_factor(rec, 100.0, shape=shape) == 1.0
    middle = bleed_factor(rec, 115.0, shape=shape)
    assert middle == pytest.approx(1.0 - (1.0 - FLOOR) / 2)  # both shapes pass the midpoint halfway
    state = bleed_state(rec, 110.0, shape=shape)
    assert (state.phase, state.ramping, state.ramp_ends_at) == ("draining", True, 130.0)
    assert FLOOR < state.factor < 1.0
    for t in (130.0, 131.0, 10_000.0):
        state = bleed_state(rec, t, shape=shape)
        assert (state.factor, state.phase, state.drained, state.ramping) == (FLOOR, "drained", True, False)


@pytest.mark.parametrize("shape", SHAPES)
def test_the_drain_is_monotonic_and_never_steps(shape):
    """Sampled 2000 times over the ramp, the factor only falls, by small steps, and never below 0.05."""
    values = curve(record(since=0.0, duration=30.0), -1.0, 31.0, shape=shape)
    steps = [b - a for a, b in zip(values, values[1:])]
    assert all(step <= 1e-12 for step in steps)
    assert max(abs(s) for s in steps) < 0.005
    assert min(values) == FLOOR and values[0] == 1.0


@pytest.mark.parametrize("shape", SHAPES)
def test_after_a_clear_the_factor_returns_to_one_over_the_same_duration(shape):
    """From the floor, a clear ramps back up to exactly 1.0 at cleared_at + bleed_duration."""
    rec = record(since=0.0, duration=20.0, cleared_at=50.0)
    assert bleed_factor(rec, 50.0, shape=shape) == FLOOR
    state = bleed_state(rec, 60.0, shape=shape)
    assert (state.phase, state.ramp_ends_at) == ("restoring", 70.0)
    assert state.factor == pytest.approx(FLOOR + (1 - FLOOR) / 2)
    assert bleed_state(rec, 70.0, shape=shape) == bleed_state(rec, 99.0, shape=shape)
    assert bleed_state(rec, 70.0, shape=shape).factor == 1.0
    assert bleed_state(rec, 70.0, shape=shape).phase == "restored"
    values = curve(rec, 45.0, 75.0, shape=shape)
    assert all(b >= a - 1e-12 for a, b in zip(values, values[1:]))
    assert max(abs(b - a) for a, b in zip(values, values[1:])) < 0.005


@pytest.mark.parametrize("shape", SHAPES)
def test_a_clear_mid_drain_starts_back_from_the_factor_reached(shape):
    """Cleared halfway down, the factor is continuous at the clear and is back at 1.0 a duration later."""
    rec = record(since=0.0, duration=10.0, cleared_at=5.0)
    reached = drain_factor(5.0, 10.0, shape=shape)
    assert bleed_factor(rec, 5.0, shape=shape) == pytest.approx(reached)
    assert bleed_factor(rec, 5.0 - 1e-6, shape=shape) == pytest.approx(reached, abs=1e-5)
    assert bleed_factor(rec, 5.0 + 1e-6, shape=shape) == pytest.approx(reached, abs=1e-5)
    assert bleed_factor(rec, 15.0, shape=shape) == 1.0
    values = curve(rec, 0.0, 16.0, shape=shape)
    assert max(abs(b - a) for a, b in zip(values, values[1:])) < 0.005
    assert min(values) == pytest.approx(reached)


def test_zero_duration_drains_and_restores_at_once():
    """A bleed_duration of 0 (allowed by the state machine) goes straight to the floor and back."""
    assert bleed_state(record(since=10.0, duration=0.0), 10.0).phase == "drained"
    assert bleed_state(record(since=10.0, duration=0.0, cleared_at=12.0), 12.0).factor == 1.0


def test_a_since_in_the_future_counts_as_just_begun():
    """A proposer with a clock ahead of ours cannot make the factor exceed 1.0 or jump."""
    assert bleed_factor(record(since=200.0), 100.0) == 1.0
    assert bleed_factor(record(since=200.0, cleared_at=150.0), 100.0) == 1.0


def test_ease_shapes():
    """Cosine is slow at both ends, linear is the identity; both map [0, 1] onto [0, 1]."""
    assert (ease(0.0), ease(1.0), ease(-3.0), ease(7.0)) == (0.0, 1.0, 0.0, 1.0)
    assert ease(0.1, COSINE) < ease(0.1, LINEAR) and ease(0.9, COSINE) > ease(0.9, LINEAR)
    assert ease(0.25, LINEAR) == 0.25


@given(st.floats(0.0, 1.0), st.sampled_from(SHAPES))
def test_ease_inverse_inverts(y, shape):
    """ease(ease_inverse(y)) == y."""
    assert ease(ease_inverse(y, shape), shape) == pytest.approx(y, abs=1e-9)


@given(factor=st.floats(FLOOR, 1.0), duration=st.floats(0.5, 600.0), shape=st.sampled_from(SHAPES))
def test_continuing_since_picks_the_ramp_up_where_it_stands(factor, duration, shape):
    """A drain starting at continuing_since(f) is at f now (within rounding)."""
    now = 5000.0
    since = continuing_since(factor, duration, now, shape=shape)
    assert now - duration <= since <= now
    assert drain_factor(now - since, duration, shape=shape) == pytest.approx(factor, abs=1e-6)


@given(since=st.floats(0, 100), duration=st.floats(0.1, 100), cleared=st.one_of(st.none(), st.floats(0, 300)),
       now=st.floats(-100, 500), shape=st.sampled_from(SHAPES))
def test_the_factor_is_always_between_the_floor_and_one(since, duration, cleared, now, shape):
    """Whatever the record and the time, FLOOR <= factor <= 1.0 and the phase matches the factor."""
    state = bleed_state(record(since, duration, cleared), now, shape=shape)
    assert FLOOR <= state.factor <= 1.0
    assert state.drained == (state.phase == "drained")
    if state.phase == "restored":
        assert state.factor == 1.0
    if state.ramping:
        assert state.ramp_ends_at is not None and state.ramp_ends_at > now


# -- the runtime applying it --------------------------------------------------------------------

REG = ServerKey("east", "192.0.2.60", 8080)


def predictive(enabled: bool = True, cpu_duration: float = 10.0) -> PredictiveHealthConfig:
    return PredictiveHealthConfig(enabled=enabled, cpu=PredictiveSignalConfig(90, cpu_duration),
                                  memory=PredictiveSignalConfig(85, 4.0))


class Bleeding(World):
    """The runtime world with predictive health enabled and one registration (weight 100) in east."""

    def __init__(self, enabled: bool = True, algorithm: str = "weighted", leader: bool = True) -> None:
        super().__init__(leader=leader)
        config = sample_config()
        config = dataclasses.replace(
            config, cluster=ClusterConfig(predictive_health=predictive(enabled)),
            domains=tuple(dataclasses.replace(d, routing_algorithm=algorithm) if d.name == "app.example.test"
                          else d for d in config.domains))
        self.gslb.apply_config(config)
        self.settle()
        self.runtime.register("east", REG.address, REG.port, 100, 60.0, True, "agent-1")
        self.rid = next(iter(self.store.machine.registrations))
        self.settle()

    def beat(self, kind: Optional[str] = "bleed", reason: str = "cpu_high") -> Any:
        signal = None if kind is None else (
            {"type": "clear"} if kind == "clear" else
            {"type": "bleed", "reason": reason, "value": 97.0, "threshold": 90.0})
        d = self.runtime.heartbeat(self.rid, True, signal)
        self.settle()
        return d

    def weight(self, key: ServerKey = REG) -> float:
        """The effective weight of ``key`` in the current answering view."""
        return self.candidates()[f"{key.region}/{key.address}:{key.port}"].weight


def test_disabled_predictive_health_records_signals_but_never_bleeds():
    """With predictive_health.enabled false the signal is stored, the factor stays 1.0 (phase disabled)."""
    world = Bleeding(enabled=False)
    world.beat("bleed")
    world.settle(20)
    assert world.store.machine.signals
    assert world.gslb.served_at(REG.region, REG.address, REG.port).bleed.factor == 1.0
    assert world.gslb.served_at(REG.region, REG.address, REG.port).bleed.phase == "disabled"
    assert world.weight() == 100.0
    assert world.gslb.bleeding_servers() == 0


def test_a_bleed_lowers_the_served_weight_smoothly_without_further_writes():
    """Only the heartbeat is written; the view's weight then falls step by step to 5 (5% of 100)."""
    world = Bleeding()
    assert world.weight() == 100.0
    world.beat("bleed")
    writes = len(world.store.proposed)
    seen = [world.weight()]
    for _ in range(24):  # 12 s in steps of 0.5 s (the ramp is 10 s)
        world.settle(0.5)
        seen.append(world.weight())
    assert len(world.store.proposed) == writes
    assert seen[0] == 100.0 and seen[-1] == pytest.approx(5.0)
    assert all(b <= a for a, b in zip(seen, seen[1:]))
    assert max(a - b for a, b in zip(seen, seen[1:])) < 100.0 * 0.2  # no step: ≤ 20% per 0.5 s
    assert len({round(w, 6) for w in seen}) > 15  # it really moved in many small steps
    assert world.gslb.served_at("east", REG.address, REG.port).weight == pytest.approx(5.0)
    assert world.gslb.bleeding_servers() == 1


def test_the_ramp_rebuilds_stop_once_every_ramp_is_over():
    """No periodic rebuild is left scheduled when nothing is ramping (drained, or before any signal)."""
    world = Bleeding()
    assert world.gslb._ramp_call is None
    world.beat("bleed")
    assert world.gslb._ramp_call is not None and world.gslb._ramp_call.active()
    world.settle(10.0)
    world.settle(0.5)
    assert world.gslb._ramp_call is None
    assert world.gslb.served_at(REG.region, REG.address, REG.port).bleed.phase == "drained"
    assert world.weight() == pytest.approx(5.0)


def test_the_last_ramp_rebuild_lands_on_the_exact_end():
    """A rebuild happens at since + bleed_duration itself, so the view reaches the floor exactly."""
    world = Bleeding()
    world.beat("bleed")
    world.settle(9.9)
    assert world.weight() > 5.0
    world.settle(0.1)
    assert world.weight() == pytest.approx(5.0)


def test_a_clear_brings_the_weight_back_over_the_same_duration():
    """After clear the weight climbs from 5 back to exactly 100 in bleed_duration, smoothly."""
    world = Bleeding()
    world.beat("bleed")
    world.settle(12)
    world.beat("clear")
    seen = [world.weight()]
    for _ in range(20):
        world.settle(0.5)
        seen.append(world.weight())
    assert seen[0] == pytest.approx(5.0) and seen[-1] == 100.0
    assert all(b >= a for a, b in zip(seen, seen[1:]))
    assert max(b - a for a, b in zip(seen, seen[1:])) < 20.0
    assert world.gslb.served_at(REG.region, REG.address, REG.port).bleed.phase == "restored"
    assert world.gslb.bleeding_servers() == 0


def test_a_new_bleed_while_ramping_back_continues_from_where_it_stands():
    """Bleed, clear, and bleed again half-way back up: no jump to 1.0, the drain resumes from there."""
    world = Bleeding()
    world.beat("bleed")
    world.settle(12)
    world.beat("clear")
    world.settle(5)  # half-way back up
    before = world.gslb.served_at(REG.region, REG.address, REG.port).bleed.factor
    assert 0.3 < before < 0.8
    world.beat("bleed")
    assert world.gslb.served_at(REG.region, REG.address, REG.port).bleed.factor == pytest.approx(before, abs=1e-6)
    assert world.gslb.served_at(REG.region, REG.address, REG.port).bleed.phase == "draining"
    set_commands = world.store.ops("signal.set")
    assert len(set_commands) == 1 and set_commands[0]["at"] < world.clock.seconds()
    world.settle(10)
    assert world.gslb.served_at(REG.region, REG.address, REG.port).bleed.phase == "drained"


def test_a_change_of_reason_keeps_the_factor():
    """memory_high replacing cpu_high while drained stays at the floor (a new record, back-dated)."""
    world = Bleeding()
    world.beat("bleed", "cpu_high")
    world.settle(12)
    world.beat("bleed", "memory_high")
    signal = world.store.machine.signals[f"east/{REG.address}:{REG.port}"]
    assert signal["reason"] == "memory_high" and signal["bleed_duration"] == 4.0
    assert world.gslb.served_at(REG.region, REG.address, REG.port).bleed.phase == "drained"
    assert world.weight() == pytest.approx(5.0)


def test_a_repeated_bleed_changes_nothing():
    """The same bleed again is not written and does not restart the ramp."""
    world = Bleeding()
    world.beat("bleed")
    world.settle(3)
    factor = world.gslb.served_at(REG.region, REG.address, REG.port).bleed.factor
    writes = len(world.store.proposed)
    world.beat("bleed")
    assert len(world.store.proposed) == writes
    assert world.gslb.served_at(REG.region, REG.address, REG.port).bleed.factor == pytest.approx(factor)


def test_an_override_weight_is_bled_too():
    """Effective weight = override weight × bleed factor."""
    world = Bleeding()
    world.runtime.set_override("east", REG.address, 40, None, "half", None)
    world.beat("bleed")
    world.settle(20)
    info = world.gslb.served_at("east", REG.address, REG.port)
    assert (info.source, info.weight) == ("override", pytest.approx(40 * 0.05))


def test_weighted_routing_moves_the_share_away():
    """With weighted routing the bled server's share falls to about 5/(5+sum of the others)."""
    world = Bleeding()
    world.beat("bleed")
    world.settle(12)
    picker = world.gslb.view.domains["app.example.test"].families[4].picker
    picks = [picker.pick().address for _ in range(20000)]  # type: ignore[union-attr]
    share = picks.count(REG.address) / len(picks)
    # east 192.0.2.10 (100), 192.0.2.11 (50), west 198.51.100.10 (300), the registration 100 → 5
    assert share == pytest.approx(5 / 455, abs=0.004)


needs_drained = pytest.mark.skipif(
    "drained" not in {f.name for f in dataclasses.fields(ServedState)}
    or "drained" not in {f.name for f in dataclasses.fields(Candidate)},
    reason="the routing side of `drained` (Candidate/ServedState field, failover) is not in this tree")


@needs_drained
def test_a_fully_bled_failover_primary_yields_and_comes_back_after_clear():
    """Failover keeps the bleeding primary until it is drained, then answers the next; back after clear."""
    world = Bleeding(algorithm="failover")
    # Take the configured east servers out, so the registration is the primary (west is next).
    for address in ("192.0.2.10", "192.0.2.11"):
        world.runtime.set_override("east", address, None, False, "out", None)
    world.settle()
    assert world.picks() == {REG.address}
    world.beat("bleed")
    world.settle(5)
    assert world.picks() == {REG.address}  # still draining: failover does not split traffic
    world.settle(5)
    assert world.gslb.served_at(REG.region, REG.address, REG.port).bleed.drained
    assert world.picks() == {"198.51.100.10"}  # the next server (west)
    world.beat("clear")
    world.settle(0.5)
    assert world.picks() == {REG.address}


@needs_drained
def test_a_drained_server_is_still_answered_when_every_other_is_out():
    """Failover answers a drained primary rather than nothing."""
    world = Bleeding(algorithm="failover")
    for address in ("192.0.2.10", "192.0.2.11"):
        world.runtime.set_override("east", address, None, False, "out", None)
    world.checker.down["198.51.100.10"] = "connection refused"
    world.settle(30)
    world.beat("bleed")
    world.settle(11)
    assert world.gslb.served_at(REG.region, REG.address, REG.port).bleed.drained
    assert world.picks() == {REG.address}


def test_bleeding_servers_metric_follows_the_ramp():
    """opengslb_bleeding_servers is 1 while draining, drained or restoring, 0 once restored."""
    world = Bleeding()
    metrics = Metrics(world.gslb, _Reloads(), "1", world.clock)

    def bleeding() -> float:
        return samples(scrape(metrics), "opengslb_bleeding_servers")[frozenset()]

    assert bleeding() == 0
    world.beat("bleed")
    world.settle(1)
    assert bleeding() == 1
    world.settle(20)
    assert bleeding() == 1
    world.beat("clear")
    world.settle(5)
    assert bleeding() == 1
    world.settle(6)
    assert bleeding() == 0


def test_overrides_and_vetoes_active_metrics():
    """opengslb_overrides_active counts unexpired overrides; opengslb_vetoes_active active vetoes."""
    world = Bleeding()
    metrics = Metrics(world.gslb, _Reloads(), "1", world.clock)
    world.runtime.set_override("east", "192.0.2.10", 0, None, "drain", 10.0)
    world.runtime.set_override("east", "192.0.2.11", 0, None, "drain", None)
    world.runtime.set_veto(REG, "test")
    world.settle()
    families = scrape(metrics)
    assert samples(families, "opengslb_overrides_active")[frozenset()] == 2
    assert samples(families, "opengslb_vetoes_active")[frozenset()] == 1
    world.settle(11)
    assert samples(scrape(metrics), "opengslb_overrides_active")[frozenset()] == 1


class _Reloads:
    successes = 0
    failures = 0
    last_success = None


def test_time_is_the_reactors():
    """The factor is computed from reactor time (NOW-based clock), not the wall clock."""
    world = Bleeding()
    world.beat("bleed")
    record_ = world.store.machine.signals[f"east/{REG.address}:{REG.port}"]
    assert record_["since"] == pytest.approx(NOW, abs=1.0)
    assert math.isclose(world.gslb.served_at(REG.region, REG.address, REG.port).bleed.factor, 1.0)


def test_the_api_shows_the_ramp_and_the_veto_as_documented():
    """/api/v1/services shows the signal's bleed_factor and phase, the effective weight, and a veto's
    reason and since; every reply matches the OpenAPI document."""
    from opengslb.api.timefmt import rfc3339
    from tests.unit.test_api import RuntimeWorld

    world = RuntimeWorld()
    world.gslb.apply_config(dataclasses.replace(
        world.gslb.config, cluster=ClusterConfig(predictive_health=predictive(cpu_duration=10.0))))
    world.send("POST", "/api/v1/services", {"region": "east", "address": "192.0.2.60", "port": 80,
                                            "ttl": "60s", "healthy": True, "weight": 100})
    world.send("PUT", "/api/v1/services/svc0/heartbeat", {"healthy": True, "signal": {
        "type": "bleed", "reason": "cpu_high", "value": 97.5, "threshold": 90}})
    world.clock.advance(5)
    (service,) = world.send("GET", "/api/v1/services").body["services"]
    assert service["signal"]["phase"] == "draining"
    assert service["signal"]["bleed_factor"] == pytest.approx(0.525, abs=1e-3)
    assert service["effective_weight"] == pytest.approx(52.5, abs=0.1)
    world.clock.advance(5)
    (service,) = world.send("GET", "/api/v1/services").body["services"]
    assert (service["signal"]["phase"], service["signal"]["bleed_factor"]) == ("drained", 0.05)
    servers = world.send("GET", "/api/v1/health/servers").body["servers"]
    assert next(s for s in servers if s["address"] == "192.0.2.60")["effective_weight"] == pytest.approx(5.0)

    world.runtime.set_veto(ServerKey("east", "192.0.2.60", 80), "overwatch (strict): connection refused")
    world.clock.advance(0)
    (service,) = world.send("GET", "/api/v1/services").body["services"]
    assert service["veto"] == {"reason": "overwatch (strict): connection refused",
                               "since": rfc3339(world.clock.seconds()), "expires_at": None}
    assert service["healthy"] is False


def test_bleeds_and_clears_are_logged_at_info():
    """A replicated bleed and its clear are logged (event predictive_bleed / predictive_clear)."""
    from twisted.logger import globalLogPublisher

    events: List[Dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        world = Bleeding()
        world.beat("bleed")
        world.beat("bleed")  # the same again: not logged twice
        world.beat("clear")
    finally:
        globalLogPublisher.removeObserver(events.append)
    logged = [(e["event"], e["log_level"].name) for e in events
              if e.get("event") in ("predictive_bleed", "predictive_clear")]
    assert logged == [("predictive_bleed", "info"), ("predictive_clear", "info")]
