"""Client-aware steering (SPEC §4.1): ECS, geolocation, latency, consistent-hash,
answer_count, when_all_down, the fast path's answers and explain."""

from __future__ import annotations

import ipaddress
import random
import struct
from collections import Counter
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import dns.edns
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import task

from opengslb.config.model import (
    Config,
    DNSConfig,
    DomainConfig,
    GeoIPConfig,
    ListenAddress,
    NameserverConfig,
    RegionConfig,
    ServerConfig,
    SOAConfig,
    TopologyRule,
    ZoneConfig,
)
from opengslb.core import Gslb
from opengslb.dns.ecs import EcsError, parse_subnet, source_client
from opengslb.dns.explain import client_network, explain
from opengslb.dns.fastpath import FastPath
from opengslb.dns.server import DNSResponder
from opengslb.dns.view import AnsweringView, RoutingInputs, ServedState, build_view
from opengslb.routing import Candidate, algorithm_for
from opengslb.routing.base import RoutingContext
from opengslb.routing.geoip import GeoIPLookup
from opengslb.routing.geolocation import GeoPlan
from opengslb.routing.rtt import LatencyTable
from opengslb.stats import QueryStats
from tests.unit.fakes import FakeChecker, memory_runtime
from tests.unit.mmdb import country, write_mmdb

ZONE = "gslb.test"


# -- ECS option ------------------------------------------------------------------

def ecs_data(family: int, source: int, scope: int, address: bytes) -> bytes:
    return struct.pack("!HBB", family, source, scope) + address


def test_ecs_option_names_the_client_capped():
    """A valid option gives the network; source prefixes are capped at /24 and /56."""
    subnet = parse_subnet(ecs_data(1, 16, 0, bytes([10, 1])))
    assert subnet.client == (4, int(ipaddress.ip_address("10.1.0.0")), 16)
    subnet = parse_subnet(ecs_data(1, 32, 0, bytes([10, 1, 2, 3])))
    assert subnet.client == (4, int(ipaddress.ip_address("10.1.2.0")), 24)
    assert (subnet.family, subnet.source, subnet.address) == (1, 32, bytes([10, 1, 2, 3]))
    subnet = parse_subnet(ecs_data(2, 64, 0, ipaddress.ip_address("2001:db8:1:2::").packed[:8]))
    assert subnet.client == (6, int(ipaddress.ip_address("2001:db8:1::")), 56)
    assert parse_subnet(ecs_data(1, 0, 0, b"")).client is None  # source 0: use the source address


@pytest.mark.parametrize("data", [
    b"\x00\x01\x18",  # shorter than 4 octets
    ecs_data(3, 8, 0, b"\x0a"),  # unknown family
    ecs_data(1, 33, 0, bytes(5)),  # source longer than IPv4
    ecs_data(2, 129, 0, bytes(17)),  # source longer than IPv6
    ecs_data(1, 24, 0, bytes([10, 1])),  # too few address octets
    ecs_data(1, 16, 0, bytes([10, 1, 0])),  # too many address octets
    ecs_data(1, 12, 0, bytes([10, 0x1F])),  # bits set past /12
    ecs_data(1, 24, 8, bytes([10, 1, 2])),  # scope in a query
])
def test_malformed_ecs_is_refused(data):
    """Every malformation RFC 7871 names raises EcsError (the query then gets FORMERR)."""
    with pytest.raises(EcsError):
        parse_subnet(data)


def test_source_client():
    """Without ECS the client is the whole source address; IPv4-mapped sources read as IPv4."""
    assert source_client("192.0.2.7") == (4, int(ipaddress.ip_address("192.0.2.7")), 32)
    assert source_client("::ffff:192.0.2.7") == (4, int(ipaddress.ip_address("192.0.2.7")), 32)
    assert source_client("2001:db8::1") == (6, int(ipaddress.ip_address("2001:db8::1")), 128)


# -- geolocation: topology order and scope ---------------------------------------------

def rule(networks: Sequence[str], regions: Sequence[str]) -> TopologyRule:
    return TopologyRule(tuple(regions), networks=tuple(ipaddress.ip_network(n) for n in networks))


