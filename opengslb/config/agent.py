"""The agent's configuration file (SPEC §8): ``opengslb agent --config agent.yaml``.

Read and validated like the main configuration, with the same machinery
(:mod:`opengslb.config.schema`): unknown keys are errors, every problem names
its key path and line (``agent.yaml:7: services[0].port: ...``), durations
are Go-style.  The file always holds a secret (``api.token``), so a file
readable by every user is refused (``chmod 600 FILE``).

::

    api:
      endpoints: ["http://10.0.1.10:8080", "http://10.0.1.11:8080"]  # any cluster nodes (required)
      token: "..."                                                   # a token of api.tokens (required)
    name: ""                  # this agent's name, sent with registrations (default: the host name)
    heartbeat_interval: 5s
    services:                 # at least one
      - region: us-east-1     # a region of the cluster's configuration (required)
        address: 10.0.2.50    # required
        port: 8080            # required
        weight: 100           # 0..1000
        ttl: 30s              # expiry when heartbeats stop; at least 2 x heartbeat_interval
        check: {type: http, path: /health, host: "", interval: 5s, timeout: 2s,
                tls_verify: false, failure_threshold: 3, success_threshold: 2}
                              # optional: without a check the agent makes no health
                              # claim and the cluster's own checks judge the service
    predictive_health:        # thresholds (percent); default to the cluster's defaults
      cpu: {threshold: 90}
      memory: {threshold: 85}
      error_rate: {threshold: 10, window: 60s}
    logging: {level: info, format: json}
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Union
from urllib.parse import urlsplit

from opengslb.config.durations import format_duration
from opengslb.config.load import read_config_file
from opengslb.config.model import HealthCheckConfig, LoggingConfig
from opengslb.config.problems import ConfigError, KeyPath, Problem, format_path
from opengslb.config.schema import MAX_SIGNAL_WINDOW, MIN_SIGNAL_WINDOW, Checker
from opengslb.config.values import as_percent, as_region_name, as_server_address, kind_of
from opengslb.config.yamlread import SyntaxProblem, load_plain, locate

__all__ = [
    "AgentAPIConfig",
    "AgentConfig",
    "AgentServiceConfig",
    "AgentThresholds",
    "DEFAULT_AGENT_CONFIG",
    "load_agent_config",
    "parse_agent_config",
]

DEFAULT_AGENT_CONFIG = "/etc/opengslb/agent.yaml"

_TOP_KEYS = ("api", "name", "heartbeat_interval", "services", "predictive_health", "logging")
_API_KEYS = ("endpoints", "token")
_SERVICE_KEYS = ("region", "address", "port", "weight", "ttl", "check")
_CHECK_KEYS = ("type", "path", "host", "interval", "timeout", "tls_verify", "failure_threshold",
               "success_threshold")
_PREDICTIVE_KEYS = ("cpu", "memory", "error_rate")
_THRESHOLD_KEYS = ("threshold",)
_ERROR_RATE_KEYS = ("threshold", "window")

#: The agent's own check defaults (a check of the local service, more often than the cluster's).
DEFAULT_CHECK = HealthCheckConfig(interval=5.0, timeout=2.0)

#: Bounds (seconds) of the agent's durations.  A service's ttl is at most the
#: API's limit for registrations (7 days): a longer one would be refused at
#: every heartbeat, so it is refused here, when the file is read.
MIN_HEARTBEAT_INTERVAL, MAX_HEARTBEAT_INTERVAL = 0.1, 3600.0
MIN_SERVICE_TTL, MAX_SERVICE_TTL = 1.0, 7 * 86400.0


@dataclass(frozen=True)
class AgentAPIConfig:
    """Where the cluster's API is and the token to use."""

    endpoints: Tuple[str, ...]  # base URLs without a trailing slash, e.g. "http://10.0.1.10:8080"
    token: str


@dataclass(frozen=True)
class AgentServiceConfig:
    """One service this agent registers."""

    region: str
    address: str
    port: int
    weight: int = 100
    ttl: float = 30.0
    check: Optional[HealthCheckConfig] = None  # None: no local check, so no health claim


@dataclass(frozen=True)
class AgentThresholds:
    """Predictive-health thresholds in percent (SPEC §7.6); the defaults are the cluster's."""

    cpu: float = 90.0
    memory: float = 85.0
    error_rate: float = 10.0
    error_rate_window: float = 60.0


