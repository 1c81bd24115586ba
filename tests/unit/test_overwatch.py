"""The overwatch (SPEC §7.7): the leader's own checks of agent-claimed servers, and vetoes.

A real :class:`Gslb` and :class:`Runtime` over an in-memory store, a fake
checker the test makes fail, and a ``task.Clock``; nothing sleeps.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import globalLogPublisher

from opengslb.cluster.overwatch import Overwatch
from opengslb.config.model import ClusterConfig, HealthCheckConfig, OverwatchConfig, ServerConfig
from opengslb.health.checks import CheckFailed
from opengslb.health.tracker import ServerKey
from opengslb.metrics import Metrics
from opengslb.state.machine import server_key
from tests.unit.test_metrics import samples, scrape
from tests.unit.test_runtime import World, sample_config

INTERVAL = 10.0
AGENT = ServerKey("east", "192.0.2.60", 8080)
OTHER = ServerKey("east", "192.0.2.61", 8080)


class Outside:
    """The leader's checker: fails for endpoints in ``down``, can hold checks, records calls."""

    def __init__(self) -> None:
        self.down: Dict[str, str] = {}
        self.calls: List[str] = []
        self.settings: List[HealthCheckConfig] = []
        self.hold = False
        self.held: List[Deferred] = []

    def check(self, server: ServerConfig, settings: HealthCheckConfig) -> Deferred:
        self.calls.append(server.endpoint)
        self.settings.append(settings)
        if self.hold:
            d: Deferred = Deferred()
            self.held.append(d)
            return d
        if server.endpoint in self.down:
            return fail(CheckFailed(self.down[server.endpoint]))
        return succeed(None)


class Watch(World):
    """The runtime world plus an Overwatch in ``mode`` and one agent registration claiming healthy."""

    def __init__(self, mode: str = "balanced", threshold: int = 3, leader: bool = True,
                 claim: Optional[bool] = True) -> None:
        super().__init__(leader=leader)
        self.set_overwatch(mode, threshold)
        self.outside = Outside()
        self.overwatch = Overwatch(self.clock, self.runtime, self.outside, lambda: self.gslb.config)
        self.metrics = Metrics(self.gslb, _Reloads(), "1", self.clock,
                               overwatch=self.overwatch)
        self.rid = self.register(AGENT, claim)
        self.events: List[Dict[str, Any]] = []
        globalLogPublisher.addObserver(self._observe)

    def _observe(self, event: Dict[str, Any]) -> None:
        if str(event.get("event", "")).startswith("overwatch_"):
            self.events.append(event)

    def close(self) -> None:
        globalLogPublisher.removeObserver(self._observe)
        self.overwatch.stop()

    def set_overwatch(self, mode: str, threshold: int = 3, interval: float = INTERVAL) -> None:
        config = dataclasses.replace(sample_config(), cluster=ClusterConfig(overwatch=OverwatchConfig(
            external_check_interval=interval, veto_mode=mode, veto_threshold=threshold)))
        self.gslb.apply_config(config)
        self.settle()

    def register(self, key: ServerKey, claim: Optional[bool]) -> str:
        self.runtime.register(key.region, key.address, key.port, 100, 3600.0, claim, "agent-1")
        self.settle()
        record = self.store.machine.find_registration(key.region, key.address, key.port)
        assert record is not None
        return str(record["id"])

    def claim(self, healthy: Optional[bool], rid: Optional[str] = None) -> None:
        self.runtime.heartbeat(rid or self.rid, healthy, None)
        self.settle()

    def round(self) -> None:
        """One overwatch round, then let the view rebuild."""
        self.overwatch.check_round()
        self.settle()

    def vetoed(self, key: ServerKey = AGENT) -> bool:
        return server_key(key.region, key.address, key.port) in self.store.machine.vetoes

    def served_healthy(self, key: ServerKey = AGENT) -> bool:
        return self.candidates()[f"{key.region}/{key.address}:{key.port}"].healthy

    def disagreements(self) -> Dict[str, float]:
        found = samples(scrape(self.metrics), "opengslb_overwatch_disagreements",
                        "opengslb_overwatch_disagreements_total")
        return {dict(k)["mode"]: v for k, v in found.items()}

    def events_named(self, name: str) -> List[Dict[str, Any]]:
        return [e for e in self.events if e.get("event") == name]


