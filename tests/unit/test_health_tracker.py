"""Tests for opengslb.health.tracker: ServerKey and the threshold rules."""

from __future__ import annotations

from typing import List

from hypothesis import given
from hypothesis import strategies as st

from opengslb.health.tracker import ServerHealth, ServerKey


def _trailing_run(results: List[bool], value: bool) -> int:
    """How many of the last results equal ``value`` in a row."""
    count = 0
    for result in reversed(results):
        if result != value:
            break
        count += 1
    return count


def test_server_key_endpoint() -> None:
    """ServerKey.endpoint spells address:port."""
    assert ServerKey("eu", "10.0.0.1", 8080).endpoint == "10.0.0.1:8080"
    assert ServerKey("eu", "2001:db8::1", 443).endpoint == "2001:db8::1:443"


def test_new_server_is_healthy_and_unknown() -> None:
    """A configured server starts healthy with status unknown until a check finishes."""
    health = ServerHealth(now=5.0)
    assert health.healthy is True
    assert health.status == "unknown"
    assert health.last_check is None
    assert health.last_healthy == 5.0
    assert (health.consecutive_failures, health.consecutive_successes) == (0, 0)
    assert health.last_error is None


def test_initially_unhealthy_has_no_last_healthy() -> None:
    """A server that starts unhealthy has never been seen healthy."""
    health = ServerHealth(initial_healthy=False, now=5.0)
    assert health.healthy is False
    assert health.status == "unknown"
    assert health.last_healthy is None


def test_failures_reach_threshold() -> None:
    """failure_threshold consecutive failures make a healthy server unhealthy, once."""
    health = ServerHealth(now=0.0)
    assert health.record(False, 1.0, "HTTP 503", 3, 2) is False
    assert health.record(False, 2.0, "HTTP 503", 3, 2) is False
    assert health.healthy and health.status == "healthy"
    assert health.last_healthy == 2.0  # still healthy while below the threshold
    assert health.record(False, 3.0, "connection refused", 3, 2) is True
    assert health.healthy is False
    assert health.status == "unhealthy"
    assert health.last_error == "connection refused"
    assert health.last_check == 3.0
    assert health.last_healthy == 2.0
    assert health.consecutive_failures == 3
    assert health.record(False, 4.0, "x", 3, 2) is False
    assert health.consecutive_failures == 4


def test_success_resets_failure_streak() -> None:
    """A passing check in between restarts the failure count."""
    health = ServerHealth()
    health.record(False, 1.0, "e", 2, 1)
    health.record(True, 2.0, None, 2, 1)
    assert health.record(False, 3.0, "e", 2, 1) is False
    assert health.healthy
    assert health.consecutive_failures == 1
    assert health.consecutive_successes == 0


def test_recovery_needs_success_threshold() -> None:
    """success_threshold consecutive passes bring an unhealthy server back; last_error clears."""
    health = ServerHealth()
    health.record(False, 1.0, "e", 1, 2)
    assert not health.healthy
    assert health.record(True, 2.0, None, 1, 2) is False
    assert not health.healthy
    assert health.last_error is None
    assert health.last_healthy == 2.0  # a passing check counts as seen healthy
    assert health.record(True, 3.0, None, 1, 2) is True
    assert health.healthy
    assert health.consecutive_successes == 2


def test_started_unhealthy_becomes_healthy_on_first_pass() -> None:
    """A server that starts unhealthy is healthy after its first passing check (SPEC §5)."""
    health = ServerHealth(initial_healthy=False)
    assert health.record(False, 1.0, "e", 3, 5) is False
    assert health.record(True, 2.0, None, 3, 5) is True
    assert health.healthy
    # afterwards the thresholds rule as usual
    for t in range(3):
        health.record(False, 3.0 + t, "e", 3, 5)
    assert not health.healthy
    for t in range(4):
        assert health.record(True, 10.0 + t, None, 3, 5) is False
    assert health.record(True, 20.0, None, 3, 5) is True


results_strategy = st.lists(st.booleans(), max_size=60)


@given(
    results=results_strategy,
    failure_threshold=st.integers(1, 6),
    success_threshold=st.integers(1, 6),
    initial_healthy=st.booleans(),
)
def test_flips_exactly_per_thresholds(
    results: List[bool], failure_threshold: int, success_threshold: int, initial_healthy: bool
) -> None:
    """For any result sequence, healthy flips exactly when a threshold streak completes."""
    health = ServerHealth(initial_healthy=initial_healthy, now=0.0)
    seen: List[bool] = []
    for step, success in enumerate(results, start=1):
        before = health.healthy
        ever_passed = any(seen)
        seen.append(success)
        if before:
            expect_flip = not success and _trailing_run(seen, False) == failure_threshold
        else:
            expect_flip = success and (
                _trailing_run(seen, True) == success_threshold or (not initial_healthy and not ever_passed)
            )
        flipped = health.record(
            success, float(step), None if success else f"e{step}", failure_threshold, success_threshold
        )
        assert flipped == expect_flip
        assert health.healthy == (before != expect_flip)
        assert health.consecutive_failures == _trailing_run(seen, False)
        assert health.consecutive_successes == _trailing_run(seen, True)
        assert health.last_check == float(step)
        assert health.status == ("healthy" if health.healthy else "unhealthy")
        assert health.last_error == (None if success else f"e{step}")
        if success or health.healthy:
            assert health.last_healthy == float(step)
