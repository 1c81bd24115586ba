#!/usr/bin/env python3
"""Does one process keep the check schedule of 10,000 servers at a 10 s interval?

Starts the real process with 10,000 servers (TCP checks against closed ports
on 127.110.x.y, refused at once, so only loopback is touched), lets the
schedule settle, then reports the checks per second achieved against the
1,000/s the schedule asks for, and the percentiles of each server's check
age (now - last_check) from /api/v1/health/servers: with the schedule kept,
no age exceeds the interval by more than the API's one-second resolution.

    python bench/health_schedule.py
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.harness import OpenGSLB, free_port  # noqa: E402

SERVERS, PER_REGION, INTERVAL = 10_000, 20, 10


def config(api_port: int, metrics_port: int) -> str:
    lines = ['dns: {listen_address: "{DNS}"}', "logging: {level: warn, format: json}",
             f'api: {{enabled: true, address: "127.0.0.1:{api_port}"}}',
             f'metrics: {{enabled: true, address: "127.0.0.1:{metrics_port}"}}', "regions:"]
    for r in range(SERVERS // PER_REGION):
        lines += [f"  - name: r{r:04d}", "    servers:"]
        for s in range(PER_REGION):
            n = r * PER_REGION + s
            lines.append(f"      - {{address: 127.110.{n >> 8 & 255}.{n & 255}, port: 9}}")
        lines.append(f"    health_check: {{type: tcp, interval: {INTERVAL}s, timeout: 1s}}")
    lines += ["domains:", "  - {name: app.bench.test, regions: [r0000]}"]
    return "\n".join(lines) + "\n"


def checks_done(metrics_port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(sample.value for family in text_string_to_metric_families(text)
               if family.name == "opengslb_health_check_results" for sample in family.samples
               if sample.name.endswith("_total"))


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> int:
    base = Path(tempfile.mkdtemp(prefix="opengslb-checks-"))
    api_port, metrics_port = free_port(), free_port()
    node = OpenGSLB(base, config(api_port, metrics_port), dns_port=free_port())
    try:
        node.start(wait=False)
        node.wait_answering(timeout=60)
        time.sleep(INTERVAL + 5)  # the first round is spread over one interval
        first, started = checks_done(metrics_port), time.monotonic()
        time.sleep(2 * INTERVAL)
        rate = (checks_done(metrics_port) - first) / (time.monotonic() - started)
        with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/api/v1/health/servers", timeout=30) as r:
            servers = json.loads(r.read())["servers"]
        now = datetime.now(timezone.utc)
        ages = [(now - datetime.fromisoformat(s["last_check"].replace("Z", "+00:00"))).total_seconds()
                for s in servers if s["last_check"]]
        print(f"servers: {len(servers)}, checked at least once: {len(ages)}")
        print(f"checks per second: {rate:.0f} (schedule asks for {SERVERS / INTERVAL:.0f})")
        print("check age (now - last_check), seconds: " + ", ".join(
            f"p{int(p * 100)} {percentile(ages, p):.1f}" for p in (0.5, 0.95, 0.99)) + f", max {max(ages):.1f}")
        print(f"lag beyond the {INTERVAL}s interval: max {max(0.0, max(ages) - INTERVAL):.1f}s "
              "(the API reports whole seconds)")
    finally:
        node.stop()
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
