"""The metrics collector and endpoint (SPEC §9), scraped and parsed like Prometheus does.

A real :class:`Gslb` runs on a ``task.Clock`` with a fake checker; queries go
through the real responder and protocols; the exposition is parsed with
prometheus_client's own parser.
"""

import dataclasses
import json
import struct
from types import SimpleNamespace

import dns.message
import pytest
import treq
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from treq.testing import StubTreq
from twisted.internet import defer, task
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.python.failure import Failure
from twisted.web.server import Site

from opengslb.config.model import HealthCheckConfig, ListenAddress
from opengslb.core import Gslb
from opengslb.dns.server import DNSDatagramProtocol, DNSResponder, DNSStreamProtocol
from opengslb.httpserve import BoundedSite, ListenerLimits
from opengslb.httpserve import listen_http as listen_metrics
from opengslb.metrics import Metrics
from opengslb.stats import CHECK_DURATION_BOUNDS, QueryStats
from tests.unit.dnsfixtures import sample_config
from tests.unit.fakes import FakeChecker, memory_runtime

START = 1_700_000_000.0
CHECK_TIME = 0.03  # every fake check takes this long on the clock
FAST_CHECKS = HealthCheckConfig(type="tcp", interval=1.0, timeout=0.5,
                                failure_threshold=1, success_threshold=1)

SPEC_FAMILIES = {
    "opengslb_dns_queries": "counter",
    "opengslb_dns_query_duration_seconds": "histogram",
    "opengslb_health_check_results": "counter",
    "opengslb_health_check_duration_seconds": "histogram",
    "opengslb_healthy_servers": "gauge",
    "opengslb_region_servers": "gauge",
    "opengslb_routing_decisions": "counter",
    "opengslb_config_reloads": "counter",
    "opengslb_config_reload_timestamp_seconds": "gauge",
    "opengslb_app_info": "gauge",
    "opengslb_configured_domains": "gauge",
    "opengslb_configured_servers": "gauge",
    "opengslb_dns_stale_answers": "counter",
    "opengslb_all_down_answers": "counter",  # SPEC §4.1
    "opengslb_dns_ecs_queries": "counter",  # SPEC §4.1
    "opengslb_overrides_active": "gauge",  # runtime state, standalone too
    "opengslb_vetoes_active": "gauge",
    "opengslb_bleeding_servers": "gauge",
}




def fast_config(**dns_changes):
    """The DNS fixtures' config with 1-second checks that flip on one result."""
    config = sample_config(**dns_changes)
    regions = tuple(dataclasses.replace(r, health_check=FAST_CHECKS) for r in config.regions)
    return dataclasses.replace(config, regions=regions)


def build(config=None):
    """(metrics, gslb, checker, clock, reloader, responder) over a fresh core."""
    clock = task.Clock()
    clock.advance(START)
    checker = FakeChecker(clock, duration=CHECK_TIME)
    config = config or fast_config()
    gslb = Gslb(clock, config, checker, memory_runtime(clock, config))
    reloader = SimpleNamespace(successes=0, failures=0, last_success=None)
    metrics = Metrics(gslb, reloader, "1.2.3", clock)
    responder = DNSResponder(lambda: gslb.view, gslb.stats, on_stale=gslb.on_stale)
    return SimpleNamespace(metrics=metrics, gslb=gslb, checker=checker, clock=clock,
                           reloader=reloader, responder=responder)


def scrape(metrics):
    """{family name: family} parsed from the text exposition."""
    text = metrics.exposition().decode("utf-8")
    return {family.name: family for family in text_string_to_metric_families(text)}


def samples(families, family, sample_name=None):
    """{frozenset(labels.items()): value} of one family's samples named ``sample_name``."""
    name = sample_name or family
    return {frozenset(s.labels.items()): s.value for s in families[family].samples if s.name == name}


def labels(**values):
    return frozenset(values.items())


def ask(responder, name, rdtype="A"):
    wire = responder.respond(dns.message.make_query(name, rdtype).to_wire(), 512)
    return dns.message.from_wire(wire)


def run_checks(env):
    """Let every server finish exactly one check (starts are spread over the 1 s interval)."""
    env.clock.pump([0.01] * 95)


