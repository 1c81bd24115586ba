"""Where the agent's predictive signals come from (SPEC §7.6).

The agent asks a :class:`SignalSource` for the signal to send with every
heartbeat and tells it the result of every local check.
:class:`PredictiveSampler` is the one ``opengslb agent`` uses:

* **CPU** of the host (``psutil.cpu_percent(interval=None)``: the busy share
  since the previous sample, never blocking) against
  ``predictive_health.cpu.threshold``;
* **memory** of the host (``psutil.virtual_memory().percent``) against
  ``predictive_health.memory.threshold``;
* the **error rate** of the service's own local checks: failed checks in
  percent of the checks that finished within the last
  ``predictive_health.error_rate.window``, against
  ``predictive_health.error_rate.threshold``; it counts only once the window
  holds :attr:`PredictiveSampler.MIN_CHECKS` checks (one failed check is not
  a rate).  A service without a local check has no error rate.

A value *above* its threshold makes :meth:`PredictiveSampler.signal_for`
return ``{"type": "bleed", "reason": "cpu_high" | "memory_high" |
"error_rate_high", "value": <percent>, "threshold": <percent>}``.  The reason
in force stays while it is still over its threshold (so the cluster sees no
change and replicates nothing); when it goes under and another one is over,
the reason changes.  Once every value is back under, it returns ``{"type":
"clear", ...}`` (naming the reason that was bleeding and its value now), and
it keeps sending a plain ``{"type": "clear"}`` afterwards: a clear that
changes nothing costs the cluster nothing (it replicates a heartbeat only
when the signal's type or reason changes), and a clear lost with a failed
heartbeat is repeated.

The host samples are shared by every service of the agent and taken at most
once per :attr:`PredictiveSampler.SAMPLE_EVERY` seconds.  The samplers are
plain callables returning a percentage (or ``None`` when unavailable), so
tests and embedders inject their own: ``PredictiveSampler(thresholds,
cpu=lambda: 97.0)``.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Protocol, Tuple

from twisted.logger import Logger

from opengslb.config.agent import AgentServiceConfig, AgentThresholds

log = Logger(namespace="opengslb.agent")

__all__ = ["NoSignals", "PredictiveSampler", "SignalSource", "psutil_cpu", "psutil_memory"]

Sampler = Callable[[], Optional[float]]
ServiceId = Tuple[str, str, int]


class SignalSource(Protocol):
    """Predictive signals for the agent's heartbeats."""

    def record_check(self, service: AgentServiceConfig, success: bool, now: float) -> None:
        """One local check of ``service`` finished (feeds the error rate)."""

    def signal_for(self, service: AgentServiceConfig, now: float) -> Optional[Dict[str, Any]]:
        """The ``signal`` to send with ``service``'s next heartbeat, or ``None`` for none."""


class NoSignals:
    """Never signals."""

    def record_check(self, service: AgentServiceConfig, success: bool, now: float) -> None:
        return None

    def signal_for(self, service: AgentServiceConfig, now: float) -> Optional[Dict[str, Any]]:
        return None


def psutil_cpu() -> Optional[float]:
    """Host CPU use in percent since the previous call (non-blocking); ``None`` if unavailable."""
    try:
        import psutil

        return float(psutil.cpu_percent(interval=None))
    except Exception:  # no psutil, or the platform cannot say
        return None


def psutil_memory() -> Optional[float]:
    """Host memory use in percent; ``None`` if unavailable."""
    try:
        import psutil

        return float(psutil.virtual_memory().percent)
    except Exception:
        return None


def _service_id(service: AgentServiceConfig) -> ServiceId:
    return (service.region, service.address, service.port)


