"""geolocation: the domain's regions ordered by where the client is (SPEC §4.1).

A domain's ``topology`` rules each give a region order to a set of clients:
``networks`` (the longest network containing the client wins, over all
rules, as in gdnsd's ``nets`` maps), else — with ``geoip.database`` — the
first rule listing the client's country, else the first listing its
continent.  A client nothing matches gets the domain's own region order.
A rule's regions come first; the domain's other regions follow in the
domain's order, so a client is answered while any region has a healthy
server (``when_all_down`` applies only when none has).

The first region of the order with an eligible server answers; within it
servers are balanced by effective weight (smooth weighted round-robin, as
``round-robin`` does).  Which region comes first for each order is worked out
when the view is prepared, so a query costs one prefix lookup (a binary
search over the flattened topology, :mod:`opengslb.routing.topology`), at
most one GeoIP lookup (cached per network) and one pick.

The ECS scope of an answer is the topology's: the shortest prefix within
which every address gets the same rule; for a GeoIP-steered client at least
the database record's prefix as well; never more than /24 (IPv4) or /56
(IPv6), the longest source prefixes the server looks at.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from opengslb.routing.base import (
    CLIENT_PREFIX_CAP,
    NO_CLIENT,
    Candidate,
    Client,
    Picker,
    RoutingContext,
    eligible,
)
from opengslb.routing.geoip import GeoIPLookup
from opengslb.routing.round_robin import RoundRobin
from opengslb.routing.topology import TopologyMap

__all__ = ["Geolocation", "GeoPlan", "Steered", "plan_for"]

Order = Tuple[str, ...]
_CACHE_LIMIT = 65_536  # client networks whose steering is remembered


class Steered:
    """Where a client landed: the order's index, the ECS scope and what matched (for explain)."""

    __slots__ = ("order", "scope", "rule", "via")

    def __init__(self, order: int, scope: int, rule: Optional[int], via: Optional[Dict[str, Any]]) -> None:
        self.order = order
        self.scope = scope
        self.rule = rule
        self.via = via


class GeoPlan:
    """Everything about a domain's steering that depends on its configuration alone.

    ``orders[i]`` is a full region order; index 0 is the domain's own.
    Built once per configuration (cached in ``Config.derived``) and shared by
    both address families and every view built from that configuration.
    """

    def __init__(self, regions: Sequence[str], rules: Sequence[Any]) -> None:
        default: Order = tuple(regions)
        self.orders: List[Order] = [default]
        index: Dict[Order, int] = {default: 0}
        self.rule_orders: List[int] = []
        for rule in rules:
            order = tuple(rule.regions) + tuple(r for r in default if r not in rule.regions)
            if order not in index:
                index[order] = len(self.orders)
                self.orders.append(order)
            self.rule_orders.append(index[order])
        self.rules = tuple(rules)
        self._cache: Dict[Client, Steered] = {}
        self._generation = 0
        network_rules = [(i, rule) for i, rule in enumerate(rules) if rule.networks]
        self.countries: Dict[str, int] = {}
        self.continents: Dict[str, int] = {}
        for i, rule in enumerate(rules):
            for code in rule.countries:
                self.countries.setdefault(code, i)
            for code in rule.continents:
                self.continents.setdefault(code, i)
        self.uses_geoip = bool(self.countries or self.continents)
        self._network_rule = [i for i, _ in network_rules]
        self.topology: Optional[TopologyMap] = None
        if network_rules:
            # With GeoIP rules, an unmatched client may still be steered, so only
            # merge network rules with "unmatched" when nothing else can steer.
            self.topology = TopologyMap(
                [(rule.networks, self.rule_orders[i]) for i, rule in network_rules],
                unmatched_key=None if self.uses_geoip else 0)

    def steer(self, client: Client, geoip: Optional[GeoIPLookup]) -> Steered:
        """The order for ``client`` and the ECS scope of that answer (cached per client network,
        bounded; the cache is dropped when the GeoIP database is reopened)."""
        generation = geoip.generation if geoip is not None else 0
        if generation != self._generation:
            self._cache, self._generation = {}, generation
        found = self._cache.get(client)
        if found is None:
            found = self._steer(client, geoip)
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[client] = found
        return found

    def _steer(self, client: Client, geoip: Optional[GeoIPLookup]) -> Steered:
        version, value, _ = client
        scope = 0
        if self.topology is not None:
            match = self.topology.lookup_int(version, value)
            scope = match.scope
            if match.rule is not None:
                rule = self._network_rule[match.rule]
                return Steered(self.rule_orders[rule], min(scope, CLIENT_PREFIX_CAP[version]), rule, None)
        if self.uses_geoip and geoip is not None and geoip.loaded:
            record = geoip.lookup(version, value)
            scope = max(scope, record.prefix)
            via = {"country": record.country, "continent": record.continent, "prefix": record.prefix}
            geo_rule = self.countries.get(record.country or "")
            if geo_rule is None:
                geo_rule = self.continents.get(record.continent or "")
            order = self.rule_orders[geo_rule] if geo_rule is not None else 0
            return Steered(order, min(scope, CLIENT_PREFIX_CAP[version]), geo_rule, via)
        return Steered(0, min(scope, CLIENT_PREFIX_CAP[version]), None, None)

    def network_rule(self, client: Client) -> Optional[int]:
        """The rule of the longest topology network holding ``client``'s address (for explain).

        :meth:`steer` cannot say it when the rule gives the domain's own order:
        the map merges such networks with "unmatched" (as gdnsd does).  A linear
        scan; never used to answer.
        """
        version, value, _ = client
        bits = 32 if version == 4 else 128
        best: Optional[Tuple[int, int]] = None
        for i in self._network_rule:
            for network in self.rules[i].networks:
                length = network.prefixlen
                if network.version == version and (best is None or length > best[0]) and (
                        value >> (bits - length) == int(network.network_address) >> (bits - length)):
                    best = (length, i)
        return best[1] if best is not None else None

    def describe(self, steered: Steered) -> Optional[Dict[str, Any]]:
        """What matched, as the explain endpoint shows it (None: nothing, the domain's order)."""
        if steered.rule is None and steered.via is None:
            return None
        result: Dict[str, Any] = {}
        if steered.rule is not None:
            rule = self.rules[steered.rule]
            result["rule"] = steered.rule
            if rule.networks:
                result["networks"] = [str(n) for n in rule.networks]
            if rule.countries:
                result["countries"] = list(rule.countries)
            if rule.continents:
                result["continents"] = list(rule.continents)
            result["regions"] = list(rule.regions)
        if steered.via is not None:
            result["geoip"] = dict(steered.via)
        result["order"] = list(self.orders[steered.order])
        return result


