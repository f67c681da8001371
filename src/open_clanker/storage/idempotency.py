"""Answers remembered by `Idempotency-Key`, so a retried API request costs no second model call."""

from __future__ import annotations

import time

import sqlalchemy as sa

from open_clanker.storage.database import Database
from open_clanker.storage.dialect import insert_ignore
from open_clanker.storage.schema import idempotency


class IdempotencyStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, key: str) -> str | None:
        return await self._db.read(self._get, key)

    def _get(self, conn: sa.Connection, key: str) -> str | None:
        stmt = sa.select(idempotency.c.response_json).where(idempotency.c.key == key)
        value = conn.execute(stmt).scalar()
        return str(value) if value is not None else None

    async def put(self, key: str, response_json: str) -> None:
        values = {"key": key, "response_json": response_json, "created_at": time.time()}
        await self._db.write(self._put, values)

    def _put(self, conn: sa.Connection, values: dict[str, object]) -> None:
        conn.execute(insert_ignore(self._db.dialect, idempotency, values))
