"""The answering view: everything a DNS query needs, prepared in advance.

A view is built from the configuration, the served health of every server and
(later) runtime state, whenever one of those changes.  Answering a query is
then a dictionary lookup plus one routing pick: no per-query walking of the
configuration.  A view is never mutated after it is built, except for the
routing pickers' own rotation state.
"""

from __future__ import annotations

import random
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import AbstractSet, Callable, Dict, FrozenSet, List, Optional, Sequence, Tuple

from opengslb.config.model import Config, DomainConfig, NameserverConfig, ServerConfig, SOAConfig, ZoneConfig
from opengslb.dns.wire import Name, name_from_text
from opengslb.routing import Candidate, Picker, algorithm_for
from opengslb.routing.base import RoutingContext, eligible
from opengslb.routing.geoip import GeoIPLookup
from opengslb.routing.rtt import LatencyTable
from opengslb.routing.steering import Steering

A = 1
AAAA = 28
FAMILY_OF_TYPE = {A: 4, AAAA: 6}


@dataclass(frozen=True)
class ServedState:
    """What the view needs to know about one server right now.

    ``weight`` is the effective weight (configured, or overridden, times any
    bleed factor); ``last_healthy`` is when it was last seen healthy;
    ``drained``: fully bled by predictive health (failover passes it over).
    """

    healthy: bool
    weight: float
    last_healthy: Optional[float] = None
    drained: bool = False


StateLookup = Callable[[str, ServerConfig], ServedState]
"""(region name, server) → its served state."""


@dataclass(frozen=True)
class ZoneView:
    """A zone apex: its SOA and NS data."""

    config: ZoneConfig
    soa_ttl: int

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def negative_ttl(self) -> int:
        """TTL of the SOA in negative answers: min(SOA minimum, SOA TTL) (RFC 2308)."""
        return min(self.config.soa.minimum, self.soa_ttl)


@dataclass(frozen=True)
class RoutingInputs:
    """What routing reads besides configuration and served state: the GeoIP database and the
    health checks' round-trip times.  Both objects live as long as the process (they change
    inside, so views need not be rebuilt when they do)."""

    geoip: Optional[GeoIPLookup] = None
    latency: Optional[LatencyTable] = None


@dataclass
class FamilyAnswer:
    """The A (or AAAA) side of one domain.

    ``steering`` answers queries (the algorithm's picker, ``answer_count``,
    ECS scope); ``picker`` is its picker.  ``last_healthy`` and ``everyone``
    serve the ``last-healthy`` and ``all`` all-down policies; ``fallback``
    the ``fallback`` policy (the domain's fallback addresses of this family).
    ``outage_logged`` is set once the all-down policy has been logged for
    this family: a new FamilyAnswer (the domain's servers changed) logs again.
    """

    picker: Picker
    configured: int  # servers of this family configured for the domain
    last_healthy: Optional[Candidate]  # fallback for return_last_healthy
    steering: Optional[Steering] = None
    everyone: Tuple[Candidate, ...] = ()
    fallback: Tuple[str, ...] = ()
    outage_logged: bool = False

    def __post_init__(self) -> None:
        if self.steering is None:
            self.steering = Steering(self.picker, ())


@dataclass
class DomainView:
    """One configured domain name, ready to answer."""

    config: DomainConfig
    zone: ZoneView
    ttl: int
    algorithm: str
    families: Dict[int, FamilyAnswer]
    candidates: Tuple[Candidate, ...]
    parts: Tuple[Tuple[Candidate, ...], ...] = ()  # the regions' candidate tuples it was built from

    @property
    def name(self) -> str:
        return self.config.name


@dataclass(frozen=True)
class AnsweringView:
    """The immutable index DNS answers are computed from."""

    config: Config
    zones: Tuple[ZoneView, ...]  # longest name first
    domains: Dict[str, DomainView]
    glue: Dict[str, Tuple[str, ...]]  # in-zone nameserver name → its addresses
    empty_non_terminals: FrozenSet[str]
    built_at: float = 0.0
    _zone_names: Dict[str, ZoneView] = field(default_factory=dict)
    zone_index: Optional["ZoneIndex"] = None
    region_candidates: Dict[str, Tuple[Candidate, ...]] = field(default_factory=dict)
    region_times: Dict[str, Tuple[Optional[float], ...]] = field(default_factory=dict)
    region_positions: Dict[str, int] = field(default_factory=dict)

    def zone_for(self, name: str) -> Optional[ZoneView]:
        """The longest zone containing ``name`` (lower case, no trailing dot).

        Linear in the length of ``name``: only suffixes as long as some zone
        name are looked up.
        """
        if self.zone_index is not None:
            return self.zone_index.zone_of_text(name)
        return _longest_zone(name, self._zone_names, sorted({len(z) for z in self._zone_names}, reverse=True))

    def zone_for_name(self, name: Name) -> Optional[ZoneView]:
        """The longest zone containing the received ``name`` (compared label by label)."""
        if self.zone_index is not None:
            return self.zone_index.zone_of_wire(name)
        zone_text = name.lookup_text()
        return self.zone_for(zone_text) if zone_text is not None else None


