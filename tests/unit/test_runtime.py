"""Runtime state applied to the core (SPEC §4, §6, §7.7): overrides, registrations, expiry.

Driven by ``task.Clock`` over an in-memory store; nothing sleeps.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from opengslb.config.model import (
    Config,
    DNSConfig,
    DomainConfig,
    HealthCheckConfig,
    ListenAddress,
    RegionConfig,
    ServerConfig,
)
from opengslb.core import Gslb
from opengslb.health.tracker import ServerKey
from opengslb.runtime import NotFound, Runtime, WriteFailed
from tests.unit.fakes import FakeChecker, MemoryStore

NOW = 1_800_000_000.0
CHECKS = HealthCheckConfig(interval=10.0, timeout=2.0, failure_threshold=1, success_threshold=1)


def sample_config(extra_east: tuple = ()) -> Config:
    regions = (
        RegionConfig("east", (ServerConfig("192.0.2.10", 80, weight=100),
                              ServerConfig("192.0.2.11", 80, weight=50)) + extra_east, CHECKS),
        RegionConfig("west", (ServerConfig("198.51.100.10", 80, weight=300),), CHECKS),
    )
    domains = (DomainConfig("app.example.test", ("east", "west"), "weighted"),
               DomainConfig("west.example.test", ("west",), "failover"))
    return Config(dns=DNSConfig(listen_address=ListenAddress("127.0.0.1", 53)), regions=regions,
                  domains=domains)


class World:
    def __init__(self, leader: bool = True, store: Optional[MemoryStore] = None) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.checker = FakeChecker()
        self.store = store or MemoryStore()
        self.leader = leader
        self.ids = iter(f"id{i}" for i in range(1000))
        self.runtime = Runtime(self.clock, self.store, sample_config(), is_leader=lambda: self.leader,
                               id_factory=lambda: next(self.ids))
        self.gslb = Gslb(self.clock, self.runtime.config, self.checker, runtime=self.runtime)
        self.gslb.start()
        self.runtime.start()
        self.clock.advance(0)

    def settle(self, seconds: float = 0.0) -> None:
        """Advance time, then run everything due now (rebuilds are scheduled for 'now')."""
        self.clock.advance(seconds)
        self.clock.advance(0)

    def candidates(self, domain: str = "app.example.test") -> Dict[str, Any]:
        return {f"{c.region}/{c.address}:{c.port}": c for c in self.gslb.view.domains[domain].candidates}

    def picks(self, domain: str = "app.example.test", n: int = 200) -> set:
        picker = self.gslb.view.domains[domain].families[4].picker
        return {picker.pick().address for _ in range(n)}  # type: ignore[union-attr]

    def register(self, address: str = "192.0.2.50", port: int = 8080, region: str = "east",
                 ttl: float = 30.0, healthy: Optional[bool] = True, weight: int = 100) -> str:
        record, _ = done(self.runtime.register(region, address, port, weight, ttl, healthy, "agent-1"))
        self.settle()
        return record["id"]


def done(d: Deferred) -> Any:
    results: List[Any] = []
    d.addBoth(results.append)
    assert results, "not fired"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


# -- overrides --------------------------------------------------------------------


def test_override_weight_applies_within_one_rebuild():
    """An override is in the view on the next reactor turn, with source 'override'."""
    world = World()
    assert world.picks() == {"192.0.2.10", "192.0.2.11", "198.51.100.10"}
    done(world.runtime.set_override("east", "192.0.2.10", 0, None, "drain", None))
    world.settle()
    assert world.candidates()["east/192.0.2.10:80"].weight == 0.0
    assert "192.0.2.10" not in world.picks()
    info = world.gslb.served_at("east", "192.0.2.10", 80)
    assert (info.base, info.weight, info.source) == (100, 0.0, "override")
    done(world.runtime.set_override("east", "192.0.2.11", 700, None, "more", None))
    world.settle()
    assert world.candidates()["east/192.0.2.11:80"].weight == 700.0


def test_override_enabled_false_removes_and_delete_restores():
    """enabled: false takes the server out of every answer; deleting the override brings it back."""
    world = World()
    done(world.runtime.set_override("west", "198.51.100.10", None, False, "maintenance", None))
    world.settle()
    assert world.gslb.view.domains["west.example.test"].families[4].picker.pick() is None
    assert world.gslb.served_at("west", "198.51.100.10", 80).source == "override"
    done(world.runtime.delete_override("west", "198.51.100.10"))
    world.settle()
    assert world.picks("west.example.test") == {"198.51.100.10"}
    assert world.gslb.served_at("west", "198.51.100.10", 80).source == "config"
    with pytest.raises(NotFound):
        done(world.runtime.delete_override("west", "198.51.100.10"))


def test_expired_override_stops_counting_and_only_the_leader_removes_it():
    """At its expiry an override stops counting on every node; only the leader proposes override.expire."""
    for leader in (True, False):
        world = World(leader=leader)
        done(world.runtime.set_override("east", "192.0.2.10", 0, None, "short", 5.0))
        world.settle()
        assert world.candidates()["east/192.0.2.10:80"].weight == 0.0
        world.settle(4.0)
        assert world.candidates()["east/192.0.2.10:80"].weight == 0.0
        world.settle(1.0)
        world.settle(1.0)
        assert world.candidates()["east/192.0.2.10:80"].weight == 100.0
        expires = world.store.ops("override.expire")
        if leader:
            assert len(expires) == 1 and expires[0]["at"] >= NOW + 5.0
            assert world.store.machine.overrides == {}
        else:
            assert expires == [] and len(world.store.machine.overrides) == 1


# -- registrations ------------------------------------------------------------------


def test_claimed_registration_follows_its_claim_after_the_configured_servers():
    """A registration with a claim is a candidate after the configured servers, judged by the claim."""
    world = World()
    rid = world.register(healthy=True)
    keys = list(world.candidates())
    assert keys == ["east/192.0.2.10:80", "east/192.0.2.11:80", "east/192.0.2.50:8080",
                    "west/198.51.100.10:80"]
    assert world.candidates()["east/192.0.2.50:8080"].healthy is True
    assert "192.0.2.50" in world.picks()
    assert ServerKey("east", "192.0.2.50", 8080) not in world.gslb.health.states()  # not checked
    done(world.runtime.heartbeat(rid, False, None))
    world.settle()
    assert world.candidates()["east/192.0.2.50:8080"].healthy is False
    assert "192.0.2.50" not in world.picks()


def test_registration_without_claim_is_unhealthy_until_its_first_passing_check():
    """No claim: checked with the region's settings; unhealthy until the first passing check."""
    world = World()
    world.checker.hold.add("192.0.2.50")
    world.register(healthy=None)
    key = ServerKey("east", "192.0.2.50", 8080)
    assert world.gslb.health.get(key) is not None and world.checker.held
    assert world.candidates()["east/192.0.2.50:8080"].healthy is False
    assert "192.0.2.50" not in world.picks()
    world.checker.held.pop("192.0.2.50").callback(None)  # the first check passes
    world.checker.hold.clear()
    world.settle()
    assert world.candidates()["east/192.0.2.50:8080"].healthy is True
    world.checker.down["192.0.2.50"] = "connection refused"
    world.settle(10.0)
    assert world.candidates()["east/192.0.2.50:8080"].healthy is False


