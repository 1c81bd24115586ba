"""Standalone runtime state: the state machine applied locally, persisted to disk.

Every accepted command is acknowledged only after the new state is on disk
(written to a temporary file, fsynced, atomically renamed over
``state.json``, directory fsynced).  Writes run in a worker thread, one at a
time and in order, so the reactor never waits for the disk.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Dict, List

from twisted.internet import defer, threads

from opengslb.state.machine import Command, Result, StateMachine

STATE_FILE = "state.json"
#: Standalone → cluster (docs/cluster.md, Migration): ``--bootstrap`` renames ``state.json`` to
#: this name; once the new cluster committed its import it is renamed to :data:`IMPORTED_FILE`.
IMPORT_PENDING_FILE = "standalone-import.json"
IMPORTED_FILE = "standalone-imported.json"


class StateDirError(Exception):
    """The data directory cannot be used (the message says why)."""


def check_data_dir(path: str) -> None:
    """Create ``path`` if needed and make sure it is a writable directory; StateDirError otherwise."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError as error:
        raise StateDirError(f"cannot create data directory {path}: {error.strerror}") from None
    if not os.path.isdir(path):
        raise StateDirError(f"data directory {path} is not a directory")
    if not os.access(path, os.W_OK | os.X_OK):
        raise StateDirError(f"data directory {path} is not writable")


def write_atomically(path: str, data: bytes) -> None:
    """Replace ``path`` with ``data`` durably (tmp + fsync + rename + dir fsync)."""
    directory = os.path.dirname(path) or "."
    temporary = f"{path}.tmp"
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class LocalStore:
    """Runtime state for standalone mode.

    ``propose(command)`` applies the command and fires with its result once
    the state is durable; listeners run on the reactor thread after every
    accepted command.
    """

    def __init__(self, reactor: Any, data_dir: str) -> None:
        self._reactor = reactor
        self.data_dir = data_dir
        self.path = os.path.join(data_dir, STATE_FILE)
        self.machine = StateMachine()
        self._lock = defer.DeferredLock()
        self._listeners: List[Callable[[], None]] = []

    def open(self) -> None:
        """Check the data directory and load the saved state (start-up, before serving)."""
        check_data_dir(self.data_dir)
        if os.path.exists(self.path):
            try:
                with open(self.path, "rb") as handle:
                    self.machine.restore(json.loads(handle.read()))
            except (OSError, ValueError) as error:
                raise StateDirError(f"cannot read runtime state {self.path}: {error}") from None

    @property
    def writable(self) -> bool:
        """Standalone state always accepts writes."""
        return True

    def add_listener(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def propose(self, command: Command) -> "defer.Deferred[Result]":
        """Apply ``command``; fires with the result after it is on disk (or at once when rejected)."""
        result = self.machine.apply(command)
        if not result["ok"]:
            return defer.succeed(result)
        data = json.dumps(self.machine.snapshot(), sort_keys=True).encode()
        for listener in self._listeners:
            listener()
        d: defer.Deferred[Any] = self._lock.run(threads.deferToThreadPool, self._reactor, self._reactor.getThreadPool(),
                           write_atomically, self.path, data)
        d.addCallback(lambda _: result)
        return d

    def status(self) -> Dict[str, Any]:
        return {"mode": "standalone", "path": self.path, "applied": self.machine.applied}

    def close(self) -> "defer.Deferred[None]":
        """Fires once every pending write is on disk."""
        done: defer.Deferred[None] = self._lock.run(defer.succeed, None)
        return done
