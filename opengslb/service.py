"""The running GSLB as a tree of Twisted services (DESIGN.md 11; twisted/names/tap.py is the model).

:class:`GslbNode` builds every part once, each receiving its collaborators at
construction, and assembles them into :attr:`GslbNode.service`, a
:class:`~opengslb.lifecycle.SerialMultiService` whose children start in this
order and stop in the reverse one:

1. ``process`` — the recent-events log observer, the open-file limit;
2. ``store`` — standalone: take over a cluster's state, open the local
   store (closed at stop); cluster: the start-up checks;
3. ``dns``, ``metrics``, ``api`` — the listeners (a port that cannot be
   bound prints one line to stderr and exits 1, SPEC §1);
4. ``health`` — the health checks and the answering view (:class:`~opengslb.core.Gslb`);
5. ``runtime`` — the runtime state's expiry loop; ``overwatch``;
6. cluster mode: ``forwarder``, ``gossip``, ``peer-verdicts``,
   ``membership`` (Raft), ``leader-watch`` (:mod:`opengslb.cluster.node`);
7. ``serving`` — SIGHUP reloads and the "serving DNS" log line.

So on SIGTERM a cluster leader hands leadership over while its DNS
listeners still answer, and the process exits 0 once every child stopped.
"""

from __future__ import annotations

import gc
import signal
import socket
import sys
from typing import Any, Callable, Dict, Generator, List, Optional

from twisted.application import service
from twisted.internet import defer, threads
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger, globalLogPublisher

import opengslb
from opengslb.api import GslbAPI, api_limits
from opengslb.cluster.facade import StandaloneCluster, config_hash
from opengslb.cluster.metrics import ClusterCollector, ConfigHashCollector, GossipCollector
from opengslb.cluster.migration import adopt_cluster_state
from opengslb.cluster.node import ClusterNode
from opengslb.cluster.overwatch import Overwatch
from opengslb.config.live import LiveConfig
from opengslb.config.model import Config
from opengslb.core import Gslb
from opengslb.dns.fastpath import FastPath
from opengslb.dns.server import DNSResponder, listen_dns, listen_vip
from opengslb.events import RecentEvents
from opengslb.exits import fail
from opengslb.gcwatch import GCPauseWatch
from opengslb.health.checks import Checker
from opengslb.httpserve import BoundedSite, listen_http
from opengslb.lifecycle import Lifecycle, Listening, SerialMultiService
from opengslb.limits import raise_fd_limit
from opengslb.metrics import Metrics, metrics_gate, metrics_limits
from opengslb.reload import Reloader
from opengslb.runtime import Runtime
from opengslb.state.local import LocalStore, StateDirError

log = Logger(namespace="opengslb")

__all__ = ["GslbNode"]


def _check_source(config: Config) -> Optional[str]:
    """Cluster mode: checks leave from the advertise address, a distinct vantage point (SPEC §5)."""
    if config.cluster.mode != "cluster":
        return None
    identity = config.cluster.advertise_address or str(config.cluster.bind_address)
    return identity.rpartition(":")[0].strip("[]") or None


class _ProcessTree(SerialMultiService):
    """The root of the tree: after every child stopped, a SIGTERM stop is a clean exit (status 0)."""

    def __init__(self, reactor: Any) -> None:
        super().__init__()
        self._reactor = reactor

    @defer.inlineCallbacks
    def stopService(self) -> Generator[Any, Any, None]:
        yield super().stopService()
        # twistd otherwise re-raises the signal after the reactor stops (the process dies
        # "by SIGTERM"); a service manager expecting 0 from a clean stop would count a failure.
        if getattr(self._reactor, "_exitSignal", None) == signal.SIGTERM:
            self._reactor._exitSignal = None


