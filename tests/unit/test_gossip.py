"""Tests for opengslb.cluster.gossip: delivery, chunking, repair, authentication, replay.

Most tests join Gossip instances through an in-memory network (a fake
transport whose ``write`` delivers straight to the addressed instance's
``datagramReceived``) and drive time with one ``task.Clock``. One trial
TestCase runs two instances over real loopback UDP.
"""

from __future__ import annotations

import json
import random
from typing import Any, Callable, Dict, List, Optional, Tuple

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import reactor as global_reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from opengslb.cluster.gossip import MAX_DATAGRAM, REPLAY_WINDOW, VERSION, Gossip
from opengslb.health.tracker import ServerKey
from opengslb.state.keys import GOSSIP, derive_key

KEY = derive_key("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", GOSSIP)
OTHER_KEY = derive_key("HxwdHh8AAQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRo=", GOSSIP)
A, B, C = "10.0.0.1:7946", "10.0.0.2:7946", "10.0.0.3:7946"
K1 = ServerKey("us-east-1", "192.0.2.1", 80)
K2 = ServerKey("us-east-1", "192.0.2.2", 80)
K3 = ServerKey("eu-west-1", "2001:db8::3", 443)


class Network:
    """Delivers datagrams between instances at once; records them; can drop them."""

    def __init__(self) -> None:
        self.nodes: Dict[str, Gossip] = {}
        self.sent: List[Tuple[str, str, bytes]] = []
        self.drop: Callable[[str, str, bytes], bool] = lambda src, dst, data: False

    def attach(self, gossip: Gossip) -> None:
        self.nodes[gossip.node_id] = gossip
        gossip.makeConnection(FakeTransport(self, gossip.node_id))

    def send(self, src: str, dst: str, data: bytes) -> None:
        self.sent.append((src, dst, data))
        target = self.nodes.get(dst)
        if target is not None and not self.drop(src, dst, data):
            host, _, port = src.rpartition(":")
            target.datagramReceived(data, (host, int(port)))

    def to(self, dst: str) -> List[bytes]:
        """Datagrams sent to ``dst`` so far."""
        return [data for _, d, data in self.sent if d == dst]


class FakeTransport:
    """The slice of IUDPTransport that Gossip uses."""

    def __init__(self, net: Network, node_id: str) -> None:
        self.net = net
        self.node_id = node_id

    def write(self, data: bytes, addr: Tuple[str, int]) -> None:
        assert len(data) <= MAX_DATAGRAM
        self.net.send(self.node_id, f"{addr[0]}:{addr[1]}", data)


class Cluster:
    """Gossip instances on one Network and one Clock, recording on_verdicts calls."""

    def __init__(self, members: Tuple[str, ...] = (A, B, C), interval: float = 1.0) -> None:
        self.clock = Clock()
        self.clock.advance(1000.0)
        self.net = Network()
        self.members = list(members)
        self.calls: Dict[str, List[Tuple[str, Dict[ServerKey, bool]]]] = {}
        self.interval = interval
        self.nodes = {m: self.add(m, seed=i) for i, m in enumerate(members)}

    def add(self, node_id: str, seed: int, key: bytes = KEY, attach: bool = True) -> Gossip:
        calls = self.calls.setdefault(node_id, [])
        g = Gossip(self.clock, node_id, key, lambda: list(self.members),
                   lambda sender, verdicts: calls.append((sender, verdicts)),
                   full_state_interval=self.interval,
                   rng=random.Random(seed).randbytes, clock=self.clock)
        if attach:
            self.net.attach(g)
        return g

    def view(self, at: str, of: str) -> Optional[Dict[ServerKey, bool]]:
        entry = self.nodes[at].views().get(of)
        return None if entry is None else entry[1]


def decrypt(data: bytes, key: bytes = KEY) -> Dict[str, Any]:
    plain = AESGCM(key).decrypt(data[1:13], data[13:], data[:1])
    result: Dict[str, Any] = json.loads(plain)
    return result


def seal(payload: bytes, key: bytes = KEY, nonce: bytes = b"\x01" * 12) -> bytes:
    """A datagram carrying ``payload`` authenticated under ``key``."""
    return bytes([VERSION]) + nonce + AESGCM(key).encrypt(nonce, payload, bytes([VERSION]))


