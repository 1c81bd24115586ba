"""The served policy (opengslb.served): one pure function from plain inputs to a Served record.

No reactor: every input is a plain value, time is a number.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opengslb.config.model import (
    ClusterConfig,
    Config,
    DNSConfig,
    ListenAddress,
    PredictiveHealthConfig,
    PredictiveSignalConfig,
    RegionConfig,
    ServerConfig,
)
from opengslb.health.tracker import ServerKey
from opengslb.served import Inputs, PeerVerdicts, RampClock, RuntimeRecords, served
from opengslb.served.records import served_registrations
from opengslb.served.slow_start import START, next_clock, ramp_factor

NOW = 1000.0
SERVER = ServerConfig("192.0.2.10", 80, weight=100)
KEY = ServerKey("east", SERVER.address, SERVER.port)
REGISTERED = ServerConfig("192.0.2.50", 8080, weight=60)
REG_KEY = ServerKey("east", REGISTERED.address, REGISTERED.port)


@dataclasses.dataclass(frozen=True)
class Verdict:
    healthy: bool
    last_healthy: Optional[float] = None


def config(slow_start: float = 0.0, predictive: bool = False) -> Config:
    region = RegionConfig("east", (SERVER,), slow_start=slow_start)
    cluster = ClusterConfig(predictive_health=PredictiveHealthConfig(
        enabled=predictive, cpu=PredictiveSignalConfig(90, 10.0)))
    return Config(dns=DNSConfig(listen_address=ListenAddress("127.0.0.1", 53)), regions=(region,),
                  domains=(), cluster=cluster)


def registration(claim: Optional[bool], **extra: Any) -> Dict[str, Any]:
    return {"id": "r1", "region": "east", "address": REGISTERED.address, "port": REGISTERED.port,
            "weight": REGISTERED.weight, "ttl": 30.0, "claim": claim, "last_heartbeat": 990.0,
            "registered_at": 900.0, **extra}


def test_a_configured_server_not_checked_yet_is_served_healthy_at_its_weight():
    """No verdict, no records: healthy, weight = configured weight, judged by check, source config."""
    record = served(Inputs(config(), now=NOW), "east", SERVER)
    assert (record.healthy, record.weight, record.base, record.source, record.judged_by) == (
        True, 100.0, 100, "config", "check")
    assert record.last_healthy is None and not record.drained
    assert record.reasons == ("not checked yet: served healthy",)


def test_the_own_verdict_decides_in_standalone():
    """Without peers the node's own verdict and its last-healthy time are served."""
    record = served(Inputs(config(), own={KEY: Verdict(False, 950.0)}, now=NOW), "east", SERVER)
    assert (record.healthy, record.last_healthy) == (False, 950.0)


@pytest.mark.parametrize("mode, peers, expected", [
    ("majority", [True, True], True),     # 2 of 3 say healthy
    ("majority", [True], False),          # a tie goes to our own verdict (unhealthy)
    ("any", [False, True], True),
    ("all", [True, True], False),         # our own unhealthy verdict is enough
    ("leader", [True, True], False),      # our own checks only
])
def test_peer_verdicts_are_combined_by_the_consensus_mode(mode, peers, expected):
    """The own verdict (unhealthy) and fresh peer verdicts are combined per health_consensus."""
    views = {f"n{i}:1": {KEY: vote} for i, vote in enumerate(peers)}
    inputs = Inputs(config(), own={KEY: Verdict(False)}, peers=PeerVerdicts(mode, views), now=NOW)
    assert served(inputs, "east", SERVER).healthy is expected


def test_an_override_replaces_the_weight_and_disabled_means_zero():
    """An active override sets the weight (source override); enabled false makes it 0; an expired one is ignored."""
    def with_override(**override: Any) -> Any:
        records = RuntimeRecords(overrides={"east/192.0.2.10": {"reason": "ops", **override}})
        return served(Inputs(config(), records=records, now=NOW), "east", SERVER)

    assert (with_override(weight=40).weight, with_override(weight=40).source) == (40.0, "override")
    assert with_override(enabled=False).weight == 0.0
    assert with_override(weight=40, expires_at=NOW).weight == 100.0
    assert with_override(weight=40, expires_at=NOW).source == "config"


def test_a_veto_makes_the_server_unhealthy_while_in_force():
    """A veto in force is served unhealthy with the veto's reason; an expired one is not."""
    def with_veto(expires: Optional[float]) -> Any:
        records = RuntimeRecords(vetoes={"east/192.0.2.10:80": {"reason": "overwatch", "expires_at": expires}})
        return served(Inputs(config(), records=records, now=NOW), "east", SERVER)

    assert with_veto(None).healthy is False and "vetoed: overwatch" in with_veto(None).reasons
    assert with_veto(NOW - 1).healthy is True


