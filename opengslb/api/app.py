"""The HTTP API (SPEC §9): a Klein class over the facades it is given.

Every request passes one gate before anything else (:meth:`GslbAPI._gate_error`;
the listener runs it as soon as the headers are in, before the body is read,
and every route runs it again with the route's scope, :meth:`GslbAPI._admit`):

1. the source address (see :func:`opengslb.api.auth.client_address`) must be
   in ``api.allowed_networks`` — 403 otherwise, for every path, including
   unknown ones and the status page;
2. the method must be one HTTP defines, spelled exactly (methods are
   case-sensitive) — 501 otherwise;
3. every method but GET and HEAD needs ``Authorization: Bearer <token>``
   with a token of ``api.tokens`` — 401 with ``WWW-Authenticate: Bearer``
   otherwise (always 401 when no token is configured), on every path;
4. routing (404, 405 with ``Allow``), then the token's scope: ``drain``
   tokens may change overrides and registrations, ``admin`` tokens anything
   (403 when the scope is too small).

Settings are read per request, so a reload that changes the networks or the
tokens applies to the next request.  Every reply is JSON; every error is
``{"error": "...", "code": N}`` with that HTTP status (500 for an unexpected
exception, which is logged).  ``/`` and ``/ui/*`` serve the status page
(:mod:`opengslb.api.ui`).
"""

from __future__ import annotations

import functools
import ipaddress
import json
import math
import re
from dataclasses import dataclass, field
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    List,
    Mapping,
    Optional,
    Protocol,
    Sequence,
    Tuple,
    Union,
)

from klein import Klein
from klein.resource import KleinResource
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from opengslb.api import auth, explain, patterns
from opengslb.api.openapi import AGENT_MAX, OVERRIDE_TTL_MAX, SERVICE_TTL_MAX, openapi_document
from opengslb.api.timefmt import rfc3339
from opengslb.api.ui import StatusPage
from opengslb.cluster.facade import MembershipError, StandaloneCluster
from opengslb.config.durations import parse_duration
from opengslb.config.model import APIConfig, ServerConfig
from opengslb.events import RecentEvents
from opengslb.health.tracker import ServerKey
from opengslb.httpserve import ListenerLimits, Refusal
from opengslb.runtime import NotFound as MissingState
from opengslb.runtime import Rejected, WriteFailed
from opengslb.state.machine import MAX_TEXT, SIGNAL_REASONS

if TYPE_CHECKING:
    from opengslb.core import Gslb
    from opengslb.runtime import Runtime

log = Logger(namespace="opengslb.api")

#: Methods that need no token (exact spelling: HTTP methods are case-sensitive).
READ_METHODS = frozenset({b"GET", b"HEAD"})
#: The methods of RFC 9110, PATCH and QUERY (a registered method that clients such as
#: schemathesis probe with: an unserved method on a known path is a 405, not a 501);
#: any other spelling is answered 501.
HTTP_METHODS = READ_METHODS | {b"POST", b"PUT", b"PATCH", b"DELETE", b"OPTIONS", b"TRACE", b"CONNECT",
                               b"QUERY"}

INVALID_CONFIG = "configuration is invalid; the previous configuration is still running"


class ReloadResult(Protocol):
    """What the API reads from :class:`opengslb.reload.ReloadOutcome`."""

    ok: bool
    errors: List[str]
    warnings: List[str]
    restart_required: List[str]


class Clock(Protocol):
    """The part of ``IReactorTime`` the API uses."""

    def seconds(self) -> float:
        """Now, in seconds."""


class ReloadTrigger(Protocol):
    """What the API needs of :class:`opengslb.reload.Reloader`."""

    def reload(self) -> "Deferred[Any]":
        """Reload now; fires a :class:`ReloadResult`, never fails."""


@dataclass(frozen=True)
class Reply:
    """A JSON reply: ``body`` with ``status`` and extra ``headers``."""

    body: Mapping[str, Any]
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)