def many(n: int) -> Dict[ServerKey, bool]:
    return {ServerKey(f"region-{i % 7}", f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", 8000 + i % 100):
            i % 3 != 0 for i in range(n)}


# -- delivery -----------------------------------------------------------------

def test_delta_reaches_every_peer_in_the_same_turn() -> None:
    """A verdict change is delivered as a delta to every other member without waiting for a full state."""
    c = Cluster()
    c.nodes[A].set_local({K1: True})
    c.clock.advance(0)
    for other in (B, C):
        assert c.view(other, A) == {K1: True}
        assert c.calls[other][-1] == (A, {K1: True})
        assert c.nodes[other].views()[A][0] == c.clock.seconds()
    assert A not in c.nodes[A].views()


def test_changes_in_one_turn_are_batched_into_one_delta() -> None:
    """Several set_local calls in one reactor turn send one delta with the net change."""
    c = Cluster(members=(A, B))
    before = len(c.net.to(B))
    c.nodes[A].set_local({K1: True})
    c.nodes[A].set_local({K1: False, K2: True})
    c.clock.advance(0)
    sent = c.net.to(B)[before:]
    assert len(sent) == 1
    msg = decrypt(sent[0])
    assert msg["kind"] == "delta"
    assert sorted(map(tuple, msg["verdicts"])) == sorted([tuple(K1) + (False,), tuple(K2) + (True,)])
    assert c.view(B, A) == {K1: False, K2: True}


def test_unchanged_verdicts_send_no_delta() -> None:
    """set_local with the same verdicts sends nothing until the next full state."""
    c = Cluster(members=(A, B))
    c.nodes[A].set_local({K1: True})
    c.clock.advance(0)
    before = len(c.net.sent)
    c.nodes[A].set_local({K1: True})
    c.clock.advance(0)
    assert len(c.net.sent) == before


def test_full_state_replaces_the_senders_map() -> None:
    """A full state replaces what the sender said before, dropping removed servers."""
    c = Cluster(members=(A, B))
    c.nodes[A].set_local({K1: True, K2: False})
    c.clock.advance(0)
    c.nodes[A].set_local({K3: True})
    c.clock.advance(0)
    assert c.view(B, A) == {K1: True, K2: False, K3: True}  # deltas do not remove
    c.clock.advance(1.0)
    assert c.view(B, A) == {K3: True}
    assert c.calls[B][-1] == (A, {K3: True})


def test_full_state_is_sent_every_interval_to_every_peer() -> None:
    """Each interval every node sends its full state to each other member, skipping itself."""
    c = Cluster(interval=0.5)
    c.nodes[A].set_local({K1: True})
    c.clock.advance(0)
    before = len(c.net.sent)
    c.clock.advance(0.5)
    fulls = [(s, d) for s, d, data in c.net.sent[before:] if decrypt(data)["kind"] == "full"]
    assert sorted(fulls) == sorted((s, d) for s in (A, B, C) for d in (A, B, C) if s != d)


def test_lost_delta_is_repaired_by_the_next_full_state() -> None:
    """A delta lost on the way reaches the peer with the next full state, within the interval."""
    c = Cluster(members=(A, B))
    c.nodes[A].set_local({K1: True})
    c.clock.advance(0)
    c.net.drop = lambda src, dst, data: decrypt(data)["kind"] == "delta"
    c.nodes[A].set_local({K1: False})
    c.clock.advance(0)
    assert c.view(B, A) == {K1: True}
    c.clock.advance(0.999)
    assert c.view(B, A) == {K1: True}
    c.clock.advance(0.001)
    assert c.view(B, A) == {K1: False}


def test_peer_list_may_include_self_and_departed_members_are_forgotten() -> None:
    """A node never sends to itself; a sender that left the membership leaves views()."""
    c = Cluster(members=(A, B))
    c.nodes[A].set_local({K1: True})
    c.clock.advance(1.0)
    assert all(src != dst for src, dst, _ in c.net.sent)
    assert A in c.nodes[B].views()
    c.members.remove(A)
    c.clock.advance(1.0)
    assert A not in c.nodes[B].views()


def test_callback_errors_do_not_escape() -> None:
    """An exception from on_verdicts is logged; the verdicts are still recorded."""
    clock = Clock()
    net = Network()

    def boom(sender: str, verdicts: Dict[ServerKey, bool]) -> None:
        raise RuntimeError("consumer bug")

    a = Gossip(clock, A, KEY, lambda: [A, B], lambda s, v: None, rng=random.Random(1).randbytes, clock=clock)
    b = Gossip(clock, B, KEY, lambda: [A, B], boom, rng=random.Random(2).randbytes, clock=clock)
    net.attach(a)
    net.attach(b)
    a.set_local({K1: True})
    clock.advance(0)
    assert b.views()[A][1] == {K1: True}
    assert sum(b.dropped.values()) == 0


# -- wire format and chunking -------------------------------------------------

def test_datagram_layout() -> None:
    """A datagram is version byte, 12-byte nonce, AES-GCM of the documented JSON payload."""
    c = Cluster(members=(A, B))
    c.nodes[A].set_local({K3: False})
    c.clock.advance(0)
    data = c.net.to(B)[-1]
    assert data[0] == VERSION
    msg = decrypt(data)
    assert set(msg) == {"from", "epoch", "seq", "ts", "kind", "chunk", "chunks", "verdicts"}
    assert msg["from"] == A and msg["kind"] == "delta" and msg["ts"] == c.clock.seconds()
    assert (msg["chunk"], msg["chunks"]) == (0, 1)
    assert msg["verdicts"] == [["eu-west-1", "2001:db8::3", 443, False]]


def test_large_full_state_is_chunked_and_reassembled() -> None:
    """A full state of 2,000 servers goes out in authenticated chunks of at most 1200 bytes and arrives whole."""
    c = Cluster(members=(A, B))
    state = many(2000)
    c.nodes[A].set_local(state)
    c.clock.advance(0)
    before = len(c.net.to(B))
    c.clock.advance(1.0)
    chunks = [d for d in c.net.to(B)[before:] if decrypt(d)["from"] == A]
    assert len(chunks) > 10
    assert all(len(d) <= MAX_DATAGRAM for d in chunks)
    assert max(len(d) for d in chunks) > MAX_DATAGRAM - 100  # packed, not one row each
    msgs = [decrypt(d) for d in chunks]
    assert [m["chunk"] for m in msgs] == list(range(len(chunks)))
    assert {m["chunks"] for m in msgs} == {len(chunks)}
    assert [m["seq"] - m["chunk"] for m in msgs] == [msgs[0]["seq"]] * len(chunks)
    assert c.view(B, A) == state
    assert c.calls[B][-1] == (A, state)


def test_chunks_in_any_order_reassemble_and_incomplete_state_is_not_applied() -> None:
    """A full state applies once every chunk arrived, in whatever order; until then the old map stays."""
    c = Cluster(members=(A, B))
    c.nodes[A].set_local({K1: True})
    c.clock.advance(1.0)
    state = many(300)
    c.net.drop = lambda src, dst, data: src == A
    c.nodes[A].set_local(state)
    c.clock.advance(0)
    before = len(c.net.to(B))
    c.clock.advance(1.0)
    chunks = c.net.to(B)[before:]
    assert len(chunks) > 3
    b = c.nodes[B]
    for d in reversed(chunks[1:]):
        b.datagramReceived(d, ("10.0.0.1", 7946))
    assert c.view(B, A) == {K1: True}
    b.datagramReceived(chunks[0], ("10.0.0.1", 7946))
    assert c.view(B, A) == state
    assert sum(b.dropped.values()) == 0


def test_at_most_two_incomplete_full_states_are_kept() -> None:
    """Partial full states beyond two per sender are discarded, oldest first."""
    c = Cluster(members=(A, B))
    state = many(300)
    c.net.drop = lambda src, dst, data: src == A
    c.nodes[A].set_local(state)
    c.clock.advance(0)
    rounds = []
    for _ in range(3):
        before = len(c.net.to(B))
        c.clock.advance(1.0)
        rounds.append(c.net.to(B)[before:])
    b = c.nodes[B]
    for r in rounds:
        for d in r[1:]:
            b.datagramReceived(d, ("10.0.0.1", 7946))
    b.datagramReceived(rounds[0][0], ("10.0.0.1", 7946))  # its other chunks were evicted
    assert c.view(B, A) == {}
    b.datagramReceived(rounds[1][0], ("10.0.0.1", 7946))
    assert c.view(B, A) == state


def test_delta_newer_than_a_late_full_state_survives_it() -> None:
    """A full state completed after a newer delta keeps that delta's verdict."""
    c = Cluster(members=(A, B))
    c.net.drop = lambda src, dst, data: src == A
    c.nodes[A].set_local({K1: True, K2: True})
    c.clock.advance(0)
    held = c.net.to(B)[-1:]
    before = len(c.net.to(B))
    c.clock.advance(1.0)
    full = c.net.to(B)[before:]
    c.nodes[A].set_local({K1: False, K2: True})
    c.clock.advance(0)
    delta = c.net.to(B)[-1]
    b = c.nodes[B]
    for d in held + [delta] + full:
        b.datagramReceived(d, ("10.0.0.1", 7946))
    assert c.view(B, A) == {K1: False, K2: True}
    assert sum(b.dropped.values()) == 0


# -- drops --------------------------------------------------------------------

def received_by_b(c: Cluster) -> bytes:
    c.nodes[A].set_local({K1: True})
    c.clock.advance(0)
    return c.net.to(B)[-1]


def test_tampered_datagram_is_dropped_as_auth() -> None:
    """Any flipped bit in nonce or ciphertext fails authentication and changes nothing."""
    c = Cluster(members=(A, B))
    c.net.drop = lambda src, dst, data: True
    data = received_by_b(c)
    b = c.nodes[B]
    for i in (1, 12, 13, len(data) // 2, len(data) - 1):
        tampered = bytearray(data)
        tampered[i] ^= 0x01
        b.datagramReceived(bytes(tampered), ("10.0.0.1", 7946))
    assert b.dropped["auth"] == 5
    assert b.views() == {}
    b.datagramReceived(data, ("10.0.0.1", 7946))  # the original still verifies
    assert c.view(B, A) == {K1: True}


def test_wrong_key_is_dropped_as_auth() -> None:
    """A node with another cluster key is not heard."""
    c = Cluster(members=(A, B))
    intruder = c.add(C, seed=9, key=OTHER_KEY, attach=False)
    c.members.append(C)
    c.net.attach(intruder)
    intruder.set_local({K1: False})
    c.clock.advance(0)
    assert c.nodes[B].dropped["auth"] >= 1
    assert C not in c.nodes[B].views()
    assert c.calls[B] == []


def test_replayed_datagram_is_dropped_as_replay() -> None:
    """A datagram accepted once is dropped when it comes again."""
    c = Cluster(members=(A, B))
    data = received_by_b(c)
    c.nodes[A].set_local({K1: False})
    c.clock.advance(0)
    b = c.nodes[B]
    b.datagramReceived(data, ("10.0.0.1", 7946))
    assert b.dropped["replay"] == 1
    assert c.view(B, A) == {K1: False}


def test_reordering_within_the_window_is_accepted_beyond_it_is_replay() -> None:
    """Late datagrams are accepted once within the window; older ones are replays."""
    c = Cluster(members=(A, B))
    c.net.drop = lambda src, dst, data: True
    a, b = c.nodes[A], c.nodes[B]
    datagrams = []
    for i in range(REPLAY_WINDOW + 2):
        a.set_local({K1: i % 2 == 0})
        c.clock.advance(0)
        datagrams.append(c.net.to(B)[-1])
    b.datagramReceived(datagrams[-1], ("10.0.0.1", 7946))
    b.datagramReceived(datagrams[3], ("10.0.0.1", 7946))  # within the window: accepted, but older
    b.datagramReceived(datagrams[3], ("10.0.0.1", 7946))
    b.datagramReceived(datagrams[0], ("10.0.0.1", 7946))  # fell out of the window
    assert b.dropped == {"malformed": 0, "auth": 0, "replay": 2, "unknown_peer": 0}
    assert c.view(B, A) == {K1: (REPLAY_WINDOW + 1) % 2 == 0}


def test_own_datagram_reflected_back_is_replay() -> None:
    """A node drops its own datagrams sent back to it."""
    c = Cluster(members=(A, B))
    data = received_by_b(c)
    c.nodes[A].datagramReceived(data, ("10.0.0.2", 7946))
    assert c.nodes[A].dropped["replay"] == 1
    assert A not in c.nodes[A].views()


def test_unknown_sender_is_dropped_as_unknown_peer() -> None:
    """A correctly keyed sender that is not a Raft member is not heard."""
    c = Cluster(members=(A, B))
    stranger = c.add(C, seed=7)  # it sends to the members it is told about
    stranger.set_local({K1: False})
    c.clock.advance(1.0)
    from_stranger = [d for s, d, _ in c.net.sent if s == C and d == B]
    assert len(from_stranger) >= 2
    assert c.nodes[B].dropped == {"malformed": 0, "auth": 0, "replay": 0, "unknown_peer": len(from_stranger)}
    assert C not in c.nodes[B].views()


def test_garbage_and_short_datagrams_are_malformed() -> None:
    """Short datagrams, an unknown version, and authenticated non-conforming payloads are malformed."""
    c = Cluster(members=(A, B))
    b = c.nodes[B]
    good = {"from": A, "epoch": 1, "seq": 5, "ts": 1.0, "kind": "delta", "chunk": 0, "chunks": 1,
            "verdicts": [list(K1) + [True]]}
    bad_payloads: List[Any] = [
        b"not json", b"[]", b"\xff\xfe", b"[" * 100000,
        {**good, "kind": "other"}, {**good, "seq": -1}, {**good, "seq": True}, {**good, "ts": "now"},
        {**good, "ts": 10 ** 400}, {**good, "chunk": 1}, {**good, "chunks": 0},
        {**good, "verdicts": [["r", "a", 70000, True]]}, {**good, "verdicts": [["r", "a", 1, 1]]},
        {**good, "verdicts": [["r", "a", 1]]}, {**good, "from": None},
    ]
    datagrams = [b"", b"\x01", bytes([VERSION]) + b"x" * 27, bytes([VERSION + 1]) + b"x" * 100]
    datagrams += [seal(p if isinstance(p, bytes) else json.dumps(p).encode()) for p in bad_payloads]
    for d in datagrams:
        b.datagramReceived(d, ("192.0.2.9", 1))
    assert b.dropped == {"malformed": len(datagrams), "auth": 0, "replay": 0, "unknown_peer": 0}
    b.datagramReceived(seal(json.dumps(good).encode()), ("192.0.2.9", 1))
    assert c.view(B, A) == {K1: True}


def test_restarted_sender_with_a_new_epoch_is_accepted() -> None:
    """A restarted sender (new epoch, later clock) is heard again; its old datagrams become replays."""
    c = Cluster(members=(A, B))
    c.nodes[A].set_local({K1: True})
    c.clock.advance(0)
    old = c.net.to(B)[-1]
    c.nodes[A].doStop()
    c.clock.advance(5.0)
    restarted = c.add(A, seed=42)
    c.nodes[A] = restarted
    restarted.set_local({K1: False})
    c.clock.advance(0)
    b = c.nodes[B]
    assert c.view(B, A) == {K1: False}
    assert decrypt(c.net.to(B)[-1])["seq"] < decrypt(old)["seq"] + 5  # numbering started over
    b.datagramReceived(old, ("10.0.0.1", 7946))
    assert b.dropped["replay"] == 1
    assert c.view(B, A) == {K1: False}


def test_new_epoch_with_older_timestamp_is_replay() -> None:
    """A datagram from another epoch that is not newer than the current epoch's is a replay."""
    c = Cluster(members=(A, B))
    b = c.nodes[B]
    template = {"from": A, "seq": 0, "kind": "delta", "chunk": 0, "chunks": 1, "verdicts": [list(K1) + [True]]}
    b.datagramReceived(seal(json.dumps({**template, "epoch": 2, "ts": 100.0}).encode()), ("10.0.0.1", 1))
    b.datagramReceived(seal(json.dumps({**template, "epoch": 1, "ts": 99.0}).encode(),
                            nonce=b"\x02" * 12), ("10.0.0.1", 1))
    assert b.dropped["replay"] == 1
    b.datagramReceived(seal(json.dumps({**template, "epoch": 3, "ts": 101.0,
                                        "verdicts": [list(K1) + [False]]}).encode(),
                            nonce=b"\x03" * 12), ("10.0.0.1", 1))
    assert c.view(B, A) == {K1: False}


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1500))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    """Any datagram is either dropped and counted or applied; datagramReceived never raises."""
    clock = Clock()
    g = Gossip(clock, B, KEY, lambda: [A, B], lambda s, v: None, rng=random.Random(0).randbytes, clock=clock)
    g.datagramReceived(data, ("192.0.2.1", 1))
    assert sum(g.dropped.values()) == 1
    assert g.dropped["replay"] == g.dropped["unknown_peer"] == 0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)
