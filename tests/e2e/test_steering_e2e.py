"""Client-aware steering against the real `twistd opengslb` with real dnspython clients (SPEC §4.1):
geolocation by ECS network and scope, consistent-hash, latency, answer_count and when_all_down
over health changes of real loopback HTTP backends; malformed ECS gets FORMERR."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional, Tuple

import dns.edns
import dns.message
import dns.query
import dns.rcode
import pytest

from tests.e2e.harness import HTTPBackend, free_port, wait_until
from tests.unit.mmdb import country, write_mmdb

pytestmark = pytest.mark.e2e

CHECKS = "{type: http, interval: 300ms, timeout: 250ms, path: /health, failure_threshold: 1, success_threshold: 1}"


def region(name: str, backends: List, checks: str = CHECKS, extra: str = "") -> str:
    servers = ", ".join(f"{{address: {b.host}, port: {b.port}}}" for b in backends)
    return f"  - name: {name}\n    servers: [{servers}]\n    health_check: {checks}\n{extra}"


def config(regions: str, domains: str, extra: str = "") -> str:
    return (f'dns:\n  listen_address: "{{DNS}}"\n  default_ttl: 20\n'
            f"  zones: [{{name: steer.test, nameservers: [{{name: ns1.steer.test, address: 127.0.0.53}}]}}]\n"
            f"{extra}logging: {{level: info, format: json}}\nregions:\n{regions}domains:\n{domains}")


def ask(node, name: str, subnet: Optional[Tuple[str, int]] = None, rdtype: str = "A",
        options: Optional[list] = None) -> dns.message.Message:
    opts = list(options or [])
    if subnet is not None:
        opts.append(dns.edns.ECSOption(subnet[0], subnet[1]))
    query = dns.message.make_query(name, rdtype, use_edns=0, options=opts)
    return dns.query.udp(query, node.dns_host, port=node.dns_port, timeout=2.0)


def answer(reply: dns.message.Message) -> List[str]:
    return [item.address for rrset in reply.answer for item in rrset]


def scope(reply: dns.message.Message) -> Optional[int]:
    return next((o.scopelen for o in reply.options if isinstance(o, dns.edns.ECSOption)), None)


def geolocation_node(gslb_factory, backends, subnet: str, name: str):
    """A node serving ``name`` by geolocation over regions eu, us, ap (backends SUBNET.61-63):
    10.0.0.0/8 and 2001:db8::/32 → [us, eu], 10.1.0.0/16 → [ap, us], 127.0.0.0/8 → [ap].
    Returns (node, the us backend)."""
    eu, us, ap = (backends(HTTPBackend(f"{subnet}.{61 + i}")) for i in range(3))
    node = gslb_factory(config(
        region("eu", [eu]) + region("us", [us]) + region("ap", [ap]),
        f"  - name: {name}\n    routing_algorithm: geolocation\n    regions: [eu, us, ap]\n"
        "    topology:\n"
        "      - {networks: [10.0.0.0/8, '2001:db8::/32'], regions: [us, eu]}\n"
        "      - {networks: [10.1.0.0/16], regions: [ap, us]}\n"
        "      - {networks: [127.0.0.0/8], regions: [ap]}\n"))
    return node, us


def test_geolocation_by_ecs_network_with_scopes_and_failover(gslb_factory, backends):
    """ECS picks the region by the longest network; scopes are right; a down region falls through
    to the next one in the rule's order and comes back when healthy."""
    node, us = geolocation_node(gslb_factory, backends, "127.0.0", "www.steer.test")
    reply = ask(node, "www.steer.test", ("10.1.2.0", 24))
    assert (answer(reply), scope(reply)) == (["127.0.0.63"], 16)
    option = next(o for o in reply.options if isinstance(o, dns.edns.ECSOption))
    assert (option.address, option.srclen) == ("10.1.2.0", 24)
    reply = ask(node, "www.steer.test", ("10.200.0.0", 16))
    assert (answer(reply), scope(reply)) == (["127.0.0.62"], 9)  # 10.128.0.0/9 holds no 10.1/16
    reply = ask(node, "www.steer.test", ("192.0.2.0", 24))
    assert (answer(reply), scope(reply)) == (["127.0.0.61"], 1)  # 128.0.0.0/1 holds no network
    assert answer(ask(node, "www.steer.test")) == ["127.0.0.63"]  # no ECS: the source 127.0.0.1
    assert scope(ask(node, "www.steer.test")) is None
    us.status = 503
    wait_until(lambda: answer(ask(node, "www.steer.test", ("10.200.0.0", 16))) == ["127.0.0.61"], 10,
               message="us down: the rule's next region (eu)")
    us.status = 200
    wait_until(lambda: answer(ask(node, "www.steer.test", ("10.200.0.0", 16))) == ["127.0.0.62"], 10,
               message="us back")


def dig(node, name: str, *options: str) -> str:
    """dig's output for ``name`` A against ``node`` (no recursion asked)."""
    return subprocess.run(["dig", "@" + node.dns_host, "-p", str(node.dns_port), name, "A", "+norec",
                           "+nocookie", *options], capture_output=True, text=True, timeout=10).stdout


