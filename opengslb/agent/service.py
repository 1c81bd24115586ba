"""The agent's work: check, register, heartbeat, deregister (SPEC §8).

One :class:`ServiceAgent` per configured service:

- **Local check** (when the service has a ``check``): a ``LoopingCall``
  every ``check.interval`` runs :class:`~opengslb.health.checks.Checker`
  against the service and feeds a :class:`~opengslb.health.tracker.ServerHealth`
  with the check's thresholds.  It starts unhealthy and turns healthy at its
  first passing check; after that ``failure_threshold`` /
  ``success_threshold`` consecutive results flip it.  The verdict is the
  agent's health *claim*.  When it flips, a heartbeat goes out at once.
  Without a ``check`` the agent sends no claim and the cluster's own checks
  of the region judge the service.
- **Registration**: ``POST /api/v1/services`` after the first check has
  finished (so the first claim is a real one).  Registering the same
  region+address+port again returns the same id, so retrying is safe.
- **Heartbeats** every ``heartbeat_interval``: ``PUT
  /api/v1/services/{id}/heartbeat`` with the claim and any predictive signal
  (:mod:`opengslb.agent.predictive`).  A 404 means the registration expired
  (or an operator removed it): register again.
- **Deregistration** on :meth:`Agent.stop` (SIGTERM): ``DELETE
  /api/v1/services/{id}``; a 404 is fine.

Requests go through :class:`~opengslb.agent.client.ClusterClient`, which
tries the other endpoints when one fails, so the agent rides out a leader
change.  Failures are logged and retried at the next heartbeat; the agent
never exits on its own.
"""

from __future__ import annotations

import socket
from typing import Any, List, Optional

from twisted.internet import defer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from opengslb.agent.client import APIResponse, APIUnavailable, ClusterClient
from opengslb.agent.predictive import NoSignals, SignalSource
from opengslb.config.agent import AgentConfig, AgentServiceConfig
from opengslb.config.durations import format_duration
from opengslb.config.model import ServerConfig
from opengslb.health.checks import Checker, CheckFailed
from opengslb.health.tracker import ServerHealth

log = Logger(namespace="opengslb.agent")

__all__ = ["Agent", "ServiceAgent"]


class _Once:
    """Something that happens once; :meth:`wait` gives a new Deferred for it each call."""

    def __init__(self) -> None:
        self.happened = False
        self._waiters: List["defer.Deferred[None]"] = []

    def fire(self) -> None:
        if self.happened:
            return
        self.happened = True
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def wait(self) -> "defer.Deferred[None]":
        if self.happened:
            return defer.succeed(None)
        waiter: "defer.Deferred[None]" = defer.Deferred()
        self._waiters.append(waiter)
        return waiter


