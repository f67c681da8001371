"""The few statements that differ between SQLite and PostgreSQL: upserts and insert-or-ignore.

Dialect modules are imported on first use: a SQLite gateway never loads PostgreSQL's (~3 MiB).
"""

from __future__ import annotations

import importlib
from typing import Any

import sqlalchemy as sa


def dialect_insert(dialect: str, table: sa.Table) -> Any:
    """The dialect's INSERT construct (it has `on_conflict_*`), to build a statement once."""
    name = "postgresql" if dialect == "postgresql" else "sqlite"
    module: Any = importlib.import_module(f"sqlalchemy.dialects.{name}")
    return module.insert(table)


def insert_ignore(dialect: str, table: sa.Table, values: dict[str, Any]) -> Any:
    return dialect_insert(dialect, table).values(**values).on_conflict_do_nothing()
