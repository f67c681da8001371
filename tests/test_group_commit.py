"""SQLite group commit (storage/sqlite_writer.py): writes queued together share one COMMIT,
each in its own SAVEPOINT, so one failing write rolls back only its own rows."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from open_clanker.storage.database import Database

ROWS = sa.table("rows", sa.column("n"), sa.column("part"))


class Boom(Exception):
    pass


def _create(conn: sa.Connection) -> None:
    conn.exec_driver_sql("CREATE TABLE rows (n INTEGER NOT NULL, part INTEGER NOT NULL)")


def _insert(conn: sa.Connection, n: int, fail: bool) -> int:
    conn.execute(ROWS.insert().values(n=n, part=0))
    conn.execute(ROWS.insert().values(n=n, part=1))
    if fail:  # after its own rows were written: they must go, the others' stay
        raise Boom(n)
    return n


def _all(conn: sa.Connection) -> list[tuple[int, int]]:
    return [(r.n, r.part) for r in conn.execute(sa.select(ROWS.c.n, ROWS.c.part))]


async def test_concurrent_writes_share_a_commit_and_one_failure_undoes_only_itself(
    tmp_path: Path,
) -> None:
    db = Database(f"sqlite:///{tmp_path}/g.db")
    try:
        await db.write(_create)
        gate = threading.Event()
        # A first write holds the thread, so the next 40 queue up behind it: one batch.
        blocker = asyncio.ensure_future(db.write(lambda _conn: gate.wait(10)))
        await asyncio.sleep(0.05)
        writer = db._writer
        assert writer is not None
        commits_before = writer.commits
        writes = [asyncio.ensure_future(db.write(_insert, n, n == 17)) for n in range(40)]
        await asyncio.sleep(0.05)
        gate.set()
        assert await blocker
        results = await asyncio.gather(*writes, return_exceptions=True)
        assert writer.commits - commits_before == 2  # the blocker's, then one for all 40
        assert isinstance(results[17], Boom)
        assert [r for n, r in enumerate(results) if n != 17] == [n for n in range(40) if n != 17]
        rows = await db.read(_all)
        assert sorted(rows) == sorted((n, p) for n in range(40) if n != 17 for p in (0, 1))
    finally:
        await db.close()


async def test_a_read_queued_after_a_write_sees_it(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/g.db")
    try:
        await db.write(_create)
        write = asyncio.ensure_future(db.write(_insert, 1, False))
        read = asyncio.ensure_future(db.read(_all))
        assert await write == 1
        assert await read == [(1, 0), (1, 1)]
    finally:
        await db.close()


async def test_a_failed_commit_fails_every_write_of_its_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Database(f"sqlite:///{tmp_path}/g.db")
    try:
        await db.write(_create)

        def refuse(*_args: object) -> None:
            raise sa.exc.OperationalError("COMMIT", {}, Exception("disk I/O error"))

        gate = threading.Event()
        blocker = asyncio.ensure_future(db.write(lambda _conn: gate.wait(10)))
        await asyncio.sleep(0.05)
        monkeypatch.setattr(sa.engine.Connection, "commit", refuse)
        writes = [asyncio.ensure_future(db.write(_insert, n, False)) for n in range(5)]
        await asyncio.sleep(0.05)
        gate.set()
        await blocker
        results = await asyncio.gather(*writes, return_exceptions=True)
        assert all(isinstance(r, sa.exc.OperationalError) for r in results)  # one batch of 5
        monkeypatch.undo()
        assert await db.read(_all) == []  # nothing of theirs was kept
    finally:
        await db.close()


async def test_a_lone_failing_write_keeps_nothing(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/g.db")
    try:
        await db.write(_create)
        with pytest.raises(Boom):
            await db.write(_insert, 1, True)
        assert await db.write(_insert, 2, False) == 2
        assert await db.read(_all) == [(2, 0), (2, 1)]
    finally:
        await db.close()
