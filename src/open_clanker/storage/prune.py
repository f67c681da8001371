"""Forget, by age and in small batches, what is kept only to stop duplicates and retries.

Retention (documented in README "Several replicas"): platform ids 7 days (far beyond any
platform's re-delivery: Telegram keeps undelivered updates 24 h, Slack retries within
minutes), `Idempotency-Key`s 24 h, pairing codes a day after they expired or were used,
delivered outbox parts 7 days (dead ones stay for the operator). Messages are never pruned.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa

from open_clanker.storage.database import Database
from open_clanker.storage.schema import idempotency_keys, outbox, pairing_codes, processed_ids

DAY_S = 86_400.0
PROCESSED_IDS_S = 7 * DAY_S
IDEMPOTENCY_S = DAY_S
PAIRING_CODES_S = DAY_S
SENT_OUTBOX_S = 7 * DAY_S
BATCH = 1000


@dataclass(frozen=True, slots=True)
class Pruned:
    processed_ids: int = 0
    idempotency_keys: int = 0
    pairing_codes: int = 0
    outbox: int = 0

    @property
    def total(self) -> int:
        return self.processed_ids + self.idempotency_keys + self.pairing_codes + self.outbox


async def prune(db: Database, now: float | None = None, batch: int = BATCH) -> Pruned:
    """One batch per table, each its own short transaction (no long lock on a busy table);
    call again while `total` comes back non-zero."""
    now = time.time() if now is None else now
    return Pruned(
        processed_ids=await db.write(_processed_ids, now - PROCESSED_IDS_S, batch),
        idempotency_keys=await db.write(_idempotency, now - IDEMPOTENCY_S, batch),
        pairing_codes=await db.write(_pairing_codes, now - PAIRING_CODES_S, batch),
        outbox=await db.write(_outbox, now - SENT_OUTBOX_S, batch),
    )


def _processed_ids(conn: sa.Connection, before: float, batch: int) -> int:
    old = (
        sa.select(processed_ids.c.channel, processed_ids.c.platform_id)
        .where(processed_ids.c.created_at < before)
        .limit(batch)
    )
    stmt = processed_ids.delete().where(
        sa.tuple_(processed_ids.c.channel, processed_ids.c.platform_id).in_(old)
    )
    return int(conn.execute(stmt).rowcount or 0)


def _idempotency(conn: sa.Connection, before: float, batch: int) -> int:
    old = (
        sa.select(idempotency_keys.c.scope, idempotency_keys.c.key)
        .where(idempotency_keys.c.created_at < before)
        .limit(batch)
    )
    stmt = idempotency_keys.delete().where(
        sa.tuple_(idempotency_keys.c.scope, idempotency_keys.c.key).in_(old)
    )
    return int(conn.execute(stmt).rowcount or 0)


def _pairing_codes(conn: sa.Connection, before: float, batch: int) -> int:
    old = (
        sa.select(pairing_codes.c.code)
        .where(pairing_codes.c.expires_at < before, pairing_codes.c.status != "approved")
        .limit(batch)
    )
    # Approved codes are the record of who paired; kept.
    stmt = pairing_codes.delete().where(pairing_codes.c.code.in_(old.scalar_subquery()))
    return int(conn.execute(stmt).rowcount or 0)


def _outbox(conn: sa.Connection, before: float, batch: int) -> int:
    old = (
        sa.select(outbox.c.seq)
        .where(outbox.c.status == "sent", outbox.c.next_attempt_at < before)
        .limit(batch)
    )
    stmt = outbox.delete().where(outbox.c.seq.in_(old.scalar_subquery()))
    return int(conn.execute(stmt).rowcount or 0)
