"""The OpenAPI 3.1 document served at ``/api/v1/openapi.json``.

It describes exactly the routes :class:`~opengslb.api.app.GslbAPI` serves
(a unit test compares it with the Klein URL map) and the exact shape of each
reply: objects list every field they carry and allow no others, so a reply
that grows a field without the document growing it fails the tests.
"""

from __future__ import annotations

import copy
from typing import Any, Dict, List, Optional

from opengslb import __version__

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
_DURATION: Schema = {"oneOf": [{"type": "string", "examples": ["30s", "1h", "1m30s"]},
                               {"type": "integer", "minimum": 1}],
                     "description": "a duration: \"30s\"-style text or integer seconds"}

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
        },
        "required": ["mode", "node_name", "is_leader", "leader_address", "members", "raft", "config_hash"],
        "additionalProperties": False,
    },
    "Leader": _obj({"leader": {"type": "boolean"}, "node_name": {"type": "string"},
                    "leader_address": _NULLABLE_STRING}),
    "JoinRequest": {"type": "object", "properties": {"address": {"type": "string"}, "name": {"type": "string"}},
                    "required": ["address"]},
    "RemoveRequest": {"type": "object", "properties": {"address": {"type": "string"}, "name": {"type": "string"}}},
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
            "weight": {"type": "integer", "minimum": 0, "maximum": 1000},
            "enabled": {"type": "boolean"},
            "reason": {"type": "string", "minLength": 1},
            "ttl": _DURATION,
        },
        "required": ["reason"],
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
            "region": {"type": "string"},
            "address": {"type": "string", "description": "IPv4 or IPv6 address"},
            "port": _PORT,
            "weight": {"type": "integer", "minimum": 0, "maximum": 1000, "default": 100},
            "ttl": _DURATION,
            "healthy": {"type": ["boolean", "null"],
                        "description": "the agent's claim; absent: judged by the region's checks"},
            "agent": {"type": ["string", "null"], "maxLength": 128},
        },
        "required": ["region", "address", "port", "ttl"],
        "additionalProperties": False,
    },
    "ServiceId": _obj({"id": {"type": "string"}}),
    "HeartbeatRequest": {
        "type": "object",
        "properties": {
            "healthy": {"type": ["boolean", "null"], "description": "absent: no claim"},
            "signal": {
                "type": "object",
                "properties": {
                    "type": {"enum": ["bleed", "clear"]},
                    "reason": {"enum": ["cpu_high", "memory_high", "error_rate_high"]},
                    "value": {"type": "number"},
                    "threshold": {"type": "number"},
                },
                "required": ["type"],
                "additionalProperties": False,
            },
        },
        "additionalProperties": False,
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


def _get(summary: str, ok: Schema, **more: Schema) -> Schema:
    responses = {"200": _json("OK", ok), **more,
                 "403": _error("the source address is not in api.allowed_networks"),
                 "500": _error("unexpected error (logged)")}
    return {"get": {"summary": summary, "responses": responses}}


def _post(summary: str, request: str, ok: str, more: Dict[str, Schema]) -> Schema:
    """A token-protected POST with a JSON body."""
    responses = {"200": _json("OK", _ref(ok)),
                 "400": _error("the body is not what this route takes"),
                 "401": _error("missing or invalid bearer token, or no api.tokens configured"),
                 "403": _error("the source address is not in api.allowed_networks"),
                 **more,
                 "503": _error("the change could not be committed (no leader, timeout)"),
                 "500": _error("unexpected error (logged)")}
    return {"post": {"summary": summary, "security": [{"bearerAuth": []}],
                     "requestBody": {"required": True, "content": {"application/json": {"schema": _ref(request)}}},
                     "responses": responses}}


_REGION_ADDRESS = [
    {"name": "region", "in": "path", "required": True, "schema": {"type": "string"}},
    {"name": "address", "in": "path", "required": True, "schema": {"type": "string"},
     "description": "the server's IP address"},
]
_SERVICE_ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]


def _write(summary: str, ok: Schema, errors: Dict[str, str], request: Optional[str] = None,
           parameters: Optional[List[Schema]] = None, ok_status: str = "200",
           more: Optional[Dict[str, Schema]] = None) -> Schema:
    """A token-protected write of the runtime state (PUT, POST or DELETE)."""
    responses: Dict[str, Schema] = {ok_status: _json("OK", ok), **(more or {})}
    responses.update({status: _error(text) for status, text in errors.items()})
    responses.update({
        "401": _error("missing or invalid bearer token, or no api.tokens configured"),
        "403": _error("the source address is not in api.allowed_networks"),
        "503": _error("the write could not be committed (no leader, timeout, disk); nothing changed"),
        "500": _error("unexpected error (logged)"),
    })
    operation: Schema = {"summary": summary, "security": [{"bearerAuth": []}], "responses": responses}
    if request is not None:
        operation["requestBody"] = {"required": True,
                                    "content": {"application/json": {"schema": _ref(request)}}}
    if parameters:
        operation["parameters"] = copy.deepcopy(parameters)
    return operation


