"""Loading and validating the configuration file (opengslb.config.load, SPEC §2)."""

from __future__ import annotations

import dataclasses
import io
import ipaddress
import os
import textwrap
from pathlib import Path
from typing import List

import pytest
from ruamel.yaml import YAML

from opengslb.config import Config, ConfigError, Problem, load_config, parse_config
from opengslb.config.load import (
    _Checker,
    _load_plain,
    parse_host_port,
    parse_listen_address,
    validate_cluster_requirements,
)
from opengslb.config.model import (
    HealthCheckConfig,
    ListenAddress,
    NameserverConfig,
    RegionConfig,
    ServerConfig,
    SOAConfig,
)

KEY = "RVhBTVBMRS1PTkxZLWdlbmVyYXRlLXlvdXItb3duISE="  # base64 of 32 bytes


def parse(text: str) -> Config:
    return parse_config(textwrap.dedent(text), "config.yaml")


def problems(text: str) -> List[str]:
    """Every problem parse_config reports for ``text``, as the operator reads them."""
    with pytest.raises(ConfigError) as info:
        parse(text)
    return [str(p) for p in info.value.problems]


def only_problem(text: str) -> str:
    found = problems(text)
    assert len(found) == 1, found
    return found[0]


REGION = """\
regions:
  - name: r1
    servers:
      - {address: 192.0.2.1}
"""


# --- the result -------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n", "---\n", "dns:\nregions:\n"])
def test_empty_file_gives_defaults(text: str) -> None:
    """An empty file, or one with only comments or empty sections, yields the defaults."""
    assert parse_config(text) == Config(source="<string>")


def test_full_file_builds_the_model() -> None:
    """Values are converted and normalised; absent keys take the model's defaults."""
    config = parse(
        f"""\
        dns:
          listen_address: "0.0.0.0:5353"
          default_ttl: 0
          zones:
            - name: GSLB.Example.COM.
              nameservers:
                - {{name: ns1.gslb.example.com, address: 192.0.2.53}}
                - {{name: ns.other.example.net}}
        logging: {{level: warning, format: text}}
        metrics: {{enabled: true, address: "[::1]:9100"}}
        api:
          enabled: true
          allowed_networks: [10.0.0.0/8, "2001:db8::/32"]
          tokens: [secret-token]
        regions:
          - name: r1
            servers:
              - {{address: 192.0.2.1}}
              - {{address: "2001:0DB8:0000::0010", port: 8080, weight: 0, host: a.example}}
            health_check: {{type: tcp, interval: 1m30s, timeout: 1500ms}}
        domains:
          - {{name: App.GSLB.example.com., regions: [r1]}}
          - {{name: b.gslb.example.com, routing_algorithm: failover, regions: [r1], ttl: 5}}
        cluster:
          mode: cluster
          advertise_address: "192.0.2.11:7946"
          join: ["192.0.2.12:7946", "Node3.Example.com:7946", "[2001:db8::13]:7946"]
          gossip: {{encryption_key: "{KEY}"}}
          predictive_health: {{cpu: {{threshold: 75.5, bleed_duration: 1m}}}}
          anycast_vip: 203.0.113.1
        """
    )
    assert config.source == "config.yaml"
    assert config.dns.listen_address == ListenAddress("0.0.0.0", 5353)
    assert config.dns.default_ttl == 0
    zone = config.dns.zones[0]
    assert zone.name == "gslb.example.com"
    assert zone.nameservers == (
        NameserverConfig("ns1.gslb.example.com", "192.0.2.53"),
        NameserverConfig("ns.other.example.net", None),
    )
    assert zone.soa == SOAConfig(mname="ns1.gslb.example.com", rname="hostmaster.gslb.example.com")
    assert (config.logging.level, config.logging.format) == ("warn", "text")
    assert config.metrics.address == ListenAddress("::1", 9100)
    assert config.api.allowed_networks == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("2001:db8::/32"),
    )
    assert config.api.address == ListenAddress("127.0.0.1", 8080)
    assert config.api.tokens == ("secret-token",)
    assert config.regions == (
        RegionConfig(
            name="r1",
            servers=(
                ServerConfig("192.0.2.1", 80, 100, ""),
                ServerConfig("2001:db8::10", 8080, 0, "a.example"),
            ),
            health_check=HealthCheckConfig(type="tcp", interval=90.0, timeout=1.5),
        ),
    )
    assert [(d.name, d.routing_algorithm, d.ttl) for d in config.domains] == [
        ("app.gslb.example.com", "round-robin", None),
        ("b.gslb.example.com", "failover", 5),
    ]
    cluster = config.cluster
    assert cluster.join == ("192.0.2.12:7946", "node3.example.com:7946", "[2001:db8::13]:7946")
    assert cluster.predictive_health.cpu.threshold == 75.5
    assert cluster.predictive_health.cpu.bleed_duration == 60.0
    assert cluster.predictive_health.memory.threshold == 85
    assert cluster.anycast_vip == "203.0.113.1"
    assert cluster.raft.election_timeout == 1.0


def test_soa_defaults_without_nameservers_and_explicit_values() -> None:
    """mname defaults to ns1.<zone> without nameservers; given SOA fields are kept."""
    config = parse(
        """\
        dns:
          zones:
            - name: a.example
            - name: b.example
              soa: {mname: ns.b.example, rname: dns.example.org, refresh: 1, retry: 2, expire: 3, minimum: 4}
        """
    )
    a, b = config.dns.zones
    assert a.soa == SOAConfig("ns1.a.example", "hostmaster.a.example", 14400, 3600, 1209600, 60)
    assert b.soa == SOAConfig("ns.b.example", "dns.example.org", 1, 2, 3, 4)


def test_integer_durations_are_seconds() -> None:
    """A plain integer duration counts seconds."""
    config = parse(REGION + "    health_check: {interval: 20, timeout: 2}\n")
    assert (config.regions[0].health_check.interval, config.regions[0].health_check.timeout) == (20.0, 2.0)


# --- problems: format -------------------------------------------------------