payloads = st.fixed_dictionaries(
    {}, optional={"from": st.sampled_from([A, B, C]) | json_values, "epoch": json_values, "seq": json_values,
                  "ts": json_values, "kind": st.sampled_from(["delta", "full"]) | json_values,
                  "chunk": st.integers(-2, 3) | json_values, "chunks": st.integers(-1, 4) | json_values,
                  "verdicts": st.lists(st.tuples(st.text(max_size=4), st.text(max_size=4),
                                                 st.integers(-1, 70000), st.booleans() | json_values)
                                       .map(list), max_size=3) | json_values})


@settings(max_examples=300, deadline=None)
@given(st.lists(payloads, min_size=1, max_size=4))
def test_arbitrary_authenticated_payloads_never_raise(messages: List[Dict[str, Any]]) -> None:
    """Correctly keyed but arbitrary payloads are applied or dropped as malformed/replay/unknown, never raised."""
    clock = Clock()
    g = Gossip(clock, B, KEY, lambda: [A, B], lambda s, v: None, rng=random.Random(0).randbytes, clock=clock)
    for i, m in enumerate(messages):
        g.datagramReceived(seal(json.dumps(m).encode(), nonce=i.to_bytes(12, "big")), ("192.0.2.1", 1))
    assert g.dropped["auth"] == 0
    assert sum(g.dropped.values()) <= len(messages)


