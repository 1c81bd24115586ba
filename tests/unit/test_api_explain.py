"""GET /api/v1/explain (SPEC §4.1) over the real core, runtime and DNS responder, in memory.

Every explanation is compared with what the DNS side (the full path and the
fast path, over the same core's view) then answers the same client: the
addresses, rcode and ECS scope agree, explaining moves no rotation and counts
nothing, and each candidate's health, weight and reason come from its served
record.  Every reply is checked against the OpenAPI document, and the query
strings the server refuses (400) are exactly those the document's parameter
schema rejects.
"""

from __future__ import annotations

import io
import ipaddress
import json
import urllib.parse
from typing import Any, Dict, List, Optional, Tuple

import dns.edns
import dns.message
import dns.rcode
import jsonschema_rs
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from treq.testing import StubTreq
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from zope.interface import implementer

from opengslb import ctl
from opengslb.api import GslbAPI
from opengslb.api.explain import DNS_NAME, NAME_MAX
from opengslb.config.model import (
    APIConfig,
    Config,
    DNSConfig,
    DomainConfig,
    HealthCheckConfig,
    ListenAddress,
    NameserverConfig,
    RegionConfig,
    ServerConfig,
    SOAConfig,
    TopologyRule,
    ZoneConfig,
)
from opengslb.core import Gslb
from opengslb.dns.fastpath import FastPath
from opengslb.dns.server import DNSResponder
from opengslb.health.tracker import ServerKey
from opengslb.runtime import Runtime
from opengslb.served import PeerVerdicts
from tests.openapi_check import DOCUMENT, check_against_document
from tests.unit.fakes import FakeChecker, MemoryStore

NOW = 1795686027.0
ZONE = "gslb.test"
PATH = "/api/v1/explain"
CHECKS = HealthCheckConfig(interval=10.0, timeout=2.0, failure_threshold=1, success_threshold=1)


def rule(networks: List[str], regions: List[str]) -> TopologyRule:
    return TopologyRule(tuple(regions), networks=tuple(ipaddress.ip_network(n) for n in networks))


def explain_config(policy: Optional[str] = None, fallback: Tuple[str, ...] = ()) -> Config:
    zone = ZoneConfig(name=ZONE, soa=SOAConfig(mname=f"ns1.{ZONE}", rname=f"hostmaster.{ZONE}", minimum=30),
                      nameservers=(NameserverConfig(f"ns1.{ZONE}", "192.0.2.53"),))
    regions = (
        RegionConfig("eu", (ServerConfig("192.0.2.10"), ServerConfig("192.0.2.11", weight=300),
                            ServerConfig("2001:db8::10")), CHECKS),
        RegionConfig("us", (ServerConfig("198.51.100.10"), ServerConfig("198.51.100.11"),
                            ServerConfig("198.51.100.12", weight=0)), CHECKS),
        RegionConfig("ap", (ServerConfig("203.0.113.10"),), CHECKS),
    )
    topology = (rule(["10.0.0.0/8", "2001:db8:1::/48"], ["us"]), rule(["10.1.0.0/16"], ["ap", "eu"]),
                rule(["172.16.0.0/12"], ["eu"]))  # the domain's own order
    domains = (
        DomainConfig(f"geo.{ZONE}", ("eu", "us", "ap"), "geolocation", ttl=20, topology=topology,
                     when_all_down=policy, fallback_addresses=fallback),
        DomainConfig(f"rr.{ZONE}", ("eu", "us"), "round-robin"),
        DomainConfig(f"hash.{ZONE}", ("eu", "us"), "consistent-hash"),
        DomainConfig(f"ap.{ZONE}", ("ap",), "failover", when_all_down=policy, fallback_addresses=fallback),
    )
    return Config(dns=DNSConfig(listen_address=ListenAddress("127.0.0.1", 53), zones=(zone,)),
                  regions=regions, domains=domains)


def api_settings(**changes: Any) -> APIConfig:
    base: Dict[str, Any] = dict(enabled=True, address=ListenAddress("127.0.0.1", 8080), tokens=("t0ken",))
    base.update(changes)
    return APIConfig(**base)


class Reloader:
    def reload(self) -> Deferred:
        return succeed(None)


class ClusterFacade:
    """What the API reads of a cluster-mode facade for explain (the mode and this node's id)."""

    mode = "cluster"
    self_id = "10.0.0.1:7946"