def test_exactly_the_spec_families_with_their_types():
    """Every opengslb_* family of SPEC §9 (standalone) is exposed with its type, and no other."""
    env = build()
    families = scrape(env.metrics)
    ours = {name: f.type for name, f in families.items() if name.startswith("opengslb_")}
    assert ours == SPEC_FAMILIES


def test_counter_sample_names_carry_the_total_suffix_once():
    """Counter samples are exposed as ..._total, exactly as SPEC §9 spells them."""
    env = build()
    ask(env.responder, "app.gslb.example.com")
    env.gslb.stats.count_stale("app.gslb.example.com")
    env.gslb.start()
    run_checks(env)
    families = scrape(env.metrics)
    for name in ("opengslb_dns_queries", "opengslb_health_check_results",
                 "opengslb_routing_decisions", "opengslb_config_reloads",
                 "opengslb_dns_stale_answers"):
        assert {s.name for s in families[name].samples} == {name + "_total"}


def test_ten_queries_count_ten_on_their_labels():
    """10 A queries for a domain → +10 on {domain, type="A", status="NOERROR"}."""
    env = build()
    for _ in range(10):
        assert ask(env.responder, "app.gslb.example.com").rcode() == 0
    ask(env.responder, "app.gslb.example.com", "AAAA")
    queries = samples(scrape(env.metrics), "opengslb_dns_queries", "opengslb_dns_queries_total")
    assert queries == {
        labels(domain="app.gslb.example.com", type="A", status="NOERROR"): 10.0,
        labels(domain="app.gslb.example.com", type="AAAA", status="NOERROR"): 1.0,
    }


def test_unknown_names_are_counted_under_other():
    """Queries for names that are not configured domains share domain="_other", whatever the name."""
    env = build()
    for i in range(50):
        ask(env.responder, f"unknown{i}.gslb.example.com")
    ask(env.responder, "not-ours.example.net")
    ask(env.responder, "app.gslb.example.com", "MX")
    queries = samples(scrape(env.metrics), "opengslb_dns_queries", "opengslb_dns_queries_total")
    assert queries == {
        labels(domain="_other", type="A", status="NXDOMAIN"): 50.0,
        labels(domain="_other", type="A", status="REFUSED"): 1.0,
        labels(domain="app.gslb.example.com", type="other", status="NOERROR"): 1.0,
    }


def test_routing_decisions_name_the_algorithm_and_server():
    """Each routed answer counts once on {domain, algorithm, server="address:port"}."""
    env = build()
    for _ in range(6):
        ask(env.responder, "app.gslb.example.com")
    ask(env.responder, "fo.gslb.example.com")
    routing = samples(scrape(env.metrics), "opengslb_routing_decisions",
                      "opengslb_routing_decisions_total")
    assert routing == {
        labels(domain="app.gslb.example.com", algorithm="round-robin", server="192.0.2.10:80"): 2.0,
        labels(domain="app.gslb.example.com", algorithm="round-robin", server="192.0.2.11:80"): 2.0,
        labels(domain="app.gslb.example.com", algorithm="round-robin", server="198.51.100.10:80"): 2.0,
        labels(domain="fo.gslb.example.com", algorithm="failover", server="192.0.2.10:80"): 1.0,
    }


def test_stale_answers_are_counted_per_domain():
    """With return_last_healthy, answers given while every server is down count as stale."""
    env = build(fast_config(return_last_healthy=True))
    env.gslb.start()
    env.checker.down = {"198.51.100.10": "connection refused"}
    run_checks(env)
    for _ in range(4):
        assert ask(env.responder, "deep.a.b.gslb.example.com").answer
    stale = samples(scrape(env.metrics), "opengslb_dns_stale_answers",
                    "opengslb_dns_stale_answers_total")
    assert stale == {labels(domain="deep.a.b.gslb.example.com"): 4.0}