def dig_answer(out: str) -> List[str]:
    """The addresses of dig's answer section."""
    section = out.split(";; ANSWER SECTION:")[1].split("\n\n")[0] if ";; ANSWER SECTION:" in out else ""
    return [line.split()[-1] for line in section.strip().splitlines()]


@pytest.mark.skipif(shutil.which("dig") is None, reason="dig is not installed (apt-get install dnsutils)")
def test_dig_subnet_gets_the_networks_answer_and_scope(gslb_factory, backends):
    """dig +subnet (a real client, RFC 7871): the ECS network picks the region over UDP and TCP,
    the reply's CLIENT-SUBNET echoes the network with the scope the answer depends on, and
    +subnet=0.0.0.0/0 (no network given) is steered by the source address with scope 0."""
    node, us = geolocation_node(gslb_factory, backends, "127.0.44", "dig.steer.test")
    for transport in ([], ["+tcp"]):
        out = dig(node, "dig.steer.test", "+subnet=10.1.2.0/24", *transport)
        assert "status: NOERROR" in out and dig_answer(out) == ["127.0.44.63"], out
        assert "CLIENT-SUBNET: 10.1.2.0/24/16" in out, out
        out = dig(node, "dig.steer.test", "+subnet=10.200.0.0/16", *transport)
        assert dig_answer(out) == ["127.0.44.62"] and "CLIENT-SUBNET: 10.200.0.0/16/9" in out, out
        out = dig(node, "dig.steer.test", "+subnet=0.0.0.0/0", *transport)
        assert dig_answer(out) == ["127.0.44.63"] and "CLIENT-SUBNET: 0.0.0.0/0/0" in out, out
    us.status = 503
    wait_until(lambda: dig_answer(dig(node, "dig.steer.test", "+subnet=10.200.0.0/16")) == ["127.0.44.61"],
               10, message="us down: the rule's next region (eu)")


def test_malformed_ecs_is_formerr(gslb_factory, backends):
    """Bad family, prefix too long, address bits past the prefix, non-zero scope: FORMERR."""
    server = backends(HTTPBackend("127.0.0.64"))
    node = gslb_factory(config(region("r", [server]),
                               "  - {name: www.steer.test, routing_algorithm: geolocation, regions: [r]}\n"))
    for data in (b"\x00\x03\x08\x00\x0a", b"\x00\x01\x21\x00" + bytes(5), b"\x00\x01\x08\x00\x0b\x01",
                 b"\x00\x01\x18\x08\x0a\x01\x02", b"\x00\x01\x0c\x00\x0a\x1f"):
        reply = ask(node, "www.steer.test", options=[dns.edns.GenericOption(8, data)])
        assert reply.rcode() == dns.rcode.FORMERR, data
    assert ask(node, "www.steer.test", ("10.0.0.0", 8)).rcode() == dns.rcode.NOERROR


def test_consistent_hash_moves_only_the_lost_servers_clients(gslb_factory, backends):
    """consistent-hash: a server going down moves only its client networks; they return with it."""
    servers = [backends(HTTPBackend(f"127.0.0.{70 + i}")) for i in range(3)]
    node = gslb_factory(config(region("r", servers),
                               "  - {name: hash.steer.test, routing_algorithm: consistent-hash, regions: [r]}\n"))
    networks = [f"10.{i // 256}.{i % 256}.0" for i in range(300)]

    def mapping() -> Dict[str, str]:
        found = {}
        for network in networks:
            reply = ask(node, "hash.steer.test", (network, 24))
            assert scope(reply) == 24
            found[network] = answer(reply)[0]
        return found

    before = mapping()
    assert set(before.values()) == {s.host for s in servers}
    servers[0].status = 503
    wait_until(lambda: servers[0].host not in mapping().values(), 10, message="server 0 out")
    during = mapping()
    assert all(during[n] == before[n] for n in networks if before[n] != servers[0].host)
    servers[0].status = 200
    wait_until(lambda: mapping() == before, 10, message="every client back where it was")


