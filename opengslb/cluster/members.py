"""This node's member record, and warnings when members run different configurations (SPEC §7.2).

:class:`MemberRecord` replicates ``member.set`` (name, DNS address, API
address, configuration hash) once a leader exists and whenever one of them
changes; the record is what followers forward queries to and what
``/cluster/status`` shows.  :class:`DriftWatch` warns once per member and
hash when another member publishes a hash other than ours.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Set, Tuple

from twisted.logger import Logger

from opengslb.config.model import Config
from opengslb.state.raft import ProposalFailed, RaftNode, RaftStatus

__all__ = ["DriftWatch", "MemberRecord"]

log = Logger(namespace="opengslb")


class MemberRecord:
    """Publishes this node's member record (a Raft status listener: :meth:`publish`).

    :param reactor: time (``at``) and retries.
    :param raft: proposes ``member.set``.
    :param node_name: this node's name.
    :param config: the configuration in force (it changes on reload).
    :param config_hash: the current configuration hash.
    """

    #: Seconds before a record that could not be committed is proposed again.
    RETRY = 1.0

    def __init__(self, reactor: Any, raft: RaftNode, node_name: str, config: Callable[[], Config],
                 config_hash: Callable[[], str]) -> None:
        self._reactor = reactor
        self._raft = raft
        self._node_name = node_name
        self._config = config
        self._config_hash = config_hash
        self._published: Optional[Tuple[Any, ...]] = None

    def publish(self, status: RaftStatus) -> None:
        """Replicate the record once a leader exists, unless the same one was already proposed."""
        if status.leader is None:
            return
        config = self._config()
        dns = config.dns.listen_address
        address = self._raft.address
        record = (address, self._node_name, f"{dns.host}:{dns.port}" if not dns.is_wildcard
                  else f"{address.rpartition(':')[0]}:{dns.port}",
                  str(config.api.address) if config.api.enabled else None, self._config_hash())
        if record == self._published:
            return
        self._published = record
        command = {"op": "member.set", "address": record[0], "name": record[1], "dns": record[2],
                   "api": record[3], "config_hash": record[4], "at": self._reactor.seconds()}

        def retry(failure: Any) -> None:
            failure.trap(ProposalFailed)
            self._published = None
            self._reactor.callLater(self.RETRY, self.publish, self._raft.status)

        self._raft.propose(command).addErrback(retry)


class DriftWatch:
    """Warns (once per member and hash) when a member runs a different configuration.

    A state listener of the Raft node (:meth:`check`); ``config_hash`` is ours now.
    """

    def __init__(self, raft: RaftNode, config_hash: Callable[[], str]) -> None:
        self._raft = raft
        self._config_hash = config_hash
        self._warned: Set[Tuple[str, str]] = set()

    def check(self) -> None:
        """Compare every member's published hash with ours."""
        ours = self._config_hash()
        for address, record in self._raft.machine.members.items():
            other = record.get("config_hash")
            if address != self._raft.address and other and other != ours \
                    and (address, other) not in self._warned:
                self._warned.add((address, other))
                log.warn("member {member} ({address}) runs a different configuration (hash {other}, "
                         "ours {ours})", member=record.get("name"), address=address, other=other[:12],
                         ours=ours[:12], event="config_drift")