def _longest_zone(name: str, zones: Dict[str, ZoneView], lengths: Sequence[int]) -> Optional[ZoneView]:
    """The longest of ``zones`` that is ``name`` or a suffix of it at a label boundary.

    ``lengths`` are the zone names' distinct lengths, longest first.  Only
    suffixes of those lengths are looked up: one per zone length, or one per
    label when the name has fewer labels than there are zone lengths.  The
    cost never grows with the square of the name (a 32,000-label name is one
    pass of ``str.count`` plus a slice per zone length).
    """
    size = len(name)
    if len(lengths) <= name.count(".") + 1:
        for length in lengths:
            if length == size or (length < size and name[size - length - 1] == "."):
                zone = zones.get(name[size - length:])
                if zone is not None:
                    return zone
        return None
    zone = zones.get(name)
    if zone is not None:
        return zone
    dot = name.find(".")
    while dot >= 0:
        zone = zones.get(name[dot + 1:])
        if zone is not None:
            return zone
        dot = name.find(".", dot + 1)
    return None


def zones_of(config: Config) -> List[ZoneConfig]:
    """Configured zones, plus an implicit zone for each domain outside all of them.

    With no ``dns.zones`` every domain is its own apex (SPEC §3).  An implicit
    zone needs an NS RRset and an SOA naming a real server (RFC 1034 §4.2.1):
    it takes the name servers of the configured zones (all of them, in
    configuration order; the first is the SOA MNAME).  With no name server
    configured anywhere, the apex itself is its name server and SOA MNAME —
    a name that exists and is answered by this server.
    """
    zones = list(config.dns.zones)
    explicit = {z.name for z in zones}
    seen: Dict[str, NameserverConfig] = {}
    for zone in zones:
        for ns in zone.nameservers:
            seen.setdefault(ns.name, ns)
    shared = tuple(seen.values())
    for domain in config.domains:
        labels = domain.name.split(".")
        if not any(".".join(labels[i:]) in explicit for i in range(len(labels))):
            nameservers = shared or (NameserverConfig(domain.name),)
            zones.append(
                ZoneConfig(
                    name=domain.name,
                    soa=SOAConfig(mname=nameservers[0].name, rname=f"hostmaster.{domain.name}"),
                    nameservers=nameservers,
                )
            )
            explicit.add(domain.name)
    return zones


def _within(name: str, zone: str) -> bool:
    return name == zone or name.endswith("." + zone)


