"""Topology lookup and ECS scope (opengslb/routing/topology.py), checked against brute force."""

from __future__ import annotations

import ipaddress
from typing import List, Optional, Sequence, Tuple

from hypothesis import given, settings
from hypothesis import strategies as st

from opengslb.routing.topology import TopologyMap

BASE = int(ipaddress.IPv4Address("10.0.0.0"))


def net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text)


def brute_rule(rules: Sequence[Tuple[Sequence, object]], value: int, version: int = 4) -> Optional[object]:
    """The key of the longest network containing ``value`` (first rule on ties); None unmatched."""
    address = ipaddress.ip_address(value) if version == 4 else ipaddress.IPv6Address(value)
    best: Tuple[int, int, object] = (-1, 0, None)
    for index, (networks, key) in enumerate(rules):
        for network in networks:
            if network.version == address.version and address in network:
                if network.prefixlen > best[0] or (network.prefixlen == best[0] and index < best[1]):
                    best = (network.prefixlen, index, key)
    return best[2]


def test_nested_networks_lengthen_the_scope():
    """A /24 with a /26 of another rule inside: outside the /26 the scope is longer than /24."""
    topology = TopologyMap([([net("192.0.2.0/24")], "eu"), ([net("192.0.2.64/26")], "us")])
    inner = topology.lookup(ipaddress.ip_address("192.0.2.70"))
    assert (inner.rule, inner.scope) == (1, 26)
    outer = topology.lookup(ipaddress.ip_address("192.0.2.1"))
    assert (outer.rule, outer.scope) == (0, 26)  # 192.0.2.0/26 holds no "us" address
    high = topology.lookup(ipaddress.ip_address("192.0.2.200"))
    assert (high.rule, high.scope) == (0, 25)  # 192.0.2.128/25 is all "eu"


def test_siblings_with_the_same_answer_merge():
    """Two /25s of the same rule give scope /24, as gdnsd merges them."""
    topology = TopologyMap([([net("198.51.100.0/25")], "a"), ([net("198.51.100.128/25")], "a")])
    assert topology.lookup(ipaddress.ip_address("198.51.100.3")).scope == 24


def test_unmatched_clients_get_a_scope_that_leaves_out_every_network():
    """A client in no network: scope just long enough to exclude the topology's networks."""
    topology = TopologyMap([([net("10.1.0.0/16")], "x")])
    match = topology.lookup(ipaddress.ip_address("10.0.0.1"))
    assert (match.rule, match.scope) == (None, 16)
    assert topology.lookup(ipaddress.ip_address("192.0.2.1")).scope == 1
    empty = TopologyMap([])
    assert empty.lookup(ipaddress.ip_address("192.0.2.1")).scope == 0


def test_a_rule_with_the_domains_own_order_merges_with_unmatched():
    """A rule whose answer equals the unmatched answer does not narrow the scope."""
    topology = TopologyMap([([net("10.1.0.0/16")], ("a", "b"))], unmatched_key=("a", "b"))
    assert topology.lookup(ipaddress.ip_address("10.0.0.1")).scope == 0


def test_ipv6_and_a_host_route():
    """IPv6 networks and a /128 work; a /128 inside a /56 gets scope 128 itself."""
    topology = TopologyMap([([net("2001:db8::/56")], "v6"), ([net("2001:db8::1/128")], "host")])
    host = topology.lookup(ipaddress.ip_address("2001:db8::1"))
    assert (host.rule, host.scope) == (1, 128)
    other = topology.lookup(ipaddress.ip_address("2001:db8::ff00"))
    assert other.rule == 0 and other.scope > 56


def paint(rules: Sequence[Tuple[Sequence, object]]) -> List[Optional[object]]:
    """The key of every address of 10.0.0.0/16: paint networks shortest first, so the longest
    wins (equal lengths: the first rule, painted last)."""
    truth: List[Optional[object]] = [None] * (1 << 16)
    order = sorted(((network.prefixlen, -index, network, key) for index, (networks, key) in enumerate(rules)
                    for network in networks), key=lambda item: (item[0], item[1]))
    for _, _, network, key in order:
        start = int(network.network_address) - BASE
        truth[start:start + network.num_addresses] = [key] * network.num_addresses
    return truth


def test_painting_agrees_with_the_definition():
    """The fast oracle equals the longest-prefix definition on a few addresses."""
    rules = [([net("10.0.0.0/16")], "a"), ([net("10.0.4.0/22"), net("10.0.5.0/24")], "b"),
             ([net("10.0.5.0/24")], "c")]
    truth = paint(rules)
    for offset in (0, 0x400, 0x500, 0x5FF, 0x7FF, 0xFFFF):
        assert truth[offset] == brute_rule(rules, BASE + offset)


prefixes = st.tuples(st.integers(min_value=0, max_value=0xFFFF), st.integers(min_value=16, max_value=24))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.lists(prefixes, min_size=1, max_size=3), st.sampled_from("abc")),
                max_size=6),
       st.lists(st.integers(min_value=0, max_value=0xFFFF), min_size=1, max_size=8))
def test_scope_is_correct_and_minimal(raw_rules, probes):
    """For random maps inside 10.0.0.0/16: every address in address/S gets the same answer as the
    address, and address/(S-1) holds one that does not (checked exhaustively over the /16)."""
    rules: List[Tuple[List, str]] = []
    for networks, key in raw_rules:
        rules.append(([ipaddress.IPv4Network((BASE + (offset & ~((1 << (32 - length)) - 1) & 0xFFFF), length))
                       for offset, length in networks], key))
    topology = TopologyMap(rules)
    truth = paint(rules)
    for probe in probes:
        match = topology.lookup(ipaddress.ip_address(BASE + probe))
        expected = truth[probe]
        got = None if match.rule is None else rules[match.rule][1]
        assert got == expected
        scope = max(match.scope, 16)  # outside 10.0.0.0/16 everything is unmatched
        size = 1 << (32 - scope)
        start = probe & ~(size - 1)
        assert set(truth[start:start + size]) == {expected}, (probe, match)
        if match.scope > 16:
            wider = 1 << (32 - match.scope + 1)
            begin = probe & ~(wider - 1)
            assert len(set(truth[begin:begin + wider])) > 1, "the scope could be shorter"