def test_a_claim_judges_a_registration_and_no_claim_means_the_checks():
    """A claim decides (last healthy = last heartbeat seen); a claimless registration waits for a check."""
    def judged(claim: Optional[bool], own: Optional[Verdict] = None) -> Any:
        records = RuntimeRecords(registrations={REG_KEY: registration(claim)}, last_seen={"r1": 995.0})
        return served(Inputs(config(), own={REG_KEY: own} if own else {}, records=records, now=NOW),
                      "east", REGISTERED)

    healthy = judged(True)
    assert (healthy.healthy, healthy.judged_by, healthy.last_healthy, healthy.source) == (
        True, "claim", 995.0, "registration")
    assert judged(False).healthy is False and judged(False).last_healthy is None
    assert judged(None).healthy is False and judged(None).judged_by == "check"
    assert judged(None, Verdict(True, 999.0)).healthy is True


def test_the_bleed_factor_applies_only_with_predictive_health_enabled():
    """A bleed halfway through its ramp lowers the weight when enabled; disabled keeps it (phase disabled)."""
    signal = {"reason": "cpu_high", "value": 95, "threshold": 90, "bleed_duration": 10.0, "since": NOW - 10.0,
              "cleared_at": None}
    records = RuntimeRecords(signals={"east/192.0.2.10:80": signal})
    bled = served(Inputs(config(predictive=True), records=records, now=NOW), "east", SERVER)
    assert bled.weight == pytest.approx(5.0) and bled.drained and bled.bleed.phase == "drained"
    off = served(Inputs(config(predictive=False), records=records, now=NOW), "east", SERVER)
    assert (off.weight, off.bleed.phase, off.drained) == (100.0, "disabled", False)


def test_served_registrations_leave_out_unknown_regions_and_configured_addresses():
    """A registration is served unless its region is unknown or its address is a configured server there."""
    records = [registration(True), registration(True, id="r2", region="nowhere"),
               registration(True, id="r3", address=SERVER.address)]
    result = served_registrations(config(), records)
    assert list(result.served) == [REG_KEY]
    assert result.extra == {"east": (REGISTERED,)}
    assert "not in the configuration" in result.not_served["r2"]
    assert "configured server" in result.not_served["r3"]


# -- slow start --------------------------------------------------------------------------------


def test_slow_start_ramps_a_recovered_server_from_ten_percent_to_full_weight():
    """Unhealthy → healthy starts a ramp: 10% at once, linear to 100% at the end of the window."""
    inputs = Inputs(config(slow_start=30.0), own={KEY: Verdict(False)}, now=NOW)
    down = served(inputs, "east", SERVER)
    assert down.ramp == RampClock(False)
    healthy = dataclasses.replace(inputs, own={KEY: Verdict(True)})
    up = served(dataclasses.replace(healthy, ramps={KEY: down.ramp}, now=NOW + 1.0), "east", SERVER)
    assert up.weight == pytest.approx(10.0) and up.ramp == RampClock(True, NOW + 1.0)
    assert up.ramp_ends_at == NOW + 31.0
    middle = served(dataclasses.replace(healthy, ramps={KEY: up.ramp}, now=NOW + 16.0), "east", SERVER)
    assert middle.weight == pytest.approx(100.0 * (START + (1 - START) * 15.0 / 30.0))
    end = served(dataclasses.replace(healthy, ramps={KEY: middle.ramp}, now=NOW + 31.0), "east", SERVER)
    assert (end.weight, end.ramp, end.ramp_ends_at) == (100.0, RampClock(True), None)


def test_slow_start_does_not_apply_at_first_sight_or_without_a_window():
    """A server seen for the first time starts at full weight; slow_start 0 never ramps."""
    first = served(Inputs(config(slow_start=30.0), now=NOW), "east", SERVER)
    assert first.weight == 100.0 and first.ramp == RampClock(True)
    recovered = served(Inputs(config(slow_start=0.0), ramps={KEY: RampClock(False)}, now=NOW), "east", SERVER)
    assert recovered.weight == 100.0 and recovered.ramp_ends_at is None


def test_lifting_a_drain_override_starts_a_slow_start():
    """A server whose enabled:false override is lifted ramps like a recovered one."""
    drained = RuntimeRecords(overrides={"east/192.0.2.10": {"enabled": False, "reason": "maintenance"}})
    before = served(Inputs(config(slow_start=20.0), records=drained, ramps={KEY: RampClock(True)}, now=NOW),
                    "east", SERVER)
    assert before.weight == 0.0 and before.ramp == RampClock(False)
    after = served(Inputs(config(slow_start=20.0), ramps={KEY: before.ramp}, now=NOW + 5.0), "east", SERVER)
    assert after.weight == pytest.approx(10.0) and after.ramp_ends_at == NOW + 25.0
    assert any(reason.startswith("slow start") for reason in after.reasons)


@given(st.floats(min_value=0.1, max_value=3600), st.floats(min_value=0, max_value=7200))
def test_the_ramp_factor_is_monotonic_and_bounded(window, elapsed):
    """The factor stays within [START, 1] and never falls as time passes."""
    clock = next_clock(RampClock(False), True, window, 0.0)
    factor = ramp_factor(clock, window, elapsed)
    assert START <= factor <= 1.0
    assert ramp_factor(clock, window, elapsed + 1.0) >= factor
