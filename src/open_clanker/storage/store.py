"""The storage facade the rest of the gateway is handed: one engine, four small repositories."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from open_clanker.storage.access import AccessStore
from open_clanker.storage.engine import make_engine
from open_clanker.storage.idempotency import IdempotencyStore
from open_clanker.storage.messages import MessageStore
from open_clanker.storage.migrations import migrate
from open_clanker.storage.outbox import OutboxStore


class Store:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.messages = MessageStore(engine)
        self.outbox = OutboxStore(engine)
        self.access = AccessStore(engine)
        self.idempotency = IdempotencyStore(engine)

    @classmethod
    async def open(cls, url: str) -> Store:
        """Connect and apply pending migrations."""
        store = cls(make_engine(url))
        await migrate(store.engine)
        return store

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
        except (sa.exc.SQLAlchemyError, OSError):
            return False
        return True

    async def close(self) -> None:
        await self.engine.dispose()
