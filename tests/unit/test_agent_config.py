"""The agent's configuration file (SPEC §8): validated like the main one, secrets protected."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from opengslb.config import ConfigError
from opengslb.config.agent import AgentThresholds, load_agent_config, parse_agent_config

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "etc" / "opengslb" / "agent" / "agent.yaml"

MINIMAL = """\
api:
  endpoints: ["http://127.0.0.1:8080"]
  token: t0ken
services:
  - {region: r1, address: 10.0.2.50, port: 8080}
"""


def problems(text: str) -> list:
    with pytest.raises(ConfigError) as caught:
        parse_agent_config(text, "agent.yaml")
    return [str(p) for p in caught.value.problems]


def test_example_is_valid_and_loads_from_a_private_copy(tmp_path):
    """The example agent file validates, and loads once chmod 600."""
    config = parse_agent_config(EXAMPLE.read_text(), "agent.yaml")
    assert len(config.api.endpoints) == 3 and config.services[0].check is not None
    copy = tmp_path / "agent.yaml"
    shutil.copyfile(EXAMPLE, copy)
    os.chmod(copy, 0o600)
    loaded, warnings = load_agent_config(copy)
    assert loaded == parse_agent_config(EXAMPLE.read_text(), str(copy)) and warnings == []


def test_defaults():
    """Only api and services are required; the rest has the documented defaults."""
    config = parse_agent_config(MINIMAL)
    assert config.heartbeat_interval == 5.0 and config.name == ""
    service = config.services[0]
    assert (service.weight, service.ttl, service.check) == (100, 30.0, None)
    assert config.predictive_health == AgentThresholds(90.0, 85.0, 10.0, 60.0)
    assert config.api.endpoints == ("http://127.0.0.1:8080",)


def test_empty_check_gets_the_agent_check_defaults():
    """`check: {}` is an http check of /health every 5s with a 2s timeout."""
    config = parse_agent_config(MINIMAL.replace("port: 8080}", "port: 8080, check: {}}"))
    check = config.services[0].check
    assert check is not None
    assert (check.type, check.path, check.interval, check.timeout) == ("http", "/health", 5.0, 2.0)


def test_every_problem_is_reported_with_file_line_and_key_path():
    """Problems name file:line: key.path: message, every one of them, in file order."""
    text = """\
api:
  endpoints: ["ftp://x", "http://h:1/", "http://h:1"]
  token: ""
heartbeat_interval: 10s
services:
  - region: us-east-1
    address: 10.0.2.999
    port: 0
    ttl: 15s
    weight: 2000
    check: {type: htp, interval: 1s, timeout: 2s}
  - {region: "a b", address: 10.0.2.1}
predictive_health:
  cpu: {threshold: 0, bleed_duration: 30s}
  error_rate: {window: soon}
