"""Where the agent's predictive signals come from (SPEC §7.6).

This is the place the distributed-health work fills in.  The agent asks a
:class:`SignalSource` for the signal to send with every heartbeat and tells
it the result of every local check.  :class:`NoSignals`, used now, never
signals.

The sampler to come: CPU (``psutil.cpu_percent``) and memory
(``psutil.virtual_memory().percent``) of the host and the error rate of the
service's own checks over ``predictive_health.error_rate.window``, compared
with the thresholds of :class:`~opengslb.config.agent.AgentThresholds`
(``config.predictive_health``).  When one crosses its threshold it returns
``{"type": "bleed", "reason": "cpu_high" | "memory_high" | "error_rate_high",
"value": <percent>, "threshold": <percent>}``; once everything is back under
its threshold, ``{"type": "clear"}`` (then ``None`` again after the clear
was sent).  The cluster replicates a heartbeat only when the signal's type
or reason changes, so sending the current bleed with every heartbeat is
cheap.  Sampling must not block the reactor (psutil's non-blocking
``cpu_percent(interval=None)`` between heartbeats).
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Protocol

from opengslb.config.agent import AgentServiceConfig

__all__ = ["NoSignals", "SignalSource"]


class SignalSource(Protocol):
    """Predictive signals for the agent's heartbeats."""

    def record_check(self, service: AgentServiceConfig, success: bool, now: float) -> None:
        """One local check of ``service`` finished (feeds the error rate)."""

    def signal_for(self, service: AgentServiceConfig, now: float) -> Optional[Dict[str, Any]]:
        """The ``signal`` to send with ``service``'s next heartbeat, or ``None`` for none."""


class NoSignals:
    """Never signals (predictive health is not sampled yet)."""

    def record_check(self, service: AgentServiceConfig, success: bool, now: float) -> None:
        return None

    def signal_for(self, service: AgentServiceConfig, now: float) -> Optional[Dict[str, Any]]:
        return None
