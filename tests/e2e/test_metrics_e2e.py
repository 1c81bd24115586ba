"""The real `twistd -n opengslb` serving /metrics and /health (SPEC §9)."""

import json
import signal
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

import opengslb
from tests.e2e.harness import HTTPBackend, free_port, wait_until

pytestmark = pytest.mark.e2e

DOMAIN = "m.example.test"


def config(metrics_port, servers, domains=None):
    lines = "\n".join(f"      - {{address: {b.host}, port: {b.port}}}" for b in servers)
    domains = domains or [DOMAIN]
    domain_lines = "\n".join(f"  - {{name: {d}, routing_algorithm: round-robin, regions: [r1]}}"
                             for d in domains)
    return f"""
dns:
  listen_address: "{{DNS}}"
metrics: {{enabled: true, address: "127.0.0.1:{metrics_port}"}}
logging: {{level: info, format: json}}
regions:
  - name: r1
    servers:
{lines}
    health_check: {{type: http, interval: 1s, timeout: 500ms, path: /health,
                   failure_threshold: 2, success_threshold: 1}}
domains:
{domain_lines}
"""


def get(port, path):
    """(status, content type, body) of GET http://127.0.0.1:port/path."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


def scrape(port):
    """{(sample name, frozenset(labels)): value} of every sample on /metrics."""
    status, _, body = get(port, "/metrics")
    assert status == 200
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(body.decode("utf-8"))
            for s in family.samples}


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def node(gslb_factory, backends):
    """A node with two healthy backends in r1 and metrics on a free loopback port."""
    servers = [backends(HTTPBackend(f"127.0.0.{101 + i}")) for i in range(2)]
    port = free_port()
    started = gslb_factory(config(port, servers))
    started.metrics_port = port
    started.servers = servers
    wait_until(lambda: get(port, "/health")[0] == 200, 5, message="metrics endpoint up")
    return started


def test_queries_are_counted_on_their_labels(node):
    """10 A queries → +10 on {domain, A, NOERROR}; 3 unknown in-zone names → +3 under _other NXDOMAIN."""
    before = scrape(node.metrics_port)
    for _ in range(10):
        assert node.address(DOMAIN) is not None
    for i in range(3):
        assert node.query(f"nope{i}.{DOMAIN}").rcode() == 3  # NXDOMAIN
    after = scrape(node.metrics_port)
    name = "opengslb_dns_queries_total"
    ok = dict(domain=DOMAIN, type="A", status="NOERROR")
    nx = dict(domain="_other", type="A", status="NXDOMAIN")
    assert value(after, name, **ok) - value(before, name, **ok) == 10
    assert value(after, name, **nx) - value(before, name, **nx) == 3
    assert not [key for key in after if key[0] == name and ("domain", f"nope0.{DOMAIN}") in key[1]]
    routed = sum(v for (n, labels), v in after.items()
                 if n == "opengslb_routing_decisions_total" and ("domain", DOMAIN) in labels)
    routed_before = sum(v for (n, labels), v in before.items()
                        if n == "opengslb_routing_decisions_total" and ("domain", DOMAIN) in labels)
    assert routed - routed_before == 10
    count = "opengslb_dns_query_duration_seconds_count"
    assert value(after, count) - value(before, count) >= 13


def test_static_families(node):
    """app_info carries the version; configured counts, reload counters and timestamp are present."""
    samples = scrape(node.metrics_port)
    assert value(samples, "opengslb_app_info", version=opengslb.__version__) == 1
    assert value(samples, "opengslb_configured_domains") == 1
    assert value(samples, "opengslb_configured_servers") == 2
    assert ("opengslb_config_reloads_total", frozenset({("result", "success")})) in samples
    assert ("opengslb_config_reloads_total", frozenset({("result", "failure")})) in samples
    assert value(samples, "opengslb_config_reload_timestamp_seconds") > 1_600_000_000


def test_stopped_backend_lowers_healthy_servers(node):
    """Stopping a backend drops opengslb_healthy_servers{region} and counts failed checks."""
    port = node.metrics_port
    wait_until(lambda: value(scrape(port), "opengslb_healthy_servers", region="r1") == 2, 5)
    down = node.servers[0]
    down.stop()
    wait_until(lambda: value(scrape(port), "opengslb_healthy_servers", region="r1") == 1, 6,
               message="healthy_servers{r1} == 1")
    samples = scrape(port)
    assert value(samples, "opengslb_health_check_results_total", region="r1",
                 server=f"{down.host}:{down.port}", result="failure") >= 2
    assert value(samples, "opengslb_health_check_results_total", region="r1",
                 server=f"{node.servers[1].host}:{node.servers[1].port}", result="success") >= 1
    assert value(samples, "opengslb_health_check_duration_seconds_count") >= 3


def test_health_endpoint(node):
    """GET /health is 200 {"status": "ok"}; unknown paths are 404."""
    status, content_type, body = get(node.metrics_port, "/health")
    assert (status, content_type, json.loads(body)) == (200, "application/json", {"status": "ok"})
    assert get(node.metrics_port, "/nothing-here")[0] == 404
    status, content_type, _ = get(node.metrics_port, "/metrics")
    assert status == 200 and content_type.startswith("text/plain")


def test_reloads_are_counted(node):
    """A good SIGHUP reload counts a success and changes configured counts; a bad one a failure."""
    port = node.metrics_port
    first = scrape(port)
    node.write_config(config(port, node.servers, [DOMAIN, "m2.example.test"]))
    node.signal(signal.SIGHUP)
    wait_until(lambda: value(scrape(port), "opengslb_configured_domains") == 2, 10,
               message="reloaded configuration")
    samples = scrape(port)
    assert value(samples, "opengslb_config_reloads_total", result="success") == 1
    assert (value(samples, "opengslb_config_reload_timestamp_seconds")
            >= value(first, "opengslb_config_reload_timestamp_seconds"))
    node.config_path.write_text("dns: [this is not a mapping\n")
    node.signal(signal.SIGHUP)
    wait_until(lambda: value(scrape(port), "opengslb_config_reloads_total", result="failure") == 1,
               10, message="failed reload counted")
    assert value(scrape(port), "opengslb_configured_domains") == 2
