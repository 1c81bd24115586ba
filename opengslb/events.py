"""The last notable events, kept in memory for the status page and ``GET /api/v1/events``.

:class:`RecentEvents` is a Twisted log observer: every log event that
carries an ``event`` field naming a notable kind (server up/down, failover,
leadership, reload outcome, veto, override, registration, stale answer,
config drift) is kept, newest last, in a ring of :data:`KEEP` entries.  The
log stays the record; this is a window onto its most recent lines, so the
page and the log always tell the same story.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Deque, Dict, List, Mapping

from twisted.logger import ILogObserver, formatEvent
from zope.interface import implementer

#: How many events are kept.
KEEP = 50

#: The ``event`` values worth showing to the people on call.
NOTABLE = frozenset({
    "server_up", "server_down", "failover", "stale_answer",
    "leadership", "leadership_handover", "leadership_handover_failed",
    "member_added", "member_removed", "config_drift",
    "reload", "api_reload", "reload_restart_required",
    "overwatch_veto", "overwatch_veto_lifted", "predictive_bleed", "predictive_clear",
    "override_set", "override_deleted",
    "service_registered", "service_deregistered", "service_expired",
    "started",
})


@implementer(ILogObserver)
class RecentEvents:
    """A log observer keeping the last :data:`KEEP` notable events.

    Call it with a log event (``globalLogPublisher.addObserver(recent)``);
    :meth:`snapshot` returns them newest first as JSON-ready dicts.
    """

    def __init__(self, keep: int = KEEP) -> None:
        self._events: Deque[Dict[str, Any]] = deque(maxlen=keep)

    def __call__(self, event: Mapping[str, Any]) -> None:
        kind = event.get("event")
        if kind not in NOTABLE:
            return
        level = event.get("log_level")
        self._events.append({
            "time": float(event.get("log_time") or 0.0),
            "kind": kind,
            "level": getattr(level, "name", "info"),
            "message": formatEvent(dict(event)),
        })

    def snapshot(self) -> List[Dict[str, Any]]:
        """The kept events, newest first: ``{"time", "kind", "level", "message"}``."""
        return list(reversed(self._events))