class PredictiveSampler:
    """A :class:`SignalSource` comparing CPU, memory and check error rate with thresholds.

    :param thresholds: ``predictive_health`` of the agent file.
    :param cpu: returns the host's CPU use in percent (default: psutil).
    :param memory: returns the host's memory use in percent (default: psutil).

    A sampler that raises or returns ``None`` is skipped (logged once).
    """

    #: Checks the error-rate window must hold before the rate counts.
    MIN_CHECKS = 3
    #: Host samples are reused for this many seconds (every service asks at each heartbeat).
    SAMPLE_EVERY = 1.0

    def __init__(self, thresholds: AgentThresholds, cpu: Sampler = psutil_cpu,
                 memory: Sampler = psutil_memory) -> None:
        self.thresholds = thresholds
        self._samplers: Dict[str, Sampler] = {"cpu_high": cpu, "memory_high": memory}
        self._host: Dict[str, Optional[float]] = {}
        self._sampled_at: Optional[float] = None
        self._checks: Dict[ServiceId, Deque[Tuple[float, bool]]] = {}
        self._bleeding: Dict[ServiceId, str] = {}
        self._broken: set = set()
        # cpu_percent(interval=None) measures since its previous call: start the first interval now.
        self._sample_host()

    # -- inputs ------------------------------------------------------------------

    def record_check(self, service: AgentServiceConfig, success: bool, now: float) -> None:
        window = self._checks.setdefault(_service_id(service), deque())
        window.append((now, success))
        self._prune(window, now)

    def _prune(self, window: Deque[Tuple[float, bool]], now: float) -> None:
        horizon = now - self.thresholds.error_rate_window
        while window and window[0][0] < horizon:
            window.popleft()

    def _sample_host(self) -> None:
        for reason, sampler in self._samplers.items():
            try:
                value = sampler()
            except Exception as error:
                value = None
                if reason not in self._broken:
                    self._broken.add(reason)
                    log.warn("cannot sample {what}: {error}; that signal is off",
                             what=reason.split("_")[0], error=str(error), event="agent_sampler_failed")
            self._host[reason] = value

    # -- readings -------------------------------------------------------------------

    def error_rate(self, service: AgentServiceConfig, now: float) -> Optional[float]:
        """Failed local checks of ``service`` in percent over the window, or ``None`` (too few)."""
        window = self._checks.get(_service_id(service))
        if window is None:
            return None
        self._prune(window, now)
        if len(window) < self.MIN_CHECKS:
            return None
        failed = sum(1 for _, success in window if not success)
        return 100.0 * failed / len(window)

    def readings(self, service: AgentServiceConfig, now: float) -> List[Tuple[str, Optional[float], float]]:
        """``(reason, value, threshold)`` of each signal now, in priority order (cpu, memory, errors)."""
        if self._sampled_at is None or now - self._sampled_at >= self.SAMPLE_EVERY or now < self._sampled_at:
            self._sample_host()
            self._sampled_at = now
        t = self.thresholds
        return [("cpu_high", self._host.get("cpu_high"), t.cpu),
                ("memory_high", self._host.get("memory_high"), t.memory),
                ("error_rate_high", self.error_rate(service, now), t.error_rate)]

    # -- the signal ----------------------------------------------------------------------

    def signal_for(self, service: AgentServiceConfig, now: float) -> Optional[Dict[str, Any]]:
        sid = _service_id(service)
        readings = self.readings(service, now)
        over = [(reason, value, threshold) for reason, value, threshold in readings
                if value is not None and value > threshold]
        current = self._bleeding.get(sid)
        if over:
            reason, reading, limit = next((o for o in over if o[0] == current), over[0])
            if reason != current:
                log.info("{service}: {reason} ({value:.1f}% > {threshold:g}%): asking to be bled",
                         service=_label(service), reason=reason, value=reading, threshold=limit,
                         event="agent_bleed")
                self._bleeding[sid] = reason
            return {"type": "bleed", "reason": reason, "value": round(float(reading), 2),
                    "threshold": float(limit)}
        if current is None:
            return {"type": "clear"}
        del self._bleeding[sid]
        log.info("{service}: back under every threshold ({reason} cleared)", service=_label(service),
                 reason=current, event="agent_clear")
        signal: Dict[str, Any] = {"type": "clear", "reason": current}
        for name, now_value, name_threshold in readings:
            if name == current:
                signal["threshold"] = float(name_threshold)
                if now_value is not None:
                    signal["value"] = round(float(now_value), 2)
        return signal


def _label(service: AgentServiceConfig) -> str:
    return f"{service.address}:{service.port} in {service.region}"
