"""Weighted rendezvous hashing: stability when servers leave and return, weights honoured."""

from __future__ import annotations

from collections import Counter

from opengslb.routing.rendezvous import choose

CLIENTS = [f"10.{i >> 8}.{i & 255}.0/24".encode() for i in range(10_000)]


def servers(n: int, weights=None):
    return [(f"192.0.2.{i}:80".encode(), (weights or {}).get(i, 100.0), i) for i in range(n)]


def test_when_one_of_n_leaves_only_its_clients_move_and_they_come_back():
    """5 servers, one leaves: at most 1/N + 2% of 10,000 client networks change server; all return."""
    full = servers(5)
    before = {c: choose(c, full) for c in CLIENTS}
    without = [s for s in full if s[2] != 3]
    after = {c: choose(c, without) for c in CLIENTS}
    moved = sum(before[c] != after[c] for c in CLIENTS)
    assert all(after[c] == before[c] for c in CLIENTS if before[c] != 3), "a client of a survivor moved"
    assert moved / len(CLIENTS) <= 1 / 5 + 0.02
    assert {c: choose(c, full) for c in CLIENTS} == before


def test_shares_follow_weights():
    """Weights 100/100/200: the heavy server gets about half of the clients."""
    counts = Counter(choose(c, servers(3, {2: 200.0})) for c in CLIENTS)
    assert abs(counts[2] / len(CLIENTS) - 0.5) < 0.03
    assert abs(counts[0] / len(CLIENTS) - 0.25) < 0.03


def test_zero_weight_and_no_candidates():
    """Weight 0 is never chosen; no candidates gives None."""
    assert all(choose(c, servers(2, {0: 0.0})) == 1 for c in CLIENTS[:200])
    assert choose(b"x", []) is None
