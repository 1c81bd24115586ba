"""The runtime-state machine (SPEC §6): deterministic apply, versioned snapshots, reasons not raises."""

from __future__ import annotations

import json
from typing import Any, Dict, List

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opengslb.state.machine import SNAPSHOT_VERSION, StateMachine, server_key


def register(rid: str = "r1", region: str = "east", address: str = "192.0.2.50", port: int = 8080,
             at: float = 100.0, **more: Any) -> Dict[str, Any]:
    command = {"op": "service.register", "id": rid, "region": region, "address": address,
               "port": port, "weight": 100, "ttl": 30.0, "agent": "a1", "healthy": True, "at": at}
    command.update(more)
    return command


def applied(machine: StateMachine, command: Dict[str, Any]) -> Any:
    result = machine.apply(command)
    assert result["ok"], result
    return result["value"]


# -- overrides -------------------------------------------------------------------


def test_override_set_replaces_and_delete_removes():
    """override.set replaces the whole override; delete removes it; deleting nothing is rejected."""
    machine = StateMachine()
    applied(machine, {"op": "override.set", "region": "east", "address": "192.0.2.10",
                      "weight": 0, "reason": "drain", "at": 10.0})
    applied(machine, {"op": "override.set", "region": "east", "address": "192.0.2.10",
                      "enabled": False, "reason": "maintenance", "at": 20.0, "expires_at": 80.0})
    assert machine.overrides[server_key("east", "192.0.2.10")] == {
        "region": "east", "address": "192.0.2.10", "weight": None, "enabled": False,
        "reason": "maintenance", "created_at": 20.0, "expires_at": 80.0}
    applied(machine, {"op": "override.delete", "region": "east", "address": "192.0.2.10"})
    assert machine.overrides == {}
    result = machine.apply({"op": "override.delete", "region": "east", "address": "192.0.2.10"})
    assert result == {"ok": False, "error": "no such override"}


def test_override_expire_uses_the_commands_time():
    """override.expire drops exactly the overrides whose expires_at <= the command's at."""
    machine = StateMachine()
    for address, expires in (("192.0.2.1", 50.0), ("192.0.2.2", 60.0), ("192.0.2.3", None)):
        applied(machine, {"op": "override.set", "region": "r", "address": address, "weight": 5,
                          "reason": "x", "at": 0.0, "expires_at": expires})
    assert applied(machine, {"op": "override.expire", "at": 55.0}) == ["r/192.0.2.1"]
    assert sorted(machine.overrides) == ["r/192.0.2.2", "r/192.0.2.3"]
    assert sorted(machine.active_overrides(65.0)) == ["r/192.0.2.3"]


# -- registrations ---------------------------------------------------------------------


def test_register_again_keeps_the_id():
    """Registering region+address+port again updates it and returns the first id (created false)."""
    machine = StateMachine()
    first = applied(machine, register("r1"))
    assert first["created"] is True and first["id"] == "r1"
    again = applied(machine, register("r2", at=150.0, weight=7, healthy=None))
    assert (again["id"], again["created"], again["weight"], again["claim"]) == ("r1", False, 7, None)
    assert list(machine.registrations) == ["r1"]
    assert machine.registrations["r1"]["last_heartbeat"] == 150.0


def test_register_with_an_id_in_use_for_another_server_is_rejected():
    """An id already used by another region+address+port is rejected, nothing changes."""
    machine = StateMachine()
    applied(machine, register("r1"))
    before = machine.snapshot()
    result = machine.apply(register("r1", port=9090))
    assert not result["ok"] and "already in use" in result["error"]
    assert machine.snapshot() == before