logging: {level: loud}
colour: blue
"""
    assert problems(text) == [
        "agent.yaml:2: api.endpoints[0]: 'ftp://x' must start with http:// or https://",
        "agent.yaml:2: api.endpoints[2]: http://h:1 is listed twice (also api.endpoints[1])",
        "agent.yaml:3: api.token: must not be empty",
        "agent.yaml:7: services[0].address: '10.0.2.999' is not an IP address",
        "agent.yaml:8: services[0].port: must be between 1 and 65535 (got 0)",
        "agent.yaml:9: services[0].ttl: must be at least twice heartbeat_interval (15s < 2 x 10s), "
        "or one late heartbeat expires the service",
        "agent.yaml:10: services[0].weight: must be between 0 and 1000 (got 2000)",
        "agent.yaml:11: services[0].check.timeout: must be less than interval (2s >= 1s)",
        "agent.yaml:11: services[0].check.type: unknown check type 'htp' (did you mean 'http'?) "
        "(expected one of: http, https, tcp)",
        "agent.yaml:12: services[1].region: 'a b' must not contain '/' or spaces "
        "(region names appear in API paths)",
        "agent.yaml:12: services[1].port: missing (required)",
        "agent.yaml:14: predictive_health.cpu.bleed_duration: unknown key 'bleed_duration' "
        "(expected one of: threshold)",
        "agent.yaml:14: predictive_health.cpu.threshold: must be a percentage above 0 and at most "
        "100 (got 0)",
        "agent.yaml:15: predictive_health.error_rate.window: invalid duration 'soon': use numbers "
        "with units ns, us, ms, s, m, h (e.g. '500ms', '30s', '5m', '1h', '1m30s')",
        "agent.yaml:16: logging.level: unknown log level 'loud' (expected one of: debug, info, "
        "warn, error)",
        "agent.yaml:17: colour: unknown key 'colour' (expected one of: api, name, heartbeat_interval, "
        "services, predictive_health, logging)",
    ]


@pytest.mark.parametrize("text, expected", [
    ("services: [{region: r, address: 10.0.0.1, port: 1}]\n",
     "agent.yaml:1: api: missing (required): the cluster's API endpoints and token"),
    ("api: {endpoints: [], token: t}\nservices: [{region: r, address: 10.0.0.1, port: 1}]\n",
     "agent.yaml:1: api.endpoints: must list at least one cluster API URL"),
    ("api: {endpoints: ['http://h:1']}\nservices: [{region: r, address: 10.0.0.1, port: 1}]\n",
     "agent.yaml:1: api.token: missing (required)"),
    ("api: {endpoints: ['http://h:1'], token: t}\n",
     "agent.yaml:1: services: missing (required): the services this agent registers"),
    ("api: {endpoints: ['http://h:1'], token: t}\nservices: []\n",
     "agent.yaml:2: services: must list at least one service"),
    ("api: {endpoints: ['http://h:1/api'], token: t}\nservices: [{region: r, address: 10.0.0.1, port: 1}]\n",
     "agent.yaml:1: api.endpoints[0]: 'http://h:1/api' must be just scheme://host:port "
     "(the API paths are added)"),
    ("api: {endpoints: ['http://h:1'], token: t}\nservices:\n"
     "  - {region: r, address: 10.0.0.1, port: 1}\n  - {region: r, address: 10.0.0.1, port: 1}\n",
     "agent.yaml:4: services[1]: 10.0.0.1:1 in r is listed twice (also services[0])"),
    ("api: [\n", None),
])
def test_required_parts_and_structure(text, expected):
    """Missing sections, empty lists, duplicate services and YAML errors are each reported."""
    found = problems(text)
    if expected is None:
        assert found and found[0].startswith("agent.yaml:") and "invalid YAML" in found[0]
    else:
        assert expected in found, found


def test_world_readable_file_is_refused(tmp_path):
    """The file holds the token: readable by every user, it is refused and says chmod 600."""
    path = tmp_path / "agent.yaml"
    path.write_text(MINIMAL)
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError) as caught:
        load_agent_config(path)
    assert str(caught.value.problems[0]) == (
        f"{path}: holds a secret (api.token) but is readable by every user (mode 0644); "
        f"run: chmod 600 {path}")
    os.chmod(path, 0o600)
    assert load_agent_config(path)[0].api.token == "t0ken"


def test_missing_file_is_one_clear_problem(tmp_path):
    """A file that cannot be read is one problem naming it."""
    with pytest.raises(ConfigError) as caught:
        load_agent_config(tmp_path / "nope.yaml")
    assert str(caught.value) == (f"{tmp_path / 'nope.yaml'}: cannot read the agent configuration "
                                 "file: No such file or directory")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "opengslb", "agent", *args], capture_output=True,
                          text=True, env=env, timeout=60)


def test_cli_validate_prints_ok_or_every_problem(tmp_path):
    """`opengslb agent --validate` prints OK (exit 0) or every problem (exit 1), starting nothing."""
    good = tmp_path / "good.yaml"
    good.write_text(MINIMAL)
    os.chmod(good, 0o600)
    result = run_cli("--validate", "--config", str(good))
    assert (result.returncode, result.stdout) == (0, "OK\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text(MINIMAL.replace("port: 8080", "port: 99999"))
    os.chmod(bad, 0o600)
    result = run_cli("--validate", "--config", str(bad))
    assert result.returncode == 1
    assert result.stdout == f"{bad}:5: services[0].port: must be between 1 and 65535 (got 99999)\n"
    os.chmod(bad, 0o644)
    result = run_cli("--config", str(bad))
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines()[0].startswith(f"opengslb agent: {bad}: holds a secret")


@pytest.mark.parametrize("extra, service, expected", [
    ("heartbeat_interval: 50ms\n", "", "agent.yaml:6: heartbeat_interval: must be at least 100ms (got 50ms)"),
    ("heartbeat_interval: 2h\n", ", ttl: 5h", "agent.yaml:6: heartbeat_interval: must be at most 1h (got 2h)"),
    ("", ", ttl: 169h", "agent.yaml:5: services[0].ttl: must be at most 168h (got 169h)"),
    ("", ", ttl: " + "9" * 400,
     "agent.yaml:5: services[0].ttl: must be at most 168h (got a 400-digit number of seconds)"),
    ("", ", weight: " + "9" * 400,
     "agent.yaml:5: services[0].weight: must be between 0 and 1000 (got a 400-digit number)"),
    ("predictive_health: {error_rate: {window: 25h}}\n", "",
     "agent.yaml:6: predictive_health.error_rate.window: must be at most 24h (got 25h)"),
])
def test_durations_and_numbers_are_bounded(extra, service, expected):
    """The agent's durations have floors and ceilings (a ttl at most the API's 7 days), and huge
    numbers are short problems with their line, never a traceback."""
    text = MINIMAL.replace("port: 8080}", f"port: 8080{service}}}") + extra
    assert problems(text) == [expected]
