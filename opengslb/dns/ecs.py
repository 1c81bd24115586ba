"""EDNS Client Subnet (RFC 7871): reading the option, naming the client, writing the echo.

A query's ECS option says which network the resolver's client is in:
FAMILY (1 IPv4, 2 IPv6), SOURCE PREFIX-LENGTH, SCOPE PREFIX-LENGTH (0 in
queries) and the network's address, in exactly ``ceil(source / 8)`` octets
with every bit past the prefix zero.  Anything else is malformed and the
query gets FORMERR (RFC 7871 §7.1.1 and §6): an unknown family, a source
prefix longer than the family's address, an address of the wrong length or
with bits set past the prefix, a non-zero scope, or two ECS options.

The client routing sees (:data:`opengslb.routing.base.Client`) is the ECS
network with its source prefix capped at /24 (IPv4) or /56 (IPv6); a
source prefix of 0 (the client asked for privacy) or no ECS at all means
the query's source address.  A reply to a query with ECS carries the
option back: family, source prefix and address as received, with the scope
the answer really depends on — and scope 0 when the source prefix was 0, as
gdnsd answers: no client network was given, the answer was chosen for the
resolver itself, and the resolver may use it for every client.

Nothing here imports the rest of the package but the routing floor's
client type.
"""

from __future__ import annotations

import functools
import socket
from typing import NamedTuple, Optional, Sequence, Tuple

from opengslb.routing.base import CLIENT_PREFIX_CAP, Client

__all__ = ["OPTION_ECS", "EcsError", "Subnet", "ecs_option", "find_subnet", "parse_subnet",
           "source_client"]

OPTION_ECS = 8
_BITS = {1: 32, 2: 128}
_VERSION = {1: 4, 2: 6}


class EcsError(ValueError):
    """A malformed ECS option (the query gets FORMERR)."""


class Subnet(NamedTuple):
    """A query's ECS option as received, and the client it names (None: source prefix 0)."""

    family: int
    source: int
    address: bytes
    client: Optional[Client]


def parse_subnet(data: bytes) -> Subnet:
    """Read one ECS option's data; EcsError when it is malformed (see the module docstring)."""
    if len(data) < 4:
        raise EcsError("ECS option shorter than 4 octets")
    family = data[0] << 8 | data[1]
    source, scope = data[2], data[3]
    bits = _BITS.get(family)
    if bits is None:
        raise EcsError(f"ECS family {family} is neither 1 (IPv4) nor 2 (IPv6)")
    if source > bits:
        raise EcsError(f"ECS source prefix /{source} is longer than the address")
    if scope != 0:
        raise EcsError("ECS scope prefix is not 0 in a query")
    address = data[4:]
    if len(address) != (source + 7) // 8:
        raise EcsError(f"ECS address has {len(address)} octets for a /{source} prefix")
    value = int.from_bytes(address, "big") << (bits - 8 * len(address))
    if value & ((1 << (bits - source)) - 1):
        raise EcsError(f"ECS address has bits set past its /{source} prefix")
    if source == 0:
        return Subnet(family, source, address, None)
    version = _VERSION[family]
    cap = CLIENT_PREFIX_CAP[version]
    if source > cap:
        value = value >> (bits - cap) << (bits - cap)
        source_used = cap
    else:
        source_used = source
    return Subnet(family, source, address, (version, value, source_used))


def find_subnet(options: Sequence[Tuple[int, bytes]]) -> Optional[Subnet]:
    """The ECS option among a query's EDNS ``options`` (None: none); EcsError if malformed or twice."""
    found: Optional[Subnet] = None
    for code, data in options:
        if code == OPTION_ECS:
            if found is not None:
                raise EcsError("more than one ECS option")
            found = parse_subnet(data)
    return found


def ecs_option(subnet: Subnet, scope: int) -> Tuple[int, bytes]:
    """The (code, data) echoed in a reply: the query's family, source and address, with ``scope``
    (0 whatever ``scope`` says when the source prefix is 0)."""
    if subnet.source == 0:
        scope = 0
    return OPTION_ECS, bytes((subnet.family >> 8, subnet.family & 0xFF, subnet.source, scope)) + subnet.address


@functools.lru_cache(maxsize=65_536)
def source_client(host: str) -> Client:
    """The client of a query without ECS: its source address (IPv4-mapped IPv6 read as IPv4).

    Remembered for the last 65,536 addresses: a resolver asks again and again."""
    if ":" in host:
        if host.startswith("::ffff:") and "." in host:
            return source_client(host[7:])
        packed = socket.inet_pton(socket.AF_INET6, host.partition("%")[0])
        return 6, int.from_bytes(packed, "big"), 128
    return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, host), "big"), 32
