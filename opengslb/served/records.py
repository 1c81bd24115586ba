"""The runtime-state input of the served policy: a snapshot of the replicated records.

:class:`RuntimeRecords` bundles what the state machine holds about servers
(overrides, served registrations, vetoes, predictive signals) plus the
last-heartbeat times this node has seen but not replicated (SPEC §6, coarse
heartbeats).  :func:`served_registrations` decides which registrations are
candidates at all (pure: configuration + registrations → who is served).

The mappings are the live records of the store, not copies: a snapshot is
valid for the reactor turn it was taken in (the store only changes on the
reactor thread, between turns).  Never modify them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

from opengslb.config.model import Config, ServerConfig
from opengslb.health.tracker import ServerKey
from opengslb.state.machine import server_key

__all__ = ["NO_RECORDS", "Registrations", "RuntimeRecords", "served_registrations"]

Record = Mapping[str, Any]


@dataclass(frozen=True)
class RuntimeRecords:
    """Overrides, served registrations, vetoes and bleed signals as one snapshot.

    ``overrides``: ``region/address`` → record (``weight``, ``enabled``,
    ``reason``, ``expires_at``); ``registrations``: served registrations by
    server key (see :func:`served_registrations`); ``vetoes`` and
    ``signals``: ``region/address:port`` → record; ``last_seen``:
    registration id → the latest heartbeat this node saw (may be newer than
    the replicated ``last_heartbeat``).
    """

    overrides: Mapping[str, Record] = field(default_factory=dict)
    registrations: Mapping[ServerKey, Record] = field(default_factory=dict)
    vetoes: Mapping[str, Record] = field(default_factory=dict)
    signals: Mapping[str, Record] = field(default_factory=dict)
    last_seen: Mapping[str, float] = field(default_factory=dict)

    def override(self, region: str, address: str, now: float) -> Optional[Record]:
        """The override of region/address unless it has expired at ``now``."""
        override = self.overrides.get(server_key(region, address))
        if override is None:
            return None
        expires = override.get("expires_at")
        return None if expires is not None and expires <= now else override

    def veto(self, key: ServerKey, now: float) -> Optional[Record]:
        """The veto of ``key`` in force at ``now`` (``None`` when none, or expired)."""
        veto = self.vetoes.get(server_key(key.region, key.address, key.port))
        if veto is None:
            return None
        expires = veto.get("expires_at")
        return veto if expires is None or expires > now else None

    def signal(self, key: ServerKey) -> Optional[Record]:
        """The predictive signal record of ``key`` (active or cleared), or ``None``."""
        return self.signals.get(server_key(key.region, key.address, key.port))

    def heard(self, registration: Record) -> float:
        """The latest heartbeat known here of ``registration``: replicated or only seen by this node."""
        return max(float(registration["last_heartbeat"]),
                   self.last_seen.get(registration["id"], float("-inf")))


#: No runtime state at all.
NO_RECORDS = RuntimeRecords()


@dataclass(frozen=True)
class Registrations:
    """Which registrations are candidates (see :func:`served_registrations`).

    ``extra``: region → its served registrations as servers, in registration
    order; ``served``: server key → registration record; ``not_served``:
    registration id → why it is not served.
    """

    extra: Mapping[str, Tuple[ServerConfig, ...]]
    served: Mapping[ServerKey, Record]
    not_served: Mapping[str, str]


def served_registrations(config: Config, registrations: Iterable[Record]) -> Registrations:
    """Split ``registrations`` (in registration order) into served ones and the rest.

    A registration is a candidate of its region (after the configured
    servers) unless its region is not configured, or its region+address is a
    configured server (the configuration wins); either way it stays in the
    store, and ``not_served`` says why.
    """
    regions = config.regions_by_name
    configured = config.server_addresses  # (region, address)
    extra: Dict[str, List[ServerConfig]] = {}
    served: Dict[ServerKey, Record] = {}
    not_served: Dict[str, str] = {}
    for registration in registrations:
        rid, region, address = registration["id"], registration["region"], registration["address"]
        if region not in regions:
            not_served[rid] = f"region {region} is not in the configuration"
            continue
        if (region, address) in configured:
            not_served[rid] = f"{address} is a configured server of region {region}"
            continue
        server = ServerConfig(address=address, port=int(registration["port"]),
                              weight=int(registration["weight"]))
        extra.setdefault(region, []).append(server)
        served[ServerKey(region, address, server.port)] = registration
    return Registrations({region: tuple(servers) for region, servers in extra.items()}, served, not_served)
