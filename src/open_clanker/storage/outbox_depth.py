"""How many reply parts wait in the outbox, per channel (the `clanker_outbox_depth` gauge)."""

from __future__ import annotations

import sqlalchemy as sa

from open_clanker.storage.database import Database
from open_clanker.storage.outbox import OutboxStatus
from open_clanker.storage.schema import outbox


async def pending_by_channel(db: Database) -> dict[str, int]:
    return await db.read(_pending_by_channel)


def _pending_by_channel(conn: sa.Connection) -> dict[str, int]:
    stmt = (
        sa.select(outbox.c.channel, sa.func.count())
        .where(outbox.c.status == OutboxStatus.PENDING)
        .group_by(outbox.c.channel)
    )
    return {str(channel): int(count) for channel, count in conn.execute(stmt)}
