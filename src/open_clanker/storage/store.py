"""The storage facade the rest of the gateway is handed: one database, four small repositories."""

from __future__ import annotations

import sqlalchemy as sa

from open_clanker.storage.access import AccessStore
from open_clanker.storage.claims import ClaimStore
from open_clanker.storage.database import Database
from open_clanker.storage.idempotency import IdempotencyStore
from open_clanker.storage.messages import MessageStore
from open_clanker.storage.migrations import migrate
from open_clanker.storage.outbox import OutboxStore


class Store:
    def __init__(self, db: Database, lease_s: float = 30.0) -> None:
        self.db = db
        self.claims = ClaimStore(db, lease_s)
        self.messages = MessageStore(db, self.claims)
        self.outbox = OutboxStore(db, lease_s)
        self.access = AccessStore(db)
        self.idempotency = IdempotencyStore(db)

    @classmethod
    async def open(cls, url: str, lease_s: float = 30.0) -> Store:
        """Connect and apply pending migrations. `lease_s`: how long claims last (SPEC §9)."""
        db = Database(url)
        try:
            await migrate(db)
        except BaseException:
            await db.close()
            raise
        return cls(db, lease_s)

    @property
    def backend(self) -> str:
        return self.db.dialect

    async def ping(self) -> bool:
        try:
            await self.db.read(_ping)
        except (sa.exc.SQLAlchemyError, OSError):
            return False
        return True

    async def close(self) -> None:
        await self.db.close()


def _ping(conn: sa.Connection) -> None:
    conn.execute(sa.text("SELECT 1"))
