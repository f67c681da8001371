"""SQLite's WAL checkpoints, moved off the writer's commits onto a thread of their own.

By default SQLite checkpoints inside the COMMIT that takes the WAL past 1,000 pages: that
commit copies the WAL into the database and syncs both, several milliseconds on the writer
thread while every message behind it waits. In the sequential bench that was the p99: 18.3 ms
with it, 9.3 ms without (docs/benchmarks.md, "Levers: the hot path"). So this thread, on its
own connection to the same file, runs a PASSIVE checkpoint every `interval_s` (with nothing
new in the WAL it returns at once): PASSIVE never takes the writer's lock nor waits for
readers, so commits go on beside it, and once the WAL is wholly copied the next commit starts
it again from its beginning.

That restart needs a moment when every frame is copied; a writer that never pauses (minutes
of messages back to back) leaves none, and the WAL would grow without end (the 100,000-message
soak grew it to 2.1 GB). So the writer keeps a checkpoint of its own, at
`WRITER_CHECKPOINT_PAGES` instead of SQLite's 1,000: it runs inside a commit as before, but
about once every 1,800 messages instead of every 180 (beyond the p99), it finds most frames
already copied by this thread, and, being the writer's, it completes, so the WAL restarts:
the file stays under ~40 MiB.

Durability does not change: in WAL mode with `synchronous=NORMAL` a commit is durable against
a process crash once it is in the WAL, checkpointed or not; a checkpoint syncs the WAL before
it copies it. When the last connection closes, SQLite checkpoints what is left.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading

log = logging.getLogger("open_clanker.storage")

INTERVAL_S = 0.5
WRITER_CHECKPOINT_PAGES = 10_000  # ~40 MiB of WAL: the bound, not the usual path


class Checkpointer:
    def __init__(self, path: str, interval_s: float = INTERVAL_S) -> None:
        self._path = path
        self._wal = path + "-wal"
        self._interval_s = interval_s
        self._stopping = threading.Event()
        self.checkpoints = 0  # passes that copied something (tests)
        self.complete = 0  # passes that left every frame copied (tests)
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while not self._stopping.wait(self._interval_s):
                if _size(self._wal) <= 0:
                    continue  # no WAL yet (or it was removed at a close)
                if conn is None:
                    conn = sqlite3.connect(self._path, timeout=0)  # made and used here only
                try:
                    busy, log_pages, copied = conn.execute(
                        "PRAGMA wal_checkpoint(PASSIVE)"
                    ).fetchone()
                except sqlite3.Error as exc:  # a locked or vanished file: try again later
                    log.debug("wal_checkpoint_failed: %s", exc)
                    continue
                if copied > 0:
                    self.checkpoints += 1
                self.complete += not busy and copied == log_pages
        finally:
            if conn is not None:
                conn.close()


def _size(path: str) -> int:
    with contextlib.suppress(OSError):
        return os.stat(path).st_size
    return -1
