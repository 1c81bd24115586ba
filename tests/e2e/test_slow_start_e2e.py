"""Slow start in the real `twistd -n opengslb` process (SPEC §4.1): the API's effective_weight ramps.

A server that recovers is given 10% of its weight at once, more as the
region's ``slow_start`` window passes, and its configured weight at the end.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List

import pytest

from tests.e2e.harness import LOAD_SLACK, HTTPBackend, free_port, wait_until
from tests.e2e.test_runtime_e2e import API, start

pytestmark = pytest.mark.e2e

WINDOW = 6.0  # seconds: regions[].slow_start


def config_text(api_port: int, a: HTTPBackend, b: HTTPBackend) -> str:
    return f"""
dns:
  listen_address: "{{DNS}}"
  default_ttl: 5
logging: {{level: info, format: json}}
api:
  enabled: true
  address: "127.0.0.1:{api_port}"
regions:
  - name: r1
    slow_start: {WINDOW:g}s
    servers:
      - {{address: {a.host}, port: {a.port}, weight: 200}}
      - {{address: {b.host}, port: {b.port}, weight: 100}}
    health_check: {{type: http, interval: 300ms, timeout: 250ms, path: /health,
                    failure_threshold: 1, success_threshold: 1}}
domains:
  - {{name: app.example.test, routing_algorithm: weighted, regions: [r1]}}
"""


def server(api: API, host: str) -> Dict[str, Any]:
    status, body = api.call("GET", "/api/v1/health/servers", token=None)
    assert status == 200, body
    return next(s for s in body["servers"] if s["address"] == host)


def test_a_recovered_server_ramps_its_effective_weight_to_the_configured_weight(gslb_factory, backends):
    """After recovery effective_weight starts near 10%, climbs without falling, and reaches 200."""
    a = backends(HTTPBackend("127.0.77.1"))
    b = backends(HTTPBackend("127.0.77.2"))
    port = free_port()
    node, api = start(gslb_factory, config_text(port, a, b), port)
    wait_until(lambda: server(api, a.host)["effective_weight"] == 200.0, 5, message="a at full weight")

    a.status = 503
    wait_until(lambda: not server(api, a.host)["healthy"], 3 + LOAD_SLACK, interval=0.05, message="a down")
    a.status = 200
    wait_until(lambda: server(api, a.host)["healthy"], 3 + LOAD_SLACK, interval=0.05, message="a back up")
    recovered = time.monotonic()

    seen: List[float] = []
    while time.monotonic() - recovered < WINDOW + 3 * LOAD_SLACK:
        record = server(api, a.host)
        assert record["healthy"] and record["weight"] == 200
        seen.append(record["effective_weight"])
        if seen[-1] == 200.0:
            break
        time.sleep(0.2)
    assert seen[-1] == 200.0, f"never reached the configured weight: {seen}"
    assert seen[0] < 200.0 * 0.5, f"no ramp seen right after recovery: {seen}"
    assert min(seen) >= 200.0 * 0.1 - 1e-9
    assert all(later >= earlier for earlier, later in zip(seen, seen[1:])), seen
    assert len({round(w, 3) for w in seen}) >= 3, f"the weight did not move in steps: {seen}"
    assert server(api, b.host)["effective_weight"] == 100.0
