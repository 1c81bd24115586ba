"""The command line as an operator uses it: validate, start-up failures, demo."""

import os
import socket
import subprocess
import sys
import urllib.request

import dns.rcode
import pytest

from tests.e2e.harness import OpenGSLB, child_env, free_port, twistd_command, wait_until

pytestmark = pytest.mark.e2e

GOOD = """\
dns:
  listen_address: "127.0.0.1:{port}"
regions:
  - name: r1
    servers: [{{address: 127.0.0.1, port: 9}}]
    health_check: {{type: tcp, interval: 5s, timeout: 1s}}
domains:
  - {{name: ok.example.test, regions: [r1]}}
cluster:
  raft: {{data_dir: "{data}"}}
"""

BAD = """\
dns:
  listen_address: "127.0.0.1:5300"
regions:
  - name: r1
    servers: [{address: 127.0.0.1, port: 9}]
    health_check:
      type: http
      interval: 5s
      timeout: 5s
domains:
  - {name: bad.example.test, regions: [r2]}
"""


def opengslb(*args, timeout=20):
    return subprocess.run([sys.executable, "-m", "opengslb", *args], capture_output=True, text=True,
                          env=child_env(), timeout=timeout)


def write(path, text, mode=0o600):
    path.write_text(text)
    os.chmod(path, mode)
    return str(path)


def test_validate_ok(tmp_path):
    """--validate prints OK and exits 0 for a valid file."""
    result = opengslb("--validate", "--config", write(tmp_path / "c.yaml", GOOD.format(port=5300, data=tmp_path / "data")))
    assert result.returncode == 0 and result.stdout.strip() == "OK"


def test_validate_reports_every_error_with_file_and_line(tmp_path):
    """--validate prints every problem as file:line: key.path: message and exits 1."""
    path = write(tmp_path / "bad.yaml", BAD)
    result = opengslb("--validate", "--config", path)
    assert result.returncode == 1
    assert f"{path}:9: regions[0].health_check.timeout: must be less than interval (5s >= 5s)" in result.stdout
    assert f"{path}:11: domains[0].regions" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_start_with_bad_config_prints_one_line_per_problem(tmp_path):
    """Starting on a broken file: one clear line per problem on stderr, non-zero exit, no traceback."""
    path = write(tmp_path / "bad.yaml", BAD)
    for command in ([sys.executable, "-m", "opengslb", "--config", path],
                    twistd_command() + ["-n", "--pidfile=", "opengslb", "--config", path]):
        result = subprocess.run(command, capture_output=True, text=True, env=child_env(), timeout=20,
                                cwd=tmp_path)
        assert result.returncode != 0
        assert "Traceback" not in result.stderr + result.stdout
        problems = [line for line in result.stderr.splitlines() if line.startswith("opengslb: ")]
        assert len(problems) == 2, result.stderr


def test_missing_config_file(tmp_path):
    """A missing file is one clear error naming it."""
    result = opengslb("--config", str(tmp_path / "nope.yaml"))
    assert result.returncode != 0 and "nope.yaml" in result.stderr and "Traceback" not in result.stderr


def test_world_readable_secrets_refused(tmp_path):
    """A world-readable file with api.tokens is refused and says chmod 600."""
    text = GOOD.format(port=5300, data=tmp_path / "data") + "api:\n  tokens: [s3cret-token-value]\n"
    path = write(tmp_path / "secret.yaml", text, mode=0o644)
    result = opengslb("--config", path)
    assert result.returncode != 0 and "chmod 600" in result.stderr


def test_port_in_use_is_a_clear_error(tmp_path):
    """A DNS port already taken: one clear line, non-zero exit."""
    port = free_port()
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blocker.bind(("127.0.0.1", port))
    try:
        result = opengslb("--config", write(tmp_path / "c.yaml", GOOD.format(port=port, data=tmp_path / "data")))
    finally:
        blocker.close()
    assert result.returncode != 0
    assert f"cannot listen for DNS on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_unwritable_data_dir_is_a_clear_error(tmp_path):
    """A data directory that cannot be created: one clear line naming it, non-zero exit."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    text = GOOD.format(port=free_port(), data=blocker / "data")
    result = opengslb("--config", write(tmp_path / "c.yaml", text))
    assert result.returncode != 0
    assert f"cannot create data directory {blocker / 'data'}" in result.stderr
    assert "Traceback" not in result.stderr


def test_cluster_mode_flag_is_refused_clearly(tmp_path):
    """--mode cluster beats the file and says clearly that cluster mode is not available yet."""
    result = opengslb("--mode", "cluster", "--config", write(tmp_path / "c.yaml", GOOD.format(port=5300, data=tmp_path / "data")))
    assert result.returncode != 0 and "cluster" in result.stderr and "Traceback" not in result.stderr


def test_version():
    """--version prints the version."""
    result = opengslb("--version")
    assert result.returncode == 0 and result.stdout.startswith("opengslb ")


def test_demo_answers_queries(tmp_path):
    """`opengslb demo` serves the demo zone from local demo backends."""
    process = subprocess.Popen([sys.executable, "-m", "opengslb", "demo"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, env=child_env(), cwd=tmp_path)
    try:
        node = OpenGSLB.__new__(OpenGSLB)
        node.dns_host, node.dns_port = "127.0.0.1", 1053
        answers = wait_until(lambda: _demo_answers(node), 15, message="demo answers")
        assert answers <= {"127.0.0.11", "127.0.0.12", "127.0.0.13"}
        with urllib.request.urlopen("http://127.0.0.1:8080/", timeout=5) as page:
            assert page.status == 200 and b"OpenGSLB status" in page.read()
    finally:
        process.terminate()
        process.wait(timeout=10)


def _demo_answers(node):
    try:
        reply = node.query("app.demo.test", timeout=0.5)
    except Exception:
        return None
    if reply.rcode() != dns.rcode.NOERROR:
        return None
    return {node.address("app.demo.test") for _ in range(6)}


HUGE = "9" * 400


def test_validate_huge_numbers_prints_lines_not_a_traceback(tmp_path):
    """A 400-digit TTL and a 400-digit interval (and a number too long for Python to read at all)
    are file:line problems: exit 1, no traceback (issue 11)."""
    path = write(tmp_path / "huge.yaml", f"""\
regions:
  - name: r1
    servers: [{{address: 127.0.0.1, port: 9}}]
    health_check:
      interval: {HUGE}
      timeout: {HUGE}s
domains:
  - {{name: a.example.test, regions: [r1], ttl: {HUGE}}}
""")
    result = opengslb("--validate", "--config", path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        f"{path}:5: regions[0].health_check.interval: must be at most 24h (got a 400-digit number of seconds)",
        f"{path}:6: regions[0].health_check.timeout: invalid duration"
        " '9999999999999999999999999999999999999'...: longer than 64 characters",
        f"{path}:8: domains[0].ttl: must be between 0 and 2147483647 (got a 400-digit number)",
    ]

    write(tmp_path / "huge.yaml", f"dns:\n  default_ttl: {'9' * 5000}\n")
    result = opengslb("--validate", "--config", path)
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stdout.strip() == f"{path}:2: invalid YAML: a number longer than 4300 digits cannot be read"