def steer_order(plan: GeoPlan, address: int, version: int = 4, geoip: Optional[GeoIPLookup] = None
                ) -> Tuple[str, ...]:
    return plan.orders[plan.steer((version, address, 32 if version == 4 else 128), geoip).order]


@st.composite
def topologies(draw):
    """Up to 12 nested and sibling IPv4 networks under 10.0.0.0/8 with rules over three regions."""
    rules = []
    for _ in range(draw(st.integers(1, 12))):
        prefix = draw(st.integers(8, 24))
        value = 10 << 24 | draw(st.integers(0, (1 << 24) - 1))
        network = ipaddress.ip_network((value >> (32 - prefix) << (32 - prefix), prefix))
        regions = draw(st.permutations(["a", "b", "c"]).map(lambda p: p[:draw(st.integers(1, 3))]))
        rules.append((network, tuple(regions)))
    seen = set()
    unique = [(n, r) for n, r in rules if not (n in seen or seen.add(n))]
    return [TopologyRule(r, networks=(n,)) for n, r in unique]


@settings(max_examples=150, deadline=None)
@given(rules=topologies(), probes=st.lists(st.integers(0, (1 << 24) - 1), min_size=1, max_size=10),
       seed=st.integers(0, 1000))
def test_every_scope_is_correct(rules, probes, seed):
    """Every address inside the returned scope (capped at /24) gets the same region order,
    and the order is the one of the longest matching network (else the domain's own)."""
    plan = GeoPlan(("a", "b", "c"), rules)
    rng = random.Random(seed)
    for probe in probes:
        address = 10 << 24 | probe
        steered = plan.steer((4, address, 24), None)
        order = plan.orders[steered.order]
        matching = [r for r in rules if ipaddress.ip_address(address) in r.networks[0]]
        if matching:
            best = max(matching, key=lambda r: r.networks[0].prefixlen)
            assert order[:len(best.regions)] == best.regions
        else:
            assert order == ("a", "b", "c")
        scope = steered.scope
        assert 0 <= scope <= 24
        base = address >> (32 - scope) << (32 - scope) if scope else 0
        size = 1 << (32 - scope)
        for other in [base, base + size - 1] + [base + rng.randrange(size) for _ in range(40)]:
            assert steer_order(plan, other) == order, (ipaddress.ip_address(other), scope)


def test_scope_examples():
    """Nested networks lengthen the scope; an unmatched client's scope leaves every network out."""
    plan = GeoPlan(("eu", "us"), [rule(["10.0.0.0/8"], ["us"]), rule(["10.1.0.0/16"], ["eu"]),
                                  rule(["192.0.2.0/24", "2001:db8::/32"], ["us"])])
    ip = lambda text: int(ipaddress.ip_address(text))  # noqa: E731
    inner = plan.steer((4, ip("10.1.2.0"), 24), None)
    assert (plan.orders[inner.order], inner.scope) == (("eu", "us"), 16)
    outer = plan.steer((4, ip("10.2.0.0"), 24), None)
    assert (plan.orders[outer.order], outer.scope) == (("us", "eu"), 15)  # 10.0.0.0/15 leaves 10.1/16 out
    nowhere = plan.steer((4, ip("8.8.8.0"), 24), None)
    assert (plan.orders[nowhere.order], nowhere.scope) == (("eu", "us"), 7)  # 8.0.0.0/7 holds no network
    v6 = plan.steer((6, ip("2001:db8:ff::"), 56), None)
    assert (plan.orders[v6.order], v6.scope) == (("us", "eu"), 32)


