"""`opengslb ctl` against the real process: tables, --json, drains that change answers, exit codes."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from typing import Dict, List, Optional, Tuple

import pytest

from opengslb.ctl import EXIT_OK, EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_USAGE, main
from tests.e2e.harness import REPO, HTTPBackend, child_env, free_port, wait_until

pytestmark = pytest.mark.e2e

ADMIN, DRAIN = "ctl-admin-token-0123", "ctl-drain-token-0123"


def config(api_port: int, primary: HTTPBackend, secondary: HTTPBackend) -> str:
    return f"""
dns: {{listen_address: "{{DNS}}"}}
logging: {{level: info, format: json}}
api:
  enabled: true
  address: "127.0.0.1:{api_port}"
  tokens: ["{ADMIN}", {{token: "{DRAIN}", scope: drain}}]
regions:
  - name: r1
    servers: [{{address: {primary.host}, port: {primary.port}}}, {{address: {secondary.host}, port: {secondary.port}}}]
    health_check: {{type: http, interval: 500ms, timeout: 400ms, path: /health,
                   failure_threshold: 1, success_threshold: 1}}
domains:
  - {{name: app.ctl.test, routing_algorithm: failover, regions: [r1]}}
"""


def ctl(api_port: int, *args: str, token: Optional[str] = None) -> Tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    environ: Dict[str, str] = {"OPENGSLB_API": f"http://127.0.0.1:{api_port}"}
    if token:
        environ["OPENGSLB_TOKEN"] = token
    code = main(list(args), out, err, environ)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def world(gslb_factory, backends):
    primary, secondary = backends(HTTPBackend("127.0.0.41")), backends(HTTPBackend("127.0.0.42"))
    api_port = free_port()
    node = gslb_factory(config(api_port, primary, secondary))
    wait_until(lambda: ctl(api_port, "status")[0] == EXIT_OK, 10)
    return node, api_port, primary, secondary


def test_read_commands_print_tables_and_json(world):
    """status, servers, domains, overrides and members print tables; --json the API's JSON."""
    node, api_port, primary, secondary = world
    code, out, _ = ctl(api_port, "servers")
    lines = out.splitlines()
    assert code == EXIT_OK and lines[0].split() == ["REGION", "SERVER", "HEALTH", "WEIGHT", "SOURCE",
                                                    "JUDGED", "BY", "LAST", "ERROR"]
    assert f"{primary.host}:{primary.port}" in lines[1] and " up " in lines[1]
    code, out, _ = ctl(api_port, "domains")
    assert code == EXIT_OK and "app.ctl.test" in out and "failover" in out and "2/2" in out
    code, out, _ = ctl(api_port, "status")
    assert code == EXIT_OK and "standalone" in out and "leader     yes" in out
    code, out, _ = ctl(api_port, "--json", "members")
    assert code == EXIT_OK and len(json.loads(out)["members"]) == 1
    code, out, _ = ctl(api_port, "overrides")
    assert (code, out.strip()) == (EXIT_OK, "REGION  ADDRESS  WEIGHT  ENABLED  REASON  EXPIRES")


def test_drain_and_undrain_change_the_answer(world):
    """drain with a drain token takes the primary out of answers; undrain puts it back."""
    node, api_port, primary, secondary = world
    assert node.address("app.ctl.test") == primary.host
    code, out, err = ctl(api_port, "drain", f"r1/{primary.host}", "--reason", "maintenance",
                         "--ttl", "1h", token=DRAIN)
    assert code == EXIT_OK, err
    reply = json.loads(out)
    assert (reply["enabled"], reply["reason"]) == (False, "maintenance") and reply["expires_at"]
    assert node.address("app.ctl.test") == secondary.host
    code, out, _ = ctl(api_port, "overrides")
    assert "maintenance" in out and primary.host in out
    assert ctl(api_port, "undrain", f"r1/{primary.host}", token=DRAIN)[0] == EXIT_OK
    assert node.address("app.ctl.test") == primary.host


def test_refusals_exit_non_zero_with_the_api_message(world):
    """No token: 401 message, exit 1, nothing changed; drain scope cannot reload (403)."""
    node, api_port, primary, _ = world
    code, out, err = ctl(api_port, "drain", f"r1/{primary.host}")
    assert (code, out) == (EXIT_REFUSED, "")
    assert "401 missing bearer token" in err
    assert node.address("app.ctl.test") == primary.host
    code, _, err = ctl(api_port, "reload", token=DRAIN)
    assert code == EXIT_REFUSED and "403" in err and "needs scope 'admin'" in err
    code, out, _ = ctl(api_port, "reload", token=ADMIN)
    assert code == EXIT_OK and json.loads(out)["reloaded"] is True
    code, _, err = ctl(api_port, "drain", "no-slash", token=ADMIN)
    assert code == EXIT_USAGE and "REGION/ADDRESS" in err
    code, _, err = ctl(api_port, "undrain", "r1/192.0.2.99", token=ADMIN)
    assert code == EXIT_REFUSED and "404" in err


def test_unreachable_api_and_bad_usage_have_their_own_exit_codes():
    """Nothing listening: exit 3 naming the address; unknown command: exit 2."""
    port = free_port()
    code, _, err = ctl(port, "status")
    assert code == EXIT_UNREACHABLE and f"127.0.0.1:{port}" in err and "OPENGSLB_API" in err
    assert ctl(port, "frobnicate")[0] == EXIT_USAGE


def test_token_file_and_the_installed_command(world, tmp_path):
    """`opengslb ctl --token-file F drain ...` as a subprocess: the console entry point works."""
    node, api_port, primary, secondary = world
    token_file = tmp_path / "token"
    token_file.write_text(DRAIN + "\n")
    command: List[str] = [sys.executable, "-m", "opengslb.cli", "ctl", "--api",
                          f"http://127.0.0.1:{api_port}", "--token-file", str(token_file),
                          "drain", f"r1/{primary.host}"]
    result = subprocess.run(command, capture_output=True, text=True, env=child_env(), cwd=str(REPO),
                            timeout=30)
    assert result.returncode == 0, result.stderr
    assert node.address("app.ctl.test") == secondary.host
    result = subprocess.run(command[:-2] + ["--token-file", str(tmp_path / "missing"), "status"],
                            capture_output=True, text=True, env=child_env(), cwd=str(REPO), timeout=30)
    assert result.returncode == EXIT_USAGE and "cannot read the token file" in result.stderr
