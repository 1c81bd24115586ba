"""``GET /api/v1/explain`` (SPEC §4.1): why a client gets the answer it gets, now.

The answer part — zone, domain, algorithm, the topology rule or GeoIP record
matched, the addresses, rcode, ECS scope and all-down policy — comes from
:func:`opengslb.dns.explain.explained` over the view DNS answers from, asked
with ``advance=False``: the answer the next query from that client would get,
and no round-robin position, smooth-weighted score or latency choice moves,
and no DNS counter or log line is touched.  Each candidate's health,
effective weight and reason for being left out come from its served record
(:meth:`opengslb.core.Gslb.served_at`, the one function DNS, the API and the
metrics all read), and in cluster mode each node's own verdict is shown.

The query is checked exactly as the OpenAPI document describes it
(:data:`SCHEMAS`, :data:`PARAMETERS`): every parameter once, no unknown one,
``name`` a DNS name in text form, ``type`` ``A`` or ``AAAA``, ``client`` an
IP address, ``subnet`` a prefix length of the client's family.  Anything
else raises :class:`BadQuery` (the route answers 400 with its message).

The query is a client as DNS sees it: without ``subnet``, a query sent from
``client`` without ECS (the reply carries no ECS option, so ``ecs_scope`` is
null); with ``subnet``, a query carrying ECS ``client/subnet`` (capped at /24
and /56 as ECS is; 0: the resolver's own address, ``client``, and scope 0),
and ``ecs_scope`` is the scope the reply's ECS option would carry.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from typing import TYPE_CHECKING, Any, Callable, Dict, List, NamedTuple, Optional

from opengslb.api.patterns import IP_ADDRESS, IPV4, IPV6, anchored
from opengslb.dns.explain import client_network, explained
from opengslb.health.tracker import ServerKey
from opengslb.routing.base import Candidate

if TYPE_CHECKING:
    from opengslb.core import Gslb
    from opengslb.served import Served

__all__ = ["BadQuery", "ExplainQuery", "PARAMETERS", "SCHEMAS", "explain_reply", "parse_query"]

#: A DNS name in text form: labels of 1 to 63 letters, digits, hyphens and underscores (the
#: configuration's own alphabet, any case), an optional trailing dot; at most NAME_MAX characters.
DNS_NAME = r"[A-Za-z0-9_-]{1,63}(?:\.[A-Za-z0-9_-]{1,63})*\.?"
NAME_MAX = 253
#: A prefix length: decimal digits (no sign, no point); its value is checked against the
#: client's family (0-32 or 0-128).
PREFIX = "[0-9]+"
TYPES = ("A", "AAAA")
PARAMETER_NAMES = ("name", "type", "client", "subnet")
REQUIRED = ("name", "type", "client")

_NAME = re.compile(DNS_NAME)
_IP = re.compile(IP_ADDRESS)
_PREFIX = re.compile(PREFIX)

#: Served-record reasons about the weight; every other reason is about health.
_WEIGHT_REASONS = ("override:", "predictive bleed:", "slow start:")


class BadQuery(ValueError):
    """The query string is not one the document allows (the route answers 400)."""


class ExplainQuery(NamedTuple):
    """A checked explain query: ``name`` in normal form (lower case, no trailing dot),
    ``rtype`` "A" or "AAAA", ``client`` the canonical address, ``subnet`` or ``None``."""

    name: str
    rtype: str
    client: str
    subnet: Optional[int]


def parse_query(uri: bytes) -> ExplainQuery:
    """The explain query of a request URI (its query string only; a body is never read).

    Raises :class:`BadQuery` with a message for a person, for anything the
    document does not allow.
    """
    raw = uri.partition(b"?")[2]
    try:
        text = raw.decode("ascii")
        pairs = urllib.parse.parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise BadQuery("the query string is not UTF-8 text") from None
    values: Dict[str, str] = {}
    for key, value in pairs:
        if key not in PARAMETER_NAMES:
            raise BadQuery(f"unknown parameter {key[:40]!r} (expected: {', '.join(PARAMETER_NAMES)})")
        if key in values:
            raise BadQuery(f"parameter {key!r} is given more than once")
        values[key] = value
    for key in REQUIRED:
        if key not in values:
            raise BadQuery(f"parameter {key!r} is required: "
                           "GET /api/v1/explain?name=NAME&type=A|AAAA&client=IP[&subnet=PREFIX]")
    name = values["name"]
    if len(name) > NAME_MAX or _NAME.fullmatch(name) is None:
        raise BadQuery(f"name {name[:60]!r} is not a DNS name (labels of 1-63 letters, digits, '-' "
                       f"or '_' separated by dots, at most {NAME_MAX} characters)")
    rtype = values["type"]
    if rtype not in TYPES:
        raise BadQuery(f"type must be A or AAAA, not {rtype[:20]!r}")
    client = values["client"]
    if _IP.fullmatch(client) is None:
        raise BadQuery(f"client {client[:60]!r} is not an IP address")
    address = ipaddress.ip_address(client)
    subnet: Optional[int] = None
    if "subnet" in values:
        text = values["subnet"]
        digits = text.lstrip("0") or "0"
        if _PREFIX.fullmatch(text) is None or len(digits) > 3 or int(digits) > address.max_prefixlen:
            raise BadQuery(f"subnet must be a prefix length from 0 to {address.max_prefixlen} for the "
                           f"IPv{address.version} client {address}, not {text[:20]!r}")
        subnet = int(digits)
    return ExplainQuery(name.lower().rstrip("."), rtype, str(address), subnet)


def explain_reply(gslb: "Gslb", query: ExplainQuery, node: Optional[str] = None) -> Dict[str, Any]:
    """The reply of one explain query (SPEC §4.1), read-only.

    ``node`` is this node's id in cluster mode (each candidate then carries
    ``node_verdicts``); ``None`` in standalone mode.
    """
    found = explained(gslb.view, query.name, query.rtype, client_network(query.client, query.subnet))
    report = dict(found.report)
    candidates: List[Dict[str, Any]] = []
    domain = found.domain
    if domain is not None:
        chosen = {(c.region, c.address, c.port) for c in found.chosen}
        first = found.chosen[0] if found.chosen else None
        for candidate in domain.candidates:
            record = gslb.served_at(candidate.region, candidate.address, candidate.port)
            entry: Dict[str, Any] = {
                "region": candidate.region, "address": candidate.address, "port": candidate.port,
                "healthy": record.healthy, "effective_weight": record.weight,
                "excluded_because": _excluded_because(
                    candidate, record, found.family, (candidate.region, candidate.address, candidate.port)
                    in chosen, first, domain.algorithm, report["policy"], gslb)}
            if node is not None:
                entry["node_verdicts"] = _node_verdicts(gslb, node, candidate, record)
            candidates.append(entry)
    report["candidates"] = candidates
    report["client"] = query.client
    if query.subnet is None:
        report["ecs_scope"] = None  # a query without ECS gets a reply without it
    elif query.subnet == 0:
        report["ecs_scope"] = 0  # source prefix 0: chosen for the resolver, for every client (ecs_option)
    return {key: report[key] for key in ("name", "type", "client", "client_network", "zone", "domain",
                                         "algorithm", "matched", "candidates", "answer", "rcode",
                                         "ecs_scope", "policy")}


#: Why an eligible candidate the algorithm did not choose is left out, by algorithm.
_NOT_CHOSEN = {
    "round-robin": "not next in the rotation (round-robin)",
    "weighted": "not drawn this time (weighted: random by effective weight)",
    "failover": "a server before it in the failover order is serving",
    "latency": "not the fastest (latency, with hysteresis)",
    "consistent-hash": "a lower hash score for this client network (consistent-hash)",
    "geolocation": "not next in the chosen region's rotation (geolocation)",
}


def _excluded_because(candidate: Candidate, record: "Served", family: int, answered: bool,
                      first: Optional[Candidate], algorithm: str, policy: Optional[str],
                      gslb: "Gslb") -> Optional[str]:
    """Why ``candidate`` is not in the answer (``None``: it is), from its served ``record``."""
    if (":" in candidate.address) != (family == 6):
        return f"not an IPv{family} address"
    if answered:
        return None
    if not record.healthy:
        veto = next((r for r in record.reasons if r.startswith("vetoed")), None)
        if veto is not None:
            return veto
        health = [r for r in record.reasons if not r.startswith(_WEIGHT_REASONS)]
        if record.judged_by == "check":
            checks = gslb.health.get(ServerKey(candidate.region, candidate.address, candidate.port))
            if checks is not None and checks.last_error:
                health.append(f"last error: {checks.last_error}")
        return "unhealthy (" + "; ".join(health) + ")" if health else "unhealthy"
    if record.weight <= 0:
        weight = next((r for r in record.reasons if r.startswith("override:")), None)
        if weight is not None:
            return weight
        return f"weight 0 ({'registered' if record.source == 'registration' else 'configured'})"
    if policy is not None:
        return f"when_all_down: {policy} answered"
    if first is not None and algorithm == "geolocation" and candidate.region != first.region:
        return f"not in the chosen region ({first.region})"
    if record.drained and algorithm == "failover":
        bleed = next((r for r in record.reasons if r.startswith("predictive bleed:")), "predictive bleed")
        return f"drained ({bleed})"
    return _NOT_CHOSEN.get(algorithm, f"not chosen by {algorithm}")


def _node_verdicts(gslb: "Gslb", node: str, candidate: Candidate, record: "Served") -> Dict[str, bool]:
    """Each node's own check verdict for ``candidate``: this node's, then every node heard from
    recently (as ``/api/v1/health/servers`` shows them); empty for a server an agent's claim judges."""
    if record.judged_by != "check":
        return {}
    key = ServerKey(candidate.region, candidate.address, candidate.port)
    verdicts: Dict[str, bool] = {}
    own = gslb.health.get(key)
    if own is not None:
        verdicts[node] = own.healthy
    verdicts.update(gslb.peer_verdicts(key))
    return verdicts