class ZoneIndex:
    """Everything about zones that depends on the configuration alone.

    Built once per configuration and shared by every view built from it:
    zones (longest name first), the in-zone nameservers' glue and the empty
    non-terminals (RFC 8020).  Zones equal to one of ``previous``'s are that
    index's :class:`ZoneView` objects, so views can compare them by identity.
    """

    def __init__(self, config: Config, previous: Optional["ZoneIndex"] = None) -> None:
        earlier = previous.by_name if previous is not None else {}
        views: List[ZoneView] = []
        for zone_config in zones_of(config):
            view = ZoneView(config=zone_config, soa_ttl=config.dns.default_ttl)
            old = earlier.get(zone_config.name)
            views.append(old if old is not None and old == view else view)
        views.sort(key=lambda z: len(z.name), reverse=True)
        self.zones: Tuple[ZoneView, ...] = tuple(views)
        self.by_name: Dict[str, ZoneView] = {z.name: z for z in views}
        self.by_wire: Dict[bytes, ZoneView] = {name_from_text(z.name).key: z for z in views}
        self._text_lengths = sorted({len(name) for name in self.by_name}, reverse=True)
        self._wire_lengths = sorted({len(key) for key in self.by_wire}, reverse=True)
        glue: Dict[str, Tuple[str, ...]] = {}
        for zone in views:
            for ns in zone.config.nameservers:
                if ns.address and _within(ns.name, zone.name):
                    glue[ns.name] = glue.get(ns.name, ()) + (ns.address,)
        self.glue = glue
        terminals = {d.name for d in config.domains} | set(glue) | set(self.by_name)
        non_terminals = set()
        self._zone_of_terminal: Dict[str, ZoneView] = {}
        for name in terminals:
            zone = self._zone_of_terminal[name] = self.zone_of(name)
            labels = name.split(".")
            for i in range(1, len(labels)):
                parent = ".".join(labels[i:])
                if len(parent) <= len(zone.name):
                    break
                if parent not in terminals:
                    non_terminals.add(parent)
        self.empty_non_terminals: FrozenSet[str] = frozenset(non_terminals)

    def serves(self, config: Config, built_from: Config) -> bool:
        """True when this index (built from ``built_from``) is also right for ``config``.

        It depends only on the zones, the default TTL and the domain names, so
        a reload that changes none of them keeps it — and every ZoneView with
        it, which lets unchanged domains be recognised by identity.
        """
        if config is built_from:
            return True
        if config.domains is built_from.domains and config.dns is built_from.dns:
            return True  # a reload that shared both (config.share_unchanged)
        return (config.dns.zones == built_from.dns.zones
                and config.dns.default_ttl == built_from.dns.default_ttl
                and len(config.domains) == len(built_from.domains)
                and all(a.name == b.name for a, b in zip(config.domains, built_from.domains)))

    def zone_of(self, name: str) -> ZoneView:
        """The longest zone containing ``name`` (every configured name has one)."""
        known = self._zone_of_terminal.get(name)
        if known is not None:
            return known
        zone = self.zone_of_text(name)
        if zone is None:
            raise LookupError(name)
        return zone

    def zone_of_text(self, name: str) -> Optional[ZoneView]:
        """The longest zone containing ``name`` (lower case, no trailing dot), or None."""
        return _longest_zone(name, self.by_name, self._text_lengths)

    def zone_of_wire(self, name: Name) -> Optional[ZoneView]:
        """The longest zone containing the received ``name``, or None.

        Compares lower-cased wire labels (RFC 4343), so a label holding a
        ``.`` octet never matches two labels of a zone name.  Only suffixes
        as long as some zone's wire form, starting at a label, are looked up:
        one per zone length (a binary search finds whether a label starts
        there), or one per label when there are fewer labels.
        """
        key, offsets, zones = name.key, name.offsets, self.by_wire
        size = len(key)
        lengths = self._wire_lengths
        if len(lengths) <= len(offsets):
            for length in lengths:
                start = size - length
                if start >= 0:
                    at = bisect_left(offsets, start)
                    if at < len(offsets) and offsets[at] == start:
                        zone = zones.get(key[start:])
                        if zone is not None:
                            return zone
            return None
        for start in offsets:
            zone = zones.get(key[start:])
            if zone is not None:
                return zone
        return None


def zone_index_for(config: Config, previous: Optional["AnsweringView"] = None) -> ZoneIndex:
    """The zone index of ``config``: ``previous``'s when it :meth:`~ZoneIndex.serves` it, else new.

    The result is cached in ``config.derived``.  Building it for tens of
    thousands of names takes tens of milliseconds, so a reload calls this in
    its worker thread, before the configuration is in use.
    """
    index = config.derived.get("zone_index")
    if index is None:
        reusable = previous.zone_index if previous is not None else None
        if reusable is not None and previous is not None and reusable.serves(config, previous.config):
            index = reusable
        else:
            index = ZoneIndex(config, reusable)
        config.derived["zone_index"] = index
    return index


REGION_SHIFT = 20  # ``order`` = region position << REGION_SHIFT | server position


def region_candidates(config: Config, state: StateLookup,
                      extra: Optional[Callable[[str], Sequence[ServerConfig]]] = None,
                      previous: Optional["AnsweringView"] = None,
                      dirty: Optional[AbstractSet[str]] = None,
                      ) -> Tuple[Dict[str, Tuple[Candidate, ...]], Dict[str, Tuple[Optional[float], ...]]]:
    """Every region's candidates in configuration order, and their last-healthy times.

    ``extra`` lists further servers of a region (dynamic registrations); they
    come after the region's configured servers.  With ``previous``, a region
    not in ``dirty`` (``None``: all are) at the same position is carried over
    without asking ``state`` again, and a recomputed region equal to the
    previous one gets the previous tuple object back — unchanged domains are
    then recognised by identity.  ``order`` numbers servers uniquely within
    any domain and stays stable while a region keeps its position.
    """
    candidates: Dict[str, Tuple[Candidate, ...]] = {}
    times: Dict[str, Tuple[Optional[float], ...]] = {}
    for position, region in enumerate(config.regions):
        name = region.name
        if (previous is not None and dirty is not None and name not in dirty
                and previous.region_positions.get(name) == position and name in previous.region_candidates):
            candidates[name] = previous.region_candidates[name]
            times[name] = previous.region_times[name]
            continue
        servers = list(region.servers) + list(extra(name) if extra else ())
        served = [state(name, server) for server in servers]
        base = position << REGION_SHIFT
        built = tuple(Candidate(address=server.address, port=server.port, region=name,
                                weight=s.weight, healthy=s.healthy, order=base + i,
                                drained=s.drained)
                      for i, (server, s) in enumerate(zip(servers, served)))
        if previous is not None and previous.region_candidates.get(name) == built:
            built = previous.region_candidates[name]
        candidates[name] = built
        times[name] = tuple(s.last_healthy for s in served)
    return candidates, times