class ServiceAgent:
    """Keeps one service registered and its claim current.

    :param reactor: time and scheduling.
    :param client: the cluster API.
    :param service: what to register and how to check it.
    :param agent_name: sent as ``agent`` with the registration.
    :param checker: runs the local check (``check(server, settings)``).
    :param signals: predictive signals for heartbeats.
    """

    def __init__(self, reactor: Any, client: ClusterClient, service: AgentServiceConfig,
                 agent_name: str, checker: Any, signals: SignalSource) -> None:
        self._reactor = reactor
        self._client = client
        self.service = service
        self._agent_name = agent_name
        self._checker = checker
        self._signals = signals
        self._server = ServerConfig(address=service.address, port=service.port, weight=service.weight)
        self.health: Optional[ServerHealth] = ServerHealth(initial_healthy=False) \
            if service.check is not None else None
        self.id: Optional[str] = None
        self._lock = defer.DeferredLock()
        self._check_loop: Optional[LoopingCall] = None
        self._first_check = _Once()
        self._kick_queued = False
        self._stopping = False
        if service.check is None:
            self._first_check.fire()

    @property
    def label(self) -> str:
        return f"{self.service.address}:{self.service.port} in {self.service.region}"

    @property
    def claim(self) -> Optional[bool]:
        """The health claim to send: the local check's verdict, or ``None`` without a check."""
        return None if self.health is None else self.health.healthy

    # -- local check -----------------------------------------------------------------

    def start_checks(self) -> "defer.Deferred[None]":
        """Start the local check loop; fires once the first check has finished."""
        check = self.service.check
        if check is not None and self._check_loop is None:
            self._check_loop = LoopingCall(self._check)
            self._check_loop.clock = self._reactor
            self._check_loop.start(check.interval, now=True).addErrback(
                lambda f: log.failure("the local check loop of {service} died", failure=f,
                                      service=self.label))
        return self._first_check.wait()

    @defer.inlineCallbacks
    def _check(self) -> Any:
        settings = self.service.check
        assert settings is not None and self.health is not None
        reason: Optional[str] = None
        try:
            yield self._checker.check(self._server, settings)
            success = True
        except CheckFailed as failed:
            success, reason = False, failed.reason
        except Exception as error:  # a checker must fail with CheckFailed; be safe anyway
            success, reason = False, f"{type(error).__name__}: {error}"
        now = self._reactor.seconds()
        flipped = self.health.record(success, now, reason, settings.failure_threshold,
                                     settings.success_threshold)
        self._signals.record_check(self.service, success, now)
        self._first_check.fire()
        if flipped:
            if self.health.healthy:
                log.info("{service} is healthy", service=self.label, event="agent_claim")
            else:
                log.warn("{service} is unhealthy: {reason}", service=self.label, reason=reason,
                         event="agent_claim")
            if self.id is not None and not self._stopping:
                self._kick()

    def _kick(self) -> None:
        """Send a heartbeat now (the claim changed); at most one queued at a time."""
        if self._kick_queued:
            return
        self._kick_queued = True

        def beat() -> "defer.Deferred[None]":
            self._kick_queued = False
            return self._beat()

        self._lock.run(beat)

    def stop_checks(self) -> None:
        if self._check_loop is not None and self._check_loop.running:
            self._check_loop.stop()
        self._check_loop = None

    # -- talking to the cluster ----------------------------------------------------------

    def heartbeat(self) -> "defer.Deferred[None]":
        """Register if needed, else heartbeat; never fails (problems are logged)."""
        return self._lock.run(self._beat)

    @defer.inlineCallbacks
    def _beat(self) -> Any:
        if self._stopping:
            return
        try:
            if self.id is None:
                yield self._register()
                return
            body: dict = {}
            if self.claim is not None:
                body["healthy"] = self.claim
            signal = self._signals.signal_for(self.service, self._reactor.seconds())
            if signal is not None:
                body["signal"] = signal
            response: APIResponse = yield self._client.request(
                "PUT", f"/api/v1/services/{self.id}/heartbeat", body)
            if response.status == 404:
                log.warn("registration {id} of {service} is gone ({error}); registering again",
                         id=self.id, service=self.label, error=response.error,
                         event="agent_reregister")
                self.id = None
                yield self._register()
            elif response.status >= 300:
                log.error("heartbeat of {service} refused: {error}", service=self.label,
                          error=response.error, event="agent_heartbeat_failed")
        except APIUnavailable as error:
            log.warn("heartbeat of {service} failed on every endpoint: {error}", service=self.label,
                     error=str(error), event="agent_heartbeat_failed")
        except Exception:
            log.failure("heartbeat of {service} failed", service=self.label)

    @defer.inlineCallbacks
    def _register(self) -> Any:
        service = self.service
        body: dict = {"region": service.region, "address": service.address, "port": service.port,
                      "weight": service.weight, "ttl": format_duration(service.ttl),
                      "agent": self._agent_name}
        if self.claim is not None:
            body["healthy"] = self.claim
        response: APIResponse = yield self._client.request("POST", "/api/v1/services", body)
        if response.status in (200, 201) and isinstance(response.body, dict) and \
                isinstance(response.body.get("id"), str):
            self.id = response.body["id"]
            log.info("registered {service} as {id} through {endpoint} (claim: {claim})",
                     service=self.label, id=self.id, endpoint=response.endpoint,
                     claim={True: "healthy", False: "unhealthy", None: "none"}[self.claim],
                     event="agent_registered")
        else:
            log.error("registering {service} was refused: {error} (retrying every heartbeat)",
                      service=self.label, error=response.error, event="agent_register_failed")

    def deregister(self) -> "defer.Deferred[None]":
        """Stop heartbeating and remove the registration; never fails."""
        self._stopping = True
        return self._lock.run(self._deregister)

    @defer.inlineCallbacks
    def _deregister(self) -> Any:
        rid = self.id
        if rid is None:
            return
        try:
            response: APIResponse = yield self._client.request("DELETE", f"/api/v1/services/{rid}")
        except APIUnavailable as error:
            log.warn("could not deregister {service} ({id}): {error}; it expires after its ttl",
                     service=self.label, id=rid, error=str(error), event="agent_deregister_failed")
            return
        if response.status in (200, 404):
            self.id = None
            log.info("deregistered {service} ({id})", service=self.label, id=rid,
                     event="agent_deregistered")
        else:
            log.warn("deregistering {service} ({id}) was refused: {error}", service=self.label,
                     id=rid, error=response.error, event="agent_deregister_failed")


