"""The running GSLB as a Twisted service: DNS listeners plus the core."""

from __future__ import annotations

import gc
import json
import os
import signal
import socket
import sys
import time
from typing import Any, Callable, Dict, List, Optional

from twisted.application import service
from twisted.internet import defer, task, threads
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger, globalLogPublisher

import opengslb
from opengslb.api import GslbAPI, api_limits
from opengslb.cluster.consensus import DistributedHealth
from opengslb.cluster.demotion import DemotionPolicy, LeaderWatch
from opengslb.cluster.facade import RaftCluster, StandaloneCluster, config_hash
from opengslb.cluster.gossip import Gossip
from opengslb.cluster.metrics import ClusterCollector, ConfigHashCollector, GossipCollector
from opengslb.cluster.overwatch import Overwatch
from opengslb.config.model import Config, ListenAddress
from opengslb.core import Gslb
from opengslb.dns.fastpath import FastPath
from opengslb.dns.forward import Forwarder
from opengslb.dns.server import DNSResponder, listen_dns, listen_vip
from opengslb.events import RecentEvents
from opengslb.exits import fail
from opengslb.health.checks import Checker
from opengslb.httpserve import BoundedSite, listen_http
from opengslb.limits import raise_fd_limit
from opengslb.metrics import Metrics, metrics_gate, metrics_limits
from opengslb.reload import Reloader
from opengslb.runtime import Runtime
from opengslb.state.keys import GOSSIP, derive_key
from opengslb.state.local import (
    IMPORT_PENDING_FILE,
    IMPORTED_FILE,
    STATE_FILE,
    LocalStore,
    StateDirError,
    check_data_dir,
    write_atomically,
)
from opengslb.state.raft import (
    ProposalFailed,
    RaftNode,
    RaftStatus,
    archive_cluster_state,
    cluster_state_present,
    describe_counts,
    read_committed_state,
)

log = Logger(namespace="opengslb")


