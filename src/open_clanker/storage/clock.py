"""The database's clock, in epoch seconds, as a SQL expression.

Lease and claim expiries are written and compared in the database's own clock, so replicas on
machines whose clocks disagree still agree on when a claim has lapsed.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa


def db_now(dialect: str) -> Any:
    """`now` inside a statement: `clock_timestamp()` on PostgreSQL (not `now()`, which is the
    transaction's start), `julianday('now')` on SQLite (millisecond precision)."""
    if dialect == "postgresql":
        return sa.cast(sa.func.extract("epoch", sa.func.clock_timestamp()), sa.Double)
    return (sa.func.julianday("now") - 2440587.5) * 86400.0


def db_now_plus(dialect: str, seconds: float) -> Any:
    return db_now(dialect) + sa.literal(seconds, sa.Double)
