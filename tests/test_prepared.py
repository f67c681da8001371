"""Hot statements straight on SQLite's driver (storage/prepared.py): the same SQL and results as
SQLAlchemy's own execution, the same NUL guard, and SQLAlchemy's exceptions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from open_clanker.core.types import ChannelType, Message, Role, SessionKey
from open_clanker.storage.claims import Claim
from open_clanker.storage.database import Database
from open_clanker.storage.prepared import Prepared
from open_clanker.storage.schema import messages, processed_ids, sessions
from open_clanker.storage.store import Store
from tests.storage_urls import BACKENDS, fresh_store

ROWS = sa.table("rows", sa.column("n"), sa.column("label"))


def _create(conn: sa.Connection) -> None:
    conn.exec_driver_sql("CREATE TABLE rows (n INTEGER PRIMARY KEY, label TEXT NOT NULL)")


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite:///{tmp_path}/p.db")
    await database.write(_create)
    try:
        yield database
    finally:
        await database.close()


def test_expanding_binds_are_refused() -> None:
    stmt = sa.select(ROWS.c.n).where(ROWS.c.label.in_(["a", "b"]))
    with pytest.raises(ValueError, match="expanding"):
        Prepared(stmt, "sqlite")


async def test_fixed_binds_ride_along_and_results_match_sqlalchemy(db: Database) -> None:
    insert = Prepared(ROWS.insert().returning(ROWS.c.n), "sqlite")
    # `label = 'keep'` is a bind the statement fixes itself; the caller gives only `low`.
    count = Prepared(
        sa.select(sa.func.count())
        .select_from(ROWS)
        .where(ROWS.c.label == "keep", ROWS.c.n >= sa.bindparam("low")),
        "sqlite",
    )
    relabel = Prepared(
        ROWS.update().where(ROWS.c.n == sa.bindparam("b_n")).values(label="gone"), "sqlite"
    )

    def fill(conn: sa.Connection) -> list[int]:
        return [insert.scalar(conn, {"n": n, "label": "keep"}) for n in (1, 2, 3)]

    assert await db.write(fill) == [1, 2, 3]

    def work(conn: sa.Connection) -> tuple[int, int, int, int]:
        changed = relabel.rowcount(conn, {"b_n": 2})
        missing = relabel.rowcount(conn, {"b_n": 99})
        return changed, missing, count.scalar(conn, {"low": 1}), count.scalar(conn, {"low": 3})

    assert await db.write(work) == (1, 0, 2, 1)

    def plain(conn: sa.Connection) -> list[tuple[int, str]]:
        return [(r.n, r.label) for r in conn.execute(sa.select(ROWS).order_by(ROWS.c.n))]

    assert await db.read(plain) == [(1, "keep"), (2, "gone"), (3, "keep")]


async def test_an_insert_writes_the_columns_it_is_given(db: Database) -> None:
    """As with `Connection.execute`: the keys passed are the columns written, whichever set."""
    notes = sa.table("notes", sa.column("n"), sa.column("a"), sa.column("b"))
    insert = Prepared(notes.insert(), "sqlite")

    def work(conn: sa.Connection) -> list[tuple[int, str | None, str | None]]:
        conn.exec_driver_sql("CREATE TABLE notes (n INTEGER PRIMARY KEY, a TEXT, b TEXT)")
        insert.rowcount(conn, {"n": 1, "a": "x"})
        insert.rowcount(conn, {"n": 2, "b": "y"})
        insert.rowcount(conn, {"n": 3, "a": "z"})
        return [(r.n, r.a, r.b) for r in conn.execute(sa.select(notes).order_by(notes.c.n))]

    assert await db.write(work) == [(1, "x", None), (2, None, "y"), (3, "z", None)]


async def test_raw_writes_roll_back_with_their_transaction(db: Database) -> None:
    insert = Prepared(ROWS.insert(), "sqlite")

    def fails(conn: sa.Connection) -> None:
        insert.rowcount(conn, {"n": 7, "label": "x"})
        raise RuntimeError("after the write")

    with pytest.raises(RuntimeError):
        await db.write(fails)
    assert (
        await db.read(lambda c: c.execute(sa.select(sa.func.count()).select_from(ROWS)).scalar())
        == 0
    )


async def test_driver_errors_are_sqlalchemys_and_keep_parameters_out(db: Database) -> None:
    insert = Prepared(ROWS.insert(), "sqlite")
    await db.write(lambda c: insert.rowcount(c, {"n": 1, "label": "secret-one"}))
    with pytest.raises(sa.exc.IntegrityError) as caught:
        await db.write(lambda c: insert.rowcount(c, {"n": 1, "label": "secret-two"}))
    assert "secret-two" not in str(caught.value)


async def test_nul_guard_holds_on_the_raw_path(db: Database) -> None:
    insert = Prepared(ROWS.insert(), "sqlite")
    await db.write(lambda c: insert.rowcount(c, {"n": 1, "label": "a\x00b"}))
    label = await db.read(lambda c: c.execute(sa.select(ROWS.c.label)).scalar())
    assert label == "ab"


def test_one_refuses_anything_but_one_row(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path}/one.db")
    with engine.begin() as conn:
        _create(conn)
        select = Prepared(sa.select(ROWS.c.n).where(ROWS.c.n == sa.bindparam("n")), "sqlite")
        with pytest.raises(sa.exc.NoResultFound):
            select.one(conn, {"n": 1})
    engine.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_the_hot_path_writes_the_same_rows_on_both_backends(
    backend: str, tmp_path: Path
) -> None:
    """accept + store_reply through the prepared statements leave what the schema expects:
    the lease taken then released, the message answered, the reply after it, NULs gone."""
    agen = fresh_store(backend, tmp_path)
    store: Store = await agen.__anext__()
    try:
        key = SessionKey("api:prep")
        msg = Message(
            channel_type=ChannelType.API, channel_id="prep", sender="u", role=Role.USER,
            text="hel\x00lo", session=key,
        )  # fmt: skip
        claim = Claim("replica-a", "turn-1")
        accepted = await store.messages.accept(msg, "pid-1", {"k": "v"}, claim=claim)
        assert accepted.stored and accepted.has_turn and accepted.seq > 0
        again = await store.messages.accept(msg.model_copy(update={"id": "x2"}), "pid-1", {})
        assert not again.stored  # the platform id was claimed by the first
        assert await store.messages.seen(ChannelType.API, "pid-1")
        assert not await store.messages.seen(ChannelType.API, "pid-2")
        assert await store.claims.session_holder(key) == "replica-a"
        reply = Message(
            channel_type=ChannelType.API, channel_id="prep", sender="bot", role=Role.ASSISTANT,
            text="hi", session=key,
        )  # fmt: skip
        assert await store.messages.store_reply(reply, None, [], answers=msg, turn=claim)
        # A second answer to the same message never lands (the fence), nor a stale turn.
        late = reply.model_copy(update={"id": "late"})
        assert not await store.messages.store_reply(late, None, [], answers=msg, turn=claim)
        assert await store.claims.session_holder(key) is None

        def rows(conn: sa.Connection) -> tuple[list[tuple[str, str, str]], int, int]:
            found = conn.execute(
                sa.select(messages.c.text, messages.c.status, messages.c.role).order_by(
                    messages.c.seq
                )
            ).all()
            version = conn.execute(
                sa.select(sessions.c.version).where(sessions.c.key == key)
            ).scalar_one()
            seen = conn.execute(sa.select(sa.func.count()).select_from(processed_ids)).scalar()
            return [tuple(r) for r in found], int(version), int(seen or 0)

        found, version, seen = await store.db.read(rows)
        assert found == [("hello", "answered", "user"), ("hi", "reply", "assistant")]
        assert version == 1 and seen == 1
    finally:
        await agen.aclose()


async def test_writes_batched_by_group_commit_are_committed(tmp_path: Path) -> None:
    """50 turns at once: their accepts and replies share COMMITs (storage/sqlite_writer.py)
    and run only prepared statements, so SQLAlchemy holds no transaction of its own; every
    one must still be committed (a batch once came back answered and rolled back)."""
    url = f"sqlite:///{tmp_path}/batch.db"
    store = await Store.open(url)

    async def turn(i: int) -> bool:
        key = SessionKey(f"api:b{i}")
        msg = Message(
            channel_type=ChannelType.API, channel_id=f"b{i}", sender="u", role=Role.USER,
            text=f"q{i}", session=key,
        )  # fmt: skip
        claim = Claim("replica-a", f"turn-{i}")
        accepted = await store.messages.accept(msg, f"pid-{i}", {}, claim=claim)
        reply = Message(
            channel_type=ChannelType.API, channel_id=f"b{i}", sender="bot",
            role=Role.ASSISTANT, text=f"a{i}", session=key,
        )  # fmt: skip
        return accepted.has_turn and await store.messages.store_reply(
            reply, None, [], answers=msg, turn=claim, answers_seq=accepted.seq
        )

    try:
        results = await asyncio.gather(*(turn(i) for i in range(50)))
        writer = store.db._writer
        assert writer is not None and writer.commits < 100  # some writes did share a COMMIT
    finally:
        await store.close()
    assert all(results)
    reopened = await Store.open(url)  # what is on disk, not what one connection saw
    try:

        def count(conn: sa.Connection) -> tuple[int, int, int]:
            answered = conn.execute(
                sa.select(sa.func.count()).where(messages.c.status == "answered")
            ).scalar()
            replies = conn.execute(
                sa.select(sa.func.count()).where(messages.c.status == "reply")
            ).scalar()
            seen = conn.execute(sa.select(sa.func.count()).select_from(processed_ids)).scalar()
            return int(answered or 0), int(replies or 0), int(seen or 0)

        assert await reopened.db.read(count) == (50, 50, 50)
    finally:
        await reopened.close()