def test_problem_format() -> None:
    """A problem reads file:line: path: message, dropping what is unknown."""
    assert str(Problem("c.yaml", 14, "a.b", "bad")) == "c.yaml:14: a.b: bad"
    assert str(Problem("c.yaml", None, "a.b", "bad")) == "c.yaml: a.b: bad"
    assert str(Problem("c.yaml", 3, "", "bad")) == "c.yaml:3: bad"
    error = ConfigError([Problem("c", 1, "x", "one"), Problem("c", 2, "y", "two")])
    assert str(error) == "c:1: x: one\nc:2: y: two"


def test_spec_example_timeout_not_below_interval() -> None:
    """The SPEC's own example, to the letter."""
    text = "\n" * 7 + textwrap.dedent(
        """\
        regions:
          - name: us-east-1
            servers:
              - address: 10.0.1.10
            health_check:
              interval: 5s
              timeout: 5s
        """
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text, "config.yaml")
    assert [str(p) for p in info.value.problems] == [
        "config.yaml:14: regions[0].health_check.timeout: must be less than interval (5s >= 5s)"
    ]


def test_every_problem_is_reported_in_file_order() -> None:
    """Validation does not stop at the first problem; problems come in line order."""
    found = problems(
        """\
        cluster:
          mode: clustr
        dns:
          default_ttl: -5
        regions:
          - name: r1
            servers:
              - {address: 192.0.2.1, port: 0}
        """
    )
    assert found == [
        "config.yaml:2: cluster.mode: unknown mode 'clustr' (did you mean 'cluster'?)"
        " (expected one of: standalone, cluster)",
        "config.yaml:4: dns.default_ttl: must be between 0 and 2147483647 (got -5)",
        "config.yaml:8: regions[0].servers[0].port: must be between 1 and 65535 (got 0)",
    ]


# --- YAML syntax ------------------------------------------------------------


def test_yaml_syntax_error_names_the_line() -> None:
    """A syntax error is one problem with the 1-based line libyaml points at."""
    found = only_problem("dns:\n  default_ttl: 60\n  zones: [a\nlogging: {}\n")
    assert found.startswith("config.yaml:4: invalid YAML:")


def test_bad_indentation() -> None:
    """Broken indentation is a syntax error, not a crash."""
    assert only_problem("dns:\n  a: 1\n b: 2\n").startswith("config.yaml:3: invalid YAML:")


def test_duplicate_yaml_key() -> None:
    """A key given twice in one mapping is an error at the second one."""
    assert only_problem("dns:\n  default_ttl: 1\n  default_ttl: 2\n") == (
        "config.yaml:3: duplicate key 'default_ttl' in this mapping"
    )


def test_second_document_refused() -> None:
    """The file holds exactly one YAML document."""
    assert only_problem("dns: {}\n---\ndns: {}\n").startswith(
        "config.yaml:2: invalid YAML: a second document"
    )


def test_undefined_alias() -> None:
    """An alias to an anchor that does not exist is reported with its line."""
    assert only_problem("dns: {}\nlogging: *nope\n") == "config.yaml:2: invalid YAML: undefined alias 'nope'"


def test_python_tags_are_refused() -> None:
    """The safe loader never builds arbitrary objects."""
    assert "invalid YAML" in only_problem("dns: !!python/object/apply:os.system [true]\n")


def test_top_level_must_be_a_mapping() -> None:
    """A list or scalar document is refused as a whole."""
    assert only_problem("- a\n- b\n").startswith(
        "config.yaml:1: the file must be a mapping with the sections"
    )


# --- keys and types ---------------------------------------------------------


def test_unknown_section() -> None:
    """Top-level sections are only the seven the SPEC names."""
    assert only_problem("dns: {}\nregion: []\n") == (
        "config.yaml:2: region: unknown key 'region' (did you mean 'regions'?)"
    )


def test_unknown_nested_key_suggests_the_closest() -> None:
    """An unknown key anywhere is an error naming its path and line, with a suggestion."""
    found = only_problem(REGION + "    health_check:\n      intervall: 30s\n")
    assert found == (
        "config.yaml:6: regions[0].health_check.intervall: unknown key 'intervall' (did you mean 'interval'?)"
    )


def test_unknown_key_without_close_match_lists_the_keys() -> None:
    """With nothing close, the message lists the keys that are allowed."""
    assert only_problem("logging: {colour: red}\n") == (
        "config.yaml:1: logging.colour: unknown key 'colour' (expected one of: level, format)"
    )


def test_non_string_key() -> None:
    """A non-string key is an unknown key too."""
    assert only_problem("dns:\n  1: x\n").startswith("config.yaml:2: dns.1: unknown key '1'")


@pytest.mark.parametrize(
    "snippet, expected",
    [
        ("dns: {default_ttl: '60'}", "dns.default_ttl: must be an integer, not a string ('60')"),
        ("dns: {default_ttl: 1.5}", "dns.default_ttl: must be an integer, not a number (1.5)"),
        ("dns: {default_ttl: true}", "dns.default_ttl: must be an integer, not a boolean (true)"),
        (
            "dns: {return_last_healthy: yes}",
            "dns.return_last_healthy: must be true or false, not a string ('yes')"
            " (YAML 1.2 reads yes/no/on/off as strings: write true or false)",
        ),
        (
            "dns: {return_last_healthy: 1}",
            "dns.return_last_healthy: must be true or false, not an integer (1)",
        ),
        (
            "metrics: {enabled: 'true'}",
            "metrics.enabled: must be true or false, not a string ('true') (write true or false, unquoted)",
        ),
        ("dns: []", "dns: must be a mapping, not a list"),
        ("regions: {name: a}", "regions: must be a list, not a mapping"),
        (
            "dns: {listen_address: 53}",
            "dns.listen_address: must be a string 'ip:port' or ':port' (e.g. ':53'), not an integer (53)",
        ),
        ("cluster: {node_name: 7}", "cluster.node_name: must be a string, not an integer (7)"),
    ],
)
def test_wrong_types(snippet: str, expected: str) -> None:
    """A value of the wrong YAML type is an error saying what was expected and found."""
    assert only_problem(snippet + "\n") == f"config.yaml:1: {expected}"


# --- required fields ---------------------------------------------------------