def test_udp_and_tcp_queries_are_timed():
    """Every answered query over UDP or TCP lands in the duration histogram; dropped ones do not."""
    env = build()
    udp = DNSDatagramProtocol(env.responder)
    sent = []
    udp.transport = SimpleNamespace(write=lambda data, addr: sent.append(data))
    wire = dns.message.make_query("app.gslb.example.com", "A").to_wire()
    for _ in range(3):
        udp.datagramReceived(wire, ("192.0.2.1", 5353))
    udp.datagramReceived(b"\x00" * 5, ("192.0.2.1", 5353))  # too short: dropped, not timed

    tcp = DNSStreamProtocol(env.responder)
    tcp.callLater = env.clock.callLater
    tcp.makeConnection(StringTransport())
    tcp.dataReceived(struct.pack("!H", len(wire)) + wire)
    tcp.connectionLost(None)
    assert len(sent) == 3

    families = scrape(env.metrics)
    name = "opengslb_dns_query_duration_seconds"
    assert samples(families, name, name + "_count") == {labels(): 4.0}
    assert samples(families, name, name + "_sum")[labels()] > 0
    buckets = samples(families, name, name + "_bucket")
    assert buckets[labels(le="+Inf")] == 4.0
    assert samples(families, "opengslb_dns_queries", "opengslb_dns_queries_total") == {
        labels(domain="app.gslb.example.com", type="A", status="NOERROR"): 4.0}


def test_query_duration_buckets_are_cumulative_and_inclusive():
    """A duration lands in every bucket whose bound is >= it (le is inclusive)."""
    env = build()
    stats = env.gslb.stats
    for seconds in (0.0003, 0.0005, 0.004, 2.0):
        stats.observe_duration(seconds)
    name = "opengslb_dns_query_duration_seconds"
    families = scrape(env.metrics)
    buckets = {float(dict(k)["le"]): v for k, v in samples(families, name, name + "_bucket").items()}
    assert sorted(buckets) == [*QueryStats.DURATION_BOUNDS, float("inf")]
    assert buckets[0.00025] == 0 and buckets[0.0005] == 2 and buckets[0.0025] == 2
    assert buckets[0.005] == 3 and buckets[1.0] == 3 and buckets[float("inf")] == 4
    assert samples(families, name, name + "_sum")[labels()] == pytest.approx(2.0048)


def test_health_check_results_and_durations():
    """Finished checks count per {region, server, result}; their durations fill the histogram."""
    env = build()
    env.checker.down = {"192.0.2.11": "connection refused"}
    env.gslb.start()
    run_checks(env)
    families = scrape(env.metrics)
    results = samples(families, "opengslb_health_check_results",
                      "opengslb_health_check_results_total")
    assert results == {
        labels(region="east", server="192.0.2.10:80", result="success"): 1.0,
        labels(region="east", server="192.0.2.11:80", result="failure"): 1.0,
        labels(region="east", server="2001:db8::10:80", result="success"): 1.0,
        labels(region="west", server="198.51.100.10:80", result="success"): 1.0,
        labels(region="v6only", server="2001:db8::20:80", result="success"): 1.0,
    }
    name = "opengslb_health_check_duration_seconds"
    assert samples(families, name, name + "_count") == {labels(): 5.0}
    assert samples(families, name, name + "_sum")[labels()] == pytest.approx(5 * CHECK_TIME, rel=1e-3)
    buckets = {float(dict(k)["le"]): v for k, v in samples(families, name, name + "_bucket").items()}
    assert sorted(buckets) == [*CHECK_DURATION_BOUNDS, float("inf")]
    assert buckets[0.025] == 0 and buckets[0.05] == 5


def test_healthy_servers_per_region_drop_to_zero_but_stay():
    """opengslb_healthy_servers has every configured region, 0 when none is healthy."""
    env = build()
    before = samples(scrape(env.metrics), "opengslb_healthy_servers")
    assert before == {labels(region="east"): 3.0, labels(region="west"): 1.0,
                      labels(region="v6only"): 1.0}  # not checked yet: served as healthy
    env.gslb.start()
    env.checker.down = {"192.0.2.10": "connection refused", "198.51.100.10": "connection refused"}
    run_checks(env)
    after = samples(scrape(env.metrics), "opengslb_healthy_servers")
    assert after == {labels(region="east"): 2.0, labels(region="west"): 0.0,
                     labels(region="v6only"): 1.0}
    assert samples(scrape(env.metrics), "opengslb_region_servers") == {
        labels(region="east"): 3.0, labels(region="west"): 1.0, labels(region="v6only"): 1.0}


