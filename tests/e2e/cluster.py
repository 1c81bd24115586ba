"""Real multi-process clusters on their own 127.0.x.y addresses (same ports on every node)."""

from __future__ import annotations

import base64
import json
import os
import select
import signal
import socket
import time
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import dns.message
import dns.rcode

from tests.e2e.harness import OpenGSLB, free_port, stop_nodes, wait_until

TOKEN = "cluster-test-token"


def cluster_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


class Cluster:
    """N opengslb processes forming one cluster; ``stop_all`` cleans everything up."""

    def __init__(self, base: Path, size: int, backend_host: str, backend_port: int, subnet: str = "127.0.2",
                 follower_queries: str = "refuse", key: Optional[str] = None,
                 election_timeout: str = "1s", anycast_vip: str = "",
                 health_consensus: str = "majority", extra_backends: Optional[List[Tuple[str, int]]] = None,
                 algorithm: str = "round-robin", cluster_extra: str = "") -> None:
        self.base = base
        self.key = key or cluster_key()
        self.hosts = [f"{subnet}.{i + 1}" for i in range(size)]
        ports: List[int] = []
        while len(ports) < 4:  # four distinct ports (free_port may hand out the same one twice)
            port = free_port(self.hosts[0])
            if port not in ports:
                ports.append(port)
        self.dns_port, self.api_port, self.metrics_port, self.cluster_port = ports
        self.backend = (backend_host, backend_port)
        self.follower_queries = follower_queries
        self.election_timeout = election_timeout
        self.anycast_vip = anycast_vip
        self.health_consensus = health_consensus
        self.backends = [(backend_host, backend_port)] + list(extra_backends or [])
        self.algorithm = algorithm
        # More `cluster:` settings as YAML lines indented by two spaces, e.g.
        # "  overwatch: {veto_mode: strict}" (predictive_health, overwatch, ...).
        self.cluster_extra = cluster_extra
        self.nodes: Dict[str, OpenGSLB] = {}
        self._probe_sockets: Dict[str, socket.socket] = {}
        self.last_outcomes: Dict[str, str] = {}  # per node, the last sample's: data, an rcode, or silent

    def config(self, host: str, key: Optional[str] = None) -> str:
        return f"""
dns:
  listen_address: "{host}:{self.dns_port}"
logging: {{level: info, format: json}}
api:
  enabled: true
  address: "{host}:{self.api_port}"
  allowed_networks: ["127.0.0.0/8"]
  tokens: [{TOKEN}]
metrics: {{enabled: true, address: "{host}:{self.metrics_port}"}}
regions:
  - name: r1
    servers: [{", ".join(f"{{address: {h}, port: {p}}}" for h, p in self.backends)}]
    health_check: {{type: http, interval: 1s, timeout: 500ms, failure_threshold: 2, success_threshold: 1}}
domains:
  - {{name: app.cluster.test, regions: [r1], routing_algorithm: {self.algorithm}}}
cluster:
  mode: cluster
  node_name: node-{host}
  bind_address: "{host}:{self.cluster_port}"
  follower_queries: {self.follower_queries}
  health_consensus: {self.health_consensus}
  raft: {{data_dir: "{{DATA}}", election_timeout: {self.election_timeout}}}
  gossip: {{encryption_key: "{key or self.key}"}}
  anycast_vip: "{self.anycast_vip}"
{self.cluster_extra}
"""

    def address(self, host: str) -> str:
        return f"{host}:{self.cluster_port}"

    def start(self, host: str, bootstrap: bool = False, join: Optional[List[str]] = None,
              key: Optional[str] = None) -> OpenGSLB:
        directory = self.base / host
        directory.mkdir(exist_ok=True)
        args = []
        if bootstrap:
            args.append("--bootstrap")
        if join:
            args += ["--join", ",".join(join)]
        node = self.nodes.get(host)
        if node is None:
            node = OpenGSLB(directory, self.config(host, key), dns_host=host, dns_port=self.dns_port,
                            extra_args=args)
            self.nodes[host] = node
        else:
            node.extra_args = args
        node.start(wait=False)
        return node

    def bootstrap(self, size: Optional[int] = None) -> None:
        """The first node bootstraps; once it leads, the others are started together with --join
        (concurrent joins are supported: tests/e2e/test_cluster_join_e2e.py).  Before this returns
        the first node sees every one alive, every node lists every member and names the same
        leader, and every joiner has logged that it joined, as when they were started one after
        the other."""
        hosts = self.hosts[:size] if size else self.hosts
        self.start(hosts[0], bootstrap=True)
        self.wait_leader([hosts[0]])
        for host in hosts[1:]:
            self.start(host, join=[self.address(hosts[0])])
        if self.follower_queries != "drop":
            for host in hosts[1:]:
                self.nodes[host].wait_answering()
        self.wait_members(len(hosts), [hosts[0]])
        self.wait_agreed(hosts)
        for host in hosts[1:]:  # the joiner itself has finished joining (its data dir says so)
            wait_until(lambda host=host: "joined the cluster as" in self.nodes[host].log(), 20,
                       interval=0.05, message=f"{host} joined the cluster")

    def wait_agreed(self, hosts: List[str], timeout: float = 20.0) -> None:
        """Wait until every one of ``hosts`` lists exactly them as members, all alive, and names
        the same leader."""
        members = sorted(self.address(h) for h in hosts)

        def agreed() -> bool:
            statuses = [self.status(h) for h in hosts]
            if not all(statuses):
                return False
            leaders = {s["leader_address"] for s in statuses if s}
            return len(leaders) == 1 and None not in leaders and all(
                sorted(m["address"] for m in s["members"]) == members
                and all(m["status"] == "alive" for m in s["members"]) for s in statuses if s)

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if agreed():
                return
            time.sleep(0.1)
        raise AssertionError(f"no agreement on members and leader: { {h: self.status(h) for h in hosts} }\n"
                             + "\n".join(n.log()[-3000:] for n in self.nodes.values()))

    # -- observation -----------------------------------------------------------

    def api(self, host: str, path: str, method: str = "GET", body: Optional[dict] = None,
            timeout: float = 3.0) -> tuple:
        request = urllib.request.Request(f"http://{host}:{self.api_port}{path}", method=method,
                                         data=json.dumps(body).encode() if body is not None else None,
                                         headers={"Authorization": f"Bearer {TOKEN}",
                                                  "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def status(self, host: str) -> Optional[dict]:
        try:
            return self.api(host, "/api/v1/cluster/status", timeout=1.0)[1]
        except Exception:
            return None

    def answers(self, host: str, timeout: float = 0.3) -> Optional[str]:
        """'data' when the node answered with an address, else the rcode text or 'timeout'."""
        node = self.nodes.get(host)
        if node is None:
            return "down"
        try:
            reply = node.query("app.cluster.test", timeout=timeout)
        except Exception:
            return "timeout"
        if reply.rcode() == dns.rcode.NOERROR and reply.answer:
            return "data"
        return dns.rcode.to_text(reply.rcode())

    def serving(self, hosts: Optional[List[str]] = None) -> List[str]:
        return [h for h in (hosts or list(self.nodes)) if self.answers(h) == "data"]

    def wait_leader(self, hosts: Optional[List[str]] = None, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            serving = self.serving(hosts)
            if len(serving) == 1:
                return serving[0]
            time.sleep(0.1)
        raise AssertionError(f"no single serving leader among {hosts or list(self.nodes)}: "
                             f"{ {h: self.answers(h) for h in (hosts or self.nodes)} }\n"
                             + "\n".join(n.log()[-3000:] for n in self.nodes.values()))

    def wait_members(self, count: int, hosts: List[str], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status(hosts[0])
            if status and len([m for m in status["members"] if m["status"] == "alive"]) >= count:
                return
            time.sleep(0.2)
        raise AssertionError(f"cluster did not reach {count} alive members: {self.status(hosts[0])}\n"
                             + "\n".join(n.log()[-3000:] for n in self.nodes.values()))

    # -- probing every node at once ---------------------------------------------------

    def sample(self, window: float = 0.008) -> Tuple[float, frozenset]:
        """Query every node at the same moment: (time sent, the nodes that answered with data
        within ``window`` seconds).  Late replies are discarded, never counted later.
        :attr:`last_outcomes` then holds each node's reply: ``data``, another rcode's name, or
        ``silent`` (nothing within ``window``)."""
        query = dns.message.make_query("app.cluster.test", "A")  # a fresh id: late replies never match
        wire = query.to_wire()
        for host in self.hosts:
            if host not in self._probe_sockets:
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.setblocking(False)
                self._probe_sockets[host] = sock
        for sock in self._probe_sockets.values():  # drop late replies to earlier samples
            try:
                while True:
                    sock.recv(4096)
            except OSError:
                pass
        sent = time.monotonic()
        for host, sock in self._probe_sockets.items():
            try:
                sock.sendto(wire, (host, self.dns_port))
            except OSError:
                pass
        answered = set()
        outcomes: Dict[str, str] = {}
        pending = dict(self._probe_sockets)
        while pending and time.monotonic() < sent + window:
            ready, _, _ = select.select(list(pending.values()), [], [], max(0.0, sent + window - time.monotonic()))
            for sock in ready:
                host = next(h for h, s in pending.items() if s is sock)
                try:
                    reply = dns.message.from_wire(sock.recv(4096))
                except Exception:
                    continue
                if reply.id != query.id:
                    continue  # a late reply to an earlier sample
                del pending[host]
                if reply.rcode() == dns.rcode.NOERROR and reply.answer:
                    answered.add(host)
                    outcomes[host] = "data"
                else:
                    outcomes[host] = dns.rcode.to_text(reply.rcode())
        for host in pending:
            outcomes[host] = "silent"
        self.last_outcomes = outcomes
        return sent, frozenset(answered)

    def watch(self, seconds: float, until=None, interval: float = 0.01) -> List[Tuple[float, frozenset]]:
        """:meth:`sample` every ``interval`` for ``seconds``, or until ``until(sample)`` is true."""
        samples: List[Tuple[float, frozenset]] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            samples.append(self.sample())
            if until is not None and until(samples[-1]):
                break
            time.sleep(max(0.0, interval - (time.monotonic() - samples[-1][0])))
        return samples

    def wait_exit(self, host: str, since: float, timeout: float) -> Tuple[Optional[int], float]:
        """Wait for ``host``'s process to exit: (exit code or None if still running, seconds since
        ``since``).  An exited process is forgotten (``start`` starts it again)."""
        node = self.nodes[host]
        assert node.process is not None
        try:
            code: Optional[int] = node.process.wait(timeout=max(0.0, since + timeout - time.monotonic()))
        except Exception:
            return None, time.monotonic() - since
        elapsed = time.monotonic() - since
        node._log.close()
        node.process = None
        return code, elapsed

    def kill(self, host: str, sig: int = signal.SIGKILL) -> None:
        node = self.nodes[host]
        node.signal(sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            node.process.wait(timeout=15)
            node._log.close()
            node.process = None

    def stop_all(self) -> None:
        """Kill every node at once (the end of a test: nothing is observed any more).

        Not SIGTERM: a leader's graceful stop waits about 2.5 s for a handover to members that
        are stopping too.  The tests of a graceful stop send SIGTERM themselves and check it.
        """
        for sock in self._probe_sockets.values():
            sock.close()
        self._probe_sockets.clear()
        stop_nodes(list(self.nodes.values()), signal.SIGKILL)
