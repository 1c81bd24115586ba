#!/usr/bin/env python3
"""Leader failover benchmark: outage and overlap of leader-only DNS.

Starts a 3-node cluster of real ``twistd -n opengslb`` processes on their own
127.0.x.y addresses (same ports), queries every node every 10 ms, and runs
trials of:

* ``kill``: kill -9 of the leader (then restarts it so the next trial has
  three nodes again);
* ``stop``: SIGSTOP of the leader for 3 s, then SIGCONT;
* ``partition`` (only with ``nft`` available and root): the leader's cluster
  traffic is dropped by an nftables table this script creates and removes;
* ``sigterm``: SIGTERM of the leader, which hands leadership over before it
  exits; also reports how long the process took to exit and its exit code
  (then restarts it);
* ``quiet``: no fault: the share of 20 ms slots, over ``--quiet-seconds``,
  in which the leader answered with data (a healthy cluster: 100%).

Per trial it reports the outage — from the last data answer before the fault
to the first data answer from a new leader — and any overlap, a 10 ms sample
in which two nodes answered with data.

    python bench/failover.py --trials 10
    python bench/failover.py --trials 5 --kinds sigterm
    python bench/failover.py --trials 1 --kinds quiet --quiet-seconds 60
"""

from __future__ import annotations

import argparse
import os
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import dns.message
import dns.rcode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.cluster import Cluster  # noqa: E402  (the e2e cluster harness)
from tests.e2e.harness import HTTPBackend  # noqa: E402

SAMPLE = 0.01
NFT_TABLE = "opengslb_failover_bench"


class Prober:
    """Queries every node each ``interval`` (10 ms); records (time, set of nodes that answered with data)."""

    def __init__(self, cluster: Cluster, interval: float = SAMPLE) -> None:
        self.cluster = cluster
        self.interval = interval
        self.sockets: Dict[str, socket.socket] = {}
        for host in cluster.hosts:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setblocking(False)
            self.sockets[host] = sock
        self.query = dns.message.make_query("app.cluster.test", "A")
        self.last_refused: frozenset = frozenset()
        self.last_silent: frozenset = frozenset()

    def sample(self) -> Tuple[float, frozenset]:
        wire = self.query.to_wire()
        started = time.monotonic()
        for host, sock in self.sockets.items():
            try:
                sock.sendto(wire, (host, self.cluster.dns_port))
            except OSError:
                pass
        answered = set()
        refused = set()
        deadline = started + self.interval * 0.8
        pending = dict(self.sockets)
        while pending and time.monotonic() < deadline:
            ready, _, _ = select.select(list(pending.values()), [], [], max(0.0, deadline - time.monotonic()))
            for sock in ready:
                host = next(h for h, s in pending.items() if s is sock)
                try:
                    data = sock.recv(4096)
                    reply = dns.message.from_wire(data)
                    if reply.rcode() == dns.rcode.NOERROR and reply.answer:
                        answered.add(host)
                    elif reply.rcode() == dns.rcode.REFUSED:
                        refused.add(host)
                except Exception:
                    pass
                del pending[host]
        self.last_refused = frozenset(refused)
        self.last_silent = frozenset(pending)
        for sock in self.sockets.values():  # drain late replies so they do not count next time
            try:
                while True:
                    sock.recv(4096)
            except OSError:
                pass
        return started, frozenset(answered)

    def run_until(self, predicate, timeout: float) -> List[Tuple[float, frozenset]]:
        samples = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            samples.append(self.sample())
            if predicate(samples):
                break
            time.sleep(max(0.0, self.interval - (time.monotonic() - samples[-1][0])))
        return samples


def measure(prober: Prober, fault, leader: str, timeout: float = 5.0) -> Tuple[Optional[float], float]:
    """Apply ``fault`` and measure (outage seconds or None if no new leader, overlap seconds)."""
    before = prober.run_until(lambda s: len(s) >= 20, 1.0)
    last_data = max(t for t, nodes in before if nodes) if any(n for _, n in before) else time.monotonic()
    fault()

    def new_leader_answers(samples):
        return any(nodes and leader not in nodes for _, nodes in samples[-1:])

    after = prober.run_until(new_leader_answers, timeout)
    after += prober.run_until(lambda s: len(s) >= 50, 1.0)  # keep watching for overlap
    overlap = sum(SAMPLE for _, nodes in before + after if len(nodes) > 1)
    first_new = next((t for t, nodes in after if nodes and leader not in nodes), None)
    return (None if first_new is None else first_new - last_data), overlap


