"""Schemathesis over the real API: a server to fuzz and a runner of the ``schemathesis`` CLI.

Shared by ``tests/integration/test_api_fuzz.py`` (a short run in the heavy
integration run) and ``bench/api_fuzz.py`` (a long one).  The server is the real
``twistd -n opengslb`` process with the API on loopback, one admin token and
one drain token, and a region of two local TCP backends, so schemathesis
can learn a real region and server from the replies and reach the success
paths (overrides set and deleted, services registered, renewed and
deregistered).

Schemathesis runs as its command-line program in a child process, reading
the document the server serves (``/api/v1/openapi.json``): exactly what an
outside user would run.  Its JSON report gives the numbers.
"""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from tests.e2e.harness import OpenGSLB, TCPBackend, free_port

ADMIN_TOKEN = "fuzz-admin-token-0123456789"
DRAIN_TOKEN = "fuzz-drain-token-0123456789"
REGION = "fuzz-region"

#: The checks a plain ``schemathesis run`` runs (4.x: every built-in check but
#: max_response_time, which needs a limit), by name.
DEFAULT_CHECKS = (
    "not_a_server_error", "status_code_conformance", "content_type_conformance",
    "response_headers_conformance", "response_schema_conformance", "negative_data_rejection",
    "positive_data_acceptance", "missing_required_header", "unsupported_method",
    "allow_header_conformance", "use_after_free", "ensure_resource_availability", "ignored_auth",
    "object_level_authorization",
)


def fuzz_config(api_port: int, backends: Sequence[TCPBackend]) -> str:
    """The configuration of the fuzzed server (``{DNS}`` is filled in by :class:`OpenGSLB`).

    Health checks are TCP and unhurried (every 5 s, so the first round, and
    readiness, come within 5 s): a registration schemathesis makes for a
    made-up address is checked every 5 s, not every second.  The
    runtime state lives in the server's own directory (``{DATA}``), never in
    the default /var/lib/opengslb.
    """
    servers = "\n".join(f"      - {{address: {b.host}, port: {b.port}}}" for b in backends)
    return f"""
dns:
  listen_address: "{{DNS}}"
logging: {{level: info, format: json}}
api:
  enabled: true
  address: "127.0.0.1:{api_port}"
  tokens: ["{ADMIN_TOKEN}", {{token: "{DRAIN_TOKEN}", scope: drain}}]
cluster:
  node_name: fuzz-node
  raft: {{data_dir: "{{DATA}}"}}
regions:
  - name: {REGION}
    servers:
{servers}
    health_check: {{type: tcp, interval: 5s, timeout: 500ms}}
domains:
  - {{name: app.fuzz.test, routing_algorithm: weighted, regions: [{REGION}], ttl: 15}}
"""


@dataclass
class FuzzServer:
    """A running server to fuzz; :meth:`stop` stops it and its backends."""

    node: OpenGSLB
    port: int
    backends: List[TCPBackend]

    @property
    def schema_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1/openapi.json"

    def log(self) -> str:
        return self.node.log()

    def stop(self) -> None:
        self.node.stop()
        for backend in self.backends:
            backend.stop()


def start_fuzz_server(directory: Path) -> FuzzServer:
    """Start the real server in ``directory`` and wait until it is ready.

    Ready matters: until the first round of health checks is done
    ``/api/v1/ready`` answers 503 (by design, for load balancers), which
    schemathesis's not_a_server_error check would count as a failure.
    """
    directory.mkdir(parents=True, exist_ok=True)
    backends = [TCPBackend("127.0.0.81"), TCPBackend("127.0.0.82")]
    port = free_port()
    node: Optional[OpenGSLB] = None
    try:
        node = OpenGSLB(directory, fuzz_config(port, backends))
        node.start()
        deadline = time.monotonic() + 15
        while True:
            try:
                if api_call(port, "GET", "/api/v1/ready", token=None)[0] == 200:
                    break
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server on {port} did not become ready:\n{node.log()}")
            time.sleep(0.1)
    except BaseException:
        if node is not None:
            node.stop()
        for backend in backends:
            backend.stop()
        raise
    return FuzzServer(node, port, backends)


