"""The shape every routing algorithm has.

An algorithm is a small stateless object.  When the answering view is
rebuilt it calls :meth:`Algorithm.prepare` once per (domain, address family)
with every candidate in configuration order; the returned :class:`Picker`
is then asked for one candidate per query.  Pickers only ever return
*eligible* candidates: healthy, with an effective weight above zero.

A picker whose choice depends on the client (SPEC §4.1: geolocation,
consistent-hash) also implements :class:`ClientPicker`: it is asked with the
client's network and says, besides the choice, the ECS scope of the answer
(the prefix length within which every address gets the same answer).
Every picker can :meth:`~Picker.peek`: tell the choice its next
:meth:`~Picker.pick` would make without advancing any rotation, so an
explain endpoint can show an answer without changing the next one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Protocol, Sequence, Tuple

if TYPE_CHECKING:
    from opengslb.routing.geoip import GeoIPLookup
    from opengslb.routing.rtt import LatencyTable

Client = Tuple[int, int, int]
"""The client as routing sees it: (IP version 4|6, network as an integer with the bits past the
prefix cleared, prefix length).  From an ECS option (source prefix capped at /24 and /56) or
the query's source address (a whole address, /32 or /128)."""

NO_CLIENT: Client = (4, 0, 0)
"""The client when none is known (0.0.0.0/0): client-aware pickers answer their default."""

#: ECS source prefixes are capped at these lengths (SPEC §4.1); hashing uses the same networks.
CLIENT_PREFIX_CAP = {4: 24, 6: 56}


def client_key(client: Client) -> bytes:
    """Bytes naming the client network (for hashing): version, prefix and the network's address."""
    version, value, prefix = client
    return bytes((version, prefix)) + value.to_bytes(4 if version == 4 else 16, "big")


def hashing_network(client: Client) -> Client:
    """``client`` cut to at most /24 (IPv4) or /56 (IPv6): the network consistent hashing uses."""
    version, value, prefix = client
    cap = CLIENT_PREFIX_CAP[version]
    if prefix <= cap:
        return client
    bits = 32 if version == 4 else 128
    return (version, value >> (bits - cap) << (bits - cap), cap)


@dataclass(frozen=True)
class Candidate:
    """One server as routing sees it.

    ``weight`` is the effective weight (configured or overridden, times any
    bleed factor); ``healthy`` is the served health verdict.  ``order`` is the
    position in configuration order (regions in the domain's order, servers
    in the region's order).  ``drained`` marks a server predictive health has
    fully bled (SPEC §7.6): still eligible with its small weight, but failover
    passes it over while another eligible candidate is not drained.
    """

    address: str
    port: int
    region: str
    weight: float
    healthy: bool
    order: int = 0
    drained: bool = False

    @property
    def endpoint(self) -> str:
        return f"{self.address}:{self.port}"


def eligible(candidates: Sequence[Candidate]) -> Tuple[Candidate, ...]:
    """The candidates any algorithm may choose: healthy and weight > 0."""
    return tuple(c for c in candidates if c.healthy and c.weight > 0)


class Picker(Protocol):
    """Chooses one candidate per call; ``None`` when nothing is eligible."""

    def pick(self) -> Optional[Candidate]: ...

    def peek(self) -> Optional[Candidate]:
        """The candidate :meth:`pick` would return now, without advancing any rotation."""
        ...


class ClientPicker(Picker, Protocol):
    """A picker whose choice depends on the client (``client_aware`` is True)."""

    client_aware: bool

    def pick_for(self, client: Client, advance: bool = True) -> Tuple[Optional[Candidate], int]:
        """(the choice for ``client``, the ECS scope prefix length of that answer)."""
        ...

    def ranking_for(self, client: Client, first: Candidate) -> Sequence[Candidate]:
        """Eligible candidates in the order further addresses are added after ``first``."""
        ...

    def explain_for(self, client: Client) -> Optional[Dict[str, Any]]:
        """What steered ``client`` (the topology rule or GeoIP record), or None (no match)."""
        ...


class DomainRules(Protocol):
    """What routing reads of a configured domain (``opengslb.config.model.DomainConfig``)."""

    @property
    def name(self) -> str: ...

    @property
    def regions(self) -> Tuple[str, ...]: ...

    @property
    def topology(self) -> Tuple[Any, ...]:
        """TopologyRule objects: regions, networks, countries, continents."""
        ...


@dataclass(frozen=True)
class RoutingContext:
    """What an algorithm may know besides the candidates, for one (domain, family).

    ``hysteresis`` is each region's ``latency_hysteresis`` (percent);
    ``derived`` is a cache of values computed from the configuration alone
    (``Config.derived``: the topology maps), ``geoip`` the GeoIP database when
    one is configured, ``latency`` the health checks' round-trip times.
    """

    family: int = 4
    domain: Optional[DomainRules] = None
    hysteresis: Mapping[str, float] = field(default_factory=dict)
    derived: Dict[Any, Any] = field(default_factory=dict)
    geoip: Optional["GeoIPLookup"] = None
    latency: Optional["LatencyTable"] = None


class Algorithm(Protocol):
    """A named routing algorithm."""

    name: str

    def prepare(self, candidates: Sequence[Candidate], rng: random.Random,
                context: Optional[RoutingContext] = None) -> Picker:
        """Return a picker over ``candidates`` (all of them, in config order).

        ``rng`` is the injected source of randomness; algorithms never use
        the global :mod:`random` state.  ``context`` tells client-aware and
        measuring algorithms about the domain (``None``: nothing is known).
        """
        ...


class EmptyPicker:
    """A picker with nothing to choose from."""

    def pick(self) -> Optional[Candidate]:
        return None

    def peek(self) -> Optional[Candidate]:
        return None
