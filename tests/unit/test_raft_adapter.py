"""The Raft adapter (opengslb.state.raft) against a fake of the pysyncobj surface it uses.

:class:`FakeSync` is the adapter's own ``_SyncObj`` with pysyncobj's
constructor replaced: it holds the private fields the adapter reads, keeps
pysyncobj's real tick-callback methods and their non-reentrant lock, runs
pysyncobj's real message handler where a test needs it, and fakes only
``transferLeadership``, ``destroy_synchronous`` and the log.  The reactor is
a :class:`task.Clock` with ``callFromThread``; the adapter's clock is a
separate hand-driven clock, and pysyncobj's own clock is skewed on purpose.
"""

from __future__ import annotations

import json
import math
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import pysyncobj.syncobj
import pytest
from pysyncobj import FAIL_REASON
from pysyncobj.node import TCPNode
from twisted.internet import task
from twisted.logger import formatEvent, globalLogPublisher

from opengslb.config.model import ClusterConfig, GossipConfig, RaftConfig
from opengslb.state import raft
from opengslb.state.raft import (
    DESTROY_TIMEOUT,
    HANDOVER_RETRY,
    HANDOVER_TIMEOUT,
    LEADER_WAIT,
    NOT_APPLIED,
    UNKNOWN,
    ProposalFailed,
    RaftNode,
    RaftStatus,
    RaftTiming,
    _LeaseTracker,
    _SyncObj,
)

SELF = "127.0.0.1:7946"
OTHERS = ["127.0.0.2:7946", "127.0.0.3:7946"]
TIMING = RaftTiming(min_timeout=0.5, max_timeout=1.0, append_entries_period=0.1, leader_fallback=0.4)


class HandClock:
    """A monotonic clock moved by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Reactor(task.Clock):
    """task.Clock plus callFromThread; calls from other threads wait for :meth:`pump`."""

    def __init__(self) -> None:
        super().__init__()
        self._from_threads: List[Tuple[Callable[..., Any], Tuple[Any, ...]]] = []
        self._lock = threading.Lock()

    def callFromThread(self, f: Callable[..., Any], *args: Any) -> None:
        with self._lock:
            self._from_threads.append((f, args))

    def pump(self) -> None:
        with self._lock:
            calls, self._from_threads = self._from_threads, []
        for f, args in calls:
            f(*args)


class Transport:
    def __init__(self) -> None:
        self.sent: List[Tuple[str, Dict[str, Any]]] = []

    def send(self, node: Any, message: Dict[str, Any]) -> bool:
        self.sent.append((node.id, message))
        return True


class FakeSync(_SyncObj):
    """The adapter's _SyncObj over fake pysyncobj state (see the module docstring)."""

    def __init__(self, clock: Callable[[], float], publish: Callable[[RaftStatus], None],
                 others: List[str] = OTHERS, state: int = 2, term: int = 5) -> None:
        self._init_adapter(SELF, TIMING, lambda reason: None, publish, clock)
        self._SyncObj__onTickCallbacks: List[Callable[[], None]] = []
        self._SyncObj__onTickCallbacksLock = threading.Lock()  # pysyncobj's: not reentrant
        self._SyncObj__selfNode = TCPNode(SELF)
        self._SyncObj__otherNodes = {TCPNode(a) for a in others}
        self._SyncObj__connectedNodes = set(self._SyncObj__otherNodes)
        self._SyncObj__raftState = state
        self._SyncObj__raftCurrentTerm = term
        self._SyncObj__raftLeader = self._SyncObj__selfNode if state == 2 else None
        self._SyncObj__raftCommitIndex = 10
        self._SyncObj__raftLastApplied = 10
        self._SyncObj__noopIDx = 10
        self._SyncObj__raftMatchIndex = {n: 10 for n in self._SyncObj__otherNodes}
        self._SyncObj__raftNextIndex = {n: 11 for n in self._SyncObj__otherNodes}
        self._SyncObj__lastResponseTime = {n: 0.0 for n in self._SyncObj__otherNodes}
        self._SyncObj__raftElectionDeadline = math.inf
        self._SyncObj__transport = Transport()
        self.log_term, self.log_index = term, 10
        self.caught_up = True
        self.transfers: List[str] = []
        self.requests = 0
        self.destroyed = threading.Event()
        self.destroy_blocks = False
        self.addOnTickCallback(self._after_tick)  # pysyncobj's own method, under its lock

    def _SyncObj__getCurrentLogTerm(self) -> int:
        return self.log_term

    def _SyncObj__getCurrentLogIndex(self) -> int:
        return self.log_index

    def node(self, address: str) -> TCPNode:
        return next(n for n in self._SyncObj__otherNodes if n.id == address)

    def tick(self) -> None:
        """What pysyncobj's tick does with its callbacks, under the same lock."""
        with self._SyncObj__onTickCallbacksLock:
            for callback in self._SyncObj__onTickCallbacks:
                callback()

    def answer(self, address: str) -> None:
        """A follower answers an append_entries (pysyncobj's real handler runs too)."""
        self._SyncObj__onMessageReceived(self.node(address), {
            "type": "next_node_idx", "next_node_idx": 11, "reset": False, "success": True})

    def transferLeadership(self, node: Any = None, callback: Any = None) -> None:
        self.requests += 1
        if self._SyncObj__raftState != 2 or not self.caught_up:
            callback(None, FAIL_REASON.REQUEST_DENIED)
            return
        self.transfers.append(OTHERS[0])
        callback(None, FAIL_REASON.SUCCESS)

    def lose_to(self, address: str) -> None:
        """Another node won an election of a later term."""
        self._SyncObj__raftState = 0
        self._SyncObj__raftCurrentTerm += 1
        self._SyncObj__raftLeader = self.node(address)

    def destroy_synchronous(self) -> None:
        if self.destroy_blocks:
            threading.Event().wait(30)
        self.destroyed.set()