def settle(cluster: Cluster, timeout: float = 20.0) -> str:
    """Wait until one node serves and every node follows it (all connections re-established)."""
    deadline = time.monotonic() + timeout
    statuses: list = []
    while time.monotonic() < deadline:
        leader = cluster.wait_leader(timeout=15)
        statuses = [cluster.status(h) for h in cluster.hosts]
        if all(s and s["leader_address"] == cluster.address(leader)
               and all(m["status"] == "alive" for m in s["members"]) for s in statuses):
            return leader
        time.sleep(0.2)
    summary = [s and (s["raft"], s["leader_address"], [m["status"] for m in s["members"]]) for s in statuses]
    raise RuntimeError(f"the cluster did not settle: {summary}")


def quiet(cluster: Cluster, seconds: float) -> Tuple[int, int, int, int]:
    """Probe every node each 20 ms for ``seconds`` with no fault: (slots, slots with data, slots with
    two, slots without data in which every node answered REFUSED, i.e. not a late reply)."""
    prober = Prober(cluster, interval=0.02)
    all_refused = [0]

    def note(samples: List[Tuple[float, frozenset]]) -> bool:
        if not samples[-1][1] and len(prober.last_refused) == len(cluster.hosts):
            all_refused[0] += 1
        return False

    samples = prober.run_until(note, seconds)
    return (len(samples), sum(1 for _, nodes in samples if nodes),
            sum(1 for _, nodes in samples if len(nodes) > 1), all_refused[0])


def sigterm(cluster: Cluster, prober: Prober, leader: str) -> Tuple[Optional[float], float, float, int]:
    """SIGTERM the leader: (outage, overlap, seconds until it exited, exit code)."""
    node = cluster.nodes[leader]
    process = node.process
    assert process is not None
    sent: List[float] = []

    def fault() -> None:
        sent.append(time.monotonic())
        process.send_signal(signal.SIGTERM)

    outage, overlap = measure(prober, fault, leader)
    try:
        code = process.wait(timeout=max(0.0, 30.0 - (time.monotonic() - sent[0])))
    except subprocess.TimeoutExpired:
        process.kill()
        code = process.wait()
        print(f"  {leader} still running 30 s after SIGTERM: killed", flush=True)
    exited = time.monotonic() - sent[0]
    node._log.close()
    node.process = None
    return outage, overlap, exited, code


def nft(*args: str) -> None:
    subprocess.run(["nft", *args], check=True, capture_output=True)


def partition(cluster: Cluster, host: str) -> None:
    """Drop cluster-port traffic to and from ``host`` (an nftables table of our own)."""
    nft("add", "table", "inet", NFT_TABLE)
    nft("add", "chain", "inet", NFT_TABLE, "input", "{ type filter hook input priority 0 ; }")
    for direction in ("saddr", "daddr"):
        nft("add", "rule", "inet", NFT_TABLE, "input", "ip", direction, host, "tcp", "dport",
            str(cluster.cluster_port), "drop")
        nft("add", "rule", "inet", NFT_TABLE, "input", "ip", direction, host, "tcp", "sport",
            str(cluster.cluster_port), "drop")


