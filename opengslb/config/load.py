"""Read and validate the configuration file (SPEC §2) into a frozen :class:`Config`.

Public API::

    parse_config(text, filename="<string>") -> Config
    load_config(path) -> (Config, warnings)
    validate_cluster_requirements(config) -> [Problem]
    parse_listen_address(text) -> ListenAddress
    parse_host_port(text) -> (host, port)
    Problem, ConfigError

How it works, and why (a 2 MB, 10,000-domain file must load in well under
3 s, and a reload must not hold memory it does not need):

1. *Fast read.*  libyaml (``ruamel.yaml.clib``'s ``CParser``; ruamel's
   pure-Python parser when the extension is missing, which is several times
   slower) produces parser events, and :func:`_build` turns them straight
   into plain ``dict``/``list``/scalars, resolving plain scalars with ruamel's
   YAML 1.2 resolver (memoised by text).  ruamel's node tree and constructor,
   which take most of the time of ``YAML(typ="safe").load``, are skipped.
   Anything unusual (explicit tags, merge keys ``<<``, timestamps, ``0x1F``
   spellings, ...) makes the builder hand the text to ``YAML(typ="safe")``
   instead, so the data is always what ruamel's safe loader would produce.
2. *One validation pass* over the plain data collects every problem as
   ``(key path, message)`` and builds the model at the same time.
3. *Only when there are problems* is the text composed again into ruamel's
   node tree, whose marks give the line of each key path.  A valid file
   (the common case, and every reload) never pays for line numbers.  (The
   node tree is used rather than the round-trip loader: it carries the same
   positions and is several times faster to build, which matters when a
   2 MB file has one typo.)
"""

from __future__ import annotations

import base64
import binascii
import difflib
import ipaddress
import os
import re
import sys
from dataclasses import dataclass
from typing import (
    Any,
    Callable,
    Collection,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Set,
    Tuple,
    TypeVar,
    Union,
)

from ruamel.yaml import YAML
from ruamel.yaml.constructor import SafeConstructor
from ruamel.yaml.error import YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from ruamel.yaml.main import CParser  # libyaml's parser, or None without ruamel.yaml.clib
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.resolver import VersionedResolver

from opengslb.config.durations import format_duration, parse_duration
from opengslb.config.model import (
    APIConfig,
    ClusterConfig,
    Config,
    DNSConfig,
    DomainConfig,
    GossipConfig,
    HealthCheckConfig,
    IPNetwork,
    ListenAddress,
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
    ZoneConfig,
)
from opengslb.routing.registry import ALGORITHMS

__all__ = [
    "ConfigError",
    "Problem",
    "load_config",
    "parse_config",
    "parse_host_port",
    "parse_listen_address",
    "validate_cluster_requirements",
]

# ---------------------------------------------------------------------------
# Problems
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a configuration file.

    ``line`` is 1-based, or ``None`` when it is not known (a problem found
    after command-line flags were applied, an unreadable file, ...).
    ``path`` is the key path (``regions[0].health_check.timeout``), or ``""``
    for the file as a whole.
    """

    file: str
    line: Optional[int]
    path: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        if self.path:
            return f"{where}: {self.path}: {self.message}"
        return f"{where}: {self.message}"


class ConfigError(Exception):
    """A configuration that cannot be used; ``problems`` lists every reason."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems: List[Problem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


PathStep = Union[str, int]
KeyPath = Tuple[PathStep, ...]
Issue = Tuple[KeyPath, str]


def format_path(path: KeyPath) -> str:
    """``("regions", 0, "name")`` → ``"regions[0].name"``."""
    out: List[str] = []
    for step in path:
        if isinstance(step, int):
            out.append(f"[{step}]")
        else:
            out.append(("." if out else "") + step)
    return "".join(out)


# ---------------------------------------------------------------------------
# Reading YAML
# ---------------------------------------------------------------------------

