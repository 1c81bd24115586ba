"""Tests for opengslb.health.manager: scheduling, reconcile, first round, shutdown.

Driven by ``task.Clock`` and a fake checker whose Deferreds the test fires.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import pytest
from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock
from twisted.logger import Logger, LogLevel

from opengslb.config.model import Config, HealthCheckConfig, RegionConfig, ServerConfig
from opengslb.health.manager import HealthManager
from opengslb.health.tracker import ServerHealth, ServerKey
from tests.unit.fakes import FakeChecker


def make_config(regions: Dict[str, Sequence[str]], **settings: Any) -> Config:
    """A Config whose regions hold servers on port 80 with the given check settings."""
    check = HealthCheckConfig(**settings)
    return Config(
        regions=tuple(
            RegionConfig(name, tuple(ServerConfig(a) for a in addresses), check)
            for name, addresses in regions.items()
        )
    )


class Harness:
    def __init__(self, auto: Optional[bool] = None) -> None:
        self.clock = Clock()
        self.checker = FakeChecker(self.clock, auto)
        self.changes: List[Tuple[ServerKey, bool]] = []
        self.results: List[Tuple[ServerKey, bool, float]] = []
        self.events: List[Dict[str, Any]] = []
        self.manager = HealthManager(
            self.clock,
            self.checker,
            on_change=lambda key, health: self.changes.append((key, health.healthy)),
            on_result=lambda key, ok, duration: self.results.append((key, ok, duration)),
            log=Logger(namespace="opengslb.health", observer=self.events.append),
        )


def key(address: str, region: str = "eu") -> ServerKey:
    return ServerKey(region, address, 80)


def test_start_times_spread_over_interval() -> None:
    """Server i of n starts at interval*i/n, then every interval."""
    h = Harness(auto=True)
    h.manager.apply_config(
        make_config({"eu": ["10.0.0.1", "10.0.0.2"], "us": ["10.0.1.1", "10.0.1.2"]}, interval=10.0)
    )
    assert h.checker.checks == []  # nothing runs inside apply_config
    h.clock.pump([0.0] + [0.5] * 50)
    assert h.checker.started_at("10.0.0.1") == [0.0, 10.0, 20.0]
    assert h.checker.started_at("10.0.0.2") == [2.5, 12.5, 22.5]
    assert h.checker.started_at("10.0.1.1") == [5.0, 15.0, 25.0]
    assert h.checker.started_at("10.0.1.2") == [7.5, 17.5]


def test_slow_check_never_overlaps() -> None:
    """A check slower than the interval delays the next one; at most one runs per server."""
    h = Harness()
    h.manager.apply_config(make_config({"eu": ["10.0.0.1"]}, interval=10.0, timeout=100.0))
    h.clock.advance(0)
    assert len(h.checker.checks) == 1
    for _ in range(34):
        h.clock.advance(1)
        assert len(h.checker.pending()) == 1
    assert len(h.checker.checks) == 1
    h.checker.checks[0].succeed()  # finished at t=34
    h.clock.advance(5)  # t=39: next interval boundary not reached yet
    assert len(h.checker.checks) == 1
    h.clock.advance(1)  # t=40
    assert h.checker.started_at("10.0.0.1") == [0.0, 40.0]


def test_hung_check_is_given_up_after_timeout_and_grace() -> None:
    """A checker Deferred that never fires counts as a failure after timeout + grace."""
    h = Harness()
    h.manager.apply_config(make_config({"eu": ["10.0.0.1"]}, interval=10.0, timeout=2.0))
    h.clock.advance(0)
    h.clock.advance(2.0 + HealthManager.CHECK_GRACE)
    check = h.checker.checks[0]
    assert check.cancelled
    health = h.manager.get(key("10.0.0.1"))
    assert health is not None
    assert health.consecutive_failures == 1
    assert health.last_error == "check did not finish within 2s"
    h.clock.advance(10.0 - 3.0)
    assert len(h.checker.checks) == 2


def test_failures_flip_and_notify() -> None:
    """failure_threshold failures call on_change and log a warning with fields; recovery logs info."""
    h = Harness(auto=False)
    h.manager.apply_config(
        make_config({"eu": ["10.0.0.1"]}, interval=1.0, failure_threshold=3, success_threshold=2)
    )
    h.clock.advance(0)
    h.clock.advance(1)
    assert h.changes == []
    h.clock.advance(1)
    assert h.changes == [(key("10.0.0.1"), False)]
    health = h.manager.get(key("10.0.0.1"))
    assert health is not None and health.status == "unhealthy"
    assert health.last_error == "HTTP 503"
    down = [e for e in h.events if e["log_level"] == LogLevel.warn]
    assert len(down) == 1
    assert (down[0]["server"], down[0]["region"], down[0]["reason"]) == ("10.0.0.1:80", "eu", "HTTP 503")
    assert down[0]["log_namespace"] == "opengslb.health"

    h.checker.auto = True
    h.clock.advance(1)
    h.clock.advance(1)
    assert h.changes[-1] == (key("10.0.0.1"), True)
    up = [e for e in h.events if e["log_level"] == LogLevel.info]
    assert [(e["server"], e["region"]) for e in up] == [("10.0.0.1:80", "eu")]


def test_on_result_reports_every_check_with_duration() -> None:
    """on_result gets (key, success, duration) after each check."""
    h = Harness()
    h.manager.apply_config(make_config({"eu": ["10.0.0.1"]}, interval=10.0))
    h.clock.advance(0)
    h.clock.advance(0.25)
    h.checker.checks[0].succeed()
    h.clock.advance(9.75)
    h.clock.advance(1.5)
    h.checker.checks[1].fail()
    assert h.results == [(key("10.0.0.1"), True, 0.25), (key("10.0.0.1"), False, 1.5)]


def test_unexpected_exception_counts_as_failure_and_loop_continues() -> None:
    """A checker that raises is a failed check with last_error set; the loop keeps going."""
    h = Harness(auto=True)
    h.checker.raise_for.add("10.0.0.1")
    h.manager.apply_config(make_config({"eu": ["10.0.0.1", "10.0.0.2"]}, interval=2.0))
    h.clock.pump([0.0] + [1.0] * 6)
    health = h.manager.get(key("10.0.0.1"))
    assert health is not None
    assert health.consecutive_failures == 4
    assert health.last_error == "RuntimeError: boom"
    assert not health.healthy
    assert h.manager.get(key("10.0.0.2")).consecutive_successes == 3  # type: ignore[union-attr]
    assert any(e.get("log_failure") is not None for e in h.events)


def test_failing_callback_does_not_stop_checks() -> None:
    """An on_change callback that raises is logged; checks go on."""
    clock = Clock()
    checker = FakeChecker(clock, auto=False)
    events: List[Dict[str, Any]] = []

    def on_change(key: ServerKey, health: ServerHealth) -> None:
        raise ValueError("callback bug")

    manager = HealthManager(clock, checker, on_change, log=Logger(observer=events.append))
    manager.apply_config(make_config({"eu": ["10.0.0.1"]}, interval=1.0, failure_threshold=1))
    clock.pump([0.0, 1.0, 1.0])
    assert len(checker.checks) == 3
    assert any(e.get("log_failure") is not None for e in events)


def test_reconcile_keeps_state_starts_and_stops() -> None:
    """Reload keeps surviving servers' state, starts new ones spread, stops removed ones."""
    h = Harness(auto=False)
    h.manager.apply_config(make_config({"eu": ["10.0.0.1", "10.0.0.2"]}, interval=10.0, failure_threshold=1))
    h.clock.pump([0.0, 5.0])
    kept = h.manager.get(key("10.0.0.1"))
    assert kept is not None and not kept.healthy
    h.clock.advance(1)  # t=6

    h.manager.apply_config(make_config({"eu": ["10.0.0.1", "10.0.0.3"]}, interval=10.0, failure_threshold=1))
    assert h.manager.get(key("10.0.0.1")) is kept
    assert h.manager.get(key("10.0.0.2")) is None
    assert set(h.manager.states()) == {key("10.0.0.1"), key("10.0.0.3")}
    h.clock.pump([0.0] + [1.0] * 20)  # up to t=26
    assert h.checker.started_at("10.0.0.1") == [0.0, 10.0, 20.0]  # schedule untouched
    assert h.checker.started_at("10.0.0.2") == [5.0]  # stopped
    assert h.checker.started_at("10.0.0.3") == [11.0, 21.0]  # offset 10*1/2 after reload


