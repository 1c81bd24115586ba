#!/usr/bin/env python3
"""Fault-schedule benchmark for cluster mode, in the spirit of Jepsen (issue 13 item 6).

Forms a cluster of real ``twistd -n opengslb`` processes on their own
127.0.x.y addresses the operator's way (node 1 with ``--bootstrap``, every
other node started at the same moment with ``--join``), then runs a seeded,
randomized schedule of faults (printed first, reproducible with ``--seed``):

* ``kill``: kill -9 of the leader or a random node, restarted 1-4 s later;
* ``stop``: SIGSTOP of the leader or a random node for 0.5-5 s, then SIGCONT;
* ``sigterm``: SIGTERM of the leader or a random node (its exit status and
  time are checked: 0 within 5 s), restarted 1-3 s later;
* ``remove``: the API removes a random follower (it must exit 0), its data
  directory is emptied and it joins again with ``--join``;
* ``partition``: the leader's or a random node's cluster port (Raft TCP and
  gossip UDP) is cut off for 2-6 s by an nftables table this script creates
  and deletes; ``flap``: the same, switched on and off every 0.5 s for 4 s.
  Partitions need root and ``nft``; without them they are left out of the
  schedule (said so at the start).

Meanwhile a prober queries every node every 20 ms (a slot; a reply counts
within 16 ms) and a writer PUTs overrides to random nodes at about 5 writes/s,
recording which were acknowledged (200) and how the others ended (503
``not_applied``/``unknown``, 500, no reply).

Reported: acknowledged writes lost (after the schedule and a heal, every node
must hold, per key, the last acknowledged write or a later attempted one —
last write wins), slots in which two nodes answered with data (and whether a
partition was in force), the longest gap without any data answer per fault
type (a fault's window runs from its start to 3 s after it ends; every fault
here leaves a quorum, so none is excluded), the share of slots answered
outside fault windows, SIGTERM exits, and whether all nodes agree at the end
on leader, members and state.

    python bench/nemesis.py --short            # about 90 s of faults, 3 nodes (CI)
    python bench/nemesis.py --minutes 10       # the benchmark
    python bench/nemesis.py --nodes 5 --seed 7
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.cluster import Cluster  # noqa: E402  (the e2e cluster harness)
from tests.e2e.harness import HTTPBackend  # noqa: E402

SLOT = 0.02
REPLY_WINDOW = 0.016
WRITE_INTERVAL = 0.2
RECOVERY = 3.0  # a fault's window lasts this long after the fault ends
NFT_TABLE = "opengslb_nemesis"
KINDS = ("kill", "stop", "sigterm", "remove", "partition", "flap")


@dataclass
class Fault:
    """One scheduled fault: at ``at`` seconds into the run, ``kind`` on ``target`` ("leader" or
    "random") lasting ``duration`` seconds (the restart delay for kill and sigterm)."""

    at: float
    kind: str
    target: str
    duration: float
    node: str = ""          # filled in when it runs
    started: float = 0.0    # monotonic
    ended: float = 0.0
    note: str = ""


@dataclass
class Write:
    seq: int
    key: str
    host: str
    sent: float
    outcome: str = "pending"   # ack | not_applied | unknown | 500 | error:...
    took: float = 0.0


@dataclass
class Run:
    samples: List[Tuple[float, frozenset]] = field(default_factory=list)
    outcomes: Dict[float, Dict[str, str]] = field(default_factory=dict)  # slot time -> node -> outcome
    writes: List[Write] = field(default_factory=list)
    partitioned: List[Tuple[float, float]] = field(default_factory=list)
    exits: List[Tuple[str, Optional[int], float]] = field(default_factory=list)


def schedule(seed: int, seconds: float, kinds: List[str]) -> List[Fault]:
    """A reproducible schedule: faults back to back with 4-7 s of calm between them."""
    rng = random.Random(seed)
    faults: List[Fault] = []
    at = 5.0
    while at < seconds:
        kind = rng.choice(kinds)
        target = "random" if kind == "remove" else rng.choice(["leader", "random"])
        duration = {"kill": rng.uniform(1, 4), "stop": rng.uniform(0.5, 5), "sigterm": rng.uniform(1, 3),
                    "remove": 0.0, "partition": rng.uniform(2, 6), "flap": 4.0}[kind]
        faults.append(Fault(round(at, 1), kind, target, round(duration, 2)))
        at += duration + rng.uniform(4, 7) + (6 if kind == "remove" else 0)
    return faults


class Nemesis:
    """Runs one schedule against one cluster (the prober and writer in threads)."""

    def __init__(self, cluster: Cluster, keys: List[str], seed: int) -> None:
        self.cluster = cluster
        self.keys = keys
        self.rng = random.Random(seed + 1)        # the writer's choices (its own thread)
        self.fault_rng = random.Random(seed + 2)  # the faults' targets (the main thread)
        self.run = Run()
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.down: set = set()  # nodes not running right now (the writer avoids them)

    # -- background load ---------------------------------------------------------------------

    def prober(self) -> None:
        while not self.stop_event.is_set():
            sample = self.cluster.sample(window=REPLY_WINDOW)
            self.run.samples.append(sample)
            if not sample[1]:
                self.run.outcomes[sample[0]] = dict(self.cluster.last_outcomes)
            time.sleep(max(0.0, SLOT - (time.monotonic() - sample[0])))

    def writer(self) -> None:
        seq = 0
        while not self.stop_event.is_set():
            started = time.monotonic()
            seq += 1
            key = self.rng.choice(self.keys)
            with self.lock:
                hosts = [h for h in self.cluster.hosts if h not in self.down] or self.cluster.hosts
            host = self.rng.choice(hosts)
            write = Write(seq, key, host, started)
            self.run.writes.append(write)
            try:
                code, body = self.cluster.api(host, f"/api/v1/overrides/r1/{key}", "PUT",
                                              {"weight": seq % 1000, "reason": f"w{seq}"}, timeout=7.0)
                if code == 200:
                    write.outcome = "ack"
                elif code == 503 and isinstance(body, dict):
                    write.outcome = str(body.get("outcome", "503"))
                else:
                    write.outcome = str(code)
            except Exception as error:  # no reply: fate unknown
                write.outcome = f"error:{type(error).__name__}"
            write.took = time.monotonic() - started
            time.sleep(max(0.0, WRITE_INTERVAL - write.took))

    # -- faults ------------------------------------------------------------------------------

    def leader(self) -> Optional[str]:
        for _, answered in reversed(self.run.samples[-25:]):
            if len(answered) == 1:
                return next(iter(answered))
        return None

    def pick(self, target: str) -> str:
        leader = self.leader()
        if target == "leader" and leader is not None:
            return leader
        return self.fault_rng.choice(self.cluster.hosts)

    def apply(self, fault: Fault) -> None:
        host = fault.node = self.pick(fault.target)
        if fault.kind == "remove":
            leader = self.leader()
            followers = [h for h in self.cluster.hosts if h != leader]
            host = fault.node = self.fault_rng.choice(followers)
        fault.started = time.monotonic()
        getattr(self, f"_{fault.kind}")(fault, host)
        fault.ended = time.monotonic()

    def _kill(self, fault: Fault, host: str) -> None:
        with self.lock:
            self.down.add(host)
        self.cluster.kill(host, signal.SIGKILL)
        time.sleep(fault.duration)
        self.cluster.start(host)
        with self.lock:
            self.down.discard(host)

    def _stop(self, fault: Fault, host: str) -> None:
        self.cluster.nodes[host].signal(signal.SIGSTOP)
        time.sleep(fault.duration)
        self.cluster.nodes[host].signal(signal.SIGCONT)

    def _sigterm(self, fault: Fault, host: str) -> None:
        with self.lock:
            self.down.add(host)
        since = time.monotonic()
        self.cluster.nodes[host].signal(signal.SIGTERM)
        code, took = self.cluster.wait_exit(host, since, 10.0)
        self.run.exits.append((host, code, took))
        fault.note = f"exit {code} after {took:.2f}s"
        if code is None:
            self.cluster.kill(host, signal.SIGKILL)
        time.sleep(fault.duration)
        self.cluster.start(host)
        with self.lock:
            self.down.discard(host)

    def _remove(self, fault: Fault, host: str) -> None:
        leader = self.leader() or self.cluster.hosts[0]
        address = self.cluster.address(host)
        with self.lock:
            self.down.add(host)
        since = time.monotonic()
        try:
            code = self.cluster.api(leader, "/api/v1/cluster/remove", "POST", {"address": address},
                                    timeout=15)[0]
        except Exception:
            code = 0  # no reply
        exit_code, took = self.cluster.wait_exit(host, since, 15.0)
        fault.note = f"remove answered {code}; node exit {exit_code} after {took:.2f}s"
        if exit_code is None:
            self.cluster.kill(host, signal.SIGKILL)
        shutil.rmtree(self.cluster.base / host / "data", ignore_errors=True)
        self.cluster.start(host, join=[self.cluster.address(h) for h in self.cluster.hosts if h != host])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = self.cluster.status(leader) or {}
            if any(m["address"] == address and m["status"] == "alive" for m in status.get("members", [])):
                break
            time.sleep(0.3)
        with self.lock:
            self.down.discard(host)

    def _cut(self, host: str) -> None:
        nft("add", "table", "inet", NFT_TABLE)
        nft("add", "chain", "inet", NFT_TABLE, "input", "{ type filter hook input priority 0 ; }")
        port = str(self.cluster.cluster_port)
        for direction in ("saddr", "daddr"):
            for proto in ("tcp", "udp"):
                for side in ("dport", "sport"):
                    nft("add", "rule", "inet", NFT_TABLE, "input", "ip", direction, host, proto, side, port,
                        "drop")

    def _partition(self, fault: Fault, host: str) -> None:
        start = time.monotonic()
        self._cut(host)
        try:
            time.sleep(fault.duration)
        finally:
            heal()
            self.run.partitioned.append((start, time.monotonic()))

    def _flap(self, fault: Fault, host: str) -> None:
        end = time.monotonic() + fault.duration
        while time.monotonic() < end:
            start = time.monotonic()
            self._cut(host)
            time.sleep(0.5)
            heal()
            self.run.partitioned.append((start, time.monotonic()))
            time.sleep(0.5)


def keep_logs(base: Path, into: Path) -> None:
    """Copy each node's log (``HOST/…/opengslb.log``, appended across restarts) to ``into/HOST.log``."""
    into.mkdir(parents=True, exist_ok=True)
    for log in base.rglob("opengslb.log"):
        host = log.relative_to(base).parts[0]
        shutil.copyfile(log, into / f"{host}.log")
    print(f"node logs kept in {into}")


