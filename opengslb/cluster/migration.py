"""Moving the runtime state between modes (docs/cluster.md, "Migration").

* **Cluster → standalone** (:func:`adopt_cluster_state`): a standalone node
  starting on a data directory that holds cluster state takes the last
  committed runtime state as its own (``state.json``) and moves the cluster
  files to ``cluster-STAMP/``.
* **Standalone → cluster** (:class:`StandaloneImport`): a ``--bootstrap``
  node over a standalone ``state.json`` sets it aside as
  ``standalone-import.json`` (so it is imported once, even across restarts)
  and proposes it as one ``state.import`` command once it leads; a joining
  node never imports (it would overwrite the cluster's state).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Dict, Optional

from twisted.logger import Logger

from opengslb.config.model import Config
from opengslb.state.local import (
    IMPORT_PENDING_FILE,
    IMPORTED_FILE,
    STATE_FILE,
    StateDirError,
    check_data_dir,
    write_atomically,
)
from opengslb.state.raft import (
    ProposalFailed,
    RaftNode,
    RaftStatus,
    archive_cluster_state,
    cluster_state_present,
    describe_counts,
    read_committed_state,
)

__all__ = ["StandaloneImport", "adopt_cluster_state"]

log = Logger(namespace="opengslb")


def adopt_cluster_state(data_dir: str, now: float) -> None:
    """Cluster → standalone: make the cluster's last committed state the standalone one.

    Start-up, before serving; ``now`` (the reactor's time) names the archive.
    Raises :class:`StateDirError` when the data directory is unusable or the
    cluster state cannot be read or moved.
    """
    check_data_dir(data_dir)
    if not cluster_state_present(data_dir):
        return
    try:
        snapshot, commit = read_committed_state(data_dir)
    except ValueError as error:
        raise StateDirError(f"{error}; move the cluster files away to start with an empty state") from None
    snapshot["members"] = {}
    try:
        write_atomically(os.path.join(data_dir, STATE_FILE), json.dumps(snapshot, sort_keys=True).encode())
        archive = archive_cluster_state(data_dir, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)))
    except OSError as error:
        raise StateDirError(f"cannot take over the cluster state in {data_dir}: {error}") from None
    counts = describe_counts(snapshot)
    log.info("standalone: took the cluster's last committed runtime state (log index {commit}) as the "
             "standalone state: {overrides} overrides, {registrations} registrations, {signals} signals, "
             "{vetoes} vetoes; the cluster files were moved to {archive}", commit=commit, archive=archive,
             event="migrated_from_cluster", **counts)


class StandaloneImport:
    """Standalone → cluster: the pending standalone state, proposed once this node leads.

    :param reactor: schedules retries (``callLater``).
    :param raft: the Raft node to propose through.
    :param failed: called with one line when the pending state cannot be
        read (the process prints it and exits 1); it must not return.
    """

    #: Seconds before a proposal that could not be committed is tried again.
    RETRY = 1.0

    def __init__(self, reactor: Any, raft: RaftNode, failed: Callable[[str], None]) -> None:
        self._reactor = reactor
        self._raft = raft
        self._failed = failed
        self._path: Optional[str] = None
        self._snapshot: Optional[Dict[str, Any]] = None
        self._importing = False

    def prepare(self, config: Config) -> None:
        """Set a standalone ``state.json`` aside for import (``--bootstrap`` on a fresh node only).

        Raises :class:`StateDirError` when it cannot be moved.
        """
        data_dir = config.cluster.raft.data_dir
        state, pending = os.path.join(data_dir, STATE_FILE), os.path.join(data_dir, IMPORT_PENDING_FILE)
        self._path = pending
        fresh = not self._raft.has_state()
        if fresh and os.path.exists(state):
            if not config.cluster.bootstrap:
                log.warn("{path} holds a standalone runtime state that a joining node does not import "
                         "(only --bootstrap imports it)", path=state, event="migration_skipped")
                return
            try:
                os.replace(state, pending)
            except OSError as error:
                raise StateDirError(f"cannot set the standalone state {state} aside for import: {error}") from None
        if os.path.exists(pending):
            try:
                with open(pending, "rb") as handle:
                    snapshot = json.loads(handle.read())
                describe_counts(snapshot)
            except (OSError, ValueError) as error:
                self._failed(f"cannot read the standalone state to import, {pending}: {error}")
            self._snapshot = snapshot

    def when_leading(self, status: RaftStatus) -> None:
        """A Raft status listener: propose the pending state once this node is the ready leader."""
        if self._snapshot is None or self._importing or not (status.is_leader and status.leader_ready):
            return
        self._importing = True
        d = self._raft.propose({"op": "state.import", "snapshot": self._snapshot})

        def done(result: Dict[str, Any]) -> None:
            self._importing = False
            self._snapshot = None
            if not result.get("ok"):
                log.error("the standalone state was not imported: {error}", error=result.get("error"),
                          event="migration_failed")
                return
            assert self._path is not None
            imported = os.path.join(os.path.dirname(self._path), IMPORTED_FILE)
            os.replace(self._path, imported)
            log.info("cluster: imported the standalone runtime state: {overrides} overrides, {registrations} "
                     "registrations, {signals} signals, {vetoes} vetoes (kept as {kept})", kept=imported,
                     event="migrated_from_standalone", **result["value"])

        def failed(failure: Any) -> None:
            failure.trap(ProposalFailed)
            self._importing = False
            self._reactor.callLater(self.RETRY, self.when_leading, self._raft.status)

        d.addCallbacks(done, failed)