class Consumer:
    """The replicated method's surface: apply_command(command, callback=...)."""

    def __init__(self) -> None:
        self.calls: List[Tuple[Dict[str, Any], Callable[[Any, Any], None]]] = []

    def apply_command(self, command: Dict[str, Any], callback: Callable[[Any, Any], None]) -> None:
        self.calls.append((command, callback))


def make_node(clock: Optional[HandClock] = None, state: int = 2,
              others: List[str] = OTHERS) -> Tuple[RaftNode, FakeSync, Reactor, Consumer]:
    reactor = Reactor()
    clock = clock or HandClock()
    cluster = ClusterConfig(mode="cluster", advertise_address=SELF,
                            gossip=GossipConfig(encryption_key="a" * 44))
    node = RaftNode(reactor, cluster, clock=clock)
    sync = FakeSync(clock, node._published_on_tick, others=others, state=state)
    consumer = Consumer()
    node._sync, node._consumer = sync, consumer  # type: ignore[assignment]
    return node, sync, reactor, consumer


def settle(sync: FakeSync, reactor: Reactor) -> None:
    sync.tick()
    reactor.pump()


# -- one clock for the lease -------------------------------------------------------------


@pytest.mark.parametrize("skew", [-0.312, +0.312, -1000.0, +1000.0])
def test_lease_uses_one_clock_whatever_pysyncobjs_clock_says(monkeypatch: pytest.MonkeyPatch,
                                                             skew: float) -> None:
    """With pysyncobj's clock skewed from the adapter's, a leader answered by a majority serves
    for the whole lease (no early lapse) and stops exactly when it ends (no overrun)."""
    clock = HandClock()
    monkeypatch.setattr(pysyncobj.syncobj, "monotonicTime", lambda: clock.now + skew)
    node, sync, reactor, _ = make_node(clock)
    settle(sync, reactor)
    assert not node.serving()  # a new term: nobody has answered yet
    sync.answer(OTHERS[0])
    settle(sync, reactor)
    assert node.status.lease_until == pytest.approx(clock.now + TIMING.leader_fallback)
    for step in range(39):  # 0.39 s of 10 ms steps without another answer: still serving
        clock.now += 0.01
        assert node.serving(), step
    clock.now += 0.011
    assert not node.serving()  # the lease ended on the adapter's clock, whatever pysyncobj says
    sync.answer(OTHERS[1])
    settle(sync, reactor)
    assert node.serving()


