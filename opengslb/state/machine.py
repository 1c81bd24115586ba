"""The runtime-state machine: overrides, registrations, signals, vetoes, members.

Follows hashicorp/raft's FSM boundary: :meth:`StateMachine.apply` takes one
command — plain JSON-able data carrying its own timestamps and ids — and is
deterministic (no clock, no randomness, never raises: a bad command is
rejected with a reason).  :meth:`snapshot` and :meth:`restore` move the whole
state as versioned plain data.  The same class backs standalone mode (applied
locally and persisted) and cluster mode (applied on every node through Raft).

Every command is validated completely *before* anything changes, so a
rejected command leaves the state exactly as it was, and the state only ever
holds well-typed, finite, JSON-serialisable values.

Commands (``op`` and their fields; ``at`` is the proposer's clock, seconds):

===================== =====================================================
``member.set``        address, name, dns?, api?, config_hash?, at
``member.remove``     address
``override.set``      region, address, weight? (0–1000), enabled?, reason,
                      at, expires_at? — replaces the override
``override.delete``   region, address
``override.expire``   at — drops overrides with ``expires_at <= at``
``service.register``  id, region, address, port, weight, ttl, agent?,
                      healthy? (the claim), at — an existing
                      region+address+port keeps its id
``service.heartbeat`` id, at, healthy? (present: replaces the claim),
                      signal? (``{"type": "bleed"|"clear", ...}``)
``service.deregister`` id
``service.expire``    at, ids — drops the listed registrations whose
                      ``last_heartbeat + ttl <= at``
``signal.set``        region, address, port, reason, value, threshold,
                      bleed_duration, at
``signal.clear``      region, address, port, at, forget?
``veto.set``          region, address, port, reason, at, expires_at?
``veto.clear``        region, address, port
``state.import``      snapshot (a :meth:`StateMachine.snapshot`) — replaces
                      overrides, registrations, signals and vetoes with the
                      snapshot's (members are kept); the value is their counts
===================== =====================================================
"""

from __future__ import annotations

import copy
import math
from typing import Any, Callable, Dict, List, Optional, Tuple

SNAPSHOT_VERSION = 1

Command = Dict[str, Any]
Result = Dict[str, Any]

MAX_WEIGHT = 1000
MAX_TEXT = 1024          # reasons, names, agent ids
MAX_ID = 64              # registration ids
MAX_TTL_SECONDS = 7 * 86400.0
SIGNAL_REASONS = ("cpu_high", "memory_high", "error_rate_high")
SIGNAL_TYPES = ("bleed", "clear")


def ok(value: Any = None) -> Result:
    return {"ok": True, "value": value}


def rejected(reason: str) -> Result:
    return {"ok": False, "error": reason}


def state_counts(machine: "StateMachine") -> Dict[str, int]:
    """How many overrides, registrations, signals and vetoes ``machine`` holds (migration logs)."""
    return {"overrides": len(machine.overrides), "registrations": len(machine.registrations),
            "signals": len(machine.signals), "vetoes": len(machine.vetoes)}


def server_key(region: str, address: str, port: Optional[int] = None) -> str:
    """Key of a server in overrides (region/address) or signals and vetoes (region/address:port)."""
    return f"{region}/{address}" if port is None else f"{region}/{address}:{port}"


class Invalid(Exception):
    """A command field is missing or has the wrong type or range (the message says which)."""


# -- field readers: value of c[key], or Invalid --------------------------------------


def _text(c: Command, key: str, *, optional: bool = False, empty: bool = False,
          limit: int = MAX_TEXT) -> Optional[str]:
    value = c.get(key)
    if value is None:
        if optional:
            return None
        raise Invalid(f"{key} is required")
    if not isinstance(value, str):
        raise Invalid(f"{key} must be a string")
    if not value and not empty:
        raise Invalid(f"{key} must not be empty")
    if len(value) > limit:
        raise Invalid(f"{key} is longer than {limit} characters")
    return value