# -- the document's part --------------------------------------------------------------

_NULLABLE_STRING = {"type": ["string", "null"]}
_NAMES = {"type": "array", "items": {"type": "string"}}

#: The component schemas of the explain reply (merged into the document's).
SCHEMAS: Dict[str, Dict[str, Any]] = {
    "ExplainCandidate": {
        "type": "object",
        "properties": {
            "region": {"type": "string"},
            "address": {"type": "string"},
            "port": {"type": "integer", "minimum": 1, "maximum": 65535},
            "healthy": {"type": "boolean", "description": "the verdict DNS serves (its served record)"},
            "effective_weight": {"type": "number", "minimum": 0,
                                 "description": "the weight routing uses now (override, bleed and "
                                                "slow start included)"},
            "excluded_because": {**_NULLABLE_STRING,
                                 "description": "why it is not in the answer (null: it is): not of the "
                                                "asked family, unhealthy (with the served record's "
                                                "reasons), vetoed, override disabled or weight 0, not "
                                                "in the chosen region, not chosen by the algorithm"},
            "node_verdicts": {"type": "object", "additionalProperties": {"type": "boolean"},
                              "description": "cluster mode only: each node's own check verdict, keyed "
                                             "by node address (empty when an agent's claim judges it)"},
        },
        "required": ["region", "address", "port", "healthy", "effective_weight", "excluded_because"],
        "additionalProperties": False,
    },
    "ExplainMatch": {
        "type": "object",
        "properties": {
            "rule": {"type": "integer", "minimum": 0, "description": "index of the topology rule"},
            "networks": _NAMES, "countries": _NAMES, "continents": _NAMES,
            "regions": {**_NAMES, "description": "the rule's regions"},
            "geoip": {"type": "object",
                      "properties": {"country": _NULLABLE_STRING, "continent": _NULLABLE_STRING,
                                     "prefix": {"type": "integer", "minimum": 0, "maximum": 128}},
                      "required": ["country", "continent", "prefix"], "additionalProperties": False,
                      "description": "the GeoIP database record of the client"},
            "order": {**_NAMES, "description": "the region order the client gets"},
            "hashed_network": {"type": "string", "description": "consistent-hash: the network hashed"},
        },
        "additionalProperties": False,
        "description": "geolocation: the topology rule and/or GeoIP record; consistent-hash: the "
                       "hashed network",
    },
    "Explain": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "the name asked, lower case, no trailing dot"},
            "type": {"enum": list(TYPES)},
            "client": {"type": "string", "description": "the client address (canonical spelling)"},
            "client_network": {"type": "string",
                               "description": "the network routing sees: address/32 or /128 without "
                                              "subnet, else the ECS network capped at /24 or /56"},
            "zone": {**_NULLABLE_STRING, "description": "the zone holding the name; null: none (REFUSED)"},
            "domain": {**_NULLABLE_STRING, "description": "the configured domain; null: not one"},
            "algorithm": _NULLABLE_STRING,
            "matched": {"oneOf": [{"type": "null", "description": "nothing client-specific matched"},
                                  {"$ref": "#/components/schemas/ExplainMatch"}]},
            "candidates": {"type": "array", "items": {"$ref": "#/components/schemas/ExplainCandidate"},
                           "description": "every server of the domain, in configuration order"},
            "answer": {"type": "array", "items": {"type": "string"},
                       "description": "the addresses DNS would answer, in order"},
            "rcode": {"enum": ["NOERROR", "SERVFAIL", "NXDOMAIN", "REFUSED"],
                      "description": "NOERROR with no answer is NODATA"},
            "ecs_scope": {"type": ["integer", "null"], "minimum": 0, "maximum": 128,
                          "description": "the scope prefix length of the reply's ECS option; null "
                                         "without subnet (no ECS, none in the reply)"},
            "policy": {"oneOf": [{"type": "null", "description": "servers were healthy"},
                                 {"enum": ["servfail", "last-healthy", "all", "nodata", "fallback"],
                                  "description": "the when_all_down policy that answered"}]},
        },
        "required": ["name", "type", "client", "client_network", "zone", "domain", "algorithm",
                     "matched", "candidates", "answer", "rcode", "ecs_scope", "policy"],
        "additionalProperties": False,
    },
}

