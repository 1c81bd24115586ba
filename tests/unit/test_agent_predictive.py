"""The agent's predictive sampler (SPEC §7.6, §8): CPU, memory and check error rate → signals.

The samplers are injected (plain callables), so nothing depends on the host's
real load; one test runs the whole agent against the in-memory API.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import pytest
from twisted.logger import globalLogPublisher

from opengslb.agent import Agent, ClusterClient
from opengslb.agent.predictive import NoSignals, PredictiveSampler, psutil_cpu, psutil_memory
from opengslb.config.agent import AgentServiceConfig, AgentThresholds, parse_agent_config
from tests.unit.test_agent import CHECK, Bench

SERVICE = AgentServiceConfig(region="east", address="192.0.2.80", port=8080, check=CHECK)
OTHER = AgentServiceConfig(region="east", address="192.0.2.81", port=8080, check=CHECK)


class Gauge:
    """An injectable sampler: returns ``value`` (or raises ``error``) and counts calls."""

    def __init__(self, value: Optional[float] = 10.0) -> None:
        self.value = value
        self.error: Optional[Exception] = None
        self.calls = 0

    def __call__(self) -> Optional[float]:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return self.value


def sampler(cpu: float = 10.0, memory: float = 20.0, **thresholds: Any) -> Any:
    cpu_gauge, memory_gauge = Gauge(cpu), Gauge(memory)
    source = PredictiveSampler(AgentThresholds(**thresholds), cpu=cpu_gauge, memory=memory_gauge)
    return source, cpu_gauge, memory_gauge


def test_under_every_threshold_sends_a_plain_clear():
    """Nothing over its threshold: {"type": "clear"} (the cluster replicates nothing for it)."""
    source, _, _ = sampler()
    assert source.signal_for(SERVICE, 0.0) == {"type": "clear"}


def test_cpu_over_its_threshold_bleeds_with_value_and_threshold():
    """CPU 97% > 90%: a cpu_high bleed naming the value and the threshold; then a clear naming it."""
    source, cpu, _ = sampler(cpu=97.0)
    assert source.signal_for(SERVICE, 0.0) == {"type": "bleed", "reason": "cpu_high", "value": 97.0,
                                               "threshold": 90.0}
    cpu.value = 40.0
    assert source.signal_for(SERVICE, 5.0) == {"type": "clear", "reason": "cpu_high", "value": 40.0,
                                               "threshold": 90.0}
    assert source.signal_for(SERVICE, 10.0) == {"type": "clear"}


def test_exactly_at_the_threshold_is_not_over():
    """The value must be above the threshold."""
    source, _, _ = sampler(cpu=90.0, memory=85.0)
    assert source.signal_for(SERVICE, 0.0) == {"type": "clear"}


def test_memory_over_its_threshold_bleeds():
    """Memory 91% > 85% (the default): memory_high."""
    source, _, _ = sampler(memory=91.0)
    assert source.signal_for(SERVICE, 0.0)["reason"] == "memory_high"


def test_thresholds_come_from_the_agent_file():
    """predictive_health thresholds of the agent file are the ones compared with."""
    config = parse_agent_config("""
