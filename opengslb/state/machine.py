"""The runtime-state machine: overrides, registrations, signals, vetoes, members.

Follows hashicorp/raft's FSM boundary: :meth:`StateMachine.apply` takes one
command — plain JSON-able data carrying its own timestamps and ids — and is
deterministic (no clock, no randomness, never raises: a bad command is
rejected with a reason).  :meth:`snapshot` and :meth:`restore` move the whole
state as versioned plain data.  The same class backs standalone mode (applied
locally and persisted) and cluster mode (applied on every node through Raft).
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Dict, List, Optional, Tuple

SNAPSHOT_VERSION = 1

Command = Dict[str, Any]
Result = Dict[str, Any]


def ok(value: Any = None) -> Result:
    return {"ok": True, "value": value}


def rejected(reason: str) -> Result:
    return {"ok": False, "error": reason}


def server_key(region: str, address: str, port: Optional[int] = None) -> str:
    """Key of a server in overrides (region/address) or signals and vetoes (region/address:port)."""
    return f"{region}/{address}" if port is None else f"{region}/{address}:{port}"


class StateMachine:
    """Deterministic runtime state.  Read the public dicts; change them only via :meth:`apply`."""

    def __init__(self) -> None:
        self.members: Dict[str, Dict[str, Any]] = {}        # advertise address → record
        self.overrides: Dict[str, Dict[str, Any]] = {}      # region/address → override
        self.registrations: Dict[str, Dict[str, Any]] = {}  # id → registration
        self.signals: Dict[str, Dict[str, Any]] = {}        # region/address:port → signal
        self.vetoes: Dict[str, Dict[str, Any]] = {}         # region/address:port → veto
        self.applied = 0

    # -- the FSM contract ------------------------------------------------

    def apply(self, command: Command) -> Result:
        """Apply ``command``; returns ``{"ok": True, "value": ...}`` or ``{"ok": False, "error": ...}``."""
        try:
            if not isinstance(command, dict):
                return rejected("a command must be an object")
            handler = self._handlers().get(command.get("op"))  # type: ignore[arg-type]
            if handler is None:
                return rejected(f"unknown command {command.get('op')!r}")
            result = handler(command)
            if result["ok"]:
                self.applied += 1
            return result
        except (KeyError, TypeError, ValueError) as error:
            return rejected(f"malformed {command.get('op')} command: {error}")

    def snapshot(self) -> Dict[str, Any]:
        """The whole state as versioned plain data (a deep copy)."""
        return copy.deepcopy({
            "version": SNAPSHOT_VERSION, "members": self.members, "overrides": self.overrides,
            "registrations": self.registrations, "signals": self.signals, "vetoes": self.vetoes,
            "applied": self.applied,
        })

    def restore(self, snapshot: Dict[str, Any]) -> None:
        """Replace the state with ``snapshot``; ValueError for an unknown version."""
        if snapshot.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"unsupported runtime-state snapshot version {snapshot.get('version')!r}")
        data = copy.deepcopy(snapshot)
        self.members = data["members"]
        self.overrides = data["overrides"]
        self.registrations = data["registrations"]
        self.signals = data["signals"]
        self.vetoes = data["vetoes"]
        self.applied = data.get("applied", 0)

    # -- reading helpers ---------------------------------------------------

    def active_overrides(self, now: float) -> Dict[str, Dict[str, Any]]:
        """Overrides whose expiry (if any) is later than ``now``."""
        return {k: o for k, o in self.overrides.items()
                if o.get("expires_at") is None or o["expires_at"] > now}

    def find_registration(self, region: str, address: str, port: int) -> Optional[Dict[str, Any]]:
        for registration in self.registrations.values():
            if (registration["region"], registration["address"], registration["port"]) == (region, address, port):
                return registration
        return None

    # -- handlers -------------------------------------------------------------

    def _handlers(self) -> Dict[str, Callable[[Command], Result]]:
        return {
            "member.set": self._member_set,
            "member.remove": self._member_remove,
            "override.set": self._override_set,
            "override.delete": self._override_delete,
            "override.expire": self._override_expire,
            "service.register": self._service_register,
            "service.heartbeat": self._service_heartbeat,
            "service.deregister": self._service_deregister,
            "service.expire": self._service_expire,
            "signal.set": self._signal_set,
            "signal.clear": self._signal_clear,
            "veto.set": self._veto_set,
            "veto.clear": self._veto_clear,
        }

    def _member_set(self, c: Command) -> Result:
        record = {"address": str(c["address"]), "name": str(c["name"]), "dns": c.get("dns"),
                  "api": c.get("api"), "config_hash": c.get("config_hash"), "updated_at": float(c["at"])}
        self.members[record["address"]] = record
        return ok(record)

    def _member_remove(self, c: Command) -> Result:
        return ok(self.members.pop(str(c["address"]), None))

    def _override_set(self, c: Command) -> Result:
        weight, enabled = c.get("weight"), c.get("enabled")
        if weight is None and enabled is None:
            return rejected("an override needs weight and/or enabled")
        if weight is not None and not (isinstance(weight, int) and 0 <= weight <= 1000):
            return rejected("weight must be an integer from 0 to 1000")
        if enabled is not None and not isinstance(enabled, bool):
            return rejected("enabled must be true or false")
        key = server_key(c["region"], c["address"])
        record = {"region": c["region"], "address": c["address"], "weight": weight, "enabled": enabled,
                  "reason": str(c.get("reason") or ""), "created_at": float(c["at"]),
                  "expires_at": None if c.get("expires_at") is None else float(c["expires_at"])}
        self.overrides[key] = record
        return ok(record)

    def _override_delete(self, c: Command) -> Result:
        removed = self.overrides.pop(server_key(c["region"], c["address"]), None)
        if removed is None:
            return rejected("no such override")
        return ok(removed)

    def _override_expire(self, c: Command) -> Result:
        now = float(c["at"])
        expired = [k for k, o in self.overrides.items()
                   if o.get("expires_at") is not None and o["expires_at"] <= now]
        for key in expired:
            del self.overrides[key]
        return ok(expired)

    def _service_register(self, c: Command) -> Result:
        existing = self.find_registration(c["region"], c["address"], int(c["port"]))
        claim = c.get("healthy")
        if existing is not None:
            existing.update({"weight": int(c["weight"]), "ttl": float(c["ttl"]), "agent": c.get("agent"),
                             "claim": claim, "last_heartbeat": float(c["at"])})
            return ok(dict(existing, created=False))
        record = {"id": str(c["id"]), "region": c["region"], "address": c["address"],
                  "port": int(c["port"]), "weight": int(c["weight"]), "ttl": float(c["ttl"]),
                  "agent": c.get("agent"), "claim": claim, "registered_at": float(c["at"]),
                  "last_heartbeat": float(c["at"])}
        self.registrations[record["id"]] = record
        return ok(dict(record, created=True))

    def _service_heartbeat(self, c: Command) -> Result:
        registration = self.registrations.get(str(c["id"]))
        if registration is None:
            return rejected("no such registration")
        registration["last_heartbeat"] = max(registration["last_heartbeat"], float(c["at"]))
        if "healthy" in c:
            registration["claim"] = c["healthy"]
        return ok(registration)

    def _service_deregister(self, c: Command) -> Result:
        removed = self.registrations.pop(str(c["id"]), None)
        if removed is None:
            return rejected("no such registration")
        self._forget_server(removed)
        return ok(removed)

    def _service_expire(self, c: Command) -> Result:
        now = float(c["at"])
        expired: List[str] = []
        for rid in list(c["ids"]):
            registration = self.registrations.get(rid)
            if registration is not None and registration["last_heartbeat"] + registration["ttl"] <= now:
                self._forget_server(self.registrations.pop(rid))
                expired.append(rid)
        return ok(expired)

    def _forget_server(self, registration: Dict[str, Any]) -> None:
        key = server_key(registration["region"], registration["address"], registration["port"])
        self.signals.pop(key, None)
        self.vetoes.pop(key, None)

    def _signal_set(self, c: Command) -> Result:
        key = server_key(c["region"], c["address"], int(c["port"]))
        previous = self.signals.get(key)
        record = {"reason": str(c["reason"]), "value": float(c["value"]), "threshold": float(c["threshold"]),
                  "bleed_duration": float(c["bleed_duration"]),
                  "since": previous["since"] if previous and previous["reason"] == c["reason"] and
                  previous.get("cleared_at") is None else float(c["at"]),
                  "cleared_at": None}
        self.signals[key] = record
        return ok(record)

    def _signal_clear(self, c: Command) -> Result:
        key = server_key(c["region"], c["address"], int(c["port"]))
        record = self.signals.get(key)
        if record is None:
            return ok(None)
        if c.get("forget"):
            return ok(self.signals.pop(key))
        if record.get("cleared_at") is None:
            record["cleared_at"] = float(c["at"])
        return ok(record)

    def _veto_set(self, c: Command) -> Result:
        key = server_key(c["region"], c["address"], int(c["port"]))
        record = {"reason": str(c["reason"]), "since": float(c["at"]),
                  "expires_at": None if c.get("expires_at") is None else float(c["expires_at"])}
        self.vetoes[key] = record
        return ok(record)

    def _veto_clear(self, c: Command) -> Result:
        return ok(self.vetoes.pop(server_key(c["region"], c["address"], int(c["port"])), None))


def registration_servers(machine: StateMachine) -> List[Tuple[str, Dict[str, Any]]]:
    """(region, registration) pairs in registration order."""
    ordered = sorted(machine.registrations.values(), key=lambda r: (r["registered_at"], r["id"]))
    return [(r["region"], r) for r in ordered]
