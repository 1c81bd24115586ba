"""What the API and metrics see of the cluster: status, members, leadership, membership changes.

:class:`StandaloneCluster` describes a single node that always serves;
:class:`RaftCluster` describes a Raft member.  Both answer the same calls.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Callable, Dict, List, Optional, Tuple

from twisted.internet import defer
from twisted.logger import Logger

from opengslb.config.model import Config, ListenAddress
from opengslb.state.raft import ProposalFailed, RaftNode

log = Logger(namespace="opengslb.cluster")


class MembershipError(Exception):
    """A join/remove request that cannot be done; ``code`` is the HTTP status to answer."""

    def __init__(self, message: str, code: int = 400) -> None:
        super().__init__(message)
        self.code = code


def config_hash(config: Config) -> str:
    """SHA-256 (hex) of what cluster members must agree on; never of a secret.

    Members share one file apart from their own addresses, name and data
    directory, so those (and the source path) are left out; any other
    difference is a drift.  The secrets are left out too: every API token
    field (``api.tokens`` and any other ``*token*`` field of ``api``) and
    ``cluster.gossip.encryption_key``.  The hash is published (the
    ``opengslb_config_info`` metric, ``/api/v1/cluster/status``); an unsalted
    hash over a token would let anyone who reads it test guessed tokens
    offline.  Changing only a token or only the key therefore leaves the
    hash as it was (a member with a different key cannot join anyway).
    """
    return hashlib.sha256(hashed_text(config).encode()).hexdigest()


def hashed_text(config: Config) -> str:
    """The text :func:`config_hash` digests: ``config`` with node-specific settings and secrets blanked."""
    raft = dataclasses.replace(config.cluster.raft, data_dir="")
    gossip = dataclasses.replace(config.cluster.gossip, encryption_key="")
    cluster = dataclasses.replace(config.cluster, node_name="", advertise_address="", bootstrap=False,
                                  join=(), bind_address=ListenAddress("", 0), raft=raft, gossip=gossip)
    dns = dataclasses.replace(config.dns, listen_address=ListenAddress("", 0))
    tokens = {f.name: type(getattr(config.api, f.name))()  # (), "" or {}: the empty value of its type
              for f in dataclasses.fields(config.api) if "token" in f.name}
    api = dataclasses.replace(config.api, address=ListenAddress("", 0), **tokens)
    metrics = dataclasses.replace(config.metrics, address=ListenAddress("", 0))
    neutral = dataclasses.replace(config, cluster=cluster, dns=dns, api=api, metrics=metrics, source="")
    return repr(neutral)


class StandaloneCluster:
    """A standalone node: the only member, always the serving leader."""

    mode = "standalone"

    def __init__(self, node_name: str, hash_source: Any) -> None:
        self.node_name = node_name
        self._hash_source = hash_source

    @property
    def self_id(self) -> str:
        """How this node is named in per-node verdicts."""
        return self.node_name

    def is_serving(self) -> bool:
        return True

    def members(self) -> List[Dict[str, Any]]:
        return [{"name": self.node_name, "address": None, "status": "alive"}]

    def status(self) -> Dict[str, Any]:
        return {"mode": "standalone", "node_name": self.node_name, "is_leader": True,
                "leader_address": None, "members": self.members(), "raft": None,
                "config_hash": self._hash_source(), "demoted": None}

    def leader(self) -> Dict[str, Any]:
        return {"leader": True, "node_name": self.node_name, "leader_address": None}

    def join(self, address: str, name: Optional[str]) -> "defer.Deferred[Dict[str, Any]]":
        return defer.fail(MembershipError("this node runs in standalone mode", 409))

    def remove(self, address: Optional[str], name: Optional[str]) -> "defer.Deferred[Dict[str, Any]]":
        return defer.fail(MembershipError("this node runs in standalone mode", 409))


class RaftCluster:
    """A Raft member, seen through its :class:`RaftNode`."""

    mode = "cluster"

    def __init__(self, raft: RaftNode, node_name: str, hash_source: Any,
                 demotion: Optional[Callable[[], Optional[Dict[str, Any]]]] = None) -> None:
        self.raft = raft
        self.node_name = node_name
        self._hash_source = hash_source
        #: The current self-demotion (reason, at, hold_down_until) while its hold-down lasts.
        self.demotion = demotion or (lambda: None)

    def is_serving(self) -> bool:
        return self.raft.serving()

    @property
    def self_id(self) -> str:
        """How this node is named in per-node verdicts: its advertise address."""
        return self.raft.address

    def _record(self, address: str) -> Dict[str, Any]:
        return self.raft.machine.members.get(address, {})

    def member_name(self, address: str) -> str:
        if address == self.raft.address:
            return self.node_name
        return str(self._record(address).get("name") or address)

    def members(self) -> List[Dict[str, Any]]:
        status = self.raft.status
        result = []
        for address in status.members:
            alive = address == self.raft.address or address in status.connected
            record = self._record(address)
            result.append({"name": self.member_name(address), "address": address,
                           "status": "alive" if alive else "failed",
                           "config_hash": self._hash_source() if address == self.raft.address
                           else record.get("config_hash")})
        return result

    def status(self) -> Dict[str, Any]:
        status = self.raft.status
        return {"mode": "cluster", "node_name": self.node_name, "is_leader": status.is_leader,
                "serving": self.raft.serving(), "leader_address": status.leader,
                "members": self.members(),
                "raft": {"state": status.state, "term": status.term, "commit_index": status.commit_index},
                "config_hash": self._hash_source(), "demoted": self.demotion()}

    def leader(self) -> Dict[str, Any]:
        status = self.raft.status
        return {"leader": self.raft.serving(), "node_name": self.node_name,
                "leader_address": status.leader}

    def leader_dns_address(self) -> Optional[Tuple[str, int]]:
        """The DNS (host, port) of the current leader, from its replicated member record."""
        leader = self.raft.status.leader
        if leader is None or leader == self.raft.address:
            return None
        dns = self._record(leader).get("dns")
        if not dns:
            return None
        host, _, port = str(dns).rpartition(":")
        return host.strip("[]"), int(port)

    def _resolve(self, address: Optional[str], name: Optional[str]) -> str:
        if address:
            return address
        for member in self.raft.status.members:
            if self.member_name(member) == name:
                return member
        raise MembershipError(f"no member named {name!r}", 404)

    @defer.inlineCallbacks
    def join(self, address: str, name: Optional[str]) -> Any:
        """Add ``address`` to the cluster (idempotent)."""
        if address in self.raft.status.members:
            return {"address": address, "joined": False, "message": "already a member"}
        try:
            yield self.raft.change_membership("add", address)
        except ProposalFailed as error:
            raise MembershipError(str(error), 503) from None
        log.info("member {address} added through the API", address=address, event="member_added")
        return {"address": address, "joined": True}

    @defer.inlineCallbacks
    def remove(self, address: Optional[str], name: Optional[str]) -> Any:
        """Remove a member; a leader being removed hands leadership over first (asked through
        this node when it is another node); the removed node exits by itself."""
        target = self._resolve(address, name)
        if target not in self.raft.status.members:
            raise MembershipError(f"{target} is not a member", 404)
        try:
            if target == self.raft.address:
                if self.raft.status.is_leader:
                    yield self.raft.transfer_leadership()
                others = [m for m in self.raft.status.members if m != target]
                via = self.raft.status.leader if self.raft.status.leader in others else others[0]
                yield self.raft.change_membership("remove", target, via=via)
            else:
                if target == self.raft.status.leader:  # a leader cannot remove itself: hand over first
                    yield self.raft.ask_leader_to_hand_over()
                yield self.raft.change_membership("remove", target)
        except (ProposalFailed, IndexError) as error:
            raise MembershipError(f"cannot remove {target}: {error}", 503) from None
        log.info("member {address} removed through the API", address=target, event="member_removed")
        if target == self.raft.address:
            self.raft.note_removed("removed through this node's API")  # it stops and exits 0
        return {"address": target, "removed": True}
