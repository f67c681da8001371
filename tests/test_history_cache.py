"""The per-process history cache (storage/history_cache.py): it gives exactly what a read
gives, turn after turn, and a write by another replica (another `Store` on the same database)
sends the next turn back to the database. SQLite always, PostgreSQL when configured."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from open_clanker.core.types import ChannelType, Message, Role, SessionKey
from open_clanker.storage import Store
from open_clanker.storage.claims import Claim
from open_clanker.storage.history_cache import HistoryCache, HistoryRow
from open_clanker.storage.messages import Status
from tests.storage_urls import BACKENDS, PG_URL, fresh_store

KEY = SessionKey("telegram:42")
A, B = Claim("replica-a", "turn-a"), Claim("replica-b", "turn-b")


@pytest.fixture(params=BACKENDS)
async def pair(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Store, Store]]:
    """Two replicas' stores on one database."""
    async for first in fresh_store(request.param, tmp_path):
        url = f"sqlite:///{tmp_path}/store.db" if request.param == "sqlite" else PG_URL
        second = await Store.open(url)
        try:
            yield first, second
        finally:
            await second.close()


def msg(text: str, role: Role = Role.USER) -> Message:
    return Message(
        channel_type=ChannelType.TELEGRAM,
        channel_id="42",
        sender="7" if role is Role.USER else "assistant",
        role=role,
        text=text,
        session=KEY,
    )


async def take(store: Store, claim: Claim, text: str) -> tuple[Message, int, int]:
    """Accept a message and take its turn: (message, seq, history version)."""
    m = msg(text)
    accepted = await store.messages.accept(m, None, {}, Status.PENDING, claim)
    assert accepted.stored
    version = accepted.version if accepted.has_turn else None
    if version is None:
        version = await store.claims.take_turn_at(KEY, claim, accepted.seq)
    assert version is not None
    return m, accepted.seq, version


async def finish(
    store: Store,
    claim: Claim,
    m: Message,
    seq: int,
    text: str,
    status: str = Status.REPLY,
    answered: str = Status.ANSWERED,
) -> None:
    stored = await store.messages.store_reply(
        msg(text, Role.ASSISTANT),
        None,
        [],
        status=status,
        answers=m,
        answers_status=answered,
        turn=claim,
        answers_seq=seq,
    )
    assert stored


async def history_both_ways(store: Store, version: int, limit: int) -> list[Message]:
    cached = await store.messages.history(KEY, limit, version)
    read = await store.messages.history(KEY, limit)
    assert cached == read
    return cached


async def test_cached_history_equals_read_history_over_many_turns(
    pair: tuple[Store, Store],
) -> None:
    store, _other = pair
    rng = random.Random(16)
    hits = 0
    for n in range(120):
        limit = rng.choice((3, 5, 39))
        action = rng.choice(
            (
                "reply",
                "reply",
                "reply",
                "command",
                "failed",
                "let_go",
                "queued",
                "burst",
                "reset_queued",
            )
        )
        if n % 37 == 36:
            action = "reset"
        m, seq, version = await take(store, A, f"m{n}" + ("\x00nul" if n == 50 else ""))
        if store.messages.history_cache.get(KEY, version, limit) is not None:
            hits += 1
        await history_both_ways(store, version, limit)
        if action == "reply":
            await finish(store, A, m, seq, f"r{n}" if n % 11 else "")
        elif action == "command":
            await finish(store, A, m, seq, "help", Status.NOTICE, Status.COMMAND)
        elif action == "failed":  # a provider failure: the question stays, the notice does not
            await finish(store, A, m, seq, "sorry", Status.NOTICE, Status.FAILED)
        elif action == "let_go":  # a crashed turn (pipeline._let_go)
            await store.claims.release_session(KEY, A)
            await store.messages.set_status(m.id, Status.FAILED)
        elif action == "reset":  # /new inside the turn
            await store.messages.reset_session(KEY)
            await finish(store, A, m, seq, "fresh", Status.NOTICE, Status.COMMAND)
        else:  # more messages accepted while this turn runs, answered next, in order
            queued = []
            for k in range(1 if action == "queued" else 6):
                waiting = msg(f"q{n}.{k}")
                second = await store.messages.accept(waiting, None, {}, Status.PENDING, A)
                assert not second.has_turn
                queued.append((waiting, second.seq))
            await finish(store, A, m, seq, f"r{n}")
            if action == "reset_queued":  # an operator's reset while a message waits
                await store.messages.reset_session(KEY)
            for waiting, waiting_seq in queued:
                version = await store.claims.take_turn_at(KEY, A, waiting_seq)
                assert version is not None
                await history_both_ways(store, version, limit)
                await finish(store, A, waiting, waiting_seq, f"r{waiting.text}")
    final = await store.messages.history(KEY, 39)
    assert final, "the sequence ended with a non-empty history"
    assert hits > 30  # the cache did serve turns (else this test proves nothing)