def build_view(config: Config, state: StateLookup, rng: random.Random,
               extra: Optional[Callable[[str], Sequence[ServerConfig]]] = None,
               now: float = 0.0, previous: Optional["AnsweringView"] = None,
               dirty: Optional[AbstractSet[str]] = None,
               inputs: Optional[RoutingInputs] = None) -> AnsweringView:
    """Prepare the answering view for ``config`` and the servers' current state.

    ``state`` gives each server's served health and effective weight;
    ``extra`` lists dynamically registered servers per region.  With
    ``previous`` (the view being replaced), domains whose configuration, zone
    and regions' candidates are unchanged are carried over as they are — their
    routing state (round-robin position) included — so a health change costs
    work only for the domains it touches.  ``dirty`` names the regions whose
    servers' state may have changed since ``previous`` (``None``: any).
    ``inputs`` are the GeoIP database and round-trip times client-aware and
    latency routing read.
    """
    inputs = inputs if inputs is not None else RoutingInputs()
    zones = zone_index_for(config, previous)
    zone_of = zones.zone_of

    by_region, times_by_region = region_candidates(config, state, extra, previous, dirty)
    region_of = by_region.__getitem__
    old_domains = previous.domains if previous is not None else {}
    domains: Dict[str, DomainView] = {}
    # The loop runs for every domain on every rebuild: keep the unchanged case cheap.
    for domain in config.domains:
        zone = zone_of(domain.name)
        ttl = config.domain_ttl(domain)
        parts = tuple(map(region_of, domain.regions))
        old = old_domains.get(domain.name)
        # Equal region tuples are the same object (region_candidates), so == is by identity here.
        if (old is not None and (old.config is domain or old.config == domain)
                and old.ttl == ttl and (old.zone is zone or old.zone == zone) and old.parts == parts):
            domains[domain.name] = old
            continue
        candidates = tuple(c for part in parts for c in part)
        seen = tuple(t for r in domain.regions for t in times_by_region[r])
        algorithm = algorithm_for(domain.routing_algorithm)
        families: Dict[int, FamilyAnswer] = {}
        for family in (4, 6):
            of_family = [(c, t) for c, t in zip(candidates, seen) if (":" in c.address) == (family == 6)]
            members = [c for c, _ in of_family]
            context = RoutingContext(family=family, domain=domain, hysteresis=_hysteresis(config),
                                     derived=config.derived, geoip=inputs.geoip, latency=inputs.latency)
            picker = algorithm.prepare(members, rng, context)
            down = not eligible(members)
            families[family] = FamilyAnswer(
                picker=picker, configured=len(of_family),
                # Only needed when nothing is eligible (the all-down policies).
                last_healthy=_most_recently_healthy(of_family) if down else None,
                steering=Steering(picker, members, domain.answer_count),
                everyone=(tuple(c for c in members if c.weight > 0) or tuple(members)) if down else (),
                fallback=tuple(a for a in domain.fallback_addresses if (":" in a) == (family == 6)),
            )
        domains[domain.name] = DomainView(
            config=domain, zone=zone, ttl=ttl, algorithm=algorithm.name, families=families,
            candidates=candidates, parts=parts)

    return AnsweringView(config=config, zones=zones.zones, domains=domains, glue=zones.glue,
                         empty_non_terminals=zones.empty_non_terminals, built_at=now,
                         _zone_names=zones.by_name, zone_index=zones, region_candidates=by_region,
                         region_times=times_by_region,
                         region_positions={r.name: i for i, r in enumerate(config.regions)})


def _hysteresis(config: Config) -> Dict[str, float]:
    """Every region's ``latency_hysteresis`` (cached with the configuration)."""
    found = config.derived.get("latency_hysteresis")
    if found is None:
        found = config.derived["latency_hysteresis"] = {r.name: r.latency_hysteresis for r in config.regions}
    return found


def _most_recently_healthy(candidates: Sequence[Tuple[Candidate, Optional[float]]]
                           ) -> Optional[Candidate]:
    """The candidate seen healthy most recently (weight-0 ones excluded)."""
    best: Optional[Candidate] = None
    best_time = float("-inf")
    for candidate, seen in candidates:
        if seen is not None and seen > best_time and candidate.weight > 0:
            best, best_time = candidate, seen
    return best
