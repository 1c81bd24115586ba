"""The running GSLB as a Twisted service: DNS listeners plus the core."""

from __future__ import annotations

import signal
import socket
import sys
from typing import Any, Callable, Dict, List, Optional

from twisted.application import service
from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger

import opengslb
from opengslb.api import GslbAPI
from opengslb.config.model import Config, ListenAddress
from opengslb.core import Gslb
from opengslb.dns.server import DNSResponder, listen_dns
from opengslb.health.checks import Checker
from opengslb.httpserve import listen_http
from opengslb.metrics import Metrics
from opengslb.reload import Reloader
from opengslb.state.local import LocalStore, StateDirError

log = Logger(namespace="opengslb")


class GslbService(service.Service):
    """Owns the :class:`Gslb` core and the DNS sockets.

    Binding happens in :meth:`startService`; a port that cannot be bound
    prints one line to stderr and exits non-zero (SPEC §1).
    """

    def __init__(self, reactor: Any, config: Config, config_path: str,
                 adjust: Callable[[Config], Config] = lambda c: c,
                 log_observer: Optional[Dict[str, Any]] = None) -> None:
        self.reactor = reactor
        self.config_path = config_path
        self._log_observer = log_observer if log_observer is not None else {}
        self.checker = Checker(reactor)
        self.store = LocalStore(reactor, config.cluster.raft.data_dir)
        self.gslb = Gslb(reactor, config, self.checker)
        self.responder = DNSResponder(lambda: self.gslb.view, self.gslb.stats,
                                      on_stale=self.gslb.on_stale)
        self.reloader = Reloader(reactor, config_path, current=lambda: self.gslb.config,
                                 apply=self._apply_config, adjust=adjust)
        self.metrics = Metrics(self.gslb, self.reloader, opengslb.__version__, reactor)
        self.api = GslbAPI(self.gslb, self.reloader, settings=lambda: self.gslb.config.api,
                           readiness=self.readiness,
                           node_name=config.cluster.node_name or socket.gethostname(), clock=reactor)
        self.dns_ports: List[IListeningPort] = []
        self.other_ports: List[IListeningPort] = []
        self.started_at: Optional[float] = None

    def _apply_config(self, config: Config) -> None:
        """Swap in a reloaded configuration (listen addresses keep until restart)."""
        self.gslb.apply_config(config)
        observer = self._log_observer.get("observer")
        if observer is not None:
            observer.configure(config.logging.format, config.logging.level)

    def readiness(self) -> "tuple[bool, Optional[str]]":
        """(ready, reason): DNS is listening and the first round of health checks is done."""
        if not self.dns_ports:
            return False, "DNS listeners are not bound"
        if not self.gslb.health.first_round_complete:
            return False, "the first round of health checks has not completed"
        return True, None

    def _on_sighup(self, signum: int, frame: Any) -> None:
        self.reactor.callFromThread(self.reloader.reload)

    def startService(self) -> None:
        config = self.gslb.config
        try:
            self.store.open()
        except StateDirError as error:
            self._fail(str(error))
        self.dns_ports = self._listen("DNS", config.dns.listen_address,
                                      lambda: listen_dns(self.reactor, config.dns.listen_address,
                                                         self.responder))
        if config.metrics.enabled:
            self.other_ports += self._listen(
                "metrics", config.metrics.address,
                lambda: [listen_http(self.reactor, config.metrics.address, self.metrics.resource())])
        if config.api.enabled:
            self.other_ports += self._listen(
                "the API", config.api.address,
                lambda: [listen_http(self.reactor, config.api.address, self.api.resource())])
        super().startService()
        self.started_at = self.reactor.seconds()
        self.gslb.start()
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, self._on_sighup)
        log.info("opengslb serving DNS on {address} ({domains} domains, {servers} servers)",
                 address=str(config.dns.listen_address), domains=len(config.domains),
                 servers=sum(len(r.servers) for r in config.regions), event="started")

    def _listen(self, what: str, address: ListenAddress,
                bind: Callable[[], List[IListeningPort]]) -> List[IListeningPort]:
        """Bind with ``bind``; on failure print one line, release everything bound, exit 1."""
        try:
            return bind()
        except CannotListenError as error:
            for port in self.dns_ports + self.other_ports:
                port.stopListening()
            self._fail(f"cannot listen for {what} on {address}: {error.socketError}")
            raise  # not reached

    def _fail(self, problem: str) -> None:
        """Print one start-up problem to the real stderr and exit 1."""
        # twistd has redirected sys.stderr into the log by now; write to the real one.
        stderr = sys.__stderr__ or sys.stderr
        stderr.write(f"opengslb: {problem}\n")
        stderr.flush()
        raise SystemExit(1)

    def stopService(self) -> Any:
        super().stopService()
        for port in self.dns_ports + self.other_ports:
            port.stopListening()
        self.dns_ports, self.other_ports = [], []
        return defer.DeferredList([self.gslb.stop(), self.store.close()])
