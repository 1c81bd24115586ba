"""Cluster metrics (SPEC §9), computed from the Raft status at scrape time."""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from opengslb.state.raft import RaftNode

STATES = ("leader", "follower", "candidate")


class ClusterCollector(Collector):
    """Leadership, membership, elections and rejected packets of one node."""

    def __init__(self, raft: RaftNode, node_name: str,
                 demotions: Callable[[], Dict[str, int]] = dict) -> None:
        self._raft = raft
        self._node = node_name
        self._demotions = demotions  # reason → count of leader self-demotions

    def collect(self) -> Iterable[Metric]:
        status = self._raft.status
        node = self._node
        is_leader = GaugeMetricFamily("opengslb_cluster_is_leader",
                                      "1 while this node is the Raft leader", labels=["node"])
        is_leader.add_metric([node], 1.0 if status.is_leader else 0.0)
        yield is_leader
        state = GaugeMetricFamily("opengslb_cluster_raft_state",
                                  "1 for this node's current Raft state", labels=["node", "state"])
        for name in STATES:
            state.add_metric([node, name], 1.0 if status.state.lower() == name else 0.0)
        yield state
        yield GaugeMetricFamily("opengslb_cluster_members_total", "Members in the Raft configuration",
                                value=len(status.members))
        healthy = sum(1 for m in status.members if m == status.self_address or m in status.connected)
        yield GaugeMetricFamily("opengslb_cluster_healthy_members",
                                "Members this node is connected to, itself included", value=healthy)
        serving = GaugeMetricFamily("opengslb_cluster_serving",
                                    "1 while this node answers DNS with data (leader holding its lease)",
                                    labels=["node"])
        serving.add_metric([node], 1.0 if self._raft.serving() else 0.0)
        yield serving
        yield CounterMetricFamily("opengslb_cluster_elections",
                                  "Elections this node has started or taken part in as a candidate",
                                  value=self._raft.elections)
        yield GaugeMetricFamily("opengslb_cluster_last_election_timestamp",
                                "Unix time of the last election this node took part in as a candidate "
                                "(0 when none)", value=self._raft.last_election or 0.0)
        yield CounterMetricFamily("opengslb_cluster_rejected_packets",
                                  "Raft packets dropped because they failed authentication (wrong key)",
                                  value=self._raft.rejected_packets)
        demotions = CounterMetricFamily("opengslb_cluster_demotions",
                                        "Leader self-demotions of this node, by reason", labels=["reason"])
        for reason, count in sorted(self._demotions().items()):
            demotions.add_metric([reason], float(count))
        yield demotions


class ConfigHashCollector(Collector):
    """``opengslb_config_info{hash}``: this node's configuration hash (compare across members)."""

    def __init__(self, hash_source: Callable[[], Any]) -> None:
        self._hash_source = hash_source

    def collect(self) -> Iterable[Metric]:
        info = GaugeMetricFamily("opengslb_config_info", "Hash of the running configuration",
                                 labels=["hash"])
        info.add_metric([str(self._hash_source())], 1.0)
        yield info


class GossipCollector(Collector):
    """``opengslb_gossip_packets_dropped_total{reason}`` from the gossip channel's drop counts."""

    REASONS = ("malformed", "auth", "replay", "unknown_peer")

    def __init__(self, gossip: Any) -> None:
        self._gossip = gossip

    def collect(self) -> Iterable[Metric]:
        dropped = CounterMetricFamily("opengslb_gossip_packets_dropped",
                                      "Gossip packets dropped, by reason", labels=["reason"])
        for reason in sorted(set(self.REASONS) | set(self._gossip.dropped)):
            dropped.add_metric([reason], float(self._gossip.dropped.get(reason, 0)))
        yield dropped