def _required_text(c: Command, key: str, **kwargs: Any) -> str:
    value = _text(c, key, **kwargs)
    assert value is not None
    return value


def _number(c: Command, key: str, *, optional: bool = False) -> Optional[float]:
    value = c.get(key)
    if value is None:
        if optional:
            return None
        raise Invalid(f"{key} is required")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Invalid(f"{key} must be a number")
    try:
        result = float(value)
    except OverflowError:
        raise Invalid(f"{key} is out of range") from None
    if not math.isfinite(result):
        raise Invalid(f"{key} must be finite")
    return result


def _time(c: Command, key: str = "at") -> float:
    value = _number(c, key)
    assert value is not None
    return value


def _integer(c: Command, key: str, low: int, high: int, *, optional: bool = False) -> Optional[int]:
    value = c.get(key)
    if value is None:
        if optional:
            return None
        raise Invalid(f"{key} is required")
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(f"{key} must be an integer")
    if not low <= value <= high:
        raise Invalid(f"{key} must be from {low} to {high}")
    return int(value)


def _required_integer(c: Command, key: str, low: int, high: int) -> int:
    value = _integer(c, key, low, high)
    assert value is not None
    return value


def _flag(c: Command, key: str) -> Optional[bool]:
    value = c.get(key)
    if value is not None and not isinstance(value, bool):
        raise Invalid(f"{key} must be true, false or null")
    return value