def test_missing_required_fields() -> None:
    """Region name and servers, server address, domain name and regions are required."""
    found = problems(
        """\
        regions:
          - servers:
              - {port: 80}
          - name: r2
        domains:
          - routing_algorithm: weighted
        """
    )
    assert found == [
        "config.yaml:2: regions[0].name: missing (required)",
        "config.yaml:3: regions[0].servers[0].address: missing (required)",
        "config.yaml:4: regions[1].servers: missing (required); write 'servers: []' for a region filled only by agents",
        "config.yaml:6: domains[0].name: missing (required)",
        "config.yaml:6: domains[0].regions: missing (required)",
    ]


def test_region_without_servers_is_fine_when_said() -> None:
    """servers: [] is a region filled only by agents."""
    assert parse("regions:\n  - {name: agents, servers: []}\n").regions[0].servers == ()


def test_domain_needs_at_least_one_region() -> None:
    """An empty region list is refused."""
    assert only_problem(REGION + "domains:\n  - {name: a.example, regions: []}\n") == (
        "config.yaml:6: domains[0].regions: must name at least one region"
    )


# --- values -------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, fragment",
    [
        ("30", "missing unit in duration '30'"),
        ("30sec", "invalid duration '30sec'"),
        ("-5s", "must not be negative"),
        ("0s", "must be longer than 0s"),
        ("[]", "must be a duration such as '30s', not a list"),
    ],
)
def test_bad_durations(value: str, fragment: str) -> None:
    """Durations are Go-style; zero, negative and unit-less strings are refused."""
    found = only_problem(
        REGION
        + f"    health_check: {{interval: {value!s} }}\n".replace("{interval: 30 }", "{interval: '30'}")
    )
    assert found.startswith("config.yaml:5: regions[0].health_check.interval: ")
    assert fragment in found


@pytest.mark.parametrize(
    "text, expected",
    [
        (":53", ListenAddress("", 53)),
        ("0.0.0.0:53", ListenAddress("0.0.0.0", 53)),
        ("127.0.0.1:1053", ListenAddress("127.0.0.1", 1053)),
        ("[::]:53", ListenAddress("::", 53)),
        ("[2001:DB8::1]:53", ListenAddress("2001:db8::1", 53)),
        ("[::1]:65535", ListenAddress("::1", 65535)),
    ],
)
def test_listen_addresses(text: str, expected: ListenAddress) -> None:
    """ip:port, :port and [v6]:port are listen addresses, hosts in canonical form."""
    assert parse_listen_address(text) == expected
    assert parse(f'dns: {{listen_address: "{text}"}}\n').dns.listen_address == expected


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("53", "has no port"),
        (":0", "port 0 is outside 1-65535"),
        (":65536", "port 65536 is outside 1-65535"),
        (":http", "port 'http' is not a number"),
        ("::1:53", "put an IPv6 address in brackets"),
        ("localhost:53", "'localhost' is not an IP address"),
        ("[127.0.0.1]:53", "brackets are for IPv6"),
        ("[::1]53", "is not [IPv6]:port"),
        ("300.1.1.1:53", "is not an IP address"),
    ],
)
def test_bad_listen_addresses(text: str, fragment: str) -> None:
    """Malformed listen addresses are refused with the reason."""
    found = only_problem(f'metrics: {{address: "{text}"}}\n')
    assert found.startswith("config.yaml:1: metrics.address: ")
    assert fragment in found


def test_host_port_for_join() -> None:
    """Join entries take an IP or a host name, in canonical form."""
    assert parse_host_port("Node1.Example.com:7946") == ("node1.example.com", 7946)
    assert parse_host_port("[2001:db8::0001]:7946") == ("2001:db8::1", 7946)
    with pytest.raises(ValueError, match="has no host"):
        parse_host_port(":7946")
    with pytest.raises(ValueError, match="neither an IP address nor a host name"):
        parse_host_port("bad host:7946")


@pytest.mark.parametrize(
    "server, fragment",
    [
        ("{address: 192.0.2.300}", "address: '192.0.2.300' is not an IP address"),
        ("{address: server1.example.com}", "is not an IP address"),
        ("{address: 0.0.0.0}", "address: 0.0.0.0 is not a usable server address"),
        ("{address: 192.0.2.1, port: 65536}", "port: must be between 1 and 65535 (got 65536)"),
        ("{address: 192.0.2.1, port: '80'}", "port: must be an integer, not a string ('80')"),
        ("{address: 192.0.2.1, weight: -1}", "weight: must be between 0 and 1000 (got -1)"),
        ("{address: 192.0.2.1, weight: 1001}", "weight: must be between 0 and 1000 (got 1001)"),
        ("192.0.2.1", "regions[0].servers[0]: must be a mapping, not a string"),
    ],
)
def test_bad_servers(server: str, fragment: str) -> None:
    """Server addresses, ports and weights are checked."""
    found = only_problem(f"regions:\n  - name: r\n    servers:\n      - {server}\n")
    assert found.startswith("config.yaml:4: regions[0].servers[0]")
    assert fragment in found


def test_weight_bounds_are_inclusive() -> None:
    """Weights 0 and 1000 are allowed."""
    config = parse(
        "regions:\n  - name: r\n    servers: [{address: 192.0.2.1, weight: 0}, {address: 192.0.2.2, weight: 1000}]\n"
    )
    assert [s.weight for s in config.regions[0].servers] == [0, 1000]


@pytest.mark.parametrize("value", [0, 11])
def test_thresholds_outside_1_to_10(value: int) -> None:
    """failure/success thresholds must be 1..10."""
    found = problems(
        REGION + f"    health_check: {{failure_threshold: {value}, success_threshold: {value}}}\n"
    )
    assert found == [
        f"config.yaml:5: regions[0].health_check.failure_threshold: must be between 1 and 10 (got {value})",
        f"config.yaml:5: regions[0].health_check.success_threshold: must be between 1 and 10 (got {value})",
    ]


def test_timeout_longer_than_interval() -> None:
    """timeout > interval is refused too, with both durations spelled out."""
    assert only_problem(REGION + "    health_check: {interval: 1s, timeout: 1500ms}\n") == (
        "config.yaml:5: regions[0].health_check.timeout: must be less than interval (1.5s >= 1s)"
    )


def test_timeout_against_default_interval() -> None:
    """A timeout alone is compared with the default interval (30s)."""
    assert only_problem(REGION + "    health_check: {timeout: 1m}\n") == (
        "config.yaml:5: regions[0].health_check.timeout: must be less than interval (1m >= 30s)"
    )


