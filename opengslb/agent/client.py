"""The cluster's API as the agent sees it: any endpoint will do, try the next when one fails.

:class:`ClusterClient` sends one request at a time per call.  It starts with
the endpoint that answered last and moves on to the next one when an
endpoint cannot be reached, times out, or answers 5xx (503 included: that
node cannot commit the write, e.g. it has no leader).  Any other status
(2xx, 4xx) is an answer and is returned.  Every request carries the bearer
token and goes through treq with the given reactor (never the global one).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence

from treq.client import HTTPClient
from twisted.internet import defer
from twisted.logger import Logger
from twisted.web.client import Agent, HTTPConnectionPool

log = Logger(namespace="opengslb.agent")

__all__ = ["APIResponse", "APIUnavailable", "ClusterClient"]


@dataclass(frozen=True)
class APIResponse:
    """An answer from one endpoint: HTTP ``status`` and the decoded JSON ``body`` (or ``None``)."""

    status: int
    body: Any
    endpoint: str

    @property
    def error(self) -> str:
        """The API's error message, or the status when there is none."""
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), str):
            return self.body["error"]
        return f"HTTP {self.status}"


class APIUnavailable(Exception):
    """No endpoint gave an answer; the message lists what each one did."""


def _reason(failure: Any) -> str:
    error = getattr(failure, "value", failure)
    if isinstance(error, defer.CancelledError):
        return "timed out"
    text = str(error) or type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


class ClusterClient:
    """Calls the cluster's API at ``endpoints`` with ``token``.

    :param reactor: for connections and timeouts.
    :param endpoints: base URLs (``http://host:port``), tried in order from
        the last one that answered.
    :param token: bearer token (one of the cluster's ``api.tokens``).
    :param http: a treq ``HTTPClient`` (tests pass ``StubTreq``); default:
        one over a persistent connection pool of this reactor.
    :param timeout: seconds for one request to one endpoint.
    """

    def __init__(self, reactor: Any, endpoints: Sequence[str], token: str,
                 http: Optional[Any] = None, timeout: float = 5.0) -> None:
        if not endpoints:
            raise ValueError("at least one endpoint is needed")
        self._reactor = reactor
        self.endpoints = list(endpoints)
        self._token = token
        self._timeout = timeout
        if http is None:
            self._pool: Optional[HTTPConnectionPool] = HTTPConnectionPool(reactor, persistent=True)
            self._pool.maxPersistentPerHost = 2
            http = HTTPClient(Agent(reactor, connectTimeout=timeout, pool=self._pool))  # type: ignore[arg-type]
        else:
            self._pool = None
        self._http = http
        self._preferred = 0

    @property
    def current(self) -> str:
        """The endpoint tried first next time."""
        return self.endpoints[self._preferred]

    @defer.inlineCallbacks
    def request(self, method: str, path: str, body: Optional[Any] = None) -> Any:
        """Send ``method path`` with JSON ``body``; fires an :class:`APIResponse`.

        Fails with :class:`APIUnavailable` when every endpoint failed.
        """
        problems: List[str] = []
        count = len(self.endpoints)
        for step in range(count):
            index = (self._preferred + step) % count
            endpoint = self.endpoints[index]
            kwargs: dict = {"headers": {"Authorization": [f"Bearer {self._token}"],
                                        "Accept": ["application/json"]},
                            "timeout": self._timeout, "reactor": self._reactor}
            if body is not None:
                kwargs["json"] = body
            try:
                response = yield self._http.request(method, endpoint + path, **kwargs)
                content = yield response.content()
            except Exception as error:
                problems.append(f"{endpoint}: {_reason(error)}")
                continue
            try:
                decoded = json.loads(content) if content else None
            except ValueError:
                decoded = None
            answer = APIResponse(response.code, decoded, endpoint)
            if response.code >= 500:
                problems.append(f"{endpoint}: {answer.error}")
                continue
            if index != self._preferred:
                log.info("using cluster API endpoint {endpoint}", endpoint=endpoint,
                         event="agent_endpoint")
            self._preferred = index
            return answer
        self._preferred = (self._preferred + 1) % count
        raise APIUnavailable("; ".join(problems))

    def close(self) -> "defer.Deferred[Any]":
        """Close kept-alive connections (when the client made its own pool)."""
        if self._pool is None:
            return defer.succeed(None)
        return self._pool.closeCachedConnections()