def _endpoint(c: Command) -> Tuple[str, str, int]:
    return (_required_text(c, "region"), _required_text(c, "address"),
            _required_integer(c, "port", 1, 65535))


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
        """Apply ``command``; returns ``{"ok": True, "value": ...}`` or ``{"ok": False, "error": ...}``.

        Never raises.  A rejected command changes nothing.  ``value`` is a
        copy: changing it does not change the state.
        """
        if not isinstance(command, dict):
            return rejected("a command must be an object")
        op = command.get("op")
        if op is None:
            return rejected("a command needs an op")
        handler = self._handlers().get(op) if isinstance(op, str) else None
        if handler is None:
            shown = op if isinstance(op, str) and len(op) <= 40 else type(op).__name__
            return rejected(f"unknown command {shown!r}")
        try:
            result = handler(command)
        except Invalid as error:
            return rejected(f"bad {op} command: {error}")
        except Exception as error:  # a bug: still never let it escape into the log replay
            return rejected(f"bad {op} command: {type(error).__name__}")
        if result["ok"]:
            self.applied += 1
            result = {"ok": True, "value": copy.deepcopy(result["value"])}
        return result

    def snapshot(self) -> Dict[str, Any]:
        """The whole state as versioned plain data (a deep copy)."""
        return copy.deepcopy({
            "version": SNAPSHOT_VERSION, "members": self.members, "overrides": self.overrides,
            "registrations": self.registrations, "signals": self.signals, "vetoes": self.vetoes,
            "applied": self.applied,
        })

    def restore(self, snapshot: Dict[str, Any]) -> None:
        """Replace the state with ``snapshot``.

        :raise ValueError: for an unknown version or a snapshot that is not
            shaped like one (the state is then left unchanged).
        """
        if not isinstance(snapshot, dict):
            raise ValueError("a runtime-state snapshot must be an object")
        if snapshot.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"unsupported runtime-state snapshot version {snapshot.get('version')!r}")
        parts = {}
        for name in ("members", "overrides", "registrations", "signals", "vetoes"):
            part = snapshot.get(name, {})
            if not isinstance(part, dict) or not all(isinstance(v, dict) for v in part.values()):
                raise ValueError(f"runtime-state snapshot: {name} must map keys to objects")
            parts[name] = copy.deepcopy(part)
        applied = snapshot.get("applied", 0)
        if isinstance(applied, bool) or not isinstance(applied, int):
            raise ValueError("runtime-state snapshot: applied must be an integer")
        self.members = parts["members"]
        self.overrides = parts["overrides"]
        self.registrations = parts["registrations"]
        self.signals = parts["signals"]
        self.vetoes = parts["vetoes"]
        self.applied = applied

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
            "state.import": self._state_import,
        }

    def _state_import(self, c: Command) -> Result:
        """Take another state's runtime parts (migration from standalone, docs/cluster.md)."""
        scratch = StateMachine()
        try:
            scratch.restore(c.get("snapshot"))  # type: ignore[arg-type]
        except ValueError as error:
            raise Invalid(str(error)) from None
        self.overrides, self.registrations = scratch.overrides, scratch.registrations
        self.signals, self.vetoes = scratch.signals, scratch.vetoes
        return ok(state_counts(scratch))

    def _member_set(self, c: Command) -> Result:
        address = _required_text(c, "address")
        record = {"address": address, "name": _text(c, "name", empty=True),
                  "dns": _text(c, "dns", optional=True), "api": _text(c, "api", optional=True),
                  "config_hash": _text(c, "config_hash", optional=True), "updated_at": _time(c)}
        self.members[address] = record
        return ok(record)

    def _member_remove(self, c: Command) -> Result:
        return ok(self.members.pop(_required_text(c, "address"), None))

    def _override_set(self, c: Command) -> Result:
        region, address = _required_text(c, "region"), _required_text(c, "address")
        weight = _integer(c, "weight", 0, MAX_WEIGHT, optional=True)
        enabled = _flag(c, "enabled")
        if weight is None and enabled is None:
            return rejected("an override needs weight and/or enabled")
        record = {"region": region, "address": address, "weight": weight, "enabled": enabled,
                  "reason": _text(c, "reason", optional=True, empty=True) or "",
                  "created_at": _time(c), "expires_at": _number(c, "expires_at", optional=True)}
        self.overrides[server_key(region, address)] = record
        return ok(record)

    def _override_delete(self, c: Command) -> Result:
        key = server_key(_required_text(c, "region"), _required_text(c, "address"))
        removed = self.overrides.pop(key, None)
        if removed is None:
            return rejected("no such override")
        return ok(removed)

    def _override_expire(self, c: Command) -> Result:
        now = _time(c)
        expired = [k for k, o in self.overrides.items()
                   if o.get("expires_at") is not None and o["expires_at"] <= now]
        for key in expired:
            del self.overrides[key]
        return ok(expired)

    def _service_register(self, c: Command) -> Result:
        rid = _required_text(c, "id", limit=MAX_ID)
        region, address, port = _endpoint(c)
        weight = _required_integer(c, "weight", 0, MAX_WEIGHT)
        ttl = _number(c, "ttl")
        assert ttl is not None
        if not 0 < ttl <= MAX_TTL_SECONDS:
            raise Invalid(f"ttl must be above 0 and at most {MAX_TTL_SECONDS:g} seconds")
        agent = _text(c, "agent", optional=True, empty=True)
        claim = _flag(c, "healthy")
        at = _time(c)
        existing = self.find_registration(region, address, port)
        if existing is not None:
            existing.update({"weight": weight, "ttl": ttl, "agent": agent, "claim": claim,
                             "last_heartbeat": max(existing["last_heartbeat"], at)})
            return ok(dict(existing, created=False))
        if rid in self.registrations:
            return rejected(f"registration id {rid} is already in use by another server")
        record = {"id": rid, "region": region, "address": address, "port": port, "weight": weight,
                  "ttl": ttl, "agent": agent, "claim": claim, "registered_at": at,
                  "last_heartbeat": at}
        self.registrations[rid] = record
        return ok(dict(record, created=True))

    def _service_heartbeat(self, c: Command) -> Result:
        rid = _required_text(c, "id", limit=MAX_ID)
        at = _time(c)
        claim = _flag(c, "healthy")
        signal = _heartbeat_signal(c.get("signal")) if c.get("signal") is not None else None
        registration = self.registrations.get(rid)
        if registration is None:
            return rejected("no such registration")
        registration["last_heartbeat"] = max(registration["last_heartbeat"], at)
        if "healthy" in c:
            registration["claim"] = claim
        if signal is not None:
            key = server_key(registration["region"], registration["address"], registration["port"])
            if signal["type"] == "bleed":
                self._set_signal(key, signal, at)
            else:
                self._clear_signal(key, at, forget=False)
        return ok(registration)

    def _service_deregister(self, c: Command) -> Result:
        removed = self.registrations.pop(_required_text(c, "id", limit=MAX_ID), None)
        if removed is None:
            return rejected("no such registration")
        self._forget_server(removed)
        return ok(removed)

    def _service_expire(self, c: Command) -> Result:
        now = _time(c)
        ids = c.get("ids")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise Invalid("ids must be a list of registration ids")
        expired: List[str] = []
        for rid in ids:
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
        region, address, port = _endpoint(c)
        signal = _signal_fields(c)
        return ok(self._set_signal(server_key(region, address, port), signal, _time(c)))

    def _set_signal(self, key: str, signal: Dict[str, Any], at: float) -> Dict[str, Any]:
        previous = self.signals.get(key)
        continuing = (previous is not None and previous["reason"] == signal["reason"]
                      and previous.get("cleared_at") is None)
        record = {"reason": signal["reason"], "value": signal["value"],
                  "threshold": signal["threshold"], "bleed_duration": signal["bleed_duration"],
                  "since": previous["since"] if continuing and previous is not None else at,
                  "cleared_at": None}
        self.signals[key] = record
        return record

    def _signal_clear(self, c: Command) -> Result:
        region, address, port = _endpoint(c)
        at = _time(c)
        forget = _flag(c, "forget")
        return ok(self._clear_signal(server_key(region, address, port), at, bool(forget)))

    def _clear_signal(self, key: str, at: float, forget: bool) -> Optional[Dict[str, Any]]:
        record = self.signals.get(key)
        if record is None:
            return None
        if forget:
            return self.signals.pop(key)
        if record.get("cleared_at") is None:
            record["cleared_at"] = at
        return record

    def _veto_set(self, c: Command) -> Result:
        region, address, port = _endpoint(c)
        record = {"reason": _required_text(c, "reason"), "since": _time(c),
                  "expires_at": _number(c, "expires_at", optional=True)}
        self.vetoes[server_key(region, address, port)] = record
        return ok(record)

    def _veto_clear(self, c: Command) -> Result:
        region, address, port = _endpoint(c)
        return ok(self.vetoes.pop(server_key(region, address, port), None))