_TAG = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL = (_TAG + t for t in ("str", "int", "float", "bool", "null"))
_SIMPLE_INT = re.compile(r"[-+]?[0-9]+")
_SIMPLE_FLOAT = re.compile(r"[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_UNSET = object()


class _SyntaxProblem(Exception):
    """The text is not a (single, well-formed) YAML document."""

    def __init__(self, line: Optional[int], message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


class _Unsupported(Exception):
    """The fast builder met something only ruamel's constructor handles."""


def _compose(text: str) -> Optional[Node]:
    """The node tree of the single YAML document in ``text`` (``None`` when empty).

    Used only to find line numbers.  Raises ruamel's ``YAMLError``.
    """
    root: Optional[Node] = YAML(typ="safe").compose(text)
    return root


def _scalar(node: ScalarNode) -> Any:
    """The Python value of a scalar node (core tags only, else :class:`_Unsupported`)."""
    return _convert(node.tag or "", node.value)


def _convert(tag: str, value: str) -> Any:
    """A resolved core-schema scalar as ruamel's SafeConstructor makes it.

    Raises :class:`_Unsupported` for other tags (timestamps, binary, merge
    keys, ...) and for spellings whose conversion is not a plain ``int()`` /
    ``float()`` (``0x1F``, ``1_000``, ``.inf``, ...).
    """
    if tag == _STR:
        return value
    if tag == _INT and _SIMPLE_INT.fullmatch(value):
        return int(value)
    if tag == _NULL:
        return None
    if tag == _BOOL and value.lower() in SafeConstructor.bool_values:
        return SafeConstructor.bool_values[value.lower()]
    if tag == _FLOAT and _SIMPLE_FLOAT.fullmatch(value):
        return float(value)
    raise _Unsupported(tag)


def _events(text: str) -> Iterator[Any]:
    """The parser events of ``text``: libyaml's when available, else ruamel's pure parser."""
    if CParser is None:
        yield from YAML(typ="safe", pure=True).parse(text)
        return
    parser = CParser(text)
    while True:
        event = parser.get_event()
        if event is None:
            return
        yield event
        if type(event) is StreamEndEvent:
            return


def _build(events: Iterable[Any]) -> Any:
    """Plain data from parser events: what ``YAML(typ="safe").load`` returns.

    Building straight from events skips ruamel's node tree and constructor,
    the slow part of a safe load.  Aliases yield the same object, as they do
    with ruamel.  Raises :class:`_Unsupported` for any explicit tag, merge
    key, complex key or unusual scalar (the caller then lets ruamel do it),
    :class:`_SyntaxProblem` for a duplicate key, an undefined alias or a
    second document.
    """
    resolver = VersionedResolver(version=None, loadumper=None)
    plain: Dict[str, Any] = {}  # plain scalar text → value; depends on the text only
    anchors: Dict[str, Any] = {}
    # One frame per open collection: [container, is_mapping, has_key, key]
    stack: List[List[Any]] = []
    root: Any = None
    documents = 0
    for event in events:
        kind = type(event)
        if kind is ScalarEvent:
            if event.tag is not None:
                raise _Unsupported(event.tag)
            if event.implicit[0]:
                text = event.value
                value = plain.get(text, _UNSET)
                if value is _UNSET:
                    tag = str(resolver.resolve(ScalarNode, text, (True, False)))
                    value = plain[text] = _convert(tag, text)
            else:
                value = event.value
            if event.anchor is not None:
                anchors[event.anchor] = value
        elif kind is MappingStartEvent or kind is SequenceStartEvent:
            if event.tag is not None:
                raise _Unsupported(event.tag)
            value = {} if kind is MappingStartEvent else []
            if event.anchor is not None:
                anchors[event.anchor] = value
        elif kind is MappingEndEvent or kind is SequenceEndEvent:
            stack.pop()
            continue
        elif kind is AliasEvent:
            if event.anchor not in anchors:
                raise _SyntaxProblem(
                    event.start_mark.line + 1, f"invalid YAML: undefined alias {event.anchor!r}"
                )
            value = anchors[event.anchor]
        elif kind is DocumentStartEvent:
            documents += 1
            if documents > 1:
                raise _SyntaxProblem(
                    event.start_mark.line + 1,
                    "invalid YAML: a second document ('---'); the file must hold exactly one",
                )
            continue
        else:  # stream start/end, document end
            continue

        if not stack:
            root = value
        else:
            frame = stack[-1]
            container = frame[0]
            if not frame[1]:
                container.append(value)
            elif frame[2]:
                container[frame[3]] = value
                frame[2] = False
            else:
                if isinstance(value, (dict, list)):
                    raise _Unsupported("complex key")
                if value in container:
                    raise _SyntaxProblem(
                        event.start_mark.line + 1, f"duplicate key {value!r} in this mapping"
                    )
                frame[2] = True
                frame[3] = value
                continue  # a key is never a collection to descend into
        if kind is MappingStartEvent:
            stack.append([value, True, False, None])
        elif kind is SequenceStartEvent:
            stack.append([value, False, False, None])
    return root


def _yaml_problem(error: YAMLError, text: str) -> _SyntaxProblem:
    """A ruamel error as a one-line message with its 1-based line."""
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    line: Optional[int] = None
    if mark is not None and getattr(mark, "line", None) is not None:
        line = mark.line + 1
    elif isinstance(getattr(error, "position", None), int):  # ReaderError
        line = text.count("\n", 0, error.position) + 1  # type: ignore[attr-defined]
    problem = getattr(error, "problem", None)
    context = getattr(error, "context", None)
    if problem:
        message = f"{context}: {problem}" if context else str(problem)
    else:
        message = str(error).splitlines()[0]
    return _SyntaxProblem(line, f"invalid YAML: {message}")


def _load_plain(text: str) -> Any:
    """``text`` as plain data, or :class:`_SyntaxProblem`."""
    try:
        try:
            return _build(_events(text))
        except _Unsupported:
            return YAML(typ="safe").load(text)
    except YAMLError as error:
        raise _yaml_problem(error, text) from None
    except RecursionError:
        raise _SyntaxProblem(None, "invalid YAML: nested too deeply") from None
    except ValueError:  # int() refuses integers longer than sys.get_int_max_str_digits()
        limit = sys.get_int_max_str_digits()
        match = re.search(f"[0-9]{{{limit + 1},}}", text)
        line = text.count("\n", 0, match.start()) + 1 if match else None
        raise _SyntaxProblem(
            line, f"invalid YAML: a number longer than {limit} digits cannot be read"
        ) from None


def _key_matches(node: Node, step: PathStep) -> bool:
    if not isinstance(node, ScalarNode):
        return False
    if node.value == step:
        return True
    try:
        return str(_scalar(node)) == step
    except _Unsupported:
        return False


def _line_of(root: Optional[Node], path: KeyPath) -> Optional[int]:
    """The 1-based line of ``path`` in the node tree.

    A key's own line for a mapping entry, an item's first line for a sequence
    item; when the path leaves the tree (a missing key), the line of the
    deepest part that exists.
    """
    if root is None:
        return None
    node: Node = root
    line: int = root.start_mark.line
    for step in path:
        if isinstance(node, MappingNode) and isinstance(step, str):
            entry = _find_key(node, step)
            if entry is None:
                break
            line = entry[0].start_mark.line
            node = entry[1]
        elif isinstance(node, SequenceNode) and isinstance(step, int):
            if not 0 <= step < len(node.value):
                break
            node = node.value[step]
            line = node.start_mark.line
        else:
            break
    return line + 1


def _find_key(node: MappingNode, step: str, depth: int = 0) -> Optional[Tuple[Node, Node]]:
    """The (key node, value node) for ``step``, looking through merge keys (``<<``)."""
    merged: List[Node] = []
    for key_node, value_node in node.value:
        if _key_matches(key_node, step):
            return key_node, value_node
        if key_node.tag == _TAG + "merge":
            merged.extend(value_node.value if isinstance(value_node, SequenceNode) else [value_node])
    if depth < 8:
        for other in merged:
            if isinstance(other, MappingNode):
                found = _find_key(other, step, depth + 1)
                if found is not None:
                    return found
    return None


# ---------------------------------------------------------------------------
# Value parsers shared with the command line
# ---------------------------------------------------------------------------


def _split_host_port(text: str, shape: str) -> Tuple[str, str, bool]:
    """``(host, port text, bracketed)``; ValueError naming the expected ``shape``."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] != ":":
            raise ValueError(f"{text!r} is not [IPv6]:port")
        return text[1:end], text[end + 2 :], True
    host, sep, port = text.rpartition(":")
    if not sep:
        raise ValueError(f"{text!r} has no port (expected {shape})")
    if ":" in host:
        raise ValueError(f"{text!r}: put an IPv6 address in brackets, e.g. '[{host}]:{port}'")
    return host, port, False


def _port(text: str, whole: str) -> int:
    """``text`` as a port 1-65535; ValueError naming ``whole`` (cut short when long) otherwise."""
    shown = repr(whole) if len(whole) <= 60 else repr(whole[:57]) + "..."
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"{shown}: port {text[:20]!r} is not a number")
    digits = text.lstrip("0")
    if len(digits) > 5:  # before int(): a 5,000-digit port must not cost a conversion
        raise ValueError(f"{shown}: port {digits[:10]}... ({len(digits)} digits) is outside 1-65535")
    port = int(text)
    if not 1 <= port <= 65535:
        raise ValueError(f"{shown}: port {port} is outside 1-65535")
    return port


def parse_listen_address(text: str) -> ListenAddress:
    """``"ip:port"``, ``":port"`` or ``"[v6]:port"`` → :class:`ListenAddress`.

    The host is an IP address (canonical form) or ``""`` for every local
    address; host names are refused (a listener binds an address).
    Raises ValueError with an operator-facing message.
    """
    host, port_text, bracketed = _split_host_port(text, "ip:port or :port, e.g. ':53'")
    port = _port(port_text, text)
    if not host:
        if bracketed:
            raise ValueError(f"{text!r}: empty brackets (write ':{port}' or '[::]:{port}')")
        return ListenAddress("", port)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{text!r}: {host!r} is not an IP address") from None
    if bracketed and address.version != 6:
        raise ValueError(f"{text!r}: brackets are for IPv6 addresses")
    return ListenAddress(str(address), port)


def parse_host_port(text: str) -> Tuple[str, int]:
    """``"host:port"`` with an IP address or a host name → ``(canonical host, port)``.

    Used for ``cluster.join`` (and ``--join``).  IP addresses come back in
    canonical form, names in lower case.  Raises ValueError.
    """
    host, port_text, bracketed = _split_host_port(text, "host:port, e.g. '192.0.2.12:7946'")
    port = _port(port_text, text)
    if not host:
        raise ValueError(f"{text!r} has no host")
    try:
        return str(ipaddress.ip_address(host)), port
    except ValueError:
        if bracketed:
            raise ValueError(f"{text!r}: {host!r} is not an IPv6 address") from None
    try:
        return _dns_name(host), port
    except ValueError as error:
        raise ValueError(f"{text!r}: {host!r} is neither an IP address nor a host name ({error})") from None


def _format_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_LABEL = re.compile(r"[a-z0-9_-]{1,63}")


def _dns_name(value: str) -> str:
    """A DNS name in normal form (lower case, no trailing dot); ValueError otherwise."""
    name = value[:-1] if value.endswith(".") else value
    name = name.lower()
    if not name:
        raise ValueError("a name is required (the root '.' cannot be configured)")
    if not name.isascii():
        raise ValueError(f"{value!r} is not ASCII; write it in its xn-- (punycode) form")
    if len(name) > 253:
        raise ValueError(f"{value!r} is longer than 253 characters")
    for label in name.split("."):
        if not label:
            raise ValueError(f"{value!r} has an empty label")
        if len(label) > 63:
            raise ValueError(f"{value!r}: label {label[:20]!r}... is longer than 63 characters")
        if not _LABEL.fullmatch(label):
            raise ValueError(
                f"{value!r}: label {label!r} may hold only letters, digits, hyphens and underscores"
            )
    return name


def _within(name: str, zone: str) -> bool:
    return name == zone or name.endswith("." + zone)


# ---------------------------------------------------------------------------
# The schema
# ---------------------------------------------------------------------------

SECTIONS = ("dns", "logging", "metrics", "api", "regions", "domains", "cluster")
ROUTING_ALGORITHMS = tuple(ALGORITHMS)  # the routing registry is the one list of names
CHECK_TYPES = ("http", "https", "tcp")
LOG_LEVELS = ("debug", "info", "warn", "error")
LOG_FORMATS = ("json", "text")
MODES = ("standalone", "cluster")
FOLLOWER_QUERIES = ("refuse", "drop", "forward")
HEALTH_CONSENSUS = ("majority", "any", "all", "leader")
VETO_MODES = ("strict", "balanced", "permissive")
MAX_TTL = 2**31 - 1  # RFC 2181 §8: a TTL is an unsigned 31-bit number of seconds
# Bounds of the duration settings (seconds).  Every duration is above 0s; none
# may exceed MAX_SETTING_DURATION, and most have a tighter bound of their own.
_MINUTE, _HOUR, _DAY = 60.0, 3600.0, 86400.0
MAX_SETTING_DURATION = 366 * _DAY
MIN_CHECK_INTERVAL, MAX_CHECK_INTERVAL = 0.1, _DAY  # health checks; timeout < interval
MAX_CHECK_TIMEOUT = _HOUR
MIN_RAFT_HEARTBEAT, MIN_RAFT_ELECTION, MAX_RAFT_TIMEOUT = 0.05, 0.1, _MINUTE
MIN_SNAPSHOT_INTERVAL, MAX_SNAPSHOT_INTERVAL = 1.0, 7 * _DAY
MAX_BLEED_DURATION = _DAY
MIN_SIGNAL_WINDOW, MAX_SIGNAL_WINDOW = 1.0, _DAY
MIN_EXTERNAL_CHECK_INTERVAL, MAX_EXTERNAL_CHECK_INTERVAL = 0.1, _DAY
MAX_CLUSTER_MEMBERS = 7
KEYGEN_HINT = "make one with: head -c 32 /dev/urandom | base64"

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
TOKEN_SCOPES = ("admin", "drain")
MAX_LISTENER_CONNECTIONS = 100_000
MAX_REQUEST_TIMEOUT = 300.0
MAX_BODY_BYTES = 1024 * 1024
_REGION_KEYS = ("name", "servers", "health_check")
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
_DOMAIN_KEYS = ("name", "routing_algorithm", "regions", "ttl")
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

T = TypeVar("T")


def _kind(value: Any, reveal: bool = True) -> str:
    """How a value reads in a message: ``a string ('80')``; secrets are not shown."""
    if value is None:
        return "null (empty)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})" if reveal else "a boolean"
    if isinstance(value, int):
        return f"an integer ({_number(value)})" if reveal else "an integer"
    if isinstance(value, float):
        return f"a number ({value:g})" if reveal else "a number"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"a string ({shown!r})" if reveal else "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


def _number(value: Union[int, float]) -> str:
    """A number as a message shows it: a 400-digit integer reads as ``a 400-digit number``."""
    if isinstance(value, float):
        return f"{value:g}"
    if -(10**20) < value < 10**20:
        return str(value)
    try:
        return f"a {len(str(abs(value)))}-digit number"
    except ValueError:  # longer than sys.get_int_max_str_digits()
        return "a number with thousands of digits"


def _suggest(word: str, choices: Collection[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _one_of(choices: Sequence[str]) -> str:
    return ", ".join(choices)


class _Checker:
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
            self.add(path, f"must be a mapping, not {_kind(value)}")
            return None
        for key in value:
            if not isinstance(key, str) or key not in keys:
                text = str(key)
                hint = _suggest(text, keys) or f" (expected one of: {_one_of(keys)})"
                self.add(path + (text,), f"unknown key {text!r}{hint}")
        return value

    def items(self, value: Any, path: KeyPath) -> List[Tuple[KeyPath, Any]]:
        """``(item path, item)`` for the list at ``path``; ``None`` reads as ``[]``."""
        if value is None:
            return []
        if not isinstance(value, list):
            self.add(path, f"must be a list, not {_kind(value)}")
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
        return self.field(m, key, path, default, _as_string)

    def boolean(self, m: Mapping[str, Any], key: str, path: KeyPath, default: bool) -> bool:
        return self.field(m, key, path, default, _as_bool)

    def integer(
        self, m: Mapping[str, Any], key: str, path: KeyPath, default: int, low: int, high: int
    ) -> int:
        return self.field(m, key, path, default, lambda v: _as_int(v, low, high))

    def duration(self, m: Mapping[str, Any], key: str, path: KeyPath, default: float, *,
                 low: float = 0.0, high: float = MAX_SETTING_DURATION) -> float:
        """A duration above 0s within ``[low, high]`` seconds (``default`` when absent or bad)."""
        return self.field(m, key, path, default, lambda v: _as_duration(v, low, high))

    def bounded_duration(self, m: Mapping[str, Any], key: str, path: KeyPath, default: float,
                         high: float) -> float:
        """A positive duration of at most ``high`` seconds."""
        def convert(value: Any) -> float:
            seconds = _as_positive_duration(value)
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
        return self.field(m, key, path, default, lambda v: _as_choice(v, choices, what, aliases))

    # -- sections ----------------------------------------------------------

    def config(self, data: Any, filename: str) -> Config:
        if data is not None and not isinstance(data, dict):
            self.add(
                (),
                f"the file must be a mapping with the sections {_one_of(SECTIONS)}, not {_kind(data)}",
            )
            return Config(source=filename)
        top = self.section(data, (), SECTIONS) or {}
        dns = self.dns(top.get("dns"), ("dns",))
        logging = self.logging(top.get("logging"), ("logging",))
        metrics = self.metrics(top.get("metrics"), ("metrics",))
        api = self.api(top.get("api"), ("api",))
        regions = self.regions(top.get("regions"), ("regions",))
        domains = self.domains(top.get("domains"), ("domains",), [r.name for r in regions])
        cluster = self.cluster(top.get("cluster"), ("cluster",))
        if cluster.mode == "cluster":
            # The file itself asks for cluster mode: hold it to cluster rules
            # now (the command line repeats this after applying its flags).
            reported = {path for path, _ in self.issues}
            for path, message in _cluster_issues(cluster):
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
            source=filename,
        )

    def dns(self, value: Any, path: KeyPath) -> DNSConfig:
        m = self.section(value, path, _DNS_KEYS)
        if m is None:
            return DNSConfig()
        d = DNSConfig()
        return DNSConfig(
            listen_address=self.field(m, "listen_address", path, d.listen_address, _as_listen),
            default_ttl=self.integer(m, "default_ttl", path, d.default_ttl, 0, MAX_TTL),
            return_last_healthy=self.boolean(m, "return_last_healthy", path, False),
            zones=self.zones(m.get("zones"), path + ("zones",)),
            nsid=self.field(m, "nsid", path, d.nsid, _as_nsid),
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
            name = self.field(m, "name", zpath, "", _as_dns_name, required=True)
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
            name = self.field(m, "name", npath, "", _as_dns_name, required=True)
            address: Optional[str] = None
            if m.get("address") is not None:
                address = self.field(m, "address", npath, None, _as_ip)
            elif name and zone and _within(name, zone):
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
            mname=self.field(m, "mname", path, d.mname, _as_dns_name),
            rname=self.field(m, "rname", path, d.rname, _as_mailbox),
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
            address=self.field(m, "address", path, d.address, _as_listen),
            allowed_networks=self.networks(m, "allowed_networks", path, d.allowed_networks),
            max_connections=self.integer(m, "max_connections", path, d.max_connections, 1,
                                         MAX_LISTENER_CONNECTIONS),
            max_connections_per_source=self.integer(m, "max_connections_per_source", path,
                                                    d.max_connections_per_source, 1,
                                                    MAX_LISTENER_CONNECTIONS),
            max_connection_rate=self.integer(m, "max_connection_rate", path, d.max_connection_rate,
                                             1, MAX_LISTENER_CONNECTIONS),
            request_timeout=self.bounded_duration(m, "request_timeout", path, d.request_timeout,
                                                  MAX_REQUEST_TIMEOUT),
        )

    def api(self, value: Any, path: KeyPath) -> APIConfig:
        m = self.section(value, path, _API_KEYS)
        if m is None:
            return APIConfig()
        d = APIConfig()
        tokens = self.tokens(m.get("tokens"), path + ("tokens",))
        return APIConfig(
            enabled=self.boolean(m, "enabled", path, d.enabled),
            address=self.field(m, "address", path, d.address, _as_listen),
            allowed_networks=self.networks(m, "allowed_networks", path, d.allowed_networks),
            trust_proxy_headers=self.boolean(m, "trust_proxy_headers", path, d.trust_proxy_headers),
            trusted_proxies=self.networks(m, "trusted_proxies", path, d.trusted_proxies),
            tokens=tokens.get("admin", ()),
            drain_tokens=tokens.get("drain", ()),
            max_connections=self.integer(m, "max_connections", path, d.max_connections, 1,
                                         MAX_LISTENER_CONNECTIONS),
            max_connections_per_source=self.integer(m, "max_connections_per_source", path,
                                                    d.max_connections_per_source, 1,
                                                    MAX_LISTENER_CONNECTIONS),
            max_connection_rate=self.integer(m, "max_connection_rate", path, d.max_connection_rate,
                                             1, MAX_LISTENER_CONNECTIONS),
            request_timeout=self.bounded_duration(m, "request_timeout", path, d.request_timeout,
                                                  MAX_REQUEST_TIMEOUT),
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
                result.append(_as_network(item))
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
                self.add(tpath, f"a token must be a string, not {_kind(item, reveal=False)}")
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
            name = self.field(m, "name", rpath, "", _as_region_name, required=True)
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
            regions.append(RegionConfig(name=name, servers=servers, health_check=health))
        return tuple(regions)

    def servers(self, value: Any, path: KeyPath) -> Tuple[ServerConfig, ...]:
        servers: List[ServerConfig] = []
        first: Dict[str, KeyPath] = {}
        for spath, item in self.items(value, path):
            m = self.section(item, spath, _SERVER_KEYS)
            if m is None:
                continue
            address = self.field(m, "address", spath, "", _as_server_address, required=True)
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
            path=self.field(m, "path", path, d.path, _as_url_path),
            host=self.string(m, "host", path, d.host),
            tls_verify=self.boolean(m, "tls_verify", path, d.tls_verify),
            failure_threshold=self.integer(m, "failure_threshold", path, d.failure_threshold, 1, 10),
            success_threshold=self.integer(m, "success_threshold", path, d.success_threshold, 1, 10),
        )

    def domains(self, value: Any, path: KeyPath, region_names: Sequence[str]) -> Tuple[DomainConfig, ...]:
        domains: List[DomainConfig] = []
        first: Dict[str, KeyPath] = {}
        known = set(region_names)
        for dpath, item in self.items(value, path):
            m = self.section(item, dpath, _DOMAIN_KEYS)
            if m is None:
                continue
            name = self.field(m, "name", dpath, "", _as_dns_name, required=True)
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
                        self.add(ipath, f"must be a region name, not {_kind(region)}")
                    elif region not in known:
                        self.add(ipath, f"unknown region {region!r}{_suggest(region, region_names)}")
                    elif region in regions:
                        self.add(ipath, f"region {region!r} is listed twice")
                    else:
                        regions.append(region)
            ttl = None if m.get("ttl") is None else self.integer(m, "ttl", dpath, 0, 0, MAX_TTL)
            domains.append(
                DomainConfig(name=name, regions=tuple(regions), routing_algorithm=algorithm, ttl=ttl)
            )
        return tuple(domains)

    def cluster(self, value: Any, path: KeyPath) -> ClusterConfig:
        m = self.section(value, path, _CLUSTER_KEYS)
        d = ClusterConfig()
        if m is None:
            return d
        return ClusterConfig(
            mode=self.choice(m, "mode", path, d.mode, MODES, "mode"),
            node_name=self.string(m, "node_name", path, d.node_name),
            bind_address=self.field(m, "bind_address", path, d.bind_address, _as_listen),
            advertise_address=self.field(m, "advertise_address", path, "", _as_advertise),
            bootstrap=self.boolean(m, "bootstrap", path, d.bootstrap),
            join=self.join(m.get("join"), path + ("join",)),
            follower_queries=self.choice(
                m, "follower_queries", path, d.follower_queries, FOLLOWER_QUERIES, "follower_queries value"
            ),
            raft=self.raft(m.get("raft"), path + ("raft",)),
            gossip=self.gossip(m.get("gossip"), path + ("gossip",)),
            health_consensus=self.choice(
                m, "health_consensus", path, d.health_consensus, HEALTH_CONSENSUS, "health_consensus value"
            ),
            predictive_health=self.predictive(m.get("predictive_health"), path + ("predictive_health",)),
            overwatch=self.overwatch(m.get("overwatch"), path + ("overwatch",)),
            anycast_vip=self.field(m, "anycast_vip", path, "", _as_optional_ip),
        )

    def join(self, value: Any, path: KeyPath) -> Tuple[str, ...]:
        result: List[str] = []
        first: Dict[str, KeyPath] = {}
        for jpath, item in self.items(value, path):
            if not isinstance(item, str):
                self.add(jpath, f"must be a string 'host:port', not {_kind(item)}")
                continue
            try:
                peer = _format_host_port(*parse_host_port(item))
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
            data_dir=self.field(m, "data_dir", path, d.data_dir, _as_nonempty_string),
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
        return GossipConfig(encryption_key=self.field(m, "encryption_key", path, "", _as_encryption_key))

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
            threshold=self.field(m, "threshold", path, d.threshold, _as_percent),
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


# -- scalar converters: value → model value, or ValueError(message) -----------


def _as_string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {_kind(value)}")
    return str(value)


MAX_NSID_OCTETS = 128
MAX_TCP_CONNECTIONS = 65535


def _as_nsid(value: Any) -> str:
    """dns.nsid: printable text of at most 128 UTF-8 octets ("" turns NSID off)."""
    text = _as_string(value)
    if len(text.encode("utf-8")) > MAX_NSID_OCTETS:
        raise ValueError(f"must be at most {MAX_NSID_OCTETS} octets (UTF-8)")
    if not text.isprintable():
        raise ValueError("must be printable text")
    return text


def _as_nonempty_string(value: Any) -> str:
    text = _as_string(value)
    if not text.strip():
        raise ValueError("must not be empty")
    return text


def _as_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        hint = ""
        if isinstance(value, str):
            if value.lower() in ("yes", "no", "on", "off", "y", "n"):
                hint = " (YAML 1.2 reads yes/no/on/off as strings: write true or false)"
            else:
                hint = " (write true or false, unquoted)"
        raise ValueError(f"must be true or false, not {_kind(value)}{hint}")
    return value


def _as_int(value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be an integer, not {_kind(value)}")
    if not low <= value <= high:
        raise ValueError(f"must be between {low} and {high} (got {_number(value)})")
    return int(value)


def _as_percent(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"must be a number (a percentage), not {_kind(value)}")
    if not 0 < value <= 100:  # also refuses NaN
        raise ValueError(f"must be a percentage above 0 and at most 100 (got {_number(value)})")
    return float(value)


def _as_positive_duration(value: Any) -> float:
    """A duration above 0s and at most :data:`MAX_SETTING_DURATION`; ValueError otherwise."""
    return _as_duration(value, 0.0, MAX_SETTING_DURATION)


def _as_duration(value: Any, low: float, high: float) -> float:
    """A duration ``d`` with ``0 < d``, ``low <= d <= high`` (seconds); ValueError otherwise.

    Never raises anything else, whatever ``value`` is (see :func:`parse_duration`).
    """
    if value is None or isinstance(value, (list, dict)):
        raise ValueError(f"must be a duration such as '30s', not {_kind(value)}")
    seconds = parse_duration(value, maximum=high)
    if seconds <= 0:
        raise ValueError(f"must be longer than 0s (got {value!r})")  # short: it parsed
    if seconds < low:
        raise ValueError(f"must be at least {format_duration(low)} (got {format_duration(seconds)})")
    if seconds > high:
        raise ValueError(f"must be at most {format_duration(high)} (got {format_duration(seconds)})")
    return seconds


def _as_choice(value: Any, choices: Sequence[str], what: str, aliases: Optional[Mapping[str, str]]) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be one of {_one_of(choices)}, not {_kind(value)}")
    word = value.strip().lower()
    if aliases and word in aliases:
        word = aliases[word]
    if word not in choices:
        raise ValueError(
            f"unknown {what} {value!r}{_suggest(word, choices)} (expected one of: {_one_of(choices)})"
        )
    return word


def _as_listen(value: Any) -> ListenAddress:
    if not isinstance(value, str):
        raise ValueError(f"must be a string 'ip:port' or ':port' (e.g. ':53'), not {_kind(value)}")
    return parse_listen_address(value)


def _as_advertise(value: Any) -> str:
    text = _as_string(value)
    if not text:
        return ""
    address = parse_listen_address(text)
    if address.is_wildcard:
        raise ValueError(f"must be this node's own IP:port, not a wildcard ({text!r})")
    return str(address)


def _as_ip(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be an IP address, not {_kind(value)}")
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address") from None


def _as_optional_ip(value: Any) -> str:
    if value == "" or value is None:
        return ""
    return _as_ip(value)


def _as_server_address(value: Any) -> str:
    text = _as_ip(value)
    address = ipaddress.ip_address(text)
    if address.is_unspecified or address.is_multicast:
        raise ValueError(f"{text} is not a usable server address")
    return text


def _as_network(value: Any) -> IPNetwork:
    if not isinstance(value, str):
        raise ValueError(f"must be a network such as '10.0.0.0/8', not {_kind(value)}")
    try:
        return ipaddress.ip_network(value.strip(), strict=True)
    except ValueError as error:
        if "host bits set" in str(error):
            fixed = ipaddress.ip_network(value.strip(), strict=False)
            raise ValueError(f"{value!r} has host bits set (did you mean '{fixed}'?)") from None
        raise ValueError(f"{value!r} is not a network (e.g. '10.0.0.0/8' or '2001:db8::/32')") from None


def _as_dns_name(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a DNS name, not {_kind(value)}")
    return _dns_name(value)


def _as_mailbox(value: Any) -> str:
    if isinstance(value, str) and "@" in value:
        fixed = value.replace("@", ".", 1).rstrip(".")
        raise ValueError(f"write the mailbox as a DNS name: {fixed!r}, not {value!r}")
    return _as_dns_name(value)


def _as_region_name(value: Any) -> str:
    name = _as_nonempty_string(value)
    if "/" in name or any(c.isspace() for c in name):
        raise ValueError(f"{name!r} must not contain '/' or spaces (region names appear in API paths)")
    return name


def _as_url_path(value: Any) -> str:
    text = _as_string(value)
    if not text.startswith("/"):
        raise ValueError(f"must start with '/' (got {text!r})")
    return text


def _as_encryption_key(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a base64 string, not {_kind(value, reveal=False)}; {KEYGEN_HINT}")
    text = value.strip()
    if not text:
        return ""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            f"is not valid base64; it must be base64 of exactly 32 bytes ({KEYGEN_HINT})"
        ) from None
    if len(raw) != 32:
        raise ValueError(
            f"decodes to {len(raw)} bytes; it must be base64 of exactly 32 bytes ({KEYGEN_HINT})"
        )
    return text


# -- cluster rules that depend on the mode ----------------------------------


def _cluster_issues(cluster: ClusterConfig) -> List[Issue]:
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
            peers.add(_format_host_port(*parse_host_port(entry)))
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


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------


def _parse(text: str, filename: str) -> Tuple[Optional[Config], List[Problem], Any]:
    """``(config or None, problems, plain data)``: everything :func:`parse_config` learns."""
    try:
        data = _load_plain(text)
    except _SyntaxProblem as problem:
        return None, [Problem(filename, problem.line, "", problem.message)], None
    checker = _Checker()
    config = checker.config(data, filename)
    if not checker.issues:
        return config, [], data
    return None, _locate(text, filename, checker.issues), data


def _locate(text: str, filename: str, issues: Sequence[Issue]) -> List[Problem]:
    """Issues as problems with line numbers, in file order (line-less ones last)."""
    try:
        root = _compose(text)
    except (YAMLError, RecursionError):  # it parsed a moment ago; be safe anyway
        root = None
    problems = [
        Problem(filename, _line_of(root, path), format_path(path), message) for path, message in issues
    ]
    problems.sort(key=lambda p: (p.line is None, p.line or 0))
    return problems


def parse_config(text: str, filename: str = "<string>") -> Config:
    """Parse and validate configuration text.

    :param text: the YAML document; empty (or comments only) gives the defaults.
    :param filename: how problems name the file; also stored as ``Config.source``.
    :returns: the validated :class:`Config`.
    :raises ConfigError: listing every problem found (a YAML syntax error
        stops at that error, since nothing after it can be read).

    When the file itself says ``cluster.mode: cluster``, the cluster-mode
    requirements (:func:`validate_cluster_requirements`) are checked too.
    CPU-bound (about a second for a 2 MB file): call it off the reactor thread.
    """
    config, problems, _ = _parse(text, filename)
    if problems or config is None:
        raise ConfigError(problems)
    return config


def validate_cluster_requirements(config: Config) -> List[Problem]:
    """What cluster mode needs, checked after command-line flags are applied.

    Empty unless ``config.cluster.mode == "cluster"``.  Checks that
    ``cluster.gossip.encryption_key`` is set, that ``advertise_address`` is
    set when ``bind_address`` is a wildcard, that every ``join`` entry is
    ``host:port``, and that no more than 7 members are named.  Problems name
    ``config.source`` without a line (a flag may be the cause).
    """
    return [
        Problem(config.source, None, format_path(path), message)
        for path, message in _cluster_issues(config.cluster)
    ]


def _secrets_in(data: Any) -> List[str]:
    """The secret-holding keys that are set in plain data (SPEC §2)."""
    found: List[str] = []
    if not isinstance(data, dict):
        return found
    api = data.get("api")
    if isinstance(api, dict) and api.get("tokens"):
        found.append("api.tokens")
    cluster = data.get("cluster")
    gossip = cluster.get("gossip") if isinstance(cluster, dict) else None
    if isinstance(gossip, dict) and gossip.get("encryption_key"):
        found.append("cluster.gossip.encryption_key")
    return found


def read_config_file(name: str, what: str) -> Tuple[str, int]:
    """The text of the file ``name`` (UTF-8, BOM allowed) and its ``st_mode``.

    :raises ConfigError: it cannot be read (``cannot read the {what}: ...``)
        or is not UTF-8 (the problem names the line).
    """
    try:
        with open(name, "rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            raw = handle.read()
    except OSError as error:
        reason = error.strerror or str(error)
        raise ConfigError([Problem(name, None, "", f"cannot read the {what}: {reason}")]) from None
    try:
        return raw.decode("utf-8-sig"), mode
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise ConfigError([Problem(name, line, "", "the file is not UTF-8 text")]) from None


def load_config(path: Union[str, "os.PathLike[str]"]) -> Tuple[Config, List[str]]:
    """Read, check the permissions of, parse and validate a configuration file.

    :returns: ``(config, warnings)``; ``config.source`` is ``path``.  Warnings
        are one-line strings for the operator: the file is writable by every
        user, or (holding no secrets) readable by every user.
    :raises ConfigError: listing every problem: the file cannot be read or is
        not UTF-8; it holds secrets (``api.tokens``,
        ``cluster.gossip.encryption_key``) and is readable by every user (the
        problem says ``chmod 600 FILE``); and every validation problem.
    """
    name = os.fspath(path)
    text, mode = read_config_file(name, "configuration file")
    config, problems, data = _parse(text, name)
    secrets = _secrets_in(data)
    if secrets and mode & 0o004:
        problems.insert(
            0,
            Problem(
                name,
                None,
                "",
                f"holds secrets ({', '.join(secrets)}) but is readable by every user"
                f" (mode {mode & 0o777:04o}); run: chmod 600 {name}",
            ),
        )
    if problems or config is None:
        raise ConfigError(problems)
    warnings: List[str] = []
    if mode & 0o002:
        warnings.append(
            f"{name}: writable by every user (mode {mode & 0o777:04o}), so anyone on this host"
            f" can change what this server answers; run: chmod 600 {name}"
        )
    elif mode & 0o004:
        warnings.append(
            f"{name}: readable by every user (mode {mode & 0o777:04o}); it holds no secrets now,"
            f" but run chmod 600 {name} before adding api.tokens or cluster.gossip.encryption_key"
        )
    return config, warnings