def nft(*args: str) -> None:
    subprocess.run(["nft", *args], check=True, capture_output=True)


def heal() -> None:
    subprocess.run(["nft", "delete", "table", "inet", NFT_TABLE], capture_output=True)


def longest_gap(samples: List[Tuple[float, frozenset]], start: float, end: float) -> float:
    """Longest run of slots in [start, end] without a data answer (seconds, slot-granular)."""
    longest, gap_start = 0.0, None
    for t, answered in samples:
        if t < start or t > end:
            continue
        if answered:
            if gap_start is not None:
                longest = max(longest, t - gap_start)
            gap_start = None
        elif gap_start is None:
            gap_start = t
    if gap_start is not None:
        longest = max(longest, end - gap_start)
    return longest


def final_state(cluster: Cluster) -> Dict[str, Any]:
    """Per node: (leader, members, overrides {key: reason})."""
    state = {}
    for host in cluster.hosts:
        status = cluster.status(host) or {}
        try:
            overrides = cluster.api(host, "/api/v1/overrides", timeout=5)[1]["overrides"]
        except Exception:
            overrides = None
        state[host] = {
            "leader": status.get("leader_address"),
            "members": sorted(m["address"] for m in status.get("members", [])),
            "overrides": None if overrides is None else {o["address"]: o["reason"] for o in overrides},
        }
    return state


