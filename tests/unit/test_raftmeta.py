"""pysyncobj's journal meta written off the tick thread (opengslb.state.raftmeta)."""

import threading
import time
from pathlib import Path

from pysyncobj.journal import FileJournal, MetaStorer

from opengslb.state.raftmeta import write_meta_in_background


def stored(path: Path) -> dict:
    return MetaStorer(str(path) + ".meta").getMeta()


def wait_for(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_the_once_a_second_store_does_not_wait_for_the_disk_and_never_goes_back(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    journal = FileJournal(str(path))
    writer = write_meta_in_background(journal)
    assert writer is not None
    inner = writer._inner
    gate = threading.Event()
    real_store = inner.storeMeta

    def slow_store(meta: dict) -> None:  # a rename stuck behind the filesystem's journal
        gate.wait(5)
        real_store(meta)

    inner.storeMeta = slow_store
    journal.setRaftCommitIndex(5)
    started = time.monotonic()
    journal.onOneSecondTimer()  # what pysyncobj's tick thread calls
    assert time.monotonic() - started < 0.05  # handed over, not written
    # A term change is stored synchronously, after (never before) the pending periodic store.
    voted = threading.Thread(target=journal.setCurrentTerm, args=(7, "127.0.0.2:7946"))
    voted.start()
    time.sleep(0.05)
    assert voted.is_alive()  # waits for the disk like pysyncobj's own store
    gate.set()
    voted.join(5)
    wait_for(lambda: stored(path).get("currentTerm") == 7)
    journal.setRaftCommitIndex(9)
    journal.onOneSecondTimer()
    wait_for(lambda: stored(path).get("raftCommitIndex") == 9)
    meta = stored(path)
    assert (meta["currentTerm"], meta["votedForNodeId"]) == (7, "127.0.0.2:7946")
    journal.setRaftCommitIndex(12)
    writer.flush()  # at stop: synchronous
    assert stored(path)["raftCommitIndex"] == 12
    journal._destroy()


def test_only_a_file_journal_gets_a_writer() -> None:
    from pysyncobj.journal import MemoryJournal

    assert write_meta_in_background(MemoryJournal()) is None
    assert write_meta_in_background(None) is None
