"""WAL checkpoints on their own thread: the writer's commits never checkpoint, the WAL stays
bounded, nothing written is lost, and the thread ends with the database."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

import sqlalchemy as sa

from open_clanker.storage.checkpointer import WRITER_CHECKPOINT_PAGES, Checkpointer
from open_clanker.storage.store import Store


def _wal_bytes(db: Path) -> int:
    wal = Path(f"{db}-wal")
    return wal.stat().st_size if wal.exists() else 0


def _write_rows(db: Path, batches: int, autocheckpoint: int, pauses: bool = True) -> int:
    """What the gateway's writer does: one connection, WAL, many small commits. Returns the
    WAL's size before the connection closes (a last close checkpoints and removes it)."""
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA wal_autocheckpoint={autocheckpoint}")
        conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, body TEXT)")
        for i in range(batches):
            conn.execute("INSERT INTO t (body) VALUES (?)", ("x" * 4000 + str(i),))
            conn.commit()
            if pauses and i % 100 == 0:
                time.sleep(0.01)  # let the checkpointer run between commits, as load does
        time.sleep(0.05)
        return _wal_bytes(db)
    finally:
        conn.close()


def test_without_it_the_wal_only_grows(tmp_path: Path) -> None:
    wal = _write_rows(tmp_path / "none.db", 2000, autocheckpoint=0)
    assert wal > 8_000_000  # ~2,000 pages of 4 KiB: nothing moved it


def test_it_keeps_the_wal_bounded_and_loses_nothing(tmp_path: Path) -> None:
    """Commits with pauses between them (as messages come): after each complete pass the
    next commit starts the WAL again, so it never holds more than what came since."""
    db = tmp_path / "kept.db"
    checkpointer = Checkpointer(str(db), interval_s=0.01)
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA wal_autocheckpoint=0")  # only the thread checkpoints here
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
        conn.commit()
        sizes = []
        for burst in range(20):
            for i in range(100):
                conn.execute("INSERT INTO t (body) VALUES (?)", ("x" * 4000 + f"{burst}.{i}",))
                conn.commit()
            passes = checkpointer.complete
            deadline = time.monotonic() + 30
            while checkpointer.complete == passes:  # a pause: the thread catches up
                assert time.monotonic() < deadline, "no complete checkpoint in 30 s"
                time.sleep(0.005)
            sizes.append(_wal_bytes(db))
        # 100 rows of ~4 KiB are ~1 MiB of WAL; 20 bursts without restarts would be ~20.
        assert max(sizes) < 3_000_000, sizes
    finally:
        conn.close()
        checkpointer.stop()
    reopened = sqlite3.connect(db)
    try:
        assert reopened.execute("SELECT count(*) FROM t").fetchone() == (2000,)
    finally:
        reopened.close()
    assert not any(t.name == "sqlite-checkpoint" and t.is_alive() for t in threading.enumerate())


def test_a_writer_that_never_pauses_is_bounded_by_its_own_rare_checkpoint(
    tmp_path: Path,
) -> None:
    """Back-to-back commits leave the checkpointer no moment with every frame copied, so the
    WAL cannot restart on its passes alone; the writer's own checkpoint (at 10,000 pages in
    the gateway, 300 here) completes and restarts it."""
    checkpointer = Checkpointer(str(tmp_path / "bounded.db"), interval_s=0.01)
    try:
        bounded = _write_rows(tmp_path / "bounded.db", 3000, autocheckpoint=300, pauses=False)
    finally:
        checkpointer.stop()
    # ~300 frames of 4 KiB, and what came in while the thread's pass held the checkpoint (the
    # writer's own is skipped then, and tried again at its next commit); 3,000 rows unbounded
    # are ~25 MB (the first test).
    assert bounded < 8_000_000


async def test_the_store_runs_one_and_stops_it_on_close(tmp_path: Path) -> None:
    store = await Store.open(f"sqlite:///{tmp_path}/s.db")
    try:
        running = [t for t in threading.enumerate() if t.name == "sqlite-checkpoint"]
        assert len(running) == 1

        def autocheckpoint(conn: sa.Connection) -> object:
            return conn.execute(sa.text("PRAGMA wal_autocheckpoint")).scalar()

        assert await store.db.read(autocheckpoint) == WRITER_CHECKPOINT_PAGES
    finally:
        await store.close()
    assert not running[0].is_alive()
    # The last connection closed: SQLite checkpointed what was left and removed the WAL.
    assert not os.path.exists(f"{tmp_path}/s.db-wal")
