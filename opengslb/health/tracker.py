"""Per-server health state and the threshold rules (SPEC §5).

A :class:`ServerHealth` turns a stream of check results into a verdict with
hysteresis:

- a healthy server becomes unhealthy after ``failure_threshold`` consecutive
  failed checks;
- an unhealthy server becomes healthy after ``success_threshold``
  consecutive passing checks;
- a server that *started* unhealthy (a dynamically registered server without
  an agent claim) and has never passed a check becomes healthy at its first
  passing check (SPEC §5: "starts unhealthy until its first passing check").

Nothing here reads a clock: every time is passed in by the caller (the
manager passes ``reactor.seconds()``).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

__all__ = ["ServerKey", "ServerHealth"]


class ServerKey(NamedTuple):
    """Identity of one checked server: the region it belongs to and its endpoint.

    The same address/port configured in two regions is two servers: each
    region carries its own check settings.
    """

    region: str
    address: str
    port: int

    @property
    def endpoint(self) -> str:
        """``address:port``, spelled like :attr:`ServerConfig.endpoint`."""
        return f"{self.address}:{self.port}"


class ServerHealth:
    """The mutable health state of one server's checks.

    :ivar healthy: the current verdict.
    :ivar last_check: ``reactor.seconds()`` when the last check finished, or
        ``None`` before the first one.
    :ivar last_healthy: the last time the server was seen healthy: set at
        creation when it starts healthy (if a creation time is given), and at
        every recorded check that passed or after which the verdict is healthy.
        ``None`` when it has never been seen healthy.
    :ivar consecutive_failures: failed checks since the last passing one.
    :ivar consecutive_successes: passing checks since the last failed one.
    :ivar last_error: the reason of the last check when it failed; ``None``
        after a passing check.
    """

    __slots__ = (
        "healthy",
        "last_check",
        "last_healthy",
        "consecutive_failures",
        "consecutive_successes",
        "last_error",
        "_ever_passed",
        "_started_healthy",
    )

    def __init__(self, initial_healthy: bool = True, now: Optional[float] = None) -> None:
        """
        :param initial_healthy: the verdict before any check has finished
            (configured servers start healthy, SPEC §5).
        :param now: creation time; recorded as ``last_healthy`` when the server
            starts healthy.
        """
        self.healthy: bool = initial_healthy
        self.last_check: Optional[float] = None
        self.last_healthy: Optional[float] = now if initial_healthy else None
        self.consecutive_failures: int = 0
        self.consecutive_successes: int = 0
        self.last_error: Optional[str] = None
        self._ever_passed: bool = False
        self._started_healthy: bool = initial_healthy

    @property
    def status(self) -> str:
        """``"unknown"`` until a check has finished, then ``"healthy"`` or ``"unhealthy"``.

        While ``"unknown"``, :attr:`healthy` still holds the initial verdict.
        """
        if self.last_check is None:
            return "unknown"
        return "healthy" if self.healthy else "unhealthy"

    def record(
        self,
        success: bool,
        now: float,
        error: Optional[str],
        failure_threshold: int,
        success_threshold: int,
    ) -> bool:
        """Apply the result of one finished check.

        :param success: whether the check passed.
        :param now: when it finished (``reactor.seconds()``).
        :param error: why it failed; ignored when ``success``.
        :param failure_threshold: consecutive failures that make a healthy
            server unhealthy (values below 1 count as 1).
        :param success_threshold: consecutive successes that make an
            unhealthy server healthy (values below 1 count as 1).
        :return: ``True`` when :attr:`healthy` flipped because of this result.
        """
        was_healthy = self.healthy
        self.last_check = now
        if success:
            first_pass = not self._ever_passed
            self._ever_passed = True
            self.consecutive_successes += 1
            self.consecutive_failures = 0
            self.last_error = None
            if not self.healthy and (
                self.consecutive_successes >= max(1, success_threshold)
                or (first_pass and not self._started_healthy)
            ):
                self.healthy = True
            self.last_healthy = now
        else:
            self.consecutive_failures += 1
            self.consecutive_successes = 0
            self.last_error = error if error is not None else "check failed"
            if self.healthy and self.consecutive_failures >= max(1, failure_threshold):
                self.healthy = False
            if self.healthy:
                self.last_healthy = now
        return self.healthy != was_healthy

    def __repr__(self) -> str:
        return (
            f"<ServerHealth {self.status} failures={self.consecutive_failures} "
            f"successes={self.consecutive_successes} last_error={self.last_error!r}>"
        )
