"""Reading a stopped node's cluster state (cluster → standalone) and importing a standalone state."""

from __future__ import annotations

import gzip
import os
from typing import Any, Dict

import pytest
from pysyncobj import pickle as pysyncobj_pickle
from pysyncobj.journal import FileJournal

from opengslb.state.machine import SNAPSHOT_VERSION, StateMachine
from opengslb.state.raft import (
    JOURNAL_FILE,
    MEMBERS_FILE,
    SNAPSHOT_FILE,
    archive_cluster_state,
    cluster_state_present,
    read_committed_state,
)


def override(address: str, weight: int) -> Dict[str, Any]:
    return {"op": "override.set", "region": "r1", "address": address, "weight": weight,
            "reason": "test", "at": 1.0}


def entry(command: Dict[str, Any]) -> bytes:
    """A regular pysyncobj log entry calling the consumer's one replicated method."""
    return b"\x00" + pysyncobj_pickle.dumps((0, (command,)))


def write_journal(data_dir: str, entries: list, commit: int) -> None:
    journal = FileJournal(os.path.join(data_dir, JOURNAL_FILE))
    journal.add(b"\x01", 1, 1)  # pysyncobj's first no-op
    for index, command in enumerate(entries, start=2):
        journal.add(entry(command), index, 1)
    journal.setRaftCommitIndex(commit)
    journal.onOneSecondTimer()
    journal._destroy()


def test_only_committed_entries_are_taken(tmp_path: Any) -> None:
    """Entries after the recorded commit index may never commit: they are left out."""
    write_journal(str(tmp_path), [override("192.0.2.1", 5), override("192.0.2.2", 6),
                                  override("192.0.2.1", 7), override("192.0.2.3", 8)], commit=4)
    assert cluster_state_present(str(tmp_path))
    snapshot, commit = read_committed_state(str(tmp_path))
    assert commit == 4
    assert {k: o["weight"] for k, o in snapshot["overrides"].items()} == {"r1/192.0.2.1": 7, "r1/192.0.2.2": 6}


def test_snapshot_then_journal_after_it(tmp_path: Any) -> None:
    """A snapshot (log compaction) is the base; only later committed entries are applied on it."""
    base = StateMachine()
    base.apply(override("192.0.2.9", 1))
    dump = ([{}, {"machine": base.snapshot()}], (b"\x01", 2, 1), (b"\x01", 1, 1), set())
    with gzip.open(tmp_path / SNAPSHOT_FILE, "wb") as handle:
        pysyncobj_pickle.dump(dump, handle)
    write_journal(str(tmp_path), [override("192.0.2.1", 5), override("192.0.2.2", 6)], commit=3)
    snapshot, _ = read_committed_state(str(tmp_path))
    # entry 2 is inside the snapshot, entry 3 is applied on top of it
    assert {k: o["weight"] for k, o in snapshot["overrides"].items()} == {"r1/192.0.2.9": 1, "r1/192.0.2.2": 6}


def test_garbage_is_a_clear_error(tmp_path: Any) -> None:
    (tmp_path / SNAPSHOT_FILE).write_bytes(b"not a snapshot")
    with pytest.raises(ValueError, match="cannot read the cluster state"):
        read_committed_state(str(tmp_path))


def test_archive_moves_every_cluster_file(tmp_path: Any) -> None:
    for name in (MEMBERS_FILE, JOURNAL_FILE, SNAPSHOT_FILE):
        (tmp_path / name).write_text("x")
    target = archive_cluster_state(str(tmp_path), "STAMP")
    assert not cluster_state_present(str(tmp_path))
    assert sorted(os.listdir(target)) == sorted([MEMBERS_FILE, JOURNAL_FILE, SNAPSHOT_FILE])


def test_state_import_replaces_runtime_parts_and_keeps_members() -> None:
    source = StateMachine()
    source.apply(override("192.0.2.1", 5))
    target = StateMachine()
    target.apply({"op": "member.set", "address": "10.0.0.1:7946", "name": "n1", "at": 1.0})
    target.apply(override("192.0.2.2", 6))
    result = target.apply({"op": "state.import", "snapshot": source.snapshot()})
    assert result == {"ok": True, "value": {"overrides": 1, "registrations": 0, "signals": 0, "vetoes": 0}}
    assert list(target.overrides) == ["r1/192.0.2.1"] and list(target.members) == ["10.0.0.1:7946"]
    before = target.snapshot()
    bad = target.apply({"op": "state.import", "snapshot": {"version": SNAPSHOT_VERSION + 1}})
    assert not bad["ok"] and "version" in bad["error"]
    assert target.snapshot() == before