def test_registering_again_keeps_the_id_and_deregister_removes_it():
    """The same region+address+port keeps its id; deregistering removes candidate and check."""
    world = World()
    rid = world.register(healthy=None)
    record, created = done(world.runtime.register("east", "192.0.2.50", 8080, 20, 30.0, None, "x"))
    assert (record["id"], created) == (rid, False)
    world.settle()
    assert world.candidates()["east/192.0.2.50:8080"].weight == 20.0
    done(world.runtime.deregister(rid))
    world.settle()
    assert "east/192.0.2.50:8080" not in world.candidates()
    assert world.gslb.health.get(ServerKey("east", "192.0.2.50", 8080)) is None
    with pytest.raises(NotFound):
        done(world.runtime.deregister(rid))
    with pytest.raises(NotFound):
        done(world.runtime.heartbeat(rid, True, None))


def test_registration_expires_after_its_ttl_only_on_the_leader():
    """Without heartbeats the leader expires a registration after its ttl; a follower never does."""
    follower = World(leader=False)
    follower.register(ttl=10.0)
    for _ in range(30):
        follower.settle(1.0)
    assert follower.store.ops("service.expire") == []
    assert len(follower.store.machine.registrations) == 1

    leader = World()
    leader.register(ttl=10.0)
    for _ in range(9):
        leader.settle(1.0)
    assert leader.store.machine.registrations
    leader.settle(1.0)
    leader.settle(1.0)
    assert leader.store.machine.registrations == {}
    (expire,) = leader.store.ops("service.expire")
    assert NOW + 10.0 <= expire["at"] <= NOW + 11.0
    assert "east/192.0.2.50:8080" not in leader.candidates()


