"""The schema checker: plain data (from :mod:`opengslb.config.yamlread`) to a :class:`Config`.

One validation pass over the plain data collects every problem as
``(key path, message)`` and builds the model at the same time
(:class:`Checker`); :func:`cluster_issues` holds what cluster mode needs on
top.  The words a setting may take come from :mod:`opengslb.config.model`;
the bounds of numbers and durations are here.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Set, Tuple, TypeVar

from opengslb.config.durations import format_duration
from opengslb.config.model import (
    ALL_DOWN_POLICIES,
    CHECK_TYPES,
    CLUSTER_MODES,
    CONTINENTS,
    FOLLOWER_QUERIES,
    HEALTH_CONSENSUS_MODES,
    LOG_FORMATS,
    LOG_LEVELS,
    TOKEN_SCOPES,
    VETO_MODES,
    APIConfig,
    ClusterConfig,
    Config,
    DNSConfig,
    DomainConfig,
    GeoIPConfig,
    GossipConfig,
    HealthCheckConfig,
    IPNetwork,
    LoggingConfig,
    MetricsConfig,
    NameserverConfig,
    OverwatchConfig,
    PredictiveHealthConfig,
    PredictiveSignalConfig,
    RaftConfig,
    RegionConfig,
    ServerConfig,
    SOAConfig,
    TopologyRule,
    ZoneConfig,
)
from opengslb.config.problems import Issue, KeyPath, format_path
from opengslb.config.values import (
    KEYGEN_HINT,
    MAX_SETTING_DURATION,
    as_advertise,
    as_bool,
    as_choice,
    as_code,
    as_dns_name,
    as_duration,
    as_encryption_key,
    as_hysteresis,
    as_int,
    as_ip,
    as_listen,
    as_mailbox,
    as_network,
    as_nonempty_string,
    as_nsid,
    as_optional_duration,
    as_optional_ip,
    as_percent,
    as_positive_duration,
    as_region_name,
    as_server_address,
    as_string,
    as_url_path,
    format_host_port,
    kind_of,
    one_of,
    parse_host_port,
    suggest,
    within,
)
from opengslb.routing.geoip import GeoIPError, GeoIPLookup
from opengslb.routing.registry import ALGORITHMS

__all__ = ["MAX_TCP_CONNECTIONS", "MAX_TTL", "SECTIONS", "Checker", "cluster_issues"]

MAX_TCP_CONNECTIONS = 65535

T = TypeVar("T")
SECTIONS = ("dns", "logging", "metrics", "api", "geoip", "regions", "domains", "cluster")
ROUTING_ALGORITHMS = tuple(ALGORITHMS)  # the routing registry is the one list of names
MAX_TTL = 2**31 - 1  # RFC 2181 §8: a TTL is an unsigned 31-bit number of seconds
# Bounds of the duration settings (seconds).  Every duration is above 0s; none
# may exceed MAX_SETTING_DURATION (values.py), and most have a tighter bound of their own.
_MINUTE, _HOUR, _DAY = 60.0, 3600.0, 86400.0
MIN_CHECK_INTERVAL, MAX_CHECK_INTERVAL = 0.1, _DAY  # health checks; timeout < interval
MAX_CHECK_TIMEOUT = _HOUR
MIN_RAFT_HEARTBEAT, MIN_RAFT_ELECTION, MAX_RAFT_TIMEOUT = 0.05, 0.1, _MINUTE
#: Leader self-demotion (cluster.demotion_*): the reactor-lag bound and the hold-down.
MIN_DEMOTION_LAG_BOUND, MAX_DEMOTION_LAG_BOUND = 0.1, _MINUTE
MIN_DEMOTION_HOLD_DOWN, MAX_DEMOTION_HOLD_DOWN = 1.0, 60 * _MINUTE
MIN_SNAPSHOT_INTERVAL, MAX_SNAPSHOT_INTERVAL = 1.0, 7 * _DAY
MAX_BLEED_DURATION = _DAY
MIN_SIGNAL_WINDOW, MAX_SIGNAL_WINDOW = 1.0, _DAY
MIN_EXTERNAL_CHECK_INTERVAL, MAX_EXTERNAL_CHECK_INTERVAL = 0.1, _DAY
MAX_CLUSTER_MEMBERS = 7
MAX_SLOW_START = _HOUR  # regions[].slow_start
MAX_ANSWER_COUNT = 32  # domains[].answer_count (32 AAAA records still fit 1232 bytes)

_DNS_KEYS = ("listen_address", "default_ttl", "return_last_healthy", "zones", "nsid",
             "tcp_max_connections", "tcp_max_connections_per_source")
_ZONE_KEYS = ("name", "nameservers", "soa")
_NAMESERVER_KEYS = ("name", "address")
_SOA_KEYS = ("mname", "rname", "refresh", "retry", "expire", "minimum")
_LOGGING_KEYS = ("level", "format")
_LISTENER_KEYS = ("max_connections", "max_connections_per_source", "max_connection_rate",
                  "request_timeout")
_METRICS_KEYS = ("enabled", "address", "allowed_networks") + _LISTENER_KEYS
_API_KEYS = (
    "enabled",
    "address",
    "allowed_networks",
    "trust_proxy_headers",
    "trusted_proxies",
    "tokens",
    "max_body_bytes",
) + _LISTENER_KEYS
_TOKEN_KEYS = ("token", "scope")
MAX_LISTENER_CONNECTIONS = 100_000
MAX_REQUEST_TIMEOUT = 300.0
MAX_BODY_BYTES = 1024 * 1024
_REGION_KEYS = ("name", "servers", "health_check", "slow_start", "latency_hysteresis")
_GEOIP_KEYS = ("database",)
_SERVER_KEYS = ("address", "port", "weight", "host")
_HEALTH_KEYS = (
    "type",
    "interval",
    "timeout",
    "path",
    "host",
    "tls_verify",
    "failure_threshold",
    "success_threshold",
)
_DOMAIN_KEYS = ("name", "routing_algorithm", "regions", "ttl", "topology", "answer_count",
                "when_all_down", "fallback_addresses")
_TOPOLOGY_KEYS = ("networks", "countries", "continents", "regions")
_SELECTORS = ("networks", "countries", "continents")
_CLUSTER_KEYS = (
    "mode",
    "node_name",
    "bind_address",
    "advertise_address",
    "bootstrap",
    "join",
    "follower_queries",
    "raft",
    "gossip",
    "health_consensus",
    "predictive_health",
    "overwatch",
    "anycast_vip",
    "demotion_lag_bound",
    "demotion_hold_down",
)
_RAFT_KEYS = (
    "data_dir",
    "heartbeat_timeout",
    "election_timeout",
    "snapshot_interval",
    "snapshot_threshold",
)
_GOSSIP_KEYS = ("encryption_key",)
_PREDICTIVE_KEYS = ("enabled", "cpu", "memory", "error_rate")
_SIGNAL_KEYS = ("threshold", "bleed_duration")
_ERROR_RATE_KEYS = ("threshold", "window", "bleed_duration")
_OVERWATCH_KEYS = ("external_check_interval", "veto_mode", "veto_threshold")

_MISSING = "missing (required)"


class Checker:
    """One validation pass over plain data: builds the model and records every issue.

    Every reader takes the enclosing mapping, a key and the mapping's path;
    on a bad value it records an issue and returns the default, so one pass
    reports everything and the caller can go on building.
    """

    def __init__(self) -> None:
        self.issues: List[Issue] = []

    def add(self, path: KeyPath, message: str) -> None:
        self.issues.append((path, message))

    # -- structure ---------------------------------------------------------

    def section(self, value: Any, path: KeyPath, keys: Sequence[str]) -> Optional[Dict[str, Any]]:
        """The mapping at ``path`` after reporting unknown keys.

        ``None`` (an empty YAML value) reads as ``{}``; any other non-mapping
        is reported and gives ``None``, so the caller skips its fields.
        """
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.add(path, f"must be a mapping, not {kind_of(value)}")
            return None
        for key in value:
            if not isinstance(key, str) or key not in keys:
                text = str(key)
                hint = suggest(text, keys) or f" (expected one of: {one_of(keys)})"
                self.add(path + (text,), f"unknown key {text!r}{hint}")
        return value

    def items(self, value: Any, path: KeyPath) -> List[Tuple[KeyPath, Any]]:
        """``(item path, item)`` for the list at ``path``; ``None`` reads as ``[]``."""
        if value is None:
            return []
        if not isinstance(value, list):
            self.add(path, f"must be a list, not {kind_of(value)}")
            return []
        return [(path + (i,), item) for i, item in enumerate(value)]

    def field(
        self,
        m: Mapping[str, Any],
        key: str,
        path: KeyPath,
        default: T,
        convert: Callable[[Any], T],
        *,
        required: bool = False,
    ) -> T:
        """``convert(m[key])``, or ``default`` when absent (or invalid: the ValueError is recorded)."""
        if key not in m:
            if required:
                self.add(path + (key,), _MISSING)
            return default
        try:
            return convert(m[key])
        except ValueError as error:
            self.add(path + (key,), str(error))
            return default

    def string(self, m: Mapping[str, Any], key: str, path: KeyPath, default: str = "") -> str:
        return self.field(m, key, path, default, as_string)

    def boolean(self, m: Mapping[str, Any], key: str, path: KeyPath, default: bool) -> bool:
        return self.field(m, key, path, default, as_bool)

    def integer(
        self, m: Mapping[str, Any], key: str, path: KeyPath, default: int, low: int, high: int
    ) -> int:
        return self.field(m, key, path, default, lambda v: as_int(v, low, high))

    def duration(self, m: Mapping[str, Any], key: str, path: KeyPath, default: float, *,
                 low: float = 0.0, high: float = MAX_SETTING_DURATION) -> float:
        """A duration above 0s within ``[low, high]`` seconds (``default`` when absent or bad)."""
        return self.field(m, key, path, default, lambda v: as_duration(v, low, high))

    def bounded_duration(self, m: Mapping[str, Any], key: str, path: KeyPath, default: float,
                         high: float) -> float:
        """A positive duration of at most ``high`` seconds."""
        def convert(value: Any) -> float:
            seconds = as_positive_duration(value)
            if seconds > high:
                raise ValueError(f"must be at most {high:g}s (got {seconds:g}s)")
            return seconds
        return self.field(m, key, path, default, convert)

    def choice(
        self,
        m: Mapping[str, Any],
        key: str,
        path: KeyPath,
        default: str,
        choices: Sequence[str],
        what: str,
        aliases: Optional[Mapping[str, str]] = None,
    ) -> str:
        return self.field(m, key, path, default, lambda v: as_choice(v, choices, what, aliases))

    # -- sections ----------------------------------------------------------

    def config(self, data: Any, filename: str) -> Config:
        if data is not None and not isinstance(data, dict):
            self.add(
                (),
                f"the file must be a mapping with the sections {one_of(SECTIONS)}, not {kind_of(data)}",
            )
            return Config(source=filename)
        top = self.section(data, (), SECTIONS) or {}
        dns = self.dns(top.get("dns"), ("dns",))
        logging = self.logging(top.get("logging"), ("logging",))
        metrics = self.metrics(top.get("metrics"), ("metrics",))
        api = self.api(top.get("api"), ("api",))
        geoip = self.geoip(top.get("geoip"), ("geoip",))
        regions = self.regions(top.get("regions"), ("regions",))
        domains = self.domains(top.get("domains"), ("domains",), [r.name for r in regions],
                               bool(geoip.database))
        cluster = self.cluster(top.get("cluster"), ("cluster",))
        if cluster.mode == "cluster":
            # The file itself asks for cluster mode: hold it to cluster rules
            # now (the command line repeats this after applying its flags).
            reported = {path for path, _ in self.issues}
            for path, message in cluster_issues(cluster):
                if path not in reported:
                    self.add(path, message)
        return Config(
            dns=dns,
            logging=logging,
            metrics=metrics,
            api=api,
            regions=regions,
            domains=domains,
            cluster=cluster,
            geoip=geoip,
            source=filename,
        )

    def dns(self, value: Any, path: KeyPath) -> DNSConfig:
        m = self.section(value, path, _DNS_KEYS)
        if m is None:
            return DNSConfig()
        d = DNSConfig()
        return DNSConfig(
            listen_address=self.field(m, "listen_address", path, d.listen_address, as_listen),
            default_ttl=self.integer(m, "default_ttl", path, d.default_ttl, 0, MAX_TTL),
            return_last_healthy=self.boolean(m, "return_last_healthy", path, False),
            zones=self.zones(m.get("zones"), path + ("zones",)),
            nsid=self.field(m, "nsid", path, d.nsid, as_nsid),
            tcp_max_connections=self.integer(m, "tcp_max_connections", path, d.tcp_max_connections,
                                             1, MAX_TCP_CONNECTIONS),
            tcp_max_connections_per_source=self.integer(
                m, "tcp_max_connections_per_source", path, d.tcp_max_connections_per_source,
                1, MAX_TCP_CONNECTIONS),
        )

    def zones(self, value: Any, path: KeyPath) -> Tuple[ZoneConfig, ...]:
        zones: List[ZoneConfig] = []
        first: Dict[str, KeyPath] = {}
        for zpath, item in self.items(value, path):
            m = self.section(item, zpath, _ZONE_KEYS)
            if m is None:
                continue
            name = self.field(m, "name", zpath, "", as_dns_name, required=True)
            if name:
                if name in first:
                    self.add(zpath + ("name",), f"duplicate zone {name!r} (also {format_path(first[name])})")
                else:
                    first[name] = zpath
            nameservers = self.nameservers(m.get("nameservers"), zpath + ("nameservers",), name)
            soa = self.soa(m.get("soa"), zpath + ("soa",), name, nameservers)
            zones.append(ZoneConfig(name=name, soa=soa, nameservers=nameservers))
        return tuple(zones)

    def nameservers(self, value: Any, path: KeyPath, zone: str) -> Tuple[NameserverConfig, ...]:
        result: List[NameserverConfig] = []
        seen: Dict[str, KeyPath] = {}
        for npath, item in self.items(value, path):
            m = self.section(item, npath, _NAMESERVER_KEYS)
            if m is None:
                continue
            name = self.field(m, "name", npath, "", as_dns_name, required=True)
            address: Optional[str] = None
            if m.get("address") is not None:
                address = self.field(m, "address", npath, None, as_ip)
            elif name and zone and within(name, zone):
                self.add(
                    npath + ("address",),
                    f"missing: {name} is inside zone {zone}, so it needs an address (glue)",
                )
            if name in seen:
                self.add(npath + ("name",), f"duplicate nameserver {name!r} (also {format_path(seen[name])})")
            elif name:
                seen[name] = npath
            result.append(NameserverConfig(name=name, address=address))
        return tuple(result)

    def soa(self, value: Any, path: KeyPath, zone: str, nameservers: Sequence[NameserverConfig]) -> SOAConfig:
        default_mname = nameservers[0].name if nameservers and nameservers[0].name else f"ns1.{zone}"
        m = self.section(value, path, _SOA_KEYS) or {}
        d = SOAConfig(mname=default_mname, rname=f"hostmaster.{zone}")
        return SOAConfig(
            mname=self.field(m, "mname", path, d.mname, as_dns_name),
            rname=self.field(m, "rname", path, d.rname, as_mailbox),
            refresh=self.integer(m, "refresh", path, d.refresh, 0, MAX_TTL),
            retry=self.integer(m, "retry", path, d.retry, 0, MAX_TTL),
            expire=self.integer(m, "expire", path, d.expire, 0, MAX_TTL),
            minimum=self.integer(m, "minimum", path, d.minimum, 0, MAX_TTL),
        )

    def logging(self, value: Any, path: KeyPath) -> LoggingConfig:
        m = self.section(value, path, _LOGGING_KEYS)
        if m is None:
            return LoggingConfig()
        return LoggingConfig(
            level=self.choice(m, "level", path, "info", LOG_LEVELS, "log level", {"warning": "warn"}),
            format=self.choice(m, "format", path, "json", LOG_FORMATS, "log format"),
        )

    def metrics(self, value: Any, path: KeyPath) -> MetricsConfig:
        m = self.section(value, path, _METRICS_KEYS)
        if m is None:
            return MetricsConfig()
        d = MetricsConfig()
        return MetricsConfig(
            enabled=self.boolean(m, "enabled", path, d.enabled),
            address=self.field(m, "address", path, d.address, as_listen),
            allowed_networks=self.networks(m, "allowed_networks", path, d.allowed_networks),
            **self.listener_bounds(m, path, d),
        )

    def listener_bounds(self, m: Mapping[str, Any], path: KeyPath, d: Any) -> Dict[str, Any]:
        """The bounds every HTTP listener has (``_LISTENER_KEYS``), defaults from ``d``."""
        bounds: Dict[str, Any] = {
            key: self.integer(m, key, path, getattr(d, key), 1, MAX_LISTENER_CONNECTIONS)
            for key in ("max_connections", "max_connections_per_source", "max_connection_rate")}
        bounds["request_timeout"] = self.bounded_duration(m, "request_timeout", path, d.request_timeout,
                                                          MAX_REQUEST_TIMEOUT)
        return bounds

    def api(self, value: Any, path: KeyPath) -> APIConfig:
        m = self.section(value, path, _API_KEYS)
        if m is None:
            return APIConfig()
        d = APIConfig()
        tokens = self.tokens(m.get("tokens"), path + ("tokens",))
        return APIConfig(
            enabled=self.boolean(m, "enabled", path, d.enabled),
            address=self.field(m, "address", path, d.address, as_listen),
            allowed_networks=self.networks(m, "allowed_networks", path, d.allowed_networks),
            trust_proxy_headers=self.boolean(m, "trust_proxy_headers", path, d.trust_proxy_headers),
            trusted_proxies=self.networks(m, "trusted_proxies", path, d.trusted_proxies),
            tokens=tokens.get("admin", ()),
            drain_tokens=tokens.get("drain", ()),
            **self.listener_bounds(m, path, d),
            max_body_bytes=self.integer(m, "max_body_bytes", path, d.max_body_bytes, 1024,
                                        MAX_BODY_BYTES),
        )

    def networks(
        self, m: Mapping[str, Any], key: str, path: KeyPath, default: Tuple[IPNetwork, ...]
    ) -> Tuple[IPNetwork, ...]:
        if key not in m:
            return default
        result: List[IPNetwork] = []
        for npath, item in self.items(m[key], path + (key,)):
            try:
                result.append(as_network(item))
            except ValueError as error:
                self.add(npath, str(error))
        return tuple(result)

    def tokens(self, value: Any, path: KeyPath) -> Dict[str, Tuple[str, ...]]:
        """The tokens of ``api.tokens`` by scope.

        An item is a token (scope ``admin``) or ``{token: ..., scope: admin|drain}``.
        """
        result: Dict[str, List[str]] = {}
        for tpath, item in self.items(value, path):
            scope = "admin"
            if isinstance(item, dict):
                m = self.section(item, tpath, _TOKEN_KEYS)
                if m is None:
                    continue
                if "token" not in m:
                    self.add(tpath + ("token",), _MISSING)
                    continue
                scope = self.choice(m, "scope", tpath, "admin", TOKEN_SCOPES, "token scope")
                tpath, item = tpath + ("token",), m["token"]
            if not isinstance(item, str):
                self.add(tpath, f"a token must be a string, not {kind_of(item, reveal=False)}")
            elif not item.strip():
                self.add(tpath, "a token must not be empty")
            elif any(c.isspace() for c in item):
                self.add(tpath, "a token must not contain spaces")
            else:
                result.setdefault(scope, []).append(item)
        return {scope: tuple(tokens) for scope, tokens in result.items()}

    def regions(self, value: Any, path: KeyPath) -> Tuple[RegionConfig, ...]:
        regions: List[RegionConfig] = []
        first: Dict[str, KeyPath] = {}
        for rpath, item in self.items(value, path):
            m = self.section(item, rpath, _REGION_KEYS)
            if m is None:
                continue
            name = self.field(m, "name", rpath, "", as_region_name, required=True)
            if name:
                if name in first:
                    self.add(
                        rpath + ("name",), f"duplicate region {name!r} (also {format_path(first[name])})"
                    )
                else:
                    first[name] = rpath
            if "servers" not in m:
                # An empty list is fine (a region fed only by agents, SPEC §8),
                # but it has to be said: a forgotten key is a typo.
                self.add(
                    rpath + ("servers",),
                    f"{_MISSING}; write 'servers: []' for a region filled only by agents",
                )
            servers = self.servers(m.get("servers"), rpath + ("servers",))
            health = self.health_check(m.get("health_check"), rpath + ("health_check",))
            defaults = RegionConfig(name="", servers=())
            slow_start = self.field(m, "slow_start", rpath, defaults.slow_start,
                                    lambda v: as_optional_duration(v, MAX_SLOW_START))
            hysteresis = self.field(m, "latency_hysteresis", rpath, defaults.latency_hysteresis,
                                    as_hysteresis)
            regions.append(RegionConfig(name=name, servers=servers, health_check=health,
                                        slow_start=slow_start, latency_hysteresis=hysteresis))
        return tuple(regions)

    def servers(self, value: Any, path: KeyPath) -> Tuple[ServerConfig, ...]:
        servers: List[ServerConfig] = []
        first: Dict[str, KeyPath] = {}
        for spath, item in self.items(value, path):
            m = self.section(item, spath, _SERVER_KEYS)
            if m is None:
                continue
            address = self.field(m, "address", spath, "", as_server_address, required=True)
            if address:
                if address in first:
                    self.add(
                        spath + ("address",),
                        f"duplicate server address {address} in this region"
                        f" (also {format_path(first[address])})",
                    )
                else:
                    first[address] = spath
            servers.append(
                ServerConfig(
                    address=address,
                    port=self.integer(m, "port", spath, 80, 1, 65535),
                    weight=self.integer(m, "weight", spath, 100, 0, 1000),
                    host=self.string(m, "host", spath, ""),
                )
            )
        return tuple(servers)

    def health_check(self, value: Any, path: KeyPath, keys: Any = None,
                     defaults: Optional[HealthCheckConfig] = None) -> HealthCheckConfig:
        """A health_check section (``keys``: the accepted keys; ``defaults``: values of absent keys)."""
        m = self.section(value, path, _HEALTH_KEYS if keys is None else keys)
        d = defaults if defaults is not None else HealthCheckConfig()
        if m is None:
            return d
        before = len(self.issues)
        interval = self.duration(m, "interval", path, d.interval, low=MIN_CHECK_INTERVAL,
                                 high=MAX_CHECK_INTERVAL)
        timeout = self.duration(m, "timeout", path, d.timeout, high=MAX_CHECK_TIMEOUT)
        if len(self.issues) == before and timeout >= interval:
            self.add(
                path + ("timeout",),
                f"must be less than interval ({format_duration(timeout)} >= {format_duration(interval)})",
            )
        return HealthCheckConfig(
            type=self.choice(m, "type", path, d.type, CHECK_TYPES, "check type"),
            interval=interval,
            timeout=timeout,
            path=self.field(m, "path", path, d.path, as_url_path),
            host=self.string(m, "host", path, d.host),
            tls_verify=self.boolean(m, "tls_verify", path, d.tls_verify),
            failure_threshold=self.integer(m, "failure_threshold", path, d.failure_threshold, 1, 10),
            success_threshold=self.integer(m, "success_threshold", path, d.success_threshold, 1, 10),
        )

    def domains(self, value: Any, path: KeyPath, region_names: Sequence[str],
                geoip: bool = False) -> Tuple[DomainConfig, ...]:
        domains: List[DomainConfig] = []
        first: Dict[str, KeyPath] = {}
        known = set(region_names)
        for dpath, item in self.items(value, path):
            m = self.section(item, dpath, _DOMAIN_KEYS)
            if m is None:
                continue
            name = self.field(m, "name", dpath, "", as_dns_name, required=True)
            if name:
                if name in first:
                    self.add(
                        dpath + ("name",), f"duplicate domain {name!r} (also {format_path(first[name])})"
                    )
                else:
                    first[name] = dpath
            algorithm = self.choice(
                m, "routing_algorithm", dpath, "round-robin", ROUTING_ALGORITHMS, "routing algorithm"
            )
            regions: List[str] = []
            if "regions" not in m:
                self.add(dpath + ("regions",), _MISSING)
            else:
                items = self.items(m["regions"], dpath + ("regions",))
                if not items and isinstance(m["regions"], (list, type(None))):
                    self.add(dpath + ("regions",), "must name at least one region")
                for ipath, region in items:
                    if not isinstance(region, str):
                        self.add(ipath, f"must be a region name, not {kind_of(region)}")
                    elif region not in known:
                        self.add(ipath, f"unknown region {region!r}{suggest(region, region_names)}")
                    elif region in regions:
                        self.add(ipath, f"region {region!r} is listed twice")
                    else:
                        regions.append(region)
            ttl = None if m.get("ttl") is None else self.integer(m, "ttl", dpath, 0, 0, MAX_TTL)
            topology: Tuple[TopologyRule, ...] = ()
            if m.get("topology") is not None:
                if algorithm != "geolocation":
                    self.add(dpath + ("topology",),
                             f"only used by routing_algorithm: geolocation (this domain uses {algorithm})")
                topology = self.topology(m["topology"], dpath + ("topology",), regions, geoip)
            answer_count = self.integer(m, "answer_count", dpath, 1, 1, MAX_ANSWER_COUNT)
            when_all_down: Optional[str] = None
            if m.get("when_all_down") is not None:
                when_all_down = self.choice(m, "when_all_down", dpath, "servfail", ALL_DOWN_POLICIES,
                                            "when_all_down policy")
            fallback = self.addresses(m, "fallback_addresses", dpath)
            if when_all_down == "fallback" and not fallback and not self._reported(dpath + ("fallback_addresses",)):
                self.add(dpath + ("fallback_addresses",),
                         "required (at least one address) with when_all_down: fallback")
            domains.append(
                DomainConfig(name=name, regions=tuple(regions), routing_algorithm=algorithm, ttl=ttl,
                             topology=topology, answer_count=answer_count, when_all_down=when_all_down,
                             fallback_addresses=fallback)
            )
        return tuple(domains)

    def _reported(self, path: KeyPath) -> bool:
        """Whether an issue was already recorded at ``path`` or below it."""
        return any(issue[:len(path)] == path for issue, _ in self.issues)

    def addresses(self, m: Mapping[str, Any], key: str, path: KeyPath) -> Tuple[str, ...]:
        """A list of server addresses at ``m[key]`` (canonical, no duplicates)."""
        result: List[str] = []
        for apath, item in self.items(m.get(key), path + (key,)):
            try:
                address = as_server_address(item)
            except ValueError as error:
                self.add(apath, str(error))
                continue
            if address in result:
                self.add(apath, f"{address} is listed twice")
            else:
                result.append(address)
        return tuple(result)

    def topology(self, value: Any, path: KeyPath, domain_regions: Sequence[str],
                 geoip: bool) -> Tuple[TopologyRule, ...]:
        """``domains[].topology``: rules of one selector each and a region order from the domain's regions."""
        rules: List[TopologyRule] = []
        networks_seen: Dict[IPNetwork, KeyPath] = {}
        for rpath, item in self.items(value, path):
            m = self.section(item, rpath, _TOPOLOGY_KEYS)
            if m is None:
                continue
            selectors = [key for key in _SELECTORS if key in m]
            if len(selectors) != 1:
                self.add(rpath, "needs exactly one of networks, countries or continents"
                         + (f" (has {', '.join(selectors)})" if selectors else ""))
            regions: List[str] = []
            if "regions" not in m:
                self.add(rpath + ("regions",), _MISSING)
            else:
                items = self.items(m["regions"], rpath + ("regions",))
                if not items and isinstance(m["regions"], (list, type(None))):
                    self.add(rpath + ("regions",), "must name at least one region")
                for ipath, region in items:
                    if not isinstance(region, str):
                        self.add(ipath, f"must be a region name, not {kind_of(region)}")
                    elif region not in domain_regions:
                        self.add(ipath, f"region {region!r} is not one of this domain's regions"
                                        f" ({one_of(domain_regions) or 'none'})")
                    elif region in regions:
                        self.add(ipath, f"region {region!r} is listed twice")
                    else:
                        regions.append(region)
            networks: List[IPNetwork] = []
            for npath, item_value in self.items(m.get("networks"), rpath + ("networks",)):
                try:
                    network = as_network(item_value)
                except ValueError as error:
                    self.add(npath, str(error))
                    continue
                if network in networks_seen:
                    self.add(npath, f"network {network} is listed twice (also {format_path(networks_seen[network])})")
                    continue
                networks_seen[network] = npath
                networks.append(network)
            codes: Dict[str, List[str]] = {"countries": [], "continents": []}
            for key in ("countries", "continents"):
                if key not in m:
                    continue
                if not geoip:
                    self.add(rpath + (key,), "needs geoip.database (a MaxMind-format file) to be set")
                    continue
                what, choices = ("country", None) if key == "countries" else ("continent", CONTINENTS)
                for cpath, code_value in self.items(m[key], rpath + (key,)):
                    try:
                        code = as_code(code_value, what, choices)
                    except ValueError as error:
                        self.add(cpath, str(error))
                        continue
                    if code not in codes[key]:
                        codes[key].append(code)
            if len(selectors) == 1 and not (networks or codes["countries"] or codes["continents"]) \
                    and not self._reported(rpath):
                self.add(rpath + (selectors[0],), "must list at least one entry")
            rules.append(TopologyRule(regions=tuple(regions), networks=tuple(networks),
                                      countries=tuple(codes["countries"]),
                                      continents=tuple(codes["continents"])))
        return tuple(rules)

    def geoip(self, value: Any, path: KeyPath) -> GeoIPConfig:
        m = self.section(value, path, _GEOIP_KEYS)
        if m is None:
            return GeoIPConfig()
        database = self.string(m, "database", path, "").strip()
        if database and not os.path.isfile(database):
            self.add(path + ("database",), f"{database!r} is not a file (a MaxMind-format .mmdb database)")
        elif database:
            try:
                GeoIPLookup(database).close()  # readable and really a MaxMind database
            except GeoIPError as error:
                self.add(path + ("database",), str(error))
        return GeoIPConfig(database=database)

    def cluster(self, value: Any, path: KeyPath) -> ClusterConfig:
        m = self.section(value, path, _CLUSTER_KEYS)
        d = ClusterConfig()
        if m is None:
            return d
        return ClusterConfig(
            mode=self.choice(m, "mode", path, d.mode, CLUSTER_MODES, "mode"),
            node_name=self.string(m, "node_name", path, d.node_name),
            bind_address=self.field(m, "bind_address", path, d.bind_address, as_listen),
            advertise_address=self.field(m, "advertise_address", path, "", as_advertise),
            bootstrap=self.boolean(m, "bootstrap", path, d.bootstrap),
            join=self.join(m.get("join"), path + ("join",)),
            follower_queries=self.choice(
                m, "follower_queries", path, d.follower_queries, FOLLOWER_QUERIES, "follower_queries value"
            ),
            raft=self.raft(m.get("raft"), path + ("raft",)),
            gossip=self.gossip(m.get("gossip"), path + ("gossip",)),
            health_consensus=self.choice(
                m, "health_consensus", path, d.health_consensus, HEALTH_CONSENSUS_MODES, "health_consensus value"
            ),
            predictive_health=self.predictive(m.get("predictive_health"), path + ("predictive_health",)),
            overwatch=self.overwatch(m.get("overwatch"), path + ("overwatch",)),
            anycast_vip=self.field(m, "anycast_vip", path, "", as_optional_ip),
            demotion_lag_bound=self.duration(m, "demotion_lag_bound", path, d.demotion_lag_bound,
                                             low=MIN_DEMOTION_LAG_BOUND, high=MAX_DEMOTION_LAG_BOUND),
            demotion_hold_down=self.duration(m, "demotion_hold_down", path, d.demotion_hold_down,
                                             low=MIN_DEMOTION_HOLD_DOWN, high=MAX_DEMOTION_HOLD_DOWN),
        )

    def join(self, value: Any, path: KeyPath) -> Tuple[str, ...]:
        result: List[str] = []
        first: Dict[str, KeyPath] = {}
        for jpath, item in self.items(value, path):
            if not isinstance(item, str):
                self.add(jpath, f"must be a string 'host:port', not {kind_of(item)}")
                continue
            try:
                peer = format_host_port(*parse_host_port(item))
            except ValueError as error:
                self.add(jpath, str(error))
                result.append(item)  # kept so cluster checks see the same entry
                continue
            if peer in first:
                self.add(jpath, f"{peer} is listed twice (also {format_path(first[peer])})")
                continue
            first[peer] = jpath
            result.append(peer)
        return tuple(result)

    def raft(self, value: Any, path: KeyPath) -> RaftConfig:
        m = self.section(value, path, _RAFT_KEYS)
        d = RaftConfig()
        if m is None:
            return d
        before = len(self.issues)
        heartbeat = self.duration(m, "heartbeat_timeout", path, d.heartbeat_timeout,
                                  low=MIN_RAFT_HEARTBEAT, high=MAX_RAFT_TIMEOUT)
        election = self.duration(m, "election_timeout", path, d.election_timeout,
                                 low=MIN_RAFT_ELECTION, high=MAX_RAFT_TIMEOUT)
        if len(self.issues) == before and election < heartbeat:
            self.add(
                path + ("election_timeout",),
                "must be at least heartbeat_timeout"
                f" ({format_duration(election)} < {format_duration(heartbeat)})",
            )
        return RaftConfig(
            data_dir=self.field(m, "data_dir", path, d.data_dir, as_nonempty_string),
            heartbeat_timeout=heartbeat,
            election_timeout=election,
            snapshot_interval=self.duration(m, "snapshot_interval", path, d.snapshot_interval,
                                            low=MIN_SNAPSHOT_INTERVAL, high=MAX_SNAPSHOT_INTERVAL),
            snapshot_threshold=self.integer(m, "snapshot_threshold", path, d.snapshot_threshold, 1, MAX_TTL),
        )

    def gossip(self, value: Any, path: KeyPath) -> GossipConfig:
        m = self.section(value, path, _GOSSIP_KEYS)
        if m is None:
            return GossipConfig()
        return GossipConfig(encryption_key=self.field(m, "encryption_key", path, "", as_encryption_key))

    def predictive(self, value: Any, path: KeyPath) -> PredictiveHealthConfig:
        m = self.section(value, path, _PREDICTIVE_KEYS)
        d = PredictiveHealthConfig()
        if m is None:
            return d
        return PredictiveHealthConfig(
            enabled=self.boolean(m, "enabled", path, d.enabled),
            cpu=self.signal(m.get("cpu"), path + ("cpu",), d.cpu, _SIGNAL_KEYS),
            memory=self.signal(m.get("memory"), path + ("memory",), d.memory, _SIGNAL_KEYS),
            error_rate=self.signal(
                m.get("error_rate"), path + ("error_rate",), d.error_rate, _ERROR_RATE_KEYS
            ),
        )

    def signal(
        self, value: Any, path: KeyPath, d: PredictiveSignalConfig, keys: Sequence[str]
    ) -> PredictiveSignalConfig:
        m = self.section(value, path, keys)
        if m is None:
            return d
        window = d.window
        if "window" in keys:
            window = self.duration(m, "window", path, d.window or 60.0, low=MIN_SIGNAL_WINDOW,
                                   high=MAX_SIGNAL_WINDOW)
        return PredictiveSignalConfig(
            threshold=self.field(m, "threshold", path, d.threshold, as_percent),
            bleed_duration=self.duration(m, "bleed_duration", path, d.bleed_duration,
                                         high=MAX_BLEED_DURATION),
            window=window,
        )

    def overwatch(self, value: Any, path: KeyPath) -> OverwatchConfig:
        m = self.section(value, path, _OVERWATCH_KEYS)
        d = OverwatchConfig()
        if m is None:
            return d
        return OverwatchConfig(
            external_check_interval=self.duration(
                m, "external_check_interval", path, d.external_check_interval,
                low=MIN_EXTERNAL_CHECK_INTERVAL, high=MAX_EXTERNAL_CHECK_INTERVAL,
            ),
            veto_mode=self.choice(m, "veto_mode", path, d.veto_mode, VETO_MODES, "veto mode"),
            veto_threshold=self.integer(m, "veto_threshold", path, d.veto_threshold, 1, 1000),
        )



