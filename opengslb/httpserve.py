"""Serving a twisted.web resource on a configured address (API and metrics)."""

from __future__ import annotations

from twisted.internet.interfaces import IListeningPort, IReactorTCP
from twisted.web.resource import IResource
from twisted.web.server import Request, Site

from opengslb.config.model import ListenAddress

IDLE_TIMEOUT = 60.0


class QuietSite(Site):
    """A Site without per-request access log lines and without HTML tracebacks."""

    noisy = False
    displayTracebacks = False

    def log(self, request: Request) -> None:  # type: ignore[override]
        pass


def listen_http(reactor: IReactorTCP, address: ListenAddress, resource: IResource) -> IListeningPort:
    """Serve ``resource`` over HTTP on ``address`` (``host == ""``: every IPv4 address).

    Idle connections are closed after a minute.  Raises
    ``twisted.internet.error.CannotListenError`` when the port cannot be bound.
    """
    site = QuietSite(resource, timeout=IDLE_TIMEOUT, reactor=reactor)
    return reactor.listenTCP(address.port, site, interface=address.host)  # type: ignore[arg-type]