def test_geoip_countries_then_continents(tmp_path: Path):
    """Networks win over GeoIP; a country rule wins over a continent rule; the scope covers the record."""
    database = write_mmdb(tmp_path / "geo.mmdb", [
        ("81.0.0.0/8", country("DE", "EU")), ("82.0.0.0/8", country("ES", "EU")),
        ("81.1.0.0/16", country("DE", "EU")), ("2a00::/12", country("FR", "EU"))])
    geoip = GeoIPLookup(str(database))
    rules = [rule(["81.1.2.0/24"], ["us"]),
             TopologyRule(("eu",), continents=("EU",)), TopologyRule(("de",), countries=("DE",))]
    plan = GeoPlan(("us", "eu", "de"), rules)
    ip = lambda text: int(ipaddress.ip_address(text))  # noqa: E731
    assert steer_order(plan, ip("81.1.2.3"), geoip=geoip)[0] == "us"  # the network rule
    german = plan.steer((4, ip("81.7.0.0"), 24), geoip)
    assert plan.orders[german.order][0] == "de" and german.scope >= 8
    spanish = plan.steer((4, ip("82.5.0.0"), 24), geoip)
    assert (plan.orders[spanish.order][0], spanish.scope) == ("eu", 8)
    french = plan.steer((6, ip("2a00:1::"), 56), geoip)
    assert (plan.orders[french.order][0], french.scope) == ("eu", 12)
    assert plan.orders[plan.steer((4, ip("1.1.1.0"), 24), geoip).order] == ("us", "eu", "de")
    described = plan.describe(german)
    assert described is not None and described["geoip"]["country"] == "DE" and described["countries"] == ["DE"]
    # A reload to another database changes the answers (the cache is cleared).
    geoip.load(str(write_mmdb(tmp_path / "geo2.mmdb", [("81.0.0.0/8", country("ES", "EU"))])))
    assert plan.orders[plan.steer((4, ip("81.7.0.0"), 24), geoip).order][0] == "eu"


def candidates(spec: Sequence[Tuple[str, str, float, bool]]) -> List[Candidate]:
    return [Candidate(address, 80, region, weight, healthy, order=i)
            for i, (region, address, weight, healthy) in enumerate(spec)]


class _Domain:
    def __init__(self, name: str, regions: Tuple[str, ...], topology: Tuple[TopologyRule, ...] = ()) -> None:
        self.name, self.regions, self.topology = name, regions, topology


def test_geolocation_falls_through_regions_and_balances_by_weight():
    """The first region with an eligible server answers, balanced by weight (smooth WRR)."""
    domain = _Domain("www", ("eu", "us"), (rule(["10.0.0.0/8"], ["us"]),))
    pool = candidates([("eu", "192.0.2.1", 100, True), ("eu", "192.0.2.2", 300, True),
                       ("us", "198.51.100.1", 100, True), ("us", "198.51.100.2", 100, False)])
    picker = algorithm_for("geolocation").prepare(pool, random.Random(1), RoutingContext(domain=domain))
    europe = (4, int(ipaddress.ip_address("192.0.2.0")), 24)
    america = (4, int(ipaddress.ip_address("10.9.9.0")), 24)
    counts = Counter(picker.pick_for(europe)[0].address for _ in range(400))
    assert counts == {"192.0.2.1": 100, "192.0.2.2": 300}
    assert {picker.pick_for(america)[0].address for _ in range(10)} == {"198.51.100.1"}
    us_down = candidates([("eu", "192.0.2.1", 100, True), ("us", "198.51.100.1", 100, False)])
    picker = algorithm_for("geolocation").prepare(us_down, random.Random(1), RoutingContext(domain=domain))
    assert picker.pick_for(america)[0].address == "192.0.2.1"  # the rule's region is down: next region


# -- consistent-hash -------------------------------------------------------------------

def networks(count: int, seed: int = 7) -> List[Tuple[int, int, int]]:
    rng = random.Random(seed)
    return [(4, rng.randrange(1 << 24) << 8, 24) for _ in range(count)]


@pytest.mark.parametrize("servers", [3, 4, 5, 8])
def test_consistent_hash_moves_only_the_leavers_clients(servers):
    """When one of N servers leaves, at most 1/N + 2% of 10,000 client networks move (only its own),
    and every one of them returns when it comes back."""
    clients = networks(10_000)
    pool = candidates([("r", f"192.0.2.{i + 1}", 100, True) for i in range(servers)])
    algorithm = algorithm_for("consistent-hash")
    before = algorithm.prepare(pool, random.Random(0))
    first = {c: before.pick_for(c)[0] for c in clients}
    leaver = pool[1]
    without = algorithm.prepare([c if c != leaver else Candidate(c.address, c.port, c.region, c.weight, False,
                                                                   c.order) for c in pool], random.Random(0))
    moved = [c for c in clients if without.pick_for(c)[0] != first[c]]
    assert all(first[c] == leaver for c in moved)
    assert len(moved) / len(clients) <= 1 / servers + 0.02
    back = algorithm.prepare(pool, random.Random(0))
    assert all(back.pick_for(c)[0] == first[c] for c in clients)
    assert before.pick_for(clients[0])[1] == 24  # the scope is the hashed network's prefix