def test_unchanged_heartbeats_are_replicated_coarsely():
    """30 unchanged heartbeats a second apart (ttl 30s) make at most 3 proposals, and no expiry."""
    world = World()
    rid = world.register(ttl=30.0)
    before = len(world.store.proposed)
    for _ in range(30):
        world.settle(1.0)
        done(world.runtime.heartbeat(rid, True, None))
    heartbeats = world.store.ops("service.heartbeat")
    assert 1 <= len(heartbeats) <= 3
    assert len(world.store.proposed) - before == len(heartbeats)
    assert rid in world.store.machine.registrations
    assert world.store.ops("service.expire") == []


def test_a_changed_claim_or_signal_is_proposed_at_once():
    """A heartbeat that changes the claim or starts/clears a bleed is proposed immediately."""
    world = World()
    rid = world.register(ttl=30.0)
    done(world.runtime.heartbeat(rid, True, None))
    assert world.store.ops("service.heartbeat") == []
    done(world.runtime.heartbeat(rid, False, None))
    bleed = {"type": "bleed", "reason": "cpu_high", "value": 95.0, "threshold": 90.0}
    done(world.runtime.heartbeat(rid, False, bleed))
    done(world.runtime.heartbeat(rid, False, dict(bleed, value=96.0)))  # same bleed: not proposed
    done(world.runtime.heartbeat(rid, False, {"type": "clear"}))
    done(world.runtime.heartbeat(rid, False, {"type": "clear"}))  # already clear: not proposed
    sent = world.store.ops("service.heartbeat")
    assert [c["healthy"] for c in sent] == [False, False, False]
    assert sent[1]["signal"]["bleed_duration"] == 30.0  # cluster.predictive_health.cpu default
    assert sent[2]["signal"] == {"type": "clear"}


def test_expiry_counts_heartbeats_seen_but_not_replicated():
    """The leader's deadline uses its in-memory last-seen time, not only the replicated one."""
    world = World()
    rid = world.register(ttl=9.0)
    for _ in range(40):
        world.settle(2.0)
        done(world.runtime.heartbeat(rid, True, None))
    assert rid in world.store.machine.registrations
    assert world.store.ops("service.expire") == []


def test_a_fresh_leader_grants_one_ttl_of_grace():
    """A registration last heard of long ago is kept one ttl after this node becomes leader."""
    store = MemoryStore()
    store.machine.apply({"op": "service.register", "id": "old", "region": "east",
                         "address": "192.0.2.50", "port": 8080, "weight": 100, "ttl": 10.0,
                         "healthy": True, "agent": None, "at": NOW - 3600})
    world = World(leader=False, store=store)
    world.settle(5.0)
    world.leader = True
    world.settle(1.0)
    became_leader = world.clock.seconds()
    for _ in range(8):
        world.settle(1.0)
    assert "old" in store.machine.registrations
    for _ in range(4):
        world.settle(1.0)
    assert store.machine.registrations == {}
    assert store.ops("service.expire")[0]["at"] >= became_leader + 10.0


