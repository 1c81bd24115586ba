"""pysyncobj's journal meta file, written off its tick thread.

pysyncobj keeps the current term, the vote and the commit index in
``raft.journal.meta`` and replaces that file (write a temporary, rename)
from its tick thread: synchronously when the term or vote changes (Raft
needs them stored before a vote goes out), and once a second whenever the
commit index moved — that is, every second on a leader taking writes.  A
rename waits for the filesystem's journal; on a busy disk that was measured
at 0.3 s, during which the tick thread sends no heartbeats and reads no
answers, and a leader's 0.4 s lease lapses (issue 13: REFUSED from every
node for about half a second, no fault in sight).

:func:`write_meta_in_background` keeps the synchronous term/vote store and
moves the once-a-second store to a writer thread.  Both go through one
lock, and the writer always stores the newest meta it was given, so the
file never goes back to an older term or vote.  The commit index is not
needed for Raft's safety (a restarted node learns it from the leader); it
is what :func:`opengslb.state.raft.read_committed_state` reads for a
migration, and :meth:`MetaWriter.flush` stores it synchronously at stop.
"""

from __future__ import annotations

import threading
from typing import Any, Dict, Optional

from twisted.logger import Logger

log = Logger("opengslb.cluster")

# pysyncobj's FileJournal private fields (pinned pysyncobj version; see raft.PYSYNCOBJ_VERSION).
_STORER = "_FileJournal__metaStorer"
_META = "_FileJournal__meta"
_SAVED = "_FileJournal__metaSaved"


class MetaWriter:
    """Stands in for a FileJournal's ``MetaStorer``; owns the writer thread.

    ``storeMeta`` (pysyncobj's synchronous term/vote store) writes at once;
    :meth:`store_later` hands a copy to the writer thread, which stores only
    the latest copy it holds.  Thread-safe.
    """

    def __init__(self, journal: Any) -> None:
        self._journal = journal
        self._inner = getattr(journal, _STORER)
        self._lock = threading.Lock()  # held while the file is written
        self._handoff = threading.Lock()  # guards _pending; never held while writing
        self._pending: Optional[Dict[str, Any]] = None
        self._wake = threading.Event()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="raft-meta-writer", daemon=True)
        self._thread.start()

    # -- the MetaStorer surface pysyncobj calls -------------------------------------------

    def getMeta(self) -> Dict[str, Any]:  # noqa: N802 - pysyncobj's name
        return self._inner.getMeta()  # type: ignore[no-any-return]

    def getPath(self) -> str:  # noqa: N802
        return self._inner.getPath()  # type: ignore[no-any-return]

    def storeMeta(self, meta: Dict[str, Any]) -> None:  # noqa: N802
        """Synchronous (a term or vote change): any older pending copy is superseded."""
        with self._lock:
            self._take_pending()
            self._inner.storeMeta(meta)

    # -- ours ---------------------------------------------------------------------------

    def store_later(self) -> None:
        """The journal's once-a-second store: hand the current meta to the writer thread."""
        if getattr(self._journal, _SAVED):
            return
        copy = dict(getattr(self._journal, _META))
        with self._handoff:
            self._pending = copy
        setattr(self._journal, _SAVED, True)
        self._wake.set()

    def flush(self) -> None:
        """Store the current meta now (at stop) and end the writer thread."""
        with self._lock:
            self._take_pending()
            self._inner.storeMeta(dict(getattr(self._journal, _META)))
            setattr(self._journal, _SAVED, True)
        self._stopped = True
        self._wake.set()

    def _take_pending(self) -> Optional[Dict[str, Any]]:
        """The pending copy, which is no longer pending (None when there was none)."""
        with self._handoff:
            pending, self._pending = self._pending, None
        return pending

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stopped:
                return
            with self._lock:
                pending = self._take_pending()
                if pending is None:
                    continue
                try:
                    self._inner.storeMeta(pending)
                except OSError as error:  # pysyncobj would have raised in its tick thread
                    setattr(self._journal, _SAVED, False)  # tried again within a second
                    log.error("cannot store the Raft journal meta: {error}", error=error)


def write_meta_in_background(journal: Any) -> Optional[MetaWriter]:
    """Install a :class:`MetaWriter` on pysyncobj's FileJournal ``journal`` (None for any other
    journal, e.g. the in-memory one)."""
    if not hasattr(journal, _STORER) or not hasattr(journal, _META):
        return None
    writer = MetaWriter(journal)
    setattr(journal, _STORER, writer)
    journal.onOneSecondTimer = writer.store_later
    return writer