def heal() -> None:
    subprocess.run(["nft", "delete", "table", "inet", NFT_TABLE], capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--kinds", default="kill,stop,partition,sigterm")
    parser.add_argument("--quiet-seconds", type=float, default=60.0)
    parser.add_argument("--election-timeout", default="1s", help="cluster.raft.election_timeout")
    args = parser.parse_args()
    kinds = args.kinds.split(",")
    if "partition" in kinds and (shutil.which("nft") is None or os.geteuid() != 0):
        print("partition trials skipped: needs root and nft (apt-get install nftables)")
        kinds.remove("partition")

    base = Path(tempfile.mkdtemp(prefix="opengslb-failover-"))
    backend = HTTPBackend("127.0.3.200")
    cluster = Cluster(base, 3, backend.host, backend.port, subnet="127.0.200",
                      election_timeout=args.election_timeout)
    results: Dict[str, List[Tuple[Optional[float], float]]] = {k: [] for k in kinds if k != "quiet"}
    exits: List[Tuple[float, int]] = []
    quiet_runs: List[Tuple[int, int, int, int]] = []
    try:
        cluster.bootstrap()
        prober = Prober(cluster)
        for trial in range(args.trials):
            for kind in kinds:
                leader = settle(cluster)
                if kind == "quiet":
                    slots, answered, dual, refused = quiet(cluster, args.quiet_seconds)
                    quiet_runs.append((slots, answered, dual, refused))
                    print(f"trial {trial + 1:2d} quiet     {answered}/{slots} slots answered with data "
                          f"({100.0 * answered / max(1, slots):.2f}%), {dual} with two answers, "
                          f"{refused} refused by every node", flush=True)
                    continue
                if kind == "sigterm":
                    outage, overlap, exited, code = sigterm(cluster, prober, leader)
                    exits.append((exited, code))
                    print(f"  {leader} exited {code} {exited:.2f}s after SIGTERM", flush=True)
                    outcome = (outage, overlap)
                    cluster.start(leader)
                elif kind == "kill":
                    outcome = measure(prober, lambda leader=leader: cluster.kill(leader), leader)
                    cluster.start(leader)
                elif kind == "stop":
                    outcome = measure(prober, lambda leader=leader: cluster.nodes[leader].signal(signal.SIGSTOP), leader)
                    time.sleep(max(0.0, 3.0))
                    resumed = prober.run_until(lambda s: len(s) >= 100, 1.5)  # the resumed node must stay silent
                    overlap = sum(SAMPLE for _, nodes in resumed if len(nodes) > 1)
                    cluster.nodes[leader].signal(signal.SIGCONT)
                    resumed = prober.run_until(lambda s: len(s) >= 100, 1.5)
                    overlap += sum(SAMPLE for _, nodes in resumed if len(nodes) > 1)
                    outcome = (outcome[0], outcome[1] + overlap)
                else:
                    try:
                        outcome = measure(prober, lambda leader=leader: partition(cluster, leader), leader)
                    finally:
                        heal()
                results[kind].append(outcome)
                outage, overlap = outcome
                print(f"trial {trial + 1:2d} {kind:9s} outage "
                      f"{'none elected' if outage is None else f'{outage:.3f}s'}  overlap {overlap:.3f}s",
                      flush=True)
                time.sleep(1.5)
    finally:
        heal()
        cluster.stop_all()
        backend.stop()
        shutil.rmtree(base, ignore_errors=True)

    for slots, answered, dual, refused in quiet_runs:
        print(f"\nquiet: {answered}/{slots} 20 ms slots answered with data ({100.0 * answered / max(1, slots):.2f}%), "
              f"{dual} with two answers, {refused} refused by every node (the rest: replies later than 16 ms)")
    if exits:
        times = [t for t, _ in exits]
        print(f"\nsigterm exit: median {statistics.median(times):.2f}s, max {max(times):.2f}s, "
              f"exit codes {sorted(set(c for _, c in exits))}, {sum(1 for t, c in exits if t <= 5 and c == 0)}"
              f"/{len(exits)} exited 0 within 5 s")
    print("\nkind       trials  median outage  max outage  trials with overlap")
    for kind, outcomes in results.items():
        outages = [o for o, _ in outcomes if o is not None]
        failed = sum(1 for o, _ in outcomes if o is None)
        overlaps = sum(1 for _, ov in outcomes if ov > 0)
        if outages:
            print(f"{kind:9s}  {len(outcomes):6d}  {statistics.median(outages):12.3f}s  {max(outages):9.3f}s"
                  f"  {overlaps}{'  (' + str(failed) + ' without a new leader)' if failed else ''}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
