"""The OpenAPI 3.1 document served at ``/api/v1/openapi.json``.

It describes exactly the routes :class:`~opengslb.api.app.GslbAPI` serves
(a unit test compares it with the Klein URL map), the exact shape of each
reply (objects list every field they carry and allow no others, so a reply
that grows a field without the document growing it fails the tests), and
exactly what each request may carry: a request the document allows is never
refused as malformed (400), and one it does not allow always is (or is
refused earlier: 401, 403, 404, 409, 413).  Text formats (IP addresses,
durations, member addresses) are given as ``pattern``s that the server
itself matches (:mod:`opengslb.api.patterns`); bounds, required fields,
nullability and closed objects (``additionalProperties: false``) mirror the
checks in :mod:`opengslb.api.app`.  ``tests/integration/test_api_fuzz.py`` runs
schemathesis over the real server to keep it so.
"""

from __future__ import annotations

import copy
from typing import Any, Dict, List, Optional

from opengslb import __version__
from opengslb.api import explain
from opengslb.api.patterns import (
    IP_ADDRESS,
    MEMBER_ADDRESS,
    NON_BLANK,
    SIGNAL_NUMBER_MAX,
    UNUSABLE_ADDRESS,
    anchored,
    duration,
)
from opengslb.state.machine import MAX_ID, MAX_TEXT, SIGNAL_REASONS

Schema = Dict[str, Any]

__all__ = ["openapi_document"]


def _obj(properties: Dict[str, Schema]) -> Schema:
    """A closed object whose listed properties are all required."""
    return {"type": "object", "properties": properties, "required": list(properties),
            "additionalProperties": False}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _list_of(key: str, item: Schema) -> Schema:
    return _obj({key: {"type": "array", "items": item}})


_NULLABLE_STRING: Schema = {"type": ["string", "null"]}
_TIMESTAMP: Schema = {"type": ["string", "null"], "format": "date-time",
                      "description": "RFC 3339 UTC, whole seconds; null when never"}
_PORT: Schema = {"type": "integer", "minimum": 1, "maximum": 65535}
_WEIGHT_SOURCE: Schema = {"enum": ["config", "registration", "override"],
                          "description": "where the weight before any bleed comes from"}

#: Longest ttl of an override, in seconds (366 days).
OVERRIDE_TTL_MAX = 366 * 86400
#: Longest ttl of a registration, in seconds (7 days).
SERVICE_TTL_MAX = 7 * 86400
#: Longest agent id of a registration, in characters.
AGENT_MAX = 128


def _duration(maximum: int) -> Schema:
    """A request duration from 1 s to ``maximum`` seconds: text or integer seconds."""
    hours = maximum // 3600
    return {
        "oneOf": [
            {"type": "string", "pattern": anchored(duration(maximum)),
             "examples": ["30s", "90s", "5m", "1h30m", "1m30.5s"]},
            {"type": "integer", "minimum": 1, "maximum": maximum, "description": "seconds"},
        ],
        "description": (f"a duration from 1s to {hours}h: integer seconds, or text of whole h, m "
                        "and s parts in that order (seconds may have up to 9 decimals); minutes "
                        "and seconds after a larger unit are under 60 (\"90s\", \"1m30s\", "
                        f"\"1h30m\", \"{hours}h\")"),
    }


_IP_TEXT: Schema = {"type": "string", "pattern": anchored(IP_ADDRESS),
                    "description": "an IPv4 or IPv6 address, in any spelling (no zone)"}
_SERVER_ADDRESS: Schema = {**_IP_TEXT, "not": {"pattern": UNUSABLE_ADDRESS},
                           "description": "the server's IPv4 or IPv6 address, in any spelling (no "
                                          "zone); not unspecified (0.0.0.0, ::) or multicast"}
_MEMBER_ADDRESS: Schema = {"type": "string", "pattern": anchored(MEMBER_ADDRESS),
                           "description": "a member's cluster address: IPv4:port or [IPv6]:port"}
_MEMBER_NAME: Schema = {"type": "string", "minLength": 1, "maxLength": MAX_TEXT}
_SIGNAL_NUMBER: Schema = {"type": "number", "minimum": 0, "maximum": SIGNAL_NUMBER_MAX,
                          "description": "percent, as the agent measures it"}
