"""Routing algorithms: invariants and distributions."""

import random
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from opengslb.routing import ALGORITHMS, Candidate, algorithm_for

candidates_strategy = st.lists(
    st.builds(Candidate, address=st.sampled_from(["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"]),
              port=st.integers(1, 65535), region=st.just("r"),
              weight=st.sampled_from([0.0, 1.0, 5.0, 100.0, 1000.0]), healthy=st.booleans()),
    max_size=8,
).map(lambda cs: [Candidate(c.address, c.port, c.region, c.weight, c.healthy, order=i)
                  for i, c in enumerate(cs)])


@given(candidates_strategy, st.sampled_from(sorted(ALGORITHMS)), st.integers(0, 2**32))
def test_never_picks_unhealthy_or_weight_zero(candidates, name, seed):
    """Every algorithm only returns healthy candidates with weight > 0, or None when none exist."""
    picker = algorithm_for(name).prepare(candidates, random.Random(seed))
    eligible = [c for c in candidates if c.healthy and c.weight > 0]
    for _ in range(20):
        chosen = picker.pick()
        if eligible:
            assert chosen in eligible
        else:
            assert chosen is None


@given(candidates_strategy, st.integers(0, 2**32))
def test_failover_is_first_eligible(candidates, seed):
    """failover always answers the first eligible candidate in configuration order."""
    picker = algorithm_for("failover").prepare(candidates, random.Random(seed))
    eligible = [c for c in candidates if c.healthy and c.weight > 0]
    assert picker.pick() == (eligible[0] if eligible else None)


def _servers(weights, healthy=None):
    healthy = healthy or [True] * len(weights)
    return [Candidate(f"192.0.2.{i + 1}", 80, "r", float(w), h, order=i)
            for i, (w, h) in enumerate(zip(weights, healthy))]


def test_round_robin_rotates_evenly():
    """Equal weights: each healthy candidate is picked exactly once per cycle."""
    servers = _servers([100, 100, 100, 100], [True, False, True, True])
    picker = algorithm_for("round-robin").prepare(servers, random.Random(1))
    counts = Counter(picker.pick().address for _ in range(300))
    assert counts == {"192.0.2.1": 100, "192.0.2.3": 100, "192.0.2.4": 100}


def test_round_robin_smooth_weighted_interleaves():
    """Unequal weights under round-robin follow the weights exactly and interleave."""
    picker = algorithm_for("round-robin").prepare(_servers([5, 1, 1]), random.Random(1))
    picks = [picker.pick().address for _ in range(7)]
    assert Counter(picks) == {"192.0.2.1": 5, "192.0.2.2": 1, "192.0.2.3": 1}
    assert picks[0] == "192.0.2.1" and picks[1] == "192.0.2.1" and picks[2] != picks[3]


def test_weighted_follows_weights():
    """weighted: shares within 2% of weight share over 100k picks; weight 0 never chosen."""
    picker = algorithm_for("weighted").prepare(_servers([100, 300, 600, 0]), random.Random(7))
    counts = Counter(picker.pick().address for _ in range(100_000))
    assert "192.0.2.4" not in counts
    for address, share in (("192.0.2.1", 0.1), ("192.0.2.2", 0.3), ("192.0.2.3", 0.6)):
        assert abs(counts[address] / 100_000 - share) < 0.02


def test_registry_names_match_config_values():
    """The registry offers exactly the algorithms the configuration accepts."""
    assert sorted(ALGORITHMS) == ["consistent-hash", "failover", "geolocation", "latency", "round-robin", "weighted"]