class Peers:
    """Other nodes' verdicts as gossip delivers them: a plain input of the served policy."""

    def __init__(self) -> None:
        self.verdicts = PeerVerdicts()

    def snapshot(self) -> PeerVerdicts:
        return self.verdicts

    def add_listener(self, listener: Any) -> None:
        pass


@implementer(IResource)
class FromPeer:
    """Serves ``inner`` as if every request came from ``host``."""

    isLeaf = True

    def __init__(self, inner: IResource, host: str) -> None:
        self.inner, self.host = inner, host

    def render(self, request: IRequest) -> Any:
        request.client = (IPv6Address if ":" in self.host else IPv4Address)("TCP", self.host, 40000)
        return self.inner.render(request)

    def getChildWithDefault(self, name: bytes, request: IRequest) -> IResource:
        raise NotImplementedError

    def putChild(self, path: bytes, child: IResource) -> None:
        raise NotImplementedError


class World:
    """The production wiring on a Clock: Runtime, Gslb, the API and the DNS responder with its fast path."""

    def __init__(self, config: Optional[Config] = None, settings: Optional[APIConfig] = None,
                 cluster: bool = False) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.checker = FakeChecker()
        self.store = MemoryStore()
        self.runtime = Runtime(self.clock, self.store, config or explain_config())
        self.peers = Peers() if cluster else None
        self.gslb = Gslb(self.clock, self.runtime.config, self.checker, runtime=self.runtime, peers=self.peers)
        self.settings = settings or api_settings()
        self.api = GslbAPI(self.gslb, Reloader(), lambda: self.settings, lambda: (True, None), "node-a",
                           self.clock, ClusterFacade() if cluster else None, runtime=self.runtime)
        self.fast = FastPath.from_view(self.gslb.view, self.gslb.stats)
        self.gslb.add_view_listener(self.fast.rebuild)
        self.dns = DNSResponder(lambda: self.gslb.view, self.gslb.stats, on_stale=self.gslb.on_stale,
                                fast_path=self.fast)
        self.runtime.start()
        self.gslb.start()
        self.settle()

    def settle(self, seconds: float = 0.0) -> None:
        self.clock.advance(seconds)
        self.clock.advance(0)

    def down(self, address: str, reason: str = "HTTP 503") -> None:
        """Fail ``address``'s checks from now on and run a check round."""
        self.checker.down[address] = reason
        self.settle(10)

    def get(self, query: str, peer: str = "127.0.0.1") -> Tuple[int, Any]:
        """GET /api/v1/explain?``query``: (status, JSON body checked against the document)."""
        stub = StubTreq(FromPeer(self.api.resource(), peer))
        d = stub.request("GET", f"http://api.test{PATH}?{query}")
        stub.flush()
        response = result_of(d)
        body = json.loads(result_of(response.content()))
        assert response.headers.getRawHeaders("Content-Type") == ["application/json"]
        check_against_document("GET", PATH, response.code, body)
        return response.code, body

    def explain(self, name: str, rtype: str = "A", client: str = "192.0.2.200",
                subnet: Optional[int] = None) -> Dict[str, Any]:
        query = {"name": name, "type": rtype, "client": client}
        if subnet is not None:
            query["subnet"] = str(subnet)
        status, body = self.get(urllib.parse.urlencode(query))
        assert status == 200, body
        return body

    def ask(self, name: str, rtype: str = "A", source: str = "127.0.0.1",
            subnet: Optional[Tuple[str, int]] = None) -> dns.message.Message:
        """A real query through the responder (fast path first, as the listeners use it)."""
        options = [dns.edns.ECSOption(subnet[0], subnet[1])] if subnet is not None else []
        message = dns.message.make_query(name, rtype, use_edns=0, options=options)
        data = message.to_wire()
        wire = self.dns.fast_respond(data, True, source) or self.dns.respond(data, 4096, source)
        assert isinstance(wire, bytes)
        return dns.message.from_wire(wire)


def result_of(d: Deferred) -> Any:
    found: List[Any] = []
    d.addBoth(found.append)
    assert found, "not fired"
    return found[0]


def addresses(reply: dns.message.Message) -> List[str]:
    return [item.address for rrset in reply.answer for item in rrset]


def scope(reply: dns.message.Message) -> Optional[int]:
    return next((o.scopelen for o in reply.options if isinstance(o, dns.edns.ECSOption)), None)


