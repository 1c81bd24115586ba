"""Go-style durations: ``"500ms"``, ``"30s"``, ``"5m"``, ``"1h"``, ``"1m30s"``.

The configuration file and the API spell durations the way Go's
``time.ParseDuration`` does: one or more ``<number><unit>`` parts, units
``ns``, ``us`` (or ``µs``), ``ms``, ``s``, ``m``, ``h``, numbers possibly
with a fraction (``"1.5s"``).  A bare ``"0"`` means zero.  Where the contract
allows it (SPEC §9: "durations in requests accept ``"30s"`` or integer
seconds"), a plain integer is a number of seconds.

Durations here are never negative: nothing OpenGSLB configures runs
backwards in time, so a sign is rejected rather than silently accepted.

Hostile input is cheap: text longer than :data:`MAX_DURATION_TEXT`
characters is refused before it is parsed, and anything above
:data:`MAX_DURATION` (Go's own limit, 2^63-1 ns, about 292 years) is refused
before it is turned into a float, so :func:`parse_duration` raises nothing
but ``ValueError`` for any ``str`` or ``int`` (no ``OverflowError``, no
infinity).  Callers bound each setting more tightly (an interval of a day,
a TTL of a week, ...).
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Union

__all__ = ["MAX_DURATION", "MAX_DURATION_TEXT", "parse_duration", "format_duration"]

#: The longest duration accepted, in nanoseconds: Go's ``time.Duration`` limit.
_MAX_NS = 2**63 - 1
#: The same limit in seconds (about 292 years).
MAX_DURATION = _MAX_NS / 1_000_000_000
#: The longest text accepted (``"1h2m3s4ms5us6ns"`` is 15 characters).
MAX_DURATION_TEXT = 64

_NS_PER_UNIT = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5 MICRO SIGN, as Go accepts it
    "μs": 1_000,  # U+03BC GREEK SMALL LETTER MU, likewise
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}

# One ``<number><unit>`` part.  Longer units are listed first so that "ms"
# is not read as "m" followed by a stray "s".
_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|h|m|s)")
_DURATION = re.compile(rf"(?:{_PART.pattern})+")

_EXAMPLES = "e.g. '500ms', '30s', '5m', '1h', '1m30s'"


def parse_duration(value: Union[str, int], *, allow_int: bool = True,
                   maximum: float = MAX_DURATION) -> float:
    """Return ``value`` as a number of seconds.

    :param value: a Go-style duration string, or (when ``allow_int``) a
        non-negative ``int`` counting seconds.  ``bool`` is never accepted,
        although Python counts it as an ``int``.
    :param allow_int: whether a plain integer is accepted.
    :param maximum: the longest duration accepted, in seconds; never more
        than :data:`MAX_DURATION`, whatever is passed.
    :returns: the duration in seconds, ``>= 0``.
    :raises ValueError: with a message fit to show an operator, for any
        other type, an empty string, a negative value, a number without a
        unit (``"30"``), an unknown unit (``"30sec"``), text longer than
        :data:`MAX_DURATION_TEXT` characters, or a value above ``maximum``
        (checked before any float conversion).  Never any other exception, whatever the
        ``str`` or ``int`` (the API hands it request values as they come).
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration ({_EXAMPLES}), not a boolean")
    limit_ns = _MAX_NS
    if maximum < MAX_DURATION:  # NaN compares False and keeps Go's limit
        limit_ns = int(maximum * 1_000_000_000) if maximum > 0 else 0
    if isinstance(value, int):
        if not allow_int:
            raise ValueError(f"a duration needs a unit: write '{_shown_int(value)}'")
        if value < 0:
            raise ValueError(f"a duration must not be negative (got {_shown_int(value)})")
        if value * 1_000_000_000 > limit_ns:  # compared as integers: float() could overflow
            raise ValueError(f"must be at most {_limit(limit_ns)} (got {_shown_int(value)})")
        return float(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"expected a duration ({_EXAMPLES}), not {value}")
        raise ValueError(f"a duration needs a unit: write '{value:g}s'")
    if not isinstance(value, str):
        raise ValueError(f"expected a duration ({_EXAMPLES}), not {type(value).__name__}")
    if len(value) > MAX_DURATION_TEXT * 4:  # not even worth stripping
        raise ValueError(f"invalid duration {_shown(value)}: longer than {MAX_DURATION_TEXT} characters")
    text = value.strip()
    if not text:
        raise ValueError(f"empty duration ({_EXAMPLES})")
    if len(text) > MAX_DURATION_TEXT:
        raise ValueError(f"invalid duration {_shown(value)}: longer than {MAX_DURATION_TEXT} characters")
    if text[0] in "+-":
        if text[0] == "-":
            raise ValueError(f"a duration must not be negative (got {_shown(value)})")
        raise ValueError(f"invalid duration {_shown(value)}: drop the '+' sign")
    if text == "0":
        return 0.0
    if not _DURATION.fullmatch(text):
        if re.fullmatch(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+", text):
            raise ValueError(f"missing unit in duration {_shown(value)} (write '{text}s' for seconds)")
        raise ValueError(
            f"invalid duration {_shown(value)}: use numbers with units ns, us, ms, s, m, h ({_EXAMPLES})"
        )
    total_ns = Fraction(0)
    for match in _PART.finditer(text):
        total_ns += Fraction(match.group(1)) * _NS_PER_UNIT[match.group(2)]
    if total_ns > limit_ns:
        shown = format_duration(float(total_ns / 1_000_000_000)) if total_ns <= _MAX_NS else _shown(value)
        raise ValueError(f"must be at most {_limit(limit_ns)} (got {shown})")
    return min(float(total_ns / 1_000_000_000), maximum)  # min: no rounding past maximum


def _limit(limit_ns: int) -> str:
    """The largest duration accepted, as a message spells it."""
    if limit_ns == _MAX_NS:
        return "2562047h (about 292 years)"
    return format_duration(limit_ns / 1_000_000_000)


def _shown(text: str) -> str:
    """``text`` quoted for a message, cut short when long (the API echoes messages)."""
    return repr(text) if len(text) <= 40 else repr(text[:37]) + "..."


def _shown_int(value: int) -> str:
    """Integer seconds for a message: ``"30s"``, or how many digits there are when there are many."""
    if -10**20 < value < 10**20:
        return f"{value}s"
    size = abs(value)
    digits = max(1, size.bit_length() * 30103 // 100000)  # log10(2) ~ 0.30103: a close guess
    while 10**digits <= size:
        digits += 1
    while digits > 1 and 10 ** (digits - 1) > size:
        digits -= 1
    return f"a {digits}-digit number of seconds"


def _decimal(whole_and_fraction: int, scale: int) -> str:
    """``whole_and_fraction / scale`` as a short decimal string (no trailing zeros)."""
    whole, rest = divmod(whole_and_fraction, scale)
    if not rest:
        return str(whole)
    digits = len(str(scale)) - 1
    return f"{whole}.{rest:0{digits}d}".rstrip("0")


def format_duration(seconds: float) -> str:
    """Spell ``seconds`` the way an operator writes it: the inverse of :func:`parse_duration`.

    Rounded to the nanosecond.  Zero parts are left out (``3605`` → ``"1h5s"``),
    sub-second values use the largest unit that keeps them whole or short
    (``0.5`` → ``"500ms"``, ``0.0015`` → ``"1.5ms"``), and a negative input
    gets a leading ``-`` (never produced by configuration, but not an error);
    infinity and NaN are spelled as Python spells them.

    >>> format_duration(90), format_duration(0.5), format_duration(0)
    ('1m30s', '500ms', '0s')
    """
    if not math.isfinite(seconds):
        return str(seconds)
    ns = round(seconds * 1_000_000_000)
    if ns < 0:
        return "-" + format_duration(-seconds)
    if ns == 0:
        return "0s"
    if ns < 1_000:
        return f"{ns}ns"
    if ns < 1_000_000:
        return _decimal(ns, 1_000) + "us"
    if ns < 1_000_000_000:
        return _decimal(ns, 1_000_000) + "ms"
    hours, rest = divmod(ns, _NS_PER_UNIT["h"])
    minutes, rest = divmod(rest, _NS_PER_UNIT["m"])
    parts = []
    if hours:
        parts.append(f"{hours}h")
    if minutes:
        parts.append(f"{minutes}m")
    if rest:
        parts.append(_decimal(rest, 1_000_000_000) + "s")
    return "".join(parts)
