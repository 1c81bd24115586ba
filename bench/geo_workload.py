"""The geolocation-with-ECS workload, shared by bench/dns_bench.py and the gdnsd differential test.

One seeded topology of IPv4 networks (1,000 by default, /8 to /24, some
nested) each mapped to an ordered list of datacenters, written two ways:

* an OpenGSLB configuration: one region per datacenter (one server each),
  a ``geolocation`` domain whose ``topology`` holds the networks;
* a gdnsd configuration: the geoip plugin with the same ``nets`` map and a
  ``dcmap`` giving each datacenter the same address.

Both answer the first datacenter of the longest matching network (else the
datacenters in their default order), so for every client subnet they must
give the same address.  No two listed networks are siblings (the two halves
of one parent), so gdnsd's merging of adjacent networks with the same list
never meets a parent listed with another list, a case its manual leaves
arbitrary.  :func:`longest_match` is the plain-Python model both are
checked against.
"""

from __future__ import annotations

import ipaddress
import random
import struct
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

DATACENTERS = ("dc1", "dc2", "dc3", "dc4")
#: Each datacenter's one address (loopback: health checks, if any run, stay on this machine).
ADDRESSES = {dc: f"127.0.3.{i + 1}" for i, dc in enumerate(DATACENTERS)}
NAME = "geo.bench.test"
ZONE = "bench.test"

Rule = Tuple[ipaddress.IPv4Network, Tuple[str, ...]]


def topology(count: int = 1000, seed: int = 16) -> List[Rule]:
    """``count`` distinct networks (/8 to /24, many nested, no sibling pairs) with datacenter lists."""
    rng = random.Random(seed)
    rules: Dict[ipaddress.IPv4Network, Tuple[str, ...]] = {}
    while len(rules) < count:
        prefix = rng.choice((8, 10, 12, 14, 16, 16, 18, 20, 20, 22, 24, 24, 24))
        value = rng.randrange(1 << 24, 224 << 24)  # 1.0.0.0 - 223.255.255.255
        network = ipaddress.IPv4Network((value >> (32 - prefix) << (32 - prefix), prefix))
        if network in rules:
            continue
        sibling = ipaddress.IPv4Network((int(network.network_address) ^ (1 << (32 - prefix)), prefix))
        if sibling in rules:
            continue
        dcs = list(DATACENTERS)
        rng.shuffle(dcs)
        rules[network] = tuple(dcs[:rng.randint(1, 3)])
    return sorted(rules.items(), key=lambda item: (int(item[0].network_address), item[0].prefixlen))


def client_subnets(rules: Sequence[Rule], count: int = 10_000, seed: int = 17) -> List[str]:
    """``count`` distinct /24 client networks: most inside topology networks, some anywhere."""
    rng = random.Random(seed)
    found: Dict[str, None] = {}
    while len(found) < count:
        if rng.random() < 0.8:
            network = rng.choice(rules)[0]
            value = int(network.network_address) + rng.randrange(network.num_addresses)
        else:
            value = rng.randrange(1 << 24, 224 << 24)
        found[str(ipaddress.IPv4Address(value >> 8 << 8))] = None
    return list(found)


def longest_match(rules: Sequence[Rule], address: str) -> Tuple[str, ...]:
    """The datacenter list of the longest network holding ``address`` (else the default order)."""
    index = {network: dcs for network, dcs in rules}
    value = int(ipaddress.IPv4Address(address))
    for prefix in range(32, -1, -1):
        network = ipaddress.IPv4Network((value >> (32 - prefix) << (32 - prefix) if prefix else 0, prefix))
        if network in index:
            return index[network]
    return DATACENTERS