def test_consistent_hash_weights_shift_shares():
    """Weights shift shares in proportion: 300 vs 100 gets about three quarters."""
    pool = candidates([("r", "192.0.2.1", 300, True), ("r", "192.0.2.2", 100, True)])
    picker = algorithm_for("consistent-hash").prepare(pool, random.Random(0))
    counts = Counter(picker.pick_for(c)[0].address for c in networks(10_000))
    assert 0.72 < counts["192.0.2.1"] / 10_000 < 0.78


# -- latency ---------------------------------------------------------------------------

def test_latency_hysteresis_and_ewma():
    """The fastest server answers; another must be 20% faster to take over; unmeasured is slowest."""
    table = LatencyTable(alpha=0.5)
    pool = candidates([("a", "192.0.2.1", 100, True), ("b", "192.0.2.2", 100, True),
                       ("c", "192.0.2.3", 100, True)])
    context = RoutingContext(domain=_Domain("www", ("a", "b", "c")), latency=table,
                             hysteresis={"a": 20.0, "b": 20.0, "c": 20.0})
    picker = algorithm_for("latency").prepare(pool, random.Random(0), context)
    assert picker.pick().address == "192.0.2.1"  # nothing measured: configuration order
    table.record("a", "192.0.2.1", 80, 0.100)
    table.record("b", "192.0.2.2", 80, 0.090)
    assert picker.pick().address == "192.0.2.1"  # 10% faster is not enough
    table.record("b", "192.0.2.2", 80, 0.050)  # EWMA 0.07: 30% faster
    assert table.rtt("b", "192.0.2.2", 80) == pytest.approx(0.07)
    assert picker.peek().address == "192.0.2.2"
    assert picker.pick().address == "192.0.2.2"
    # A rebuilt view keeps the choice (the table remembers it): a says 0.065, not 20% better.
    table.record("a", "192.0.2.1", 80, 0.030)
    rebuilt = algorithm_for("latency").prepare(pool, random.Random(0), context)
    assert table.rtt("a", "192.0.2.1", 80) == pytest.approx(0.065)
    assert rebuilt.pick().address == "192.0.2.2"
    # The current server going down: the fastest of the rest at once.
    down = [c if c.address != "192.0.2.2" else Candidate(c.address, 80, "b", 100, False, c.order) for c in pool]
    assert algorithm_for("latency").prepare(down, random.Random(0), context).pick().address == "192.0.2.1"


# -- views, the fast path and the full path ------------------------------------------------

def steering_config(geoip: str = "", policy: Optional[str] = None, answer_count: int = 1,
                    fallback: Tuple[str, ...] = ()) -> Config:
    zone = ZoneConfig(name=ZONE, soa=SOAConfig(mname=f"ns1.{ZONE}", rname=f"hostmaster.{ZONE}", minimum=30),
                      nameservers=(NameserverConfig(f"ns1.{ZONE}", "192.0.2.53"),))
    regions = (
        RegionConfig("eu", (ServerConfig("192.0.2.10"), ServerConfig("192.0.2.11", weight=300),
                            ServerConfig("2001:db8::10"))),
        RegionConfig("us", (ServerConfig("198.51.100.10"), ServerConfig("198.51.100.11"),
                            ServerConfig("2001:db8::20"))),
        RegionConfig("ap", (ServerConfig("203.0.113.10"),)),
    )
    topology = (rule(["10.0.0.0/8", "2001:db8:1::/48"], ["us"]), rule(["10.1.0.0/16"], ["ap", "eu"]),
                rule(["172.16.0.0/12"], ["eu", "us"]))
    domains = (
        DomainConfig(f"geo.{ZONE}", ("eu", "us", "ap"), "geolocation", ttl=20, topology=topology,
                     answer_count=answer_count, when_all_down=policy, fallback_addresses=fallback),
        DomainConfig(f"hash.{ZONE}", ("eu", "us"), "consistent-hash", answer_count=answer_count,
                     when_all_down=policy, fallback_addresses=fallback),
        DomainConfig(f"rr.{ZONE}", ("eu", "us"), "round-robin", answer_count=answer_count,
                     when_all_down=policy, fallback_addresses=fallback),
        DomainConfig(f"lat.{ZONE}", ("eu", "us"), "latency", when_all_down=policy, fallback_addresses=fallback),
    )
    return Config(dns=DNSConfig(listen_address=ListenAddress("127.0.0.1", 53), zones=(zone,)),
                  regions=regions, domains=domains, geoip=GeoIPConfig(geoip))