def _signal_fields(c: Command) -> Dict[str, Any]:
    """reason, value, threshold and bleed_duration of a bleed signal, validated."""
    reason = _required_text(c, "reason")
    if reason not in SIGNAL_REASONS:
        raise Invalid(f"reason must be one of {', '.join(SIGNAL_REASONS)}")
    duration = _number(c, "bleed_duration")
    assert duration is not None
    if duration < 0:
        raise Invalid("bleed_duration must not be negative")
    return {"reason": reason, "value": _number(c, "value"), "threshold": _number(c, "threshold"),
            "bleed_duration": duration}


def _heartbeat_signal(value: Any) -> Dict[str, Any]:
    """The ``signal`` of a heartbeat command, validated: bleed (with its fields) or clear."""
    if not isinstance(value, dict):
        raise Invalid("signal must be an object")
    kind = value.get("type")
    if kind not in SIGNAL_TYPES:
        raise Invalid("signal.type must be bleed or clear")
    if kind == "clear":
        return {"type": "clear"}
    try:
        return {"type": "bleed", **_signal_fields(value)}
    except Invalid as error:
        raise Invalid(f"signal.{error}") from None


def registration_servers(machine: StateMachine) -> List[Tuple[str, Dict[str, Any]]]:
    """(region, registration) pairs in registration order."""
    ordered = sorted(machine.registrations.values(), key=lambda r: (r["registered_at"], r["id"]))
    return [(r["region"], r) for r in ordered]
