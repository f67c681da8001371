"""SQLite's one thread, with group commit: the transactions queued while it was busy are run
together in one database transaction and committed once.

Each caller's work runs in its own SAVEPOINT, so a failure (an exception from its function)
rolls back only its own writes; every caller is answered only after the shared COMMIT, and if
that COMMIT fails, every caller of the batch gets its error (nothing of theirs was kept).
Reads run on the same thread in queue order, outside any batch, so a read queued after a
write sees it. With 50 requests in flight, a commit (the WAL append and its fsync-free sync)
is shared by the writes that queued behind the previous one.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

MAX_BATCH = 64  # a bound on what one failure at COMMIT can take down with it
READ, WRITE, CALL = "read", "write", "call"  # CALL: no connection, no transaction


@dataclass(slots=True)
class _Job:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    kind: str
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


_STOP = object()


class SqliteWriter:
    def __init__(self, engine: sa.Engine, max_batch: int = MAX_BATCH) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._held: _Job | None = None  # a read drained while gathering a batch: next
        self.commits = 0  # how many COMMITs the writes took (tests; fewer than writes = shared)
        self._thread = threading.Thread(target=self._run, name="sqlite", daemon=True)
        self._thread.start()

    def submit(
        self, kind: str, fn: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> asyncio.Future[Any]:
        """A future answered once `fn(conn, *args)` ran (a WRITE: and committed); a CALL runs
        `fn(*args)` without a connection (closing the engine)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put(_Job(fn, args, kwargs, kind, loop, future))
        return future

    def stop(self) -> None:
        self._queue.put(_STOP)
        self._thread.join()

    # -- on the thread --------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            job = self._held or self._queue.get()
            self._held = None
            if job is _STOP:
                return
            if job.kind != WRITE:
                self._answer([self._read(job)])
                continue
            batch = [job]
            while len(batch) < self._max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP or more.kind != WRITE:
                    self._held = more
                    break
                batch.append(more)
            self._answer(self._write(batch))

    def _read(self, job: _Job) -> tuple[_Job, Any, BaseException | None]:
        try:
            if job.kind == CALL:
                return job, job.fn(*job.args, **job.kwargs), None
            with self._engine.connect() as conn:
                return job, job.fn(conn, *job.args, **job.kwargs), None
        except BaseException as exc:
            return job, None, exc

    def _write(self, batch: list[_Job]) -> list[tuple[_Job, Any, BaseException | None]]:
        if len(batch) == 1:  # nothing queued behind it: a plain transaction, no savepoint
            return [self._write_alone(batch[0])]
        done: list[tuple[_Job, Any, BaseException | None]] = []
        try:
            with self._engine.connect() as conn:
                # Straight to the driver: these control statements need none of SQLAlchemy's
                # execution machinery. BEGIN is explicit so the savepoints nest in it (the
                # driver's implicit BEGIN comes only before DML, and releasing an outermost
                # savepoint would commit).
                raw = conn.connection.dbapi_connection
                assert raw is not None
                raw.execute("BEGIN")
                for job in batch:
                    raw.execute("SAVEPOINT oc_job")
                    try:
                        result = job.fn(conn, *job.args, **job.kwargs)
                    except Exception as exc:
                        raw.execute("ROLLBACK TO oc_job")
                        raw.execute("RELEASE oc_job")
                        done.append((job, None, exc))
                    else:
                        raw.execute("RELEASE oc_job")
                        done.append((job, result, None))
                conn.commit()  # SQLAlchemy's transaction, if a job's statement began one
                # Jobs that ran only prepared statements (storage/prepared.py) left SQLAlchemy
                # no transaction to commit: the driver's is committed here, or the pool's
                # reset would roll the whole batch back.
                raw.commit()
                self.commits += 1
        except BaseException as exc:
            return [(job, None, exc) for job in batch]
        return done

    def _write_alone(self, job: _Job) -> tuple[_Job, Any, BaseException | None]:
        try:
            with self._engine.begin() as conn:
                result = job.fn(conn, *job.args, **job.kwargs)
        except BaseException as exc:
            return job, None, exc
        self.commits += 1
        return job, result, None

    def _answer(self, results: list[tuple[_Job, Any, BaseException | None]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Job, Any, BaseException | None]]]
        by_loop = {}
        for item in results:
            by_loop.setdefault(item[0].loop, []).append(item)
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody is waiting
                loop.call_soon_threadsafe(_resolve, items)


def _resolve(items: list[tuple[_Job, Any, BaseException | None]]) -> None:
    for job, result, exc in items:
        if job.future.cancelled():
            continue
        if exc is not None:
            job.future.set_exception(exc)
        else:
            job.future.set_result(result)
