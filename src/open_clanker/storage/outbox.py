"""The durable delivery queue: rows are parts of replies, delivered in order per chat."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from open_clanker.storage.clock import db_now, db_now_plus
from open_clanker.storage.database import Database
from open_clanker.storage.schema import outbox


class OutboxStatus:
    PENDING = "pending"
    SENT = "sent"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class OutboxItem:
    seq: int
    message_id: str
    channel: str
    channel_id: str
    thread_id: str | None
    reply_to: str | None
    part: int
    parts: int
    text: str
    attempts: int
    next_attempt_at: float
    edit_message_id: str | None = None  # deliver by editing this platform message (a draft)
    request_id: str | None = None  # of the message this answers: delivery logs carry it


def outbox_rows(
    message_id: str,
    channel: str,
    channel_id: str,
    parts: list[str],
    *,
    thread_id: str | None = None,
    reply_to: str | None = None,
    edit_first: str | None = None,
    request_id: str | None = None,
) -> list[dict[str, Any]]:
    now = time.time()
    return [
        {
            "message_id": message_id,
            "channel": channel,
            "channel_id": channel_id,
            "thread_id": thread_id,
            "reply_to": reply_to,
            "part": i,
            "parts": len(parts),
            "text": text,
            "status": OutboxStatus.PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
            "edit_message_id": edit_first if i == 0 else None,
            "request_id": request_id,
        }
        for i, text in enumerate(parts)
    ]


class OutboxStore:
    """Parts are claimed before they are sent and settled only by their claimant, so with
    several replicas each part is sent once, in order within its chat (SPEC §9)."""

    def __init__(self, db: Database, lease_s: float = 30.0) -> None:
        self._db = db
        now, until = db_now(db.dialect), db_now_plus(db.dialect, lease_s)
        earlier = outbox.alias("earlier")
        head_of_chat = ~(
            sa.select(earlier.c.seq)
            .where(
                earlier.c.channel == outbox.c.channel,
                earlier.c.channel_id == outbox.c.channel_id,
                earlier.c.status == OutboxStatus.PENDING,
                earlier.c.seq < outbox.c.seq,
            )
            .exists()
        )
        unclaimed = sa.or_(outbox.c.claim_until.is_(None), outbox.c.claim_until < now)
        waiting = sa.and_(
            outbox.c.status == OutboxStatus.PENDING,
            outbox.c.channel.in_(sa.bindparam("channels", expanding=True)),
            unclaimed,
            head_of_chat,
        )
        due = (
            sa.select(outbox.c.seq)
            .where(waiting, outbox.c.next_attempt_at <= sa.bindparam("now"))
            .order_by(outbox.c.seq)
            .limit(sa.bindparam("limit"))
            .with_for_update(skip_locked=True)
        )
        self._claim_stmt = (
            outbox.update()
            .where(outbox.c.seq.in_(due.scalar_subquery()), outbox.c.status == OutboxStatus.PENDING)
            .values(claimed_by=sa.bindparam("b_owner"), claim_until=until)
            .returning(*outbox.c)
        )
        self._next_due_stmt = sa.select(sa.func.min(outbox.c.next_attempt_at)).where(waiting)

    async def enqueue(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            await self._db.write(_insert, rows)

    async def heads(self, limit: int = 100) -> list[OutboxItem]:
        """The first undelivered part of each chat (claimed or not): for reading only."""
        return await self._db.read(_heads, limit)

    async def claim_due(
        self, owner: str, channels: list[str], limit: int = 100
    ) -> tuple[list[OutboxItem], float | None]:
        """Claim every chat's due head part of `channels` for `owner`; also returns when the
        next unclaimed head of those channels falls due (None: nothing waits)."""
        if not channels:
            return [], None
        return await self._db.write(self._claim_due, owner, channels, limit)

    def _claim_due(
        self, conn: sa.Connection, owner: str, channels: list[str], limit: int
    ) -> tuple[list[OutboxItem], float | None]:
        params = {"channels": channels, "now": time.time(), "limit": limit, "b_owner": owner}
        rows = conn.execute(self._claim_stmt, params).all()
        claimed = sorted((_item(r) for r in rows), key=lambda item: item.seq)
        next_due = conn.execute(self._next_due_stmt, {"channels": channels}).scalar()
        return claimed, None if next_due is None else float(next_due)

    async def mark_sent(self, seq: int, owner: str) -> bool:
        values = {"status": OutboxStatus.SENT, "sent_at": time.time(), "claimed_by": None}
        return await self._db.write(_settle, seq, owner, values)

    async def mark_retry(self, seq: int, delay_s: float, error: str, owner: str) -> bool:
        values = {
            "attempts": outbox.c.attempts + 1,
            "next_attempt_at": time.time() + delay_s,
            "last_error": error[:500],
            "claimed_by": None,
            "claim_until": None,
        }
        return await self._db.write(_settle, seq, owner, values)

    async def mark_dead(self, seq: int, error: str, owner: str) -> bool:
        values = {
            "status": OutboxStatus.DEAD,
            "attempts": outbox.c.attempts + 1,
            "last_error": error[:500],
            "claimed_by": None,
        }
        return await self._db.write(_settle, seq, owner, values)

    async def release(self, seq: int, owner: str) -> bool:
        """Give a claimed part back unsent (any replica may claim it again)."""
        return await self._db.write(_settle, seq, owner, {"claimed_by": None, "claim_until": None})

    async def count(self, status: str) -> int:
        return await self._db.read(_count, status)


def _insert(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    conn.execute(outbox.insert(), rows)


def _heads(conn: sa.Connection, limit: int) -> list[OutboxItem]:
    first = (
        sa.select(sa.func.min(outbox.c.seq))
        .where(outbox.c.status == OutboxStatus.PENDING)
        .group_by(outbox.c.channel, outbox.c.channel_id)
    )
    stmt = sa.select(outbox).where(outbox.c.seq.in_(first)).order_by(outbox.c.seq).limit(limit)
    return [_item(r) for r in conn.execute(stmt).all()]


def _settle(conn: sa.Connection, seq: int, owner: str, values: dict[str, Any]) -> bool:
    """Only the claimant settles a part: False if its claim went to another replica."""
    stmt = (
        outbox.update()
        .where(
            outbox.c.seq == seq,
            outbox.c.claimed_by == owner,
            outbox.c.status == OutboxStatus.PENDING,
        )
        .values(**values)
    )
    return bool(conn.execute(stmt).rowcount)


def _count(conn: sa.Connection, status: str) -> int:
    stmt = sa.select(sa.func.count()).where(outbox.c.status == status)
    return int(conn.execute(stmt).scalar() or 0)


def _item(r: Any) -> OutboxItem:
    return OutboxItem(
        seq=r.seq,
        message_id=r.message_id,
        channel=r.channel,
        channel_id=r.channel_id,
        thread_id=r.thread_id,
        reply_to=r.reply_to,
        part=r.part,
        parts=r.parts,
        text=r.text,
        attempts=r.attempts,
        next_attempt_at=r.next_attempt_at,
        edit_message_id=r.edit_message_id,
        request_id=r.request_id,
    )
