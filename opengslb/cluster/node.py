"""Cluster mode's parts and their place in the service tree (SPEC §7).

:class:`ClusterNode` builds what only a cluster member has — the Raft node
(runtime-state store and DNS gate), the cluster facade for the API, the
follower's forwarder, gossip and the peer verdicts it feeds to the served
policy, self-demotion, member publishing, configuration drift warnings and
the standalone-state import — and gives the child services that run them,
in start order (:meth:`ClusterNode.services`).  Stopping runs them in the
reverse order: the leader watch stops, Raft hands leadership over (SIGTERM
on a leader: no outage, since the DNS listeners close only afterwards), then
the peer watch, gossip and the forwarder stop.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any, Callable, Dict, List, Mapping, Optional

from twisted.application import service
from twisted.internet.error import CannotListenError
from twisted.logger import Logger

from opengslb.cluster.consensus import DistributedHealth
from opengslb.cluster.demotion import DemotionPolicy, LeaderWatch
from opengslb.cluster.facade import RaftCluster
from opengslb.cluster.gossip import Gossip
from opengslb.cluster.members import DriftWatch, MemberRecord
from opengslb.cluster.migration import StandaloneImport
from opengslb.config.model import Config
from opengslb.dns.forward import Forwarder
from opengslb.health.tracker import ServerKey
from opengslb.lifecycle import Lifecycle
from opengslb.state.keys import GOSSIP, derive_key
from opengslb.state.local import check_data_dir
from opengslb.state.raft import RaftNode

__all__ = ["ClusterNode"]

log = Logger(namespace="opengslb")


class ClusterNode:
    """The cluster member's parts (see the module docstring).

    :param reactor: the reactor (time, UDP, threads).
    :param config: the configuration at start (Raft settings, bind address).
    :param live: the configuration in force (it changes on reload).
    :param node_name: this node's name.
    :param config_hash: the current configuration hash.
    :param failed: called with one line to print before exiting 1; never returns.
    """

    def __init__(self, reactor: Any, config: Config, live: Callable[[], Config], node_name: str,
                 config_hash: Callable[[], str], failed: Callable[[str], None]) -> None:
        self._reactor = reactor
        self._live = live
        self._failed = failed
        raft = self.raft = RaftNode(reactor, config.cluster)
        self.demotion = DemotionPolicy(reactor.seconds, lag_bound=config.cluster.demotion_lag_bound,
                                       hold_down=config.cluster.demotion_hold_down)
        self.facade = RaftCluster(raft, node_name, config_hash, demotion=self._demotion_json)
        self.forwarder = Forwarder(reactor, self.facade.leader_dns_address)
        self.gossip = Gossip(reactor, raft.address, derive_key(config.cluster.gossip.encryption_key, GOSSIP),
                             peers=lambda: raft.status.members, on_verdicts=self._verdicts)
        self.peers = DistributedHealth(self.gossip.views, lambda: live().cluster.health_consensus, reactor)
        self.members = MemberRecord(reactor, raft, node_name, live, config_hash)
        self.drift = DriftWatch(raft, config_hash)
        self.importer = StandaloneImport(reactor, raft, failed)

    def _verdicts(self, node: str, verdicts: Mapping[ServerKey, bool]) -> None:
        self.peers.received(node, verdicts)

    def _demotion_json(self) -> Optional[Dict[str, Any]]:
        current = self.demotion.current()
        return current.to_json() if current is not None else None

    def serving(self) -> bool:
        """Whether this node answers DNS with data (the serving leader)."""
        return self.raft.serving()

    # -- configuration -------------------------------------------------------------

    def apply_config(self, config: Config) -> None:
        """A reload: take the new demotion bounds."""
        self.demotion.lag_bound = config.cluster.demotion_lag_bound
        self.demotion.hold_down = config.cluster.demotion_hold_down

    def hash_changed(self) -> None:
        """The configuration hash changed: publish the member record again."""
        self.members.publish(self.raft.status)

    # -- start-up ------------------------------------------------------------------

    def check_start(self, config: Config) -> None:
        """Synchronous start-up checks: data dir, start path, standalone import, cluster port free.

        Raises :class:`~opengslb.state.local.StateDirError` for an unusable data directory.
        """
        check_data_dir(config.cluster.raft.data_dir)
        if not self.raft.has_state() and not config.cluster.bootstrap and not config.cluster.join:
            self._failed(f"{config.cluster.raft.data_dir} holds no cluster state: start the first node "
                         "with --bootstrap and the others with --join HOST:PORT")
        self.importer.prepare(config)
        bind = config.cluster.bind_address
        probe = socket.socket(socket.AF_INET6 if ":" in bind.host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((bind.host or "0.0.0.0", bind.port))  # a local bind: instant, never blocks
        except OSError as error:
            self._failed(f"cannot listen for the cluster (Raft) on {bind}: {error}")
        finally:
            probe.close()

    def services(self, config: Config, own_verdicts: Callable[[], Dict[ServerKey, bool]]
                 ) -> List[service.IService]:
        """The child services of cluster mode, in start order (see the module docstring).

        ``own_verdicts`` returns this node's check verdicts (gossiped, and
        compared with the peers' by the leader watch).
        """
        raft = self.raft
        dns = config.dns.listen_address
        leader_watch = LeaderWatch(
            self._reactor, self.demotion, is_leader=lambda: raft.status.is_leader,
            dns_address=(dns.host if not dns.is_wildcard else "::1" if ":" in dns.host else "127.0.0.1",
                         dns.port),
            own_verdicts=own_verdicts,
            peer_verdicts=lambda: {node: verdicts for node, verdicts in self.peers.fresh_views().items()
                                   if node in raft.status.members and node != raft.address},
            peer_count=lambda: len(raft.status.members) - 1,
            transfer=lambda prefer: raft.transfer_leadership(prefer=prefer),
            hold_down=raft.hold_down, monotonic=raft.clock)

        def start_gossip() -> None:
            bind = config.cluster.bind_address
            try:
                self.gossip.start(bind.host or "0.0.0.0", bind.port)
            except CannotListenError as error:
                self._failed(f"cannot listen for gossip (UDP) on {bind}: {error.socketError}")
            self.gossip.set_local(own_verdicts())

        return [
            Lifecycle("forwarder", lambda: self.forwarder.start(interface=dns.host if not dns.is_wildcard
                                                                else ""), self.forwarder.stop),
            Lifecycle("gossip", start_gossip, self.gossip.stop),
            Lifecycle("peer-verdicts", self.peers.start, self.peers.stop),
            Lifecycle("membership", lambda: self._start_raft(config), raft.stop),
            Lifecycle("leader-watch", leader_watch.start, leader_watch.stop),
        ]

    def _start_raft(self, config: Config) -> None:
        raft = self.raft
        raft.add_status_listener(self.members.publish)
        raft.add_status_listener(self.importer.when_leading)
        raft.add_listener(self.drift.check)
        raft.add_removed_listener(self._removed)
        raft.start(config.cluster.bootstrap, list(config.cluster.join)).addErrback(self._start_failed)

    def _removed(self, reason: str) -> None:
        """No longer a member (removed through the API): stop serving and exit 0 (docs/cluster.md)."""
        log.warn("stopping: this node is no longer a cluster member; to add it again, empty "
                 "{dir} and start it with --join", dir=self._live().cluster.raft.data_dir,
                 event="removed_exit")
        self._reactor.callLater(0.2, self._reactor.stop)  # let a reply to the API call go out first

    def _start_failed(self, failure: Any) -> None:
        stderr = sys.__stderr__ or sys.stderr
        stderr.write(f"opengslb: cluster start failed: {failure.getErrorMessage()}\n")
        stderr.flush()
        log.error("cluster start failed: {error}", error=failure.getErrorMessage())
        self._reactor.addSystemEventTrigger("after", "shutdown", os._exit, 1)
        self._reactor.stop()