api: {endpoints: ["http://127.0.0.1:8080"], token: t}
services: [{region: east, address: 192.0.2.80, port: 8080}]
predictive_health: {cpu: {threshold: 50}, memory: {threshold: 99}, error_rate: {threshold: 20, window: 30s}}
""")
    source = PredictiveSampler(config.predictive_health, cpu=lambda: 60.0, memory=lambda: 90.0)
    assert source.signal_for(SERVICE, 0.0) == {"type": "bleed", "reason": "cpu_high", "value": 60.0,
                                               "threshold": 50.0}
    assert source.thresholds.error_rate_window == 30.0


def test_the_reason_in_force_stays_while_it_is_still_over():
    """cpu_high bleeding, then memory also over: still cpu_high; cpu recovers: memory_high takes over."""
    source, cpu, memory = sampler(cpu=95.0)
    assert source.signal_for(SERVICE, 0.0)["reason"] == "cpu_high"
    memory.value = 95.0
    assert source.signal_for(SERVICE, 2.0)["reason"] == "cpu_high"
    cpu.value = 20.0
    signal = source.signal_for(SERVICE, 4.0)
    assert (signal["type"], signal["reason"], signal["value"]) == ("bleed", "memory_high", 95.0)


def test_the_error_rate_counts_failed_checks_over_the_window():
    """2 failures in 5 checks within the window = 40% > 10%: error_rate_high; they age out after it."""
    source, _, _ = sampler(error_rate_window=60.0)
    for i, ok in enumerate([True, False, True, False, True]):
        source.record_check(SERVICE, ok, float(i))
    assert source.error_rate(SERVICE, 5.0) == pytest.approx(40.0)
    assert source.signal_for(SERVICE, 5.0) == {"type": "bleed", "reason": "error_rate_high",
                                               "value": 40.0, "threshold": 10.0}
    assert source.signal_for(OTHER, 5.0) == {"type": "clear"}  # per service
    for i in range(5):
        source.record_check(SERVICE, True, 62.0 + i)
    assert source.error_rate(SERVICE, 66.0) == 0.0
    assert source.signal_for(SERVICE, 66.0)["type"] == "clear"


def test_too_few_checks_are_not_a_rate():
    """One failed check alone (fewer than MIN_CHECKS in the window) does not bleed."""
    source, _, _ = sampler()
    source.record_check(SERVICE, False, 0.0)
    source.record_check(SERVICE, False, 1.0)
    assert source.error_rate(SERVICE, 1.0) is None
    assert source.signal_for(SERVICE, 1.0) == {"type": "clear"}
    source.record_check(SERVICE, False, 2.0)
    assert source.signal_for(SERVICE, 2.0)["reason"] == "error_rate_high"


def test_host_samples_are_shared_and_taken_at_most_once_a_second():
    """Two services asking at the same heartbeat share one CPU sample (cpu_percent is since-last-call)."""
    source, cpu, memory = sampler()
    first = cpu.calls
    source.signal_for(SERVICE, 100.0)
    source.signal_for(OTHER, 100.2)
    assert cpu.calls == first + 1 and memory.calls == first + 1
    source.signal_for(SERVICE, 101.5)
    assert cpu.calls == first + 2


def test_a_broken_sampler_is_skipped_and_logged_once():
    """A sampler that raises counts as unavailable; the others still work; one warning."""
    events: List[Dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        cpu = Gauge()
        cpu.error = OSError("no /proc")
        source = PredictiveSampler(AgentThresholds(), cpu=cpu, memory=lambda: 99.0)
        assert source.signal_for(SERVICE, 0.0)["reason"] == "memory_high"
        source.signal_for(SERVICE, 5.0)
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert len([e for e in events if e.get("event") == "agent_sampler_failed"]) == 1


def test_unavailable_values_never_bleed():
    """A sampler returning None (unknown) is ignored."""
    source = PredictiveSampler(AgentThresholds(), cpu=lambda: None, memory=lambda: None)
    assert source.signal_for(SERVICE, 0.0) == {"type": "clear"}


def test_psutil_samplers_give_percentages():
    """The default samplers read psutil without blocking and return 0–100."""
    for value in (psutil_cpu(), psutil_memory()):
        assert value is not None and 0.0 <= value <= 100.0


def test_no_signals_never_signals():
    """NoSignals (the Agent's default when none is given) sends nothing."""
    assert NoSignals().signal_for(SERVICE, 0.0) is None


def test_the_agent_sends_bleed_and_clear_in_its_heartbeats():
    """An agent with an injected CPU sampler: the cluster records a cpu_high bleed, then the clear."""
    bench = Bench()
    cpu = Gauge(10.0)
    source = PredictiveSampler(AgentThresholds(), cpu=cpu, memory=lambda: 10.0)
    client = ClusterClient(bench.world.clock, bench.config.api.endpoints, bench.config.api.token,
                           http=bench.network, timeout=1.0)
    bench.agent = Agent(bench.world.clock, bench.config, client=client, checker=bench.local,
                        signals=source, name="agent-a")
    bench.agent.start()
    bench.run(3)
    signals = bench.world.store.machine.signals
    assert signals == {}
    cpu.value = 97.0
    bench.run(2)
    (key, record), = signals.items()
    assert key == "east/192.0.2.80:8080"
    assert (record["reason"], record["value"], record["threshold"], record["cleared_at"]) == (
        "cpu_high", 97.0, 90.0, None)
    since = record["since"]
    bench.run(6)  # the same bleed at every heartbeat: the ramp keeps its start
    assert signals[key]["since"] == since and signals[key]["cleared_at"] is None
    cpu.value = 30.0
    bench.run(2)
    assert signals[key]["cleared_at"] is not None
    bench.agent.stop()
    bench.run(1)


def test_the_agent_reports_its_check_error_rate():
    """Local checks failing now and then (claim still healthy) raise error_rate_high."""
    bench = Bench()
    source = PredictiveSampler(AgentThresholds(), cpu=lambda: 1.0, memory=lambda: 1.0)
    client = ClusterClient(bench.world.clock, bench.config.api.endpoints, bench.config.api.token,
                           http=bench.network, timeout=1.0)
    bench.agent = Agent(bench.world.clock, bench.config, client=client, checker=bench.local,
                        signals=source, name="agent-a")
    bench.agent.start()
    for healthy in [True, False, True, False, True, True]:  # failure_threshold 2: never two in a row
        bench.local.healthy = healthy
        bench.run(2)
    (record,) = bench.world.store.machine.signals.values()
    assert record["reason"] == "error_rate_high" and record["value"] > 10.0
    (registration,) = bench.registrations()
    assert registration["claim"] is True
    bench.agent.stop()
    bench.run(1)
