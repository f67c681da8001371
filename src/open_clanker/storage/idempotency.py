"""Answers remembered by `Idempotency-Key`, so a retried API request costs no second model call."""

from __future__ import annotations

import time

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from open_clanker.storage.dialect import insert_ignore
from open_clanker.storage.schema import idempotency


class IdempotencyStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._dialect = engine.dialect.name

    async def get(self, key: str) -> str | None:
        stmt = sa.select(idempotency.c.response_json).where(idempotency.c.key == key)
        async with self._engine.connect() as conn:
            value = (await conn.execute(stmt)).scalar()
        return str(value) if value is not None else None

    async def put(self, key: str, response_json: str) -> None:
        values = {"key": key, "response_json": response_json, "created_at": time.time()}
        async with self._engine.begin() as conn:
            await conn.execute(insert_ignore(self._dialect, idempotency, values))
