"""Honest write outcomes (issue 13): a write that is not confirmed answers 503 with ``outcome``.

Replies are checked against the OpenAPI document by ``tests.unit.test_api.call``.
"""

from __future__ import annotations

from typing import Any, Dict

import pytest
from twisted.internet.defer import Deferred, fail

from opengslb.state.raft import NOT_APPLIED, UNKNOWN, ProposalFailed
from tests.unit.test_api import RuntimeWorld

WRITES = [
    ("PUT", "/api/v1/overrides/east/192.0.2.10", {"weight": 0, "reason": "x"}),
    ("POST", "/api/v1/services", {"region": "east", "address": "192.0.2.60", "port": 80, "ttl": "30s"}),
]


@pytest.mark.parametrize("method, path, body", WRITES)
@pytest.mark.parametrize("outcome", [NOT_APPLIED, UNKNOWN])
def test_unconfirmed_write_is_503_with_its_outcome(method: str, path: str, body: Dict[str, Any],
                                                   outcome: str) -> None:
    """The store's outcome reaches the client: 503, JSON, ``outcome``, Retry-After; never a 500."""
    world = RuntimeWorld()

    def propose(command: Dict[str, Any]) -> "Deferred[Any]":
        return fail(ProposalFailed("write not committed: leader_changed", outcome))

    world.store.propose = propose  # type: ignore[method-assign]
    result = world.send(method, path, body)
    assert result.status == 503, result.body
    assert result.body["code"] == 503 and result.body["outcome"] == outcome
    if outcome == UNKNOWN:
        assert "may or may not" in result.body["error"] and "safe" in result.body["error"]
    else:
        assert "nothing was changed" in result.body["error"]


def test_a_store_failure_without_an_outcome_is_unknown() -> None:
    """A failure that does not say (a disk error after the change was applied) is "unknown"."""
    world = RuntimeWorld()
    world.store.failing = "disk full"
    result = world.send(*WRITES[0])
    assert (result.status, result.body["outcome"]) == (503, UNKNOWN)


def test_no_leader_at_all_is_not_applied() -> None:
    """A store that cannot take writes (no leader) changes nothing: "not_applied"."""
    world = RuntimeWorld()
    world.store.writable = False
    result = world.send(*WRITES[1])
    assert (result.status, result.body["outcome"]) == (503, NOT_APPLIED)
    assert world.store.machine.registrations == {}
