"""Timestamps as the API spells them: RFC 3339 UTC, whole seconds, or null."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Optional

__all__ = ["rfc3339"]


def rfc3339(seconds: Optional[float]) -> Optional[str]:
    """``seconds`` since the Unix epoch as ``"2026-11-26T09:40:27Z"``; ``None`` stays ``None``.

    Fractions of a second are dropped (rounded down).  The health state
    records ``reactor.seconds()``, which is Unix time with the real reactor.
    """
    if seconds is None:
        return None
    moment = datetime.fromtimestamp(int(seconds // 1), tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