def by_address(told: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    return {c["address"]: c for c in told["candidates"]}


# -- what DNS answers ---------------------------------------------------------------------


def test_geolocation_with_subnet_is_what_dns_answers():
    """With subnet: the ECS network, the topology rule, the answer and the scope DNS then gives."""
    world = World()
    told = world.explain(f"geo.{ZONE}", client="10.1.2.3", subnet=24)
    assert {k: told[k] for k in ("name", "type", "client", "client_network", "zone", "domain", "algorithm",
                                 "answer", "rcode", "ecs_scope", "policy")} == {
        "name": f"geo.{ZONE}", "type": "A", "client": "10.1.2.3", "client_network": "10.1.2.0/24",
        "zone": ZONE, "domain": f"geo.{ZONE}", "algorithm": "geolocation", "answer": ["203.0.113.10"],
        "rcode": "NOERROR", "ecs_scope": 16, "policy": None}
    assert told["matched"] == {"rule": 1, "networks": ["10.1.0.0/16"], "regions": ["ap", "eu"],
                               "order": ["ap", "eu", "us"]}
    reply = world.ask(f"geo.{ZONE}", subnet=("10.1.2.3", 24))
    assert (addresses(reply), scope(reply)) == (told["answer"], told["ecs_scope"])
    candidates = by_address(told)
    assert candidates["203.0.113.10"]["excluded_because"] is None
    assert candidates["192.0.2.10"]["excluded_because"] == "not in the chosen region (ap)"
    assert candidates["2001:db8::10"]["excluded_because"] == "not an IPv4 address"
    assert candidates["198.51.100.12"]["excluded_because"] == "weight 0 (configured)"
    assert candidates["198.51.100.12"]["effective_weight"] == 0.0
    assert candidates["192.0.2.11"] == {"region": "eu", "address": "192.0.2.11", "port": 80, "healthy": True,
                                        "effective_weight": 300.0,
                                        "excluded_because": "not in the chosen region (ap)"}
    assert all("node_verdicts" not in c for c in told["candidates"])  # standalone


def test_without_subnet_the_client_is_the_source_and_no_scope_is_returned():
    """Without subnet: a query sent from the client without ECS (the reply has no ECS: scope null)."""
    world = World()
    told = world.explain(f"geo.{ZONE}", client="10.200.0.7")
    assert (told["client_network"], told["ecs_scope"], told["matched"]["networks"]) == (
        "10.200.0.7/32", None, ["10.0.0.0/8", "2001:db8:1::/48"])
    reply = world.ask(f"geo.{ZONE}", source="10.200.0.7")
    assert addresses(reply) == told["answer"] and scope(reply) is None
    assert told["answer"][0] in ("198.51.100.10", "198.51.100.11")  # us, by the rule of 10.0.0.0/8


def test_subnet_zero_steers_by_the_client_address_with_scope_zero():
    """ECS source prefix 0 names no network: DNS steers by the source address, and the reply's scope
    is 0 (as gdnsd answers: chosen for the resolver itself, usable for all its clients)."""
    world = World()
    told = world.explain(f"geo.{ZONE}", client="10.1.9.9", subnet=0)
    reply = world.ask(f"geo.{ZONE}", source="10.1.9.9", subnet=("0.0.0.0", 0))
    assert told["client_network"] == "10.1.9.9/32"
    assert (addresses(reply), scope(reply)) == (told["answer"], told["ecs_scope"]) == (["203.0.113.10"], 0)


def test_a_rule_giving_the_domains_own_order_is_still_named():
    """A network whose rule gives the domain's own order is merged with "unmatched" for answering
    (as gdnsd does), yet explain names the rule; a client no network holds matches nothing."""
    world = World()
    told = world.explain(f"geo.{ZONE}", client="172.20.1.1", subnet=24)
    assert told["matched"] == {"rule": 2, "networks": ["172.16.0.0/12"], "regions": ["eu"],
                               "order": ["eu", "us", "ap"]}
    reply = world.ask(f"geo.{ZONE}", subnet=("172.20.1.1", 24))
    assert (addresses(reply), scope(reply)) == (told["answer"], told["ecs_scope"])
    assert told["answer"][0] in ("192.0.2.10", "192.0.2.11")
    nothing = world.explain(f"geo.{ZONE}", client="192.168.1.1", subnet=24)
    assert nothing["matched"] is None and nothing["ecs_scope"] == 1  # 128.0.0.0/1 holds no other rule
    assert scope(world.ask(f"geo.{ZONE}", subnet=("192.168.1.1", 24))) == 1


def test_ipv6_client_and_aaaa():
    """An IPv6 client network (capped at /56) and an AAAA answer, as DNS gives them."""
    world = World()
    told = world.explain(f"geo.{ZONE}", "AAAA", client="2001:db8:1:2::5", subnet=64)
    reply = world.ask(f"geo.{ZONE}", "AAAA", subnet=("2001:db8:1:2::5", 64))
    assert told["client_network"] == "2001:db8:1::/56"
    assert (addresses(reply), scope(reply)) == (told["answer"], told["ecs_scope"]) == (["2001:db8::10"], 48)
    assert by_address(told)["192.0.2.10"]["excluded_because"] == "not an IPv6 address"


def test_a_backend_going_down_is_excluded_with_the_served_reason_and_the_answer_moves():
    """The check's verdict and error are the reason; the answer falls to the rule's next region."""
    world = World()
    assert world.explain(f"geo.{ZONE}", client="10.1.2.3", subnet=24)["answer"] == ["203.0.113.10"]
    world.down("203.0.113.10", "HTTP 503")
    told = world.explain(f"geo.{ZONE}", client="10.1.2.3", subnet=24)
    ap = by_address(told)["203.0.113.10"]
    assert (ap["healthy"], ap["excluded_because"]) == (
        False, "unhealthy (own check: unhealthy; last error: HTTP 503)")
    reply = world.ask(f"geo.{ZONE}", subnet=("10.1.2.3", 24))
    assert addresses(reply) == told["answer"] and told["answer"][0] in ("192.0.2.10", "192.0.2.11")
    assert scope(reply) == told["ecs_scope"]
    other = "192.0.2.11" if told["answer"] == ["192.0.2.10"] else "192.0.2.10"
    assert by_address(told)[other]["excluded_because"] == "not next in the chosen region's rotation (geolocation)"


def test_overrides_and_vetoes_are_the_served_records_reasons():
    """A disabling override, an override to weight 0 and a veto, each in the served record's words."""
    world = World()
    world.runtime.set_override("eu", "192.0.2.10", None, False, "maintenance", None)
    world.runtime.set_override("eu", "192.0.2.11", 0, None, "drain", None)
    world.runtime.set_veto(ServerKey("us", "198.51.100.10", 80), "overwatch: port closed")
    world.settle()
    candidates = by_address(world.explain(f"rr.{ZONE}"))
    assert candidates["192.0.2.10"]["excluded_because"] == "override: disabled (maintenance)"
    assert candidates["192.0.2.11"]["excluded_because"] == "override: weight 0 (drain)"
    assert (candidates["198.51.100.10"]["healthy"], candidates["198.51.100.10"]["excluded_because"]) == (
        False, "vetoed: overwatch: port closed")
    assert candidates["198.51.100.11"]["excluded_because"] is None
    assert world.explain(f"rr.{ZONE}")["answer"] == ["198.51.100.11"] == addresses(world.ask(f"rr.{ZONE}"))


def test_explaining_moves_no_rotation_and_counts_nothing():
    """Explain twice: the same prediction, no counter moves; the next DNS answers are as predicted."""
    world = World()
    queries, routing, ecs = dict(world.gslb.stats.queries), dict(world.gslb.stats.routing), world.gslb.stats.ecs_queries
    first = world.explain(f"rr.{ZONE}")
    assert world.explain(f"rr.{ZONE}")["answer"] == first["answer"]
    world.explain(f"geo.{ZONE}", client="10.9.0.1", subnet=24)
    world.explain(f"geo.{ZONE}", client="10.9.0.1", subnet=24)
    assert (world.gslb.stats.queries, world.gslb.stats.routing, world.gslb.stats.ecs_queries) == (
        queries, routing, ecs)
    assert addresses(world.ask(f"rr.{ZONE}")) == first["answer"]
    second = world.explain(f"rr.{ZONE}")
    assert second["answer"] != first["answer"]
    assert addresses(world.ask(f"rr.{ZONE}")) == second["answer"]
    rotation = [world.explain(f"geo.{ZONE}", client="10.9.0.1", subnet=24)["answer"]
                == addresses(world.ask(f"geo.{ZONE}", subnet=("10.9.0.1", 24))) for _ in range(4)]
    assert all(rotation)  # us has two servers: each prediction is the next answer


def test_names_that_are_not_domains_get_what_dns_answers():
    """REFUSED outside every zone, NXDOMAIN inside one, NODATA for a family without servers, glue."""
    world = World()
    cases = [("www.elsewhere.test", "A", "REFUSED", None), (f"nope.{ZONE}", "A", "NXDOMAIN", ZONE),
             (f"ap.{ZONE}", "AAAA", "NOERROR", ZONE), (f"ns1.{ZONE}", "A", "NOERROR", ZONE),
             (ZONE, "A", "NOERROR", ZONE)]
    for name, rtype, rcode, zone in cases:
        told = world.explain(name, rtype)
        reply = world.ask(name, rtype, source="192.0.2.200")
        assert (told["rcode"], told["zone"]) == (rcode, zone), name
        assert dns.rcode.to_text(reply.rcode()) == rcode and addresses(reply) == told["answer"], name
    assert world.explain(f"ns1.{ZONE}")["answer"] == ["192.0.2.53"]
    nodata = world.explain(f"ap.{ZONE}.", "AAAA")
    assert (nodata["name"], nodata["domain"], nodata["answer"]) == (f"ap.{ZONE}", f"ap.{ZONE}", [])
    outside = world.explain("WWW.Elsewhere.Test")
    assert (outside["name"], outside["domain"], outside["algorithm"], outside["candidates"]) == (
        "www.elsewhere.test", None, None, [])


@pytest.mark.parametrize("policy, fallback, rcode, answer", [
    ("servfail", (), "SERVFAIL", []),
    ("fallback", ("192.0.2.99",), "NOERROR", ["192.0.2.99"]),
    ("all", (), "NOERROR", ["203.0.113.10"]),
])
def test_all_down_policies_are_reported(policy, fallback, rcode, answer):
    """Every server down: the when_all_down policy that answers, and its answer, as DNS gives it."""
    world = World(explain_config(policy, fallback))
    world.down("203.0.113.10")
    told = world.explain(f"ap.{ZONE}")
    reply = world.ask(f"ap.{ZONE}", source="192.0.2.200")
    assert (told["policy"], told["rcode"], told["answer"]) == (policy, rcode, answer)
    assert (dns.rcode.to_text(reply.rcode()), addresses(reply)) == (rcode, answer)
    expected = None if policy == "all" else "unhealthy (own check: unhealthy; last error: HTTP 503)"
    assert told["candidates"][0]["excluded_because"] == expected


def test_consistent_hash_shows_the_hashed_network():
    world = World()
    told = world.explain(f"hash.{ZONE}", client="192.0.2.77", subnet=32)
    reply = world.ask(f"hash.{ZONE}", subnet=("192.0.2.77", 32))
    assert told["matched"] == {"hashed_network": "192.0.2.0/24"}
    assert (addresses(reply), scope(reply)) == (told["answer"], told["ecs_scope"]) and told["ecs_scope"] == 24


def test_cluster_mode_shows_each_nodes_verdict():
    """In cluster mode every candidate carries node_verdicts: this node's, then each peer's."""
    world = World(cluster=True)
    key = ServerKey("ap", "203.0.113.10", 80)
    world.peers.verdicts = PeerVerdicts("majority", {"10.0.0.2:7946": {key: False},
                                                     "10.0.0.3:7946": {key: False}})
    world.gslb.request_rebuild()
    world.settle()
    told = world.explain(f"geo.{ZONE}", client="10.1.2.3", subnet=24)
    ap = by_address(told)["203.0.113.10"]
    assert ap["node_verdicts"] == {"10.0.0.1:7946": True, "10.0.0.2:7946": False, "10.0.0.3:7946": False}
    assert ap["healthy"] is False
    assert ap["excluded_because"] == ("unhealthy (own check: healthy; majority of 3 nodes (1 healthy): "
                                      "unhealthy)")
    assert told["answer"] == addresses(world.ask(f"geo.{ZONE}", subnet=("10.1.2.3", 24)))
    assert by_address(told)["192.0.2.10"]["node_verdicts"] == {"10.0.0.1:7946": True}


# -- the gate and bad queries -----------------------------------------------------------------


def test_allowed_networks_apply_and_no_token_is_needed():
    world = World(settings=api_settings(allowed_networks=(ipaddress.ip_network("192.0.2.0/24"),)))
    status, body = world.get(f"name=rr.{ZONE}&type=A&client=192.0.2.1", peer="192.0.2.9")
    assert status == 200 and body["answer"]
    status, body = world.get(f"name=rr.{ZONE}&type=A&client=192.0.2.1", peer="198.51.100.9")
    assert (status, body) == (403, {"error": "source address 198.51.100.9 is not in api.allowed_networks",
                                    "code": 403})


@pytest.mark.parametrize("query, message", [
    ("type=A&client=192.0.2.1", "parameter 'name' is required"),
    (f"name=rr.{ZONE}&client=192.0.2.1", "parameter 'type' is required"),
    (f"name=rr.{ZONE}&type=A", "parameter 'client' is required"),
    ("name=&type=A&client=192.0.2.1", "is not a DNS name"),
    ("name=a..b&type=A&client=192.0.2.1", "is not a DNS name"),
    ("name=a%20b.test&type=A&client=192.0.2.1", "is not a DNS name"),
    (f"name={'a' * 64}.test&type=A&client=192.0.2.1", "is not a DNS name"),
    (f"name={'.'.join(['abc'] * 64)}&type=A&client=192.0.2.1", "is not a DNS name"),
    (f"name=rr.{ZONE}&type=MX&client=192.0.2.1", "type must be A or AAAA"),
    (f"name=rr.{ZONE}&type=a&client=192.0.2.1", "type must be A or AAAA"),
    (f"name=rr.{ZONE}&type=A&client=192.0.2.300", "is not an IP address"),
    (f"name=rr.{ZONE}&type=A&client=fe80::1%25eth0", "is not an IP address"),
    (f"name=rr.{ZONE}&type=A&client=host.example", "is not an IP address"),
    (f"name=rr.{ZONE}&type=A&client=192.0.2.1&subnet=33", "from 0 to 32 for the IPv4 client"),
    (f"name=rr.{ZONE}&type=A&client=2001:db8::1&subnet=129", "from 0 to 128 for the IPv6 client"),
    (f"name=rr.{ZONE}&type=A&client=192.0.2.1&subnet=-1", "subnet must be"),
    (f"name=rr.{ZONE}&type=A&client=192.0.2.1&subnet=24.0", "subnet must be"),
    (f"name=rr.{ZONE}&type=A&client=192.0.2.1&subnet=", "subnet must be"),
    (f"name=rr.{ZONE}&type=A&client=192.0.2.1&subnet=abc", "subnet must be"),
    (f"name=rr.{ZONE}&type=A&client=192.0.2.1&name=x.test", "parameter 'name' is given more than once"),
    (f"name=rr.{ZONE}&type=A&client=192.0.2.1&ecs=1", "unknown parameter 'ecs'"),
])
def test_bad_queries_are_400_with_a_clear_message(query, message):
    status, body = World().get(query)
    assert status == 400 and body["code"] == 400 and message in body["error"], body


# -- the document and the server agree on the query --------------------------------------------

PARAMETER = DOCUMENT["paths"][PATH]["get"]["parameters"][0]
QUERY_SCHEMA = jsonschema_rs.Draft202012Validator(PARAMETER["schema"])
NAMES = [f"rr.{ZONE}", "RR.GSLB.TEST.", "", ".", "a..b", "a b", "_srv._tcp.x", "x" * 63, "x" * 64,
         ".".join(["a" * 63] * 4)[:253], ".".join(["a" * 63] * 4)[:254], "é.test", "a/b"]
CLIENTS = ["192.0.2.1", "10.1.2.3", "::1", "2001:db8:1::5", "::ffff:10.1.2.3", "192.0.2.256", "01.2.3.4",
           " 192.0.2.1", "fe80::1%eth0", "host", ""]
SUBNETS = ["0", "8", "24", "32", "33", "56", "128", "129", "-1", "024", "+8", "1e1", "", "x"]


def wire_to_value(key: str, values: List[str]) -> Any:
    """What a query parameter's text stands for under the document's schema (as schemathesis
    writes values: integers in decimal; a repeated parameter is an array)."""
    if len(values) > 1:
        return values
    text = values[0]
    if key == "subnet" and text.isdigit() and text.isascii():
        return int(text)
    return text


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.sampled_from(["name", "type", "client", "subnet", "name", "type", "client",
                                           "other"]),
                          st.one_of(st.sampled_from(NAMES + CLIENTS + SUBNETS + ["A", "AAAA", "a", "MX"]),
                                    st.from_regex(DNS_NAME, fullmatch=True).filter(lambda n: len(n) < 80))),
                min_size=0, max_size=5))
