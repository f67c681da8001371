"""Versioned schema migrations, applied in order at start. Append; never edit a released one."""

from __future__ import annotations

import time
from collections.abc import Callable

import sqlalchemy as sa

from open_clanker.storage import schema
from open_clanker.storage.database import Database

Migration = Callable[[sa.Connection], None]


def _v1_initial(conn: sa.Connection) -> None:
    tables = [t for t in schema.metadata.sorted_tables if t.name != "schema_version"]
    schema.metadata.create_all(conn, tables=tables)


def _v2_outbox_edit_message_id(conn: sa.Connection) -> None:
    # v1 creates tables from the current metadata, so a fresh database already has the column;
    # a database made by v1 before this release gets it added.
    columns = {c["name"] for c in sa.inspect(conn).get_columns("outbox")}
    if "edit_message_id" not in columns:
        conn.execute(sa.text("ALTER TABLE outbox ADD COLUMN edit_message_id VARCHAR(255)"))


def _v3_outbox_request_id(conn: sa.Connection) -> None:
    columns = {c["name"] for c in sa.inspect(conn).get_columns("outbox")}
    if "request_id" not in columns:
        conn.execute(sa.text("ALTER TABLE outbox ADD COLUMN request_id VARCHAR(64)"))


MIGRATIONS: list[tuple[int, Migration]] = [
    (1, _v1_initial),
    (2, _v2_outbox_edit_message_id),
    (3, _v3_outbox_request_id),
]

LATEST = MIGRATIONS[-1][0]

# Any constant works; it keeps two replicas from migrating PostgreSQL at once.
_PG_LOCK_ID = 0x0C1A4E5


def _apply(conn: sa.Connection) -> int:
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_LOCK_ID})
    schema.schema_version.create(conn, checkfirst=True)
    current = conn.execute(sa.select(sa.func.max(schema.schema_version.c.version))).scalar()
    current = current or 0
    for version, migrate in MIGRATIONS:
        if version <= current:
            continue
        migrate(conn)
        conn.execute(schema.schema_version.insert().values(version=version, applied_at=time.time()))
        current = version
    return current


async def migrate(db: Database) -> int:
    """Bring the schema to the latest version; returns it."""
    return await db.write(_apply)