def test_health_check_path_must_be_absolute() -> None:
    """The check path starts with '/'."""
    assert only_problem(REGION + "    health_check: {path: health}\n") == (
        "config.yaml:5: regions[0].health_check.path: must start with '/' (got 'health')"
    )


@pytest.mark.parametrize(
    "snippet, expected",
    [
        (
            REGION + "domains: [{name: a.example, regions: [r1], routing_algorithm: random}]",
            "config.yaml:5: domains[0].routing_algorithm: unknown routing algorithm 'random'"
            " (expected one of: round-robin, weighted, failover, geolocation, latency, consistent-hash)",
        ),
        (
            REGION + "    health_check: {type: icmp}",
            "config.yaml:5: regions[0].health_check.type: unknown check type 'icmp'"
            " (expected one of: http, https, tcp)",
        ),
        (
            "logging: {level: verbose}",
            "config.yaml:1: logging.level: unknown log level 'verbose'"
            " (expected one of: debug, info, warn, error)",
        ),
        (
            "logging: {format: xml}",
            "config.yaml:1: logging.format: unknown log format 'xml' (expected one of: json, text)",
        ),
        (
            "cluster: {follower_queries: forwrd}",
            "config.yaml:1: cluster.follower_queries: unknown follower_queries value 'forwrd'"
            " (did you mean 'forward'?) (expected one of: refuse, drop, forward)",
        ),
        (
            "cluster: {health_consensus: quorum}",
            "config.yaml:1: cluster.health_consensus: unknown health_consensus value 'quorum'"
            " (expected one of: majority, any, all, leader)",
        ),
        (
            "cluster: {overwatch: {veto_mode: lenient}}",
            "config.yaml:1: cluster.overwatch.veto_mode: unknown veto mode 'lenient'"
            " (expected one of: strict, balanced, permissive)",
        ),
    ],
)
def test_unknown_choices(snippet: str, expected: str) -> None:
    """Enumerated values only take their documented words."""
    assert only_problem(snippet + "\n") == expected


@pytest.mark.parametrize("level, stored", [("warning", "warn"), ("WARN", "warn"), ("Debug", "debug")])
def test_log_level_aliases(level: str, stored: str) -> None:
    """'warning' is an alias of 'warn'; case does not matter."""
    assert parse(f"logging: {{level: {level}}}\n").logging.level == stored


def test_networks() -> None:
    """Networks with host bits set are refused with the network that was probably meant."""
    found = problems(
        'api:\n  allowed_networks: ["10.0.0.1/8", nonsense, 7]\n  trusted_proxies: ["::1/129"]\n'
    )
    assert found == [
        "config.yaml:2: api.allowed_networks[0]: '10.0.0.1/8' has host bits set (did you mean '10.0.0.0/8'?)",
        "config.yaml:2: api.allowed_networks[1]: 'nonsense' is not a network (e.g. '10.0.0.0/8' or '2001:db8::/32')",
        "config.yaml:2: api.allowed_networks[2]: must be a network such as '10.0.0.0/8', not an integer (7)",
        "config.yaml:3: api.trusted_proxies[0]: '::1/129' is not a network (e.g. '10.0.0.0/8' or '2001:db8::/32')",
    ]


def test_bad_tokens_are_not_echoed() -> None:
    """Token problems never print the token."""
    found = problems("api:\n  tokens:\n    - 123456\n    - 'has space'\n    - ''\n")
    assert found == [
        "config.yaml:3: api.tokens[0]: a token must be a string, not an integer",
        "config.yaml:4: api.tokens[1]: a token must not contain spaces",
        "config.yaml:5: api.tokens[2]: a token must not be empty",
    ]
    assert not any("123456" in p or "has space" in p for p in found)


def test_ttls() -> None:
    """ttl and default_ttl are integers 0..2147483647; a domain without ttl has None."""
    found = problems(
        REGION
        + "domains:\n"
        + "  - {name: a.example, regions: [r1], ttl: '30'}\n"
        + "  - {name: b.example, regions: [r1], ttl: 2147483648}\n"
        + "dns: {default_ttl: 2147483647}\n"
    )
    assert found == [
        "config.yaml:6: domains[0].ttl: must be an integer, not a string ('30')",
        "config.yaml:7: domains[1].ttl: must be between 0 and 2147483647 (got 2147483648)",
    ]
    config = parse(
        REGION
        + "domains:\n  - {name: a.example, regions: [r1], ttl: 0}\n  - {name: b.example, regions: [r1]}\n"
    )
    assert [d.ttl for d in config.domains] == [0, None]
    assert config.domain_ttl(config.domains[1]) == 60


# --- names and duplicates -----------------------------------------------------


@pytest.mark.parametrize(
    "name, fragment",
    [
        ("''", "a name is required"),
        ("'.'", "a name is required"),
        ("a..example", "has an empty label"),
        ("a b.example", "label 'a b' may hold only letters, digits, hyphens and underscores"),
        ("'*.example.com'", "label '*' may hold only"),
        ("x" * 64 + ".example", "is longer than 63 characters"),
        (".".join(["a" * 60] * 5), "is longer than 253 characters"),
        ("bücher.example", "write it in its xn-- (punycode) form"),
        ("42", "must be a DNS name, not an integer (42)"),
    ],
)
def test_bad_domain_names(name: str, fragment: str) -> None:
    """Domain names must be valid DNS names."""
    found = only_problem(REGION + f"domains:\n  - name: {name}\n    regions: [r1]\n")
    assert found.startswith("config.yaml:6: domains[0].name: ")
    assert fragment in found


def test_underscore_and_digit_labels_are_names() -> None:
    """Underscores (service labels) and all-digit labels are allowed."""
    assert (
        parse(REGION + "domains: [{name: _svc.1.example, regions: [r1]}]\n").domains[0].name
        == "_svc.1.example"
    )