class APIError(Exception):
    """Ends a request with the JSON error shape and ``status``.

    ``extra`` adds fields to the body (e.g. ``problems``).
    """

    def __init__(self, status: int, message: str, headers: Optional[Mapping[str, str]] = None,
                 extra: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__(message)
        self.reply = Reply({"error": message, "code": status, **(extra or {})}, status,
                           dict(headers or {}))


def _write(request: Request, reply: Union[Reply, Mapping[str, Any]]) -> bytes:
    """Set status and headers of ``request`` for ``reply``; return the encoded body."""
    if not isinstance(reply, Reply):
        reply = Reply(reply)
    request.setResponseCode(reply.status)
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Cache-Control", b"no-store")
    for name, value in reply.headers.items():
        request.setHeader(name.encode("ascii"), value.encode("latin-1"))
    return json.dumps(reply.body).encode("utf-8")


Handler = Callable[..., Any]


def _route(app: Klein, path: str, method: str = "GET",
           scope: str = "admin") -> Callable[[Handler], Handler]:
    """Serve ``handler`` at ``path`` for ``method``, behind the gate.

    A write (any method but GET) needs a token whose scope allows ``scope``
    (see :data:`opengslb.api.auth.SCOPES`).  The handler returns (or fires)
    a dict (200) or a :class:`Reply`, or raises :class:`APIError`.
    """

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        def endpoint(self: "GslbAPI", request: Request, **kwargs: Any) -> "Deferred[bytes]":
            self._admit(request, scope)
            result = maybeDeferred(handler, self, request, **kwargs)
            return result.addCallback(lambda reply: _write(request, reply))

        return app.route(path, methods=[method])(endpoint)

    return decorate


def api_limits(settings: APIConfig) -> ListenerLimits:
    """The bounds of the API listener, from the ``api`` settings."""
    return ListenerLimits(settings.max_connections, settings.max_connections_per_source,
                          settings.request_timeout, settings.max_body_bytes,
                          settings.max_connection_rate)


def _shielded(d: "Deferred[Any]") -> "Deferred[Any]":
    """A Deferred with ``d``'s result whose cancellation leaves ``d`` running.

    Klein cancels a handler's Deferred when the client goes away; a reload
    must still finish.
    """
    outer: Deferred[Any] = Deferred()

    def relay(result: Any) -> None:
        if not outer.called:
            outer.callback(result)
        elif isinstance(result, Failure):
            log.failure("error after the API client went away", failure=result)

    d.addBoth(relay)
    return outer


class GslbAPI:
    """The ``/api/v1`` routes over the running service.

    :param gslb: the core: ``config``, ``view``, ``health`` and the served policy
        (``served``, ``served_at``, ``registration_status``): every health and
        weight shown comes from there.
    :param reloader: runs a configuration reload (``reload()``).
    :param settings: returns the current ``api`` settings (they change on
        reload).
    :param readiness: returns ``(ready, reason)``; ``reason`` is ``None``
        when ready.
    :param node_name: this node's name, reported by the cluster routes.
    :param clock: time source (``reactor``); used to time API-triggered
        reloads and to stamp runtime-state writes.
    :param cluster: the cluster facade (default: a standalone node).
    :param runtime: the runtime state (:class:`opengslb.runtime.Runtime`):
        overrides and registered services.

    Serve ``GslbAPI(...).resource()`` (the same as ``.app.resource()``).
    """

    app = Klein()

    def __init__(self, gslb: "Gslb", reloader: ReloadTrigger, settings: Callable[[], APIConfig],
                 readiness: Callable[[], Tuple[bool, Optional[str]]], node_name: str,
                 clock: Clock, cluster: Optional[Any] = None, *,
                 runtime: "Runtime",
                 events: Optional[RecentEvents] = None) -> None:
        self._cluster = cluster if cluster is not None else StandaloneCluster(node_name, lambda: None)
        self._gslb = gslb
        self._reloader = reloader
        self._settings = settings
        self._readiness = readiness
        self._node_name = node_name
        self._clock = clock
        self.runtime = runtime
        self.events = events if events is not None else RecentEvents()

    def resource(self) -> Resource:
        """The Twisted Web resource to serve at the root of the API listener."""
        return _Root(self.app.resource(), self, StatusPage())

    # -- the gate ------------------------------------------------------------

    def _source(self, request: Request, settings: APIConfig) -> Optional[auth.IPAddress]:
        peer = getattr(request.getClientAddress(), "host", None)
        forwarded = request.requestHeaders.getRawHeaders(b"x-forwarded-for", [])
        return auth.client_address(peer, [v.decode("latin-1") for v in forwarded], settings)

    def _check_source(self, request: Request, settings: APIConfig) -> None:
        """Raise 403 unless the source address is in ``allowed_networks``."""
        source = self._source(request, settings)
        if not auth.source_allowed(source, settings):
            log.debug("API request from {source} refused: not in api.allowed_networks",
                      source=str(source), event="api_forbidden")
            shown = "unknown" if source is None else str(source)
            raise APIError(403, f"source address {shown} is not in api.allowed_networks")

    def _gate_error(self, request: Request, settings: APIConfig) -> Optional[APIError]:
        """What the gate says before routing: 403 source, 501 unknown method, 401 token.

        Authorization is the default: every method but GET and HEAD needs a
        valid token of some scope, whether or not a route serves it.
        """
        try:
            self._check_source(request, settings)
        except APIError as forbidden:
            return forbidden
        method = request.method
        if method not in HTTP_METHODS:
            shown = method.decode("ascii", "replace")[:20]
            return APIError(501, f"method {shown!r} is not implemented (methods are case-sensitive: "
                                 "GET, HEAD, POST, PUT, DELETE)")
        if method in READ_METHODS:
            return None
        challenge = {"WWW-Authenticate": "Bearer"}
        if not (settings.tokens or settings.drain_tokens):
            return APIError(401, "no API tokens are configured (api.tokens); "
                                 "state-changing calls are disabled", challenge)
        header = request.getHeader(b"authorization")
        token = auth.bearer_token(header.decode("latin-1") if header is not None else None)
        if token is None:
            return APIError(401, "missing bearer token (Authorization: Bearer <token>)", challenge)
        if auth.token_scope(token, settings) is None:
            log.warn("API {method} {path}: invalid bearer token",
                     method=method.decode("ascii", "replace"),
                     path=request.path.decode("utf-8", "replace"), event="api_unauthorized")
            return APIError(401, "invalid bearer token", challenge)
        return None

    def gate(self, request: Request) -> Optional[Refusal]:
        """The listener's check once a request's headers are in, before its body is read."""
        error = self._gate_error(request, self._settings())
        if error is None:
            return None
        return Refusal(error.reply.status, error.reply.body["error"], error.reply.headers)

    def _admit(self, request: Request, scope: str) -> None:
        """The gate of every served route: source, method, token, then the token's scope."""
        settings = self._settings()
        error = self._gate_error(request, settings)
        if error is not None:
            raise error
        if request.method in READ_METHODS:
            return
        header = request.getHeader(b"authorization")
        token = auth.bearer_token(header.decode("latin-1") if header is not None else None)
        given = auth.token_scope(token, settings)
        if not auth.scope_allows(given, scope):
            raise APIError(403, f"this token has scope {given!r}; "
                                f"{request.method.decode('ascii')} {request.path.decode('utf-8', 'replace')} "
                                f"needs scope {scope!r}")

    @app.handle_errors(Exception)  # type: ignore[arg-type]
    def _failed(self, request: Request, failure: Failure) -> bytes:
        """Every error as JSON; routing errors pass the source check first."""
        error = failure.value
        if isinstance(error, HTTPException):
            error = self._gate_error(request, self._settings()) or _routing_error(request, error)
        if not isinstance(error, APIError):
            log.failure("API {method} {path} failed", failure=failure,
                        method=request.method.decode("ascii", "replace"),
                        path=request.path.decode("utf-8", "replace"))
            error = APIError(500, "internal error (logged)")
        return _write(request, error.reply)

    # -- liveness --------------------------------------------------------------

    @_route(app, "/api/v1/live")
    def live(self, request: Request) -> Dict[str, Any]:
        return {"alive": True}

    @_route(app, "/api/v1/ready")
    def ready(self, request: Request) -> Reply:
        ready, reason = self._readiness()
        return Reply({"ready": ready, "reason": None if ready else reason},
                     200 if ready else 503)

    # -- health ----------------------------------------------------------------

    @_route(app, "/api/v1/health/servers")
    def health_servers(self, request: Request) -> Dict[str, Any]:
        """Configured servers, then served registrations, region by region."""
        servers: List[Dict[str, Any]] = []
        for region in self._gslb.config.regions:
            servers += [self._server_health(region.name, server) for server in region.servers]
            servers += [self._registered_health(region.name, registration)
                        for registration in self._registrations_of(region.name)]
        return {"servers": servers}

    def _registrations_of(self, region: str) -> List[Dict[str, Any]]:
        return self.runtime.served_registrations(region)

    def _registered_health(self, region: str, registration: Dict[str, Any]) -> Dict[str, Any]:
        server = ServerConfig(registration["address"], registration["port"], registration["weight"])
        served = self._gslb.served(region, server)
        if served.judged_by == "check":
            return self._server_health(region, server, registration)
        claim = bool(registration.get("claim"))
        last_seen = self.runtime.last_seen(registration)
        return {
            "address": server.address,
            "port": server.port,
            "region": region,
            "healthy": served.healthy,
            "status": "healthy" if claim else "unhealthy",
            "last_check": rfc3339(last_seen),
            "last_healthy": rfc3339(last_seen if claim else None),
            "consecutive_failures": 0,
            "consecutive_successes": 0,
            "last_error": None if claim else "the agent claims its service is unhealthy",
            "weight": served.base,
            "effective_weight": served.weight,
            "weight_source": served.source,
            "registration_id": registration["id"],
            "judged_by": "claim",
            "node_verdicts": {},
        }

    def _server_health(self, region: str, server: ServerConfig,
                       registration: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        key = ServerKey(region, server.address, server.port)
        health = self._gslb.health.get(key)
        served = self._gslb.served(region, server)
        return {
            "address": server.address,
            "port": server.port,
            "region": region,
            "healthy": served.healthy,
            "status": health.status if health is not None else "unknown",
            "last_check": rfc3339(health.last_check if health is not None else None),
            "last_healthy": rfc3339(health.last_healthy if health is not None else None),
            "consecutive_failures": health.consecutive_failures if health is not None else 0,
            "consecutive_successes": health.consecutive_successes if health is not None else 0,
            "last_error": health.last_error if health is not None else None,
            "weight": served.base,
            "effective_weight": served.weight,
            "weight_source": served.source,
            "registration_id": registration["id"] if registration is not None else None,
            "judged_by": "check",
            "node_verdicts": self._node_verdicts(key, health),
        }

    def _node_verdicts(self, key: ServerKey, health: Any) -> Dict[str, bool]:
        """Each node's own verdict for ``key``: this node's, then every node heard from recently."""
        verdicts: Dict[str, bool] = {}
        if health is not None:
            verdicts[self._cluster.self_id] = health.healthy
        verdicts.update(self._gslb.peer_verdicts(key))
        return verdicts

    @_route(app, "/api/v1/health/regions")
    def health_regions(self, request: Request) -> Dict[str, Any]:
        """Per region: server counts and ``health_percent`` (0.0 for a region without servers)."""
        regions = []
        judge = self._gslb.judge()
        for region in self._gslb.config.regions:
            servers = self._gslb.servers(region.name)
            total = len(servers)
            healthy = sum(1 for s in servers if judge(region.name, s).healthy)
            regions.append({
                "name": region.name,
                "servers": total,
                "healthy": healthy,
                "unhealthy": total - healthy,
                "health_percent": round(100.0 * healthy / total, 1) if total else 0.0,
            })
        return {"regions": regions}

    # -- domains ---------------------------------------------------------------

    @_route(app, "/api/v1/domains")
    def domains(self, request: Request) -> Dict[str, Any]:
        view = self._gslb.view

        def weight(c: Any) -> Tuple[int, str]:
            served = self._gslb.served_at(c.region, c.address, c.port)
            return served.base, served.source

        return {"domains": [{
            "name": name,
            "algorithm": domain.algorithm,
            "ttl": domain.ttl,
            "regions": list(domain.config.regions),
            "candidates": [{
                "address": c.address,
                "port": c.port,
                "region": c.region,
                "healthy": c.healthy,
                "weight": weight(c)[0],
                "effective_weight": c.weight,
                "weight_source": weight(c)[1],
            } for c in domain.candidates],
        } for name, domain in view.domains.items()]}

    # -- runtime state: overrides ------------------------------------------------

    @_route(app, "/api/v1/overrides")
    def overrides(self, request: Request) -> Dict[str, Any]:
        """Every override in force (expired ones are left out), by region and address."""
        now = self._clock.seconds()
        active = self.runtime.machine.active_overrides(now)
        return {"overrides": [_override_json(o) for _, o in sorted(active.items())]}

    @_route(app, "/api/v1/overrides/<region>/<address>")
    def override_get(self, request: Request, region: str, address: str) -> Dict[str, Any]:
        address = _path_address(address)
        override = self.runtime.active_override(region, address)
        if override is None:
            self._known_region(region, 404)
            raise APIError(404, f"no override for {address} in region {region}")
        return _override_json(override)

    @_route(app, "/api/v1/overrides/<region>/<address>", "PUT", scope="drain")
    def override_put(self, request: Request, region: str, address: str) -> "Deferred[Dict[str, Any]]":
        """Replace the override of a configured (or registered) server."""
        address = _path_address(address)
        self._known_region(region, 404)
        if not self.runtime.server_known(region, address):
            raise APIError(404, f"{address} is not a server of region {region}")
        body = self._json_body(request)
        _only(body, ("weight", "enabled", "reason", "ttl"))
        weight = _weight_field(body, "weight", None)
        enabled = body.get("enabled")
        if "enabled" in body and not isinstance(enabled, bool):
            raise APIError(400, "enabled must be true or false (leave it out to keep the server enabled)")
        if weight is None and enabled is None:
            raise APIError(400, "an override needs weight and/or enabled")
        reason = body.get("reason")
        if not isinstance(reason, str) or not re.search(patterns.NON_BLANK, reason):
            raise APIError(400, "reason is required: say why (a string that is not blank)")
        if len(reason) > MAX_TEXT:
            raise APIError(400, f"reason is longer than {MAX_TEXT} characters")
        ttl = _duration_field(body, "ttl", required=False, maximum=MAX_OVERRIDE_TTL)
        d = self.runtime.set_override(region, address, weight, enabled, reason, ttl)
        return _shielded(d).addCallbacks(_override_json, _write_failed)

    @_route(app, "/api/v1/overrides/<region>/<address>", "DELETE", scope="drain")
    def override_delete(self, request: Request, region: str, address: str) -> "Deferred[Dict[str, Any]]":
        address = _path_address(address)
        if self.runtime.machine.overrides.get(f"{region}/{address}") is None:
            self._known_region(region, 404)
        return _shielded(self.runtime.delete_override(region, address)).addCallbacks(
            _override_json, _write_failed)

    def _known_region(self, region: str, status: int) -> None:
        try:
            self._gslb.config.region(region)
        except KeyError:
            raise APIError(status, f"unknown region {region!r}") from None

    # -- runtime state: registered services -------------------------------------

    @_route(app, "/api/v1/services")
    def services(self, request: Request) -> Dict[str, Any]:
        """Every registration, in registration order, with claim, signal, veto and expiry."""
        records = sorted(self.runtime.machine.registrations.values(),
                         key=lambda r: (r["registered_at"], r["id"]))
        return {"services": [_service_json(self._gslb, r) for r in records]}

    @_route(app, "/api/v1/services", "POST", scope="drain")
    def service_register(self, request: Request) -> "Deferred[Reply]":
        """Register a server: 201 with a new id, 200 with the same id when already registered."""
        body = self._json_body(request)
        _only(body, ("region", "address", "port", "weight", "ttl", "healthy", "agent"))
        region = body.get("region")
        if not isinstance(region, str) or not region:
            raise APIError(400, "region is required (a configured region name)")
        if "address" not in body:
            raise APIError(400, "address is required (an IP address)")
        address = _address(body["address"], "address")
        port = _integer(body.get("port"))
        if port is None or not 1 <= port <= 65535:
            raise APIError(400, "port is required: an integer from 1 to 65535")
        weight = _weight_field(body, "weight", 100)
        ttl = _duration_field(body, "ttl", required=True, maximum=MAX_SERVICE_TTL)
        healthy = body.get("healthy")
        if healthy is not None and not isinstance(healthy, bool):
            raise APIError(400, "healthy must be true, false, null or absent (no claim)")
        agent = body.get("agent")
        if agent is not None and (not isinstance(agent, str) or len(agent) > MAX_AGENT):
            raise APIError(400, f"agent must be a string of at most {MAX_AGENT} characters")
        self._known_region(region, 404)
        if any(s.address == address for s in self._gslb.config.region(region).servers):
            raise APIError(409, f"{address} is a configured server of region {region}; "
                                "a registration cannot replace it")
        assert weight is not None and ttl is not None

        def done(result: Tuple[Dict[str, Any], bool]) -> Reply:
            record, created = result
            return Reply({"id": record["id"]}, 201 if created else 200)

        d = self.runtime.register(region, address, port, weight, ttl, healthy, agent)
        return _shielded(d).addCallbacks(done, _write_failed)

    @_route(app, "/api/v1/services/<id>/heartbeat", "PUT", scope="drain")
    def service_heartbeat(self, request: Request, id: str) -> "Deferred[Dict[str, Any]]":
        """Renew a registration; the body carries the claim and any predictive signal."""
        if id not in self.runtime.machine.registrations:
            raise APIError(404, f"no registration {id} (it may have expired: register again)")
        body = self._json_body(request)
        _only(body, ("healthy", "signal"))
        healthy = body.get("healthy")
        if healthy is not None and not isinstance(healthy, bool):
            raise APIError(400, "healthy must be true, false, null or absent (no claim)")
        signal = _signal(body["signal"]) if "signal" in body else None
        d = self.runtime.heartbeat(id, healthy, signal)
        return _shielded(d).addCallbacks(lambda record: _service_json(self._gslb, record), _write_failed)

    @_route(app, "/api/v1/services/<id>", "DELETE", scope="drain")
    def service_deregister(self, request: Request, id: str) -> "Deferred[Dict[str, Any]]":
        return _shielded(self.runtime.deregister(id)).addCallbacks(
            lambda record: {"id": record["id"], "deregistered": True}, _write_failed)

    # -- cluster ------------------------------------------------------------------

    @_route(app, "/api/v1/events")
    def recent_events(self, request: Request) -> Dict[str, Any]:
        """The last notable events (server up/down, failover, leadership, reloads...), newest first."""
        return {"events": [{**event, "time": rfc3339(event["time"])} for event in self.events.snapshot()]}

    @_route(app, "/api/v1/cluster/status")
    def cluster_status(self, request: Request) -> Dict[str, Any]:
        """Mode, this node, leadership, members and Raft state (standalone: raft null)."""
        return self._cluster.status()

    @_route(app, "/api/v1/cluster/members")
    def cluster_members(self, request: Request) -> Dict[str, Any]:
        return {"members": self._cluster.members()}

    @_route(app, "/api/v1/cluster/leader")
    def cluster_leader(self, request: Request) -> Reply:
        """200 on the node serving DNS (the leader; always in standalone), 503 elsewhere."""
        return Reply(self._cluster.leader(), 200 if self._cluster.is_serving() else 503)

    @_route(app, "/api/v1/cluster/join", "POST")
    def cluster_join(self, request: Request) -> "Deferred[Dict[str, Any]]":
        """Add a member by its cluster address (idempotent)."""
        body = self._json_body(request)
        _only(body, ("address", "name"))
        if "address" not in body:
            raise APIError(400, 'body must be {"address": "ip:port", "name"?: "..."}')
        address = _member_address(body["address"])
        name = _member_name(body)
        return self._membership(request, self._cluster.join(address, name))

    @_route(app, "/api/v1/cluster/remove", "POST")
    def cluster_remove(self, request: Request) -> "Deferred[Dict[str, Any]]":
        """Remove a member by address or name; a leader hands leadership over first."""
        body = self._json_body(request)
        _only(body, ("address", "name"))
        if "address" not in body and "name" not in body:
            raise APIError(400, 'body must be {"address": "ip:port"} or {"name": "..."}')
        address = _member_address(body["address"]) if "address" in body else None
        name = _member_name(body)
        return self._membership(request, self._cluster.remove(address, name))

    def _membership(self, request: Request, d: "Deferred[Dict[str, Any]]") -> "Deferred[Dict[str, Any]]":
        def failed(failure: Any) -> Any:
            failure.trap(MembershipError)
            raise APIError(failure.value.code, str(failure.value))

        return d.addErrback(failed)

    def _json_body(self, request: Request) -> Dict[str, Any]:
        """The request's body as a JSON object: 400 when it is missing (every route that
        reads one requires it, as the document says), not JSON or not an object; 413
        when it is larger than ``api.max_body_bytes``."""
        limit = self._settings().max_body_bytes
        raw = request.content.read(limit + 1)  # type: ignore[union-attr]
        if len(raw) > limit:
            raise APIError(413, f"the request body is larger than {limit} bytes")
        if not raw.strip():
            raise APIError(400, "a JSON object body is required (Content-Type: application/json)")
        return parse_json_object(raw)

    # -- configuration ---------------------------------------------------------

    @_route(app, "/api/v1/config/reload", "POST")
    def config_reload(self, request: Request) -> "Deferred[Dict[str, Any]]":
        """Reload like SIGHUP: 200 with warnings, or 422 with every problem."""
        started = self._clock.seconds()
        source = self._source(request, self._settings())
        log.info("configuration reload requested through the API from {source}",
                 source=str(source), event="api_reload")

        def done(outcome: ReloadResult) -> Dict[str, Any]:
            log.info("API reload finished in {seconds:.3f}s: {result}", event="api_reload",
                     seconds=self._clock.seconds() - started,
                     result="success" if outcome.ok else "failure")
            if not outcome.ok:
                raise APIError(422, INVALID_CONFIG, extra={"problems": list(outcome.errors)})
            return {"reloaded": True, "warnings": list(outcome.warnings),
                    "restart_required": list(outcome.restart_required)}

        return _shielded(self._reloader.reload()).addCallback(done)

    # -- explain (SPEC §4.1) ------------------------------------------------------

    @_route(app, "/api/v1/explain")
    def explain_answer(self, request: Request) -> Dict[str, Any]:
        """What DNS would answer a client now, and why (read-only: see :mod:`opengslb.api.explain`)."""
        try:
            query = explain.parse_query(request.uri)
        except explain.BadQuery as error:
            raise APIError(400, str(error)) from None
        node = self._cluster.self_id if self._cluster.mode == "cluster" else None
        return explain.explain_reply(self._gslb, query, node)

    # -- the document ----------------------------------------------------------

    @_route(app, "/api/v1/openapi.json")
    def openapi(self, request: Request) -> Dict[str, Any]:
        return openapi_document()


#: Deepest nesting of arrays and objects accepted in a request body (ours use 2).
MAX_JSON_DEPTH = 16
#: Longest number literal accepted in a request body, in characters.
MAX_JSON_NUMBER = 32


def _number(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        if len(text) > MAX_JSON_NUMBER:
            raise ValueError(f"a number longer than {MAX_JSON_NUMBER} characters")
        number = kind(text)
        if isinstance(number, float) and not math.isfinite(number):
            raise ValueError(f"the number {text} is out of range")
        return number
    return parse


def _constant(text: str) -> Any:
    raise ValueError(f"{text} is not JSON")


def _depth(value: Any) -> int:
    """Nesting depth of ``value`` (scalars 0); iterative, linear in its size."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest


def parse_json_object(raw: bytes) -> Dict[str, Any]:
    """``raw`` as a JSON object, bounded: at most :data:`MAX_JSON_DEPTH` levels,
    numbers of at most :data:`MAX_JSON_NUMBER` characters, no NaN or Infinity.

    Raises :class:`APIError` 400 for anything else (never a RecursionError or
    an OverflowError); linear in ``len(raw)``.
    """
    try:
        body = json.loads(raw, parse_int=_number(int), parse_float=_number(float),
                          parse_constant=_constant)
    except RecursionError:
        raise APIError(400, f"the request body is nested more than {MAX_JSON_DEPTH} levels deep") from None
    except json.JSONDecodeError:
        raise APIError(400, "the request body is not valid JSON") from None
    except ValueError as error:  # a bound of _number or _constant, or not UTF-8
        raise APIError(400, f"the request body is not valid JSON: {error}") from None
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object")
    if _depth(body) > MAX_JSON_DEPTH:
        raise APIError(400, f"the request body is nested more than {MAX_JSON_DEPTH} levels deep")
    return body


class _Root(Resource):
    """The API listener's root: the status page at ``/`` and ``/ui/*``, Klein for the rest.

    Also answers a request whose path or Host is not UTF-8 with a JSON 400,
    not Klein's text reply and logged traceback.  Both pass the gate first,
    like every other request.
    """

    isLeaf = True

    def __init__(self, inner: KleinResource, api: GslbAPI, page: StatusPage) -> None:
        super().__init__()
        self._inner = inner
        self._api = api
        self._page = page

    def render(self, request: Request) -> Any:
        try:
            b"/".join(request.postpath or []).decode("utf-8")
            (request.getHeader(b"host") or b"").decode("utf-8")
        except UnicodeDecodeError:
            error = self._api._gate_error(request, self._api._settings()) or APIError(
                400, "the request path (after %-decoding) or Host header is not UTF-8")
            return _write(request, error.reply)
        found = self._page.file_for(request.postpath or []) if request.method in READ_METHODS else None
        if found is not None:
            refused = self._api._gate_error(request, self._api._settings())
            return _write(request, refused.reply) if refused is not None else self._page.render(request, found)
        return self._inner.render(request)


def _routing_error(request: Request, error: HTTPException) -> APIError:
    """The JSON error for a werkzeug routing exception (404, 405, ...)."""
    path = request.path.decode("utf-8", "replace")
    method = request.method.decode("ascii", "replace")
    if isinstance(error, NotFound):
        return APIError(404, f"no such endpoint: {path}")
    if isinstance(error, MethodNotAllowed):
        allowed: Sequence[str] = sorted(error.valid_methods or ())
        return APIError(405, f"method {method} is not allowed on {path}",
                        {"Allow": ", ".join(allowed)})
    code = error.code or 400
    return APIError(code, error.description or error.name)


# -- runtime-state request checks and reply shapes ---------------------------------

#: Bounds of request fields (the document states the same: opengslb.api.openapi).
MAX_OVERRIDE_TTL = OVERRIDE_TTL_MAX
MAX_SERVICE_TTL = SERVICE_TTL_MAX
MAX_AGENT = AGENT_MAX


def _write_failed(failure: Failure) -> Any:
    """Map the runtime's failures to replies: 404 gone, 400 rejected, 503 not confirmed.

    A 503 carries ``outcome``: ``"not_applied"`` (nothing changed) or
    ``"unknown"`` (it may still take effect; retrying is safe).
    """
    if failure.check(MissingState):
        raise APIError(404, str(failure.value))
    if failure.check(Rejected):
        raise APIError(400, f"rejected: {failure.value}")
    if failure.check(WriteFailed):
        outcome = getattr(failure.value, "outcome", "unknown")
        if outcome == "not_applied":
            message = f"{failure.value}; nothing was changed (try again, or another node)"
        else:
            outcome = "unknown"
            message = (f"{failure.value}; the change may or may not have been applied "
                       "(repeating the same request is safe: writes are idempotent)")
        raise APIError(503, message, headers={"Retry-After": "1"}, extra={"outcome": outcome})
    return failure


def _only(body: Mapping[str, Any], allowed: Sequence[str]) -> None:
    """400 for a key of ``body`` that is not in ``allowed`` (typos must not pass silently)."""
    for key in body:
        if key not in allowed:
            raise APIError(400, f"unknown field {key!r} (expected: {', '.join(allowed)})")


def _integer(value: Any) -> Optional[int]:
    """``value`` as an int when it is a JSON integer (``5`` or ``5.0``, as JSON Schema counts
    integers), else ``None`` (booleans are not integers)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def _address(value: Any, what: str) -> str:
    """``value`` as a canonical, usable server IP address; 400 otherwise.

    Accepted exactly when the document's pattern for it matches
    (:data:`opengslb.api.patterns.IP_ADDRESS`, not
    :data:`~opengslb.api.patterns.UNUSABLE_ADDRESS`): no surrounding spaces,
    no IPv6 zone, not unspecified, not multicast.
    """
    if not patterns.is_ip_address(value):
        raise APIError(400, f"{what} must be an IP address, not {json.dumps(value)[:60]}")
    if not patterns.is_usable_address(value):
        raise APIError(400, f"{what} {value} is not a usable server address (unspecified or multicast)")
    return str(ipaddress.ip_address(value))


def _path_address(value: str) -> str:
    """A path's address segment in canonical form; 400 unless it matches the document's pattern."""
    if not patterns.is_ip_address(value):
        raise APIError(400, f"{value[:60]!r} is not an IP address")
    return str(ipaddress.ip_address(value))


def _weight_field(body: Mapping[str, Any], key: str, default: Optional[int]) -> Optional[int]:
    """``body[key]``: an integer 0-1000, ``default`` when absent; 400 for anything else (null too)."""
    if key not in body:
        return default
    value = _integer(body[key])
    if value is None or not 0 <= value <= 1000:
        raise APIError(400, f"{key} must be an integer from 0 to 1000 (got {json.dumps(body[key])[:40]})")
    return value


def _duration_field(body: Mapping[str, Any], key: str, required: bool, maximum: int) -> Optional[float]:
    """``body[key]`` in seconds: integer seconds from 1 to ``maximum``, or text matching
    :func:`opengslb.api.patterns.duration` (which keeps it within the same bounds).

    ``None`` when absent and not ``required``; 400 for anything else (null too).
    """
    shape = (f"a duration from 1s to {maximum // 3600}h: integer seconds or text such as "
             "\"30s\", \"5m\" or \"1h30m\"")
    if key not in body:
        if required:
            raise APIError(400, f"{key} is required: {shape}")
        return None
    value = body[key]
    if isinstance(value, str):
        if not patterns.is_duration(value, maximum):
            raise APIError(400, f"{key} must be {shape} (got {json.dumps(value)[:40]})")
        try:
            return parse_duration(value, maximum=maximum)
        except ValueError as error:  # not reached: the pattern admits only what parses in range
            raise APIError(400, f"{key}: {error}") from None
    seconds = _integer(value)
    if seconds is None or not 1 <= seconds <= maximum:
        raise APIError(400, f"{key} must be {shape} (got {json.dumps(value)[:40]})")
    return float(seconds)


def _signal(value: Any) -> Dict[str, Any]:
    """A heartbeat's predictive signal, checked: ``{"type": "bleed", reason, value, threshold}``,
    or ``{"type": "clear"}`` with the same fields optional (informative, as the agent sends them).

    The reason must be one of :data:`SIGNAL_REASONS`, the numbers 0 to
    :data:`~opengslb.api.patterns.SIGNAL_NUMBER_MAX`; 400 otherwise.
    """
    if not isinstance(value, dict):
        raise APIError(400, "signal must be an object")
    _only(value, ("type", "reason", "value", "threshold"))
    kind = value.get("type")
    if kind not in ("bleed", "clear"):
        raise APIError(400, "signal.type must be \"bleed\" or \"clear\"")
    if "reason" in value and value["reason"] not in SIGNAL_REASONS:
        raise APIError(400, f"signal.reason must be one of {', '.join(SIGNAL_REASONS)}")
    numbers = {}
    for key in ("value", "threshold"):
        if key not in value:
            continue
        number = value[key]
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not (
                0 <= number <= patterns.SIGNAL_NUMBER_MAX):
            raise APIError(400, f"signal.{key} must be a number from 0 to {patterns.SIGNAL_NUMBER_MAX}")
        numbers[key] = float(number)
    if kind == "clear":
        return {"type": "clear"}
    for key in ("reason", "value", "threshold"):
        if key not in value:
            raise APIError(400, f"signal.{key} is required for a bleed signal")
    return {"type": "bleed", "reason": value["reason"], **numbers}


def _member_address(value: Any) -> str:
    """A member's cluster address (``ip:port`` or ``[ipv6]:port``) in canonical form; 400 otherwise."""
    if not patterns.is_member_address(value):
        raise APIError(400, 'address must be a member\'s cluster address "ip:port" or "[ipv6]:port"')
    host, _, port = str(value).rpartition(":")
    canonical = str(ipaddress.ip_address(host.strip("[]")))
    return f"[{canonical}]:{int(port)}" if ":" in canonical else f"{canonical}:{int(port)}"


def _member_name(body: Mapping[str, Any]) -> Optional[str]:
    """``body["name"]``: ``None`` when absent, else a string of 1 to MAX_TEXT characters; 400 otherwise."""
    if "name" not in body:
        return None
    name = body["name"]
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_TEXT:
        raise APIError(400, f"name must be a string of 1 to {MAX_TEXT} characters")
    return name


def _override_json(override: Mapping[str, Any]) -> Dict[str, Any]:
    return {
        "region": override["region"],
        "address": override["address"],
        "weight": override.get("weight"),
        "enabled": override.get("enabled"),
        "reason": override.get("reason", ""),
        "created_at": rfc3339(override.get("created_at")),
        "expires_at": rfc3339(override.get("expires_at")),
    }


def _service_json(gslb: "Gslb", registration: Mapping[str, Any]) -> Dict[str, Any]:
    status = gslb.registration_status(registration)
    signal = status["signal"]
    veto = status["veto"]
    bleed = status["bleed"]
    return {
        "id": registration["id"],
        "region": registration["region"],
        "address": registration["address"],
        "port": registration["port"],
        "weight": registration["weight"],
        "effective_weight": status["effective_weight"],
        "weight_source": status["weight_source"],
        "ttl": registration["ttl"],
        "agent": registration.get("agent"),
        "claim": registration.get("claim"),
        "healthy": status["healthy"],
        "judged_by": status["judged_by"],
        "served": status["served"],
        "not_served_reason": status["not_served"],
        "signal": None if signal is None else {
            "reason": signal["reason"], "value": signal["value"], "threshold": signal["threshold"],
            "bleed_duration": signal["bleed_duration"], "since": rfc3339(signal["since"]),
            "cleared_at": rfc3339(signal.get("cleared_at")),
            "bleed_factor": round(bleed.factor, 4), "phase": bleed.phase},
        "veto": None if veto is None else {
            "reason": veto["reason"], "since": rfc3339(veto["since"]),
            "expires_at": rfc3339(veto.get("expires_at"))},
        "registered_at": rfc3339(registration["registered_at"]),
        "last_heartbeat": rfc3339(status["last_seen"]),
        "expires_at": rfc3339(status["expires_at"]),
    }
