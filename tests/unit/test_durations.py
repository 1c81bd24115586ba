"""Go-style durations (opengslb.config.durations)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opengslb.config.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("0", 0.0),
        ("0s", 0.0),
        ("500ms", 0.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1m30s", 90.0),
        ("1h2m3s", 3723.0),
        ("1.5s", 1.5),
        (".5s", 0.5),
        ("1.5h", 5400.0),
        ("250us", 0.00025),
        ("250µs", 0.00025),
        ("100ns", 1e-7),
        ("2s500ms", 2.5),
        (" 30s ", 30.0),
    ],
)
def test_parse_valid(text: str, seconds: float) -> None:
    """Go-style strings parse to the right number of seconds."""
    assert parse_duration(text) == pytest.approx(seconds, abs=1e-12)


def test_parse_integer_is_seconds() -> None:
    """A plain integer counts seconds where integers are allowed."""
    assert parse_duration(30) == 30.0
    assert parse_duration(0) == 0.0


def test_parse_integer_refused_when_not_allowed() -> None:
    """With allow_int=False an integer is refused with the spelling to use."""
    with pytest.raises(ValueError, match="write '30s'"):
        parse_duration(30, allow_int=False)


@pytest.mark.parametrize(
    "value, fragment",
    [
        ("", "empty duration"),
        ("30", "missing unit"),
        ("1.5", "missing unit"),
        ("30sec", "invalid duration"),
        ("30 s", "invalid duration"),
        ("s", "invalid duration"),
        ("1d", "invalid duration"),
        ("-5s", "negative"),
        ("+5s", "'+'"),
        ("5m-3s", "invalid duration"),
        (-1, "negative"),
        (1.5, "write '1.5s'"),
        (True, "boolean"),
        (None, "not NoneType"),
        ([1], "not list"),
    ],
)
def test_parse_invalid(value: Any, fragment: str) -> None:
    """Everything else is a ValueError with a message that says what is wrong."""
    with pytest.raises(ValueError, match=None) as info:
        parse_duration(value)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    "seconds, text",
    [
        (0, "0s"),
        (0.5, "500ms"),
        (0.0015, "1.5ms"),
        (0.00025, "250us"),
        (1e-7, "100ns"),
        (1, "1s"),
        (1.5, "1.5s"),
        (5, "5s"),
        (30, "30s"),
        (60, "1m"),
        (90, "1m30s"),
        (3600, "1h"),
        (3605, "1h5s"),
        (5400, "1h30m"),
        (86400, "24h"),
        (-2, "-2s"),
    ],
)
def test_format(seconds: float, text: str) -> None:
    """format_duration spells values the way an operator writes them."""
    assert format_duration(seconds) == text


@given(st.integers(min_value=0, max_value=10**12))
def test_format_parse_round_trip_milliseconds(milliseconds: int) -> None:
    """Any whole number of milliseconds survives format then parse."""
    seconds = milliseconds / 1000
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds, rel=1e-12, abs=1e-12)
