"""The text formats the API accepts, as regular expressions shared by the server and its document.

Each request field that is text with a format (an IP address, a duration, a
member address) is checked by the server with exactly the expression the
OpenAPI document publishes as that field's ``pattern``, so a client (or a
fuzzer) that follows the document is accepted and one that does not is
refused: the document cannot be looser or stricter than the server.

The expressions use only what ECMA-262, Python's :mod:`re` and Rust's
``regex`` read the same way: ASCII character classes (``[0-9]``, never
``\\d``, which is Unicode in Python), groups, alternation and counted
repetition.  The document anchors them with ``^...$``; the server matches
them with :func:`re.fullmatch` (so a trailing newline, which Python's ``$``
would let through, is refused as the document's readers refuse it).
"""

from __future__ import annotations

import functools
import re
from typing import List, Pattern

__all__ = [
    "IPV4", "IPV6", "IP_ADDRESS", "UNUSABLE_ADDRESS", "MEMBER_ADDRESS", "NON_BLANK",
    "SIGNAL_NUMBER_MAX", "integer_range", "duration", "anchored",
    "is_ip_address", "is_usable_address", "is_member_address", "is_duration",
]

_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_HEXTET = "[0-9a-fA-F]{1,4}"

#: An IPv4 address in dotted-quad form, no leading zeros (what :mod:`ipaddress` reads).
IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"


def _ipv6() -> str:
    """IPv6 text as :func:`ipaddress.ip_address` reads it, without a zone (``%eth0``).

    Eight hextets; or six and an IPv4 tail; or either with ``::`` standing
    for at least one zero hextet (``k`` hextets before it, at most ``7 - k``
    after it, or ``5 - k`` and an IPv4 tail).
    """
    forms = [rf"(?:{_HEXTET}:){{7}}{_HEXTET}", rf"(?:{_HEXTET}:){{6}}{IPV4}"]
    for before in range(8):
        left = "" if before == 0 else rf"(?:{_HEXTET}:){{{before - 1}}}{_HEXTET}"
        after = 7 - before
        right = "" if after == 0 else rf"(?:{_HEXTET}(?::{_HEXTET}){{0,{after - 1}}})?"
        forms.append(f"{left}::{right}")
        if before <= 5:
            forms.append(rf"{left}::(?:{_HEXTET}:){{0,{5 - before}}}{IPV4}")
    return "(?:" + "|".join(forms) + ")"


#: An IPv6 address in any spelling :mod:`ipaddress` reads (upper or lower case,
#: compressed or not, with an IPv4 tail), without a zone.
IPV6 = _ipv6()
#: An IPv4 or IPv6 address.
IP_ADDRESS = f"(?:{IPV4}|{IPV6})"
#: Searched in an address matching :data:`IP_ADDRESS`: it is unspecified
#: (``0.0.0.0``, ``::`` in any spelling) or multicast (224.0.0.0/4, ff00::/8),
#: so no server can be reached at it.
UNUSABLE_ADDRESS = r"^(?:0\.0\.0\.0|[0:.]+|2(?:2[4-9]|3[0-9])\..*|[fF][fF][0-9a-fA-F]{2}:.*)$"


def integer_range(low: int, high: int) -> str:
    """An expression matching the decimal integers ``low``..``high`` (no sign, no leading zeros)."""
    if not 0 <= low <= high:
        raise ValueError(f"bad range {low}..{high}")
    parts: List[str] = []
    for digits in range(len(str(low)), len(str(high)) + 1):
        first = max(low, 10 ** (digits - 1) if digits > 1 else 0)
        last = min(high, 10**digits - 1)
        if first <= last:
            parts.append(_same_length(str(first), str(last)))
    return "(?:" + "|".join(parts) + ")"


def _digit_class(low: str, high: str) -> str:
    return low if low == high else f"[{low}-{high}]"


