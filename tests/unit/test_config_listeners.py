"""Config keys of issue 11: listener bounds, metrics access control, token scopes."""

from __future__ import annotations

import ipaddress

from opengslb.api import api_limits
from opengslb.config.model import APIConfig, MetricsConfig
from opengslb.httpserve import ListenerLimits
from opengslb.metrics import metrics_limits
from tests.unit.test_config import REGION, parse, problems


def test_listener_bounds_have_defaults_that_fit_a_1024_descriptor_limit():
    """Unset, the API and metrics caps (plus DNS over TCP's 256) leave room for checks at 1,024 fds."""
    config = parse(REGION)
    assert api_limits(config.api) == ListenerLimits(128, 32, 10.0, 65536, 500)
    assert metrics_limits(config.metrics) == ListenerLimits(64, 16, 10.0, 1024, 50)
    assert config.api.max_connections + config.metrics.max_connections + 256 < 1024 // 2
    assert config.metrics.allowed_networks == (ipaddress.ip_network("127.0.0.1/32"),
                                               ipaddress.ip_network("::1/128"))


def test_listener_bounds_are_read_from_the_file():
    """Every bound is configurable per listener."""
    config = parse(REGION + """
api:
  max_connections: 10
  max_connections_per_source: 2
  max_connection_rate: 7
  request_timeout: 1500ms
  max_body_bytes: 2048
metrics:
  allowed_networks: ["10.0.0.0/8"]
  max_connections: 5
  max_connections_per_source: 1
  max_connection_rate: 3
  request_timeout: 2s
""")
    assert api_limits(config.api) == ListenerLimits(10, 2, 1.5, 2048, 7)
    assert metrics_limits(config.metrics) == ListenerLimits(5, 1, 2.0, 1024, 3)
    assert config.metrics.allowed_networks == (ipaddress.ip_network("10.0.0.0/8"),)


def test_listener_bounds_out_of_range_name_file_line_and_key():
    """Zero caps, huge timeouts, too large bodies and bad networks are errors with file:line."""
    found = problems(REGION + """
api:
  max_connections: 0
  request_timeout: 1h
  max_body_bytes: 99999999
metrics:
  allowed_networks: ["not-a-net"]
  max_connection_rate: 0
""")
    assert found[0].startswith("config.yaml:7: api.max_connections:"), found
    assert found[1].startswith("config.yaml:8: api.request_timeout: must be at most 300s"), found
    assert found[2].startswith("config.yaml:9: api.max_body_bytes:"), found
    assert found[3].startswith("config.yaml:11: metrics.allowed_networks[0]:"), found
    assert found[4].startswith("config.yaml:12: metrics.max_connection_rate:"), found
    assert len(found) == 5


def test_tokens_have_scopes_plain_strings_are_admin():
    """A string is an admin token; {token, scope: drain} a drain token; scope defaults to admin."""
    config = parse(REGION + """
api:
  tokens:
    - plain-admin
    - {token: drainer, scope: drain}
    - {token: explicit-admin, scope: admin}
    - {token: default-admin}
""")
    assert config.api.tokens == ("plain-admin", "explicit-admin", "default-admin")
    assert config.api.drain_tokens == ("drainer",)


def test_bad_scoped_tokens_are_errors_without_revealing_them():
    """Unknown scope, missing token, unknown key, non-string token: named by path and line."""
    found = problems(REGION + """
api:
  tokens:
    - {token: a, scope: root}
    - {scope: drain}
    - {token: b, scop: drain}
    - {token: 12345}
""")
    assert found[0].startswith("config.yaml:8: api.tokens[0].scope: unknown token scope 'root'"), found
    assert found[1].startswith("config.yaml:9: api.tokens[1].token: missing"), found
    assert found[2].startswith("config.yaml:10: api.tokens[2].scop: unknown key 'scop'"), found
    assert found[3] == "config.yaml:11: api.tokens[3].token: a token must be a string, not an integer"
    assert not any("12345" in problem for problem in found)


def test_model_defaults_match_the_loader():
    """The dataclass defaults are the documented defaults."""
    assert APIConfig().max_body_bytes == 65536 and APIConfig().drain_tokens == ()
    assert MetricsConfig().max_connection_rate == 50