@example([("name", f"rr.{ZONE}"), ("type", "A"), ("client", "192.0.2.1"), ("subnet", "32")])
@example([("name", f"rr.{ZONE}"), ("type", "A"), ("client", "192.0.2.1"), ("subnet", "33")])
@example([("name", f"rr.{ZONE}"), ("type", "AAAA"), ("client", "::ffff:10.1.2.3"), ("subnet", "128")])
def test_the_query_is_refused_exactly_when_the_document_rejects_it(pairs):
    """400 exactly when the parameter schema (read with the validator schemathesis uses) rejects
    the query; otherwise 200."""
    grouped: Dict[str, List[str]] = {}
    for key, value in pairs:
        grouped.setdefault(key, []).append(value)
    document_value = {key: wire_to_value(key, values) for key, values in grouped.items()}
    valid = QUERY_SCHEMA.is_valid(document_value)
    status, body = WORLD.get(urllib.parse.urlencode(pairs))
    assert status == (200 if valid else 400), (pairs, document_value, body)


WORLD = World()


def test_the_document_describes_the_operation():
    operation = DOCUMENT["paths"][PATH]["get"]
    assert {} in operation["security"] and set(operation["responses"]) >= {"200", "400", "403"}
    assert PARAMETER["style"] == "form" and PARAMETER["explode"] is True
    assert PARAMETER["schema"]["properties"]["name"]["maxLength"] == NAME_MAX
    assert set(DOCUMENT["components"]["schemas"]["Explain"]["required"]) == {
        "name", "type", "client", "client_network", "zone", "domain", "algorithm", "matched",
        "candidates", "answer", "rcode", "ecs_scope", "policy"}