def _same_length(low: str, high: str) -> str:
    """Integers from ``low`` to ``high``, spelled with the same number of digits."""
    if not low:
        return ""
    if low[0] == high[0]:
        return low[0] + _same_length(low[1:], high[1:])
    rest = len(low) - 1
    any_rest = f"[0-9]{{{rest}}}" if rest else ""
    if low[1:] == "0" * rest and high[1:] == "9" * rest:
        return _digit_class(low[0], high[0]) + any_rest
    options = [low[0] + "(?:" + _same_length(low[1:], "9" * rest) + ")"]
    if int(high[0]) - int(low[0]) > 1:
        options.append(_digit_class(str(int(low[0]) + 1), str(int(high[0]) - 1)) + any_rest)
    options.append(high[0] + "(?:" + _same_length("0" * rest, high[1:]) + ")")
    return "(?:" + "|".join(options) + ")"


#: A member's cluster address: ``IPv4:port`` or ``[IPv6]:port``, port 1-65535.
MEMBER_ADDRESS = rf"(?:{IPV4}|\[{IPV6}\]):{integer_range(1, 65535)}"

#: Searched in a text that must not be blank: one character that is not ASCII white space.
NON_BLANK = "[^ \\t\\n\\r\\f\\v]"

#: Largest magnitude of a predictive signal's value and threshold (percentages in practice).
SIGNAL_NUMBER_MAX = 1_000_000


def duration(maximum: int) -> str:
    """Durations from 1 s to ``maximum`` seconds (a whole number of hours), as text.

    Go-style parts in the order h, m, s with whole numbers, the seconds
    optionally with up to 9 decimals: ``"30s"``, ``"90s"``, ``"5m"``,
    ``"1h30m"``, ``"1m30.5s"``.  The first part may be as large as the
    maximum allows; minutes and seconds after a larger unit stay under 60
    (as :func:`opengslb.config.durations.format_duration` writes them), so
    every matching text is within range and no other text is accepted.
    """
    if maximum % 3600 or maximum < 7200:
        raise ValueError("the maximum must be a whole number of hours, at least 2")
    hours, minutes = maximum // 3600, maximum // 60
    fraction = r"(?:\.[0-9]{1,9})?"
    sub_minutes = "(?:[1-5]?[0-9]m)?"
    sub_seconds = f"(?:[1-5]?[0-9]{fraction}s)?"
    forms = [
        f"{integer_range(1, hours - 1)}h{sub_minutes}{sub_seconds}", f"{hours}h",
        f"{integer_range(1, minutes - 1)}m{sub_seconds}", f"{minutes}m",
        f"{integer_range(1, maximum - 1)}{fraction}s", f"{maximum}s",
    ]
    return "(?:" + "|".join(forms) + ")"


def anchored(pattern: str) -> str:
    """``pattern`` as a document's ``pattern`` keyword: the whole text must match."""
    return f"^{pattern}$"


@functools.lru_cache(maxsize=8)
def _duration_regex(maximum: int) -> Pattern[str]:
    return re.compile(duration(maximum))


_IP = re.compile(IP_ADDRESS)
_UNUSABLE = re.compile(UNUSABLE_ADDRESS)
_MEMBER = re.compile(MEMBER_ADDRESS)


def is_ip_address(text: object) -> bool:
    """True when ``text`` is a string matching :data:`IP_ADDRESS` (the whole of it)."""
    return isinstance(text, str) and _IP.fullmatch(text) is not None


def is_usable_address(text: object) -> bool:
    """True for an IP address that is neither unspecified nor multicast."""
    return is_ip_address(text) and _UNUSABLE.search(str(text)) is None


def is_member_address(text: object) -> bool:
    """True when ``text`` is a string matching :data:`MEMBER_ADDRESS`."""
    return isinstance(text, str) and _MEMBER.fullmatch(text) is not None


def is_duration(text: object, maximum: int) -> bool:
    """True when ``text`` is a string matching :func:`duration` of ``maximum``."""
    return isinstance(text, str) and _duration_regex(maximum).fullmatch(text) is not None
