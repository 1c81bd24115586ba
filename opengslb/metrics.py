"""Prometheus metrics: a scrape-time collector and the ``/metrics`` endpoint.

Nothing on the query path touches prometheus_client.  The DNS side bumps
plain dict counters (:class:`~opengslb.stats.QueryStats`), the core
counts check results in ``Gslb.check_results``, and :class:`Metrics` turns
all of it into metric families only when Prometheus scrapes (SPEC §9).

Everything runs on the reactor thread, including scrapes: the resource here
renders synchronously, so the counters are never read while being changed.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Callable, Iterable, Optional, Protocol, Sequence

from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.gc_collector import GCCollector
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString
from twisted.internet.interfaces import IReactorTime
from twisted.web.pages import notFound
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request

from opengslb.api.auth import parse_address, within
from opengslb.config.model import MetricsConfig
from opengslb.httpserve import Gate, ListenerLimits, Refusal

if TYPE_CHECKING:
    from opengslb.cluster.overwatch import Overwatch
    from opengslb.core import Gslb

__all__ = ["Metrics", "metrics_gate", "metrics_limits"]


class ReloadCounts(Protocol):
    """What the metrics read from the reloader (:class:`opengslb.reload.Reloader`)."""

    successes: int
    failures: int
    last_success: Optional[float]  # reactor seconds of the last successful reload


class Metrics:
    """The OpenGSLB metrics registry, collected at scrape time.

    :param gslb: the core; its ``config`` may be swapped by a reload, so it is
        read afresh at every scrape.  Its counters (``stats``,
        ``check_results``, ``check_durations``) and its served policy
        (``served``, ``bleeding_servers``) feed the families.
    :param reloader: reload counters (``successes``, ``failures``,
        ``last_success``).
    :param version: the value of ``opengslb_app_info{version}``.
    :param clock: time source; ``clock.seconds()`` at construction is the
        start time that ``opengslb_config_reload_timestamp_seconds`` reports
        until the first successful reload (the start-up load counts as the
        first configuration load).

    The gauges ``opengslb_overrides_active``, ``opengslb_vetoes_active`` and
    ``opengslb_bleeding_servers`` come from the core's runtime state
    (``gslb.runtime``).
    :param overwatch: the leader's :class:`~opengslb.cluster.overwatch.Overwatch`;
        with it, ``opengslb_overwatch_disagreements_total{mode}`` is exposed.

    ``registry`` is private to this object (never the global REGISTRY) and
    also holds prometheus_client's standard process, platform and GC
    collectors.
    """

    def __init__(self, gslb: "Gslb", reloader: ReloadCounts, version: str,
                 clock: IReactorTime,
                 overwatch: Optional["Overwatch"] = None) -> None:
        self.gslb = gslb
        self.reloader = reloader
        self.version = version
        self.clock = clock
        self.overwatch = overwatch
        self.started = clock.seconds()
        self.registry = CollectorRegistry()
        self.registry.register(_GslbCollector(self))
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)

    def exposition(self) -> bytes:
        """The current metrics in the Prometheus text format."""
        return generate_latest(self.registry)

    def resource(self) -> IResource:
        """The HTTP resource tree: ``GET /metrics`` and ``GET /health``."""
        root = _IndexPage()
        root.putChild(b"metrics", _MetricsPage(self))
        root.putChild(b"health", _HealthPage())
        return root


class _GslbCollector(Collector):
    """Builds every ``opengslb_*`` family from the plain counters, per scrape."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        gslb = self._metrics.gslb
        config = gslb.config
        stats = gslb.stats
        reloader = self._metrics.reloader

        yield _counter("opengslb_dns_queries_total", "DNS queries answered.",
                       ["domain", "type", "status"], stats.queries.items())
        yield _histogram("opengslb_dns_query_duration_seconds",
                         "Time to answer one DNS query (parse, answer, encode, send).",
                         stats.durations.bounds, stats.durations.counts, stats.durations.sum)
        yield _counter("opengslb_health_check_results_total", "Finished health checks.",
                       ["region", "server", "result"], gslb.check_results.items())
        checks = gslb.check_durations
        yield _histogram("opengslb_health_check_duration_seconds", "Duration of one health check.",
                         checks.bounds, checks.counts, checks.sum)

        healthy = GaugeMetricFamily("opengslb_healthy_servers", "Healthy servers per region.",
                                    labels=["region"])
        servers = GaugeMetricFamily("opengslb_region_servers",
                                    "Servers per region, healthy or not (configured and served registrations).",
                                    labels=["region"])
        healthy_counts, all_counts = _per_region(gslb)
        for region, count in healthy_counts.items():
            healthy.add_metric([region], count)
            servers.add_metric([region], all_counts.get(region, count))
        yield healthy
        yield servers

        yield _counter("opengslb_routing_decisions_total", "Answers chosen by a routing algorithm.",
                       ["domain", "algorithm", "server"], stats.routing.items())
        yield _counter("opengslb_dns_stale_answers_total",
                       "Answers with the last healthy address while every server was down.",
                       ["domain"], (((domain,), n) for domain, n in stats.stale.items()))
        yield _counter("opengslb_all_down_answers_total",
                       "Answers made by a domain's when_all_down policy (every server of the family down).",
                       ["domain", "policy"], stats.all_down.items())
        ecs = CounterMetricFamily("opengslb_dns_ecs_queries",
                                  "DNS queries carrying an EDNS Client Subnet option (RFC 7871).")
        ecs.add_metric([], stats.ecs_queries)
        yield ecs

        reloads = CounterMetricFamily("opengslb_config_reloads_total", "Configuration reloads.",
                                      labels=["result"])
        reloads.add_metric(["success"], reloader.successes)
        reloads.add_metric(["failure"], reloader.failures)
        yield reloads
        last = reloader.last_success if reloader.last_success is not None else self._metrics.started
        yield GaugeMetricFamily("opengslb_config_reload_timestamp_seconds",
                                "Unix time of the last successful reload (start time before any).",
                                value=last)

        info = GaugeMetricFamily("opengslb_app_info", "OpenGSLB build information.",
                                 labels=["version"])
        info.add_metric([self._metrics.version], 1)
        yield info
        yield GaugeMetricFamily("opengslb_configured_domains", "Domains in the configuration.",
                                value=len(config.domains))
        yield GaugeMetricFamily("opengslb_configured_servers", "Servers in the configuration.",
                                value=sum(len(region.servers) for region in config.regions))
        yield from self._runtime_families()

    def _runtime_families(self) -> Iterable[Metric]:
        """Runtime-state gauges, and the overwatch counter when an overwatch is given."""
        gslb = self._metrics.gslb
        runtime = gslb.runtime
        now = self._metrics.clock.seconds()
        yield GaugeMetricFamily("opengslb_overrides_active", "Overrides in force (not expired).",
                                value=len(runtime.machine.active_overrides(now)))
        yield GaugeMetricFamily("opengslb_vetoes_active",
                                "Servers vetoed by the overwatch (served unhealthy).",
                                value=len(runtime.active_vetoes()))
        yield GaugeMetricFamily("opengslb_bleeding_servers",
                                "Servers whose weight predictive health is lowering now "
                                "(draining, drained or ramping back).",
                                value=gslb.bleeding_servers())
        overwatch = self._metrics.overwatch
        if overwatch is not None:
            yield _counter("opengslb_overwatch_disagreements_total",
                           "Checks of the leader that failed while the agent claimed healthy, by the "
                           "veto_mode in force.", ["mode"],
                           (((mode,), n) for mode, n in overwatch.disagreements.items()))