def test_a_lapsed_lease_is_logged_with_who_answered_when_and_its_return() -> None:
    """The leader's lease lapsing (it stops answering DNS with no log of its own otherwise) is
    logged once, naming each member's last answer and the tick gap; regaining it is logged too."""
    events: List[Dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        clock = HandClock()
        node, sync, reactor, _ = make_node(clock)
        sync.answer(OTHERS[0])
        settle(sync, reactor)
        clock.now += 0.3
        settle(sync, reactor)
        assert node.serving() and not [e for e in events if e.get("event") == "raft_lease_lapsed"]
        clock.now += 0.15  # 0.45 s since the only answer: past the 0.4 s lease
        settle(sync, reactor)
        settle(sync, reactor)  # a second lapsed tick logs nothing more
        lapsed = [e for e in events if e.get("event") == "raft_lease_lapsed"]
        assert len(lapsed) == 1 and not node.serving()
        text = formatEvent(lapsed[0])
        assert f"{OTHERS[0]} 0.45s ago" in text and f"{OTHERS[1]} not this term" in text, text
        assert "tick gap 0.150s" in text, text
        clock.now += 0.05
        sync.answer(OTHERS[1])
        settle(sync, reactor)
        regained = [e for e in events if e.get("event") == "raft_lease_regained"]
        assert node.serving() and len(regained) == 1
        assert "after 0.05s" in formatEvent(regained[0])
    finally:
        globalLogPublisher.removeObserver(events.append)


def test_lease_needs_a_majority_of_the_current_term() -> None:
    """Five members: two answers are needed; answers from an earlier term do not count."""
    tracker = _LeaseTracker()
    others = ["b", "c", "d", "e"]
    tracker.record("b", 3, 10.0)
    assert tracker.lease_until(others, 3, 0.4) == -math.inf
    tracker.record("c", 3, 10.2)
    assert tracker.lease_until(others, 3, 0.4) == pytest.approx(10.4)  # the older of the two best
    assert tracker.lease_until(others, 4, 0.4) == -math.inf
    tracker.record("b", 4, 11.0)
    assert tracker.lease_until(others, 4, 0.4) == -math.inf  # c's answer was in term 3
    assert tracker.lease_until([], 4, 0.4) == math.inf  # a lone node


def test_a_follower_never_serves() -> None:
    """Only a leader that committed its no-op and holds its lease serves."""
    node, sync, reactor, _ = make_node(state=0)
    sync.answer(OTHERS[0])
    settle(sync, reactor)
    assert node.status.state == "Follower" and not node.serving()


# -- tick callbacks ------------------------------------------------------------------------


def test_fake_tick_lock_is_not_reentrant_like_pysyncobjs() -> None:
    """The fake is faithful: removing a tick callback from inside a tick deadlocks (the old bug)."""
    _, sync, _, _ = make_node()

    def once() -> None:
        sync.removeOnTickCallback(once)

    sync.addOnTickCallback(once)
    ticking = threading.Thread(target=sync.tick, daemon=True)
    ticking.start()
    ticking.join(0.5)
    assert ticking.is_alive()  # stuck for good on pysyncobj's lock (a daemon thread: left behind)


def test_work_for_the_tick_thread_never_blocks_the_caller() -> None:
    """While the tick thread holds pysyncobj's callback lock, the reactor can still queue work;
    the work runs on the tick thread at the next tick and its result arrives on the reactor."""
    node, sync, reactor, _ = make_node()
    inside, release = threading.Event(), threading.Event()

    def slow_work(_: Any) -> None:
        inside.set()
        release.wait(5)

    node._run_on_tick(slow_work)
    ticking = threading.Thread(target=sync.tick)
    ticking.start()
    assert inside.wait(5)
    ran_on: List[str] = []
    results: List[Any] = []
    queued = threading.Thread(target=lambda: node._run_on_tick(
        lambda s: ran_on.append(threading.current_thread().name) or "done").addCallback(results.append))
    queued.start()
    queued.join(1)
    assert not queued.is_alive()  # queuing did not wait for the lock
    release.set()
    ticking.join(5)
    assert not ticking.is_alive()
    reactor.pump()
    assert results == ["done"] and ran_on == [ticking.name]  # drained by the same tick


def test_failing_tick_work_errbacks_and_does_not_stop_the_tick() -> None:
    """An exception in tick work reaches its Deferred; the status is still published."""
    node, sync, reactor, _ = make_node()
    errors: List[Any] = []
    node._run_on_tick(lambda s: 1 / 0).addErrback(errors.append)
    sync.answer(OTHERS[0])
    settle(sync, reactor)
    assert errors and errors[0].check(ZeroDivisionError)
    assert node.serving()


# -- leadership transfer and stop -----------------------------------------------------------


def test_transfer_stops_answering_first_and_fires_when_the_successor_leads() -> None:
    """The leader stops serving as soon as the TimeoutNow request is sent (never two answering),
    and the transfer fires with the successor's address once it leads a later term."""
    node, sync, reactor, _ = make_node()
    sync.answer(OTHERS[0])
    settle(sync, reactor)
    assert node.serving()
    leaders: List[str] = []
    node.transfer_leadership().addCallback(leaders.append)
    settle(sync, reactor)
    assert sync.transfers == [OTHERS[0]]
    assert node.status.handing_over and not node.serving()
    sync.lose_to(OTHERS[0])
    settle(sync, reactor)
    reactor.advance(0.01)
    assert leaders == [OTHERS[0]]


def test_transfer_is_retried_while_refused_and_fails_after_its_bound() -> None:
    """A follower not caught up: the request is repeated, the leader keeps serving meanwhile,
    and the transfer fails with ProposalFailed once its time is up."""
    clock = HandClock()
    node, sync, reactor, _ = make_node(clock)
    sync.caught_up = False
    settle(sync, reactor)
    failures: List[Any] = []
    node.transfer_leadership(timeout=1.0).addErrback(failures.append)
    for _ in range(100):
        sync.answer(OTHERS[0])
        settle(sync, reactor)
        assert node.serving()  # refused: nobody else can answer, so this one still does
        reactor.advance(0.01)
        clock.now += 0.01
    assert len(failures) == 1 and failures[0].check(ProposalFailed)
    assert sync.transfers == [] and 1.0 / HANDOVER_RETRY - 1 <= sync.requests <= 1.0 / HANDOVER_RETRY + 1


def test_a_handover_that_does_not_complete_lets_the_leader_answer_again() -> None:
    """Sent, but the successor never won: after the maximum election timeout the old leader
    (still leading) answers again."""
    clock = HandClock()
    node, sync, reactor, _ = make_node(clock)
    settle(sync, reactor)
    node.transfer_leadership(timeout=0.1).addErrback(lambda f: None)
    settle(sync, reactor)
    assert node.status.handing_over
    clock.now += TIMING.max_timeout + 0.01
    sync.answer(OTHERS[1])
    settle(sync, reactor)
    assert not node.status.handing_over and node.serving()


def test_stop_on_a_leader_hands_over_then_destroys() -> None:
    """stop() on a leader: transfer, wait until the successor leads, then destroy pysyncobj."""
    node, sync, reactor, _ = make_node()
    settle(sync, reactor)
    done: List[Any] = []
    node.stop().addCallback(done.append)
    settle(sync, reactor)
    assert sync.transfers and not sync.destroyed.is_set()
    sync.lose_to(OTHERS[0])
    settle(sync, reactor)
    reactor.advance(0.01)
    assert sync.destroyed.wait(5)
    reactor.pump()
    assert done == [None] and node._sync is None


@pytest.mark.parametrize("case", ["follower", "lone", "no_quorum", "destroy_hangs"])
def test_stop_fires_within_its_bound_in_every_case(case: str) -> None:
    """A follower or lone node stops at once; a leader nobody can take over from (no quorum)
    stops after the handover bound; a hung pysyncobj is given up after DESTROY_TIMEOUT."""
    node, sync, reactor, _ = make_node(state=0 if case == "follower" else 2,
                                       others=[] if case == "lone" else OTHERS)
    settle(sync, reactor)
    if case == "no_quorum":
        sync.caught_up = False
    sync.destroy_blocks = case == "destroy_hangs"
    done: List[Any] = []
    node.stop().addCallback(done.append)
    elapsed = 0.0
    while not done and elapsed < HANDOVER_TIMEOUT + DESTROY_TIMEOUT + 0.5:
        settle(sync, reactor)
        if sync.destroyed.is_set():
            reactor.pump()
        reactor.advance(0.01)
        elapsed += 0.01
    assert done == [None]
    bound = {"follower": 0.05, "lone": 0.05, "no_quorum": HANDOVER_TIMEOUT + 0.05,
             "destroy_hangs": HANDOVER_TIMEOUT + DESTROY_TIMEOUT + 0.05}[case]
    assert elapsed <= bound
    if case == "no_quorum":
        assert elapsed >= HANDOVER_TIMEOUT - 0.05


def test_retry_interval_is_shorter_than_the_handover_bound() -> None:
    """Several handover attempts fit in the bound (a follower catching up gets another chance)."""
    assert HANDOVER_TIMEOUT / HANDOVER_RETRY >= 5


# -- write outcomes ------------------------------------------------------------------------


def test_write_without_a_leader_is_not_applied() -> None:
    """No leader within LEADER_WAIT: the command never left the node."""
    node, sync, reactor, consumer = make_node(state=0)
    settle(sync, reactor)
    failures: List[Any] = []
    node.propose({"op": "x"}).addErrback(failures.append)
    reactor.advance(LEADER_WAIT + 0.1)
    assert consumer.calls == []
    assert failures[0].check(ProposalFailed) and failures[0].value.outcome == NOT_APPLIED


@pytest.mark.parametrize("error, outcome", [
    (FAIL_REASON.LEADER_CHANGED, UNKNOWN), (FAIL_REASON.UNKNOWN_OUTCOME, UNKNOWN),
    (FAIL_REASON.DISCARDED, NOT_APPLIED), (FAIL_REASON.NOT_LEADER, NOT_APPLIED),
    (FAIL_REASON.MISSING_LEADER, NOT_APPLIED), (FAIL_REASON.QUEUE_FULL, NOT_APPLIED)])
def test_pysyncobj_failures_map_to_honest_outcomes(error: int, outcome: str) -> None:
    """A leader change after sending is unknown; a refusal or a discarded entry is not applied."""
    node, sync, reactor, consumer = make_node()
    settle(sync, reactor)
    failures: List[Any] = []
    node.propose({"op": "x"}).addErrback(failures.append)
    consumer.calls[0][1](None, error)
    reactor.pump()
    assert failures[0].check(ProposalFailed) and failures[0].value.outcome == outcome


def test_a_write_that_times_out_after_sending_fails_with_unknown() -> None:
    """The timeout raises ProposalFailed (it used to be returned as a result: a 500 upstream);
    a late commit after it changes nothing."""
    node, sync, reactor, consumer = make_node()
    settle(sync, reactor)
    results: List[Any] = []
    failures: List[Any] = []
    node.propose({"op": "x"}).addCallbacks(results.append, failures.append)
    reactor.advance(node.propose_timeout + 0.01)
    assert results == []
    assert failures[0].check(ProposalFailed) and failures[0].value.outcome == UNKNOWN
    consumer.calls[0][1]({"ok": True}, FAIL_REASON.SUCCESS)
    reactor.pump()
    assert results == [] and len(failures) == 1


def test_committed_write_fires_with_its_result() -> None:
    node, sync, reactor, consumer = make_node()
    settle(sync, reactor)
    results: List[Any] = []
    node.propose({"op": "x"}).addCallback(results.append)
    consumer.calls[0][1]({"ok": True, "value": 1}, FAIL_REASON.SUCCESS)
    reactor.pump()
    assert results == [{"ok": True, "value": 1}]


# -- pre-vote and stickiness -----------------------------------------------------------------


def prevote(sync: FakeSync, term: int, last_log: Tuple[int, int] = (5, 10)) -> Dict[str, Any]:
    sync._SyncObj__transport.sent.clear()
    sync._SyncObj__onMessageReceived(sync.node(OTHERS[1]), {
        "type": "opengslb_prevote", "round": 1, "term": term,
        "last_log_term": last_log[0], "last_log_index": last_log[1]})
    ((_, reply),) = sync._SyncObj__transport.sent
    return reply


def test_prevote_is_refused_while_a_leader_is_alive() -> None:
    """A follower that heard its leader within the lease refuses; later it grants an up-to-date
    candidate, and never one with a shorter log."""
    clock = HandClock()
    _, sync, _, _ = make_node(clock, state=0)
    sync._last_leader_contact = clock.now
    assert prevote(sync, 6)["granted"] is False
    clock.now += TIMING.leader_fallback + 0.01
    assert prevote(sync, 6)["granted"] is True
    assert prevote(sync, 6, last_log=(5, 9))["granted"] is False
    assert prevote(sync, 5)["granted"] is False  # not a later term


def test_a_leader_holding_its_lease_refuses_prevotes() -> None:
    clock = HandClock()
    _, sync, _, _ = make_node(clock)
    sync.answer(OTHERS[0])
    assert prevote(sync, 6)["granted"] is False
    clock.now += TIMING.leader_fallback + 0.01
    assert prevote(sync, 6)["granted"] is True


def test_vote_requests_are_ignored_near_a_live_leader_except_for_a_transfer() -> None:
    """Stickiness: a plain request_vote is dropped while the leader is alive; a transfer's passes."""
    clock = HandClock()
    _, sync, _, _ = make_node(clock, state=0)
    sync._last_leader_contact = clock.now
    seen: List[Dict[str, Any]] = []
    original = raft.SyncObj._SyncObj__onMessageReceived  # type: ignore[attr-defined]
    try:
        raft.SyncObj._SyncObj__onMessageReceived = lambda self, node, message: seen.append(message)  # type: ignore[attr-defined]
        vote = {"type": "request_vote", "term": 6, "last_log_index": 10, "last_log_term": 5}
        sync._SyncObj__onMessageReceived(sync.node(OTHERS[1]), vote)
        assert seen == []
        sync._SyncObj__onMessageReceived(sync.node(OTHERS[1]), dict(vote, transfer=True))
        assert len(seen) == 1
    finally:
        raft.SyncObj._SyncObj__onMessageReceived = original  # type: ignore[attr-defined]


# -- membership changes and joining ----------------------------------------------------------


def test_leader_accepts_one_membership_change_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """pysyncobj never records a pending change; the adapter refuses a second one until the
    first is applied (joiners started together are added one after the other)."""
    _, sync, _, _ = make_node()
    sync._SyncObj__changeClusterIDx = None
    applied: List[Any] = []
    monkeypatch.setattr(raft.SyncObj, "_SyncObj__doChangeCluster",
                        lambda self, request, reverse=False: applied.append(request) or True)
    assert sync._SyncObj__changeCluster(["add", "127.0.0.4:7946"]) is True
    assert sync._change_pending_until == 11
    sync.log_index = 11  # the change went into the log at index 11, not applied yet
    assert sync._SyncObj__changeCluster(["add", "127.0.0.5:7946"]) is False
    sync._SyncObj__raftLastApplied = 11
    assert sync._SyncObj__changeCluster(["add", "127.0.0.5:7946"]) is True
    assert [r[1] for r in applied] == ["127.0.0.4:7946", "127.0.0.5:7946"]


class LogSync(FakeSync):
    """FakeSync with a log of (command, index, term) entries and pysyncobj's membership parsing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.entries: List[Tuple[Any, int, int]] = [(b"noop", 1, 0)]
        self._SyncObj__generateRaftTimeout = lambda: 0.75

    def _SyncObj__getCurrentLogIndex(self) -> int:
        return self.entries[-1][1]

    def _SyncObj__getEntries(self, start: int, count: Optional[int] = None) -> List[Tuple[Any, int, int]]:
        first = self.entries[0][1]
        return [] if start < first else self.entries[start - first:]

    def _SyncObj__parseChangeClusterRequest(self, command: Any) -> Any:
        return command if isinstance(command, list) else None


def test_joiner_never_stands_for_election_until_its_addition_is_in_its_log() -> None:
    """Joining: an expired election timer starts no pre-vote (and forgets the silent leader);
    the entry adding this node ends joining mode, after which a pre-vote goes out."""
    clock = HandClock()
    reactor = Reactor()
    sync = LogSync(clock, lambda status: None, state=0)
    sync.joining = True
    sync._SyncObj__raftLeader = sync.node(OTHERS[0])
    sync._SyncObj__raftElectionDeadline = -math.inf
    sync._prevote_gate()
    assert sync._SyncObj__transport.sent == [] and sync._SyncObj__raftLeader is None
    sync.entries += [(["add", OTHERS[1], None], 2, 1)]
    sync.tick()
    assert sync.joining  # another node's addition
    sync.entries += [(["add", SELF, None], 3, 1)]
    sync.tick()
    reactor.pump()
    assert not sync.joining
    sync._SyncObj__raftElectionDeadline = -math.inf
    sync._prevote_gate()
    assert {node for node, message in sync._SyncObj__transport.sent
            if message["type"] == "opengslb_prevote"} == set(OTHERS)


def test_peer_addresses() -> None:
    """Only IP:port (IPv6 in brackets) names a stranger worth keeping."""
    assert raft._is_peer_address("10.0.0.1:7946") and raft._is_peer_address("[::1]:7946")
    for bad in ("readonly", "10.0.0.1", "host:7946", "10.0.0.1:0", "10.0.0.1:70000"):
        assert not raft._is_peer_address(bad), bad


def test_the_transfer_admin_command_also_stops_answering_first() -> None:
    """pysyncobj's ``transfer`` admin command goes through the same handover: not serving."""
    node, sync, reactor, _ = make_node()
    sync.answer(OTHERS[0])
    settle(sync, reactor)
    replies: List[Any] = []
    sync._transferLeadership([], lambda result, error: replies.append(error))
    settle(sync, reactor)
    assert replies == [FAIL_REASON.SUCCESS] and sync.transfers == [OTHERS[0]]
    assert node.status.handing_over and not node.serving()


# -- self-demotion: hold-down and the choice of successor ------------------------------------


def test_a_demoted_node_stays_out_of_elections_unless_nobody_else_leads() -> None:
    """In its hold-down a node starts no pre-vote while a leader was heard within
    HOLD_DOWN_GRACE election timeouts; after that (it is the only candidate) it stands again,
    and after the hold-down it behaves as always."""
    clock = HandClock()
    node, _, reactor, _ = make_node(clock)
    sync = LogSync(clock, node._published_on_tick, state=0)
    node._sync = sync  # type: ignore[assignment]
    sync._last_leader_contact = clock.now
    node.hold_down(30.0)
    clock.now += TIMING.max_timeout  # the leader went silent: the election timer fired
    sync._SyncObj__raftElectionDeadline = -math.inf
    sync._prevote_gate()
    assert sync._SyncObj__transport.sent == []
    clock.now += raft.HOLD_DOWN_GRACE * TIMING.max_timeout  # nobody else has led since
    sync._SyncObj__raftElectionDeadline = -math.inf
    sync._prevote_gate()
    assert {n for n, m in sync._SyncObj__transport.sent if m["type"] == "opengslb_prevote"} == set(OTHERS)
    # after the hold-down: one silent election timeout is enough, as always
    sync._SyncObj__transport.sent.clear()
    clock.now += 30.0
    sync._last_leader_contact = clock.now - TIMING.max_timeout
    sync._prevote_granted_at = -math.inf
    sync._SyncObj__raftElectionDeadline = -math.inf
    sync._prevote_gate()
    assert any(m["type"] == "opengslb_prevote" for _, m in sync._SyncObj__transport.sent)


def test_handover_prefers_the_given_caught_up_followers() -> None:
    _, sync, _, _ = make_node()
    assert sync._handover_target(frozenset()) is None  # pysyncobj chooses
    assert sync._handover_target(frozenset({OTHERS[1]})).id == OTHERS[1]
    sync._SyncObj__raftMatchIndex[sync.node(OTHERS[1])] = 9  # behind: not a candidate
    assert sync._handover_target(frozenset({OTHERS[1]})) is None
    sync._SyncObj__connectedNodes.discard(sync.node(OTHERS[0]))
    assert sync._handover_target(frozenset(OTHERS)) is None


def test_a_stalled_tick_thread_is_logged(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ticks further apart than their wait plus TICK_STALL are logged with the gap (a stall of the
    tick thread silently costs heartbeats and the lease otherwise); regular ticks are not."""
    monkeypatch.setattr(pysyncobj.syncobj.SyncObj, "_onTick", lambda self, timeToWait=0.0: None)
    events: List[Dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        clock = HandClock()
        node, sync, reactor, _ = make_node(clock)
        sync._on_stall = node._stalled_on_tick
        for _ in range(5):
            sync._onTick(0.02)
            clock.now += 0.02 + raft.TICK_STALL - 0.01
        reactor.pump()
        assert not [e for e in events if e.get("event") == "raft_tick_stalled"]
        clock.now += 0.5
        sync._onTick(0.02)
        reactor.pump()
        stalled = [e for e in events if e.get("event") == "raft_tick_stalled"]
        assert len(stalled) == 1 and "0.710s between two ticks" in formatEvent(stalled[0])
    finally:
        globalLogPublisher.removeObserver(events.append)


def test_a_stuck_tick_thread_is_named_with_its_stack_while_stuck() -> None:
    """The reactor-side watch logs where a tick thread stuck past TICK_STALL is (its stack),
    once per stuck tick."""
    events: List[Dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    release = threading.Event()

    def stuck_in_io() -> None:
        release.wait(10)

    thread = threading.Thread(target=stuck_in_io, daemon=True)
    thread.start()
    try:
        clock = HandClock()
        node, sync, reactor, _ = make_node(clock)
        sync.tick_thread, sync.tick_started = thread.ident, clock.now
        node._watch_tick()
        assert not [e for e in events if e.get("event") == "raft_tick_stuck"]
        clock.now += raft.TICK_STALL + 0.1
        node._watch_tick()  # the watch itself was away as long: the process was paused, no report
        assert not [e for e in events if e.get("event") == "raft_tick_stuck"]
        sync.tick_started = clock.now
        for _ in range(4):  # the reactor runs every 0.1 s; the tick thread does not
            clock.now += 0.1
            node._watch_tick()
        stuck = [e for e in events if e.get("event") == "raft_tick_stuck"]
        assert len(stuck) == 1 and "stuck_in_io" in formatEvent(stuck[0]), stuck
    finally:
        release.set()
        globalLogPublisher.removeObserver(events.append)


def test_member_lists_are_saved_off_the_reactor_one_at_a_time_newest_last(tmp_path: Any) -> None:
    """A membership change is fsynced in a worker thread (the reactor never waits for the disk);
    changes arriving during a write are coalesced and the newest list is what stays on disk."""
    reactor = Reactor()
    cluster = ClusterConfig(mode="cluster", advertise_address=SELF, raft=RaftConfig(data_dir=str(tmp_path)),
                            gossip=GossipConfig(encryption_key="a" * 44))
    node = RaftNode(reactor, cluster)
    gate = threading.Event()
    writes: List[Tuple[str, ...]] = []
    real_save = node._save_members

    def slow_save(members: Tuple[str, ...]) -> None:
        gate.wait(5)
        writes.append(members)
        real_save(members)

    node._save_members = slow_save  # type: ignore[method-assign]
    started = time.monotonic()
    for count in (1, 2, 3):
        node._save_members_later(tuple([SELF] + OTHERS[:count - 1]))
    assert time.monotonic() - started < 0.05  # nothing waited for the (held) disk
    gate.set()
    deadline = time.monotonic() + 5
    while node._members_saving and time.monotonic() < deadline:
        reactor.pump()
        time.sleep(0.005)
    assert writes == [(SELF,), (SELF, *OTHERS)]  # the second list was superseded before its turn
    saved = json.loads((tmp_path / "members.json").read_text())
    assert saved["members"] == [SELF, *OTHERS]