def opengslb_config(rules: Sequence[Rule], listen: str, data_dir: str, check_port: int = 9,
                    interval: str = "1h") -> str:
    """OpenGSLB YAML serving :data:`NAME` by geolocation over ``rules``."""
    lines = [
        "dns:", f'  listen_address: "{listen}"', "  default_ttl: 60",
        "  zones:", f"    - name: {ZONE}",
        f"      nameservers: [{{name: ns1.{ZONE}, address: 127.0.0.53}}]",
        "logging: {level: warn, format: json}", "regions:",
    ]
    for dc in DATACENTERS:
        lines += [f"  - name: {dc}", f"    servers: [{{address: {ADDRESSES[dc]}, port: {check_port}}}]",
                  f"    health_check: {{type: tcp, interval: {interval}, timeout: 1s}}"]
    lines += ["domains:", f"  - name: {NAME}", "    routing_algorithm: geolocation",
              f"    regions: [{', '.join(DATACENTERS)}]", "    topology:"]
    for network, dcs in rules:
        lines.append(f"      - {{networks: [{network}], regions: [{', '.join(dcs)}]}}")
    lines += ["cluster:", f"  raft: {{data_dir: {data_dir}}}"]
    return "\n".join(lines) + "\n"


def write_gdnsd(rules: Sequence[Rule], root: Path, port: int, gdnsd: str = "gdnsd",
                listen: str = "127.0.0.1") -> List[str]:
    """A gdnsd config directory at ``root`` serving :data:`NAME` with the geoip plugin's ``nets``
    map; returns the command line that runs it in the foreground."""
    (root / "zones").mkdir(parents=True, exist_ok=True)
    nets = "\n".join(f"          {network} => [ {', '.join(dcs)} ]" for network, dcs in rules)
    dcmap = "\n".join(f"          {dc} => {ADDRESSES[dc]}" for dc in DATACENTERS)
    (root / "config").write_text(
        "options => {\n"
        f"  listen => [ {listen} ]\n  dns_port => {port}\n"
        "  udp_threads => 1\n  tcp_threads => 1\n"
        f"  run_dir => {root / 'run'}\n  state_dir => {root / 'state'}\n"
        "}\n"
        "plugins => {\n  geoip => {\n    maps => {\n      bench => {\n"
        f"        datacenters => [ {', '.join(DATACENTERS)} ]\n"
        f"        nets => {{\n{nets}\n        }}\n"
        "      }\n    }\n    resources => {\n      geo => {\n        map => bench\n"
        "        service_types => up\n"
        f"        dcmap => {{\n{dcmap}\n        }}\n"
        "      }\n    }\n  }\n}\n")
    (root / "zones" / ZONE).write_text(
        f"$ORIGIN {ZONE}.\n$TTL 60\n"
        f"@ 60 IN SOA ns1.{ZONE}. hostmaster.{ZONE}. 1 14400 3600 1209600 60\n"
        f"@ 60 IN NS ns1.{ZONE}.\nns1 60 IN A 127.0.0.53\n"
        f"geo 60 DYNA geoip!geo\n")
    return [gdnsd, "-c", str(root), "-D", "start"]


def ecs_query(subnet: str, prefix: int = 24, qid: int = 0x4242, name: str = NAME) -> bytes:
    """An A query for ``name`` with EDNS0 and an ECS option for ``subnet/prefix`` (IPv4)."""
    qname = b"".join(bytes((len(p),)) + p.encode() for p in name.split(".")) + b"\x00"
    octets = ipaddress.IPv4Address(subnet).packed[:(prefix + 7) // 8]
    option = struct.pack("!HHHBB", 8, 4 + len(octets), 1, prefix, 0) + octets
    return (struct.pack("!HHHHHH", qid, 0, 1, 0, 0, 1) + qname + b"\x00\x01\x00\x01"
            + b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00" + struct.pack("!H", len(option)) + option)


def answer_and_scope(reply: bytes) -> Tuple[Optional[str], Optional[int]]:
    """(the first A address, the ECS scope) of a reply to :func:`ecs_query` (None when absent)."""
    import dns.edns
    import dns.message

    message = dns.message.from_wire(reply)
    address = next((item.address for rrset in message.answer for item in rrset), None)
    scope = next((o.scopelen for o in message.options if isinstance(o, dns.edns.ECSOption)), None)
    return address, scope
