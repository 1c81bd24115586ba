"""Leader self-demotion (issue 13 item 3; docs/cluster.md, "Leader self-demotion").

A leader hands leadership to a healthy, up-to-date follower when it can no
longer do a leader's job although Raft would keep it leading:

``dns_self_probe``
    its own DNS listener did not answer :data:`PROBE_FAILURES` (3)
    consecutive self-probes (a real query over UDP to its listening address,
    one a second);
``reactor_lag``
    its reactor ran late by more than ``cluster.demotion_lag_bound`` (1 s)
    for :data:`LAG_SECONDS` (3) consecutive seconds (Raft runs on its own
    thread and keeps heartbeating while DNS waits);
``health_vantage``
    its own health checks mark more than half of all servers down while a
    majority of the other members' fresh verdicts see those servers up (its
    vantage point is broken, not the backends).

:class:`DemotionPolicy` is the decision, a plain object on an injected
clock; :class:`LeaderWatch` feeds it from the running node (probe, lag,
verdicts) and performs the handover.  A demoted node keeps out of elections
for ``cluster.demotion_hold_down`` (30 s) unless it is the only candidate
(enforced by the Raft adapter, :meth:`opengslb.state.raft.RaftNode.hold_down`).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Any, Callable, Dict, FrozenSet, Mapping, Optional, Tuple

from twisted.internet import defer
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

log = Logger(namespace="opengslb.cluster")

REASONS = ("dns_self_probe", "reactor_lag", "health_vantage")
#: Seconds between two rounds (self-probe, lag sample, verdict comparison).
INTERVAL = 1.0
#: Consecutive self-probe failures that demote.
PROBE_FAILURES = 3
#: A self-probe not answered within this many seconds failed.
PROBE_TIMEOUT = 0.5
#: Consecutive seconds of reactor lag beyond the bound that demote.
LAG_SECONDS = 3.0
#: How long one handover may take before it is tried again (the next round).
HANDOVER_TIMEOUT = 2.5
PROBE_NAME = "opengslb-self-probe.invalid"


@dataclass(frozen=True)
class Demotion:
    """One demotion: why, when (the reactor's wall clock) and until when it holds this node back."""

    reason: str
    at: float
    hold_down_until: float

    def to_json(self) -> Dict[str, Any]:
        return {"reason": self.reason, "at": self.at, "hold_down_until": self.hold_down_until}


def vantage_broken(own: Mapping[Any, bool], peers: Mapping[str, Mapping[Any, bool]],
                   peer_count: int) -> bool:
    """True when this node's checks mark more than half of all servers down while more than half
    of the other members (``peer_count``, fresh or not) have fresh verdicts that see most of those
    servers up.  ``own``: this node's verdicts; ``peers``: the fresh verdicts of the others."""
    if not own or peer_count <= 0:
        return False
    down = [key for key, healthy in own.items() if not healthy]
    if len(down) * 2 <= len(own):
        return False
    contradicting = 0
    for verdicts in peers.values():
        seen = [key for key in down if key in verdicts]
        up = sum(1 for key in seen if verdicts[key])
        if seen and up * 2 > len(down):
            contradicting += 1
    return contradicting * 2 > peer_count


class DemotionPolicy:
    """Decides when a leader demotes itself.  Pure: no I/O, one injected clock.

    Feed it every round while leading (:meth:`probe`, :meth:`lag`,
    :meth:`vantage`), call :meth:`reset` when not leading, and ask
    :meth:`reason`.  :meth:`demoted` records a demotion (and its hold-down)
    and starts counting afresh.  ``clock()`` is wall-clock seconds (what the
    API shows); only differences of it are used.
    """

    def __init__(self, clock: Callable[[], float], lag_bound: float = 1.0, hold_down: float = 30.0,
                 probe_failures: int = PROBE_FAILURES, lag_seconds: float = LAG_SECONDS) -> None:
        self.clock = clock
        self.lag_bound = lag_bound
        self.hold_down = hold_down
        self.probe_failures = probe_failures
        self.lag_seconds = lag_seconds
        self.failed_probes = 0
        self.lagging_for = 0.0
        self.vantage_bad = False
        self.last: Optional[Demotion] = None
        self.counts: Dict[str, int] = {reason: 0 for reason in REASONS}

    def reset(self) -> None:
        """Not leading (or just demoted): forget the counters."""
        self.failed_probes = 0
        self.lagging_for = 0.0
        self.vantage_bad = False

    def probe(self, answered: bool) -> None:
        """One self-probe's outcome."""
        self.failed_probes = 0 if answered else self.failed_probes + 1

    def lag(self, elapsed: float, late_by: float) -> None:
        """A round ran ``late_by`` seconds after it was due, ``elapsed`` after the previous one."""
        self.lagging_for = self.lagging_for + elapsed if late_by > self.lag_bound else 0.0

    def vantage(self, broken: bool) -> None:
        """This round's :func:`vantage_broken`."""
        self.vantage_bad = broken

    def reason(self) -> Optional[str]:
        """Why this leader should demote itself now, or None."""
        if self.failed_probes >= self.probe_failures:
            return "dns_self_probe"
        if self.lagging_for >= self.lag_seconds:
            return "reactor_lag"
        if self.vantage_bad:
            return "health_vantage"
        return None

    def demoted(self, reason: str) -> Demotion:
        """Record a demotion for ``reason`` now; it holds this node back for ``hold_down``."""
        now = self.clock()
        self.last = Demotion(reason, now, now + self.hold_down)
        self.counts[reason] = self.counts.get(reason, 0) + 1
        self.reset()
        return self.last

    def current(self) -> Optional[Demotion]:
        """The last demotion while its hold-down lasts, else None."""
        if self.last is not None and self.clock() < self.last.hold_down_until:
            return self.last
        return None


def probe_query(query_id: int) -> bytes:
    """A DNS query (A, RD off) for :data:`PROBE_NAME` with ``query_id``, as wire bytes."""
    name = b"".join(bytes([len(label)]) + label.encode() for label in PROBE_NAME.split(".")) + b"\0"
    return struct.pack("!HHHHHH", query_id, 0, 1, 0, 0, 0) + name + struct.pack("!HH", 1, 1)


class _ProbeProtocol(DatagramProtocol):
    """Sends self-probes; a reply (any rcode) with the probe's id and the QR bit proves the listener."""

    def __init__(self) -> None:
        self.waiting: Dict[int, "defer.Deferred[bool]"] = {}

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        if len(datagram) < 12:
            return
        query_id, flags = struct.unpack_from("!HH", datagram)
        d = self.waiting.pop(query_id, None)
        if d is not None and flags & 0x8000 and not d.called:
            d.callback(True)


class LeaderWatch:
    """Runs the self-checks of a leader once a second and demotes it when :class:`DemotionPolicy` says so.

    ``is_leader()``: this node leads now; ``dns_address``: (host, port) of
    its DNS listener; ``own_verdicts()`` / ``peer_verdicts()`` / ``peer_count()``:
    the inputs of :func:`vantage_broken`; ``transfer(prefer)`` hands
    leadership over (a Deferred firing with the new leader), preferring the
    addresses in ``prefer``; ``hold_down(seconds)`` keeps this node out of
    elections.  ``monotonic()`` measures lag.  Nothing here blocks.
    """

    def __init__(self, reactor: Any, policy: DemotionPolicy, is_leader: Callable[[], bool],
                 dns_address: Tuple[str, int], own_verdicts: Callable[[], Mapping[Any, bool]],
                 peer_verdicts: Callable[[], Mapping[str, Mapping[Any, bool]]],
                 peer_count: Callable[[], int],
                 transfer: Callable[[FrozenSet[str]], "defer.Deferred[str]"],
                 hold_down: Callable[[float], None], monotonic: Callable[[], float]) -> None:
        self.reactor = reactor
        self.policy = policy
        self.is_leader = is_leader
        self.dns_address = dns_address
        self.own_verdicts = own_verdicts
        self.peer_verdicts = peer_verdicts
        self.peer_count = peer_count
        self.transfer = transfer
        self.hold_down = hold_down
        self.monotonic = monotonic
        self._protocol = _ProbeProtocol()
        self._port: Any = None
        self._call: Any = None
        self._due = 0.0
        self._previous = 0.0
        self._handing_over = False

    def start(self) -> None:
        """Bind the probe socket (an ephemeral UDP port) and start the rounds."""
        host = self.dns_address[0]
        self._port = self.reactor.listenUDP(0, self._protocol, interface=host)
        self._previous = self.monotonic()
        self._schedule()

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        if self._port is not None:
            self._port.stopListening()
            self._port = None

    def _schedule(self) -> None:
        self._due = self.monotonic() + INTERVAL
        self._call = self.reactor.callLater(INTERVAL, self._round)

    def _round(self) -> None:
        now = self.monotonic()
        late_by, elapsed = max(0.0, now - self._due), now - self._previous
        self._previous = now
        self._schedule()
        if not self.is_leader() or self._handing_over:
            self.policy.reset()
            return
        self.policy.lag(elapsed, late_by)
        self.policy.vantage(vantage_broken(self.own_verdicts(), self.peer_verdicts(), self.peer_count()))
        self._send_probe()
        self._decide()

    def _send_probe(self) -> None:
        if self._port is None:
            return
        query_id = struct.unpack("!H", os.urandom(2))[0]
        d: "defer.Deferred[bool]" = defer.Deferred()
        self._protocol.waiting[query_id] = d

        def expired() -> None:
            if self._protocol.waiting.pop(query_id, None) is d and not d.called:
                d.callback(False)

        timer = self.reactor.callLater(PROBE_TIMEOUT, expired)
        def answered(result: bool) -> None:
            if timer.active():
                timer.cancel()
            self._probed(result)

        d.addCallback(answered)
        try:
            self._port.write(probe_query(query_id), self.dns_address)
        except OSError:
            pass  # counted as a failure when the timer fires

    def _probed(self, answered: bool) -> None:
        if not self.is_leader() or self._handing_over:
            return
        self.policy.probe(answered)
        self._decide()

    def _decide(self) -> None:
        reason = self.policy.reason()
        if reason is None or self._handing_over:
            return
        self._handing_over = True
        prefer = frozenset(self.peer_verdicts())  # members whose gossip is fresh: alive
        log.warn("leader self-demotion ({reason}): handing leadership over", reason=reason,
                 event="leader_demoting")
        d = self.transfer(prefer)

        def done(leader: str) -> None:
            demotion = self.policy.demoted(reason)
            self.hold_down(self.policy.hold_down)
            log.warn("leader demoted itself ({reason}); {leader} leads now; this node stays out of "
                     "elections for {hold_down:g}s unless it is the only candidate", reason=reason,
                     leader=leader, hold_down=self.policy.hold_down, at=demotion.at,
                     hold_down_until=demotion.hold_down_until, event="leader_demoted")

        def failed(failure: Any) -> None:
            if not self.is_leader():  # another node leads after all (elected, not confirmed in time)
                done("another node")
                return
            log.warn("leader self-demotion ({reason}) found no successor: {error}; tried again once the condition holds again",
                     reason=reason, error=failure.getErrorMessage(), event="leader_demotion_failed")

        def finished(_: Any) -> None:
            self._handing_over = False

        d.addCallbacks(done, failed)
        d.addBoth(finished)