def steering_view(config: Config, down: frozenset = frozenset(), seed: int = 0,
                  latency: Optional[LatencyTable] = None) -> AnsweringView:
    def state(region: str, server: ServerConfig) -> ServedState:
        return ServedState(healthy=server.address not in down, weight=float(server.weight), last_healthy=1.0)

    inputs = RoutingInputs(geoip=GeoIPLookup(config.geoip.database), latency=latency or LatencyTable())
    return build_view(config, state, random.Random(seed), inputs=inputs)


def query(name: str, rdtype: str = "A", subnet: Optional[Tuple[str, int]] = None, edns: bool = True,
          nsid: bool = False, dnssec: bool = False, qid: int = 4242) -> bytes:
    options = []
    if subnet is not None:
        options.append(dns.edns.ECSOption(subnet[0], subnet[1], 0))
    if nsid:
        options.append(dns.edns.GenericOption(dns.edns.NSID, b""))
    message = dns.message.make_query(name, rdtype, use_edns=0 if (edns or options) else None,
                                     options=options, want_dnssec=dnssec)
    message.id = qid
    return message.to_wire()


def ask(responder: DNSResponder, data: bytes, source: str = "127.0.0.1") -> dns.message.Message:
    return dns.message.from_wire(responder.respond(data, 4096, source))


def addresses(reply: dns.message.Message) -> List[str]:
    return [item.address for rrset in reply.answer for item in rrset]


def ecs_scope(reply: dns.message.Message) -> Optional[int]:
    found = [o for o in reply.options if isinstance(o, dns.edns.ECSOption)]
    return found[0].scopelen if found else None


def test_geolocation_answers_and_scopes_through_the_full_path():
    """ECS decides the region; the reply echoes the ECS option with the right scope."""
    config = steering_config()
    view = steering_view(config)
    responder = DNSResponder(lambda: view, QueryStats())
    reply = ask(responder, query(f"geo.{ZONE}", subnet=("10.1.2.0", 24)))
    assert addresses(reply)[0] == "203.0.113.10" and ecs_scope(reply) == 16
    option = [o for o in reply.options if isinstance(o, dns.edns.ECSOption)][0]
    assert (option.address, option.srclen) == ("10.1.2.0", 24)
    reply = ask(responder, query(f"geo.{ZONE}", subnet=("10.2.0.0", 16)))
    assert addresses(reply)[0].startswith("198.51.100.") and ecs_scope(reply) == 15
    reply = ask(responder, query(f"geo.{ZONE}"), source="10.1.200.1")  # no ECS: the source address
    assert addresses(reply) == ["203.0.113.10"] and ecs_scope(reply) is None
    reply = ask(responder, query(f"geo.{ZONE}", "AAAA", subnet=("2001:db8:1:ff00::", 56)))
    assert addresses(reply) == ["2001:db8::20"] and ecs_scope(reply) == 48
    reply = ask(responder, query(f"rr.{ZONE}", subnet=("10.1.2.0", 24)))
    assert ecs_scope(reply) == 0  # client-independent
    reply = ask(responder, query(f"nope.{ZONE}", subnet=("10.1.2.0", 24)))
    assert reply.rcode() == dns.rcode.NXDOMAIN and ecs_scope(reply) == 0


