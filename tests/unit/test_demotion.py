"""Leader self-demotion: the decision (DemotionPolicy, vantage_broken) and the watch's rounds on task.Clock."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Tuple

from twisted.internet import defer, task

from opengslb.cluster.demotion import (
    INTERVAL,
    PROBE_TIMEOUT,
    DemotionPolicy,
    LeaderWatch,
    probe_query,
    vantage_broken,
)


def policy(clock: task.Clock, **kwargs: Any) -> DemotionPolicy:
    return DemotionPolicy(clock.seconds, **kwargs)


# -- the decision ------------------------------------------------------------------


def test_three_consecutive_probe_failures_demote_not_two_nor_interrupted() -> None:
    p = policy(task.Clock())
    for answered in (False, False, True, False, False):
        p.probe(answered)
        assert p.reason() is None
    p.probe(False)
    assert p.reason() == "dns_self_probe"


def test_reactor_lag_must_last_three_seconds_beyond_the_bound() -> None:
    p = policy(task.Clock(), lag_bound=1.0)
    p.lag(2.0, 1.0)  # exactly the bound: not beyond it
    assert p.lagging_for == 0.0
    p.lag(2.1, 1.1)
    assert p.reason() is None  # 2.1 s of lag so far
    p.lag(1.0, 0.0)  # on time again: the streak ends
    p.lag(2.5, 1.5)
    assert p.reason() is None
    p.lag(1.5, 1.2)  # 4.0 s running
    assert p.reason() == "reactor_lag"


def test_one_long_stall_counts_as_lagging_for_its_length() -> None:
    p = policy(task.Clock(), lag_bound=1.0)
    p.lag(3.5, 2.5)  # the reactor was blocked 3.5 s: one round, 2.5 s late
    assert p.reason() == "reactor_lag"


def test_hold_down_lasts_its_configured_time_and_counts_per_reason() -> None:
    clock = task.Clock()
    clock.advance(1000)
    p = policy(clock, hold_down=30.0)
    for _ in range(3):
        p.probe(False)
    demotion = p.demoted(p.reason() or "")
    assert demotion.to_json() == {"reason": "dns_self_probe", "at": 1000.0, "hold_down_until": 1030.0}
    assert p.counts["dns_self_probe"] == 1 and p.counts["reactor_lag"] == 0
    assert p.reason() is None and p.failed_probes == 0  # counting starts afresh
    clock.advance(29.9)
    assert p.current() == demotion
    clock.advance(0.1)
    assert p.current() is None


def test_vantage_broken_needs_most_servers_down_and_a_majority_of_peers_seeing_them_up() -> None:
    own = {"a": False, "b": False, "c": True}
    up = {"a": True, "b": True, "c": True}
    assert vantage_broken(own, {"n2": up, "n3": up}, peer_count=2)
    # one of two peers agrees with us: not a majority of peers
    assert not vantage_broken(own, {"n2": up, "n3": {"a": False, "b": False, "c": True}}, peer_count=2)
    # a peer whose verdicts are not fresh (absent) does not count for us, but the count is of all peers
    assert not vantage_broken(own, {"n2": up}, peer_count=2)
    assert vantage_broken(own, {"n2": up, "n3": up, "n4": up}, peer_count=4)
    # exactly half of the servers down is not "more than half"
    assert not vantage_broken({"a": False, "b": True}, {"n2": up, "n3": up}, peer_count=2)
    assert not vantage_broken({}, {"n2": up}, peer_count=2)


# -- the watch -------------------------------------------------------------------


class FakePort:
    def __init__(self) -> None:
        self.sent: List[Tuple[bytes, Tuple[str, int]]] = []
        self.closed = False

    def write(self, data: bytes, address: Tuple[str, int]) -> None:
        self.sent.append((data, address))

    def stopListening(self) -> None:
        self.closed = True


class FakeReactor(task.Clock):
    def __init__(self) -> None:
        super().__init__()
        self.port = FakePort()
        self.protocol: Any = None

    def listenUDP(self, port: int, protocol: Any, interface: str = "") -> FakePort:
        self.protocol = protocol
        return self.port


class Node:
    """The watch's view of a node: leading, verdicts, transfers asked for."""

    def __init__(self, reactor: FakeReactor) -> None:
        self.reactor = reactor
        self.leading = True
        self.own: Mapping[str, bool] = {"a": True, "b": True}
        self.peers: Dict[str, Mapping[str, bool]] = {"n2": {"a": True, "b": True}, "n3": {"a": True, "b": True}}
        self.transfers: List[frozenset] = []
        self.pending: List[defer.Deferred] = []
        self.held: List[float] = []
        self.lag = 0.0  # extra monotonic seconds, to simulate a late reactor

    def transfer(self, prefer: frozenset) -> defer.Deferred:
        self.transfers.append(prefer)
        d: defer.Deferred = defer.Deferred()
        self.pending.append(d)
        return d

    def watch(self, **kwargs: Any) -> Tuple[LeaderWatch, DemotionPolicy]:
        p = DemotionPolicy(self.reactor.seconds, **kwargs)
        w = LeaderWatch(self.reactor, p, is_leader=lambda: self.leading, dns_address=("127.0.0.9", 5353),
                        own_verdicts=lambda: self.own, peer_verdicts=lambda: self.peers,
                        peer_count=lambda: 2, transfer=self.transfer, hold_down=self.held.append,
                        monotonic=lambda: self.reactor.seconds() + self.lag)
        return w, p


