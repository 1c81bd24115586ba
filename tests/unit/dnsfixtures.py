"""Shared builders for DNS unit tests: a config, a view and a responder."""

import random
import struct
from types import SimpleNamespace

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

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
from opengslb.dns.fastpath import FastPath
from opengslb.dns.server import DNSDatagramProtocol, DNSResponder, DNSStreamProtocol
from opengslb.dns.view import ServedState, build_view
from opengslb.stats import QueryStats


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


# -- the zone of issue 12's reports, served the way the listeners serve it --------

def gslb_test_config(nsid="", nameservers=True, down_region=False):
    """Zone gslb.test (NS ns1.gslb.test with glue) with app.gslb.test (two IPv4, one IPv6
    server), dead.gslb.test (whose only server may be down), deep.x.gslb.test (so
    x.gslb.test is an empty non-terminal) and standalone.example (its own apex)."""
    zone = ZoneConfig(
        name="gslb.test",
        soa=SOAConfig(mname="ns1.gslb.test", rname="hostmaster.gslb.test", minimum=30),
        nameservers=(NameserverConfig("ns1.gslb.test", "192.0.2.53"),) if nameservers else (),
    )
    regions = (
        RegionConfig("r1", (ServerConfig("192.0.2.10"), ServerConfig("192.0.2.11"),
                            ServerConfig("2001:db8::10"))),
        RegionConfig("r2", (ServerConfig("198.51.100.7"),)),
    )
    domains = (
        DomainConfig("app.gslb.test", ("r1",), "round-robin", ttl=30),
        DomainConfig("dead.gslb.test", ("r2",), "round-robin"),
        DomainConfig("deep.x.gslb.test", ("r1",), "failover"),
        DomainConfig("standalone.example", ("r1",), "round-robin"),
    )
    return Config(dns=DNSConfig(listen_address=ListenAddress("127.0.0.1", 53), default_ttl=60,
                                zones=(zone,), nsid=nsid),
                  regions=regions, domains=domains)


class Served:
    """A view, its fast path and responder, asked through the real UDP and TCP protocols."""

    def __init__(self, config=None, down=()):
        self.config = config or gslb_test_config()

        def state(region, server):
            return ServedState(healthy=server.address not in down, weight=float(server.weight))

        self.view = build_view(self.config, state, random.Random(1))
        self.stats = QueryStats()
        self.fast = FastPath.from_view(self.view, self.stats)
        self.responder = DNSResponder(lambda: self.view, self.stats, fast_path=self.fast)

    def udp(self, data):
        """The datagram the UDP protocol sends back for ``data``, or None."""
        sent = []
        protocol = DNSDatagramProtocol(self.responder)
        protocol.transport = SimpleNamespace(write=lambda reply, addr: sent.append(reply))
        protocol.startProtocol()
        protocol.datagramReceived(data, ("192.0.2.1", 5353))
        assert len(sent) <= 1
        return sent[0] if sent else None

    def tcp(self, data):
        """The message the TCP protocol sends back for ``data`` (length-framed), or None."""
        transport = StringTransport()
        protocol = DNSStreamProtocol(self.responder, Clock())
        protocol.makeConnection(transport)
        protocol.dataReceived(struct.pack("!H", len(data)) + data)
        out = transport.value()
        protocol.connectionLost(None)
        if not out:
            return None
        (length,) = struct.unpack("!H", out[:2])
        assert len(out) == length + 2
        return out[2:]