class _Reloads:
    successes = 0
    failures = 0
    last_success = None


@pytest.fixture
def watch():
    made: List[Watch] = []

    def make(*args: Any, **kwargs: Any) -> Watch:
        made.append(Watch(*args, **kwargs))
        return made[-1]

    yield make
    for w in made:
        w.close()


def test_strict_vetoes_at_the_first_failed_check(watch):
    """strict: claim healthy + leader's check fails → veto at once, served unhealthy, counted, logged."""
    w = watch("strict")
    w.round()
    assert not w.vetoed() and w.served_healthy()
    w.outside.down["192.0.2.60:8080"] = "connection refused"
    w.round()
    assert w.vetoed() and not w.served_healthy()
    veto = w.store.machine.vetoes[server_key("east", "192.0.2.60", 8080)]
    assert "connection refused" in veto["reason"] and veto["since"] == w.clock.seconds()
    assert w.disagreements() == {"strict": 1, "balanced": 0, "permissive": 0}
    (logged,) = w.events_named("overwatch_veto")
    assert logged["log_level"].name == "warn" and logged["mode"] == "strict"
    assert samples(scrape(w.metrics), "opengslb_vetoes_active")[frozenset()] == 1
    status = w.gslb.registration_status(w.store.machine.registrations[w.rid])
    assert status["veto"]["reason"] == veto["reason"] and status["healthy"] is False


def test_balanced_vetoes_after_threshold_consecutive_disagreements(watch):
    """balanced with veto_threshold 3: two failures are logged but served, the third vetoes."""
    w = watch("balanced", threshold=3)
    w.outside.down["192.0.2.60:8080"] = "HTTP 503"
    w.round()
    w.round()
    assert not w.vetoed() and w.served_healthy()
    assert w.overwatch.streak(AGENT) == 2
    assert [e["streak"] for e in w.events_named("overwatch_disagreement")] == [1, 2]
    w.round()
    assert w.vetoed() and not w.served_healthy()
    assert w.disagreements()["balanced"] == 3


def test_balanced_streak_restarts_after_a_passing_check(watch):
    """Disagreements must be consecutive: a pass in between resets the count."""
    w = watch("balanced", threshold=2)
    w.outside.down["192.0.2.60:8080"] = "HTTP 503"
    w.round()
    del w.outside.down["192.0.2.60:8080"]
    w.round()
    assert w.overwatch.streak(AGENT) == 0
    assert len(w.events_named("overwatch_agrees")) == 1
    w.outside.down["192.0.2.60:8080"] = "HTTP 503"
    w.round()
    assert not w.vetoed()
    w.round()
    assert w.vetoed()


def test_permissive_only_records(watch):
    """permissive: never vetoes, keeps serving; every disagreement is counted, logged once per streak."""
    w = watch("permissive")
    w.outside.down["192.0.2.60:8080"] = "timeout after 2s"
    for _ in range(5):
        w.round()
    assert not w.vetoed() and w.served_healthy()
    assert w.disagreements() == {"strict": 0, "balanced": 0, "permissive": 5}
    assert len(w.events_named("overwatch_disagreement")) == 1
    assert w.store.ops("veto.set") == []


def test_a_claim_of_unhealthy_is_honoured_and_not_a_disagreement(watch):
    """The agent says unhealthy: served unhealthy, however the leader's check goes; nothing vetoed."""
    w = watch("strict", claim=False)
    w.outside.down["192.0.2.60:8080"] = "connection refused"
    w.round()
    assert not w.vetoed() and not w.served_healthy()
    del w.outside.down["192.0.2.60:8080"]
    w.round()
    assert not w.served_healthy()  # the leader's passing check does not override the claim
    assert w.disagreements()["strict"] == 0


def test_a_veto_lifts_when_the_leaders_check_passes_again(watch):
    """Vetoed, then the check passes: veto.clear is replicated, served healthy again, logged at info."""
    w = watch("strict")
    w.outside.down["192.0.2.60:8080"] = "connection refused"
    w.round()
    assert w.vetoed()
    w.round()  # still failing: the veto stays, no second veto written
    assert len(w.store.ops("veto.set")) == 1
    del w.outside.down["192.0.2.60:8080"]
    w.round()
    assert not w.vetoed() and w.served_healthy()
    (lifted,) = w.events_named("overwatch_veto_lifted")
    assert lifted["log_level"].name == "info"