def lost_writes(writes: List[Write], overrides: Dict[str, str]) -> List[str]:
    """Keys whose value is older than their last acknowledged write (last write wins, one writer)."""
    lost = []
    last_ack: Dict[str, int] = {}
    for write in writes:
        if write.outcome == "ack":
            last_ack[write.key] = write.seq
    for key, seq in last_ack.items():
        reason = overrides.get(key)
        held = int(reason[1:]) if reason and reason.startswith("w") else -1
        if held < seq:
            lost.append(f"{key}: holds {reason}, acknowledged w{seq}")
    return lost


def form(cluster: Cluster) -> None:
    """Bootstrap node 1, then start every other node at once with --join (the operator's way)."""
    first = cluster.hosts[0]
    cluster.start(first, bootstrap=True)
    cluster.wait_leader([first], timeout=20)
    for host in cluster.hosts[1:]:
        cluster.start(host, join=[cluster.address(first)])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        statuses = [cluster.status(h) for h in cluster.hosts]
        if all(s and len(s["members"]) == len(cluster.hosts) and all(m["status"] == "alive" for m in s["members"])
               for s in statuses):
            return
        time.sleep(0.3)
    raise SystemExit("the cluster did not form within 60 s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=None, help="schedule seed (default: random, printed)")
    parser.add_argument("--nodes", type=int, default=3, choices=(3, 5))
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the fault schedule")
    parser.add_argument("--short", action="store_true", help="a 90 s schedule (CI)")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--keep-logs", metavar="DIR", help="copy every node's log (all its restarts) into DIR")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 unless the safety properties held: no acknowledged write lost, no "
                             "two nodes answering with data at once, no 500, every SIGTERM exit 0 "
                             "within 5 s, end state agreed (for CI)")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 30)
    seconds = 90.0 if args.short else args.minutes * 60
    kinds = [k for k in args.kinds.split(",") if k]
    if {"partition", "flap"} & set(kinds) and (shutil.which("nft") is None or os.geteuid() != 0):
        print("partitions skipped: they need root and nft (apt-get install nftables)")
        kinds = [k for k in kinds if k not in ("partition", "flap")]
    faults = schedule(seed, seconds, kinds)
    print(f"seed {seed}: {len(faults)} faults over {seconds:.0f} s on {args.nodes} nodes")
    for fault in faults:
        print(f"  t={fault.at:6.1f}s  {fault.kind:9s} {fault.target:6s}  {fault.duration:.2f}s")
    sys.stdout.flush()

    base = Path(tempfile.mkdtemp(prefix="opengslb-nemesis-"))
    backends = [HTTPBackend(f"127.0.210.{i + 1}") for i in range(4)]
    cluster = Cluster(base, args.nodes, backends[0].host, backends[0].port, subnet="127.0.211",
                      extra_backends=[(b.host, b.port) for b in backends[1:]])
    nemesis = Nemesis(cluster, [b.host for b in backends], seed)
    threads: List[threading.Thread] = []
    heal()
    try:
        form(cluster)
        cluster.wait_leader(timeout=20)
        threads = [threading.Thread(target=nemesis.prober, daemon=True),
                   threading.Thread(target=nemesis.writer, daemon=True)]
        for thread in threads:
            thread.start()
        begin = time.monotonic()
        for fault in faults:
            time.sleep(max(0.0, begin + fault.at - time.monotonic()))
            nemesis.apply(fault)
            print(f"  t={fault.started - begin:6.1f}s {fault.kind:9s} {fault.node:14s} "
                  f"{fault.ended - fault.started:5.2f}s {fault.note}", flush=True)
        time.sleep(RECOVERY + 2)
        end = time.monotonic()
        nemesis.stop_event.set()
        for thread in threads:
            thread.join(timeout=10)
        # heal: every node running, then agreement
        heal()
        agreed, state = False, {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not agreed:
            state = final_state(cluster)
            views = [json.dumps(v, sort_keys=True) for v in state.values()]
            agreed = len(set(views)) == 1 and all(v["leader"] and v["overrides"] is not None for v in state.values())
            if not agreed:
                time.sleep(1.0)
        safe = report(nemesis.run, faults, begin, end, state, agreed, args, seed)
    finally:
        nemesis.stop_event.set()
        heal()
        cluster.stop_all()
        for backend in backends:
            backend.stop()
        if args.keep_logs:
            keep_logs(base, Path(args.keep_logs))
        shutil.rmtree(base, ignore_errors=True)
    if args.check and not safe:
        print("nemesis: a safety property did not hold (see above)", file=sys.stderr)
        return 1
    return 0


def missed_episodes(outside: List[Tuple[float, frozenset]], outcomes: Dict[float, Dict[str, str]],
                    faults: List[Fault], begin: float) -> List[str]:
    """Runs of consecutive unanswered slots outside fault windows, one line each: when, how many
    slots, how long after the latest fault's end, and what each node replied (counted per slot)."""
    lines: List[str] = []
    run: List[float] = []

    def close() -> None:
        if not run:
            return
        start = run[0]
        before = [f for f in faults if f.started and f.ended <= start]
        latest = max(before, key=lambda f: f.ended, default=None)
        after = (f"{start - latest.ended:.1f}s after {latest.kind} {latest.node} ended" if latest
                 else "before any fault")
        replies: Dict[str, Dict[str, int]] = {}
        for t in run:
            for host, outcome in outcomes.get(t, {}).items():
                replies.setdefault(host, {}).setdefault(outcome, 0)
                replies[host][outcome] += 1
        lines.append(f"t={start - begin:6.2f}s {len(run)} slot(s), {after}: "
                     + ", ".join(f"{h} {dict(sorted(o.items()))}" for h, o in sorted(replies.items())))
        run.clear()

    previous = None
    for t, answered in outside:
        if answered or (previous is not None and t - previous > 2.5 * SLOT):
            close()
        if not answered:
            run.append(t)
        previous = t
    close()
    return lines


def in_any(t: float, windows: List[Tuple[float, float]]) -> bool:
    return any(start <= t <= end for start, end in windows)


def report(run: Run, faults: List[Fault], begin: float, end: float, state: Dict[str, Any], agreed: bool,
           args: Any, seed: int) -> bool:
    """Print (and with --json write) the results; True when every safety property held."""
    samples = [s for s in run.samples if begin <= s[0] <= end]
    windows = [(f.started, f.ended + RECOVERY) for f in faults if f.started]
    outside = [s for s in samples if not in_any(s[0], windows)]
    answered_outside = sum(1 for _, a in outside if a)
    dual = [(t, a) for t, a in samples if len(a) > 1]
    dual_partition = [d for d in dual if in_any(d[0], run.partitioned)]
    outcomes: Dict[str, int] = {}
    for write in run.writes:
        outcomes[write.outcome] = outcomes.get(write.outcome, 0) + 1
    overrides = next(iter(state.values()))["overrides"] if state else {}
    lost = lost_writes(run.writes, overrides or {}) if agreed else ["(no agreed end state)"]
    gaps: Dict[str, List[float]] = {}
    for fault in faults:
        if fault.started:
            gaps.setdefault(fault.kind, []).append(longest_gap(samples, fault.started, fault.ended + RECOVERY))
    print(f"\nresults (seed {seed}, {args.nodes} nodes, {end - begin:.0f} s)")
    print(f"slots: {len(samples)}; outside fault windows {answered_outside}/{len(outside)} answered with data "
          f"({100.0 * answered_outside / max(1, len(outside)):.2f}%)")
    print(f"dual-answer slots: {len(dual)} ({len(dual_partition)} during a partition)")
    print(f"writes: {len(run.writes)} {dict(sorted(outcomes.items()))}")
    print(f"acknowledged writes lost: {len(lost)}" + (f" {lost[:5]}" if lost else ""))
    print("longest gap without a data answer, per fault type (window: fault + 3 s):")
    for kind, values in sorted(gaps.items()):
        print(f"  {kind:9s} {len(values):3d} faults  max {max(values):.2f}s  median {statistics.median(values):.2f}s")
    if run.exits:
        ok = sum(1 for _, code, took in run.exits if code == 0 and took <= 5)
        print(f"sigterm exits: {ok}/{len(run.exits)} exited 0 within 5 s "
              f"(max {max(t for _, _, t in run.exits):.2f}s)")
    episodes = missed_episodes(outside, run.outcomes, faults, begin)
    if episodes:
        print("slots without a data answer outside fault windows, as episodes:")
        for line in episodes[:40]:
            print("  " + line)
    print(f"end state agreed (leader, members, overrides): {agreed}")
    if not agreed:
        print(json.dumps(state, indent=1, sort_keys=True)[:3000])
    if args.json:
        Path(args.json).write_text(json.dumps({
            "seed": seed, "nodes": args.nodes, "slots": len(samples), "outside": len(outside),
            "answered_outside": answered_outside, "dual": len(dual), "dual_partition": len(dual_partition),
            "writes": outcomes, "lost": lost, "gaps": gaps, "exits": run.exits, "agreed": agreed,
            "faults": [f.__dict__ for f in faults]}, indent=1, default=str))
    exits_ok = all(code == 0 and took <= 5 for _, code, took in run.exits)
    return not lost and not dual and exits_ok and agreed and outcomes.get("500", 0) == 0  # safe


if __name__ == "__main__":
    raise SystemExit(main())
