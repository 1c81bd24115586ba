"""Client networks → rule, with the EDNS Client Subnet scope each answer depends on.

A topology is an ordered list of rules, each a set of networks (SPEC §4.1).
A client address is steered by the rule of the *longest* network containing
it (over all rules, as gdnsd's ``nets`` maps do); an address in no network
gets ``None`` (the domain's own region order).

The scope (RFC 7871 §7.2.1) of an answer is the shortest prefix ``S`` of the
client's address such that *every* address in ``address/S`` gets the same
rule — so a resolver caching the answer for ``/S`` never hands it to a client
that should get another.  That is longer than the matched network's prefix
when a more specific network with another rule sits inside it, shorter when
sibling networks with the same rule merge, and for an unmatched client just
long enough to leave out every topology network.  Two rules with the same
``key`` (e.g. the same region list) count as the same answer.

The map is flattened once into sorted, disjoint blocks (maximal uniform
prefixes) covering the whole address space, so a query is one binary search:
O(log blocks), no per-query allocation.
"""

from __future__ import annotations

import ipaddress
from bisect import bisect_right
from dataclasses import dataclass
from typing import Dict, Hashable, List, Optional, Sequence, Tuple

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Marks "no rule": the client is in no topology network.
UNMATCHED: Hashable = None


@dataclass(frozen=True)
class Match:
    """Where a client address landed: the rule's index (``None``: unmatched) and the scope."""

    rule: Optional[int]
    scope: int


class _Node:
    __slots__ = ("children", "rule")

    def __init__(self) -> None:
        self.children: List[Optional[_Node]] = [None, None]
        self.rule: Optional[int] = None  # a network ends here: its rule index


class _FamilyMap:
    """The flattened map of one address family (``bits`` = 32 or 128)."""

    def __init__(self, bits: int, networks: Sequence[Tuple[IPNetwork, int]], keys: Sequence[Hashable]) -> None:
        self.bits = bits
        self._keys = keys
        root = _Node()
        for network, rule in networks:
            node = root
            value = int(network.network_address)
            for depth in range(network.prefixlen):
                bit = (value >> (bits - 1 - depth)) & 1
                child = node.children[bit]
                if child is None:
                    child = node.children[bit] = _Node()
                node = child
            if node.rule is None or rule < node.rule:  # a network listed twice: the first rule wins
                node.rule = rule
        self.starts: List[int] = []
        self.matches: List[Match] = []
        self._flatten(root, 0, 0, None)

    def _key(self, rule: Optional[int]) -> Hashable:
        return UNMATCHED if rule is None else self._keys[rule]

    def _uniform(self, node: Optional[_Node], inherited: Optional[int],
                 memo: Dict[int, Tuple[bool, Optional[int]]]) -> Tuple[bool, Optional[int]]:
        """(True, rule) when every address under ``node`` gets rules of one key; else (False, _).

        The rule returned is a representative of that key (the one that applies at
        the node's first address, for a stable answer).
        """
        if node is None:
            return True, inherited
        cached = memo.get(id(node))
        if cached is not None:
            return cached
        here = node.rule if node.rule is not None else inherited
        left = self._uniform(node.children[0], here, memo)
        right = self._uniform(node.children[1], here, memo)
        result = (left[0] and right[0] and self._key(left[1]) == self._key(right[1]), left[1])
        memo[id(node)] = result
        return result

    def _flatten(self, root: _Node, value: int, depth: int, inherited: Optional[int]) -> None:
        """Emit maximal uniform prefixes in address order (iteratively: no deep recursion)."""
        memo: Dict[int, Tuple[bool, Optional[int]]] = {}
        stack: List[Tuple[Optional[_Node], int, int, Optional[int]]] = [(root, value, depth, inherited)]
        while stack:
            node, start, length, above = stack.pop()
            uniform, rule = self._uniform(node, above, memo)
            if uniform:
                self.starts.append(start)
                self.matches.append(Match(rule, length))
                continue
            assert node is not None
            here = node.rule if node.rule is not None else above
            half = 1 << (self.bits - length - 1)
            stack.append((node.children[1], start + half, length + 1, here))
            stack.append((node.children[0], start, length + 1, here))

    def lookup(self, value: int) -> Match:
        return self.matches[bisect_right(self.starts, value) - 1]


class TopologyMap:
    """Longest-prefix rule lookup with the correct ECS scope, for both families.

    :param rules: ``(networks, key)`` in rule order; ``key`` says which rules
        give the same answer (e.g. a tuple of region names).
    :param unmatched_key: the key of the answer for clients in no network (the
        domain's own region order), so a rule with the same answer merges with it.
    """

    def __init__(self, rules: Sequence[Tuple[Sequence[IPNetwork], Hashable]],
                 unmatched_key: Hashable = UNMATCHED) -> None:
        keys = [key if key != unmatched_key else UNMATCHED for _, key in rules]
        by_family: Dict[int, List[Tuple[IPNetwork, int]]] = {4: [], 6: []}
        for index, (networks, _) in enumerate(rules):
            for network in networks:
                by_family[network.version].append((network, index))
        self._families = {4: _FamilyMap(32, by_family[4], keys), 6: _FamilyMap(128, by_family[6], keys)}
        self.blocks = sum(len(f.starts) for f in self._families.values())

    def lookup(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> Match:
        """The rule steering ``address`` (``None``: unmatched) and the scope of that answer."""
        return self._families[address.version].lookup(int(address))

    def lookup_int(self, version: int, value: int) -> Match:
        """:meth:`lookup` for an address already as an integer (the fast path)."""
        return self._families[version].lookup(value)
