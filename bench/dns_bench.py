#!/usr/bin/env python3
"""DNS benchmark: OpenGSLB beside gdnsd and a naive twisted.names server.

Starts, on loopback only:

* OpenGSLB (``python -m opengslb``) on a copy of ``bench/bench.yaml``
  (routing, TCP health checks against local listeners, metrics on);
* gdnsd, a C authoritative server, answering the same names through its
  ``weighted`` plugin (one address per answer, same weights and TTLs);
* ``bench/naive_names_server.py``, twisted.names' own authority serving a
  zone file with one A record per name;

pins the servers to one core and the load generators to another, then drives
each server in turn for several interleaved rounds with dnsperf and with
``bench/udpflood.c`` (built here with gcc; lighter than dnsperf, which tops
out near 160k queries/s on one core), and finishes with q=1 latency runs.
Prints median answers/s, mean latency, lost queries and the ratios of
OpenGSLB to each baseline, and checks the metrics count every answer.

    python bench/dns_bench.py                 # ~3-4 minutes
    python bench/dns_bench.py --quick         # ~1 minute smoke run

Every process started is stopped at the end, whatever happens.
See bench/README.md for how to read the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import selectors
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ruamel.yaml import YAML

sys.path.insert(0, str(Path(__file__).resolve().parent))
import geo_workload  # noqa: E402  (bench/geo_workload.py: the geolocation-with-ECS workload)

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
LOOPBACK = "127.0.0.1"


# -- the names under test --------------------------------------------------

@dataclass(frozen=True)
class Domain:
    """One benchmarked name with the servers (address, weight) it routes over."""

    name: str
    ttl: int
    servers: Tuple[Tuple[str, int], ...]  # IPv4 only: the benchmark asks A queries


@dataclass
class BenchConfig:
    """What the benchmark needs from the OpenGSLB configuration file."""

    raw: dict
    port: int
    metrics_url: Optional[str]
    domains: List[Domain]
    backends: List[Tuple[str, int]]


def read_config(path: Path) -> BenchConfig:
    """Read ``path`` (an OpenGSLB config) for its listen port, names and backends."""
    raw = YAML(typ="safe").load(path.read_text())
    host, _, port = raw["dns"]["listen_address"].rpartition(":")
    if host not in ("127.0.0.1", "localhost"):
        raise SystemExit(f"{path}: dns.listen_address must be on 127.0.0.1 for the benchmark")
    metrics = raw.get("metrics") or {}
    metrics_url = None
    if metrics.get("enabled"):
        m_host, _, m_port = metrics["address"].rpartition(":")
        metrics_url = f"http://{m_host or LOOPBACK}:{m_port}/metrics"
    default_ttl = int(raw["dns"].get("default_ttl", 60))
    regions = {r["name"]: r for r in raw["regions"]}
    domains = []
    for d in raw["domains"]:
        servers = tuple((s["address"], int(s.get("weight", 100)))
                        for region in d["regions"] for s in regions[region]["servers"]
                        if ":" not in s["address"])
        domains.append(Domain(d["name"].lower().rstrip("."), int(d.get("ttl", default_ttl)), servers))
    backends = sorted({(s["address"], int(s.get("port", 80)))
                       for r in raw["regions"] for s in r["servers"]
                       if (r.get("health_check") or {}).get("type") == "tcp"})
    return BenchConfig(raw, int(port), metrics_url, domains, backends)


# -- processes -------------------------------------------------------------

class Processes:
    """Every child process the benchmark starts; :meth:`stop_all` ends them all."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.children: Dict[str, subprocess.Popen] = {}

    def start(self, name: str, argv: Sequence[str], cpu: Optional[int],
              env: Optional[Dict[str, str]] = None) -> subprocess.Popen:
        if cpu is not None and shutil.which("taskset"):
            argv = ["taskset", "-c", str(cpu), *argv]
        log = open(self.workdir / f"{name}.log", "wb")
        child = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                 start_new_session=True)
        log.close()
        self.children[name] = child
        return child

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.workdir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self, name: str) -> None:
        child = self.children[name]
        if child.poll() is not None:
            raise RuntimeError(f"{name} exited with {child.returncode}:\n{self.log_tail(name)}")

    def stop_all(self) -> None:
        for child in self.children.values():
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)  # its own session: only what we started
        deadline = time.monotonic() + 5
        for child in self.children.values():
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()