def plan_for(context: RoutingContext, candidates: Sequence[Candidate] = ()) -> GeoPlan:
    """The domain's :class:`GeoPlan`, cached in ``context.derived`` (the configuration's cache).

    Without a domain (a bare algorithm test) the candidates' regions in order are the only order.
    """
    domain = context.domain
    if domain is None:
        return GeoPlan(tuple(dict.fromkeys(c.region for c in candidates)), ())
    key = ("geolocation", domain.name)
    plan = context.derived.get(key)
    if plan is None or plan[0] is not domain:
        plan = (domain, GeoPlan(domain.regions, domain.topology))
        context.derived[key] = plan
    return plan[1]


def _nothing() -> Optional[Candidate]:
    return None


class _GeoPicker:
    """Per (domain, family): each order's answering region, balanced within by weight."""

    client_aware = True

    def __init__(self, plan: GeoPlan, candidates: Sequence[Candidate], rng: random.Random,
                 geoip: Optional[GeoIPLookup]) -> None:
        self._plan = plan
        self._geoip = geoip
        pool = eligible(candidates)
        by_region: Dict[str, List[Candidate]] = {}
        for candidate in pool:
            by_region.setdefault(candidate.region, []).append(candidate)
        self._region_pool = by_region
        pickers = {region: RoundRobin().prepare(members, rng) for region, members in by_region.items()}
        self._first: List[Optional[Picker]] = []
        self._ranking: List[Tuple[Candidate, ...]] = []
        for order in plan.orders:
            answering = next((r for r in order if r in pickers), None)
            self._first.append(pickers[answering] if answering is not None else None)
            self._ranking.append(tuple(c for r in order for c in by_region.get(r, ())))

    def pick_for(self, client: Client, advance: bool = True) -> Tuple[Optional[Candidate], int]:
        steered = self._plan.steer(client, self._geoip)
        picker = self._first[steered.order]
        if picker is None:
            return None, steered.scope
        return (picker.pick() if advance else picker.peek()), steered.scope

    def pick(self) -> Optional[Candidate]:
        return self.pick_for(NO_CLIENT)[0]

    def peek(self) -> Optional[Candidate]:
        return self.pick_for(NO_CLIENT, advance=False)[0]

    def bound_for(self, client: Client) -> Tuple[Callable[[], Optional[Candidate]], int]:
        """(the pick of ``client``'s region order, the ECS scope): see :meth:`Steering.bound`."""
        steered = self._plan.steer(client, self._geoip)
        picker = self._first[steered.order]
        return (picker.pick if picker is not None else _nothing), steered.scope

    def ranking_for(self, client: Client, first: Candidate) -> Sequence[Candidate]:
        """The chosen region's servers (rotated to follow ``first``), then the order's other regions."""
        order = self._plan.orders[self._plan.steer(client, self._geoip).order]
        region = self._region_pool.get(first.region, [])
        at = region.index(first) if first in region else -1
        ranking = region[at + 1:] + region[:max(at, 0)]
        return ranking + [c for r in order if r != first.region for c in self._region_pool.get(r, ())]

    def explain_for(self, client: Client) -> Optional[Dict[str, Any]]:
        steered = self._plan.steer(client, self._geoip)
        if steered.rule is None and steered.via is None:  # maybe a rule giving the domain's own order
            rule = self._plan.network_rule(client)
            if rule is not None:
                steered = Steered(steered.order, steered.scope, rule, None)
        return self._plan.describe(steered)


class Geolocation:
    """Region order by the client's network or GeoIP country/continent (SPEC §4.1)."""

    name = "geolocation"

    def prepare(self, candidates: Sequence[Candidate], rng: random.Random,
                context: Optional[RoutingContext] = None) -> Picker:
        context = context if context is not None else RoutingContext()
        return _GeoPicker(plan_for(context, candidates), candidates, rng, context.geoip)
