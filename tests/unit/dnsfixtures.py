"""Shared builders for DNS unit tests: a config, a view and a responder."""

import random

from opengslb.config.model import (
    Config,
    DNSConfig,
    DomainConfig,
    ListenAddress,
    NameserverConfig,
    RegionConfig,
    ServerConfig,
    SOAConfig,
    ZoneConfig,
)
from opengslb.dns.server import DNSResponder, QueryStats
from opengslb.dns.view import ServedState, build_view


def sample_config(return_last_healthy=False, nameservers=None):
    zone = ZoneConfig(
        name="gslb.example.com",
        soa=SOAConfig(mname="ns1.gslb.example.com", rname="hostmaster.example.com", minimum=30),
        nameservers=tuple(nameservers if nameservers is not None else (
            NameserverConfig("ns1.gslb.example.com", "192.0.2.53"),
            NameserverConfig("ns.other-provider.net"),
        )),
    )
    regions = (
        RegionConfig("east", (ServerConfig("192.0.2.10", 80), ServerConfig("192.0.2.11", 80),
                              ServerConfig("2001:db8::10", 80))),
        RegionConfig("west", (ServerConfig("198.51.100.10", 80),)),
        RegionConfig("v6only", (ServerConfig("2001:db8::20", 80),)),
    )
    domains = (
        DomainConfig("app.gslb.example.com", ("east", "west"), "round-robin", ttl=15),
        DomainConfig("fo.gslb.example.com", ("east", "west"), "failover"),
        DomainConfig("deep.a.b.gslb.example.com", ("west",), "weighted"),
        DomainConfig("v6.gslb.example.com", ("v6only",), "round-robin"),
        DomainConfig("standalone.example.org", ("west",), "round-robin"),
    )
    return Config(dns=DNSConfig(listen_address=ListenAddress("127.0.0.1", 53), default_ttl=60,
                                return_last_healthy=return_last_healthy, zones=(zone,)),
                  regions=regions, domains=domains)


def make_responder(config=None, down=(), last_healthy=None, seed=1):
    """A responder over ``config`` with the servers in ``down`` unhealthy."""
    config = config or sample_config()
    last_healthy = last_healthy or {}

    def state(region, server):
        return ServedState(healthy=server.address not in down, weight=float(server.weight),
                           last_healthy=last_healthy.get(server.address))

    view = build_view(config, state, random.Random(seed))
    stats = QueryStats()
    return DNSResponder(lambda: view, stats), stats