def _read(summary: str, ok: Schema, parameters: Optional[List[Schema]] = None,
          **more: Schema) -> Schema:
    operation = _get(summary, ok, **more, **{"503": _error("runtime state is not available")})["get"]
    if parameters:
        operation["parameters"] = copy.deepcopy(parameters)
    return operation


def _runtime_paths() -> Dict[str, Schema]:
    """Overrides and registered services (SPEC §9)."""
    return {
        "/api/v1/overrides": {"get": _read("Every override in force",
                                           _list_of("overrides", _ref("Override")))},
        "/api/v1/overrides/{region}/{address}": {
            "get": _read("The override of one server", _ref("Override"), _REGION_ADDRESS,
                         **{"400": _error("the address is not an IP address"),
                            "404": _error("unknown region, or no override")}),
            "put": _write("Set (replace) the override of one server; effective in answers "
                          "within a second", _ref("Override"),
                          {"400": "bad body: weight outside 0-1000, no weight/enabled, no reason, "
                                  "bad ttl, unknown field",
                           "404": "unknown region, or the address is not a server of it"},
                          "OverrideRequest", _REGION_ADDRESS),
            "delete": _write("Remove the override of one server", _ref("Override"),
                             {"400": "the address is not an IP address",
                              "404": "unknown region, or no override"},
                             parameters=_REGION_ADDRESS),
        },
        "/api/v1/services": {
            "get": _read("Registered services with claim, signal, veto and expiry",
                         _list_of("services", _ref("Service"))),
            "post": _write("Register a service (201 with a new id; 200 with the same id when "
                           "region+address+port is already registered)", _ref("ServiceId"),
                           {"400": "bad body: unknown region, bad address, port, weight or ttl",
                            "409": "the address is a configured server of that region"},
                           "ServiceRequest", ok_status="201",
                           more={"200": _json("already registered: the same id", _ref("ServiceId"))}),
        },
        "/api/v1/services/{id}/heartbeat": {
            "put": _write("Renew a registration with the agent's claim and predictive signal",
                          _ref("Service"),
                          {"400": "bad body", "404": "no such registration (expired: register again)"},
                          "HeartbeatRequest", _SERVICE_ID),
        },
        "/api/v1/services/{id}": {
            "delete": _write("Deregister a service", _ref("Deregistered"),
                             {"404": "no such registration"}, parameters=_SERVICE_ID),
        },
    }


def openapi_document() -> Dict[str, Any]:
    """The whole document as a JSON-ready dict (a new one each call)."""
    paths: Dict[str, Schema] = {
        "/api/v1/live": _get("The process is running", _ref("Live")),
        "/api/v1/ready": _get("Ready to serve: DNS listening and first health round done",
                              _ref("Ready"), **{"503": _json("not ready", _ref("Ready"))}),
        "/api/v1/health/servers": _get("Health of every server: per region, the configured servers "
                                       "in configuration order, then the served registrations",
                                       _list_of("servers", _ref("ServerHealth"))),
        "/api/v1/health/regions": _get("Healthy/unhealthy counts per region",
                                       _list_of("regions", _ref("RegionHealth"))),
        "/api/v1/domains": _get("Configured domains with their algorithm, TTL and candidates",
                                _list_of("domains", _ref("Domain"))),
        "/api/v1/cluster/status": _get("Cluster mode, leadership and members",
                                       _ref("ClusterStatus")),
        "/api/v1/cluster/members": _get("Cluster members", _list_of("members", _ref("Member"))),
        "/api/v1/cluster/leader": _get("Whether this node is the serving leader (for load-balancer checks)",
                                       _ref("Leader"),
                                       **{"503": _json("this node is not serving DNS", _ref("Leader"))}),
        "/api/v1/cluster/join": _post("Add a member by its cluster address (idempotent)", "JoinRequest",
                                      "Membership", {"409": _error("standalone mode")}),
        "/api/v1/cluster/remove": _post("Remove a member by address or name; a leader hands over first",
                                        "RemoveRequest", "Membership",
                                        {"404": _error("no such member"), "409": _error("standalone mode")}),
        **_runtime_paths(),
        "/api/v1/openapi.json": _get("This document", {"type": "object"}),
        "/api/v1/config/reload": {"post": {
            "summary": "Re-read and apply the configuration file (same as SIGHUP)",
            "security": [{"bearerAuth": []}],
            "responses": {
                "200": _json("the new configuration is running", _ref("Reloaded")),
                "401": _error("missing or invalid bearer token, or no api.tokens configured"),
                "403": _error("the source address is not in api.allowed_networks"),
                "422": _error("the file is invalid; the previous configuration is still "
                              "running; problems lists every error"),
                "500": _error("unexpected error (logged)"),
            },
        }},
    }
    document = {
        "openapi": "3.1.0",
        "info": {
            "title": "OpenGSLB API",
            "version": __version__,
            "description": (
                "JSON everywhere. Every error is {\"error\": ..., \"code\": N}: 404 for an unknown "
                "path, 405 (with Allow) for a known path and another method, 403 when the source "
                "address is not allowed (checked first, for every path), 401 (with "
                "WWW-Authenticate: Bearer) for a state-changing call without a valid token."),
        },
        "paths": paths,
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }
    return copy.deepcopy(document)