def test_a_veto_stays_while_the_claim_turns_unhealthy_until_a_check_passes(watch):
    """The agent gives up after the veto: still vetoed (and unhealthy) until the leader's check passes."""
    w = watch("strict")
    w.outside.down["192.0.2.60:8080"] = "connection refused"
    w.round()
    w.claim(False)
    w.round()
    assert w.vetoed()
    del w.outside.down["192.0.2.60:8080"]
    w.round()
    assert not w.vetoed() and not w.served_healthy()  # now judged by its claim alone


def test_only_claimed_registrations_are_checked_with_their_regions_settings(watch):
    """Configured servers and claimless registrations are left to the ordinary checks."""
    w = watch("strict")
    w.register(OTHER, None)
    w.outside.calls.clear()
    w.round()
    assert w.outside.calls == ["192.0.2.60:8080"]
    assert w.outside.settings == [w.gslb.config.region("east").health_check]


def test_vetoes_that_no_longer_apply_are_lifted(watch):
    """A vetoed registration that stops claiming (judged by checks now) loses its veto next round."""
    w = watch("strict")
    w.outside.down["192.0.2.60:8080"] = "connection refused"
    w.round()
    assert w.vetoed()
    w.claim(None)
    w.round()
    assert not w.vetoed()


def test_switching_to_permissive_lifts_vetoes(watch):
    """A reload to veto_mode permissive lifts the vetoes in force (permissive never vetoes)."""
    w = watch("strict")
    w.outside.down["192.0.2.60:8080"] = "connection refused"
    w.round()
    assert w.vetoed()
    w.set_overwatch("permissive")
    w.round()
    assert not w.vetoed() and w.served_healthy()


def test_a_follower_neither_checks_nor_vetoes(watch):
    """Only the leader runs the overwatch; a node that stops leading forgets its streaks."""
    w = watch("balanced", threshold=2)
    w.outside.down["192.0.2.60:8080"] = "connection refused"
    w.round()
    assert w.overwatch.streak(AGENT) == 1
    w.leader = False
    w.outside.calls.clear()
    w.round()
    w.round()
    assert w.outside.calls == [] and not w.vetoed() and w.overwatch.streak(AGENT) == 0


def test_a_veto_that_cannot_be_written_is_retried_next_round(watch):
    """No quorum: the veto write fails, is logged, and the next round proposes it again."""
    w = watch("strict")
    w.outside.down["192.0.2.60:8080"] = "connection refused"
    w.store.failing = "no leader"
    w.round()
    assert not w.vetoed()
    assert len(w.events_named("overwatch_veto_failed")) == 1
    w.store.failing = None
    w.round()
    assert w.vetoed()


def test_rounds_run_every_external_check_interval_and_follow_a_reload(watch):
    """The loop checks at start and every interval; a reloaded interval applies after the next round."""
    w = watch("strict")
    w.overwatch.start()
    w.settle()
    assert len(w.outside.calls) == 1
    w.settle(INTERVAL - 1)
    assert len(w.outside.calls) == 1
    w.settle(1)
    assert len(w.outside.calls) == 2
    w.set_overwatch("strict", interval=2.0)
    w.settle(INTERVAL)
    assert len(w.outside.calls) == 3
    w.settle(2.0)
    w.settle(2.0)
    assert len(w.outside.calls) == 5


def test_rounds_never_overlap(watch):
    """A round whose checks hang delays the next one instead of starting another."""
    w = watch("strict")
    w.outside.hold = True
    w.overwatch.start()
    w.settle(3 * INTERVAL)
    assert len(w.outside.calls) == 1
    w.outside.held[0].callback(None)
    w.settle(INTERVAL)
    assert len(w.outside.calls) == 2


def test_a_result_arriving_after_stop_changes_nothing(watch):
    """Stopping mid-round: the late failure proposes no veto."""
    w = watch("strict")
    w.outside.hold = True
    w.overwatch.start()
    w.settle()
    w.overwatch.stop()
    w.outside.held[0].errback(CheckFailed("connection refused"))
    w.settle()
    assert not w.vetoed() and w.store.ops("veto.set") == []
