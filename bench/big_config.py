#!/usr/bin/env python3
"""Start-up, reload pause and memory with a 10,000-domain / 20,000-server configuration.

Generates the configuration (servers on 127.x addresses, TCP checks every
hour so the run sends almost no check traffic), starts the real process,
and reports: seconds from start to the first answer, resident memory, and the
longest gap in DNS answers while the file is reloaded (SIGHUP) — unchanged,
with 100 domains changed, then with 100 domains added — measured by a client
querying every 2 ms.

    python bench/big_config.py
"""

from __future__ import annotations

import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import dns.message
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.harness import OpenGSLB, free_port  # noqa: E402

DOMAINS, REGIONS, PER_REGION = 10_000, 1_000, 20


def generate(changed: int = 0, added: int = 0) -> str:
    """The configuration; the first ``changed`` domains use weighted routing, ``added`` more follow."""
    lines = ['dns:', '  listen_address: "{DNS}"', "logging: {level: info, format: json}", "regions:"]
    for r in range(REGIONS):
        lines += [f"  - name: region-{r:04d}", "    servers:"]
        for s in range(PER_REGION):
            n = r * PER_REGION + s
            lines.append(f"      - {{address: 127.{100 + (n >> 16 & 15)}.{n >> 8 & 255}.{n & 255}, port: 9}}")
        lines.append("    health_check: {type: tcp, interval: 1h, timeout: 1s}")
    lines.append("domains:")
    for d in range(DOMAINS + added):
        algorithm = "weighted" if d < changed else "round-robin"
        lines.append(f"  - {{name: d{d:05d}.bench.test, routing_algorithm: {algorithm}, "
                     f"regions: [region-{d % REGIONS:04d}, region-{(d * 7 + 1) % REGIONS:04d}]}}")
    return "\n".join(lines) + "\n"


class GapProbe(threading.Thread):
    """Queries every 2 ms; records the longest time between two answers."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(daemon=True)
        self.address = (host, port)
        self.stop_flag = threading.Event()
        self.longest = 0.0

    def run(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(2.0)
        wire = dns.message.make_query("d00001.bench.test", "A").to_wire()
        last = time.monotonic()
        while not self.stop_flag.is_set():
            sent = time.monotonic()
            sock.sendto(wire, self.address)
            try:
                sock.recv(4096)
            except OSError:
                pass
            now = time.monotonic()
            self.longest = max(self.longest, now - last)
            last = now
            time.sleep(max(0.0, 0.002 - (now - sent)))


def reload_gap(node: OpenGSLB, text: str, marker: str) -> float:
    probe = GapProbe(node.dns_host, node.dns_port)
    probe.start()
    time.sleep(0.5)
    probe.longest = 0.0
    node.write_config(text)
    before = node.log().count(marker)
    node.signal(signal.SIGHUP)
    deadline = time.monotonic() + 60
    while node.log().count(marker) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    probe.stop_flag.set()
    probe.join()
    return probe.longest


def main() -> int:
    base = Path(tempfile.mkdtemp(prefix="opengslb-big-"))
    text = generate()
    print(f"configuration: {len(text) / 1e6:.1f} MB, {DOMAINS} domains, {REGIONS * PER_REGION} servers")
    node = OpenGSLB(base, text, dns_port=free_port())
    try:
        started = time.monotonic()
        node.start(wait=False)
        node.wait_answering(timeout=60)
        print(f"start to first answer: {time.monotonic() - started:.2f} s")
        rss = psutil.Process(node.process.pid).memory_info().rss
        print(f"resident memory: {rss / 2**20:.0f} MiB")
        unchanged = reload_gap(node, text, "configuration reloaded")
        print(f"reload, file unchanged: longest answer gap {unchanged * 1000:.0f} ms")
        changed = reload_gap(node, generate(changed=100), "configuration reloaded")
        print(f"reload, 100 domains changed: longest answer gap {changed * 1000:.0f} ms")
        added = reload_gap(node, generate(changed=100, added=100), "configuration reloaded")
        print(f"reload, 100 domains added: longest answer gap {added * 1000:.0f} ms")
    finally:
        node.stop()
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