def cluster_issues(cluster: ClusterConfig) -> List[Issue]:
    """What cluster mode needs from ``cluster``; nothing when the mode is standalone."""
    if cluster.mode != "cluster":
        return []
    issues: List[Issue] = []
    if not cluster.gossip.encryption_key:
        issues.append(
            (
                ("cluster", "gossip", "encryption_key"),
                "required in cluster mode (it authenticates and encrypts Raft and gossip traffic);"
                f" {KEYGEN_HINT}",
            )
        )
    if not cluster.advertise_address and cluster.bind_address.is_wildcard:
        issues.append(
            (
                ("cluster", "advertise_address"),
                f"required in cluster mode when bind_address is a wildcard ({cluster.bind_address}):"
                f" set this node's own IP:port, e.g. 192.0.2.11:{cluster.bind_address.port};"
                " it is the node's identity in the cluster",
            )
        )
    peers: Set[str] = set()
    for index, entry in enumerate(cluster.join):
        try:
            peers.add(format_host_port(*parse_host_port(entry)))
        except ValueError as error:
            issues.append((("cluster", "join", index), str(error)))
    # How many members is knowable only as a lower bound: `join` lists
    # seeds, not necessarily every member, and a shared file may or may not
    # list this node itself.  So an even count is never an error here (a
    # 4-node cluster may be joined through 3 seeds), but more than 7 distinct
    # members (the seeds plus this node when its identity is known and not
    # among them) is.
    own = cluster.advertise_address or ("" if cluster.bind_address.is_wildcard else str(cluster.bind_address))
    members = len(peers | {own}) if own else len(peers)
    if members > MAX_CLUSTER_MEMBERS:
        issues.append(
            (
                ("cluster", "join"),
                f"names {members} cluster members"
                f"{' (counting this node)' if own and own not in peers else ''};"
                f" a cluster has at most {MAX_CLUSTER_MEMBERS} members",
            )
        )
    return issues