_SIGNAL_REASON: Schema = {"enum": list(SIGNAL_REASONS)}

_SCHEMAS: Dict[str, Schema] = {
    "Error": {
        "type": "object",
        "properties": {
            "error": {"type": "string", "description": "what went wrong, for a human"},
            "code": {"type": "integer", "description": "the HTTP status code"},
            "problems": {"type": "array", "items": {"type": "string"},
                         "description": "every problem found (invalid configuration only)"},
        },
        "required": ["error", "code"],
        "additionalProperties": False,
    },
    "WriteNotConfirmed": {
        "type": "object",
        "properties": {
            "error": {"type": "string", "description": "what went wrong, for a human"},
            "code": {"const": 503},
            "outcome": {"enum": ["not_applied", "unknown"],
                        "description": "not_applied: nothing was changed (it never reached a leader, or "
                                       "was refused); unknown: it may still take effect (it reached the "
                                       "cluster, then timed out or the leader changed). Repeating the "
                                       "same request is safe either way: writes are idempotent"},
        },
        "required": ["error", "code", "outcome"],
        "additionalProperties": False,
    },
    "Live": _obj({"alive": {"const": True}}),
    "Ready": _obj({"ready": {"type": "boolean"},
                   "reason": {**_NULLABLE_STRING, "description": "why not ready; null when ready"}}),
    "ServerHealth": _obj({
        "address": {"type": "string"},
        "port": _PORT,
        "region": {"type": "string"},
        "healthy": {"type": "boolean", "description": "the verdict DNS serves"},
        "status": {"enum": ["healthy", "unhealthy", "unknown"],
                   "description": "unknown until the first check has finished"},
        "last_check": _TIMESTAMP,
        "last_healthy": _TIMESTAMP,
        "consecutive_failures": {"type": "integer", "minimum": 0},
        "consecutive_successes": {"type": "integer", "minimum": 0},
        "last_error": {**_NULLABLE_STRING, "description": "why the last check failed"},
        "weight": {"type": "integer", "minimum": 0, "maximum": 1000,
                   "description": "base weight: configured, or registered for a registered server"},
        "effective_weight": {"type": "number", "minimum": 0,
                             "description": "the weight routing uses: the override's weight if "
                                            "set, else the base weight, times any bleed factor; "
                                            "0 when an override disables the server"},
        "weight_source": _WEIGHT_SOURCE,
        "registration_id": {**_NULLABLE_STRING,
                            "description": "id of the registration; null for a configured server"},
        "judged_by": {"enum": ["check", "claim"],
                      "description": "check: this node's health checks; claim: the agent's "
                                     "claim from its last heartbeat (status then follows the claim)"},
        "node_verdicts": {"type": "object", "additionalProperties": {"type": "boolean"},
                          "description": "each node's own check verdict (this node, then every node "
                                         "heard from in the last 3 s), keyed by node address (standalone: "
                                         "node name); `healthy` is their combination by "
                                         "cluster.health_consensus"},
    }),
    "RegionHealth": _obj({
        "name": {"type": "string"},
        "servers": {"type": "integer", "minimum": 0},
        "healthy": {"type": "integer", "minimum": 0},
        "unhealthy": {"type": "integer", "minimum": 0},
        "health_percent": {"type": "number", "minimum": 0, "maximum": 100,
                           "description": "healthy/servers × 100, one decimal; 0.0 for no servers"},
    }),
    "Candidate": _obj({
        "address": {"type": "string"},
        "port": _PORT,
        "region": {"type": "string"},
        "healthy": {"type": "boolean"},
        "weight": {"type": ["integer", "null"],
                   "description": "base weight (configured or registered)"},
        "effective_weight": {"type": "number", "minimum": 0},
        "weight_source": _WEIGHT_SOURCE,
    }),
    "Domain": _obj({
        "name": {"type": "string"},
        "algorithm": {"type": "string"},
        "ttl": {"type": "integer", "minimum": 0},
        "regions": {"type": "array", "items": {"type": "string"}},
        "candidates": {"type": "array", "items": _ref("Candidate"),
                       "description": "every server of the domain's regions, in configuration order"},
    }),
    "Event": {
        "type": "object",
        "properties": {
            "time": {"type": "string", "format": "date-time"},
            "kind": {"type": "string", "description": "the log event's name: server_down, failover, leadership, ..."},
            "level": {"enum": ["debug", "info", "warn", "error", "critical"]},
            "message": {"type": "string", "description": "the log line's text"},
        },
        "required": ["time", "kind", "level", "message"],
        "additionalProperties": False,
    },
    "Member": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "address": {**_NULLABLE_STRING, "description": "host:port (the node's identity); null in standalone mode"},
            "status": {"enum": ["alive", "failed"], "description": "alive: connected to this node"},
            "config_hash": {**_NULLABLE_STRING, "description": "cluster mode: hash of the member's configuration"},
        },
        "required": ["name", "address", "status"],
        "additionalProperties": False,
    },
    "ClusterStatus": {
        "type": "object",
        "properties": {
            "mode": {"enum": ["standalone", "cluster"]},
            "node_name": {"type": "string"},
            "is_leader": {"type": "boolean"},
            "serving": {"type": "boolean", "description": "cluster mode: answering DNS with data now"},
            "leader_address": _NULLABLE_STRING,
            "members": {"type": "array", "items": _ref("Member")},
            "raft": {"oneOf": [
                {"type": "null", "description": "standalone mode"},
                _obj({"state": {"enum": ["Leader", "Follower", "Candidate"]},
                      "term": {"type": "integer", "minimum": 0},
                      "commit_index": {"type": "integer", "minimum": 0}}),
            ]},
            "config_hash": {**_NULLABLE_STRING,
                            "description": "SHA-256 of this node's configuration without node-specific settings"},
            "demoted": {"oneOf": [
                {"type": "null", "description": "not demoted (or its hold-down is over); always in standalone"},
                _obj({"reason": {"enum": ["dns_self_probe", "reactor_lag", "health_vantage"]},
                      "at": {"type": "number", "description": "Unix time of the demotion"},
                      "hold_down_until": {"type": "number",
                                          "description": "Unix time until which this node does not take "
                                                         "leadership back (unless it is the only candidate)"}}),
            ]},
        },
        "required": ["mode", "node_name", "is_leader", "leader_address", "members", "raft", "config_hash",
                     "demoted"],
        "additionalProperties": False,
    },
    "Leader": _obj({"leader": {"type": "boolean"}, "node_name": {"type": "string"},
                    "leader_address": _NULLABLE_STRING}),
    "JoinRequest": {"type": "object",
                    "properties": {"address": _MEMBER_ADDRESS,
                                   "name": {**_MEMBER_NAME, "description": "accepted, not used"}},
                    "required": ["address"], "additionalProperties": False},
    "RemoveRequest": {"type": "object",
                      "properties": {"address": _MEMBER_ADDRESS, "name": _MEMBER_NAME},
                      "anyOf": [{"required": ["address"]}, {"required": ["name"]}],
                      "additionalProperties": False,
                      "description": "the member's address or its name (the address wins when both are given)"},
    "Membership": {"type": "object", "properties": {
        "address": {"type": "string"}, "joined": {"type": "boolean"}, "removed": {"type": "boolean"},
        "message": {"type": "string"}}, "required": ["address"]},
    "Override": _obj({
        "region": {"type": "string"},
        "address": {"type": "string"},
        "weight": {"type": ["integer", "null"], "minimum": 0, "maximum": 1000,
                   "description": "replaces the server's weight; null: keep it"},
        "enabled": {"type": ["boolean", "null"],
                    "description": "false removes the server from answers; null: unchanged"},
        "reason": {"type": "string"},
        "created_at": _TIMESTAMP,
        "expires_at": {**_TIMESTAMP, "description": "when the override ends; null: never"},
    }),
    "OverrideRequest": {
        "type": "object",
        "properties": {
            "weight": {"type": "integer", "minimum": 0, "maximum": 1000,
                       "description": "replaces the server's weight (absent: keep it)"},
            "enabled": {"type": "boolean", "description": "false removes the server from answers"},
            "reason": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT, "pattern": NON_BLANK,
                       "description": "why (not blank)"},
            "ttl": {**_duration(OVERRIDE_TTL_MAX), "description": "how long the override lasts "
                    "(absent: until deleted); " + _duration(OVERRIDE_TTL_MAX)["description"]},
        },
        "required": ["reason"],
        "anyOf": [{"required": ["weight"]}, {"required": ["enabled"]}],
        "additionalProperties": False,
        "description": "weight and/or enabled is required; replaces any existing override",
    },
    "Signal": _obj({
        "reason": {"enum": ["cpu_high", "memory_high", "error_rate_high"]},
        "value": {"type": "number"},
        "threshold": {"type": "number"},
        "bleed_duration": {"type": "number", "minimum": 0, "description": "seconds"},
        "since": _TIMESTAMP,
        "cleared_at": {**_TIMESTAMP, "description": "null while the bleed signal is active"},
        "bleed_factor": {"type": "number", "minimum": 0, "maximum": 1,
                         "description": "the multiplier of the server's weight now (effective_weight "
                                        "includes it): 1.0 down to 0.05 over bleed_duration, back "
                                        "to 1.0 over the same time after clear"},
        "phase": {"enum": ["draining", "drained", "restoring", "restored", "disabled"],
                  "description": "where the ramp stands; disabled: cluster.predictive_health.enabled "
                                 "is false, so the signal is recorded but not applied"},
    }),
    "Veto": _obj({"reason": {"type": "string", "description": "why the overwatch vetoed the server"},
                  "since": {**_TIMESTAMP, "description": "when the veto was set"},
                  "expires_at": _TIMESTAMP}),
    "Service": _obj({
        "id": {"type": "string"},
        "region": {"type": "string"},
        "address": {"type": "string"},
        "port": _PORT,
        "weight": {"type": "integer", "minimum": 0, "maximum": 1000},
        "effective_weight": {"type": "number", "minimum": 0},
        "weight_source": _WEIGHT_SOURCE,
        "ttl": {"type": "number", "exclusiveMinimum": 0,
                "description": "seconds without heartbeat before the registration expires"},
        "agent": _NULLABLE_STRING,
        "claim": {"type": ["boolean", "null"],
                  "description": "the agent's health claim from its last heartbeat; null: no claim"},
        "healthy": {"type": "boolean", "description": "the verdict DNS serves"},
        "judged_by": {"enum": ["check", "claim"]},
        "served": {"type": "boolean", "description": "whether it is a candidate of its region's domains"},
        "not_served_reason": {**_NULLABLE_STRING,
                              "description": "why it is not served (its region is gone, or its "
                                             "address is now a configured server)"},
        "signal": {"oneOf": [{"type": "null"}, _ref("Signal")]},
        "veto": {"oneOf": [{"type": "null"}, _ref("Veto")]},
        "registered_at": _TIMESTAMP,
        "last_heartbeat": _TIMESTAMP,
        "expires_at": _TIMESTAMP,
    }),
    "ServiceRequest": {
        "type": "object",
        "properties": {
            "region": {"type": "string", "minLength": 1, "description": "a configured region (404 otherwise)"},
            "address": _SERVER_ADDRESS,
            "port": _PORT,
            "weight": {"type": "integer", "minimum": 0, "maximum": 1000, "default": 100},
            "ttl": {**_duration(SERVICE_TTL_MAX), "description": "expiry without heartbeats; "
                    + _duration(SERVICE_TTL_MAX)["description"]},
            "healthy": {"type": ["boolean", "null"],
                        "description": "the agent's claim; absent or null: judged by the region's checks"},
            "agent": {"type": ["string", "null"], "maxLength": AGENT_MAX},
        },
        "required": ["region", "address", "port", "ttl"],
        "additionalProperties": False,
    },
    "ServiceId": _obj({"id": {"type": "string"}}),
    "HeartbeatRequest": {
        "type": "object",
        "properties": {
            "healthy": {"type": ["boolean", "null"], "description": "the claim; absent or null: no claim"},
            "signal": {"oneOf": [
                {"type": "object",
                 "properties": {"type": {"const": "bleed"}, "reason": _SIGNAL_REASON,
                                "value": _SIGNAL_NUMBER, "threshold": _SIGNAL_NUMBER},
                 "required": ["type", "reason", "value", "threshold"],
                 "additionalProperties": False,
                 "description": "ask to be bled: reason's value is above its threshold"},
                {"type": "object",
                 "properties": {"type": {"const": "clear"}, "reason": _SIGNAL_REASON,
                                "value": _SIGNAL_NUMBER, "threshold": _SIGNAL_NUMBER},
                 "required": ["type"],
                 "additionalProperties": False,
                 "description": "back under every threshold; the other fields are informative"},
            ], "description": "the predictive signal (absent: none)"},
        },
        "additionalProperties": False,
        "description": "the body is required; {} renews without a claim",
    },
    "Deregistered": _obj({"id": {"type": "string"}, "deregistered": {"const": True}}),
    "Reloaded": _obj({
        "reloaded": {"const": True},
        "warnings": {"type": "array", "items": {"type": "string"}},
        "restart_required": {"type": "array", "items": {"type": "string"},
                             "description": "changed settings that take effect after a restart"},
    }),
}


