"""The OpenAPI 3.1 document served at ``/api/v1/openapi.json``.

It describes exactly the routes :class:`~opengslb.api.app.GslbAPI` serves
(a unit test compares it with the Klein URL map) and the exact shape of each
reply: objects list every field they carry and allow no others, so a reply
that grows a field without the document growing it fails the tests.
"""

from __future__ import annotations

import copy
from typing import Any, Dict

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
                   "description": "configured weight"},
        "effective_weight": {"type": "number", "minimum": 0,
                             "description": "the weight routing uses"},
        "weight_source": {"enum": ["config"], "description": "where effective_weight comes from"},
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
                   "description": "configured weight; null for a server not in the configuration"},
        "effective_weight": {"type": "number", "minimum": 0},
    }),
    "Domain": _obj({
        "name": {"type": "string"},
        "algorithm": {"type": "string"},
        "ttl": {"type": "integer", "minimum": 0},
        "regions": {"type": "array", "items": {"type": "string"}},
        "candidates": {"type": "array", "items": _ref("Candidate"),
                       "description": "every server of the domain's regions, in configuration order"},
    }),
    "Member": _obj({
        "name": {"type": "string"},
        "address": {**_NULLABLE_STRING, "description": "host:port; null in standalone mode"},
        "status": {"type": "string"},
    }),
    "ClusterStatus": _obj({
        "mode": {"enum": ["standalone", "cluster"]},
        "node_name": {"type": "string"},
        "is_leader": {"type": "boolean"},
        "leader_address": _NULLABLE_STRING,
        "members": {"type": "array", "items": _ref("Member")},
        "raft": {"type": "null", "description": "null in standalone mode"},
    }),
    "Leader": _obj({"leader": {"type": "boolean"}, "node_name": {"type": "string"}}),
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


def openapi_document() -> Dict[str, Any]:
    """The whole document as a JSON-ready dict (a new one each call)."""
    paths: Dict[str, Schema] = {
        "/api/v1/live": _get("The process is running", _ref("Live")),
        "/api/v1/ready": _get("Ready to serve: DNS listening and first health round done",
                              _ref("Ready"), **{"503": _json("not ready", _ref("Ready"))}),
        "/api/v1/health/servers": _get("Health of every configured server, in configuration order",
                                       _list_of("servers", _ref("ServerHealth"))),
        "/api/v1/health/regions": _get("Healthy/unhealthy counts per region",
                                       _list_of("regions", _ref("RegionHealth"))),
        "/api/v1/domains": _get("Configured domains with their algorithm, TTL and candidates",
                                _list_of("domains", _ref("Domain"))),
        "/api/v1/cluster/status": _get("Cluster mode, leadership and members",
                                       _ref("ClusterStatus")),
        "/api/v1/cluster/members": _get("Cluster members", _list_of("members", _ref("Member"))),
        "/api/v1/cluster/leader": _get("Whether this node is the serving leader", _ref("Leader")),
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
