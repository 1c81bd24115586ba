"""The DNS listener settings added by issues 11 and 12: dns.nsid and the TCP connection caps."""

import textwrap

import pytest

from opengslb.config import ConfigError, parse_config
from opengslb.config.model import DNSConfig

BASE = """\
regions:
  - name: r1
    servers:
      - {address: 192.0.2.1}
domains:
  - {name: app.example.test, regions: [r1]}
"""


def parse(dns_section: str):
    return parse_config(textwrap.dedent(dns_section) + BASE, "config.yaml")


def test_defaults():
    """NSID is off, TCP allows 256 connections per listener and 32 per source."""
    dns = parse("dns: {listen_address: '127.0.0.1:53'}\n").dns
    assert (dns.nsid, dns.tcp_max_connections, dns.tcp_max_connections_per_source) == ("", 256, 32)
    assert DNSConfig().tcp_max_connections == 256


def test_values_are_read():
    """The three keys are read as given."""
    dns = parse("dns: {nsid: node-a, tcp_max_connections: 10, tcp_max_connections_per_source: 2}\n").dns
    assert (dns.nsid, dns.tcp_max_connections, dns.tcp_max_connections_per_source) == ("node-a", 10, 2)


@pytest.mark.parametrize("section,fragment", [
    ("dns: {nsid: 12}\n", "dns.nsid"),
    ("dns: {nsid: '" + "x" * 129 + "'}\n", "128"),
    ("dns: {nsid: \"a\\tb\"}\n", "printable"),
    ("dns: {tcp_max_connections: 0}\n", "dns.tcp_max_connections"),
    ("dns: {tcp_max_connections_per_source: 70000}\n", "dns.tcp_max_connections_per_source"),
])
def test_bad_values_are_reported(section, fragment):
    """Wrong types, an over-long or unprintable NSID and caps outside 1-65535 are errors."""
    with pytest.raises(ConfigError) as info:
        parse(section)
    assert any(fragment in str(problem) for problem in info.value.problems), info.value.problems