class Agent:
    """Runs the :class:`ServiceAgent` of every configured service.

    :param reactor: time, scheduling and connections.
    :param config: the validated agent file.
    :param client: the cluster API (default: a :class:`ClusterClient` over
        treq for ``config.api``).
    :param checker: runs local checks (default: a :class:`Checker`).
    :param signals: predictive signals (default: :class:`NoSignals`).
    :param name: sent as ``agent`` (default: ``config.name`` or the host name).
    """

    def __init__(self, reactor: Any, config: AgentConfig, client: Optional[ClusterClient] = None,
                 checker: Optional[Any] = None, signals: Optional[SignalSource] = None,
                 name: Optional[str] = None) -> None:
        self._reactor = reactor
        self.config = config
        self.client = client if client is not None else ClusterClient(
            reactor, config.api.endpoints, config.api.token)
        self._checker = checker if checker is not None else Checker(reactor)
        signals = signals if signals is not None else NoSignals()
        agent_name = name or config.name or socket.gethostname()
        self.services: List[ServiceAgent] = [
            ServiceAgent(reactor, self.client, service, agent_name, self._checker, signals)
            for service in config.services]
        self._loop: Optional[LoopingCall] = None
        self._loop_done: Optional["defer.Deferred[Any]"] = None
        self._stopping = False
        self._stopped = _Once()

    def start(self) -> "defer.Deferred[None]":
        """Start the local checks; once each has run once, register and heartbeat.

        Fires when the heartbeat loop has started.
        """
        first = defer.DeferredList([s.start_checks() for s in self.services])

        def start_loop(_: Any) -> None:
            if self._stopping:
                return
            self._loop = LoopingCall(self._beat_all)
            self._loop.clock = self._reactor
            self._loop_done = self._loop.start(self.config.heartbeat_interval, now=True)
            self._loop_done.addErrback(lambda f: log.failure("the heartbeat loop died", failure=f))

        log.info("opengslb agent: {count} service(s), endpoints {endpoints}",
                 count=len(self.services), endpoints=", ".join(self.config.api.endpoints),
                 event="agent_started")
        return first.addCallback(start_loop)

    def _beat_all(self) -> "defer.Deferred[Any]":
        return defer.DeferredList([s.heartbeat() for s in self.services])

    def stop(self) -> "defer.Deferred[None]":
        """Stop checks and heartbeats, deregister every service; fires when done (never fails)."""
        if self._stopping:
            return self._stopped.wait()
        self._stopping = True
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        for service in self.services:
            service.stop_checks()
        done: "defer.Deferred[Any]" = defer.DeferredList([s.deregister() for s in self.services])
        done.addCallback(lambda _: self.client.close())
        done.addErrback(lambda f: log.failure("stopping the agent", failure=f))
        done.addBoth(lambda _: log.info("opengslb agent stopped", event="agent_stopped"))
        done.addBoth(lambda _: self._stopped.fire())
        return self._stopped.wait()
