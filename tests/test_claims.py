"""Claims and leases in storage (SPEC §9), on SQLite always and PostgreSQL when configured.

Several `Store`s on one PostgreSQL database are several replicas' connection pools: the races
below run through separate engines, as they would across processes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from open_clanker.core.types import ChannelType, Message, Role, SessionKey
from open_clanker.storage import Store, outbox_rows
from open_clanker.storage.access import PairingCode
from open_clanker.storage.claims import Claim
from open_clanker.storage.prune import DAY_S, prune
from open_clanker.storage.schema import leases, messages, outbox, processed_ids
from tests.storage_urls import BACKENDS, PG_URL, fresh_store

A, B = Claim("replica-a", "turn-a"), Claim("replica-b", "turn-b")
KEY = SessionKey("telegram:42")


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async for s in fresh_store(request.param, tmp_path):
        yield s


def msg(text: str, session: str = KEY, role: Role = Role.USER) -> Message:
    return Message(
        channel_type=ChannelType.TELEGRAM,
        channel_id=session.split(":")[1],
        sender="7" if role is Role.USER else "assistant",
        role=role,
        text=text,
        session=SessionKey(session),
    )


async def lapse(store: Store, table: sa.Table) -> None:
    """Make every claim in `table` look as if its replica died long ago."""

    def run(conn: sa.Connection) -> None:
        if table is leases:
            conn.execute(leases.update().values(until=0.0))
        elif table.name == "sessions":
            conn.execute(table.update().values(lease_until=0.0))
        else:
            conn.execute(table.update().values(claim_until=0.0))

    await store.db.write(run)


async def test_turns_of_a_session_go_in_order_and_one_at_a_time(store: Store) -> None:
    first = await store.messages.accept(msg("m1"), None, {}, claim=A)
    second = await store.messages.accept(msg("m2"), None, {}, claim=B)
    assert first.has_turn and not second.has_turn  # taken with the first store
    assert not await store.claims.take_turn(KEY, B, second.seq)  # the lease is held
    await lapse(store, messages.metadata.tables["sessions"])
    # Even with the lease free, m2 waits: m1 is older and still pending.
    assert not await store.claims.take_turn(KEY, B, second.seq)
    m1 = (await store.messages.pending())[0].message
    assert await store.claims.take_turn(KEY, A, first.seq)
    reply = msg("r1", role=Role.ASSISTANT)
    assert await store.messages.store_reply(reply, None, [], answers=m1, turn=A)
    assert await store.claims.take_turn(KEY, B, second.seq)  # now it is m2's turn


async def test_a_turn_whose_claim_was_taken_over_stores_nothing(store: Store) -> None:
    accepted = await store.messages.accept(msg("m1"), None, {}, claim=A)
    assert accepted.has_turn
    question = (await store.messages.pending())[0].message
    await lapse(store, messages.metadata.tables["sessions"])  # A stalled past its lease
    assert await store.claims.take_turn(KEY, B, accepted.seq)
    rows = outbox_rows("late", "telegram", "42", ["late answer"])
    stale = await store.messages.store_reply(
        msg("late answer", role=Role.ASSISTANT), None, rows, answers=question, turn=A
    )
    assert stale is False
    assert await store.outbox.count("pending") == 0  # rolled back with the reply
    assert await store.messages.store_reply(
        msg("answer", role=Role.ASSISTANT), None, [], answers=question, turn=B
    )
    # A second answer to the same message never lands, whoever holds the session.
    assert await store.claims.take_turn(KEY, A, accepted.seq)
    again = await store.messages.store_reply(
        msg("twice", role=Role.ASSISTANT), None, [], answers=question, turn=A
    )
    assert again is False
    history = [m.text for m in await store.messages.history(KEY, 10)]
    assert history == ["m1", "answer"]


async def test_orphans_are_taken_live_work_is_not_and_old_ones_expire(store: Store) -> None:
    await store.messages.accept(msg("live", session="telegram:1"), None, {}, claim=A)
    dead = msg("orphan", session="telegram:2")
    await store.messages.accept(dead, "2:1", {"platform_id": "2:1"}, claim=B)
    old = msg("too old", session="telegram:3").model_copy(
        update={"timestamp": msg("x").timestamp.fromtimestamp(time.time() - 7200)}
    )
    await store.messages.accept(old, None, {}, claim=B)

    def kill_b(conn: sa.Connection) -> None:
        conn.execute(
            messages.update().where(messages.c.claimed_by == "replica-b").values(claim_until=0.0)
        )

    await store.db.write(kill_b)
    rows, expired = await store.claims.take_orphans(
        "replica-c", ["telegram"], time.time() - 3600, 50
    )
    assert [r.text for r, _ctx in rows] == ["orphan"] and expired == 1
    assert rows[0][1] == {"platform_id": "2:1"}
    again, _ = await store.claims.take_orphans("replica-d", ["telegram"], 0, 50)
    assert again == []  # C holds it now; A's live message was never offered
    other_channel, _ = await store.claims.take_orphans("replica-d", ["discord"], 0, 50)
    assert other_channel == []


async def test_heartbeat_renews_and_release_hands_everything_over(store: Store) -> None:
    await store.messages.accept(msg("m1"), None, {}, claim=A)
    await store.messages.store_reply(
        msg("r", role=Role.ASSISTANT), None, outbox_rows("r", "telegram", "42", ["p"])
    )
    claimed, _ = await store.outbox.claim_due("replica-a", ["telegram"])
    assert len(claimed) == 1
    assert await store.claims.take_lease("receiver:telegram:x", "replica-a")

    def expiries(conn: sa.Connection) -> list[float]:
        return [
            conn.execute(
                sa.select(sa.func.min(messages.c.claim_until)).where(
                    messages.c.claimed_by == "replica-a"
                )
            ).scalar_one(),
            conn.execute(
                sa.select(sa.func.min(outbox.c.claim_until)).where(
                    outbox.c.claimed_by == "replica-a"
                )
            ).scalar_one(),
            conn.execute(sa.select(sa.func.min(leases.c.until))).scalar_one(),
        ]

    await lapse(store, messages)
    await lapse(store, outbox)
    await lapse(store, leases)
    await store.claims.heartbeat("replica-a")
    assert all(value > time.time() for value in await store.db.read(expiries))
    await store.claims.release_owner("replica-a")
    rows, _ = await store.claims.take_orphans("replica-b", ["telegram"], 0, 50)
    assert [r.text for r, _ in rows] == ["m1"]  # at once, not after lease_s
    assert await store.claims.take_lease("receiver:telegram:x", "replica-b")
    taken, _ = await store.outbox.claim_due("replica-b", ["telegram"])
    assert [t.text for t in taken] == ["p"]


async def test_an_outbox_part_has_one_claimant_and_parts_wait_their_turn(store: Store) -> None:
    reply = msg("long", role=Role.ASSISTANT)
    await store.messages.store_reply(
        reply, None, outbox_rows(reply.id, "telegram", "42", ["p1", "p2"])
    )
    mine, _ = await store.outbox.claim_due("replica-a", ["telegram"])
    assert [p.text for p in mine] == ["p1"]
    theirs, _ = await store.outbox.claim_due("replica-b", ["telegram"])
    assert theirs == []  # p1 is A's, and p2 waits until p1 is sent
    assert not await store.outbox.mark_sent(mine[0].seq, "replica-b")  # not B's to settle
    await lapse(store, outbox)  # A died mid-send
    retaken, _ = await store.outbox.claim_due("replica-b", ["telegram"])
    assert [p.text for p in retaken] == ["p1"]
    assert not await store.outbox.mark_sent(mine[0].seq, "replica-a")  # A's claim is gone
    assert await store.outbox.mark_sent(retaken[0].seq, "replica-b")
    nxt, _ = await store.outbox.claim_due("replica-a", ["telegram"])
    assert [p.text for p in nxt] == ["p2"]


async def test_receiver_lease_has_one_holder_until_it_lapses(store: Store) -> None:
    name = "receiver:telegram:bot"
    assert await store.claims.take_lease(name, "replica-a")
    assert not await store.claims.take_lease(name, "replica-b")
    assert await store.claims.take_lease(name, "replica-a")  # renewing
    assert await store.claims.lease_holder(name) == "replica-a"
    await lapse(store, leases)
    assert await store.claims.lease_holder(name) is None
    assert await store.claims.take_lease(name, "replica-b")
    assert not await store.claims.take_lease(name, "replica-a")


async def test_pairing_issues_one_pending_code_per_sender_within_the_cap(store: Store) -> None:
    now = time.time()

    def wanted(sender: str) -> PairingCode:
        return PairingCode("", "telegram", sender, sender, now, now + 3600, now)

    codes = iter(["AAAAAAAA", "BBBBBBBB", "CCCCCCCC", "DDDDDDDD", "EEEEEEEE"])

    async def issue(sender: str) -> str | None:
        return await store.access.issue_code(
            wanted(sender), max_pending=3, resend_after_s=600, new_code=lambda: next(codes)
        )

    assert await issue("1") == "AAAAAAAA"
    assert await issue("1") is None  # told a moment ago
    assert [await issue(s) for s in ("2", "3", "4")] == ["BBBBBBBB", "CCCCCCCC", None]


async def test_pruning_forgets_old_bookkeeping_and_keeps_recent(store: Store) -> None:
    await store.messages.mark_processed(ChannelType.TELEGRAM, "42:1")
    await store.idempotency.claim("chat", "k", "h", "m")
    reply = msg("r", role=Role.ASSISTANT)
    await store.messages.store_reply(reply, None, outbox_rows(reply.id, "telegram", "42", ["p"]))
    claimed, _ = await store.outbox.claim_due("me", ["telegram"])
    assert await store.outbox.mark_sent(claimed[0].seq, "me")
    assert (await prune(store.db)).total == 0  # all of it is recent
    later = await prune(store.db, now=time.time() + 8 * DAY_S, batch=1)
    assert (later.processed_ids, later.idempotency_keys, later.outbox) == (1, 1, 1)

    def count(conn: sa.Connection) -> int:
        return int(conn.execute(sa.select(sa.func.count()).select_from(processed_ids)).scalar())

    assert await store.db.read(count) == 0
    assert await store.messages.seen(ChannelType.TELEGRAM, "42:1") is False


@pytest.fixture
async def pg(tmp_path: Path) -> AsyncIterator[Store]:
    async for s in fresh_store("postgresql", tmp_path):
        yield s


needs_pg = pytest.mark.skipif(
    not PG_URL, reason="OPENCLAW_TEST_POSTGRES_URL is not set (CI sets it)"
)


@needs_pg
@pytest.mark.postgres
async def test_replicas_racing_for_outbox_parts_never_share_one(pg: Store) -> None:
    others = [await Store.open(PG_URL) for _ in range(2)]
    try:
        rows = []
        for chat in range(20):
            rows += outbox_rows(f"r{chat}", "telegram", str(chat), ["a", "b", "c"])
        await pg.outbox.enqueue(rows)
        replicas = [pg, *others]
        sent: list[tuple[str, int]] = []

        async def worker(store: Store, name: str) -> None:
            while True:
                due, next_due = await store.outbox.claim_due(name, ["telegram"])
                if not due:
                    if next_due is None and await store.outbox.count("pending") == 0:
                        return
                    await asyncio.sleep(0.01)
                    continue
                for part in due:
                    sent.append((part.channel_id, part.part))
                    assert await store.outbox.mark_sent(part.seq, name)

        await asyncio.gather(*(worker(s, f"r{i}") for i, s in enumerate(replicas)))
        assert len(sent) == 60 and len(set(sent)) == 60  # each part once
        for chat in range(20):
            assert [p for c, p in sent if c == str(chat)] == [0, 1, 2]  # in order
    finally:
        for other in others:
            await other.close()


@needs_pg
@pytest.mark.postgres
async def test_replicas_racing_for_one_session_take_turns(pg: Store) -> None:
    second = await Store.open(PG_URL)
    try:
        stored = await pg.messages.accept(msg("m1"), None, {})
        claims = [Claim(f"r{i}", f"t{i}") for i in range(8)]
        stores = [pg, second] * 4
        won = await asyncio.gather(
            *(s.claims.take_turn(KEY, c, stored.seq) for s, c in zip(stores, claims, strict=True))
        )
        assert sum(won) == 1
        now = time.time()
        codes = iter(f"CODE{i:04d}" for i in range(100))

        async def issue(store: Store, sender: str) -> str | None:
            wanted = PairingCode("", "telegram", sender, sender, now, now + 3600, now)
            return await store.access.issue_code(
                wanted, max_pending=3, resend_after_s=600, new_code=lambda: next(codes)
            )

        same = await asyncio.gather(*(issue(s, "stranger") for s in (pg, second) * 3))
        assert sum(code is not None for code in same) == 1  # one code, told once
        many = await asyncio.gather(*(issue(s, str(n)) for n, s in enumerate([pg, second] * 4)))
        assert len({c for c in many if c}) == 2  # the cap of 3 holds across replicas
        assert len(await pg.access.pending_codes(now + 1, "telegram")) == 3
    finally:
        await second.close()


async def test_a_message_given_back_is_taken_by_the_sweep_despite_the_heartbeat(
    store: Store,
) -> None:
    await store.messages.accept(msg("storage failed mid-turn"), None, {}, claim=A)
    await store.claims.give_back(msg("x").id, "replica-a")  # not ours: changes nothing
    none_yet, _ = await store.claims.take_orphans("replica-b", ["telegram"], 0, 50)
    assert none_yet == []  # A still holds it
    [row] = await store.db.read(lambda conn: conn.execute(sa.select(messages.c.id)).scalars().all())
    await store.claims.give_back(row, "replica-a")
    await store.claims.heartbeat("replica-a")  # must not renew what A gave back
    rows, _ = await store.claims.take_orphans("replica-b", ["telegram"], 0, 50)
    assert [r.text for r, _ in rows] == ["storage failed mid-turn"]


@needs_pg
@pytest.mark.postgres
async def test_a_reply_stored_while_the_heartbeat_renews_its_turn_never_deadlocks(
    pg: Store,
) -> None:
    """The reply's transaction and the heartbeat lock the session and its message; in
    opposite orders PostgreSQL aborts one of them as a deadlock (seen under load)."""
    beating = await Store.open(PG_URL)
    try:
        for n in range(40):
            key = SessionKey(f"telegram:{n}")
            question = msg(f"q{n}", session=key)
            accepted = await pg.messages.accept(question, None, {}, claim=A)
            assert accepted.has_turn
            results = await asyncio.gather(
                pg.messages.store_reply(
                    msg(f"r{n}", session=key, role=Role.ASSISTANT),
                    None,
                    [],
                    answers=question,
                    turn=A,
                ),
                beating.claims.heartbeat("replica-a"),
                beating.claims.heartbeat("replica-a"),
            )
            assert results[0] is True  # stored, and nothing raised
    finally:
        await beating.close()