class Backends:
    """TCP listeners on the configured backends so their health checks pass."""

    def __init__(self, addresses: Sequence[Tuple[str, int]]) -> None:
        self._selector = selectors.DefaultSelector()
        self._stop = threading.Event()
        self._sockets = []
        for host, port in addresses:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(64)
            sock.setblocking(False)
            self._selector.register(sock, selectors.EVENT_READ)
            self._sockets.append(sock)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(0.2):
                try:
                    conn, _ = key.fileobj.accept()  # type: ignore[union-attr]
                    conn.close()
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for sock in self._sockets:
            sock.close()


def dns_query(name: str, qid: int = 0x4242) -> bytes:
    """A plain A query for ``name`` with an EDNS0 OPT record."""
    qname = b"".join(bytes((len(p),)) + p.encode() for p in name.split(".")) + b"\x00"
    return (struct.pack("!HHHHHH", qid, 0, 1, 0, 0, 1) + qname + b"\x00\x01\x00\x01"
            + b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00")


def answers_ok(port: int, name: str, timeout: float = 0.5) -> bool:
    """True when 127.0.0.1:``port`` answers an A query for ``name`` with NOERROR and an answer."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(dns_query(name), (LOOPBACK, port))
            reply = sock.recv(4096)
        except OSError:
            return False
    return len(reply) >= 12 and reply[3] & 0x0F == 0 and struct.unpack("!H", reply[6:8])[0] >= 1


def wait_ready(procs: Processes, name: str, port: int, qname: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        procs.check_alive(name)
        if answers_ok(port, qname):
            return
        time.sleep(0.2)
    raise RuntimeError(f"{name} did not answer {qname} on port {port}:\n{procs.log_tail(name)}")


# -- the three servers ---------------------------------------------------------

def write_opengslb(config: BenchConfig, directory: Path) -> Path:
    """A private (mode 600) copy of the bench config with its data dir in ``directory``."""
    raw = json.loads(json.dumps(config.raw))  # a deep copy
    raw.setdefault("cluster", {}).setdefault("raft", {})["data_dir"] = str(directory / "raft")
    path = directory / "opengslb.yaml"
    with open(path, "w") as out:
        YAML(typ="safe").dump(raw, out)
    path.chmod(0o600)
    return path


def opengslb_argv(path: Path) -> List[str]:
    return [sys.executable, "-m", "opengslb", "--config", str(path)]


def zone_text(apex: str, body: str) -> str:
    """A BIND zone file for ``apex`` (SOA, NS with glue) plus ``body``."""
    return (f"$ORIGIN {apex}.\n$TTL 60\n"
            f"@ 60 IN SOA ns1.{apex}. hostmaster.{apex}. 1 14400 3600 1209600 60\n"
            f"@ 60 IN NS ns1.{apex}.\nns1 60 IN A 127.0.0.53\n{body}")


def write_naive(domains: Sequence[Domain], directory: Path, port: int) -> List[str]:
    """Zone files for the naive server (each name its own zone, one A record: its first
    server); returns the command line that serves them."""
    argv = [sys.executable, str(BENCH / "naive_names_server.py"), "--port", str(port)]
    for d in domains:
        zone = directory / f"naive-{d.name}.zone"
        zone.write_text(zone_text(d.name, f"@ {d.ttl} IN A {d.servers[0][0]}\n"))
        argv += ["--zone", str(zone)]
    return argv


def write_gdnsd(domains: Sequence[Domain], directory: Path, port: int) -> List[str]:
    """A gdnsd config directory in ``directory``/gdnsd: each name its own zone, answered
    by the weighted plugin with one address per answer (``multi = false``), the
    same weights and TTLs, one UDP thread; returns the command line that runs it."""
    root = directory / "gdnsd"
    (root / "zones").mkdir(parents=True, exist_ok=True)
    resources = []
    for i, d in enumerate(domains):
        members = "\n".join(f"        s{j} = [ {addr}, {weight} ]"
                            for j, (addr, weight) in enumerate(d.servers) if weight > 0)
        resources.append(f"      r{i} => {{\n{members}\n      }}")
        (root / "zones" / d.name).write_text(zone_text(d.name, f"@ {d.ttl} DYNA weighted!r{i}\n"))
    (root / "config").write_text(
        "options => {\n"
        f"  listen => [ {LOOPBACK} ]\n  dns_port => {port}\n"
        "  udp_threads => 1\n  tcp_threads => 1\n"
        f"  run_dir => {root / 'run'}\n  state_dir => {root / 'state'}\n"
        "}\n"
        "plugins => {\n  weighted => {\n    multi = false\n    service_types = up\n"
        + "\n".join(resources) + "\n  }\n}\n")
    return [gdnsd_binary() or "gdnsd", "-c", str(root), "start"]


def emit(config: BenchConfig, directory: Path, gdnsd_port: int, naive_port: int) -> None:
    """Write every server's configuration into ``directory`` and print how to run each."""
    directory.mkdir(parents=True, exist_ok=True)
    directory = directory.resolve()
    commands = {
        "opengslb": opengslb_argv(write_opengslb(config, directory)),
        "gdnsd": write_gdnsd(config.domains, directory, gdnsd_port),
        "naive": write_naive(config.domains, directory, naive_port),
    }
    (directory / "queries.txt").write_text("".join(f"{d.name} A\n" for d in config.domains))
    print(f"wrote {directory}; run (PYTHONPATH={REPO} for opengslb):")
    for name, argv in commands.items():
        print(f"  {name:<9} {' '.join(argv)}")


# -- load generators -----------------------------------------------------------

@dataclass
class Run:
    server: str
    generator: str
    qps: float
    latency_us: float
    sent: int
    completed: int
    lost: int


def parse_dnsperf(text: str) -> Tuple[float, float, int, int, int]:
    def number(label: str) -> float:
        match = re.search(rf"{label}:\s+([0-9.]+)", text)
        if match is None:
            raise RuntimeError(f"dnsperf output has no {label!r}:\n{text}")
        return float(match.group(1))
    return (number("Queries per second"), number(r"Average Latency \(s\)") * 1e6,
            int(number("Queries sent")), int(number("Queries completed")),
            int(number("Queries lost")))


def run_dnsperf(port: int, datafile: Path, seconds: float, outstanding: int,
                cpu: Optional[int]) -> Tuple[float, float, int, int, int]:
    argv = ["dnsperf", "-s", LOOPBACK, "-p", str(port), "-d", str(datafile), "-l", str(seconds),
            "-q", str(outstanding), "-e", "-c", "1", "-T", "1", "-t", "2"]
    if cpu is not None and shutil.which("taskset"):
        argv = ["taskset", "-c", str(cpu), *argv]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
    return parse_dnsperf(out.stdout + out.stderr)


def run_udpflood(binary: Path, port: int, datafile: Path, seconds: float, outstanding: int,
                 cpu: Optional[int]) -> Tuple[float, float, int, int, int]:
    argv = [str(binary), LOOPBACK, str(port), str(datafile), str(seconds), str(outstanding), "1"]
    if cpu is not None and shutil.which("taskset"):
        argv = ["taskset", "-c", str(cpu), *argv]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
    fields = dict(re.findall(r"(\w+)=([0-9.]+)", out.stdout))
    if "qps" not in fields:
        raise RuntimeError(f"udpflood failed:\n{out.stdout}{out.stderr}")
    return (float(fields["qps"]), float(fields["avg_latency_us"]), int(fields["sent"]),
            int(fields["completed"]), int(fields["lost"]))


def run_bursts(binary: Path, port: int, datafile: Path, seconds: float, outstanding: int,
               cpu: Optional[int], sockets: int = 4, burst: int = 32) -> Tuple[float, float, int, int, int]:
    """The second load pattern: ``outstanding`` queries spread over ``sockets`` udpflood
    processes (one socket each), each sending in bursts of at most ``burst``; summed."""
    argv = [str(binary), LOOPBACK, str(port), str(datafile), str(seconds),
            str(max(1, outstanding // sockets)), "1", "1000", str(burst)]
    if cpu is not None and shutil.which("taskset"):
        argv = ["taskset", "-c", str(cpu), *argv]
    children = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(sockets)]
    results = []
    for child in children:
        out, err = child.communicate(timeout=seconds + 30)
        fields = dict(re.findall(r"(\w+)=([0-9.]+)", out))
        if "qps" not in fields:
            raise RuntimeError(f"udpflood failed:\n{out}{err}")
        results.append(fields)
    completed = sum(int(f["completed"]) for f in results)
    latency = (sum(float(f["avg_latency_us"]) * int(f["completed"]) for f in results) / completed
               if completed else 0.0)
    return (sum(float(f["qps"]) for f in results), latency, sum(int(f["sent"]) for f in results),
            completed, sum(int(f["lost"]) for f in results))


def build_udpflood(workdir: Path) -> Optional[Path]:
    if not shutil.which("gcc"):
        print("gcc not found: skipping the udpflood generator", flush=True)
        return None
    binary = workdir / "udpflood"
    subprocess.run(["gcc", "-O2", "-o", str(binary), str(BENCH / "udpflood.c")], check=True)
    return binary


def gdnsd_binary() -> Optional[str]:
    """The gdnsd executable (Debian installs it in /usr/sbin, not always on PATH)."""
    found = shutil.which("gdnsd")
    return found or ("/usr/sbin/gdnsd" if Path("/usr/sbin/gdnsd").exists() else None)


def ensure_tools(want_gdnsd: bool) -> bool:
    """Install dnsperf (and gdnsd) with apt-get when missing; False if gdnsd is unavailable."""
    missing = [pkg for pkg, present in (("dnsperf", shutil.which("dnsperf")),
                                        ("gdnsd", gdnsd_binary() or not want_gdnsd))
               if not present]
    if missing and os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"installing {' '.join(missing)} with apt-get ...", flush=True)
        quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(["apt-get", "update", "-qq"], **quiet)  # type: ignore[call-overload]
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing],  # type: ignore[call-overload]
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"), **quiet)
    if not shutil.which("dnsperf"):
        raise SystemExit("dnsperf is required: apt-get install dnsperf")
    if want_gdnsd and gdnsd_binary() is None:
        print("gdnsd unavailable: running without it", flush=True)
        return False
    return want_gdnsd


def pick_cpus() -> Tuple[Optional[int], Optional[int]]:
    """(server cpu, load cpu): two different cores when this process may use two."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) < 2 or not shutil.which("taskset"):
        print("fewer than two usable cores (or no taskset): not pinning", flush=True)
        return None, None
    return cpus[-1], cpus[0]


def scrape_query_count(url: str, names: Sequence[str]) -> Optional[int]:
    """Sum of opengslb_dns_queries_total{status="NOERROR"} over ``names``, or None."""
    try:
        text = urllib.request.urlopen(url, timeout=5).read().decode()
    except OSError:
        return None
    total = 0.0
    for line in text.splitlines():
        if line.startswith("opengslb_dns_queries_total{") and 'status="NOERROR"' in line:
            domain = re.search(r'domain="([^"]*)"', line)
            if domain and domain.group(1) in names:
                total += float(line.rsplit(" ", 1)[1])
    return int(total)


def fast_path_wired() -> bool:
    """Whether the running code routes queries through opengslb.dns.fastpath."""
    for module in ("opengslb/dns/server.py", "opengslb/service.py", "opengslb/core.py"):
        path = REPO / module
        if path.exists() and "FastPath" in path.read_text():
            return True
    return False


# -- report --------------------------------------------------------------------

@dataclass
class Summary:
    qps: float
    latency_us: float
    lost: int
    rounds: List[float] = field(default_factory=list)  # answers/s of each run
    latencies: List[float] = field(default_factory=list)  # mean latency (us) of each run


def summarise(runs: Sequence[Run]) -> Dict[Tuple[str, str], Summary]:
    grouped: Dict[Tuple[str, str], List[Run]] = {}
    for run in runs:
        grouped.setdefault((run.server, run.generator), []).append(run)
    return {key: Summary(statistics.median(r.qps for r in group),
                         statistics.median(r.latency_us for r in group),
                         sum(r.lost for r in group), [r.qps for r in group],
                         [r.latency_us for r in group])
            for key, group in grouped.items()}


def print_table(title: str, summary: Dict[Tuple[str, str], Summary], servers: Sequence[str],
                generators: Sequence[str]) -> None:
    print(f"\n{title}")
    print(f"{'generator':<10} {'server':<10} {'answers/s':>11} {'mean lat':>10} {'lost':>6}"
          f"  {'rounds (answers/s)'}")
    for generator in generators:
        for server in servers:
            s = summary.get((server, generator))
            if s is None:
                continue
            rounds = ", ".join(f"{q:,.0f}" for q in s.rounds)
            print(f"{generator:<10} {server:<10} {s.qps:>11,.0f} {s.latency_us:>8.0f}us {s.lost:>6}"
                  f"  {rounds}")
        for baseline in ("gdnsd", "naive"):
            ours, theirs = summary.get(("opengslb", generator)), summary.get((baseline, generator))
            if ours and theirs and theirs.qps > 0:
                print(f"{generator:<10} opengslb/{baseline}: {ours.qps / theirs.qps:.2f}x answers/s, "
                      f"{ours.latency_us / theirs.latency_us:.2f}x latency")


def print_latency_table(title: str, summary: Dict[Tuple[str, str], Summary], servers: Sequence[str],
                        generators: Sequence[str]) -> None:
    """Median latency per server and generator, each round's, and OpenGSLB's ratio to each
    baseline (ratio of the medians; below 1 is faster)."""
    print(f"\n{title}")
    print(f"{'generator':<10} {'server':<10} {'latency':>9} {'lost':>6}  rounds (latency)")
    for generator in generators:
        for server in servers:
            s = summary.get((server, generator))
            if s is not None:
                rounds = ", ".join(f"{latency:.0f}" for latency in s.latencies)
                print(f"{generator:<10} {server:<10} {s.latency_us:>7.1f}us {s.lost:>6}  {rounds}")
        for baseline in ("gdnsd", "naive"):
            ours, theirs = summary.get(("opengslb", generator)), summary.get((baseline, generator))
            if ours and theirs and theirs.latency_us > 0:
                print(f"{generator:<10} opengslb/{baseline}: {ours.latency_us / theirs.latency_us:.2f}x latency")


# -- the geolocation-with-ECS workload ----------------------------------------------

def geo_benchmark(args: argparse.Namespace, procs: Processes, workdir: Path, udpflood: Path,
                  server_cpu: Optional[int], load_cpu: Optional[int], with_gdnsd: bool) -> List[Run]:
    """OpenGSLB's geolocation beside gdnsd's geoip plugin with the same ``nets`` map
    (bench/geo_workload.py: 1,000 networks), asked by udpflood with 10,000 distinct ECS
    client subnets; returns the runs (server names ``opengslb``/``gdnsd``)."""
    rules = geo_workload.topology(args.geo_networks)
    subnets = geo_workload.client_subnets(rules, args.geo_clients)
    datafile = workdir / "geo-queries.txt"
    datafile.write_text("".join(f"{geo_workload.NAME} A {subnet}/24\n" for subnet in subnets))
    config = workdir / "opengslb-geo.yaml"
    config.write_text(geo_workload.opengslb_config(rules, f"{LOOPBACK}:{args.geo_port}",
                                                   str(workdir / "raft-geo")))
    config.chmod(0o600)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p))
    procs.start("opengslb-geo", opengslb_argv(config), server_cpu, env)
    ports = {"opengslb": args.geo_port}
    if with_gdnsd:
        argv = geo_workload.write_gdnsd(rules, workdir / "gdnsd-geo", args.geo_gdnsd_port,
                                        gdnsd_binary() or "gdnsd")
        procs.start("gdnsd-geo", argv, server_cpu)
        ports["gdnsd"] = args.geo_gdnsd_port
    for name, port in ports.items():
        wait_ready(procs, f"{name}-geo", port, geo_workload.NAME)
    print(f"\ngeolocation with ECS: {len(rules)} networks, {len(subnets)} client subnets", flush=True)
    runs: List[Run] = []
    servers = list(ports)
    for round_no in range(args.rounds):
        order = servers[round_no % len(servers):] + servers[:round_no % len(servers)]
        for server in order:
            procs.check_alive(f"{server}-geo")
            result = run_udpflood(udpflood, ports[server], datafile, args.duration, args.outstanding, load_cpu)
            runs.append(Run(server, "udpflood", *result))
            print(f"  round {round_no + 1} geo+ecs  {server:<9} {result[0]:>10,.0f}/s "
                  f"lat {result[1]:>6.0f}us lost {result[4]}", flush=True)
    return runs


# -- main ------------------------------------------------------------------------

def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="OpenGSLB DNS benchmark (see bench/README.md)")
    parser.add_argument("--config", type=Path, default=BENCH / "bench.yaml")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per throughput run")
    parser.add_argument("--latency-duration", type=float, default=2.0, help="seconds per q=1 run")
    parser.add_argument("--latency-rounds", type=int, default=5, help="interleaved q=1 rounds")
    parser.add_argument("--outstanding", type=int, default=100, help="queries in flight (dnsperf -q)")
    parser.add_argument("--generators", default="dnsperf,udpflood",
                        help="comma list of dnsperf, udpflood and bursts (200 outstanding over 4 sockets "
                             "in bursts of 32: the second load pattern of issue 12)")
    parser.add_argument("--no-gdnsd", action="store_true")
    parser.add_argument("--no-naive", action="store_true")
    parser.add_argument("--gdnsd-port", type=int, default=15354)
    parser.add_argument("--naive-port", type=int, default=15355)
    parser.add_argument("--workloads", default="plain,geo",
                        help="comma list: plain (bench.yaml's names) and geo (geolocation with ECS, "
                             "beside gdnsd's geoip plugin; needs udpflood)")
    parser.add_argument("--geo-networks", type=int, default=1000, help="topology networks (geo)")
    parser.add_argument("--geo-clients", type=int, default=10_000, help="distinct ECS client subnets (geo)")
    parser.add_argument("--geo-port", type=int, default=15356)
    parser.add_argument("--geo-gdnsd-port", type=int, default=15357)
    parser.add_argument("--quick", action="store_true", help="1 round of 3 s: a smoke test")
    parser.add_argument("--json", type=Path, help="also write every run to this file")
    parser.add_argument("--emit", type=Path, metavar="DIR",
                        help="only write the three servers' configurations into DIR and exit")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration, args.latency_duration, args.latency_rounds = 1, 3.0, 2.0, 1

    config = read_config(args.config)
    if args.emit:
        emit(config, args.emit, args.gdnsd_port, args.naive_port)
        return 0
    with_gdnsd = ensure_tools(not args.no_gdnsd)
    server_cpu, load_cpu = pick_cpus()
    generators = [g for g in args.generators.split(",") if g]
    workloads = [w for w in args.workloads.split(",") if w]
    workdir = Path(tempfile.mkdtemp(prefix="opengslb-bench-"))
    procs = Processes(workdir)
    backends: Optional[Backends] = None
    runs: List[Run] = []
    latency: List[Run] = []
    try:
        wants_udpflood = "udpflood" in generators or "bursts" in generators or "geo" in workloads
        udpflood = build_udpflood(workdir) if wants_udpflood else None
        if udpflood is None:
            generators = [g for g in generators if g not in ("udpflood", "bursts")]
            workloads = [w for w in workloads if w != "geo"]
        if workloads == ["geo"]:
            assert udpflood is not None
            geo_runs = geo_benchmark(args, procs, workdir, udpflood, server_cpu, load_cpu, with_gdnsd)
            print_table(f"Geolocation with ECS, {args.outstanding} queries outstanding (median of "
                        f"{args.rounds} rounds)", summarise(geo_runs), ["opengslb", "gdnsd"], ["udpflood"])
            return 0
        datafile = workdir / "queries.txt"
        datafile.write_text("".join(f"{d.name} A\n" for d in config.domains))

        backends = Backends(config.backends)
        ports = {"opengslb": config.port}
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p))
        procs.start("opengslb", opengslb_argv(write_opengslb(config, workdir)), server_cpu, env)
        if with_gdnsd:
            procs.start("gdnsd", write_gdnsd(config.domains, workdir, args.gdnsd_port), server_cpu)
            ports["gdnsd"] = args.gdnsd_port
        if not args.no_naive:
            procs.start("naive", write_naive(config.domains, workdir, args.naive_port), server_cpu)
            ports["naive"] = args.naive_port
        for name, port in ports.items():
            for domain in config.domains:
                wait_ready(procs, name, port, domain.name)
        names = [d.name for d in config.domains]
        counted_before = scrape_query_count(config.metrics_url, names) if config.metrics_url else None

        servers = list(ports)
        print(f"fast path wired into the server: {'yes' if fast_path_wired() else 'no'}; "
              f"server cpu {server_cpu}, load cpu {load_cpu}; {len(config.domains)} names; "
              f"{args.rounds} rounds x {args.duration:g}s per server and generator", flush=True)
        for round_no in range(args.rounds):
            order = servers[round_no % len(servers):] + servers[:round_no % len(servers)]
            for server in order:
                for generator in generators:
                    procs.check_alive(server)
                    if generator == "dnsperf":
                        result = run_dnsperf(ports[server], datafile, args.duration,
                                             args.outstanding, load_cpu)
                    elif generator == "bursts":
                        assert udpflood is not None
                        result = run_bursts(udpflood, ports[server], datafile, args.duration, 200, load_cpu)
                    else:
                        assert udpflood is not None
                        result = run_udpflood(udpflood, ports[server], datafile, args.duration,
                                              args.outstanding, load_cpu)
                    runs.append(Run(server, generator, *result))
                    print(f"  round {round_no + 1} {generator:<8} {server:<9} {result[0]:>10,.0f}/s "
                          f"lat {result[1]:>6.0f}us lost {result[4]}", flush=True)
        for round_no in range(args.latency_rounds):
            order = servers[round_no % len(servers):] + servers[:round_no % len(servers)]
            for server in order:
                for generator in generators:
                    if generator == "bursts":
                        continue  # a throughput pattern only
                    if generator == "dnsperf":
                        result = run_dnsperf(ports[server], datafile, args.latency_duration, 1, load_cpu)
                    else:
                        assert udpflood is not None
                        result = run_udpflood(udpflood, ports[server], datafile, args.latency_duration,
                                              1, load_cpu)
                    latency.append(Run(server, generator, *result))
                    print(f"  q=1 {round_no + 1} {generator:<8} {server:<9} lat {result[1]:.1f}us",
                          flush=True)

        geo_runs: List[Run] = []
        if "geo" in workloads and udpflood is not None:
            geo_runs = geo_benchmark(args, procs, workdir, udpflood, server_cpu, load_cpu, with_gdnsd)
        summary = summarise(runs)
        print_table(f"Throughput, {args.outstanding} queries outstanding, A queries with EDNS "
                    f"(median of {args.rounds} rounds)", summary, servers, generators)
        print_latency_table(f"Latency, 1 query outstanding (median of {args.latency_rounds} rounds)",
                            summarise(latency), servers, generators)
        if geo_runs:
            print_table(f"Geolocation with ECS, {args.outstanding} queries outstanding (median of "
                        f"{args.rounds} rounds)", summarise(geo_runs), ["opengslb", "gdnsd"], ["udpflood"])

        if config.metrics_url:
            answered = sum(r.completed for r in runs + latency if r.server == "opengslb")
            lost = sum(r.lost for r in runs + latency if r.server == "opengslb")
            counted = scrape_query_count(config.metrics_url, names)
            if counted is None or counted_before is None:
                print(f"\nmetrics: {config.metrics_url} did not answer")
            else:
                counted -= counted_before
                verdict = "exact" if counted == answered else (
                    "consistent (lost queries may or may not have been answered)"
                    if answered <= counted <= answered + lost else "MISMATCH")
                print(f"\nmetrics: opengslb_dns_queries_total counted {counted:,} benchmark queries; "
                      f"clients received {answered:,} answers and lost {lost}: {verdict}")
        if args.json:
            args.json.write_text(json.dumps({"runs": [r.__dict__ for r in runs],
                                             "geo": [r.__dict__ for r in geo_runs],
                                             "latency": [r.__dict__ for r in latency],
                                             "fast_path_wired": fast_path_wired()}, indent=1))
        return 0
    finally:
        procs.stop_all()
        if backends is not None:
            backends.close()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