def test_reconcile_restarts_changed_settings_and_keeps_state() -> None:
    """Changed check settings restart the schedule with the new interval; state survives."""
    h = Harness(auto=True)
    h.manager.apply_config(make_config({"eu": ["10.0.0.1"]}, interval=10.0))
    h.clock.pump([0.0, 10.0, 1.0])  # checks at 0 and 10; t=11
    before = h.manager.get(key("10.0.0.1"))
    assert before is not None and before.consecutive_successes == 2
    h.manager.apply_config(make_config({"eu": ["10.0.0.1"]}, interval=3.0, path="/other"))
    h.clock.pump([0.0] + [1.0] * 7)  # t=18
    assert h.checker.started_at("10.0.0.1") == [0.0, 10.0, 11.0, 14.0, 17.0]
    assert h.checker.checks[-1].settings.path == "/other"
    assert h.manager.get(key("10.0.0.1")) is before
    assert before.consecutive_successes == 5


def test_restart_waits_for_check_in_flight() -> None:
    """A settings change while a check runs starts the new schedule only after it finishes."""
    h = Harness()
    h.manager.apply_config(make_config({"eu": ["10.0.0.1"]}, interval=10.0, timeout=30.0))
    h.clock.advance(0)
    h.manager.apply_config(make_config({"eu": ["10.0.0.1"]}, interval=5.0, timeout=30.0))
    h.clock.advance(0)
    h.clock.advance(3)
    assert len(h.checker.checks) == 1  # the old check is still running
    h.checker.checks[0].succeed()
    assert len(h.checker.checks) == 1
    h.clock.advance(0)
    assert h.checker.started_at("10.0.0.1") == [0.0, 3.0]
    h.checker.checks[1].succeed()
    h.clock.advance(5)
    assert h.checker.started_at("10.0.0.1") == [0.0, 3.0, 8.0]