def _json(description: str, schema: Schema) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> Schema:
    return _json(description, _ref("Error"))


_BAD_REQUEST = "the request path (after %-decoding) or Host header is not UTF-8"
_FORBIDDEN = "the source address is not in api.allowed_networks"
_SCOPES = {"drain": "a token of scope drain (api.drain_tokens) or admin (api.tokens)",
           "admin": "a token of scope admin (api.tokens)"}


def _common(bad_request: str = _BAD_REQUEST, forbidden: str = _FORBIDDEN) -> Dict[str, Schema]:
    """The replies every operation can get, whatever it is."""
    return {
        "400": _error(bad_request),
        "403": _error(forbidden),
        "408": _error("the request did not arrive within api.request_timeout"),
        "413": _error("the request body is larger than api.max_body_bytes"),
        "500": _error("unexpected error (logged)"),
    }


def _unauthorized() -> Schema:
    """401 with its challenge header."""
    reply = _error("missing or invalid bearer token, or no API tokens configured")
    reply["headers"] = {"WWW-Authenticate": {"required": True, "schema": {"const": "Bearer"}}}
    return reply


def _read(summary: str, ok: Schema, parameters: Optional[List[Schema]] = None,
          more: Optional[Dict[str, Schema]] = None) -> Schema:
    """A GET: no token needed.

    Its ``security`` says so (``{}``) and also lists ``bearerAuth``: a token
    may be sent (it is not checked on reads), and every method but GET and
    HEAD is refused 401 without one, on every path, before routing; a client
    (or schemathesis) reading the document thus expects 401 rather than 405
    for another method on a read-only path when it has no token.
    """
    responses: Dict[str, Schema] = {"200": _json("OK", ok), **_common(), **(more or {})}
    operation: Schema = {"summary": summary, "security": [{}, {"bearerAuth": []}],
                         "responses": dict(sorted(responses.items()))}
    if parameters:
        operation["parameters"] = copy.deepcopy(parameters)
    return operation