# -- opengslb ctl explain ----------------------------------------------------------------------


def test_ctl_prints_the_explanation_readably():
    """`opengslb ctl explain` shows the answer, the rule, the scope and each candidate's reason."""
    world = World()
    world.down("203.0.113.10")
    text = ctl.show_explain(world.explain(f"geo.{ZONE}", client="10.1.2.3", subnet=24))
    lines = text.splitlines()
    assert lines[0] == f"geo.{ZONE} A for 10.1.2.3 (client network 10.1.2.0/24)"
    assert lines[1].startswith("answer     192.0.2.1") and "[NOERROR, ECS scope /16]" in lines[1]
    assert lines[2] == f"domain     geo.{ZONE} (geolocation) in zone {ZONE}"
    assert lines[3] == "matched    topology rule 1: networks 10.1.0.0/16 → regions ap, eu (order ap, eu, us)"
    assert "203.0.113.10:80" in text and "unhealthy (own check: unhealthy; last error: HTTP 503)" in text
    refused = ctl.show_explain(world.explain("www.elsewhere.test"))
    assert refused.splitlines()[:2] == ["www.elsewhere.test A for 192.0.2.200 (client network 192.0.2.200/32)",
                                        "answer     (none)  [REFUSED]"]


def test_ctl_explain_needs_a_client_and_sends_the_query(monkeypatch):
    """--client is required (the API needs it); --subnet is a number; the query reaches the API as such."""
    err = io.StringIO()
    assert ctl.main(["explain", f"rr.{ZONE}"], out=io.StringIO(), err=err, environ={}) == ctl.EXIT_USAGE
    assert ctl.main(["explain", f"rr.{ZONE}", "--client", "192.0.2.1", "--subnet", "x"], out=io.StringIO(),
                    err=err, environ={}) == ctl.EXIT_USAGE
    sent: List[Any] = []

    def call(self: ctl.Client, method: str, path: str, body: Any = None, query: Any = None) -> Dict[str, Any]:
        sent.append((method, path, query))
        return WORLD.explain(query["name"], query["type"], query["client"],
                             int(query["subnet"]) if "subnet" in query else None)

    monkeypatch.setattr(ctl.Client, "call", call)
    out = io.StringIO()
    assert ctl.main(["explain", f"rr.{ZONE}", "--client", "10.1.2.3", "--subnet", "24", "--type", "AAAA"],
                    out=out, err=err, environ={}) == ctl.EXIT_OK
    assert sent == [("GET", "/api/v1/explain", {"name": f"rr.{ZONE}", "type": "AAAA", "client": "10.1.2.3",
                                                "subnet": "24"})]
    assert out.getvalue().startswith(f"rr.{ZONE} AAAA for 10.1.2.3 (client network 10.1.2.0/24)\n")