def api_call(port: int, method: str, path: str, body: Any = None,
             token: Optional[str] = ADMIN_TOKEN) -> Tuple[int, Any]:
    """One request to the API on ``port``: (status, decoded JSON body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


def seed_state(server: FuzzServer) -> None:
    """Give the server some runtime state, so replies carry every shape the document describes
    (an override with an expiry, a registration with a claim and an active bleed signal)."""
    backend = server.backends[0]
    status, _ = api_call(server.port, "PUT", f"/api/v1/overrides/{REGION}/{backend.host}",
                         {"weight": 50, "reason": "seeded by the fuzz set-up", "ttl": "1h"})
    assert status == 200, status
    status, reply = api_call(server.port, "POST", "/api/v1/services",
                             {"region": REGION, "address": "127.0.0.83", "port": 8080, "ttl": "1h",
                              "healthy": True, "agent": "fuzz-agent"}, token=DRAIN_TOKEN)
    assert status == 201, (status, reply)
    status, _ = api_call(server.port, "PUT", f"/api/v1/services/{reply['id']}/heartbeat",
                         {"healthy": True, "signal": {"type": "bleed", "reason": "cpu_high",
                                                      "value": 97.5, "threshold": 90}},
                         token=DRAIN_TOKEN)
    assert status == 200, status


def schemathesis_command() -> List[str]:
    """The ``schemathesis`` program of this interpreter's environment."""
    candidate = Path(sys.executable).with_name("schemathesis")
    if candidate.exists():
        return [str(candidate)]
    found = shutil.which("schemathesis")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from schemathesis.cli import schemathesis; "
                                  "sys.exit(schemathesis())"]


@dataclass
class FuzzResult:
    """What one schemathesis run found (from its JSON report and exit code)."""

    exit_code: int
    output: str
    report: Dict[str, Any] = field(default_factory=dict)

    @property
    def cases(self) -> int:
        """Test cases generated and sent."""
        return int(self.report.get("test_cases", {}).get("generated", 0))

    @property
    def failures(self) -> int:
        """Unique failures over every check."""
        return int(self.report.get("test_cases", {}).get("unique_failures", 0))

    @property
    def errors(self) -> int:
        """Errors of the run itself (a schema it cannot read, a connection refused, ...)."""
        return len(self.report.get("errors", []))

    @property
    def complete(self) -> bool:
        return bool(self.report.get("complete"))

    def summary(self) -> str:
        """The failures and errors, for an assertion message."""
        tail = "\n".join(self.output.splitlines()[-80:])
        return (f"exit {self.exit_code}, {self.cases} cases, {self.failures} failures, "
                f"{self.errors} errors\n{tail}")


def run_schemathesis(url: str, workdir: Path, *, token: Optional[str] = None, max_examples: int = 25,
                     seed: Optional[int] = None, workers: int = 1,
                     exclude_checks: Sequence[str] = (), checks: Sequence[str] = (),
                     extra: Sequence[str] = (), timeout: float = 600.0) -> FuzzResult:
    """Run ``schemathesis run`` against the document at ``url``; the result from its JSON report.

    :param token: sent as ``Authorization: Bearer <token>`` on every request
        (writes are then exercised); ``None``: no credentials at all.
    :param max_examples: at most this many cases per operation and phase.
    :param seed: the random seed; ``None`` runs in deterministic mode (the
        same cases every run).
    :param exclude_checks: checks to leave out (default: none; every default
        check runs).
    :param checks: checks to run instead of the defaults (e.g. ``["all"]``).
    :param workdir: where the report goes (and schemathesis's current directory).
    """
    report_path = workdir / "schemathesis-report.json"
    command = schemathesis_command() + [
        "run", url, "--max-examples", str(max_examples), "--workers", str(workers),
        "--no-color", "--request-timeout", "10",
        "--report", "json", "--report-json-path", str(report_path),
    ]
    if seed is None:
        command += ["--generation-deterministic"]  # implies no example database
    else:
        command += ["--seed", str(seed), "--generation-database", "none"]
    if token is not None:
        command += ["--header", f"Authorization: Bearer {token}"]
    if checks:
        command += ["--checks", ",".join(checks)]
    if exclude_checks:
        command += ["--exclude-checks", ",".join(exclude_checks)]
    command += list(extra)
    workdir.mkdir(parents=True, exist_ok=True)
    process = subprocess.run(command, cwd=str(workdir), capture_output=True, text=True,
                             timeout=timeout)
    report: Dict[str, Any] = {}
    if report_path.exists():
        report = json.loads(report_path.read_text())
    return FuzzResult(process.returncode, process.stdout + process.stderr, report)


def server_problems(log_text: str) -> List[str]:
    """Lines of a server log that show a crash: tracebacks and unhandled errors."""
    return [line for line in log_text.splitlines()
            if "Traceback" in line or "Unhandled" in line or '"level": "critical"' in line]
