"""Structured logging: one JSON object (or one text line) per event.

twistd asks for the initial log observer through its ``logger`` option; the
plugin's options name :func:`process_observer` there (unless the operator gave
``--logger``) after configuring it with the file's format and level, and a
reload changes both through :meth:`LogObserver.configure`.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from typing import IO, Any, Dict

from twisted.logger import ILogObserver, LogLevel, formatEvent
from zope.interface import implementer

LEVELS = {"debug": LogLevel.debug, "info": LogLevel.info, "warn": LogLevel.warn,
          "error": LogLevel.error}
_LEVEL_NAMES = {LogLevel.debug: "debug", LogLevel.info: "info", LogLevel.warn: "warn",
                LogLevel.error: "error", LogLevel.critical: "error"}
_ORDER = [LogLevel.debug, LogLevel.info, LogLevel.warn, LogLevel.error, LogLevel.critical]


def _rfc3339(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _plain(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


@implementer(ILogObserver)
class LogObserver:
    """Writes events at or above ``level`` to ``stream`` as json or text lines."""

    def __init__(self, stream: IO[str], fmt: str = "json", level: str = "info") -> None:
        self._stream = stream
        self.configure(fmt, level)

    def configure(self, fmt: str, level: str) -> None:
        """Change format (json|text) and minimum level (debug|info|warn|error)."""
        self._format = fmt
        self._minimum = _ORDER.index(LEVELS[level])

    def __call__(self, event: Dict[str, Any]) -> None:
        level = event.get("log_level", LogLevel.info)
        if event.get("log_namespace") == "log_legacy" and level == LogLevel.info:
            level = LogLevel.debug  # Twisted's own chatter ("Port closed", "starting on") is debug detail
        if _ORDER.index(level) < self._minimum:
            return
        message = formatEvent(event) or ""
        failure = event.get("log_failure")
        if failure is not None:
            message = f"{message}\n{failure.getTraceback()}" if self._format == "text" else message
        timestamp = _rfc3339(event.get("log_time") or 0.0)
        if self._format == "text":
            line = f"{timestamp} [{_LEVEL_NAMES[level]}] {event.get('log_namespace', '-')}: {message}"
        else:
            record: Dict[str, Any] = {"time": timestamp, "level": _LEVEL_NAMES[level],
                                      "message": message,
                                      "logger": event.get("log_namespace", "-")}
            for key, value in event.items():
                if not key.startswith("log_") and key not in ("format", "message", "time", "level",
                                                              "isError", "system", "why"):
                    record[key] = _plain(value)
            if failure is not None:
                record["error"] = failure.getErrorMessage()
                record["traceback"] = failure.getTraceback()
            line = json.dumps(record, ensure_ascii=False, default=str)
        self._stream.write(line + "\n")
        self._stream.flush()


_PROCESS_OBSERVER: Dict[str, LogObserver] = {}


def process_observer() -> LogObserver:
    """The process's one log observer (twistd's ``--logger`` factory).

    Logging is process-wide by nature: twistd imports this factory by name, so
    the observer it returns is kept here and reconfigured in place by the
    plugin options (start-up) and by reloads.
    """
    if "observer" not in _PROCESS_OBSERVER:
        _PROCESS_OBSERVER["observer"] = LogObserver(sys.stdout)
    return _PROCESS_OBSERVER["observer"]