def test_reload_keeps_registrations_and_the_configuration_wins_a_clash():
    """A reload keeps registrations; one whose address becomes a configured server stops being served."""
    world = World()
    world.register(address="192.0.2.50")
    world.register(address="192.0.2.51", healthy=None)
    world.gslb.apply_config(sample_config())
    world.settle()
    assert {"east/192.0.2.50:8080", "east/192.0.2.51:8080"} <= set(world.candidates())
    world.gslb.apply_config(sample_config((ServerConfig("192.0.2.51", 9000),)))
    world.settle()
    assert "east/192.0.2.51:8080" not in world.candidates()
    assert "east/192.0.2.51:9000" in world.candidates()
    assert world.gslb.health.get(ServerKey("east", "192.0.2.51", 8080)) is None
    rid = next(r["id"] for r in world.store.machine.registrations.values() if r["address"] == "192.0.2.51")
    status = world.gslb.registration_status(world.store.machine.registrations[rid])
    assert status["served"] is False and "configured server" in status["not_served"]
    world.gslb.apply_config(dataclasses.replace(sample_config(), regions=sample_config().regions[1:],
                                                domains=sample_config().domains[1:]))
    world.settle()
    assert len(world.store.machine.registrations) == 2  # kept, just not served


def test_veto_makes_a_server_unhealthy_while_active():
    """An active veto removes the server (served unhealthy); an expired one does not."""
    world = World()
    world.store.propose({"op": "veto.set", "region": "east", "address": "192.0.2.10", "port": 80,
                         "reason": "overwatch", "at": NOW, "expires_at": NOW + 5})
    world.settle()
    assert world.candidates()["east/192.0.2.10:80"].healthy is False
    world.settle(6.0)
    world.gslb.request_rebuild()
    world.settle()
    assert world.candidates()["east/192.0.2.10:80"].healthy is True


def test_bleed_factor_is_neutral():
    """Without predictive health the bleed factor is 1.0: effective = base or override weight."""
    world = World()
    assert world.gslb.served_at("east", "192.0.2.10", 80).bleed.factor == 1.0
    assert world.gslb.served_at("east", "192.0.2.11", 80).weight == 50.0


def test_writes_that_cannot_be_committed_fail_with_write_failed():
    """A store that cannot commit (or is not writable) fails the write with WriteFailed."""
    world = World()
    world.store.failing = "disk full"
    with pytest.raises(WriteFailed, match="disk full"):
        done(world.runtime.set_override("east", "192.0.2.10", 0, None, "x", None))
    world.store.failing = None
    world.store.writable = False
    with pytest.raises(WriteFailed, match="no leader"):
        done(world.runtime.register("east", "192.0.2.60", 80, 100, 30.0, None, None))
    assert world.store.machine.overrides == {} and world.store.machine.registrations == {}


def test_a_failed_refresh_is_retried_by_the_next_heartbeat():
    """When a coarse refresh is not committed, the next heartbeat proposes it again."""
    world = World()
    rid = world.register(ttl=3.0)
    world.settle(1.5)
    world.store.failing = "timeout"
    with pytest.raises(WriteFailed):
        done(world.runtime.heartbeat(rid, True, None))
    world.store.failing = None
    world.settle(0.1)
    done(world.runtime.heartbeat(rid, True, None))
    assert world.store.machine.registrations[rid]["last_heartbeat"] == world.clock.seconds()


def test_expiry_loop_survives_a_failing_store():
    """Expiry proposals that fail are logged and retried on the next run."""
    world = World()
    world.register(ttl=2.0)
    world.store.failing = "no quorum"
    for _ in range(4):
        world.settle(1.0)
    assert len(world.store.ops("service.expire")) >= 2
    world.store.failing = None
    world.settle(1.0)
    assert world.store.machine.registrations == {}
