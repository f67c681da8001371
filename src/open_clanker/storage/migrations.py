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


_V4_COLUMNS = {
    "sessions": [
        ("lease_owner", "VARCHAR(128)"),
        ("lease_token", "VARCHAR(64)"),
        ("lease_until", "DOUBLE PRECISION"),
    ],
    "messages": [("claimed_by", "VARCHAR(128)"), ("claim_until", "DOUBLE PRECISION")],
    "outbox": [("claimed_by", "VARCHAR(128)"), ("claim_until", "DOUBLE PRECISION")],
}
_V4_INDEXES = {
    "sessions": ["ix_sessions_lease_owner"],
    "messages": ["ix_messages_session_status", "ix_messages_answers"],
    "outbox": ["ix_outbox_chat"],
    "processed_ids": ["ix_processed_created"],
    "pairing_codes": ["ux_pairing_pending"],
}


def _v4_replicas(conn: sa.Connection) -> None:
    """Leases and claims for several replicas (SPEC §9): lease/claim columns, the `leases`
    table, insert-first idempotency (the v1 `idempotency` table's cached answers are dropped:
    they were kept for retries, and retries within a deploy are rare), one pending pairing
    code per sender, and indexes for pruning."""
    inspector = sa.inspect(conn)
    for table, columns in _V4_COLUMNS.items():
        have = {c["name"] for c in inspector.get_columns(table)}
        for name, sql_type in columns:
            if name not in have:
                conn.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {name} {sql_type}"))
    # Two pending codes for one sender could exist before (a race); keep the newest.
    conn.execute(
        sa.text(
            "UPDATE pairing_codes SET status = 'superseded' WHERE status = 'pending' AND "
            "EXISTS (SELECT 1 FROM pairing_codes newer WHERE newer.status = 'pending' "
            "AND newer.channel = pairing_codes.channel AND newer.sender = pairing_codes.sender "
            "AND newer.created_at > pairing_codes.created_at)"
        )
    )
    for table_name, names in _V4_INDEXES.items():
        have = {str(i["name"]) for i in inspector.get_indexes(table_name)}
        for index in schema.metadata.tables[table_name].indexes:
            if index.name in names and index.name not in have:
                index.create(conn)
    for new_table in (schema.idempotency_keys, schema.leases):
        new_table.create(conn, checkfirst=True)
    conn.execute(sa.text("DROP TABLE IF EXISTS idempotency"))


def _v5_gateway_tokens(conn: sa.Connection) -> None:
    """Rotated gateway tokens, stored as hashes (`open-clanker token rotate`)."""
    schema.gateway_tokens.create(conn, checkfirst=True)


def _v6_session_version(conn: sa.Connection) -> None:
    """The session's history version (the per-replica history cache's check)."""
    columns = {c["name"] for c in sa.inspect(conn).get_columns("sessions")}
    if "version" not in columns:
        conn.execute(sa.text("ALTER TABLE sessions ADD COLUMN version BIGINT NOT NULL DEFAULT 0"))


MIGRATIONS: list[tuple[int, Migration]] = [
    (1, _v1_initial),
    (2, _v2_outbox_edit_message_id),
    (3, _v3_outbox_request_id),
    (4, _v4_replicas),
    (5, _v5_gateway_tokens),
    (6, _v6_session_version),
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
