"""Combining node verdicts (SPEC §7.5)."""

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.task import Clock

from opengslb.cluster.consensus import DistributedHealth
from opengslb.health.tracker import ServerKey
from opengslb.served.consensus import FRESHNESS, combine

KEY = ServerKey("r1", "192.0.2.1", 80)


def test_majority_counts_live_nodes_and_ties_go_to_the_leader():
    """majority: more than half healthy → healthy; a tie → the leader's own verdict."""
    assert combine("majority", True, [True, False]) is True
    assert combine("majority", False, [True, False]) is False
    assert combine("majority", True, [False, False]) is False
    assert combine("majority", True, [False]) is True   # 1–1 tie: the leader decides
    assert combine("majority", False, [True]) is False


def test_any_all_and_leader_modes():
    """any: one healthy is enough; all: one unhealthy is enough; leader: own only."""
    assert combine("any", False, [False, True]) is True
    assert combine("all", True, [True, False]) is False
    assert combine("all", True, [True, True]) is True
    assert combine("leader", True, [False, False]) is True


@given(st.sampled_from(["majority", "any", "all"]), st.booleans(), st.lists(st.booleans(), max_size=6))
def test_unanimous_votes_decide_every_mode(mode, own, others):
    """When every live node agrees, every mode serves that verdict."""
    if all(v == own for v in others):
        assert combine(mode, own, others) is own


def test_stale_views_age_out():
    """A node not heard from for more than FRESHNESS seconds no longer votes."""
    clock = Clock()
    views = {"b:1": (0.0, {KEY: False}), "c:1": (0.0, {KEY: False})}
    health = DistributedHealth(lambda: views, lambda: "majority", clock)
    assert health.served(KEY, True) is False
    clock.advance(FRESHNESS + 0.1)
    assert health.served(KEY, True) is True
    assert health.per_node(KEY) == {}


def test_nodes_without_a_verdict_for_the_server_do_not_vote():
    """A fresh node that has no verdict for a server is left out for it."""
    clock = Clock()
    views = {"b:1": (0.0, {}), "c:1": (0.0, {KEY: True})}
    health = DistributedHealth(lambda: views, lambda: "all", clock)
    assert health.served(KEY, True) is True
    assert health.per_node(KEY) == {"c:1": True}
