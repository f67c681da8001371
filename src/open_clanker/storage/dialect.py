"""The few statements that differ between SQLite and PostgreSQL: upserts and insert-or-ignore."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite


def insert_ignore(dialect: str, table: sa.Table, values: dict[str, Any]) -> Any:
    mod: Any = postgresql if dialect == "postgresql" else sqlite
    return mod.insert(table).values(**values).on_conflict_do_nothing()


def upsert(
    dialect: str, table: sa.Table, values: dict[str, Any], keys: list[str], update: dict[str, Any]
) -> Any:
    mod: Any = postgresql if dialect == "postgresql" else sqlite
    return (
        mod.insert(table).values(**values).on_conflict_do_update(index_elements=keys, set_=update)
    )


def dialect_insert(dialect: str, table: sa.Table) -> Any:
    """The dialect's INSERT construct (it has `on_conflict_*`), to build a statement once."""
    mod: Any = postgresql if dialect == "postgresql" else sqlite
    return mod.insert(table)