def _counter(name: str, documentation: str, labels: list[str],
             items: Iterable[tuple[tuple[str, ...], int]]) -> CounterMetricFamily:
    """A counter family with one sample per ``(label values, count)`` item."""
    family = CounterMetricFamily(name, documentation, labels=labels)
    for values, count in sorted(items):
        family.add_metric(list(values), count)
    return family


def _histogram(name: str, documentation: str, bounds: Sequence[float], counts: Sequence[int],
               total: float) -> HistogramMetricFamily:
    """A histogram family from per-bucket ``counts`` (last slot ``+Inf``)."""
    buckets = []
    cumulative = 0
    for bound, count in zip([*bounds, float("inf")], counts):
        cumulative += count
        buckets.append((floatToGoString(bound), cumulative))
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=total)


def _per_region(gslb: "Gslb") -> tuple[dict[str, int], dict[str, int]]:
    """(healthy, all) candidates per region, as DNS serves them (the served policy):
    configured servers and served registrations.  Every configured region is
    present (0 when it has none)."""
    healthy: dict[str, int] = {}
    total: dict[str, int] = {}
    judge = gslb.judge()
    for region in gslb.config.regions:
        servers = gslb.servers(region.name)
        total[region.name] = len(servers)
        healthy[region.name] = sum(1 for server in servers if judge(region.name, server).healthy)
    return healthy, total


def metrics_gate(settings: Callable[[], MetricsConfig]) -> Gate:
    """The metrics listener's gate: the peer must be in ``metrics.allowed_networks``
    (403), and only GET and HEAD are served (405).  Proxy headers are never honoured."""

    def gate(request: Request) -> Optional[Refusal]:
        networks = settings().allowed_networks
        peer = parse_address(str(getattr(request.getClientAddress(), "host", "")))
        if peer is None or not within(peer, networks):
            return Refusal(403, f"source address {peer or 'unknown'} is not in metrics.allowed_networks")
        if request.method not in (b"GET", b"HEAD"):
            return Refusal(405, "only GET and HEAD are served here", {"Allow": "GET, HEAD"})
        return None

    return gate


def metrics_limits(settings: MetricsConfig) -> ListenerLimits:
    """The bounds of the metrics listener (bodies are never read: 1 KiB)."""
    return ListenerLimits(settings.max_connections, settings.max_connections_per_source,
                          settings.request_timeout, 1024, settings.max_connection_rate)


class _IndexPage(Resource):
    """``GET /``: a plain-text pointer to the two endpoints."""

    def getChild(self, path: bytes, request: Request) -> IResource:
        return notFound()

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        return b"OpenGSLB metrics: /metrics (Prometheus), /health\n"


class _MetricsPage(Resource):
    """``GET /metrics``: the Prometheus text exposition, rendered on the reactor thread."""

    isLeaf = True

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self._metrics = metrics

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode("ascii"))
        return self._metrics.exposition()


class _HealthPage(Resource):
    """``GET /health``: 200 ``{"status": "ok"}`` while the process serves."""

    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps({"status": "ok"}).encode("ascii")