def _write(summary: str, scope: str, ok: Schema, errors: Dict[str, str], request: Optional[str] = None,
           parameters: Optional[List[Schema]] = None, ok_status: str = "200",
           more: Optional[Dict[str, Schema]] = None, bad_request: str = "") -> Schema:
    """A token-protected write (PUT, POST or DELETE) needing a token of ``scope``."""
    forbidden = f"{_FORBIDDEN}, or the token's scope is not enough (this call needs {_SCOPES[scope]})"
    responses: Dict[str, Schema] = {ok_status: _json("OK", ok), **(more or {})}
    responses.update(_common(f"{bad_request}; or {_BAD_REQUEST}" if bad_request else _BAD_REQUEST,
                             forbidden))
    responses.update({status: _error(text) for status, text in errors.items()})
    if errors.get("503") == _NOT_COMMITTED:
        responses["503"] = {**_json(_NOT_COMMITTED, _ref("WriteNotConfirmed")),
                            "headers": {"Retry-After": {"schema": {"const": "1"},
                                                        "description": "seconds before a retry"}}}
    responses["401"] = _unauthorized()
    operation: Schema = {
        "summary": summary,
        "description": f"Needs {_SCOPES[scope]}.",
        "security": [{"bearerAuth": []}],
        "x-token-scope": scope,
        "responses": dict(sorted(responses.items())),
    }
    if request is not None:
        operation["requestBody"] = {"required": True,
                                    "content": {"application/json": {"schema": _ref(request)}}}
    if parameters:
        operation["parameters"] = copy.deepcopy(parameters)
    return operation