def test_config_swap_is_seen_at_the_next_scrape():
    """A reloaded configuration changes configured counts and the region list."""
    env = build()
    families = scrape(env.metrics)
    assert samples(families, "opengslb_configured_domains") == {labels(): 5.0}
    assert samples(families, "opengslb_configured_servers") == {labels(): 5.0}
    config = env.gslb.config
    smaller = dataclasses.replace(config, regions=config.regions[1:2],
                                  domains=(dataclasses.replace(config.domains[4]),))
    env.gslb.apply_config(smaller)
    families = scrape(env.metrics)
    assert samples(families, "opengslb_configured_domains") == {labels(): 1.0}
    assert samples(families, "opengslb_configured_servers") == {labels(): 1.0}
    assert samples(families, "opengslb_healthy_servers") == {labels(region="west"): 1.0}


def test_reload_counters_and_timestamp():
    """Both reload results are always present; the timestamp is the start time until a reload succeeds."""
    env = build()
    families = scrape(env.metrics)
    assert samples(families, "opengslb_config_reloads", "opengslb_config_reloads_total") == {
        labels(result="success"): 0.0, labels(result="failure"): 0.0}
    assert samples(families, "opengslb_config_reload_timestamp_seconds") == {labels(): START}
    env.reloader.successes, env.reloader.failures = 2, 1
    env.reloader.last_success = START + 600
    families = scrape(env.metrics)
    assert samples(families, "opengslb_config_reloads", "opengslb_config_reloads_total") == {
        labels(result="success"): 2.0, labels(result="failure"): 1.0}
    assert samples(families, "opengslb_config_reload_timestamp_seconds") == {labels(): START + 600}


def test_app_info_carries_the_version():
    """opengslb_app_info{version} is 1."""
    env = build()
    assert samples(scrape(env.metrics), "opengslb_app_info") == {labels(version="1.2.3"): 1.0}


def test_registry_is_private():
    """Each Metrics has its own registry; nothing is added to the global one."""
    first, second = build().metrics, build().metrics
    assert first.registry is not second.registry
    assert first.registry is not REGISTRY
    assert REGISTRY.get_sample_value("opengslb_configured_domains") is None
    assert scrape(first).keys() == scrape(second).keys()


def synchronously(function):
    """Run an inlineCallbacks test over StubTreq (which fires at once) and re-raise its failure."""
    def run():
        outcome = []
        defer.inlineCallbacks(function)().addBoth(outcome.append)
        assert outcome, "the in-memory requests did not finish"
        if isinstance(outcome[0], Failure):
            outcome[0].raiseException()
    run.__name__, run.__doc__ = function.__name__, function.__doc__
    return run


@pytest.mark.filterwarnings("ignore:twisted.web.resource._UnsafeErrorPage:DeprecationWarning")
@synchronously
def test_http_metrics_and_health():
    """GET /metrics serves the text format; GET /health is 200 {"status": "ok"}; others are not found."""
    env = build()
    client = StubTreq(env.metrics.resource())
    response = yield client.get("http://metrics.test/metrics")
    assert response.code == 200
    assert response.headers.getRawHeaders(b"content-type") == [
        b"text/plain; version=1.0.0; charset=utf-8"]
    body = yield treq.text_content(response)
    assert {f.name for f in text_string_to_metric_families(body)} >= set(SPEC_FAMILIES)

    response = yield client.get("http://metrics.test/health")
    assert response.code == 200
    assert response.headers.getRawHeaders(b"content-type") == [b"application/json"]
    assert json.loads((yield treq.content(response))) == {"status": "ok"}

    response = yield client.get("http://metrics.test/nope")
    assert response.code == 404
    response = yield client.post("http://metrics.test/metrics", data=b"")
    assert response.code == 405


def test_listen_metrics_binds_the_configured_address():
    """listen_metrics listens on address.port and address.host ("" → every IPv4 address)."""
    reactor = MemoryReactor()
    resource = build().metrics.resource()
    bounded = BoundedSite(resource, reactor, "metrics", ListenerLimits)
    listen_metrics(reactor, ListenAddress("", 9100), bounded)
    listen_metrics(reactor, ListenAddress("127.0.0.1", 9101), bounded)
    (port, site, _backlog, host), (port2, _, _, host2) = reactor.tcpServers
    assert (port, host, port2, host2) == (9100, "", 9101, "127.0.0.1")
    assert isinstance(site, Site) and site.resource is resource