def test_remove_server_cancels_check_in_flight() -> None:
    """remove_server cancels the running check and reports nothing more for that key."""
    h = Harness()
    h.manager.apply_config(make_config({"eu": ["10.0.0.1"]}, interval=10.0))
    h.clock.advance(0)
    h.manager.remove_server(key("10.0.0.1"))
    assert h.checker.checks[0].cancelled
    assert h.results == []
    assert h.manager.get(key("10.0.0.1")) is None
    h.clock.advance(100)
    assert len(h.checker.checks) == 1
    h.manager.remove_server(key("10.0.0.1"))  # unknown keys are ignored


def test_add_server_unhealthy_until_first_pass() -> None:
    """A dynamically added server with initial_healthy=False turns healthy at its first pass."""
    h = Harness()
    k = ServerKey("eu", "2001:db8::5", 8080)
    h.manager.add_server(
        k, ServerConfig("2001:db8::5", 8080), HealthCheckConfig(interval=5.0), initial_healthy=False
    )
    health = h.manager.get(k)
    assert health is not None and not health.healthy and health.status == "unknown"
    h.clock.advance(0)
    h.checker.checks[0].succeed()
    assert health.healthy
    assert h.changes == [(k, True)]


def test_add_server_survives_reload() -> None:
    """Servers added with add_server are not removed by apply_config."""
    h = Harness(auto=True)
    h.manager.apply_config(make_config({"eu": ["10.0.0.1"]}))
    dyn = ServerKey("eu", "10.0.9.9", 80)
    h.manager.add_server(dyn, ServerConfig("10.0.9.9"), HealthCheckConfig())
    h.manager.apply_config(make_config({"eu": ["10.0.0.2"]}))
    assert set(h.manager.states()) == {dyn, key("10.0.0.2")}


def test_first_round_complete() -> None:
    """first_round_complete turns true once every initial server finished one check."""
    h = Harness()
    assert not h.manager.first_round_complete
    waiter = h.manager.when_first_round_complete()
    fired: List[Any] = []
    waiter.addCallback(fired.append)
    h.manager.apply_config(
        make_config({"eu": ["10.0.0.1", "10.0.0.2", "10.0.0.3"]}, interval=9.0, timeout=8.0)
    )
    h.clock.pump([0.0, 3.0, 3.0])
    h.checker.checks[0].succeed()
    h.checker.checks[1].fail()
    assert not h.manager.first_round_complete and fired == []
    h.manager.remove_server(key("10.0.0.3"))  # removed before it finished: not waited for
    assert h.manager.first_round_complete
    assert fired == [None]
    assert h.manager.when_first_round_complete().called


def test_first_round_with_no_servers_is_complete() -> None:
    """An empty first config completes the first round at once."""
    h = Harness()
    h.manager.apply_config(Config())
    assert h.manager.first_round_complete


def test_first_round_waiter_can_be_cancelled() -> None:
    """Cancelling a when_first_round_complete Deferred forgets it."""
    h = Harness(auto=True)
    waiter = h.manager.when_first_round_complete()
    waiter.addErrback(lambda f: f.trap(CancelledError))
    waiter.cancel()
    h.manager.apply_config(make_config({"eu": ["10.0.0.1"]}))
    h.clock.advance(0)
    assert h.manager.first_round_complete


def test_states_is_read_only() -> None:
    """states() is a read-only live view."""
    h = Harness()
    h.manager.apply_config(make_config({"eu": ["10.0.0.1"]}))
    view = h.manager.states()
    with pytest.raises(TypeError):
        view[key("10.0.0.9")] = ServerHealth()  # type: ignore[index]
    h.manager.apply_config(make_config({"eu": ["10.0.0.2"]}))
    assert list(view) == [key("10.0.0.2")]


def test_stop_waits_for_checks_and_closes_checker() -> None:
    """stop() halts loops, waits for the check in flight, then closes the checker."""
    h = Harness()
    h.manager.apply_config(make_config({"eu": ["10.0.0.1", "10.0.0.2"]}, interval=10.0, timeout=8.0))
    h.clock.advance(0)  # first server's check is running, second not started yet
    stopped = h.manager.stop()
    second = h.manager.stop()
    assert not stopped.called and not h.checker.closed
    h.clock.advance(7)
    assert len(h.checker.checks) == 1
    h.checker.checks[0].succeed()
    assert stopped.called and second.called and h.checker.closed
    assert h.results == [(key("10.0.0.1"), True, 7.0)]
    h.clock.advance(100)
    assert len(h.checker.checks) == 1
    assert h.manager.stop().called
    with pytest.raises(RuntimeError):
        h.manager.apply_config(make_config({"eu": ["10.0.0.1"]}))