_REGION_ADDRESS = [
    {"name": "region", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1},
     "description": "a configured region (404 otherwise)"},
    {"name": "address", "in": "path", "required": True, "schema": _IP_TEXT,
     "description": "the server's IP address (400 when it is not one)"},
]
_SERVICE_ID = [{"name": "id", "in": "path", "required": True,
                "schema": {"type": "string", "minLength": 1, "maxLength": MAX_ID},
                "description": "the id POST /api/v1/services answered (404 for any other)"}]
_NOT_COMMITTED = ("the write was not confirmed (no leader, timeout, leader change, disk); "
                  "`outcome` says whether it may still take effect")


def _runtime_paths() -> Dict[str, Schema]:
    """Overrides and registered services (SPEC §9)."""
    return {
        "/api/v1/overrides": {"get": _read("Every override in force",
                                           _list_of("overrides", _ref("Override")))},
        "/api/v1/overrides/{region}/{address}": {
            "get": _read("The override of one server", _ref("Override"), _REGION_ADDRESS,
                         more={"400": _error(f"the address is not an IP address; or {_BAD_REQUEST}"),
                               "404": _error("unknown region, or no override")}),
            "put": _write("Set (replace) the override of one server; effective in answers "
                          "within a second", "drain", _ref("Override"),
                          {"404": "unknown region, or the address is not a server of it",
                           "503": _NOT_COMMITTED},
                          "OverrideRequest", _REGION_ADDRESS,
                          bad_request="the address is not an IP address, or the body is not an "
                                      "OverrideRequest (no body, not JSON, weight outside 0-1000, no "
                                      "weight/enabled, blank reason, bad ttl, a null, an unknown field)"),
            "delete": _write("Remove the override of one server", "drain", _ref("Override"),
                             {"404": "unknown region, or no override", "503": _NOT_COMMITTED},
                             parameters=_REGION_ADDRESS, bad_request="the address is not an IP address"),
        },
        "/api/v1/services": {
            "get": _read("Registered services with claim, signal, veto and expiry",
                         _list_of("services", _ref("Service"))),
            "post": _write("Register a service (201 with a new id; 200 with the same id when "
                           "region+address+port is already registered)", "drain", _ref("ServiceId"),
                           {"404": "no configured region of that name",
                            "409": "the address is a configured server of that region",
                            "503": _NOT_COMMITTED},
                           "ServiceRequest", ok_status="201",
                           more={"200": _json("already registered: the same id", _ref("ServiceId"))},
                           bad_request="the body is not a ServiceRequest (no body, not JSON, bad "
                                       "address, port, weight or ttl, a null, an unknown field)"),
        },
        "/api/v1/services/{id}/heartbeat": {
            "put": _write("Renew a registration with the agent's claim and predictive signal", "drain",
                          _ref("Service"),
                          {"404": "no such registration (expired: register again)",
                           "503": _NOT_COMMITTED},
                          "HeartbeatRequest", _SERVICE_ID,
                          bad_request="the body is not a HeartbeatRequest (no body, not JSON, bad "
                                      "claim or signal, an unknown field)"),
        },
        "/api/v1/services/{id}": {
            "delete": _write("Deregister a service", "drain", _ref("Deregistered"),
                             {"404": "no such registration", "503": _NOT_COMMITTED},
                             parameters=_SERVICE_ID),
        },
    }