#: The operation's one parameter: the whole query string as a form-exploded object, so the
#: document can say that ``subnet`` is bounded by the client's family (32 for IPv4, 128 for IPv6).
PARAMETERS: List[Dict[str, Any]] = [{
    "name": "query",
    "in": "query",
    "required": True,
    "style": "form",
    "explode": True,
    "description": "name, type, client and (optionally) subnet, each once: "
                   "?name=www.example.com&type=A&client=192.0.2.1&subnet=24",
    "schema": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": NAME_MAX, "pattern": anchored(DNS_NAME),
                     "description": "the name asked (letters, digits, '-', '_'; a trailing dot is allowed)"},
            "type": {"enum": list(TYPES)},
            "client": {"type": "string", "pattern": anchored(IP_ADDRESS),
                       "description": "the client: the query's source address, or the ECS address "
                                      "with subnet"},
            "subnet": {"type": "integer", "minimum": 0, "maximum": 128,
                       "description": "the ECS source prefix length (at most 32 for an IPv4 client); "
                                      "absent: a query without ECS from client"},
        },
        "required": list(REQUIRED),
        "additionalProperties": False,
        "anyOf": [
            {"properties": {"client": {"pattern": anchored(IPV4)}, "subnet": {"maximum": 32}}},
            {"properties": {"client": {"pattern": anchored(IPV6)}}},
        ],
    },
}]


def document_path(read: Callable[..., Dict[str, Any]], error: Callable[[str], Dict[str, Any]]
                  ) -> Dict[str, Any]:
    """The path item of ``/api/v1/explain``, made with the document's own ``read`` and ``error``."""
    operation = read("Why a client gets the answer it gets now: zone, domain, rule, candidates, "
                     "answer, ECS scope (read-only: no rotation moves)",
                     {"$ref": "#/components/schemas/Explain"}, PARAMETERS,
                     more={"400": error("a parameter is missing, unknown, repeated or invalid (name not "
                                        "a DNS name, type not A or AAAA, client not an IP address, "
                                        "subnet out of range for the client's family)")})
    return {"get": operation}