def test_duplicate_regions_domains_and_servers() -> None:
    """Regions, domains (case and trailing dot ignored) and server addresses (ports ignored) are unique."""
    found = problems(
        """\
        regions:
          - name: r1
            servers:
              - {address: 192.0.2.1, port: 80}
              - {address: 192.0.2.1, port: 81}
              - {address: "2001:db8::1"}
              - {address: "2001:DB8:0::1"}
          - name: r1
            servers: [{address: 192.0.2.1}]
        domains:
          - {name: app.example.com, regions: [r1]}
          - {name: App.Example.COM., regions: [r1, r1]}
        """
    )
    assert found == [
        "config.yaml:5: regions[0].servers[1].address: duplicate server address 192.0.2.1 in this region"
        " (also regions[0].servers[0])",
        "config.yaml:7: regions[0].servers[3].address: duplicate server address 2001:db8::1 in this region"
        " (also regions[0].servers[2])",
        "config.yaml:8: regions[1].name: duplicate region 'r1' (also regions[0])",
        "config.yaml:12: domains[1].name: duplicate domain 'app.example.com' (also domains[0])",
        "config.yaml:12: domains[1].regions[1]: region 'r1' is listed twice",
    ]


def test_same_server_in_two_regions_is_fine() -> None:
    """Uniqueness of a server address is per region."""
    config = parse(
        "regions:\n  - {name: a, servers: [{address: 192.0.2.1}]}\n  - {name: b, servers: [{address: 192.0.2.1}]}\n"
    )
    assert len(config.regions) == 2


def test_domain_naming_unknown_region() -> None:
    """A domain may only name configured regions; a close name is suggested."""
    text = "regions: [{name: us-east-1, servers: []}]\ndomains:\n  - name: a.example\n    regions:\n      - us-east-2\n"
    assert only_problem(text) == (
        "config.yaml:5: domains[0].regions[0]: unknown region 'us-east-2' (did you mean 'us-east-1'?)"
    )


def test_region_name_with_slash() -> None:
    """Region names appear in API paths, so '/' is refused."""
    assert "must not contain '/'" in only_problem("regions:\n  - {name: a/b, servers: []}\n")


# --- zones -------------------------------------------------------------------


def test_zone_nameserver_glue() -> None:
    """An in-zone nameserver needs an address (glue); an out-of-zone one does not."""
    found = problems(
        """\
        dns:
          zones:
            - name: gslb.example.com
              nameservers:
                - name: ns1.gslb.example.com
                - name: ns.other.example.net
                - {name: gslb.example.com}
                - {name: ns2.gslb.example.com, address: 192.0.2.400}
            - name: GSLB.example.com.
        """
    )
    assert found == [
        "config.yaml:5: dns.zones[0].nameservers[0].address: missing: ns1.gslb.example.com is inside zone"
        " gslb.example.com, so it needs an address (glue)",
        "config.yaml:7: dns.zones[0].nameservers[2].address: missing: gslb.example.com is inside zone"
        " gslb.example.com, so it needs an address (glue)",
        "config.yaml:8: dns.zones[0].nameservers[3].address: '192.0.2.400' is not an IP address",
        "config.yaml:9: dns.zones[1].name: duplicate zone 'gslb.example.com' (also dns.zones[0])",
    ]


def test_soa_rname_as_email_is_refused_with_the_fix() -> None:
    """The SOA mailbox is a DNS name; an e-mail spelling gets the name to write."""
    assert only_problem(
        "dns:\n  zones:\n    - name: z.example\n      soa: {rname: hostmaster@z.example}\n"
    ) == (
        "config.yaml:4: dns.zones[0].soa.rname: write the mailbox as a DNS name: 'hostmaster.z.example',"
        " not 'hostmaster@z.example'"
    )


# --- cluster -----------------------------------------------------------------


def test_standalone_needs_no_key() -> None:
    """Standalone mode (the default) runs without an encryption key."""
    assert parse("cluster: {mode: standalone}\n").cluster.gossip.encryption_key == ""


def test_cluster_mode_requires_key_and_advertise_address() -> None:
    """mode: cluster in the file needs the key (with how to make one) and, on a wildcard bind, an advertise address."""
    found = problems("cluster:\n  mode: cluster\n")
    assert found == [
        "config.yaml:1: cluster.gossip.encryption_key: required in cluster mode (it authenticates and"
        " encrypts Raft and gossip traffic); make one with: head -c 32 /dev/urandom | base64",
        "config.yaml:1: cluster.advertise_address: required in cluster mode when bind_address is a wildcard"
        " (0.0.0.0:7946): set this node's own IP:port, e.g. 192.0.2.11:7946; it is the node's identity in"
        " the cluster",
    ]


def test_cluster_with_explicit_bind_needs_no_advertise() -> None:
    """A specific bind address is the node's identity."""
    config = parse(
        f'cluster:\n  mode: cluster\n  bind_address: "192.0.2.11:7946"\n  gossip: {{encryption_key: "{KEY}"}}\n'
    )
    assert config.cluster.advertise_address == ""


@pytest.mark.parametrize(
    "key, fragment",
    [
        ("not base64!!", "is not valid base64"),
        ("c2hvcnQ=", "decodes to 5 bytes"),
        ("QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE", "is not valid base64"),  # padding cut
        ("QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB", "decodes to 33 bytes"),
    ],
)
def test_bad_encryption_key(key: str, fragment: str) -> None:
    """The key must be base64 of exactly 32 bytes, in any mode; it is never echoed."""
    found = only_problem(f"cluster:\n  gossip:\n    encryption_key: '{key}'\n")
    assert found.startswith("config.yaml:3: cluster.gossip.encryption_key: ")
    assert fragment in found
    assert "head -c 32 /dev/urandom | base64" in found
    assert key not in found


def test_bad_key_in_cluster_mode_is_reported_once() -> None:
    """An invalid key is not also reported as missing."""
    found = problems(
        'cluster:\n  mode: cluster\n  advertise_address: "192.0.2.1:7946"\n  gossip: {encryption_key: "c2hvcnQ="}\n'
    )
    assert len(found) == 1 and "decodes to 5 bytes" in found[0]


def test_flags_can_turn_on_cluster_mode() -> None:
    """validate_cluster_requirements checks the config as the flags left it, without lines."""
    config = parse("cluster: {mode: standalone}\n")
    assert validate_cluster_requirements(config) == []
    clustered = dataclasses.replace(config, cluster=dataclasses.replace(config.cluster, mode="cluster"))
    found = validate_cluster_requirements(clustered)
    assert [(p.file, p.line, p.path) for p in found] == [
        ("config.yaml", None, "cluster.gossip.encryption_key"),
        ("config.yaml", None, "cluster.advertise_address"),
    ]
    assert "head -c 32 /dev/urandom | base64" in str(found[0])