_DESCRIPTION = """\
JSON everywhere: every reply is `application/json`, every error is
`{"error": ..., "code": N}` with that HTTP status.

Each request passes these checks in order, before its body is read:
413 when its body is larger than `api.max_body_bytes`; 403 when the source
address is not in `api.allowed_networks`; 501 for a method that is not an
HTTP method (methods are case-sensitive: `put` is not `PUT`); 401 (with
`WWW-Authenticate: Bearer`) for any method but GET and HEAD without a valid
bearer token, on every path, served or not; then 404 for an unknown path,
405 (with `Allow`) for a known path and another method, and 403 when the
token's scope is not enough for the operation.

Token scopes: `drain` tokens (`api.tokens` items `{token: ..., scope: drain}`)
may set and delete overrides and register, renew and deregister services;
`admin` tokens (plain `api.tokens` strings) may also reload the
configuration and change cluster membership.  Each write operation names
its scope in `x-token-scope`.

Requests are described exactly: a request the document allows is never
refused as malformed (400), and one it does not allow is refused (400, or
earlier with 401, 403, 404, 409 or 413).  Request bodies are closed objects
(unknown fields are refused), `null` is accepted only where a schema says so,
and formatted text (IP addresses, durations, member addresses) must match
its `pattern`, which is the expression the server matches."""


