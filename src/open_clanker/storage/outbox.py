"""The durable delivery queue: rows are parts of replies, delivered in order per chat."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

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
    def __init__(self, db: Database) -> None:
        self._db = db

    async def enqueue(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            await self._db.write(_insert, rows)

    async def heads(self, limit: int = 100) -> list[OutboxItem]:
        """The first undelivered part of each chat: later parts wait for earlier ones."""
        return await self._db.read(_heads, limit)

    async def mark_sent(self, seq: int) -> None:
        await self._db.write(_update, seq, {"status": OutboxStatus.SENT, "sent_at": time.time()})

    async def mark_retry(self, seq: int, delay_s: float, error: str) -> None:
        values = {
            "attempts": outbox.c.attempts + 1,
            "next_attempt_at": time.time() + delay_s,
            "last_error": error[:500],
        }
        await self._db.write(_update, seq, values)

    async def mark_dead(self, seq: int, error: str) -> None:
        values = {
            "status": OutboxStatus.DEAD,
            "attempts": outbox.c.attempts + 1,
            "last_error": error[:500],
        }
        await self._db.write(_update, seq, values)

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


def _update(conn: sa.Connection, seq: int, values: dict[str, Any]) -> None:
    conn.execute(outbox.update().where(outbox.c.seq == seq).values(**values))


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