@pytest.mark.parametrize("option", [
    ecs_data(1, 24, 0, bytes([10, 1])), ecs_data(1, 24, 4, bytes([10, 1, 2])), ecs_data(7, 8, 0, b"\x0a"),
    ecs_data(1, 8, 0, b"\x0b") + b"",
])
def test_malformed_ecs_gets_formerr_on_both_paths(option):
    """A malformed ECS option is FORMERR, and the fast path leaves it to the full path."""
    config = steering_config()
    view = steering_view(config)
    message = dns.message.make_query(f"geo.{ZONE}", "A", use_edns=0)
    message.use_edns(0, options=[dns.edns.GenericOption(8, option)])
    data = message.to_wire()
    if option == ecs_data(1, 8, 0, b"\x0b"):  # well formed: then a second ECS option makes it malformed
        message.use_edns(0, options=[dns.edns.GenericOption(8, option), dns.edns.GenericOption(8, option)])
        data = message.to_wire()
    stats = QueryStats()
    assert FastPath.from_view(view, stats).respond(data, True, "127.0.0.1") is None
    reply = dns.message.from_wire(DNSResponder(lambda: view, stats).respond(data, 512, "127.0.0.1"))
    assert reply.rcode() == dns.rcode.FORMERR
    assert stats.ecs_queries == 1


def test_answer_count_rotates_distinct_addresses():
    """answer_count: 2 answers two distinct healthy addresses that rotate between queries;
    geolocation takes the chosen region first."""
    config = steering_config(answer_count=2)
    view = steering_view(config, down=frozenset({"192.0.2.11"}))
    responder = DNSResponder(lambda: view, QueryStats())
    sets = [tuple(addresses(ask(responder, query(f"rr.{ZONE}")))) for _ in range(3)]
    assert all(len(set(s)) == 2 for s in sets) and len(set(sets)) == 3
    assert all("192.0.2.11" not in s for s in sets)
    reply = ask(responder, query(f"geo.{ZONE}", subnet=("10.2.0.0", 16)))
    assert [a[:11] for a in addresses(reply)] == ["198.51.100.", "198.51.100."]
    reply = ask(responder, query(f"geo.{ZONE}", subnet=("10.1.0.0", 16)))
    assert addresses(reply) == ["203.0.113.10", "192.0.2.10"]  # ap then eu (its only healthy server)


@pytest.mark.parametrize("policy, want_rcode, want", [
    ("servfail", dns.rcode.SERVFAIL, []),
    ("last-healthy", dns.rcode.NOERROR, ["192.0.2.10"]),
    ("all", dns.rcode.NOERROR, ["192.0.2.10", "192.0.2.11", "198.51.100.10", "198.51.100.11"]),
    ("nodata", dns.rcode.NOERROR, []),
    ("fallback", dns.rcode.NOERROR, ["203.0.113.99"]),
])
def test_when_all_down_policies(policy, want_rcode, want):
    """Each when_all_down policy answers as SPEC §4.1 says, and is counted per (domain, policy)."""
    config = steering_config(policy=policy, fallback=("203.0.113.99", "2001:db8::99"))
    everything = frozenset(s.address for r in config.regions for s in r.servers)
    view = steering_view(config, down=everything)
    stats = QueryStats()
    responder = DNSResponder(lambda: view, stats)
    for _ in range(2):
        reply = ask(responder, query(f"rr.{ZONE}", subnet=("10.1.0.0", 16)))
        assert reply.rcode() == want_rcode
        assert addresses(reply) == want
        assert ecs_scope(reply) == 0
        if policy == "nodata":
            assert reply.authority and reply.authority[0].rdtype == dns.rdatatype.SOA
    assert stats.all_down == {(f"rr.{ZONE}", policy): 2}
    assert FastPath.from_view(view, QueryStats()).respond(query(f"rr.{ZONE}"), True, "127.0.0.1") is None
    if policy == "fallback":
        reply = ask(responder, query(f"rr.{ZONE}", "AAAA"))
        assert addresses(reply) == ["2001:db8::99"]


def test_fallback_without_an_address_of_the_family_is_nodata():
    """fallback with no fallback address of the asked family answers NODATA."""
    config = steering_config(policy="fallback", fallback=("203.0.113.99",))
    everything = frozenset(s.address for r in config.regions for s in r.servers)
    responder = DNSResponder(lambda: steering_view(config, down=everything), QueryStats())
    reply = ask(responder, query(f"rr.{ZONE}", "AAAA"))
    assert reply.rcode() == dns.rcode.NOERROR and not reply.answer and reply.authority