class SlowBackend:
    """An HTTP backend whose /health answers after ``delay`` seconds."""

    def __init__(self, host: str) -> None:
        backend = self
        self.delay = 0.0

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                time.sleep(backend.delay)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.host = host
        self._server = ThreadingHTTPServer((host, 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def test_latency_follows_the_fastest_with_hysteresis(gslb_factory, backends):
    """latency: the server with the lower check RTT answers; when it slows down a lot, the other takes over."""
    fast, slow = backends(SlowBackend("127.0.0.81")), backends(SlowBackend("127.0.0.82"))
    fast.delay, slow.delay = 0.0, 0.15
    checks = "{type: http, interval: 400ms, timeout: 350ms, path: /health}"
    node = gslb_factory(config(region("a", [slow], checks) + region("b", [fast], checks),
                               "  - {name: lat.steer.test, routing_algorithm: latency, regions: [a, b]}\n"))
    wait_until(lambda: answer(ask(node, "lat.steer.test")) == ["127.0.0.81"], 10, message="the fast one")
    assert scope(ask(node, "lat.steer.test", ("10.0.0.0", 8))) == 0
    fast.delay = 0.3
    wait_until(lambda: answer(ask(node, "lat.steer.test")) == ["127.0.0.82"], 15, message="switch to 82")


@pytest.mark.parametrize("policy, rcode, expected", [
    ("servfail", dns.rcode.SERVFAIL, []),
    ("all", dns.rcode.NOERROR, ["127.0.0.91", "127.0.0.92"]),
    ("nodata", dns.rcode.NOERROR, []),
    ("fallback", dns.rcode.NOERROR, ["203.0.113.5"]),
    ("last-healthy", dns.rcode.NOERROR, "one of both"),
])
def test_when_all_down_policies(gslb_factory, backends, policy, rcode, expected):
    """Each when_all_down policy answers as configured once every server is down, and is counted."""
    servers = [backends(HTTPBackend(f"127.0.0.{91 + i}")) for i in range(2)]
    metrics = free_port()
    node = gslb_factory(config(
        region("r", servers),
        f"  - {{name: down.steer.test, regions: [r], answer_count: 2, when_all_down: {policy},"
        f" fallback_addresses: [203.0.113.5]}}\n",
        extra=f'metrics: {{enabled: true, address: "127.0.0.1:{metrics}"}}\n'))
    assert sorted(answer(ask(node, "down.steer.test"))) == ["127.0.0.91", "127.0.0.92"]
    for server in servers:
        server.status = 503
    counter = f'opengslb_all_down_answers_total{{domain="down.steer.test",policy="{policy}"}}'

    def scrape() -> str:
        return urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5).read().decode()

    wait_until(lambda: ask(node, "down.steer.test").rcode() is not None and counter in scrape(), 10,
               message="every server down")
    reply = ask(node, "down.steer.test", ("10.0.0.0", 8))
    assert reply.rcode() == rcode and scope(reply) == 0
    if expected == "one of both":
        assert len(answer(reply)) == 1 and answer(reply)[0] in ("127.0.0.91", "127.0.0.92")
    else:
        assert sorted(answer(reply)) == expected
    text = scrape()
    assert counter in text
    assert "opengslb_dns_ecs_queries_total 1.0" in text


def test_answer_count_gives_distinct_rotating_addresses(gslb_factory, backends):
    """answer_count: 2 over three healthy servers: two distinct addresses, rotating between queries."""
    servers = [backends(HTTPBackend(f"127.0.0.{101 + i}")) for i in range(3)]
    node = gslb_factory(config(region("r", servers),
                               "  - {name: multi.steer.test, regions: [r], answer_count: 2}\n"))
    seen = [tuple(answer(ask(node, "multi.steer.test"))) for _ in range(6)]
    assert all(len(set(s)) == 2 for s in seen)
    assert len(set(seen)) == 3


def test_geoip_countries_and_continents_follow_the_database_across_sighup(gslb_factory, backends, tmp_path):
    """geoip.database (a MaxMind-format file): country rules, then continent rules, steer ECS
    clients, with the database record's prefix as the scope; after the file is replaced and
    SIGHUP sent, answers follow the new database."""
    eu = backends(HTTPBackend("127.0.44.71"))
    us = backends(HTTPBackend("127.0.44.72"))
    ap = backends(HTTPBackend("127.0.44.73"))
    database = tmp_path / "geo.mmdb"
    write_mmdb(database, [("81.0.0.0/8", country("DE", "EU")), ("82.0.0.0/8", country("ES", "EU")),
                          ("83.0.0.0/8", country("US", "NA"))])
    node = gslb_factory(config(
        region("eu", [eu]) + region("us", [us]) + region("ap", [ap]),
        "  - name: geoip.steer.test\n    routing_algorithm: geolocation\n    regions: [ap, us, eu]\n"
        "    topology:\n"
        "      - {countries: [DE], regions: [eu]}\n"
        "      - {continents: [EU], regions: [us]}\n",
        extra=f"geoip: {{database: {database}}}\n"))
    assert (answer(ask(node, "geoip.steer.test", ("81.1.2.0", 24))),
            scope(ask(node, "geoip.steer.test", ("81.1.2.0", 24)))) == (["127.0.44.71"], 8)  # DE: eu
    assert answer(ask(node, "geoip.steer.test", ("82.1.2.0", 24))) == ["127.0.44.72"]  # ES: EU continent
    assert answer(ask(node, "geoip.steer.test", ("83.1.2.0", 24))) == ["127.0.44.73"]  # US: no rule
    replacement = tmp_path / "geo.mmdb.new"
    write_mmdb(replacement, [("81.0.0.0/8", country("FR", "EU")), ("83.0.0.0/8", country("DE", "EU"))])
    os.replace(replacement, database)
    node.signal(signal.SIGHUP)
    wait_until(lambda: answer(ask(node, "geoip.steer.test", ("83.1.2.0", 24))) == ["127.0.44.71"], 10,
               message="after SIGHUP 83/8 is DE: eu")
    assert answer(ask(node, "geoip.steer.test", ("81.1.2.0", 24))) == ["127.0.44.72"]  # now FR: EU