class GslbNode:
    """One OpenGSLB process: its parts, built once, and the service tree that runs them.

    :param reactor: the reactor.
    :param config: the validated configuration.
    :param config_path: the file a reload reads.
    :param adjust: applied to every reloaded configuration (the command-line flags).
    :param log_observer: holds the process's log observer under ``"observer"``
        (a reload reconfigures its format and level).

    Add :attr:`service` (a ``MultiService``) to the application.
    """

    def __init__(self, reactor: Any, config: Config, config_path: str,
                 adjust: Callable[[Config], Config] = lambda c: c,
                 log_observer: Optional[Dict[str, Any]] = None) -> None:
        self.reactor = reactor
        self.live = LiveConfig(config)
        self._log_observer = log_observer if log_observer is not None else {}
        self.node_name = config.cluster.node_name or socket.gethostname()
        self.config_hash = config_hash(config)
        self.checker = Checker(reactor, source_address=_check_source(config))
        self.cluster_node: Optional[ClusterNode] = None
        if config.cluster.mode == "cluster":
            self.cluster_node = ClusterNode(reactor, config, self.live, self.node_name,
                                            lambda: self.config_hash, self._fail)
        node = self.cluster_node
        self.store: Any = node.raft if node is not None else LocalStore(reactor, config.cluster.raft.data_dir)
        self.runtime = Runtime(reactor, self.store, config,
                               is_leader=(lambda: True) if node is None else node.raft.serving)
        self.gslb = Gslb(reactor, config, self.checker, runtime=self.runtime,
                         peers=node.peers if node is not None else None)
        self.fast_path = FastPath.from_view(self.gslb.view, self.gslb.stats)
        self.gslb.add_view_listener(self.fast_path.rebuild)
        if node is None:
            self.cluster: Any = StandaloneCluster(self.node_name, lambda: self.config_hash)
            self.responder = DNSResponder(lambda: self.gslb.view, self.gslb.stats,
                                          on_stale=self.gslb.on_stale, fast_path=self.fast_path)
        else:
            gossip = node.gossip
            self.cluster = node.facade
            self.responder = DNSResponder(lambda: self.gslb.view, self.gslb.stats,
                                          on_stale=self.gslb.on_stale, serving=node.raft.serving,
                                          follower_policy=lambda: self.live().cluster.follower_queries,
                                          forwarder=node.forwarder, fast_path=self.fast_path)
            # Every rebuild follows a health, config or state change: offer our verdicts (only changes go out).
            self.gslb.add_view_listener(lambda view: gossip.set_local(self.gslb.local_verdicts()))
        self.reloader = Reloader(reactor, config_path, current=self.live, apply=self._apply_config,
                                 adjust=adjust, prepare=self.gslb.prepare_config)
        self.overwatch = Overwatch(reactor, self.runtime, self.checker, self.live)
        self.metrics = Metrics(self.gslb, self.reloader, opengslb.__version__, reactor,
                               overwatch=self.overwatch)
        self.metrics.registry.register(ConfigHashCollector(lambda: self.config_hash))
        if node is not None:
            self.metrics.registry.register(ClusterCollector(node.raft, self.node_name,
                                                            lambda: dict(node.demotion.counts)))
            self.metrics.registry.register(GossipCollector(node.gossip))
        self.events = RecentEvents()
        self.gc_watch = GCPauseWatch(reactor)
        self.api = GslbAPI(self.gslb, self.reloader, settings=lambda: self.live().api,
                           readiness=self.readiness, node_name=self.node_name, clock=reactor,
                           cluster=self.cluster, runtime=self.runtime, events=self.events)
        self._listeners: List[Listening] = []
        self.service = self._tree(config)

    # -- the tree ------------------------------------------------------------------

    def _tree(self, config: Config) -> service.MultiService:
        root = _ProcessTree(self.reactor)
        children: List[service.IService] = [
            Lifecycle("process", self._start_process, self._stop_process),
            Lifecycle("store", lambda: self._open_store(config), self._close_store),
        ]
        self.dns = Listening("dns", "DNS", config.dns.listen_address, lambda: self._bind_dns(config),
                             self._listen_failed)
        children.append(self.dns)
        if config.metrics.enabled:
            site = BoundedSite(self.metrics.resource(), self.reactor, "metrics",
                               lambda: metrics_limits(self.live().metrics), metrics_gate(lambda: self.live().metrics))
            children.append(Listening("metrics", "metrics", config.metrics.address,
                                      lambda: [listen_http(self.reactor, config.metrics.address, site)],
                                      self._listen_failed))
        if config.api.enabled:
            api_site = BoundedSite(self.api.resource(), self.reactor, "api",
                                   lambda: api_limits(self.live().api), self.api.gate)
            children.append(Listening("api", "the API", config.api.address,
                                      lambda: [listen_http(self.reactor, config.api.address, api_site)],
                                      self._listen_failed))
        self._listeners = [child for child in children if isinstance(child, Listening)]
        children += [
            Lifecycle("health", self._start_health, self.gslb.stop),
            Lifecycle("runtime", self.runtime.start, self.runtime.stop),
            Lifecycle("overwatch", self.overwatch.start, self.overwatch.stop),
        ]
        if self.cluster_node is not None:
            children += self.cluster_node.services(config, self.gslb.local_verdicts)
        children.append(Lifecycle("serving", lambda: self._serving(config)))
        for child in children:
            child.setServiceParent(root)
        return root

    def _start_process(self) -> None:
        globalLogPublisher.addObserver(self.events)
        self.gc_watch.install()
        before, after = raise_fd_limit()
        log.info("open-file limit (RLIMIT_NOFILE): {before} -> {after}", before=before, after=after,
                 event="fd_limit")

    def _stop_process(self) -> None:
        globalLogPublisher.removeObserver(self.events)
        self.gc_watch.uninstall()

    def _open_store(self, config: Config) -> None:
        try:
            if self.cluster_node is None:
                adopt_cluster_state(config.cluster.raft.data_dir, self.reactor.seconds())
                self.store.open()
            else:
                self.cluster_node.check_start(config)
        except StateDirError as error:
            self._fail(str(error))

    def _close_store(self) -> Any:
        return self.store.close() if self.cluster_node is None else None

    def _bind_dns(self, config: Config) -> List[IListeningPort]:
        ports = listen_dns(self.reactor, config.dns.listen_address, self.responder)
        if self.cluster_node is not None and config.cluster.anycast_vip:
            vip = config.cluster.anycast_vip
            try:
                ports += listen_vip(self.reactor, vip, config.dns.listen_address.port, self.responder)
            except OSError as error:
                for port in ports:
                    port.stopListening()
                self._fail(f"cannot listen for DNS on the anycast VIP {vip}:{config.dns.listen_address.port}: "
                           f"{error} (with a VIP, dns.listen_address must name a specific address)")
        return ports

    def _start_health(self) -> None:
        self.gslb.start()
        # The configuration and views are long-lived: keep them out of the cyclic collector's
        # full passes, which otherwise stall the reactor for ~100 ms on a large configuration.
        gc.freeze()

    def _serving(self, config: Config) -> None:
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, self._on_sighup)
        log.info("opengslb serving DNS on {address} ({domains} domains, {servers} servers)",
                 address=str(config.dns.listen_address), domains=len(config.domains),
                 servers=sum(len(r.servers) for r in config.regions), event="started")

    def _on_sighup(self, signum: int, frame: Any) -> None:
        self.reactor.callFromThread(self.reloader.reload)

    def _listen_failed(self, problem: str) -> None:
        """A listener could not bind: release every port bound so far, print ``problem``, exit 1."""
        for listening in self._listeners:
            for port in listening.ports:
                port.stopListening()
        self._fail(problem)

    def _fail(self, problem: str) -> None:
        """Print one start-up problem to the real stderr and exit 1."""
        # twistd has redirected sys.stderr into the log by now; write to the real one.
        fail("opengslb", [problem], stream=sys.__stderr__ or sys.stderr)

    # -- reload --------------------------------------------------------------------

    def _apply_config(self, config: Config) -> None:
        """Swap in a reloaded configuration (listen addresses keep until restart)."""
        self.live.current = config
        self.gslb.apply_config(config)
        if self.cluster_node is not None:
            self.cluster_node.apply_config(config)
        gc.freeze()  # see _start_health
        # Hashing a large configuration takes tens of milliseconds: do it off the reactor.
        d = threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), config_hash, config)
        d.addCallback(self._hash_ready, config)
        observer = self._log_observer.get("observer")
        if observer is not None:
            observer.configure(config.logging.format, config.logging.level)

    def _hash_ready(self, digest: str, config: Config) -> None:
        if config is not self.live.current:
            return  # a newer reload is on its way
        self.config_hash = digest
        if self.cluster_node is not None:
            self.cluster_node.hash_changed()

    # -- state for systemd and the API ---------------------------------------------------

    def readiness(self) -> "tuple[bool, Optional[str]]":
        """(ready, reason): DNS is listening and the first round of health checks is done."""
        if not self.dns.bound:
            return False, "DNS listeners are not bound"
        if not self.gslb.health.first_round_complete:
            return False, "the first round of health checks has not completed"
        node = self.cluster_node
        if node is not None and not node.serving():
            status = node.raft.status
            return False, f"not serving: this node is a {status.state.lower()} " \
                          f"(leader: {status.leader or 'none'})"
        return True, None

    def started(self) -> bool:
        """DNS is listening and the first round of health checks is done (systemd's READY)."""
        return self.dns.bound and self.gslb.health.first_round_complete

    def status_line(self) -> str:
        """One line for systemd's STATUS=: role, domains and healthy servers."""
        config = self.live()
        states = self.gslb.health.states()
        healthy = sum(1 for health in states.values() if health.healthy)
        counts = f"{len(config.domains)} domains, {healthy}/{len(states)} servers healthy"
        if self.cluster_node is None:
            return f"standalone: {counts}"
        status = self.cluster_node.raft.status
        role = ("leader" if self.cluster_node.serving()
                else "joining" if status.joining else status.state.lower())
        return f"cluster {role} (term {status.term}, leader {status.leader or 'none'}): {counts}"
