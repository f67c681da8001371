"""Storage against SQLite always and PostgreSQL when OPENCLAW_TEST_POSTGRES_URL is set."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from open_clanker.core.errors import IdempotencyInProgressError
from open_clanker.core.types import ChannelType, Inbound, Message, Role, SessionKey
from open_clanker.gateway.idempotency import UNSTORED_AFTER_S, once, request_hash
from open_clanker.pipeline.context import Turn
from open_clanker.storage import Status, Store, outbox_rows
from open_clanker.storage.access import PairingCode
from open_clanker.storage.migrations import LATEST, migrate
from open_clanker.storage.schema import idempotency_keys
from tests.storage_urls import BACKENDS, fresh_store


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async for s in fresh_store(request.param, tmp_path):
        yield s


def msg(text: str, session: str = "telegram:42", role: Role = Role.USER) -> Message:
    return Message(
        channel_type=ChannelType.TELEGRAM,
        channel_id="42",
        sender="7" if role is Role.USER else "assistant",
        role=role,
        text=text,
        session=SessionKey(session),
    )


async def test_migrations_are_versioned_and_idempotent(store: Store) -> None:
    assert await migrate(store.db) == LATEST

    def versions(conn: sa.Connection) -> list[int]:
        return [v[0] for v in conn.execute(sa.text("SELECT version FROM schema_version"))]

    assert await store.db.read(versions) == list(range(1, LATEST + 1))


async def test_accept_is_atomic_with_the_platform_id_claim(store: Store) -> None:
    first = msg("hi")
    assert (await store.messages.accept(first, "42:1", {"platform_id": "42:1"})).stored
    assert await store.messages.seen(ChannelType.TELEGRAM, "42:1")
    again = msg("hi")
    assert not (await store.messages.accept(again, "42:1", {})).stored
    other = await store.messages.accept(msg("other", session="telegram:43"), "43:1", {})
    assert other.stored  # ids are per chat
    pending = [p.message.text for p in await store.messages.pending()]
    assert pending == ["hi", "other"]


async def test_history_keeps_roles_order_and_budget(store: Store) -> None:
    key = SessionKey("telegram:42")
    for i in range(3):
        q = msg(f"q{i}")
        await store.messages.accept(q, None, {})
        await store.messages.store_reply(msg(f"a{i}", role=Role.ASSISTANT), None, [], answers=q)
    history = await store.messages.history(key, 4)
    assert [m.text for m in history] == ["q1", "a1", "q2", "a2"]
    assert [m.role for m in history] == [Role.USER, Role.ASSISTANT] * 2
    pending = await store.messages.pending()
    assert pending == []


async def exchange(store: Store, question: str, answer: str, session: str = "telegram:42") -> None:
    q = msg(question, session=session)
    await store.messages.accept(q, None, {})
    reply = msg(answer, session=session, role=Role.ASSISTANT)
    assert await store.messages.store_reply(reply, None, [], answers=q)


async def test_reset_starts_a_fresh_generation(store: Store) -> None:
    key = SessionKey("telegram:42")
    await exchange(store, "old", "old answer")
    assert await store.messages.reset_session(key)
    await exchange(store, "new", "new answer")
    assert [m.text for m in await store.messages.history(key, 10)] == ["new", "new answer"]
    assert not await store.messages.reset_session(SessionKey("telegram:nope"))
    assert await store.messages.session_messages(SessionKey("telegram:nope"), 10) is None


async def test_notices_and_commands_stay_out_of_context(store: Store) -> None:
    key = SessionKey("telegram:42")
    command = msg("/help")
    await store.messages.accept(command, None, {})
    await store.messages.store_reply(
        msg("help text", role=Role.ASSISTANT),
        None,
        [],
        status=Status.NOTICE,
        answers=command,
        answers_status=Status.COMMAND,
    )
    await exchange(store, "real question", "real answer")
    await store.messages.accept(msg("still pending"), None, {})
    history = [m.text for m in await store.messages.history(key, 10)]
    assert history == ["real question", "real answer"]  # pending ones are no exchange yet
    listed = await store.messages.session_messages(key, 10)
    assert listed is not None and len(listed) == 5  # but they are on record


async def test_pending_survive_and_carry_context(store: Store) -> None:
    m = msg("unanswered")
    await store.messages.accept(m, "42:9", {"platform_id": "42:9", "reply_target": "9"})
    pending = await store.messages.pending()
    assert [p.message.id for p in pending] == [m.id]
    assert pending[0].context["reply_target"] == "9"
    assert pending[0].message.timestamp == m.timestamp


async def test_outbox_heads_are_in_order_per_chat(store: Store) -> None:
    reply = msg("long", role=Role.ASSISTANT)
    rows = outbox_rows(reply.id, "telegram", "42", ["p1", "p2", "p3"])
    rows += outbox_rows("other", "telegram", "43", ["x1"])
    await store.messages.store_reply(reply, None, rows)
    heads, _ = await store.outbox.claim_due("me", ["telegram"])
    assert [(h.channel_id, h.text) for h in heads] == [("42", "p1"), ("43", "x1")]
    assert await store.outbox.mark_sent(heads[0].seq, "me")
    assert await store.outbox.mark_retry(heads[1].seq, 60, "429", "me")
    heads = await store.outbox.heads()
    assert [(h.channel_id, h.text) for h in heads] == [("42", "p2"), ("43", "x1")]
    assert heads[1].attempts == 1 and heads[1].next_attempt_at > time.time() + 50
    due, next_due = await store.outbox.claim_due("me", ["telegram"])
    assert [h.text for h in due] == ["p2"]  # x1 waits for its retry time
    assert next_due is not None and next_due > time.time() + 50
    assert await store.outbox.mark_dead(heads[1].seq, "gone", "me") is False  # not claimed
    assert await store.outbox.count("pending") == 3


async def test_pairing_codes_single_use_and_revocation(store: Store) -> None:
    now = time.time()
    code = PairingCode("ABCD2345", "telegram", "7", "7", now, now + 3600, now)
    await store.access.create_code(code)
    assert [c.code for c in await store.access.pending_codes(now)] == ["ABCD2345"]
    approved = await store.access.approve("ABCD2345", now)
    assert approved is not None and approved.sender == "7"
    assert await store.access.is_allowed("telegram", "7")
    assert await store.access.approve("ABCD2345", now) is None  # single use
    assert await store.access.revoke("telegram", "7")
    assert not await store.access.is_allowed("telegram", "7")
    expired = PairingCode("EXPD2345", "telegram", "8", "8", now - 7200, now - 3600, now - 7200)
    await store.access.create_code(expired)
    assert await store.access.approve("EXPD2345", now) is None


async def test_idempotency_key_is_bound_to_its_first_message(store: Store) -> None:
    assert await store.idempotency.claim("chat", "k", "h1", "m1") is None  # ours
    prior = await store.idempotency.claim("chat", "k", "h1", "m2")
    assert prior is not None and prior.message_id == "m1" and prior.request_hash == "h1"
    assert await store.idempotency.claim("openai", "k", "h1", "m3") is None  # per route
    assert await store.idempotency.rebind("chat", "k", "m1", "m4")
    assert not await store.idempotency.rebind("chat", "k", "m1", "m5")  # someone did first
    answer = await store.idempotency.answer("m4")
    assert answer.message is None and answer.status == Status.PENDING


async def test_sessions_listed_newest_first(store: Store) -> None:
    assert (await store.messages.accept(msg("a", session="telegram:1"), None, {})).stored
    assert (await store.messages.accept(msg("b", session="telegram:2"), None, {})).stored
    sessions = await store.messages.list_sessions(10)
    assert [s.key for s in sessions] == ["telegram:2", "telegram:1"]
    assert sessions[0].message_count == 1
    counts = await store.messages.counts()
    assert counts == {"messages": 2, "sessions": 2, "pending": 2}


async def test_sqlite_pragmas(tmp_path: Path) -> None:
    store = await Store.open(f"sqlite:///{tmp_path}/p.db")
    try:

        def pragmas(conn: sa.Connection) -> tuple[object, ...]:
            return tuple(
                conn.execute(sa.text(f"PRAGMA {name}")).scalar()
                for name in (
                    "journal_mode",
                    "foreign_keys",
                    "busy_timeout",
                    "cache_size",
                    "wal_autocheckpoint",
                )
            )

        assert await store.db.read(pragmas) == ("wal", 1, 10000, -512, 10_000)
    finally:
        await store.close()


async def test_later_migrations_add_the_outbox_columns_to_a_v1_database(tmp_path: Path) -> None:
    store = await Store.open(f"sqlite:///{tmp_path}/old.db")

    def downgrade(conn: sa.Connection) -> None:  # make it look like a database v1 made
        conn.execute(sa.text("ALTER TABLE outbox DROP COLUMN edit_message_id"))
        conn.execute(sa.text("ALTER TABLE outbox DROP COLUMN request_id"))
        conn.execute(sa.text("DELETE FROM schema_version WHERE version >= 2"))

    await store.db.write(downgrade)
    await store.close()
    store = await Store.open(f"sqlite:///{tmp_path}/old.db")
    try:
        reply = msg("r", role=Role.ASSISTANT)
        rows = outbox_rows(reply.id, "telegram", "42", ["p1"], edit_first="777", request_id="req-1")
        await store.messages.store_reply(reply, None, rows)
        heads = await store.outbox.heads()
        assert [(h.edit_message_id, h.request_id) for h in heads] == [("777", "req-1")]
    finally:
        await store.close()


async def test_a_key_whose_first_attempt_died_unstored_is_taken_over(store: Store) -> None:
    """The first request bound the key, then its process died before storing the message:
    a repeat waits (bounded) while that could still be on its way, and runs once it cannot."""
    fields = {"text": "hello"}
    assert await store.idempotency.claim("chat", "k", request_hash(fields), "m-dead") is None
    ran: list[str] = []

    async def run() -> Turn:
        ran.append("ran")
        return Turn(repeat)

    repeat = Inbound(message=msg("hello"))
    with pytest.raises(IdempotencyInProgressError):
        await once(store.idempotency, "chat", "k", fields, repeat, run, wait_s=0.1)
    assert ran == []

    def age(conn: sa.Connection) -> None:
        conn.execute(
            idempotency_keys.update().values(created_at=time.time() - UNSTORED_AFTER_S - 1)
        )

    await store.db.write(age)
    outcome = await once(store.idempotency, "chat", "k", fields, repeat, run, wait_s=0.1)
    assert ran == ["ran"] and outcome.turn is not None
    again = await store.idempotency.claim("chat", "k", request_hash(fields), "m-other")
    assert again is not None and again.message_id == repeat.message.id  # the key moved on
