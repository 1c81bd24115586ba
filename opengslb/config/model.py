"""The validated configuration, as frozen dataclasses.

Everything here is immutable: a reload builds a new :class:`Config` and swaps
it in whole.  Durations are floats in seconds; addresses are normalised
strings (``ipaddress`` canonical form); domain and zone names are lower case
without a trailing dot.  Defaults are the ones SPEC §2 gives.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Dict, FrozenSet, Mapping, Optional, Sequence, Set, Tuple, TypeVar

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# The closed sets of words some settings take: defined once here, checked by
# the loader (:mod:`opengslb.config.schema`), used by whoever acts on them.
LOG_LEVELS: Tuple[str, ...] = ("debug", "info", "warn", "error")
LOG_FORMATS: Tuple[str, ...] = ("json", "text")
TOKEN_SCOPES: Tuple[str, ...] = ("admin", "drain")  # api.tokens[].scope
CHECK_TYPES: Tuple[str, ...] = ("http", "https", "tcp")  # regions[].health_check.type
CLUSTER_MODES: Tuple[str, ...] = ("standalone", "cluster")  # cluster.mode
FOLLOWER_QUERIES: Tuple[str, ...] = ("refuse", "drop", "forward")  # cluster.follower_queries
HEALTH_CONSENSUS_MODES: Tuple[str, ...] = ("majority", "any", "all", "leader")  # cluster.health_consensus
VETO_MODES: Tuple[str, ...] = ("strict", "balanced", "permissive")  # cluster.overwatch.veto_mode
#: domains[].when_all_down (SPEC §4.1): what to answer when every candidate of the asked family is down.
ALL_DOWN_POLICIES: Tuple[str, ...] = ("servfail", "last-healthy", "all", "nodata", "fallback")
#: Continent codes a GeoIP topology rule may name (the MaxMind database's ``continent.code``).
CONTINENTS: Tuple[str, ...] = ("AF", "AN", "AS", "EU", "NA", "OC", "SA")


@dataclass(frozen=True)
class ListenAddress:
    """A ``host:port`` listen address; ``host == ""`` means every local address."""

    host: str
    port: int

    @property
    def is_wildcard(self) -> bool:
        return self.host in ("", "0.0.0.0", "::")

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class SOAConfig:
    mname: str
    rname: str
    refresh: int = 14400
    retry: int = 3600
    expire: int = 1209600
    minimum: int = 60


@dataclass(frozen=True)
class NameserverConfig:
    name: str
    address: Optional[str] = None  # required (glue) when the name is inside its zone


@dataclass(frozen=True)
class ZoneConfig:
    name: str
    soa: SOAConfig
    nameservers: Tuple[NameserverConfig, ...] = ()


@dataclass(frozen=True)
class DNSConfig:
    listen_address: ListenAddress = ListenAddress("", 53)
    default_ttl: int = 60
    return_last_healthy: bool = False
    zones: Tuple[ZoneConfig, ...] = ()
    nsid: str = ""  # RFC 5001 name server identifier; "" = off
    tcp_max_connections: int = 256  # DNS over TCP connections per listener
    tcp_max_connections_per_source: int = 32  # ... and per client address


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "info"  # one of LOG_LEVELS
    format: str = "json"  # one of LOG_FORMATS


@dataclass(frozen=True)
class MetricsConfig:
    enabled: bool = False
    address: ListenAddress = ListenAddress("", 9090)
    allowed_networks: Tuple[IPNetwork, ...] = field(default_factory=lambda: _loopback_networks())
    max_connections: int = 64
    max_connections_per_source: int = 16
    max_connection_rate: int = 50  # new connections per second
    request_timeout: float = 10.0


def _loopback_networks() -> Tuple[IPNetwork, ...]:
    return (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128"))


@dataclass(frozen=True)
class APIConfig:
    enabled: bool = False
    address: ListenAddress = ListenAddress("127.0.0.1", 8080)
    allowed_networks: Tuple[IPNetwork, ...] = field(default_factory=_loopback_networks)
    trust_proxy_headers: bool = False
    trusted_proxies: Tuple[IPNetwork, ...] = field(default_factory=_loopback_networks)
    tokens: Tuple[str, ...] = ()  # scope "admin": every write
    drain_tokens: Tuple[str, ...] = ()  # scope "drain": overrides and service registrations
    max_connections: int = 128
    max_connections_per_source: int = 32
    max_connection_rate: int = 500  # new connections per second
    request_timeout: float = 10.0
    max_body_bytes: int = 65536


@dataclass(frozen=True)
class ServerConfig:
    address: str  # canonical IPv4 or IPv6 text
    port: int = 80
    weight: int = 100  # 0..1000
    host: str = ""

    @property
    def family(self) -> int:
        """4 or 6."""
        return 6 if ":" in self.address else 4

    @property
    def endpoint(self) -> str:
        """``address:port`` — the label value and API spelling of this server."""
        return f"{self.address}:{self.port}"


@dataclass(frozen=True)
class HealthCheckConfig:
    type: str = "http"  # one of CHECK_TYPES
    interval: float = 30.0
    timeout: float = 5.0
    path: str = "/health"
    host: str = ""
    tls_verify: bool = False
    failure_threshold: int = 3
    success_threshold: int = 2


@dataclass(frozen=True)
class RegionConfig:
    name: str
    servers: Tuple[ServerConfig, ...]
    health_check: HealthCheckConfig = HealthCheckConfig()
    #: Seconds over which a server that turns healthy (or is undrained) ramps 10% -> 100%; 0 = off.
    slow_start: float = 0.0
    #: latency algorithm: switch only to a server this many percent faster than the current one.
    latency_hysteresis: float = 20.0


@dataclass(frozen=True)
class TopologyRule:
    """One ``domains[].topology`` rule: a client selector and the region order it gets.

    Exactly one selector is set: ``networks`` (matched longest prefix first,
    over all rules), ``countries`` (ISO 3166 codes) or ``continents`` (the
    last two need ``geoip.database``).  ``regions`` is the rule's region
    order (a subset of the domain's regions).
    """

    regions: Tuple[str, ...]
    networks: Tuple[IPNetwork, ...] = ()
    countries: Tuple[str, ...] = ()
    continents: Tuple[str, ...] = ()


@dataclass(frozen=True)
class DomainConfig:
    name: str  # lower case, no trailing dot
    regions: Tuple[str, ...]
    routing_algorithm: str = "round-robin"
    ttl: Optional[int] = None  # None: dns.default_ttl
    topology: Tuple[TopologyRule, ...] = ()  # geolocation only
    answer_count: int = 1  # up to this many distinct healthy addresses per answer
    when_all_down: Optional[str] = None  # one of ALL_DOWN_POLICIES; None: follows dns.return_last_healthy
    fallback_addresses: Tuple[str, ...] = ()  # when_all_down: fallback


@dataclass(frozen=True)
class GeoIPConfig:
    database: str = ""  # a MaxMind-format (.mmdb) file; "" = no GeoIP rules


@dataclass(frozen=True)
class RaftConfig:
    data_dir: str = "/var/lib/opengslb/raft"
    heartbeat_timeout: float = 1.0
    election_timeout: float = 1.0
    snapshot_interval: float = 120.0
    snapshot_threshold: int = 8192


@dataclass(frozen=True)
class GossipConfig:
    encryption_key: str = ""  # base64 of exactly 32 bytes


@dataclass(frozen=True)
class PredictiveSignalConfig:
    threshold: float
    bleed_duration: float
    window: Optional[float] = None  # error_rate only


@dataclass(frozen=True)
class PredictiveHealthConfig:
    enabled: bool = False
    cpu: PredictiveSignalConfig = PredictiveSignalConfig(90, 30.0)
    memory: PredictiveSignalConfig = PredictiveSignalConfig(85, 30.0)
    error_rate: PredictiveSignalConfig = PredictiveSignalConfig(10, 60.0, 60.0)


@dataclass(frozen=True)
class OverwatchConfig:
    external_check_interval: float = 10.0
    veto_mode: str = "balanced"  # one of VETO_MODES
    veto_threshold: int = 3


@dataclass(frozen=True)
class ClusterConfig:
    mode: str = "standalone"  # one of CLUSTER_MODES
    node_name: str = ""
    bind_address: ListenAddress = ListenAddress("0.0.0.0", 7946)
    advertise_address: str = ""
    bootstrap: bool = False
    join: Tuple[str, ...] = ()
    follower_queries: str = "refuse"  # one of FOLLOWER_QUERIES
    raft: RaftConfig = RaftConfig()
    gossip: GossipConfig = GossipConfig()
    health_consensus: str = "majority"  # one of HEALTH_CONSENSUS_MODES
    predictive_health: PredictiveHealthConfig = PredictiveHealthConfig()
    overwatch: OverwatchConfig = OverwatchConfig()
    anycast_vip: str = ""
    #: Leader self-demotion (docs/cluster.md): a reactor lagging more than this for 3 s running.
    demotion_lag_bound: float = 1.0
    #: A demoted node does not take leadership back for this long (unless it is the only candidate).
    demotion_hold_down: float = 30.0


@dataclass(frozen=True)
class Config:
    """The whole configuration file, validated."""

    dns: DNSConfig = DNSConfig()
    logging: LoggingConfig = LoggingConfig()
    metrics: MetricsConfig = MetricsConfig()
    api: APIConfig = APIConfig()
    regions: Tuple[RegionConfig, ...] = ()
    domains: Tuple[DomainConfig, ...] = ()
    cluster: ClusterConfig = ClusterConfig()
    geoip: GeoIPConfig = GeoIPConfig()
    source: str = "<built-in>"  # the file it came from
    # Values other modules compute from this configuration alone, cached with it (e.g. the
    # DNS zone index); not part of its value.  Filled before the configuration is in use.
    derived: Dict[str, Any] = field(default_factory=dict, init=False, compare=False, repr=False)

    @cached_property
    def regions_by_name(self) -> Dict[str, RegionConfig]:
        """The regions by name (do not modify)."""
        return {region.name: region for region in self.regions}

    def region(self, name: str) -> RegionConfig:
        """The region called ``name``; KeyError when there is none."""
        return self.regions_by_name[name]

    @cached_property
    def server_endpoints(self) -> FrozenSet[Tuple[str, str, int]]:
        """Every configured server as ``(region, address, port)``."""
        return frozenset((r.name, s.address, s.port) for r in self.regions for s in r.servers)

    @cached_property
    def server_addresses(self) -> FrozenSet[Tuple[str, str]]:
        """Every configured server as ``(region, address)``."""
        return frozenset((r.name, s.address) for r in self.regions for s in r.servers)

    def build_indexes(self) -> None:
        """Compute the cached lookups now (e.g. in a reload's worker thread, not on the reactor)."""
        for name in ("regions_by_name", "server_endpoints", "server_addresses"):
            getattr(self, name)

    def domain_ttl(self, domain: DomainConfig) -> int:
        return self.dns.default_ttl if domain.ttl is None else domain.ttl

    def all_down_policy(self, domain: DomainConfig) -> str:
        """The domain's ``when_all_down``, defaulting by ``dns.return_last_healthy``."""
        if domain.when_all_down is not None:
            return domain.when_all_down
        return "last-healthy" if self.dns.return_last_healthy else "servfail"


_Part = TypeVar("_Part")


def _reuse(new: Tuple[_Part, ...], old: Sequence[_Part], key: str) -> Tuple[_Part, ...]:
    """``new`` with each item equal to ``old``'s item of the same ``key`` replaced by that
    object; ``old`` itself (as a tuple) when every item is equal and in the same order."""
    by_key = {getattr(item, key): item for item in old}
    shared = tuple(
        previous if previous is not None and (previous is item or previous == item) else item
        for item in new for previous in (by_key.get(getattr(item, key)),))
    if len(shared) == len(old) and all(a is b for a, b in zip(shared, old)):
        return tuple(old)
    return shared


def changed_regions(config: Config, previous: Mapping[str, RegionConfig]) -> Set[str]:
    """Names of ``config``'s regions that are new or differ from ``previous``'s region of that name.

    Compared by identity first, so after :func:`share_unchanged` only the
    regions that really changed cost a full comparison.
    """
    return {region.name for region in config.regions
            if previous.get(region.name) is not region and previous.get(region.name) != region}


def share_unchanged(config: Config, previous: Config) -> Config:
    """``config``, with every region, domain and zone equal to ``previous``'s reused as is.

    The result equals ``config``.  Sharing the unchanged parts lets the code
    that applies a reload find them with ``is`` instead of comparing tens of
    thousands of dataclasses on the reactor thread; this function does the
    comparing, so call it where time does not matter (a worker thread).
    """
    zones = _reuse(config.dns.zones, previous.dns.zones, "name")
    dns = config.dns if zones is config.dns.zones else replace(config.dns, zones=zones)
    if dns == previous.dns:
        dns = previous.dns
    return replace(config, dns=dns,
                   regions=_reuse(config.regions, previous.regions, "name"),
                   domains=_reuse(config.domains, previous.domains, "name"))