def test_flags_join_is_checked() -> None:
    """A --join entry that is not host:port, or too many members, is reported."""
    config = parse(
        f'cluster:\n  advertise_address: "192.0.2.1:7946"\n  gossip: {{encryption_key: "{KEY}"}}\n'
    )
    bad = dataclasses.replace(
        config.cluster, mode="cluster", join=("192.0.2.2",) + tuple(f"192.0.2.{i}:7946" for i in range(3, 10))
    )
    found = [str(p) for p in validate_cluster_requirements(dataclasses.replace(config, cluster=bad))]
    assert found == [
        "config.yaml: cluster.join[0]: '192.0.2.2' has no port (expected host:port, e.g. '192.0.2.12:7946')",
        "config.yaml: cluster.join: names 8 cluster members (counting this node); a cluster has at most 7 members",
    ]


def test_advertise_address() -> None:
    """advertise_address is a literal, specific IP:port."""
    assert (
        parse('cluster: {advertise_address: "[2001:DB8::1]:7946"}\n').cluster.advertise_address
        == "[2001:db8::1]:7946"
    )
    assert "is not an IP address" in only_problem('cluster: {advertise_address: "node1:7946"}\n')
    assert "not a wildcard" in only_problem('cluster: {advertise_address: "0.0.0.0:7946"}\n')


def test_member_count() -> None:
    """More than 7 known members is an error; 7 including this node, or an even seed count, is not."""
    seven = ", ".join(f'"192.0.2.{i}:7946"' for i in range(1, 8))
    base = f'cluster:\n  mode: cluster\n  advertise_address: "192.0.2.1:7946"\n  gossip: {{encryption_key: "{KEY}"}}\n'
    assert len(parse(base + f"  join: [{seven}]\n").cluster.join) == 7
    assert len(parse(base + '  join: ["192.0.2.2:7946", "192.0.2.3:7946"]\n').cluster.join) == 2
    others = ", ".join(f'"192.0.2.{i}:7946"' for i in range(2, 9))
    assert only_problem(base + f"  join: [{others}]\n") == (
        "config.yaml:5: cluster.join: names 8 cluster members (counting this node); a cluster has at most 7 members"
    )


def test_member_count_in_standalone_file_is_not_checked() -> None:
    """join is ignored in standalone mode, so its length is not held against the file."""
    many = ", ".join(f'"192.0.2.{i}:7946"' for i in range(2, 12))
    assert len(parse(f"cluster:\n  join: [{many}]\n").cluster.join) == 10


def test_join_entries() -> None:
    """Join entries are host:port, unique."""
    assert problems('cluster:\n  join: ["192.0.2.2:7946", "192.0.2.2:7946", "nohost", 7946]\n') == [
        "config.yaml:2: cluster.join[1]: 192.0.2.2:7946 is listed twice (also cluster.join[0])",
        "config.yaml:2: cluster.join[2]: 'nohost' has no port (expected host:port, e.g. '192.0.2.12:7946')",
        "config.yaml:2: cluster.join[3]: must be a string 'host:port', not an integer (7946)",
    ]


def test_raft_and_overwatch_values() -> None:
    """Raft timings, snapshot threshold, anycast VIP and veto threshold are checked."""
    found = problems(
        """\
        cluster:
          raft:
            data_dir: ""
            heartbeat_timeout: 2s
            election_timeout: 1s
            snapshot_threshold: 0
          overwatch: {veto_threshold: 0, external_check_interval: 0s}
          anycast_vip: 203.0.113.0/24
          predictive_health:
            cpu: {threshold: 0, window: 10s}
            error_rate: {threshold: 101, window: soon}
        """
    )
    assert found == [
        "config.yaml:3: cluster.raft.data_dir: must not be empty",
        "config.yaml:5: cluster.raft.election_timeout: must be at least heartbeat_timeout (1s < 2s)",
        "config.yaml:6: cluster.raft.snapshot_threshold: must be between 1 and 2147483647 (got 0)",
        "config.yaml:7: cluster.overwatch.external_check_interval: must be longer than 0s (got '0s')",
        "config.yaml:7: cluster.overwatch.veto_threshold: must be between 1 and 1000 (got 0)",
        "config.yaml:8: cluster.anycast_vip: '203.0.113.0/24' is not an IP address",
        "config.yaml:10: cluster.predictive_health.cpu.window: unknown key 'window' (expected one of: threshold, bleed_duration)",
        "config.yaml:10: cluster.predictive_health.cpu.threshold: must be a percentage above 0 and at most 100 (got 0)",
        "config.yaml:11: cluster.predictive_health.error_rate.window: invalid duration 'soon': use numbers with units"
        " ns, us, ms, s, m, h (e.g. '500ms', '30s', '5m', '1h', '1m30s')",
        "config.yaml:11: cluster.predictive_health.error_rate.threshold: must be a percentage above 0 and at most 100 (got 101)",
    ]


# --- reading paths ------------------------------------------------------------


def test_anchors_and_merge_keys() -> None:
    """Anchors, aliases and merge keys work (merge keys via ruamel's own constructor)."""
    config = parse(
        """\
        regions:
          - name: a
            servers: [{address: 192.0.2.1}]
            health_check: &hc {type: tcp, interval: 10s, timeout: 1s}
          - name: b
            servers: [{address: 192.0.2.2, port: 0x50}]
            health_check:
              <<: *hc
              timeout: 2s
        """
    )
    a, b = config.regions
    assert a.health_check == HealthCheckConfig(type="tcp", interval=10.0, timeout=1.0)
    assert b.health_check == HealthCheckConfig(type="tcp", interval=10.0, timeout=2.0)
    assert b.servers[0].port == 80


def test_line_numbers_through_merge_keys() -> None:
    """A problem in a merged mapping still gets a line."""
    found = problems(
        """\
        regions:
          - name: a
            servers: []
            health_check: &hc {type: tcp, interval: 10s, timeout: 1s}
          - name: b
            servers: []
            health_check:
              <<: *hc
              failure_threshold: 11
        """
    )
    assert found == [
        "config.yaml:9: regions[1].health_check.failure_threshold: must be between 1 and 10 (got 11)"
    ]


