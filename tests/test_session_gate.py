"""The session gate: turns of one session queued on this replica take the session in order,
and only the oldest of them asks the database (a freed session costs one attempt per
replica, not one per waiting message)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from open_clanker.core.types import ChannelType, Message, Role, SessionKey
from open_clanker.pipeline.bus import MemoryBus
from open_clanker.pipeline.session_gate import SessionGate
from open_clanker.storage import Store
from open_clanker.storage.claims import Claim
from open_clanker.storage.schema import messages
from tests.storage_urls import fresh_store

KEY = SessionKey("telegram:42")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async for s in fresh_store("sqlite", tmp_path):
        yield s


def question(text: str) -> Message:
    return Message(
        channel_type=ChannelType.TELEGRAM,
        channel_id="42",
        sender="7",
        role=Role.USER,
        text=text,
        session=KEY,
    )


async def queue_of(store: Store, n: int) -> tuple[Claim, list[tuple[Claim, int]]]:
    """The first message holds the turn; the next `n` are stored and wait for it."""
    first = Claim("replica-a", "t0")
    assert (await store.messages.accept(question("m0"), None, {}, claim=first)).has_turn
    waiting = []
    for i in range(1, n + 1):
        claim = Claim("replica-a", f"t{i}")
        accepted = await store.messages.accept(question(f"m{i}"), None, {}, claim=claim)
        assert not accepted.has_turn
        waiting.append((claim, accepted.seq))
    return first, waiting


async def test_queued_turns_take_the_session_in_order_and_only_the_oldest_asks(
    store: Store,
) -> None:
    gate = SessionGate(store.claims, MemoryBus())
    asked: list[int] = []
    take = store.claims.take_turn_at

    async def counted(key: str, claim: Claim, seq: int) -> int | None:
        asked.append(seq)
        return await take(key, claim, seq)

    store.claims.take_turn_at = counted  # type: ignore[method-assign]
    holder, waiting = await queue_of(store, 4)
    tasks = [asyncio.create_task(gate.wait_turn(KEY, c, seq)) for c, seq in waiting]
    await asyncio.sleep(0.3)  # every waiter has had its first chance and a recheck
    assert not any(t.done() for t in tasks)
    order = []
    for i, (_claim, seq) in enumerate(waiting):
        previous = holder if i == 0 else waiting[i - 1][0]
        await store.claims.release_session(KEY, previous)
        # The turn is over: settle its message as the pipeline would, then say so.
        await store.messages.set_status((await pending_ids(store))[0], "answered")
        await gate.freed(KEY)
        await asyncio.wait_for(tasks[i], 10)
        order.append(seq)
    assert order == [seq for _c, seq in waiting]
    # Asked in order: a later message never asked while an earlier one was still waiting.
    assert asked == sorted(asked) and set(asked) == set(order)


async def test_when_the_oldest_waiter_gives_up_the_next_one_asks(store: Store) -> None:
    gate = SessionGate(store.claims, MemoryBus())
    holder, [(c1, s1), (c2, s2)] = await queue_of(store, 2)
    first = asyncio.create_task(gate.wait_turn(KEY, c1, s1))
    second = asyncio.create_task(gate.wait_turn(KEY, c2, s2))
    await asyncio.sleep(0.05)
    first.cancel()  # a /stop of a waiting message: it is settled and leaves the queue
    await store.messages.set_status((await pending_ids(store))[1], "stopped")
    await store.claims.release_session(KEY, holder)
    await store.messages.set_status((await pending_ids(store))[0], "answered")
    await gate.freed(KEY)
    await asyncio.wait_for(second, 10)  # not stranded behind the one that left
    assert second.result() is not None


async def pending_ids(store: Store) -> list[str]:
    """The session's pending messages, oldest first."""

    def read(conn: sa.Connection) -> list[str]:
        stmt = (
            sa.select(messages.c.id)
            .where(messages.c.session_key == KEY, messages.c.status == "pending")
            .order_by(messages.c.seq)
        )
        return [str(i) for i in conn.execute(stmt).scalars()]

    return await store.db.read(read)
