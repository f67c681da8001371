"""Where SQL runs: one transaction is one plain function over a SQLAlchemy `Connection`.

SQLite: the functions run on one dedicated thread with the stdlib driver, so a whole
transaction costs one hop between the event loop and that thread. (Through aiosqlite every
cursor call was its own hop, ~30 per message, and that dominated the gateway's CPU profile.)
One thread is also SQLite's one writer: no lock waits between pooled connections. Writes
queued while it is busy share one COMMIT (group commit, `storage/sqlite_writer.py`).

PostgreSQL: the same functions run through asyncpg via `AsyncConnection.run_sync`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy.pool import StaticPool

from open_clanker.core.errors import ConfigError
from open_clanker.core.extras import require_extra
from open_clanker.core.file_modes import secure_sqlite
from open_clanker.storage.checkpointer import WRITER_CHECKPOINT_PAGES, Checkpointer
from open_clanker.storage.nul_guard import install_nul_guard
from open_clanker.storage.sqlite_writer import CALL, READ, WRITE, SqliteWriter

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

P = ParamSpec("P")
T = TypeVar("T")

SqlFn = Callable[Concatenate[sa.Connection, P], T]


def normalize_url(url: str) -> str:
    """`sqlite:///path` or `postgresql://…` as users write them -> SQLAlchemy driver URLs."""
    if url.startswith(("sqlite:///", "sqlite+pysqlite:///")):
        return "sqlite+pysqlite:///" + url.split(":///", 1)[1]
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ConfigError("storage.url: must start with sqlite:/// or postgresql://.")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets other processes (the CLI) read beside the writer; NORMAL sync is durable across
    # process crashes in WAL mode; the busy timeout rides out a second process writing.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    # A 512 KiB page cache, not SQLite's 2 MiB: the hot path reads no history (the history
    # cache) and its writes touch a few index pages; the OS page cache holds the rest.
    # Measured: RSS growth over 10,000 messages 10.0 -> 8.0 MiB, CPU unchanged (benchmarks.md).
    cur.execute("PRAGMA cache_size=-512")
    # Checkpoints run on their own thread (storage/checkpointer.py), not inside a commit;
    # the writer's own checkpoint is only the bound on the WAL (checkpointer.py says why).
    cur.execute(f"PRAGMA wal_autocheckpoint={WRITER_CHECKPOINT_PAGES}")
    cur.close()


class Database:
    def __init__(self, url: str) -> None:
        full = normalize_url(url)
        self._sync: sa.Engine | None = None
        self._async: AsyncEngine | None = None
        self._writer: SqliteWriter | None = None
        self._checkpointer: Checkpointer | None = None
        if full.startswith("sqlite"):
            path = full.split(":///", 1)[1]
            on_disk = bool(path) and path != ":memory:"
            if on_disk:
                secure_sqlite(Path(path))  # 0600 from the first byte, -wal/-shm alike
            self._sync = sa.create_engine(
                full,
                connect_args={"timeout": 30, "check_same_thread": False},
                poolclass=StaticPool,  # one connection, used only from the one thread
            )
            sa.event.listen(self._sync, "connect", _sqlite_pragmas)
            install_nul_guard(self._sync)
            self._writer = SqliteWriter(self._sync)
            if on_disk:
                self._checkpointer = Checkpointer(path)
            self.dialect = "sqlite"
        else:
            # Imported here: the asyncio extension costs ~8 MiB a SQLite gateway never uses.
            require_extra("storage.url", "PostgreSQL", "postgres", ("asyncpg", "greenlet"))
            from sqlalchemy.ext.asyncio import create_async_engine

            self._async = create_async_engine(
                full, pool_size=10, max_overflow=10, pool_pre_ping=True
            )
            install_nul_guard(self._async.sync_engine)
            self.dialect = "postgresql"

    async def write(self, fn: SqlFn[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn(conn, …)` in a transaction that commits when it returns."""
        if self._writer is not None:
            result: T = await self._writer.submit(WRITE, fn, *args, **kwargs)
            return result
        assert self._async is not None
        async with self._async.begin() as aconn:
            return await aconn.run_sync(fn, *args, **kwargs)

    async def read(self, fn: SqlFn[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn(conn, …)` for reading (rolled back, never committed)."""
        if self._writer is not None:
            result: T = await self._writer.submit(READ, fn, *args, **kwargs)
            return result
        assert self._async is not None
        async with self._async.connect() as aconn:
            return await aconn.run_sync(fn, *args, **kwargs)

    async def close(self) -> None:
        if self._sync is not None:
            writer = self._writer
            assert writer is not None
            await writer.submit(CALL, self._sync.dispose)
            writer.stop()
            if self._checkpointer is not None:
                self._checkpointer.stop()
        if self._async is not None:
            await self._async.dispose()
