"""Storage URLs the storage-level tests run against: SQLite always, PostgreSQL when configured."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from open_clanker.storage.database import Database
from open_clanker.storage.schema import metadata
from open_clanker.storage.store import Store

PG_URL = os.environ.get("OPENCLAW_TEST_POSTGRES_URL", "")

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param(
        "postgresql",
        id="postgresql",
        marks=pytest.mark.skipif(
            not PG_URL, reason="OPENCLAW_TEST_POSTGRES_URL is not set (CI sets it)"
        ),
    ),
]


async def fresh_store(backend: str, tmp_path: Path) -> AsyncIterator[Store]:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path}/store.db"
    else:
        url = PG_URL
        db = Database(url)
        await db.write(_drop_everything)
        await db.close()
    store = await Store.open(url)
    try:
        yield store
    finally:
        await store.close()


def _drop_everything(conn: sa.Connection) -> None:
    metadata.drop_all(conn)
    conn.execute(sa.text("DROP TABLE IF EXISTS schema_version"))
