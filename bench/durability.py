#!/usr/bin/env python3
"""Durability of acknowledged runtime-state writes across kill -9 of every cluster node.

Each trial writes an override (through a follower) and a registration (through
the leader), waits for both acknowledgements, kills every node with SIGKILL,
restarts them all from their data directories and checks that both writes
are there.  Prints one line per trial and the count of lost writes.

    python bench/durability.py --trials 20
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.cluster import Cluster  # noqa: E402
from tests.e2e.harness import HTTPBackend, wait_until  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="opengslb-durability-"))
    backend = HTTPBackend("127.0.3.201")
    cluster = Cluster(base, 3, backend.host, backend.port, subnet="127.0.201")
    lost = 0
    try:
        cluster.bootstrap()
        for trial in range(args.trials):
            leader = cluster.wait_leader(timeout=20)
            follower = next(h for h in cluster.hosts if h != leader)
            weight = trial % 1000
            address = f"127.0.202.{trial + 1}"
            code, _ = cluster.api(follower, f"/api/v1/overrides/r1/{backend.host}", "PUT",
                                  {"weight": weight, "reason": f"trial {trial}"}, timeout=10)
            code2, _ = cluster.api(leader, "/api/v1/services", "POST",
                                   {"region": "r1", "address": address, "port": 80, "ttl": "1h",
                                    "healthy": True}, timeout=10)
            if code != 200 or code2 not in (200, 201):
                print(f"trial {trial + 1:2d}: write not acknowledged ({code}, {code2}); skipped")
                continue
            started = time.monotonic()
            for host in cluster.hosts:
                cluster.kill(host, signal.SIGKILL)
            for host in cluster.hosts:
                cluster.start(host)
            leader = cluster.wait_leader(timeout=20)
            overrides = wait_until(lambda leader=leader: cluster.api(leader, "/api/v1/overrides")[1]["overrides"], 10)
            services = cluster.api(leader, "/api/v1/services")[1]["services"]
            ok_override = [(o["address"], o["weight"]) for o in overrides] == [(backend.host, weight)]
            ok_service = address in {s["address"] for s in services}
            lost += (not ok_override) + (not ok_service)
            print(f"trial {trial + 1:2d}: override {'kept' if ok_override else 'LOST'}, registration "
                  f"{'kept' if ok_service else 'LOST'} (restart to serving: {time.monotonic() - started:.1f}s)",
                  flush=True)
    finally:
        cluster.stop_all()
        backend.stop()
        shutil.rmtree(base, ignore_errors=True)
    print(f"\nlost acknowledged writes: {lost}")
    return 1 if lost else 0


if __name__ == "__main__":
    raise SystemExit(main())