def test_heartbeat_moves_time_forward_and_sets_claim_only_when_given():
    """A heartbeat never moves last_heartbeat back; the claim changes only when 'healthy' is present."""
    machine = StateMachine()
    applied(machine, register("r1", at=100.0))
    applied(machine, {"op": "service.heartbeat", "id": "r1", "at": 90.0})
    assert machine.registrations["r1"]["last_heartbeat"] == 100.0
    applied(machine, {"op": "service.heartbeat", "id": "r1", "at": 120.0})
    assert machine.registrations["r1"]["claim"] is True
    applied(machine, {"op": "service.heartbeat", "id": "r1", "at": 121.0, "healthy": None})
    assert machine.registrations["r1"]["claim"] is None
    assert machine.apply({"op": "service.heartbeat", "id": "nope", "at": 1.0}) == {
        "ok": False, "error": "no such registration"}


def test_heartbeat_signal_sets_and_clears_the_servers_signal():
    """A bleed signal in a heartbeat is recorded (since kept while it continues); clear marks it cleared."""
    machine = StateMachine()
    applied(machine, register("r1"))
    signal = {"type": "bleed", "reason": "cpu_high", "value": 95.0, "threshold": 90.0,
              "bleed_duration": 30.0}
    applied(machine, {"op": "service.heartbeat", "id": "r1", "at": 110.0, "signal": signal})
    applied(machine, {"op": "service.heartbeat", "id": "r1", "at": 120.0,
                      "signal": dict(signal, value=97.0)})
    key = server_key("east", "192.0.2.50", 8080)
    assert machine.signals[key]["since"] == 110.0 and machine.signals[key]["value"] == 97.0
    applied(machine, {"op": "service.heartbeat", "id": "r1", "at": 130.0, "signal": {"type": "clear"}})
    assert machine.signals[key]["cleared_at"] == 130.0


def test_expire_removes_only_registrations_past_their_ttl_at_the_commands_time():
    """service.expire removes the listed ids whose last_heartbeat + ttl <= at, and their signal/veto."""
    machine = StateMachine()
    applied(machine, register("old", at=0.0))
    applied(machine, register("new", port=1, at=20.0))
    applied(machine, {"op": "veto.set", "region": "east", "address": "192.0.2.50", "port": 8080,
                      "reason": "overwatch", "at": 5.0})
    assert applied(machine, {"op": "service.expire", "at": 30.0, "ids": ["old", "new", "gone"]}) == ["old"]
    assert list(machine.registrations) == ["new"]
    assert machine.vetoes == {}


def test_deregister_forgets_signal_and_veto():
    """Deregistering removes the registration and the server's signal and veto."""
    machine = StateMachine()
    applied(machine, register("r1"))
    applied(machine, {"op": "signal.set", "region": "east", "address": "192.0.2.50", "port": 8080,
                      "reason": "memory_high", "value": 90, "threshold": 85, "bleed_duration": 30,
                      "at": 1.0})
    applied(machine, {"op": "service.deregister", "id": "r1"})
    assert machine.registrations == {} and machine.signals == {}
    assert not machine.apply({"op": "service.deregister", "id": "r1"})["ok"]


# -- rejection with reasons --------------------------------------------------------------