def test_key_must_be_32_bytes() -> None:
    """A key of another length is refused at construction."""
    clock = Clock()
    try:
        Gossip(clock, A, b"short", lambda: [], lambda s, v: None, clock=clock)
    except ValueError:
        return
    raise AssertionError("a 5-byte key was accepted")


# -- real loopback UDP ---------------------------------------------------------

class LoopbackTests(TestCase):
    """Two instances bound on 127.0.0.1 ephemeral ports, driven by the real reactor."""

    def test_delta_over_real_udp(self) -> Deferred[None]:
        """start() binds UDP; a change on one node reaches the other over loopback."""
        members: List[str] = []
        arrived: Deferred[None] = Deferred()

        def on_b(sender: str, verdicts: Dict[ServerKey, bool]) -> None:
            if verdicts.get(K1) is False and not arrived.called:
                arrived.callback(None)

        a = Gossip(global_reactor, "pending-a", KEY, lambda: list(members), lambda s, v: None,
                   full_state_interval=10.0)
        b = Gossip(global_reactor, "pending-b", KEY, lambda: list(members), on_b, full_state_interval=10.0)
        for g in (a, b):
            port = g.start("127.0.0.1", 0)
            g.node_id = f"127.0.0.1:{port.getHost().port}"
            members.append(g.node_id)
            self.addCleanup(g.stop)
        a.set_local({K1: False})
        arrived.addTimeout(5.0, global_reactor)

        def check(_: None) -> None:
            assert b.views()[a.node_id][1] == {K1: False}
            assert sum(b.dropped.values()) == 0

        return arrived.addCallback(check)