def test_all_down_is_logged_once_per_outage():
    """The all-down policy is logged once for an outage, however many queries it answers."""
    from twisted.logger import globalLogPublisher

    events: List[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        config = steering_config(policy="nodata")
        everything = frozenset(s.address for r in config.regions for s in r.servers)
        view = steering_view(config, down=everything)
        responder = DNSResponder(lambda: view, QueryStats())
        for _ in range(5):
            ask(responder, query(f"rr.{ZONE}"))
        later = steering_view(config, down=everything)  # the domain's servers changed: a new outage
        responder2 = DNSResponder(lambda: later, QueryStats())
        ask(responder2, query(f"rr.{ZONE}"))
    finally:
        globalLogPublisher.removeObserver(events.append)
    logged = [e for e in events if e.get("event") == "all_down_answer"]
    assert len(logged) == 2 and logged[0]["policy"] == "nodata"


CLIENT_NETWORKS = st.one_of(
    st.tuples(st.sampled_from(["10.1.2.0", "10.2.0.0", "172.16.5.0", "8.8.8.0", "10.1.0.0"]),
              st.sampled_from([0, 8, 16, 24])),
    st.tuples(st.sampled_from(["2001:db8:1::", "2001:db8::", "2a00::"]), st.sampled_from([32, 48, 56])),
)


@st.composite
def steering_queries(draw):
    name = draw(st.sampled_from([f"geo.{ZONE}", f"hash.{ZONE}", f"rr.{ZONE}", f"lat.{ZONE}"]))
    subnet = draw(st.none() | CLIENT_NETWORKS)
    if subnet is not None:
        network = ipaddress.ip_network(f"{subnet[0]}/{subnet[1]}", strict=False)
        subnet = (str(network.network_address), subnet[1])
    return query(name, draw(st.sampled_from(["A", "AAAA"])), subnet=subnet, edns=draw(st.booleans()),
                 nsid=draw(st.booleans()), dnssec=draw(st.booleans()), qid=draw(st.integers(0, 65535)))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 1000), count=st.sampled_from([1, 2, 3]),
       down=st.frozensets(st.sampled_from(["192.0.2.10", "198.51.100.10", "203.0.113.10", "2001:db8::10"])),
       source=st.sampled_from(["127.0.0.1", "10.1.9.9", "172.20.0.1", "2001:db8:1::5", "::ffff:10.2.3.4"]),
       batch=st.lists(steering_queries(), min_size=1, max_size=12))
def test_fast_path_answers_client_aware_domains_as_the_full_path(seed, count, down, source, batch):
    """With ECS or without, client-aware and multi-value domains: the fast path takes every
    answerable query and gives the full path's bytes and counters."""
    config = steering_config(answer_count=count)
    config_twin = steering_config(answer_count=count)
    fast_view, full_view = steering_view(config, down, seed), steering_view(config_twin, down, seed)
    fast_stats, full_stats = QueryStats(), QueryStats()
    fast = FastPath.from_view(fast_view, fast_stats)
    reference = DNSResponder(lambda: full_view, full_stats)
    for data in batch:
        got = fast.respond(data, True, source)
        want = reference.respond(data, 4096, source)
        assert got is not None
        assert got == want
    assert fast_stats.queries == full_stats.queries
    assert fast_stats.routing == full_stats.routing
    assert fast_stats.ecs_queries == full_stats.ecs_queries


def test_remembered_answers_follow_the_query_bytes_never_the_source():
    """The fast path remembers answers the query's bytes decide (ECS-steered or client-
    independent); one steered by the source address is worked out again for each source."""
    config, twin = steering_config(), steering_config()
    fast_stats, full_stats = QueryStats(), QueryStats()
    fast = FastPath.from_view(steering_view(config), fast_stats)
    full_view = steering_view(twin)
    reference = DNSResponder(lambda: full_view, full_stats)
    asked = [query(f"geo.{ZONE}", qid=1), query(f"geo.{ZONE}", subnet=("10.1.2.0", 24), qid=2),
             query(f"geo.{ZONE}", subnet=("172.16.0.0", 24), qid=3), query(f"hash.{ZONE}", qid=4),
             query(f"hash.{ZONE}", subnet=("10.9.8.0", 24), qid=5), query(f"rr.{ZONE}", subnet=("10.0.0.0", 8))]
    for source in ("10.1.9.9", "172.20.0.1", "10.1.9.9", "198.18.0.1", "2001:db8:1::5"):
        for data in asked:
            assert fast.respond(data, True, source) == reference.respond(data, 4096, source), (source, data)
    assert fast._seen, "ECS-steered answers are remembered"
    assert fast_stats.ecs_queries == full_stats.ecs_queries == 20
    assert fast_stats.queries == full_stats.queries and fast_stats.routing == full_stats.routing


