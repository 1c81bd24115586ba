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


# --- hostile input: bounded, and never anything but ValueError -----------------------------


@pytest.mark.parametrize(
    "value, fragment",
    [
        ("9" * 400 + "s", "longer than 64 characters"),
        ("9" * 400, "longer than 64 characters"),
        (" " * 1000 + "1s", "longer than 64 characters"),
        ("1h" * 40, "longer than 64 characters"),
        ("2562048h", "must be at most 2562047h (about 292 years)"),
        ("9223372037s", "must be at most 2562047h"),
        (10**400, "got a 401-digit number of seconds"),
        (9_223_372_037, "got 9223372037s"),
        (-(10**400), "negative"),
        (float("inf"), "not inf"),
        (float("nan"), "not nan"),
        (1e300, "needs a unit"),
    ],
)
def test_hostile_values_are_refused_with_a_short_message(value: Any, fragment: str) -> None:
    """Huge numbers and long text are a ValueError (never OverflowError), and the message stays short."""
    with pytest.raises(ValueError) as info:
        parse_duration(value)
    assert fragment in str(info.value)
    assert len(str(info.value)) < 200


def test_go_limit_is_accepted() -> None:
    """Go's largest duration (2^63-1 ns) is the ceiling: just under it parses, as integer seconds too."""
    assert parse_duration("2562047h") == 2562047 * 3600.0
    assert parse_duration(9_223_372_036) == 9_223_372_036.0


def test_maximum_narrows_the_limit() -> None:
    """``maximum`` lowers the ceiling (and the message names it); it never raises it above Go's."""
    assert parse_duration("24h", maximum=86400) == 86400.0
    with pytest.raises(ValueError, match=r"must be at most 24h \(got 25h\)"):
        parse_duration("25h", maximum=86400)
    with pytest.raises(ValueError, match=r"must be at most 24h \(got 86401s\)"):
        parse_duration(86401, maximum=86400)
    with pytest.raises(ValueError, match="2562047h"):
        parse_duration("2562048h", maximum=float("inf"))


_UNITS = st.sampled_from(["ns", "us", "µs", "ms", "s", "m", "h", "", "d", "x"])
_HUGE = st.integers(min_value=0, max_value=500).map(lambda k: 10**k - 1)  # 0, 9, 99, ... 500 nines
_NUMBERS = st.one_of(
    st.integers(min_value=0, max_value=10**80).map(str),
    _HUGE.map(str),
    st.from_regex(r"[0-9]{0,30}\.[0-9]{0,30}", fullmatch=True),
)
_DURATION_LIKE = st.lists(st.tuples(_NUMBERS, _UNITS), min_size=1, max_size=6).map(
    lambda parts: "".join(n + u for n, u in parts)
)


@given(st.one_of(st.text(max_size=300), _DURATION_LIKE, st.integers(), _HUGE, _HUGE.map(lambda n: -n)))
def test_parse_raises_only_value_error(value: Any) -> None:
    """For any str or int, parse_duration returns a finite number within Go's limit or raises
    ValueError: never OverflowError or anything else (the API hands it raw request values)."""
    try:
        seconds = parse_duration(value)
    except ValueError as error:
        assert len(str(error)) < 300
        return
    assert 0.0 <= seconds <= 2**63 / 1e9
    assert seconds == seconds and seconds != float("inf")


@given(st.one_of(st.text(max_size=80), st.integers()), st.floats(min_value=0, max_value=10**7))
def test_parse_respects_maximum(value: Any, maximum: float) -> None:
    """Whatever the value, a result never exceeds ``maximum``."""
    try:
        seconds = parse_duration(value, maximum=maximum)
    except ValueError:
        return
    assert seconds <= maximum


def test_format_non_finite() -> None:
    """format_duration does not raise on infinity or NaN (a message may show them)."""
    assert format_duration(float("inf")) == "inf"
    assert format_duration(float("nan")) == "nan"