@pytest.mark.parametrize("command, reason", [
    ("not a dict", "a command must be an object"),
    ({"op": "nope"}, "unknown command 'nope'"),
    ({"op": ["list"]}, "unknown command 'list'"),
    ({"region": "r"}, "a command needs an op"),
    ({"op": "override.set", "region": "r", "address": "a", "reason": "x", "at": 1},
     "an override needs weight and/or enabled"),
    ({"op": "override.set", "region": "r", "address": "a", "weight": 1001, "at": 1},
     "bad override.set command: weight must be from 0 to 1000"),
    ({"op": "override.set", "region": "r", "address": "a", "weight": True, "at": 1},
     "bad override.set command: weight must be an integer"),
    ({"op": "override.set", "region": "r", "address": "a", "enabled": "no", "at": 1},
     "bad override.set command: enabled must be true, false or null"),
    ({"op": "override.set", "region": "r", "address": "a", "weight": 1},
     "bad override.set command: at is required"),
    ({"op": "override.set", "region": "r", "address": "a", "weight": 1, "at": float("nan")},
     "bad override.set command: at must be finite"),
    ({"op": "service.register", "id": "x", "region": "r", "address": "a", "port": 0, "weight": 1,
      "ttl": 3, "at": 1}, "bad service.register command: port must be from 1 to 65535"),
    ({"op": "service.register", "id": "x", "region": "r", "address": "a", "port": 1, "weight": 1,
      "ttl": 0, "at": 1}, "bad service.register command: ttl must be above 0"),
    ({"op": "service.register", "id": "", "region": "r", "address": "a", "port": 1, "weight": 1,
      "ttl": 3, "at": 1}, "bad service.register command: id must not be empty"),
    ({"op": "service.register", "id": "x", "region": "r", "address": "a", "port": 10**30,
      "weight": 1, "ttl": 3, "at": 1}, "bad service.register command: port must be from 1 to 65535"),
    ({"op": "service.expire", "at": 1, "ids": "abc"},
     "bad service.expire command: ids must be a list of registration ids"),
    ({"op": "service.heartbeat", "id": "x", "at": 1, "signal": {"type": "bleed", "reason": "disk"}},
     "bad service.heartbeat command: signal.reason must be one of cpu_high, memory_high, error_rate_high"),
    ({"op": "signal.set", "region": "r", "address": "a", "port": 1, "reason": "cpu_high",
      "value": 1e400, "threshold": 1, "bleed_duration": 1, "at": 1},
     "bad signal.set command: value must be finite"),
])
def test_bad_commands_are_rejected_with_a_reason(command, reason):
    """Malformed commands are rejected with a reason that starts as shown, and change nothing."""
    machine = StateMachine()
    before = machine.snapshot()
    result = machine.apply(command)
    assert result["ok"] is False
    assert result["error"].startswith(reason), result["error"]
    assert machine.snapshot() == before


# -- determinism, snapshots ------------------------------------------------------------------

_REGIONS = st.sampled_from(["east", "west"])
_ADDRESSES = st.sampled_from(["192.0.2.1", "192.0.2.2", "2001:db8::1"])
_PORTS = st.sampled_from([80, 8080])
_TIMES = st.integers(min_value=0, max_value=1000).map(float)
_IDS = st.sampled_from(["a", "b", "c", "d"])

_VALID = st.one_of(
    st.fixed_dictionaries({"op": st.just("override.set"), "region": _REGIONS, "address": _ADDRESSES,
                           "weight": st.one_of(st.none(), st.integers(0, 1000)),
                           "enabled": st.one_of(st.none(), st.booleans()), "reason": st.text(max_size=5),
                           "at": _TIMES, "expires_at": st.one_of(st.none(), _TIMES)}),
    st.fixed_dictionaries({"op": st.just("override.delete"), "region": _REGIONS, "address": _ADDRESSES}),
    st.fixed_dictionaries({"op": st.just("override.expire"), "at": _TIMES}),
    st.fixed_dictionaries({"op": st.just("service.register"), "id": _IDS, "region": _REGIONS,
                           "address": _ADDRESSES, "port": _PORTS, "weight": st.integers(0, 1000),
                           "ttl": st.integers(1, 100), "healthy": st.one_of(st.none(), st.booleans()),
                           "agent": st.one_of(st.none(), st.just("ag")), "at": _TIMES}),
    st.fixed_dictionaries({"op": st.just("service.heartbeat"), "id": _IDS, "at": _TIMES,
                           "healthy": st.one_of(st.none(), st.booleans())}),
    st.fixed_dictionaries({"op": st.just("service.deregister"), "id": _IDS}),
    st.fixed_dictionaries({"op": st.just("service.expire"), "at": _TIMES, "ids": st.lists(_IDS)}),
    st.fixed_dictionaries({"op": st.just("veto.set"), "region": _REGIONS, "address": _ADDRESSES,
                           "port": _PORTS, "reason": st.just("overwatch"), "at": _TIMES}),
    st.fixed_dictionaries({"op": st.just("signal.set"), "region": _REGIONS, "address": _ADDRESSES,
                           "port": _PORTS, "reason": st.sampled_from(["cpu_high", "memory_high"]),
                           "value": st.floats(0, 100), "threshold": st.floats(0, 100),
                           "bleed_duration": st.floats(0, 100), "at": _TIMES}),
)


