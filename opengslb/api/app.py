"""The HTTP API (SPEC §9): a Klein class over the facades it is given.

Every request passes one gate before anything else (:meth:`GslbAPI._admit`):

1. the source address (see :func:`opengslb.api.auth.client_address`) must be
   in ``api.allowed_networks`` — 403 otherwise, for every path, including
   unknown ones;
2. a state-changing method (POST, PUT, PATCH, DELETE) on a served route needs
   ``Authorization: Bearer <token>`` matching one of ``api.tokens`` — 401
   with ``WWW-Authenticate: Bearer`` otherwise (always 401 when no token is
   configured).

Settings are read per request, so a reload that changes the networks or the
tokens applies to the next request.  Every reply is JSON; every error is
``{"error": "...", "code": N}`` with that HTTP status (404 unknown path, 405
known path with another method, 500 unexpected exception, which is logged).
"""

from __future__ import annotations

import functools
import json
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
from twisted.web.server import Request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from opengslb.api import auth
from opengslb.api.openapi import openapi_document
from opengslb.api.timefmt import rfc3339
from opengslb.config.model import APIConfig, ServerConfig
from opengslb.health.tracker import ServerKey

if TYPE_CHECKING:
    from opengslb.core import Gslb

log = Logger(namespace="opengslb.api")

STATE_CHANGING = frozenset({b"POST", b"PUT", b"PATCH", b"DELETE"})

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


def _route(app: Klein, path: str, method: str = "GET") -> Callable[[Handler], Handler]:
    """Serve ``handler`` at ``path`` for ``method``, behind the gate.

    The handler returns (or fires) a dict (200) or a :class:`Reply`, or
    raises :class:`APIError`.
    """

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        def endpoint(self: "GslbAPI", request: Request, **kwargs: Any) -> "Deferred[bytes]":
            self._admit(request)
            result = maybeDeferred(handler, self, request, **kwargs)
            return result.addCallback(lambda reply: _write(request, reply))

        return app.route(path, methods=[method])(endpoint)

    return decorate


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

    :param gslb: the core: ``config``, ``view``, ``health``, ``served_state``.
    :param reloader: runs a configuration reload (``reload()``).
    :param settings: returns the current ``api`` settings (they change on
        reload).
    :param readiness: returns ``(ready, reason)``; ``reason`` is ``None``
        when ready.
    :param node_name: this node's name, reported by the cluster routes.
    :param clock: time source (``reactor``); used to time API-triggered
        reloads.

    Serve ``GslbAPI(...).resource()`` (the same as ``.app.resource()``).
    """

    app = Klein()

    def __init__(self, gslb: "Gslb", reloader: ReloadTrigger, settings: Callable[[], APIConfig],
                 readiness: Callable[[], Tuple[bool, Optional[str]]], node_name: str,
                 clock: Clock) -> None:
        self._gslb = gslb
        self._reloader = reloader
        self._settings = settings
        self._readiness = readiness
        self._node_name = node_name
        self._clock = clock

    def resource(self) -> KleinResource:
        """The Twisted Web resource to serve at the root of the API listener."""
        return self.app.resource()

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

    def _admit(self, request: Request) -> None:
        """The gate of every served route: source network, then token for writes."""
        settings = self._settings()
        self._check_source(request, settings)
        if request.method not in STATE_CHANGING:
            return
        challenge = {"WWW-Authenticate": "Bearer"}
        if not settings.tokens:
            raise APIError(401, "no API tokens are configured (api.tokens); "
                                "state-changing calls are disabled", challenge)
        header = request.getHeader(b"authorization")
        token = auth.bearer_token(header.decode("latin-1") if header is not None else None)
        if token is None:
            raise APIError(401, "missing bearer token (Authorization: Bearer <token>)", challenge)
        if not auth.token_valid(token, settings.tokens):
            log.warn("API {method} {path}: invalid bearer token",
                     method=request.method.decode("ascii", "replace"),
                     path=request.path.decode("utf-8", "replace"), event="api_unauthorized")
            raise APIError(401, "invalid bearer token", challenge)

    @app.handle_errors(Exception)
    def _failed(self, request: Request, failure: Failure) -> bytes:
        """Every error as JSON; routing errors pass the source check first."""
        error = failure.value
        if isinstance(error, HTTPException):
            try:
                self._check_source(request, self._settings())
                error = _routing_error(request, error)
            except APIError as forbidden:
                error = forbidden
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
        config = self._gslb.config
        return {"servers": [self._server_health(region.name, server)
                            for region in config.regions for server in region.servers]}

    def _server_health(self, region: str, server: ServerConfig) -> Dict[str, Any]:
        health = self._gslb.health.get(ServerKey(region, server.address, server.port))
        served = self._gslb.served_state(region, server)
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
            "weight": server.weight,
            "effective_weight": served.weight,
            "weight_source": "config",
        }

    @_route(app, "/api/v1/health/regions")
    def health_regions(self, request: Request) -> Dict[str, Any]:
        """Per region: server counts and ``health_percent`` (0.0 for a region without servers)."""
        regions = []
        for region in self._gslb.config.regions:
            total = len(region.servers)
            healthy = sum(1 for s in region.servers if self._gslb.served_state(region.name, s).healthy)
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
        configured = {(region.name, s.address, s.port): s.weight
                      for region in view.config.regions for s in region.servers}
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
                "weight": configured.get((c.region, c.address, c.port)),
                "effective_weight": c.weight,
            } for c in domain.candidates],
        } for name, domain in view.domains.items()]}

    # -- cluster (standalone) --------------------------------------------------

    def _members(self) -> List[Dict[str, Any]]:
        return [{"name": self._node_name, "address": None, "status": "alive"}]

    @_route(app, "/api/v1/cluster/status")
    def cluster_status(self, request: Request) -> Dict[str, Any]:
        return {"mode": "standalone", "node_name": self._node_name, "is_leader": True,
                "leader_address": None, "members": self._members(), "raft": None}

    @_route(app, "/api/v1/cluster/members")
    def cluster_members(self, request: Request) -> Dict[str, Any]:
        return {"members": self._members()}

    @_route(app, "/api/v1/cluster/leader")
    def cluster_leader(self, request: Request) -> Dict[str, Any]:
        """Standalone: this node serves DNS, so it is the leader (200)."""
        return {"leader": True, "node_name": self._node_name}

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

    # -- the document ----------------------------------------------------------

    @_route(app, "/api/v1/openapi.json")
    def openapi(self, request: Request) -> Dict[str, Any]:
        return openapi_document()


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
