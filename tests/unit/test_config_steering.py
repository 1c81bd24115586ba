"""Configuration of client-aware steering (SPEC §4.1): geoip, slow_start, latency_hysteresis,
topology, answer_count, when_all_down and fallback_addresses."""

from __future__ import annotations

import ipaddress
import textwrap
from pathlib import Path

import pytest

from opengslb.config.load import load_config
from opengslb.config.model import TopologyRule
from tests.unit.mmdb import country, write_mmdb
from tests.unit.test_config import parse, problems

BASE = """\
regions:
  - name: eu
    servers: [{address: 192.0.2.1}]
  - name: us
    servers: [{address: 198.51.100.1}, {address: "2001:db8::1"}]
domains:
  - name: www.example.com
    regions: [eu, us]
"""


def with_domain(extra: str, head: str = "") -> str:
    """BASE with ``extra`` (indented YAML lines) added to the domain."""
    lines = textwrap.indent(textwrap.dedent(extra), "    ")
    return head + BASE + lines


def test_defaults():
    """Without the new keys: no GeoIP, no slow start, 20% hysteresis, one address, policy by dns."""
    config = parse(BASE)
    assert config.geoip.database == ""
    assert [(r.slow_start, r.latency_hysteresis) for r in config.regions] == [(0.0, 20.0), (0.0, 20.0)]
    domain = config.domains[0]
    assert (domain.topology, domain.answer_count, domain.when_all_down, domain.fallback_addresses) == \
        ((), 1, None, ())
    assert config.all_down_policy(domain) == "servfail"
    assert parse("dns: {return_last_healthy: true}\n" + BASE).all_down_policy(domain) == "last-healthy"


def test_region_slow_start_and_hysteresis():
    """slow_start is a duration (0s allowed), latency_hysteresis a percentage written 15% or 15."""
    text = BASE.replace("  - name: us\n", "  - name: us\n    slow_start: 1m30s\n    latency_hysteresis: 15%\n")
    text = text.replace("  - name: eu\n", "  - name: eu\n    slow_start: 0s\n    latency_hysteresis: 5\n")
    config = parse(text)
    assert [(r.slow_start, r.latency_hysteresis) for r in config.regions] == [(0.0, 5.0), (90.0, 15.0)]


@pytest.mark.parametrize("key, value, message", [
    ("slow_start", "soon", "slow_start: invalid duration"),
    ("slow_start", "2h", "slow_start: must be at most 1h"),
    ("latency_hysteresis", "120%", "latency_hysteresis: must be a percentage from 0%"),
    ("latency_hysteresis", "fast", "latency_hysteresis: must be a percentage such as '20%'"),
])
def test_bad_region_values(key, value, message):
    """Bad region values name the file, line and key."""
    text = BASE.replace("  - name: us\n", f"  - name: us\n    {key}: {value}\n")
    found = problems(text)
    assert len(found) == 1 and found[0].startswith("config.yaml:5: regions[1].") and message in found[0], found


def test_geolocation_topology_with_networks():
    """Topology rules hold networks and a region order among the domain's regions."""
    config = parse(with_domain("""\
        routing_algorithm: geolocation
        topology:
          - {networks: ["192.0.2.0/24", "2001:db8::/32"], regions: [us, eu]}
          - {networks: ["10.0.0.0/8"], regions: [eu]}
        answer_count: 2
        when_all_down: fallback
        fallback_addresses: ["203.0.113.7", "2001:db8::53"]
        """))
    domain = config.domains[0]
    assert domain.routing_algorithm == "geolocation"
    assert domain.topology == (
        TopologyRule(("us", "eu"), networks=(ipaddress.ip_network("192.0.2.0/24"),
                                             ipaddress.ip_network("2001:db8::/32"))),
        TopologyRule(("eu",), networks=(ipaddress.ip_network("10.0.0.0/8"),)),
    )
    assert (domain.answer_count, domain.when_all_down, domain.fallback_addresses) == \
        (2, "fallback", ("203.0.113.7", "2001:db8::53"))


