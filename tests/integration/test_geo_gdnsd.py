"""Differential test: OpenGSLB's geolocation and gdnsd's geoip plugin, same ``nets`` map, same answers.

For a 1,000-network topology (bench/geo_workload.py) and 10,000 random
client subnets sent with EDNS Client Subnet, the real ``twistd opengslb``
and the real gdnsd answer the same datacenter, and every scope OpenGSLB
returns is correct: every address of the client's /scope gets the same
answer under the plain longest-prefix model (checked exactly: the network
covering the whole block and every network inside it give that answer),
and the server gives it for a random /24 of the block too.  Skipped, saying
why, where gdnsd is not installed.

About a minute of 30,000 sequential queries: part of the heavy run
(``python -m pytest -q tests/integration``, which ``.ci/run`` runs, with
gdnsd installed), not of the everyday suite.
"""

from __future__ import annotations

import bisect
import ipaddress
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional, Tuple

import pytest

from tests.bench_module import load_bench
from tests.e2e.harness import free_port, stop_process

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


geo = load_bench("geo_workload", "geo_workload")


def gdnsd_binary() -> Optional[str]:
    found = shutil.which("gdnsd")
    return found or ("/usr/sbin/gdnsd" if Path("/usr/sbin/gdnsd").exists() else None)


class Asker:
    """One UDP socket asking one server, with a retry on loss."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(1.0)
        self.qid = 0

    def ask(self, subnet: str, prefix: int = 24) -> Tuple[Optional[str], Optional[int]]:
        for _ in range(3):
            self.qid = (self.qid + 1) & 0xFFFF
            self.sock.sendto(geo.ecs_query(subnet, prefix, self.qid), ("127.0.0.1", self.port))
            try:
                while True:
                    reply = self.sock.recv(4096)
                    if reply[:2] == self.qid.to_bytes(2, "big"):
                        return geo.answer_and_scope(reply)
            except socket.timeout:
                continue
        raise AssertionError(f"no answer from port {self.port} for {subnet}/{prefix}")

    def close(self) -> None:
        self.sock.close()


def wait_for(asker: Asker, process: subprocess.Popen, log: Path, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    asker.sock.settimeout(0.3)
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited {process.returncode}:\n{log.read_text(errors='replace')}")
        try:
            if asker.ask("1.2.3.0")[0] is not None:
                asker.sock.settimeout(1.0)
                return
        except AssertionError:
            pass
    raise AssertionError(f"server did not answer:\n{log.read_text(errors='replace')}")


class ScopeChecker:
    """Whether every address of a block gets one answer under the longest-prefix model."""

    def __init__(self, rules) -> None:
        self.index = {network: dcs for network, dcs in rules}
        self.networks = [(int(network.network_address), network.prefixlen, dcs) for network, dcs in rules]
        self.starts = [start for start, _, _ in self.networks]

    def covering(self, base: int, scope: int) -> str:
        """The answer of the longest network holding the whole block base/scope."""
        for prefix in range(scope, -1, -1):
            network = ipaddress.IPv4Network((base >> (32 - prefix) << (32 - prefix) if prefix else 0, prefix))
            if network in self.index:
                return geo.ADDRESSES[self.index[network][0]]
        return geo.ADDRESSES[geo.DATACENTERS[0]]

    def uniform(self, base: int, scope: int, answer: str) -> bool:
        """Every address of base/scope is answered ``answer``: the covering network's answer and
        that of every network inside the block.  (No two topology networks are siblings, so no
        block is wholly covered by networks inside it: the covering answer is always given.)"""
        if self.covering(base, scope) != answer:
            return False
        end = base + (1 << (32 - scope))
        for _start, prefix, dcs in self.networks[bisect.bisect_left(self.starts, base):
                                                bisect.bisect_left(self.starts, end)]:
            if prefix > scope and geo.ADDRESSES[dcs[0]] != answer:
                return False
        return True


@pytest.mark.skipif(gdnsd_binary() is None, reason="gdnsd is not installed (apt-get install gdnsd)")
def test_same_regions_as_gdnsd_and_correct_scopes(tmp_path):
    """10,000 client subnets: the same answer as gdnsd's geoip plugin, and every scope is correct."""
    rules = geo.topology(1000)
    subnets = geo.client_subnets(rules, 10_000)
    processes = []
    askers = []
    try:
        gdnsd_port, opengslb_port = free_port(), free_port()
        gdnsd_log = tmp_path / "gdnsd.log"
        gdnsd = subprocess.Popen(geo.write_gdnsd(rules, tmp_path / "gdnsd", gdnsd_port, gdnsd_binary()),
                                 stdout=gdnsd_log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
        processes.append(gdnsd)
        config = tmp_path / "opengslb.yaml"
        config.write_text(geo.opengslb_config(rules, f"127.0.0.1:{opengslb_port}", str(tmp_path / "data")))
        config.chmod(0o600)
        ours_log = tmp_path / "opengslb.log"
        ours = subprocess.Popen([sys.executable, "-m", "opengslb", "--config", str(config)],
                                stdout=ours_log.open("wb"), stderr=subprocess.STDOUT, cwd=str(tmp_path),
                                env={**os.environ, "PYTHONPATH": str(REPO)})
        processes.append(ours)
        theirs_ask, ours_ask = Asker(gdnsd_port), Asker(opengslb_port)
        askers += [theirs_ask, ours_ask]
        wait_for(theirs_ask, gdnsd, gdnsd_log)
        wait_for(ours_ask, ours, ours_log)

        rng = random.Random(99)
        checker = ScopeChecker(rules)
        differ, wrong_scope = [], []
        for subnet in subnets:
            mine, scope = ours_ask.ask(subnet)
            theirs, _ = theirs_ask.ask(subnet)
            expected = geo.ADDRESSES[geo.longest_match(rules, subnet)[0]]
            if mine != theirs or mine != expected:
                differ.append((subnet, mine, theirs, expected))
                continue
            assert scope is not None and 0 <= scope <= 24, (subnet, scope)
            value = int(ipaddress.IPv4Address(subnet))
            base = value >> (32 - scope) << (32 - scope) if scope else 0
            if not checker.uniform(base, scope, mine):
                wrong_scope.append((subnet, scope, "model"))
            inside = base + (rng.randrange(1 << (32 - scope)) >> 8 << 8)
            if ours_ask.ask(str(ipaddress.IPv4Address(inside)))[0] != mine:
                wrong_scope.append((subnet, scope, "server"))
        assert differ == [], f"{len(differ)} of {len(subnets)} differ, e.g. {differ[:5]}"
        assert wrong_scope == [], f"{len(wrong_scope)} scopes too wide, e.g. {wrong_scope[:5]}"
    finally:
        for asker in askers:
            asker.close()
        for process in processes:
            stop_process(process)
