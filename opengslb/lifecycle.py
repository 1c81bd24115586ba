"""Small service classes the process's service tree is made of (DESIGN.md 11).

The tree is a :class:`SerialMultiService`: children start in the order they
were added and stop in the reverse order, each child's stop finishing before
the next one begins (Twisted's ``MultiService`` calls every child's
``stopService`` at once, which would close the DNS listeners while a cluster
leader is still handing leadership over).  Leaves are
:class:`Lifecycle` (a start and a stop callable) and :class:`Listening`
(ports bound in ``startService``, closed in ``stopService``).
"""

from __future__ import annotations

from typing import Any, Callable, Generator, List

from twisted.application import service
from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort

__all__ = ["Lifecycle", "Listening", "SerialMultiService"]


class SerialMultiService(service.MultiService):
    """A ``MultiService`` that stops its children one at a time, last added first."""

    @defer.inlineCallbacks
    def stopService(self) -> Generator[Any, Any, None]:
        service.Service.stopService(self)
        for child in reversed(list(self)):
            yield defer.maybeDeferred(child.stopService)


class Lifecycle(service.Service):
    """A child service made of two callables: ``start()`` and ``stop()`` (which may return a Deferred)."""

    def __init__(self, name: str, start: Callable[[], Any],
                 stop: Callable[[], Any] = lambda: None) -> None:
        self.setName(name)
        self._start = start
        self._stop = stop

    def startService(self) -> None:
        super().startService()
        self._start()

    def stopService(self) -> "defer.Deferred[Any]":
        super().stopService()
        return defer.maybeDeferred(self._stop)


class Listening(service.Service):
    """Ports bound when the service starts and closed when it stops.

    :param what: what listens, for the failure line (``"DNS"``, ``"the API"``).
    :param address: where, for the failure line.
    :param bind: binds and returns the listening ports; raises
        ``CannotListenError`` (or ``OSError``) when it cannot.
    :param failed: called with one line describing the problem when binding
        fails (the process prints it and exits 1); it must not return.
    """

    def __init__(self, name: str, what: str, address: object, bind: Callable[[], List[IListeningPort]],
                 failed: Callable[[str], None]) -> None:
        self.setName(name)
        self._what = what
        self._address = address
        self._bind = bind
        self._failed = failed
        self.ports: List[IListeningPort] = []

    def startService(self) -> None:
        try:
            self.ports = self._bind()
        except CannotListenError as error:
            self._failed(f"cannot listen for {self._what} on {self._address}: {error.socketError}")
        super().startService()

    def stopService(self) -> "defer.Deferred[Any]":
        super().stopService()
        ports, self.ports = self.ports, []
        return defer.DeferredList([defer.maybeDeferred(port.stopListening) for port in ports])

    @property
    def bound(self) -> bool:
        """Whether the ports are bound."""
        return bool(self.ports)

