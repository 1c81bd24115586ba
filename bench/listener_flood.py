#!/usr/bin/env python3
"""DNS latency while the HTTP listeners are abused (issue 11's targets).

Starts the real process (API and metrics on, two HTTP backends, the process
limited to 1,024 descriptors like a default `ulimit -n`) and measures DNS
over UDP with a probe that sends one query every 5 ms and records each
round trip, in phases:

1. quiet — the baseline;
2. scrape flood — 200 clients in another process each scraping /metrics in
   a loop (new connection per scrape, as Prometheus without keep-alive);
3. connection flood — 5,000 idle connections held against each of the API,
   the metrics listener and DNS over TCP;
4. slowloris — 300 API connections sending one header line every 2 s
   (closed at the API's request_timeout, 10 s by default).

For each phase: queries answered with data, p50 / p99 / max latency, and
what the flood itself got (scrapes completed, connections refused).  The
target (issue 11): p99 under 5 ms in the scrape flood, every query answered
with data through the connection flood.

    python bench/listener_flood.py            # ~1 minute
    python bench/listener_flood.py --seconds 5
"""

from __future__ import annotations

import argparse
import resource
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.dns_bench import dns_query  # noqa: E402
from tests.e2e.harness import HTTPBackend, OpenGSLB, free_port, hold_connections  # noqa: E402

NAME = "app.flood.test"


class Probe(threading.Thread):
    """One UDP query every 5 ms; records (sent_at, rtt or None, had_data)."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.results: List[Tuple[float, float, bool]] = []
        self.stop_flag = threading.Event()

    def run(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(1.0)
        qid = 0
        while not self.stop_flag.is_set():
            qid = (qid + 1) & 0xFFFF
            started = time.perf_counter()
            sock.sendto(dns_query(NAME, qid), ("127.0.0.1", self.port))
            try:
                while True:
                    data = sock.recv(4096)
                    if data[:2] == struct.pack("!H", qid):
                        break
                rtt = time.perf_counter() - started
                answers = struct.unpack("!H", data[6:8])[0]
                self.results.append((started, rtt, answers > 0 and data[3] & 0x0F == 0))
            except socket.timeout:
                self.results.append((started, float("inf"), False))
            time.sleep(max(0.0, 0.005 - (time.perf_counter() - started)))

    def window(self, since: float) -> List[Tuple[float, float, bool]]:
        return [r for r in self.results if r[0] >= since]


def report(name: str, rows: List[Tuple[float, float, bool]], extra: str = "") -> None:
    if not rows:
        print(f"{name:18} no queries")
        return
    rtts = sorted(r[1] for r in rows)
    answered = sum(r[2] for r in rows)
    p99 = rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))]
    print(f"{name:18} {answered:5d}/{len(rows):<5d} with data   p50 {statistics.median(rtts) * 1e3:6.2f} ms"
          f"   p99 {p99 * 1e3:7.2f} ms   max {rtts[-1] * 1e3:7.2f} ms   {extra}")


SCRAPER = textwrap.dedent("""
    import asyncio, sys, time
    port, clients, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    done = refused = 0
    async def loop():
        global done, refused
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"GET /metrics HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
                data = await reader.read()
                writer.close()
                if data.startswith(b"HTTP/1.1 200"):
                    done += 1
                else:
                    refused += 1
            except OSError:
                refused += 1
                await asyncio.sleep(0.01)
    async def main():
        await asyncio.gather(*(loop() for _ in range(clients)))
    asyncio.run(main())
    print(done, refused)
""")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument("--connections", type=int, default=5000, help="idle connections per listener")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 3 * args.connections + 1000
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))

    primary, secondary = HTTPBackend("127.0.0.31"), HTTPBackend("127.0.0.32")
    api_port, metrics_port = free_port(), free_port()
    config = f"""
        dns: {{listen_address: "{{DNS}}"}}
        logging: {{level: info, format: json}}
        metrics: {{enabled: true, address: "127.0.0.1:{metrics_port}"}}
        api: {{enabled: true, address: "127.0.0.1:{api_port}", tokens: ["bench-token"]}}
        regions:
          - name: r1
            servers: [{{address: {primary.host}, port: {primary.port}}},
                      {{address: {secondary.host}, port: {secondary.port}}}]
            health_check: {{type: http, interval: 1s, timeout: 500ms, path: /health}}
        domains:
          - {{name: {NAME}, routing_algorithm: round-robin, regions: [r1]}}
        """
    with tempfile.TemporaryDirectory() as tmp:
        node = OpenGSLB(Path(tmp), config, nofile=1024)
        probe = Probe(node.dns_port)
        try:
            node.start()
            probe.start()
            since = time.perf_counter()
            time.sleep(args.seconds)
            report("quiet", probe.window(since))

            since = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", SCRAPER, str(metrics_port), "200", str(args.seconds)],
                                 capture_output=True, text=True, check=True).stdout.split()
            report("scrape flood x200", probe.window(since), f"scrapes {out[0]} ok, {out[1]} refused")

            since = time.perf_counter()
            held = []
            for port in (api_port, metrics_port, node.dns_port):
                held += hold_connections(port, args.connections)
            time.sleep(args.seconds)
            report(f"{args.connections} conns x3", probe.window(since), f"{len(held)} sockets held")
            for sock in held:
                sock.close()

            since = time.perf_counter()
            slow = []
            for i in range(300):
                sock = socket.create_connection(("127.0.0.1", api_port),
                                                source_address=(f"127.0.2.{1 + i % 30}", 0))
                sock.sendall(b"GET /api/v1/live HTTP/1.1\r\nHost: x\r\n")
                slow.append(sock)
            started = time.monotonic()
            closed_by = None
            open_socks = list(slow)
            while open_socks and time.monotonic() - started < 15.0:
                time.sleep(0.5)
                for sock in list(open_socks):
                    sock.setblocking(False)
                    try:
                        if sock.recv(4096) == b"":
                            open_socks.remove(sock)
                            continue
                        open_socks.remove(sock)  # a 408 came: the server is closing it
                    except BlockingIOError:
                        if int(time.monotonic() - started) % 2 == 0:
                            try:
                                sock.sendall(b"X-Slow: 1\r\n")
                            except OSError:
                                open_socks.remove(sock)
                    except OSError:
                        open_socks.remove(sock)
                if not open_socks:
                    closed_by = time.monotonic() - started
            report("slowloris x300", probe.window(since),
                   f"all closed after {closed_by:.1f}s" if closed_by else "NOT all closed")
            for sock in slow:
                sock.close()
            log = node.log()
            print(f"tracebacks in the log: {log.count('Traceback')}; "
                  f"'Too many open files': {log.count('Too many open files')}")
        finally:
            probe.stop_flag.set()
            node.stop()
            primary.stop()
            secondary.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