def openapi_document() -> Dict[str, Any]:
    """The whole document as a JSON-ready dict (a new one each call)."""
    paths: Dict[str, Schema] = {
        "/api/v1/live": {"get": _read("The process is running", _ref("Live"))},
        "/api/v1/ready": {"get": _read("Ready to serve: DNS listening and first health round done",
                                       _ref("Ready"), more={"503": _json("not ready", _ref("Ready"))})},
        "/api/v1/health/servers": {"get": _read(
            "Health of every server: per region, the configured servers in configuration order, "
            "then the served registrations", _list_of("servers", _ref("ServerHealth")))},
        "/api/v1/health/regions": {"get": _read("Healthy/unhealthy counts per region",
                                                _list_of("regions", _ref("RegionHealth")))},
        "/api/v1/domains": {"get": _read("Configured domains with their algorithm, TTL and candidates",
                                         _list_of("domains", _ref("Domain")))},
        "/api/v1/events": {"get": _read("The last 50 notable events (the same lines as the log), newest first",
                                        _list_of("events", _ref("Event")))},
        "/api/v1/cluster/status": {"get": _read("Cluster mode, leadership and members",
                                                _ref("ClusterStatus"))},
        "/api/v1/cluster/members": {"get": _read("Cluster members", _list_of("members", _ref("Member")))},
        "/api/v1/cluster/leader": {"get": _read(
            "Whether this node is the serving leader (for load-balancer checks)", _ref("Leader"),
            more={"503": _json("this node is not serving DNS", _ref("Leader"))})},
        "/api/v1/cluster/join": {"post": _write(
            "Add a member by its cluster address (idempotent)", "admin", _ref("Membership"),
            {"409": "standalone mode", "503": "the change could not be committed (no leader, timeout)"},
            "JoinRequest", bad_request="the body is not a JoinRequest")},
        "/api/v1/cluster/remove": {"post": _write(
            "Remove a member by address or name; a leader hands over first", "admin", _ref("Membership"),
            {"404": "no such member", "409": "standalone mode",
             "503": "the change could not be committed (no leader, timeout)"},
            "RemoveRequest", bad_request="the body is not a RemoveRequest")},
        **_runtime_paths(),
        "/api/v1/explain": explain.document_path(_read, _error),
        "/api/v1/openapi.json": {"get": _read("This document", {"type": "object"})},
        "/api/v1/config/reload": {"post": _write(
            "Re-read and apply the configuration file (same as SIGHUP); takes no body", "admin",
            _ref("Reloaded"),
            {"422": "the file is invalid; the previous configuration is still running; "
                    "problems lists every error"})},
    }
    document = {
        "openapi": "3.1.0",
        "info": {"title": "OpenGSLB API", "version": __version__, "description": _DESCRIPTION},
        "paths": paths,
        "components": {
            "schemas": {**_SCHEMAS, **explain.SCHEMAS},
            "securitySchemes": {"bearerAuth": {
                "type": "http", "scheme": "bearer",
                "description": "Authorization: Bearer <token>; tokens have scope drain or admin "
                               "(see x-token-scope on each write)"}},
        },
    }
    return copy.deepcopy(document)