@pytest.mark.parametrize(
    "text",
    [
        'a: [1, 2.5, -3, +4, 0755, true, False, null, ~, \'\', "q", 1.5e3, x, "2001:db8::1"]\nb: {c: d}\n',
        "a: &x {k: [1, 2]}\nb: *x\nc: !!str 5\nd: 0x1F\ne: 1_000\nf: .inf\ng: 2024-01-02\n",
        "a: |\n  multi\n  line\nb: >\n  folded\n  text\n",
        "",
        "just a scalar\n",
    ],
)
def test_fast_reader_matches_ruamel_safe_loader(text: str) -> None:
    """The event-based reader produces exactly what YAML(typ='safe') does."""
    assert _load_plain(text) == YAML(typ="safe").load(text)


def test_fast_reader_keeps_aliases_shared() -> None:
    """An alias is the same object as its anchor, as with ruamel."""
    data = _load_plain("a: &x [1]\nb: *x\n")
    assert data["a"] is data["b"]


def test_round_trip_data_gives_the_same_config() -> None:
    """Validating ruamel's round-trip data gives the same Config as the fast path."""
    text = (Path(__file__).resolve().parents[2] / "etc" / "opengslb" / "failover.yaml").read_text()
    checker = _Checker()
    slow = checker.config(YAML().load(text), "failover.yaml")
    assert checker.issues == []
    assert slow == parse_config(text, "failover.yaml")


# --- load_config ----------------------------------------------------------------


def write(tmp_path: Path, text: str, mode: int) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text))
    os.chmod(path, mode)
    return str(path)


SECRET = f'cluster:\n  gossip: {{encryption_key: "{KEY}"}}\n'
TOKENS = "api:\n  tokens: [t0ken]\n"


def test_load_sets_source(tmp_path: Path) -> None:
    """load_config returns the config with source = the path, and no warnings for mode 600."""
    path = write(tmp_path, REGION, 0o600)
    config, warnings = load_config(path)
    assert config.source == path
    assert warnings == []
    assert config.regions[0].name == "r1"


@pytest.mark.parametrize("secret", [SECRET, TOKENS])
def test_world_readable_secret_file_is_refused(tmp_path: Path, secret: str) -> None:
    """A file with tokens or a cluster key that every user can read is refused: chmod 600."""
    path = write(tmp_path, secret, 0o644)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    [problem] = info.value.problems
    assert problem.file == path and problem.line is None
    assert f"chmod 600 {path}" in str(problem)
    assert "readable by every user" in str(problem)


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o400])
def test_private_secret_file_is_accepted(tmp_path: Path, mode: int) -> None:
    """Owner- or group-readable secret files load without warnings."""
    config, warnings = load_config(write(tmp_path, SECRET + TOKENS, mode))
    assert config.api.tokens == ("t0ken",)
    assert warnings == []


def test_permission_problem_comes_with_validation_problems(tmp_path: Path) -> None:
    """The permission problem does not hide the file's other problems."""
    path = write(tmp_path, TOKENS + "dns: {default_ttl: x}\n", 0o644)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert len(info.value.problems) == 2
    assert "chmod 600" in str(info.value.problems[0])
    assert str(info.value.problems[1]) == f"{path}:3: dns.default_ttl: must be an integer, not a string ('x')"


def test_world_readable_file_without_secrets_warns(tmp_path: Path) -> None:
    """A world-readable file without secrets starts, with a warning (SPEC §2)."""
    path = write(tmp_path, REGION, 0o644)
    _, warnings = load_config(path)
    assert len(warnings) == 1
    assert "readable by every user" in warnings[0] and f"chmod 600 {path}" in warnings[0]


def test_world_writable_file_warns(tmp_path: Path) -> None:
    """A world-writable file starts, with a warning that anyone can change it."""
    path = write(tmp_path, REGION, 0o606)
    _, warnings = load_config(path)
    assert len(warnings) == 1 and "writable by every user" in warnings[0]