def _check_source(config: Config) -> Optional[str]:
    """Cluster mode: checks leave from the advertise address, a distinct vantage point (SPEC §5)."""
    if config.cluster.mode != "cluster":
        return None
    identity = config.cluster.advertise_address or str(config.cluster.bind_address)
    return identity.rpartition(":")[0].strip("[]") or None


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
        self.node_name = config.cluster.node_name or socket.gethostname()
        self.checker = Checker(reactor, source_address=_check_source(config))
        self.gslb = Gslb(reactor, config, self.checker)
        self.config_hash = config_hash(config)
        self.fast_path = FastPath.from_view(self.gslb.view, self.gslb.stats)
        self.gslb.add_view_listener(self.fast_path.rebuild)
        self.reloader = Reloader(reactor, config_path, current=lambda: self.gslb.config,
                                 apply=self._apply_config, adjust=adjust,
                                 prepare=self.gslb.prepare_config)
        self.metrics = Metrics(self.gslb, self.reloader, opengslb.__version__, reactor)
        self.metrics.registry.register(ConfigHashCollector(lambda: self.config_hash))
        self.raft: Optional[RaftNode] = None
        self.forwarder: Optional[Forwarder] = None
        self.gossip: Optional[Gossip] = None
        self._published_member: Optional[tuple] = None
        self._drift_warned: set = set()
        if config.cluster.mode == "cluster":
            self._wire_cluster(config)
        else:
            self.store: Any = LocalStore(reactor, config.cluster.raft.data_dir)
            self.cluster: Any = StandaloneCluster(self.node_name, lambda: self.config_hash)
            self.responder = DNSResponder(lambda: self.gslb.view, self.gslb.stats,
                                          on_stale=self.gslb.on_stale, fast_path=self.fast_path)
        raft = self.raft
        self.runtime = Runtime(reactor, self.gslb, self.store,
                               is_leader=(lambda: True) if raft is None else raft.serving)
        self.overwatch = Overwatch(reactor, self.runtime, self.checker, lambda: self.gslb.config)
        self.metrics.runtime = self.runtime
        self.metrics.overwatch = self.overwatch
        self.events = RecentEvents()
        self.api = GslbAPI(self.gslb, self.reloader, settings=lambda: self.gslb.config.api,
                           readiness=self.readiness, node_name=self.node_name, clock=reactor,
                           cluster=self.cluster, runtime=self.runtime, events=self.events)
        self.dns_ports: List[IListeningPort] = []
        self.other_ports: List[IListeningPort] = []
        self.started_at: Optional[float] = None

    def _wire_cluster(self, config: Config) -> None:
        """Raft as the store and the DNS gate, gossip plus consensus for served health."""
        reactor = self.reactor
        raft = self.raft = RaftNode(reactor, config.cluster)
        self.store = raft
        self.demotion_policy = DemotionPolicy(reactor.seconds, lag_bound=config.cluster.demotion_lag_bound,
                                              hold_down=config.cluster.demotion_hold_down)
        self.cluster = RaftCluster(raft, self.node_name, lambda: self.config_hash,
                                   demotion=self._demotion_json)
        self.forwarder = Forwarder(reactor, self.cluster.leader_dns_address)
        self.responder = DNSResponder(lambda: self.gslb.view, self.gslb.stats,
                                      on_stale=self.gslb.on_stale, serving=raft.serving,
                                      follower_policy=lambda: self.gslb.config.cluster.follower_queries,
                                      forwarder=self.forwarder, fast_path=self.fast_path)
        gossip = self.gossip = Gossip(reactor, raft.address,
                                      derive_key(config.cluster.gossip.encryption_key, GOSSIP),
                                      peers=lambda: raft.status.members,
                                      on_verdicts=lambda node, verdicts: self.gslb.request_rebuild(
                                          {key.region for key in verdicts}))
        self.consensus = DistributedHealth(gossip.views,
                                           lambda: self.gslb.config.cluster.health_consensus, reactor)
        self.gslb.attach_consensus(self.consensus)
        # Every rebuild follows a health, config or state change: offer our verdicts (only changes go out).
        self.gslb.add_view_listener(lambda view: gossip.set_local(self.gslb.local_verdicts()))
        self.metrics.registry.register(ClusterCollector(raft, self.node_name,
                                                        lambda: dict(self.demotion_policy.counts)))
        dns = config.dns.listen_address
        self.leader_watch = LeaderWatch(
            reactor, self.demotion_policy, is_leader=lambda: raft.status.is_leader,
            dns_address=(dns.host if not dns.is_wildcard else "::1" if ":" in dns.host else "127.0.0.1",
                         dns.port),
            own_verdicts=self.gslb.local_verdicts,
            peer_verdicts=lambda: {node: verdicts for node, verdicts in self.consensus.fresh_views().items()
                                   if node in raft.status.members and node != raft.address},
            peer_count=lambda: len(raft.status.members) - 1,
            transfer=lambda prefer: raft.transfer_leadership(prefer=prefer),
            hold_down=raft.hold_down, monotonic=raft.clock)
        self.metrics.registry.register(GossipCollector(gossip))
        self._fresh_nodes: frozenset = frozenset()
        self._freshness_loop = task.LoopingCall(self._watch_freshness)

    def _demotion_json(self) -> Optional[Dict[str, Any]]:
        current = self.demotion_policy.current()
        return current.to_json() if current is not None else None

    def _apply_config(self, config: Config) -> None:
        """Swap in a reloaded configuration (listen addresses keep until restart)."""
        self.gslb.apply_config(config)
        if self.raft is not None:
            self.demotion_policy.lag_bound = config.cluster.demotion_lag_bound
            self.demotion_policy.hold_down = config.cluster.demotion_hold_down
        gc.freeze()  # see startService
        # Hashing a large configuration takes tens of milliseconds: do it off the reactor.
        d = threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), config_hash, config)
        d.addCallback(self._hash_ready, config)
        observer = self._log_observer.get("observer")
        if observer is not None:
            observer.configure(config.logging.format, config.logging.level)

    def _hash_ready(self, digest: str, config: Config) -> None:
        if config is not self.gslb.config:
            return  # a newer reload is on its way
        self.config_hash = digest
        if self.raft is not None:
            self._publish_member(self.raft.status)

    def readiness(self) -> "tuple[bool, Optional[str]]":
        """(ready, reason): DNS is listening and the first round of health checks is done."""
        if not self.dns_ports:
            return False, "DNS listeners are not bound"
        if not self.gslb.health.first_round_complete:
            return False, "the first round of health checks has not completed"
        if self.raft is not None and not self.raft.serving():
            return False, f"not serving: this node is a {self.raft.status.state.lower()} " \
                          f"(leader: {self.raft.status.leader or 'none'})"
        return True, None

    def started(self) -> bool:
        """DNS is listening and the first round of health checks is done (systemd's READY)."""
        return bool(self.dns_ports) and self.gslb.health.first_round_complete

    def status_line(self) -> str:
        """One line for systemd's STATUS=: role, domains and healthy servers."""
        config = self.gslb.config
        states = self.gslb.health.states()
        healthy = sum(1 for health in states.values() if health.healthy)
        counts = f"{len(config.domains)} domains, {healthy}/{len(states)} servers healthy"
        if self.raft is None:
            return f"standalone: {counts}"
        status = self.raft.status
        role = "leader" if self.raft.serving() else status.state.lower()
        return f"cluster {role} (term {status.term}, leader {status.leader or 'none'}): {counts}"

    def _on_sighup(self, signum: int, frame: Any) -> None:
        self.reactor.callFromThread(self.reloader.reload)

    def startService(self) -> None:
        config = self.gslb.config
        globalLogPublisher.addObserver(self.events)
        before, after = raise_fd_limit()
        log.info("open-file limit (RLIMIT_NOFILE): {before} -> {after}", before=before, after=after,
                 event="fd_limit")
        try:
            if self.raft is None:
                self._adopt_cluster_state(config.cluster.raft.data_dir)
                self.store.open()
            else:
                self._check_cluster_start(config)
        except StateDirError as error:
            self._fail(str(error))
        self.dns_ports = self._listen("DNS", config.dns.listen_address,
                                      lambda: listen_dns(self.reactor, config.dns.listen_address,
                                                         self.responder))
        if self.raft is not None and config.cluster.anycast_vip:
            vip = config.cluster.anycast_vip
            try:
                self.dns_ports += listen_vip(self.reactor, vip, config.dns.listen_address.port, self.responder)
            except OSError as error:
                for port in self.dns_ports:
                    port.stopListening()
                self._fail(f"cannot listen for DNS on the anycast VIP {vip}:{config.dns.listen_address.port}: "
                           f"{error} (with a VIP, dns.listen_address must name a specific address)")
        if config.metrics.enabled:
            metrics_site = BoundedSite(self.metrics.resource(), self.reactor, "metrics",
                                       lambda: metrics_limits(self.gslb.config.metrics),
                                       metrics_gate(lambda: self.gslb.config.metrics))
            self.other_ports += self._listen(
                "metrics", config.metrics.address,
                lambda: [listen_http(self.reactor, config.metrics.address, metrics_site)])
        if config.api.enabled:
            api_site = BoundedSite(self.api.resource(), self.reactor, "api",
                                   lambda: api_limits(self.gslb.config.api), self.api.gate)
            self.other_ports += self._listen(
                "the API", config.api.address,
                lambda: [listen_http(self.reactor, config.api.address, api_site)])
        super().startService()
        self.started_at = self.reactor.seconds()
        self.gslb.start()
        # The configuration and views are long-lived: keep them out of the cyclic collector's
        # full passes, which otherwise stall the reactor for ~100 ms on a large configuration.
        gc.freeze()
        self.runtime.start()
        self.overwatch.start()
        if self.raft is not None:
            self._start_cluster(config)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, self._on_sighup)
        log.info("opengslb serving DNS on {address} ({domains} domains, {servers} servers)",
                 address=str(config.dns.listen_address), domains=len(config.domains),
                 servers=sum(len(r.servers) for r in config.regions), event="started")

    def _stamp(self) -> str:
        return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self.reactor.seconds()))

    def _adopt_cluster_state(self, data_dir: str) -> None:
        """Cluster → standalone (docs/cluster.md, Migration): the data directory holds cluster
        state, so its last committed runtime state becomes the standalone state (``state.json``)
        and the cluster files move to ``cluster-STAMP/``.  Start-up, before serving."""
        check_data_dir(data_dir)
        if not cluster_state_present(data_dir):
            return
        try:
            snapshot, commit = read_committed_state(data_dir)
        except ValueError as error:
            raise StateDirError(f"{error}; move the cluster files away to start with an empty state") from None
        snapshot["members"] = {}
        try:
            write_atomically(os.path.join(data_dir, STATE_FILE), json.dumps(snapshot, sort_keys=True).encode())
            archive = archive_cluster_state(data_dir, self._stamp())
        except OSError as error:
            raise StateDirError(f"cannot take over the cluster state in {data_dir}: {error}") from None
        counts = describe_counts(snapshot)
        log.info("standalone: took the cluster's last committed runtime state (log index {commit}) as the "
                 "standalone state: {overrides} overrides, {registrations} registrations, {signals} signals, "
                 "{vetoes} vetoes; the cluster files were moved to {archive}", commit=commit, archive=archive,
                 event="migrated_from_cluster", **counts)

    def _prepare_import(self, config: Config) -> None:
        """Standalone → cluster: on ``--bootstrap`` over a standalone state, keep it for import.

        ``state.json`` becomes ``standalone-import.json`` (so it is imported once
        even across restarts) and is proposed as one ``state.import`` command
        once this node leads; a joiner never imports (it would overwrite the
        cluster's state).
        """
        assert self.raft is not None
        data_dir = config.cluster.raft.data_dir
        state, pending = os.path.join(data_dir, STATE_FILE), os.path.join(data_dir, IMPORT_PENDING_FILE)
        self._import_path = pending
        self._import_snapshot: Optional[Dict[str, Any]] = None
        self._importing = False
        fresh = not self.raft.has_state()
        if fresh and os.path.exists(state):
            if not config.cluster.bootstrap:
                log.warn("{path} holds a standalone runtime state that a joining node does not import "
                         "(only --bootstrap imports it)", path=state, event="migration_skipped")
                return
            try:
                os.replace(state, pending)
            except OSError as error:
                raise StateDirError(f"cannot set the standalone state {state} aside for import: {error}") from None
        if os.path.exists(pending):
            try:
                with open(pending, "rb") as handle:
                    snapshot = json.loads(handle.read())
                describe_counts(snapshot)
            except (OSError, ValueError) as error:
                self._fail(f"cannot read the standalone state to import, {pending}: {error}")
            self._import_snapshot = snapshot

    def _import_when_leading(self, status: RaftStatus) -> None:
        """Propose the pending standalone state once this node is the ready leader (retried)."""
        if self._import_snapshot is None or self._importing or self.raft is None:
            return
        if not (status.is_leader and status.leader_ready):
            return
        self._importing = True
        snapshot = self._import_snapshot
        d = self.raft.propose({"op": "state.import", "snapshot": snapshot})

        def done(result: Dict[str, Any]) -> None:
            self._importing = False
            if not result.get("ok"):
                log.error("the standalone state was not imported: {error}", error=result.get("error"),
                          event="migration_failed")
                self._import_snapshot = None
                return
            self._import_snapshot = None
            imported = os.path.join(os.path.dirname(self._import_path), IMPORTED_FILE)
            os.replace(self._import_path, imported)
            log.info("cluster: imported the standalone runtime state: {overrides} overrides, {registrations} "
                     "registrations, {signals} signals, {vetoes} vetoes (kept as {kept})", kept=imported,
                     event="migrated_from_standalone", **result["value"])

        def failed(failure: Any) -> None:
            failure.trap(ProposalFailed)
            self._importing = False
            assert self.raft is not None
            self.reactor.callLater(1.0, self._import_when_leading, self.raft.status)

        d.addCallbacks(done, failed)

    def _check_cluster_start(self, config: Config) -> None:
        """Synchronous cluster start-up checks: data dir, start path, cluster port free."""
        assert self.raft is not None
        check_data_dir(config.cluster.raft.data_dir)
        if not self.raft.has_state() and not config.cluster.bootstrap and not config.cluster.join:
            self._fail(f"{config.cluster.raft.data_dir} holds no cluster state: start the first node "
                       "with --bootstrap and the others with --join HOST:PORT")
        self._prepare_import(config)
        bind = config.cluster.bind_address
        probe = socket.socket(socket.AF_INET6 if ":" in bind.host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((bind.host or "0.0.0.0", bind.port))  # a local bind: instant, never blocks
        except OSError as error:
            self._fail(f"cannot listen for the cluster (Raft) on {bind}: {error}")
        finally:
            probe.close()

    def _start_cluster(self, config: Config) -> None:
        assert self.raft is not None and self.forwarder is not None
        self.forwarder.start(interface=config.dns.listen_address.host if not
                             config.dns.listen_address.is_wildcard else "")
        assert self.gossip is not None
        bind = config.cluster.bind_address
        try:
            self.other_ports.append(self.gossip.start(bind.host or "0.0.0.0", bind.port))
        except CannotListenError as error:
            self._fail(f"cannot listen for gossip (UDP) on {bind}: {error.socketError}")
        self.gossip.set_local(self.gslb.local_verdicts())
        self._freshness_loop.start(1.0, now=False)
        self.leader_watch.start()
        self.raft.add_status_listener(self._publish_member)
        self.raft.add_status_listener(self._import_when_leading)
        self.raft.add_listener(self._check_drift)
        self.raft.add_removed_listener(self._removed_from_cluster)
        d = self.raft.start(config.cluster.bootstrap, list(config.cluster.join))
        d.addErrback(self._cluster_start_failed)

    def _removed_from_cluster(self, reason: str) -> None:
        """No longer a member (removed through the API): stop serving and exit 0 (docs/cluster.md)."""
        log.warn("stopping: this node is no longer a cluster member; to add it again, empty "
                 "{dir} and start it with --join", dir=self.gslb.config.cluster.raft.data_dir,
                 event="removed_exit")
        self.reactor.callLater(0.2, self.reactor.stop)  # let a reply to the API call go out first

    def _watch_freshness(self) -> None:
        """Rebuild when a node's verdicts age out (or come back): the combined health changes."""
        fresh = frozenset(self.consensus.fresh_views())
        if fresh != self._fresh_nodes:
            self._fresh_nodes = fresh
            self.gslb.request_rebuild()

    def _cluster_start_failed(self, failure: Any) -> None:
        stderr = sys.__stderr__ or sys.stderr
        stderr.write(f"opengslb: cluster start failed: {failure.getErrorMessage()}\n")
        stderr.flush()
        log.error("cluster start failed: {error}", error=failure.getErrorMessage())
        self.reactor.addSystemEventTrigger("after", "shutdown", os._exit, 1)
        self.reactor.stop()

    def _publish_member(self, status: RaftStatus) -> None:
        """Replicate this node's member record (name, DNS address, config hash) once a leader exists."""
        if self.raft is None or status.leader is None:
            return
        config = self.gslb.config
        dns = config.dns.listen_address
        record = (self.raft.address, self.node_name, f"{dns.host}:{dns.port}" if not dns.is_wildcard
                  else f"{self.raft.address.rpartition(':')[0]}:{dns.port}",
                  str(config.api.address) if config.api.enabled else None, self.config_hash)
        if record == self._published_member:
            return
        self._published_member = record
        command = {"op": "member.set", "address": record[0], "name": record[1], "dns": record[2],
                   "api": record[3], "config_hash": record[4], "at": self.reactor.seconds()}

        def retry(failure: Any) -> None:
            failure.trap(ProposalFailed)
            self._published_member = None
            self.reactor.callLater(1.0, self._publish_member, self.raft.status)  # type: ignore[union-attr]

        self.raft.propose(command).addErrback(retry)

    def _check_drift(self) -> None:
        """Warn (once per member and hash) when a member runs a different configuration."""
        assert self.raft is not None
        for address, record in self.raft.machine.members.items():
            other = record.get("config_hash")
            key = (address, other)
            if address != self.raft.address and other and other != self.config_hash \
                    and key not in self._drift_warned:
                self._drift_warned.add(key)
                log.warn("member {member} ({address}) runs a different configuration (hash {other}, "
                         "ours {ours})", member=record.get("name"), address=address, other=other[:12],
                         ours=self.config_hash[:12], event="config_drift")

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
        fail("opengslb", [problem], stream=sys.__stderr__ or sys.stderr)

    @defer.inlineCallbacks
    def stopService(self) -> Any:
        """Hand leadership over (cluster leader), then close sockets and stop checks."""
        super().stopService()
        globalLogPublisher.removeObserver(self.events)
        if self.raft is not None:
            if self._freshness_loop.running:
                self._freshness_loop.stop()
            self.leader_watch.stop()
            yield self.raft.stop()
        if self.forwarder is not None:
            self.forwarder.stop()
        for port in self.dns_ports + self.other_ports:
            port.stopListening()
        self.dns_ports, self.other_ports = [], []
        self.overwatch.stop()
        self.runtime.stop()
        stops: List[Any] = [self.gslb.stop()]
        if self.raft is None:
            stops.append(self.store.close())
        yield defer.DeferredList(stops)
        self._exit_zero_after_sigterm()

    def _exit_zero_after_sigterm(self) -> None:
        """A stop asked for by SIGTERM that completed is a clean exit: status 0 (issue 13).

        twistd otherwise re-raises the signal after the reactor stops (the
        process dies "by SIGTERM"); a service manager or script expecting 0
        from a clean stop would count that as a failure.
        """
        if getattr(self.reactor, "_exitSignal", None) == signal.SIGTERM:
            self.reactor._exitSignal = None