@settings(max_examples=60, deadline=None)
@given(commands=st.lists(_VALID, max_size=30))
def test_same_commands_give_the_same_state(commands):
    """Two machines applying the same commands give the same results and the same snapshot."""
    one, two = StateMachine(), StateMachine()
    assert [one.apply(c) for c in commands] == [two.apply(c) for c in commands]
    assert one.snapshot() == two.snapshot()
    assert json.dumps(one.snapshot(), sort_keys=True) == json.dumps(two.snapshot(), sort_keys=True)


@settings(max_examples=40, deadline=None)
@given(commands=st.lists(_VALID, max_size=30), more=st.lists(_VALID, max_size=10))
def test_snapshot_restore_round_trip(commands, more):
    """A restored snapshot is the same state: equal snapshot, and it evolves identically."""
    original = StateMachine()
    for command in commands:
        original.apply(command)
    copy = StateMachine()
    copy.restore(json.loads(json.dumps(original.snapshot(), allow_nan=False)))
    assert copy.snapshot() == original.snapshot()
    assert [copy.apply(c) for c in more] == [original.apply(c) for c in more]
    assert copy.snapshot() == original.snapshot()


def test_snapshot_has_a_version_and_restore_refuses_others():
    """Snapshots carry their version; another version or a malformed one is refused, state unchanged."""
    machine = StateMachine()
    applied(machine, register("r1"))
    snapshot = machine.snapshot()
    assert snapshot["version"] == SNAPSHOT_VERSION
    for bad in ({**snapshot, "version": SNAPSHOT_VERSION + 1}, {"version": SNAPSHOT_VERSION,
                                                                 "overrides": []}, "junk"):
        with pytest.raises(ValueError):
            machine.restore(bad)  # type: ignore[arg-type]
        assert machine.snapshot() == snapshot


def test_snapshot_is_a_copy():
    """Changing a snapshot or an apply result does not change the state."""
    machine = StateMachine()
    value = applied(machine, register("r1"))
    value["weight"] = 999
    snapshot = machine.snapshot()
    snapshot["registrations"]["r1"]["port"] = 1
    assert machine.registrations["r1"]["weight"] == 100 and machine.registrations["r1"]["port"] == 8080


_JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner,
                                                                         max_size=3)),
    max_leaves=8)
_FIELDS = ["op", "id", "region", "address", "port", "weight", "enabled", "reason", "ttl", "at",
           "expires_at", "ids", "healthy", "agent", "signal", "value", "threshold", "bleed_duration",
           "name", "forget"]
_OPS = ["member.set", "member.remove", "override.set", "override.delete", "override.expire",
        "service.register", "service.heartbeat", "service.deregister", "service.expire",
        "signal.set", "signal.clear", "veto.set", "veto.clear", "bogus"]


@settings(max_examples=300, deadline=None)
@given(prefix=st.lists(_VALID, max_size=8),
       commands=st.lists(st.builds(lambda op, rest: {"op": op, **rest}, st.sampled_from(_OPS),
                                   st.dictionaries(st.sampled_from(_FIELDS[1:]), _JSONISH, max_size=8)),
                         max_size=8),
       junk=st.lists(_JSONISH, max_size=3))
def test_arbitrary_commands_never_raise(prefix, commands, junk):
    """Whatever a command holds, apply answers ok or a reason, and the state stays valid JSON."""
    machine = StateMachine()
    results: List[Dict[str, Any]] = []
    for command in prefix + commands + junk:
        result = machine.apply(command)
        assert isinstance(result["ok"], bool)
        if not result["ok"]:
            assert isinstance(result["error"], str) and result["error"]
        results.append(result)
    snapshot = machine.snapshot()
    text = json.dumps(snapshot, allow_nan=False)
    again = StateMachine()
    again.restore(json.loads(text))
    assert again.snapshot() == snapshot