def answer_probes(reactor: FakeReactor) -> None:
    """The DNS listener answers every probe sent so far (a REFUSED reply is an answer too)."""
    for data, _ in reactor.port.sent:
        reply = data[:2] + b"\x80\x05" + data[4:]
        reactor.protocol.datagramReceived(reply, ("127.0.0.9", 5353))
    reactor.port.sent.clear()


def test_probe_is_a_real_dns_query_to_the_listener_and_answers_keep_the_leader() -> None:
    reactor = FakeReactor()
    node = Node(reactor)
    watch, p = node.watch()
    watch.start()
    for _ in range(10):
        reactor.advance(INTERVAL)
        assert len(reactor.port.sent) == 1
        data, address = reactor.port.sent[0]
        assert address == ("127.0.0.9", 5353) and data[2:] == probe_query(0)[2:]
        answer_probes(reactor)
    assert node.transfers == [] and p.failed_probes == 0
    watch.stop()
    assert reactor.port.closed and not reactor.getDelayedCalls()


def test_three_unanswered_probes_hand_over_to_fresh_peers_and_hold_down() -> None:
    reactor = FakeReactor()
    node = Node(reactor)
    watch, p = node.watch(hold_down=30.0)
    watch.start()
    reactor.advance(INTERVAL)
    reactor.advance(PROBE_TIMEOUT)
    reactor.advance(INTERVAL - PROBE_TIMEOUT)
    reactor.advance(PROBE_TIMEOUT)
    assert node.transfers == []  # two failures
    reactor.advance(INTERVAL - PROBE_TIMEOUT)
    reactor.advance(PROBE_TIMEOUT)
    assert node.transfers == [frozenset({"n2", "n3"})]
    reactor.advance(INTERVAL)  # a handover is under way: no second one
    assert len(node.transfers) == 1
    node.leading = False
    node.pending[0].callback("n2:7946")
    assert node.held == [30.0] and p.counts["dns_self_probe"] == 1
    assert p.current() is not None and p.current().reason == "dns_self_probe"  # type: ignore[union-attr]
    watch.stop()


def test_a_failed_handover_is_logged_and_retried_only_when_the_condition_holds_again() -> None:
    reactor = FakeReactor()
    node = Node(reactor)
    watch, p = node.watch()
    watch.start()
    node.own = {"a": False, "b": False}
    reactor.advance(INTERVAL)
    answer_probes(reactor)
    assert len(node.transfers) == 1
    node.pending[0].errback(RuntimeError("no follower took over"))
    assert p.counts["health_vantage"] == 0 and p.current() is None and node.held == []
    reactor.advance(INTERVAL)
    assert len(node.transfers) == 2


def test_a_lagging_reactor_demotes_after_three_seconds() -> None:
    reactor = FakeReactor()
    node = Node(reactor)
    watch, p = node.watch(lag_bound=1.0)
    watch.start()
    node.lag += 1.5  # the round runs 1.5 s late on the monotonic clock: 2.5 s since the last one
    reactor.advance(INTERVAL)
    answer_probes(reactor)
    assert node.transfers == [] and p.lagging_for == 2.5
    node.lag += 1.5
    reactor.advance(INTERVAL)
    assert len(node.transfers) == 1  # 5 s of lag beyond the bound
    node.pending[0].callback("n3:7946")
    assert p.counts["reactor_lag"] == 1


def test_a_follower_never_counts_or_demotes() -> None:
    reactor = FakeReactor()
    node = Node(reactor)
    node.leading = False
    node.own = {"a": False, "b": False}
    watch, p = node.watch()
    watch.start()
    for _ in range(5):
        reactor.advance(INTERVAL)
    assert node.transfers == [] and reactor.port.sent == [] and p.failed_probes == 0


def test_a_handover_unconfirmed_in_time_but_lost_leadership_still_counts_as_a_demotion() -> None:
    reactor = FakeReactor()
    node = Node(reactor)
    watch, p = node.watch(hold_down=30.0)
    watch.start()
    node.own = {"a": False, "b": False}
    reactor.advance(INTERVAL)
    node.leading = False  # a successor was elected, but not heard from within the timeout
    node.pending[0].errback(RuntimeError("no follower took over within 2.5s"))
    assert p.counts["health_vantage"] == 1 and node.held == [30.0]