def test_missing_file(tmp_path: Path) -> None:
    """An unreadable file is a clear problem, not a traceback."""
    path = str(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: cannot read the configuration file: No such file or directory"


def test_directory_instead_of_file(tmp_path: Path) -> None:
    """A directory is not a configuration file."""
    with pytest.raises(ConfigError, match="cannot read the configuration file"):
        load_config(str(tmp_path))


def test_not_utf8(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 are reported with their line."""
    path = tmp_path / "config.yaml"
    path.write_bytes(b"dns: {}\nlogging: {level: \xff}\n")
    os.chmod(path, 0o600)
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert str(info.value) == f"{path}:2: the file is not UTF-8 text"


def test_problems_in_a_loaded_file_name_the_file(tmp_path: Path) -> None:
    """Problems from load_config use the path as given."""
    path = write(tmp_path, "logging: {level: loud}\n", 0o600)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}:1: logging.level: unknown log level 'loud'")


# --- numbers and durations: range-checked, never a traceback (issue 11) ---------------------

BIG = "9" * 400


def test_huge_numbers_are_problems_with_lines() -> None:
    """A 400-digit TTL, duration, percentage or port is a file:line problem with a short message."""
    found = problems(
        f"""\
        dns:
          listen_address: ":{BIG}"
          default_ttl: {BIG}
        regions:
          - name: r1
            servers: [{{address: 192.0.2.1, port: {BIG}}}]
            health_check:
              interval: {BIG}
              timeout: {BIG}s
        domains:
          - {{name: a.example, regions: [r1], ttl: -{BIG}}}
        cluster:
          predictive_health:
            cpu: {{threshold: {BIG}, bleed_duration: {BIG}}}
        """
    )
    assert found == [
        "config.yaml:2: dns.listen_address: ':99999999999999999999999999999999999999999999999999999999'...:"
        " port 9999999999... (400 digits) is outside 1-65535",
        "config.yaml:3: dns.default_ttl: must be between 0 and 2147483647 (got a 400-digit number)",
        "config.yaml:6: regions[0].servers[0].port: must be between 1 and 65535 (got a 400-digit number)",
        "config.yaml:8: regions[0].health_check.interval: must be at most 24h (got a 400-digit number of seconds)",
        "config.yaml:9: regions[0].health_check.timeout: invalid duration"
        " '9999999999999999999999999999999999999'...: longer than 64 characters",
        "config.yaml:11: domains[0].ttl: must be between 0 and 2147483647 (got a 400-digit number)",
        "config.yaml:14: cluster.predictive_health.cpu.threshold:"
        " must be a percentage above 0 and at most 100 (got a 400-digit number)",
        "config.yaml:14: cluster.predictive_health.cpu.bleed_duration:"
        " must be at most 24h (got a 400-digit number of seconds)",
    ]


def test_number_too_long_to_read_is_a_syntax_problem_with_its_line() -> None:
    """Python refuses to convert integers of more than 4300 digits; that is a problem, not a traceback,
    on the fast reader and on ruamel's (a tag sends the file there)."""
    for text in (f"dns:\n  default_ttl: {'9' * 5000}\n", f"dns:\n  default_ttl: !!int {'9' * 5000}\n"):
        assert only_problem(text) == (
            "config.yaml:2: invalid YAML: a number longer than 4300 digits cannot be read"
        )


def test_ttl_bounds_follow_rfc_2181() -> None:
    """TTLs are 0..2^31-1 (RFC 2181 §8): both ends accepted, one past refused."""
    text = REGION + "domains:\n  - {name: a.example, regions: [r1], ttl: TTL}\n"
    assert parse(text.replace("TTL", "0")).domains[0].ttl == 0
    assert parse(text.replace("TTL", str(2**31 - 1))).domains[0].ttl == 2**31 - 1
    assert only_problem(text.replace("TTL", str(2**31))) == (
        "config.yaml:6: domains[0].ttl: must be between 0 and 2147483647 (got 2147483648)"
    )


@pytest.mark.parametrize(
    "section, value, expected",
    [
        ("regions[0].health_check.interval", "50ms", "must be at least 100ms (got 50ms)"),
        ("regions[0].health_check.interval", "25h", "must be at most 24h (got 25h)"),
        ("regions[0].health_check.timeout", "2h", "must be at most 1h (got 2h)"),
        ("cluster.raft.heartbeat_timeout", "10ms", "must be at least 50ms (got 10ms)"),
        ("cluster.raft.heartbeat_timeout", "2m", "must be at most 1m (got 2m)"),
        ("cluster.raft.election_timeout", "50ms", "must be at least 100ms (got 50ms)"),
        ("cluster.raft.election_timeout", "61s", "must be at most 1m (got 1m1s)"),
        ("cluster.raft.snapshot_interval", "500ms", "must be at least 1s (got 500ms)"),
        ("cluster.raft.snapshot_interval", "169h", "must be at most 168h (got 169h)"),
        ("cluster.predictive_health.cpu.bleed_duration", "86401", "must be at most 24h (got 86401s)"),
        ("cluster.predictive_health.error_rate.window", "500ms", "must be at least 1s (got 500ms)"),
        ("cluster.predictive_health.error_rate.window", "1441m", "must be at most 24h (got 24h1m)"),
        ("cluster.overwatch.external_check_interval", "10ms", "must be at least 100ms (got 10ms)"),
        ("cluster.overwatch.external_check_interval", "48h", "must be at most 24h (got 48h)"),
    ],
)
def test_duration_bounds(section: str, value: str, expected: str) -> None:
    """Each duration setting has a floor and a ceiling of its own; the message names both values."""
    *parents, key = section.replace("regions[0]", "regions").split(".")
    text = "".join(f"{'  ' * i}{p}:\n" for i, p in enumerate(parents)) + f"{'  ' * len(parents)}{key}: {value}\n"
    if parents[0] == "regions":
        text = text.replace("regions:\n  health_check:\n",
                            "regions:\n  - name: r1\n    servers: []\n    health_check:\n").replace(
            f"    {key}: {value}", f"      {key}: {value}")
    found = only_problem(text)
    assert found.split(": ", 2)[1:] == [section, expected], found


@pytest.mark.parametrize(
    "section, value",
    [
        ("regions[0].health_check.interval", "24h"),
        ("regions[0].health_check.interval", "100ms"),
        ("cluster.raft.heartbeat_timeout", "50ms"),
        ("cluster.raft.election_timeout", "1m"),
        ("cluster.raft.snapshot_interval", "168h"),
        ("cluster.overwatch.external_check_interval", "100ms"),
    ],
)
def test_duration_bounds_are_inclusive(section: str, value: str) -> None:
    """The limits themselves are accepted."""
    *parents, key = section.replace("regions[0]", "regions").split(".")
    if parents[0] == "regions":
        text = f"regions:\n  - name: r1\n    servers: []\n    health_check: {{{key}: {value}, timeout: 10ms}}\n"
    else:
        text = "".join(f"{'  ' * i}{p}:\n" for i, p in enumerate(parents)) + f"{'  ' * len(parents)}{key}: {value}\n"
    parse(text)


_HOSTILE = ["9" * 400, "-" + "9" * 400, "1e400", "-.inf", ".nan", "9" * 400 + "s", "'" + "1h" * 40 + "'",
            "2001-12-14", "{a: 1}"]


def _leaves(data: object, path: tuple = ()) -> List[tuple]:
    if isinstance(data, dict):
        return [leaf for key, value in data.items() for leaf in _leaves(value, path + (key,))]
    if isinstance(data, list) and data:
        return [leaf for i, value in enumerate(data) for leaf in _leaves(value, path + (i,))]
    return [path]


def test_hostile_value_in_any_setting_is_a_problem_with_a_line() -> None:
    """Every setting of the reference file, set in turn to huge, infinite, NaN, over-long or
    wrongly typed values: always a ConfigError whose problems all carry a line, never another
    exception."""
    reference = Path(__file__).resolve().parents[2] / "etc" / "opengslb" / "config.yaml"
    yaml = YAML()
    base = YAML(typ="safe").load(reference.read_text())
    leaves = _leaves(base)
    assert len(leaves) > 50
    for leaf in leaves:
        data = YAML(typ="safe").load(reference.read_text())
        target = data
        for step in leaf[:-1]:
            target = target[step]
        target[leaf[-1]] = "@HOSTILE@"
        out = io.StringIO()
        yaml.dump(data, out)
        for value in _HOSTILE:
            text = out.getvalue().replace("@HOSTILE@", value)
            try:
                parse_config(text, "c.yaml")
            except ConfigError as error:
                assert all(p.line is not None for p in error.problems), (leaf, value, error)