@dataclass(frozen=True)
class AgentConfig:
    """The whole agent file, validated."""

    api: AgentAPIConfig
    services: Tuple[AgentServiceConfig, ...]
    heartbeat_interval: float = 5.0
    name: str = ""
    predictive_health: AgentThresholds = field(default_factory=AgentThresholds)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    source: str = "<built-in>"


def _as_endpoint(value: Any) -> str:
    """An API base URL: http(s)://host[:port] (a path of "/" at most); ValueError otherwise."""
    if not isinstance(value, str):
        raise ValueError(f"must be a URL such as 'http://10.0.1.10:8080', not {kind_of(value)}")
    text = value.strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{text!r} must start with http:// or https://")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{text!r} has a bad port") from None
    if not parts.hostname:
        raise ValueError(f"{text!r} has no host")
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(f"{text!r}: port {port} is outside 1-65535")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError(f"{text!r} must be just scheme://host:port (the API paths are added)")
    return f"{parts.scheme}://{parts.netloc}"


def _as_token(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {kind_of(value, reveal=False)}")
    if not value.strip():
        raise ValueError("must not be empty")
    if any(c.isspace() for c in value):
        raise ValueError("must not contain spaces")
    return value


class _AgentChecker(Checker):
    """The agent file's sections, on the main loader's field readers."""

    def agent(self, data: Any, filename: str) -> Optional[AgentConfig]:
        if not isinstance(data, dict):
            self.add((), f"the file must be a mapping with the keys {', '.join(_TOP_KEYS)}, "
                         f"not {kind_of(data)}")
            return None
        top = self.section(data, (), _TOP_KEYS) or {}
        api = self.api_section(top, ("api",))
        heartbeat = self.duration(top, "heartbeat_interval", (), 5.0, low=MIN_HEARTBEAT_INTERVAL,
                                  high=MAX_HEARTBEAT_INTERVAL)
        services = self.services(top, ("services",), heartbeat)
        return AgentConfig(
            api=api,
            services=services,
            heartbeat_interval=heartbeat,
            name=self.string(top, "name", (), ""),
            predictive_health=self.thresholds(top.get("predictive_health"), ("predictive_health",)),
            logging=self.logging(top.get("logging"), ("logging",)),
            source=filename,
        )

    def api_section(self, top: Dict[str, Any], path: KeyPath) -> AgentAPIConfig:
        if "api" not in top:
            self.add(path, "missing (required): the cluster's API endpoints and token")
            return AgentAPIConfig((), "")
        m = self.section(top["api"], path, _API_KEYS)
        if m is None:
            return AgentAPIConfig((), "")
        endpoints: List[str] = []
        if "endpoints" not in m:
            self.add(path + ("endpoints",), "missing (required): at least one cluster API URL")
        else:
            items = self.items(m["endpoints"], path + ("endpoints",))
            if not items and isinstance(m["endpoints"], (list, type(None))):
                self.add(path + ("endpoints",), "must list at least one cluster API URL")
            first: Dict[str, KeyPath] = {}
            for epath, item in items:
                try:
                    url = _as_endpoint(item)
                except ValueError as error:
                    self.add(epath, str(error))
                    continue
                if url in first:
                    self.add(epath, f"{url} is listed twice (also {format_path(first[url])})")
                    continue
                first[url] = epath
                endpoints.append(url)
        token = self.field(m, "token", path, "", _as_token, required=True)
        return AgentAPIConfig(tuple(endpoints), token)

    def services(self, top: Dict[str, Any], path: KeyPath, heartbeat: float
                 ) -> Tuple[AgentServiceConfig, ...]:
        if "services" not in top:
            self.add(path, "missing (required): the services this agent registers")
            return ()
        items = self.items(top["services"], path)
        if not items and isinstance(top["services"], (list, type(None))):
            self.add(path, "must list at least one service")
        result: List[AgentServiceConfig] = []
        first: Dict[Tuple[str, str, int], KeyPath] = {}
        for spath, item in items:
            m = self.section(item, spath, _SERVICE_KEYS)
            if m is None:
                continue
            region = self.field(m, "region", spath, "", as_region_name, required=True)
            address = self.field(m, "address", spath, "", as_server_address, required=True)
            port = self.integer(m, "port", spath, 0, 1, 65535) if "port" in m else 0
            if "port" not in m:
                self.add(spath + ("port",), "missing (required)")
            before = len(self.issues)
            ttl = self.duration(m, "ttl", spath, 30.0, high=MAX_SERVICE_TTL)
            if len(self.issues) == before and ttl < 2 * heartbeat:
                self.add(spath + ("ttl",),
                         f"must be at least twice heartbeat_interval ({format_duration(ttl)} < 2 x "
                         f"{format_duration(heartbeat)}), or one late heartbeat expires the service")
            elif len(self.issues) == before and ttl < MIN_SERVICE_TTL:
                self.add(spath + ("ttl",), f"must be at least 1s (got {format_duration(ttl)})")
            check = self.check(m.get("check"), spath + ("check",)) if m.get("check") is not None else None
            key = (region, address, port)
            if region and address and port:
                if key in first:
                    self.add(spath, f"{address}:{port} in {region} is listed twice "
                                    f"(also {format_path(first[key])})")
                else:
                    first[key] = spath
            result.append(AgentServiceConfig(region=region, address=address, port=port,
                                             weight=self.integer(m, "weight", spath, 100, 0, 1000),
                                             ttl=ttl, check=check))
        return tuple(result)

    def check(self, value: Any, path: KeyPath) -> Optional[HealthCheckConfig]:
        """The service's own check; None when the section is absent."""
        if value is None:
            return None
        return self.health_check(value, path, keys=_CHECK_KEYS, defaults=DEFAULT_CHECK)

    def thresholds(self, value: Any, path: KeyPath) -> AgentThresholds:
        m = self.section(value, path, _PREDICTIVE_KEYS)
        d = AgentThresholds()
        if m is None:
            return d
        cpu = self.section(m.get("cpu"), path + ("cpu",), _THRESHOLD_KEYS) or {}
        memory = self.section(m.get("memory"), path + ("memory",), _THRESHOLD_KEYS) or {}
        errors = self.section(m.get("error_rate"), path + ("error_rate",), _ERROR_RATE_KEYS) or {}
        return AgentThresholds(
            cpu=self.field(cpu, "threshold", path + ("cpu",), d.cpu, as_percent),
            memory=self.field(memory, "threshold", path + ("memory",), d.memory, as_percent),
            error_rate=self.field(errors, "threshold", path + ("error_rate",), d.error_rate, as_percent),
            error_rate_window=self.duration(errors, "window", path + ("error_rate",), d.error_rate_window,
                                            low=MIN_SIGNAL_WINDOW, high=MAX_SIGNAL_WINDOW),
        )


def _parse(text: str, filename: str) -> Tuple[Optional[AgentConfig], List[Problem]]:
    try:
        data = load_plain(text)
    except SyntaxProblem as problem:
        return None, [Problem(filename, problem.line, "", problem.message)]
    checker = _AgentChecker()
    config = checker.agent(data, filename)
    if not checker.issues and config is not None:
        return config, []
    return None, locate(text, filename, checker.issues)


def parse_agent_config(text: str, filename: str = "<string>") -> AgentConfig:
    """Parse and validate agent configuration text.

    :raises ConfigError: listing every problem (``file:line: key.path: message``).
    """
    config, problems = _parse(text, filename)
    if problems or config is None:
        raise ConfigError(problems)
    return config


def load_agent_config(path: Union[str, "os.PathLike[str]"]) -> Tuple[AgentConfig, List[str]]:
    """Read, check the permissions of, parse and validate an agent file.

    :returns: ``(config, warnings)``; a warning says when the file is
        writable by every user.
    :raises ConfigError: the file cannot be read or is not UTF-8; it is
        readable by every user (it holds ``api.token``: ``chmod 600 FILE``);
        and every validation problem.
    """
    name = os.fspath(path)
    text, mode = read_config_file(name, "agent configuration file")
    config, problems = _parse(text, name)
    if mode & 0o004:
        problems.insert(0, Problem(name, None, "", "holds a secret (api.token) but is readable by "
                                                   f"every user (mode {mode & 0o777:04o}); run: "
                                                   f"chmod 600 {name}"))
    if problems or config is None:
        raise ConfigError(problems)
    warnings: List[str] = []
    if mode & 0o002:
        warnings.append(f"{name}: writable by every user (mode {mode & 0o777:04o}); run: chmod 600 {name}")
    return config, warnings