@pytest.mark.parametrize("extra, expected", [
    ("routing_algorithm: geolocation\ntopology:\n  - {networks: [10.0.0.1/8], regions: [eu]}\n",
     "config.yaml:11: domains[0].topology[0].networks[0]: '10.0.0.1/8' has host bits set (did you mean '10.0.0.0/8'?)"),
    ("routing_algorithm: geolocation\ntopology:\n  - {networks: [10.0.0.0/8], regions: [asia]}\n",
     "config.yaml:11: domains[0].topology[0].regions[0]: region 'asia' is not one of this domain's regions (eu, us)"),
    ("routing_algorithm: geolocation\ntopology:\n  - {regions: [eu]}\n",
     "config.yaml:11: domains[0].topology[0]: needs exactly one of networks, countries or continents"),
    ("routing_algorithm: geolocation\ntopology:\n  - {countries: [DE], regions: [eu]}\n",
     "config.yaml:11: domains[0].topology[0].countries: needs geoip.database (a MaxMind-format file) to be set"),
    ("routing_algorithm: round-robin\ntopology:\n  - {networks: [10.0.0.0/8], regions: [eu]}\n",
     "config.yaml:10: domains[0].topology: only used by routing_algorithm: geolocation (this domain uses round-robin)"),
    ("routing_algorithm: geolocation\ntopology:\n  - {networks: [10.0.0.0/8], regions: [eu]}\n"
     "  - {networks: [10.0.0.0/8], regions: [us]}\n",
     "config.yaml:12: domains[0].topology[1].networks[0]: network 10.0.0.0/8 is listed twice (also domains[0].topology[0].networks[0])"),
    ("answer_count: 0\n", "config.yaml:9: domains[0].answer_count: must be between 1 and 32 (got 0)"),
    ("when_all_down: everything\n",
     "config.yaml:9: domains[0].when_all_down: unknown when_all_down policy 'everything' "
     "(expected one of: servfail, last-healthy, all, nodata, fallback)"),
    ("when_all_down: fallback\n",
     "config.yaml:7: domains[0].fallback_addresses: required (at least one address) with when_all_down: fallback"),
    ("when_all_down: fallback\nfallback_addresses: [not-an-ip]\n",
     "config.yaml:10: domains[0].fallback_addresses[0]: 'not-an-ip' is not an IP address"),
])
def test_bad_domain_values(extra, expected):
    """Each bad steering value is one problem naming the file, line and key."""
    assert problems(with_domain(extra)) == [expected]


def test_geoip_database_is_checked(tmp_path: Path):
    """geoip.database must be a readable MaxMind database; countries/continents rules then validate."""
    assert problems("geoip: {database: /nonexistent.mmdb}\n" + BASE) == [
        "config.yaml:1: geoip.database: '/nonexistent.mmdb' is not a file (a MaxMind-format .mmdb database)"]
    junk = tmp_path / "junk.mmdb"
    junk.write_bytes(b"not a database")
    found = problems(f"geoip: {{database: {junk}}}\n" + BASE)
    assert len(found) == 1 and "cannot read the GeoIP database" in found[0]
    database = write_mmdb(tmp_path / "geo.mmdb", [("192.0.2.0/24", country("DE", "EU"))])
    head = f"geoip: {{database: {database}}}\n"
    config = parse(with_domain("""\
        routing_algorithm: geolocation
        topology:
          - {countries: [de, FR], regions: [eu]}
          - {continents: [NA], regions: [us]}
        """, head))
    assert config.geoip.database == str(database)
    assert config.domains[0].topology == (TopologyRule(("eu",), countries=("DE", "FR")),
                                          TopologyRule(("us",), continents=("NA",)))
    assert problems(with_domain("routing_algorithm: geolocation\ntopology:\n"
                                "  - {continents: [XX], regions: [eu]}\n", head)) == [
        "config.yaml:12: domains[0].topology[0].continents[0]: unknown continent code 'XX' "
        "(expected one of: AF, AN, AS, EU, NA, OC, SA)"]
    assert problems(with_domain("routing_algorithm: geolocation\ntopology:\n"
                                "  - {countries: [Germany], regions: [eu]}\n", head)) == [
        "config.yaml:12: domains[0].topology[0].countries[0]: 'Germany' is not a two-letter ISO 3166 "
        "country code (e.g. 'DE')"]


def test_unknown_topology_key_is_an_error():
    """A typo inside a rule is reported with a suggestion."""
    found = problems(with_domain("routing_algorithm: geolocation\ntopology:\n"
                                 "  - {network: [10.0.0.0/8], regions: [eu]}\n"))
    assert any("domains[0].topology[0].network: unknown key 'network'" in p for p in found), found


def test_networks_longer_than_the_ecs_cap_are_warned_about(tmp_path: Path):
    """SPEC §4.1 caps ECS clients at /24 and /56: a longer topology network can match only a query
    sent from inside it without ECS, so loading says so (a warning; the configuration is kept)."""
    path = tmp_path / "config.yaml"
    path.write_text(with_domain("""\
        routing_algorithm: geolocation
        topology:
          - {networks: ["192.0.2.16/28", "2001:db8::/64"], regions: [us]}
          - {networks: ["10.0.0.0/24", "2001:db8:1::/56"], regions: [eu]}
        """))
    path.chmod(0o600)
    config, warnings = load_config(str(path))
    assert [rule.networks for rule in config.domains[0].topology][0][0] == ipaddress.ip_network("192.0.2.16/28")
    assert warnings == [
        f"{path}: domains[www.example.com].topology rule 1: network 192.0.2.16/28 is longer than /24; "
        "ECS client networks are capped at /24, so it matches only queries sent from inside it without ECS",
        f"{path}: domains[www.example.com].topology rule 1: network 2001:db8::/64 is longer than /56; "
        "ECS client networks are capped at /56, so it matches only queries sent from inside it without ECS"]