def test_plain_replies_without_ecs_are_unchanged():
    """Without ECS a client-independent domain's reply has no ECS option (as before)."""
    view = steering_view(steering_config())
    reply = ask(DNSResponder(lambda: view, QueryStats()), query(f"rr.{ZONE}"))
    assert ecs_scope(reply) is None and len(reply.answer[0]) == 1


def test_explain_does_not_advance_rotation():
    """explain shows the next answer, the rule, the candidates and the scope, and moves nothing."""
    config = steering_config()
    view = steering_view(config, down=frozenset({"198.51.100.11"}))
    twin = steering_view(steering_config(), down=frozenset({"198.51.100.11"}))
    responder = DNSResponder(lambda: twin, QueryStats())
    for _ in range(3):
        told = explain(view, f"geo.{ZONE}", "A", client_network("10.1.2.3", 24))
        told_rr = explain(view, f"rr.{ZONE}", "A", client_network("192.0.2.200"))
    answered = ask(responder, query(f"geo.{ZONE}", subnet=("10.1.2.0", 24)))
    answered_rr = ask(responder, query(f"rr.{ZONE}"))
    assert told["answer"] == addresses(answered) == ["203.0.113.10"]
    assert told_rr["answer"] == addresses(answered_rr)
    assert (told["ecs_scope"], told["rcode"], told["zone"], told["domain"], told["algorithm"]) == \
        (16, "NOERROR", ZONE, f"geo.{ZONE}", "geolocation")
    assert told["client_network"] == "10.1.2.0/24"
    assert told["matched"]["networks"] == ["10.1.0.0/16"] and told["matched"]["regions"] == ["ap", "eu"]
    reasons = {c["address"]: c["excluded_because"] for c in told["candidates"]}
    assert reasons["203.0.113.10"] is None and reasons["198.51.100.11"] == "unhealthy"
    assert reasons["2001:db8::10"] == "not an IPv4 address"
    assert reasons["192.0.2.10"] == "not chosen by geolocation"


def test_sample_answers_are_stable_across_rebuilds_for_hashing():
    """consistent-hash gives a client network the same server in every view built from the same state."""
    config = steering_config()
    first = DNSResponder(lambda: steering_view(config, seed=1), QueryStats())
    second = DNSResponder(lambda: steering_view(config, seed=2), QueryStats())
    for network in ("10.0.0.0", "10.0.1.0", "192.168.7.0", "8.8.4.0"):
        data = query(f"hash.{ZONE}", subnet=(network, 24))
        assert addresses(ask(first, data)) == addresses(ask(second, data))
        assert ecs_scope(ask(first, data)) == 24


def test_a_reload_opens_the_geoip_database_in_its_worker_thread_step(tmp_path: Path):
    """prepare_config (the reload's worker thread) opens the file; apply_config (the reactor)
    only puts it in use, so the file may even be gone by then; a bad file keeps the old one."""
    first = write_mmdb(tmp_path / "first.mmdb", [("81.0.0.0/8", country("DE", "EU"))])
    second = write_mmdb(tmp_path / "second.mmdb", [("81.0.0.0/8", country("ES", "EU"))])
    clock = task.Clock()
    config = steering_config(str(first))
    gslb = Gslb(clock, config, FakeChecker(clock), memory_runtime(clock, config))
    geoip = gslb.routing_inputs.geoip
    assert geoip is not None and geoip.lookup(4, int(ipaddress.ip_address("81.1.1.1"))).country == "DE"
    reloaded = steering_config(str(second))
    gslb.prepare_config(reloaded)
    second.unlink()  # opened already: applying does not read the path again
    gslb.apply_config(reloaded)
    assert geoip.path == str(second) and geoip.lookup(4, int(ipaddress.ip_address("81.1.1.1"))).country == "ES"
    broken = steering_config(str(tmp_path / "missing.mmdb"))
    gslb.prepare_config(broken)
    gslb.apply_config(broken)
    assert geoip.path == str(second) and geoip.loaded  # kept the database in use
    gslb.stop()