async def test_another_replicas_write_sends_the_next_turn_to_the_database(
    pair: tuple[Store, Store],
) -> None:
    a, b = pair
    m, seq, version = await take(a, A, "first")
    assert await history_both_ways(a, version, 39) == []
    await finish(a, A, m, seq, "one")
    m, seq, version = await take(a, A, "second")
    assert a.messages.history_cache.get(KEY, version, 39) is not None  # served from the cache
    await finish(a, A, m, seq, "two")

    m, seq, version_b = await take(b, B, "from b")  # the other replica's turn
    await history_both_ways(b, version_b, 39)
    await finish(b, B, m, seq, "b answers")

    m, seq, version = await take(a, A, "third")
    assert a.messages.history_cache.get(KEY, version, 39) is None  # a's entry is stale
    texts = [h.text for h in await history_both_ways(a, version, 39)]
    assert texts == ["first", "one", "second", "two", "from b", "b answers"]
    await finish(a, A, m, seq, "three")

    m, _seq, version_b = await take(b, B, "b crashes")  # pipeline._let_go on replica b
    await b.claims.release_session(KEY, B)
    await b.messages.set_status(m.id, Status.FAILED)
    m, seq, version = await take(a, A, "fourth")
    texts = [h.text for h in await history_both_ways(a, version, 39)]
    assert texts[-3:] == ["third", "three", "b crashes"]
    await finish(a, A, m, seq, "four")

    m, seq, version_b = await take(b, B, "b resets")
    await b.messages.reset_session(KEY)
    await finish(b, B, m, seq, "fresh", Status.NOTICE, Status.COMMAND)
    m, seq, version = await take(a, A, "after reset")
    assert await history_both_ways(a, version, 39) == []


def test_the_cache_is_bounded_and_serves_only_its_version() -> None:
    cache = HistoryCache(max_sessions=2)
    row_text = "x" * 10
    rows = [HistoryRow(n, f"id{n}", None, msg(row_text)) for n in (3, 2, 1)]
    for key in ("s1", "s2", "s3"):
        cache.put(key, 1, 0, 5, rows)
    assert len(cache) == 2  # bounded: the oldest entry went
    assert cache.get("s1", 1, 5) is None
    assert cache.get("s3", 1, 5) is not None
    assert cache.get("s3", 2, 5) is None  # another version: not served
    cache.extend("s3", 5, 6, 0, [])  # not at the version the write started from: dropped
    assert cache.get("s3", 6, 5) is None


async def test_a_message_costs_two_transactions_and_no_read_in_steady_state(
    tmp_path: Path,
) -> None:
    """Through the real pipeline: an API-shaped message (no platform id) of a session whose
    history is cached writes twice (accept, finish) and reads nothing."""
    from open_clanker.config.model import Config
    from open_clanker.core.types import Inbound, client_session_key
    from tests.pipeline_kit import make_kit

    kit = await make_kit(tmp_path, Config.model_validate({"access": {"dm_policy": "open"}}))
    try:
        key = client_session_key("count", ChannelType.API)
        calls: list[str] = []
        db = kit.store.db
        real_write, real_read = db.write, db.read

        async def write(fn: object, *args: object, **kwargs: object) -> object:
            calls.append("write")
            return await real_write(fn, *args, **kwargs)  # type: ignore[arg-type]

        async def read(fn: object, *args: object, **kwargs: object) -> object:
            calls.append("read")
            return await real_read(fn, *args, **kwargs)  # type: ignore[arg-type]

        db.write, db.read = write, read  # type: ignore[method-assign]

        def inbound(text: str) -> Inbound:
            m = Message(
                channel_type=ChannelType.API,
                channel_id=key.split(":", 1)[1],
                sender="api",
                text=text,
                session=key,
            )
            return Inbound(message=m, request_id=m.id)

        await kit.pipeline.handle(inbound("first"))  # the history is read (and cached) once
        calls.clear()
        for n in range(3):
            await kit.pipeline.handle(inbound(f"again {n}"))
        assert calls == ["write", "write"] * 3
        history = kit.provider.requests[-1].turns
        assert [t.text for t in history][:2] == ["first", "reply to: first"]
    finally:
        await kit.store.close()
